/* tally-push's pure pieces, kept apart from its main loop so they can be unit-tested:
 * CSV vote lines, ballot tokens, ballot key files, the input cursor kept in the spool, and
 * the exit status and summary line. No sockets, no files, no clock. */
#ifndef PUSH_PUSH_H
#define PUSH_PUSH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- CSV vote lines ---- */

enum push_line_kind {
    PUSH_LINE_VOTE = 0,       /* out->voter, out->voter_len, out->project are set */
    PUSH_LINE_HEADER = 1,     /* the first line, whose second field is not an integer */
    PUSH_LINE_BLANK = 2,      /* nothing but a line ending: skipped silently */
    PUSH_LINE_MALFORMED = -1, /* out->reason says why */
};

struct push_line {
    const char *voter; /* points into the line: the voter id, unquoted, not NUL-terminated */
    size_t voter_len;
    uint32_t project;
    const char *table; /* the third field, the vote's voting table; NULL/0 when none */
    size_t table_len;
    const char *reason; /* static text */
};

/* A voting table id, len bytes: [A-Za-z0-9._-]{1,63} (the collector id form). */
bool push_table_id_is_valid(const char *id, size_t len);

/* Parses one input line `voter,project_id[,table_id]` of len bytes, with or without its
 * "\n" or "\r\n". An empty or absent table_id: the vote names no table (table NULL or
 * table_len 0); a given one must be a table id (push_table_id_is_valid).
 * Fields may be RFC 4180 quoted ("a ""b""",7); a quoted field must close on the same line.
 * The voter id is taken byte for byte as given after unquoting (no trimming); it must not be
 * empty. The project id is 1-10 decimal digits, at most 4294967295, nothing else. first is
 * true for the input's first line only: there a UTF-8 byte-order mark is dropped and a line
 * whose second field is not all digits is the header. Unquotes in place, so line is modified
 * and out->voter points into it. Returns the line's kind. */
enum push_line_kind push_line_parse(char *line, size_t len, bool first, struct push_line *out);

/* ---- the table dictionary of one batch (Batch.tables / vote_tables) ---- */

/* At most this many tables in one batch's dictionary (wire.h's WIRE_MAX_BATCH_TABLES). */
#define PUSH_TABLES_PER_BATCH 4096u

struct push_tables {
    char **ids; /* ids[0..n): NUL-terminated copies, in the order first met */
    size_t n;
    uint32_t slots[2 * PUSH_TABLES_PER_BATCH]; /* open addressing: index + 1, 0 empty */
};

void push_tables_init(struct push_tables *t);
/* Forgets every id (the next batch starts a new dictionary). */
void push_tables_reset(struct push_tables *t);
void push_tables_cleanup(struct push_tables *t);
/* The dictionary index (1-based, as vote_tables holds it) of the id of len bytes, added if
 * new; 0 when it is new and the dictionary is full (flush the batch, reset, ask again). */
uint32_t push_tables_index(struct push_tables *t, const char *id, size_t len);

/* ---- ballot tokens ---- */

#define PUSH_KEY_BYTES 32u

/* The ballot token of a voter id:
 *     token = LE64(BLAKE2b-64(key = 32-byte ballot key, message = voter id bytes))
 * i.e. libsodium crypto_generichash with an 8-byte output, the 8 bytes read little-endian.
 * tallyd only ever sees tokens; without the key nobody can map a token back to a voter id by
 * trying candidate ids, so the key must stay secret and be the same on every collector (a
 * voter must get the same token wherever they vote, for duplicates to be caught).
 * Collision bound: two different voters share a token with probability about n^2 / 2^65 for
 * n voters: 2.4e-5 for 30 M voters, 0.01 for 640 M. A collision makes the second voter's
 * vote count as a duplicate, which tallyd reports back to the collector that sent it, so a
 * false duplicate is visible where it happens. */
uint64_t push_token(const uint8_t key[PUSH_KEY_BYTES], const void *voter, size_t len);

/* A fixed, public key for demonstrations: tokens made with it can be reversed by anyone who
 * can guess voter ids. tally-push warns when it is used. */
extern const uint8_t push_demo_key[PUSH_KEY_BYTES];

/* Parses the contents of a key file: exactly 32 raw bytes, or exactly 64 hex digits
 * optionally followed by "\n" or "\r\n". Returns 0 with key filled, or -1 (key untouched). */
int push_key_parse(const uint8_t *data, size_t len, uint8_t key[PUSH_KEY_BYTES])
    __attribute__((warn_unused_result));

/* ---- input cursor (the opaque blob tally-push stores with each spooled batch) ---- */

/* Bytes of the input a resumed run checks against before trusting the cursor. */
#define PUSH_PREFIX_BYTES 4096u
#define PUSH_PREFIX_HASH_BYTES 16u
#define PUSH_CURSOR_BYTES 48u

struct push_cursor {
    uint64_t offset;     /* input bytes consumed up to the end of the batch's last line */
    uint64_t line;       /* lines consumed (the next line read is line + 1) */
    uint64_t malformed;  /* malformed lines reported within those */
    uint32_t prefix_len; /* min(offset, PUSH_PREFIX_BYTES): bytes covered by prefix_hash */
    uint8_t prefix_hash[PUSH_PREFIX_HASH_BYTES];
};

/* Hash of the first prefix_len input bytes, so a rerun on a different input is caught
 * instead of silently skipping its first `offset` bytes. */
void push_prefix_hash(const void *data, size_t len, uint8_t out[PUSH_PREFIX_HASH_BYTES]);

/* Writes exactly PUSH_CURSOR_BYTES bytes. */
void push_cursor_encode(const struct push_cursor *cur, uint8_t out[PUSH_CURSOR_BYTES]);
/* Returns 0, or -1 if buf is not a cursor this version wrote. */
int push_cursor_decode(const uint8_t *buf, size_t len, struct push_cursor *out)
    __attribute__((warn_unused_result));

/* ---- what tally-push prints and returns ---- */

/* Exit statuses (tally-push --help lists them). */
#define PUSH_EXIT_OK 0
#define PUSH_EXIT_FATAL 1     /* refused, spool damaged, I/O error, interrupted, seq conflict */
#define PUSH_EXIT_USAGE 2     /* usage or configuration error */
#define PUSH_EXIT_MALFORMED 3 /* all durable, but some input lines were malformed */
#define PUSH_EXIT_AUTH 4      /* tallyd refused this certificate for this collector id */
#define PUSH_EXIT_DISABLED 5  /* the collector is disabled on tallyd */
#define PUSH_EXIT_CLOSED 6    /* the consultation is closed: unsent batches were not counted */

/* The exit status for a fatal libtally status (TALLY_CLIENT_ERR_*). */
int push_exit_for_status(int status);

/* The summary line printed once every batch is durable, without its newline:
 *   batches B votes V accepted A duplicate D rejected R not_allowed N
 * (not_allowed: votes this run saw rejected for a project outside the collector's circuits).
 * Returns what snprintf returns. */
int push_summary_format(char *buf, size_t len, uint64_t batches, uint64_t votes, uint64_t accepted,
                        uint64_t duplicate, uint64_t rejected, uint64_t not_allowed);

#endif
