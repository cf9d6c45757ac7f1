/* tally-push --sheets, its pure pieces: tally sheet CSV lines, the sheets they add up to,
 * how they are packed into batches, and the cursor kept in the spool. No sockets, no files,
 * no clock (sheets_run.c reads the file and talks to libtally). */
#ifndef PUSH_SHEETS_H
#define PUSH_SHEETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tally/protocol.h"

/* The header a sheets file must start with (after an optional UTF-8 byte-order mark). */
#define PUSH_SHEETS_HEADER "table_id,version,project_id,votes"
/* Largest votes figure of a row, blank and null included (docs/consultation.md). */
#define PUSH_SHEET_VOTES_MAX 2147483647u
/* Sheets per batch at most (wire.h's WIRE_MAX_BATCH_SHEETS). */
#define PUSH_SHEETS_PER_BATCH 256u

enum push_sheet_line_kind {
    PUSH_SHEET_ROW = 0,        /* out is set */
    PUSH_SHEET_HEADER = 1,     /* the first line, the header */
    PUSH_SHEET_BLANK = 2,      /* nothing but a line ending: skipped */
    PUSH_SHEET_MALFORMED = -1, /* out->reason says why */
};

enum push_sheet_row_kind {
    PUSH_SHEET_PROJECT = 0, /* votes for project */
    PUSH_SHEET_BLANK_ROW,   /* project_id "blank": blank ballots */
    PUSH_SHEET_NULL_ROW,    /* project_id "null": null ballots */
};

struct push_sheet_line {
    char table_id[TALLY_COLLECTOR_ID_MAX + 1];
    uint32_t version; /* >= 1 */
    enum push_sheet_row_kind kind;
    uint32_t project;   /* PUSH_SHEET_PROJECT only */
    uint32_t votes;     /* <= PUSH_SHEET_VOTES_MAX */
    const char *reason; /* static text */
};

/* Parses one line `table_id,version,project_id,votes` (RFC 4180 quoting as in vote lines),
 * with or without its line ending. first is true for line 1, which must be
 * PUSH_SHEETS_HEADER (else MALFORMED: "a sheets file starts with the header ..."). Checks:
 * table_id [A-Za-z0-9._-]{1,63}; version 1..4294967295; project_id a decimal id up to
 * 4294967295, or "blank" or "null"; votes 0..2147483647, decimal digits only. Unquotes in
 * place (line is modified). */
enum push_sheet_line_kind push_sheet_line_parse(char *line, size_t len, bool first,
                                                struct push_sheet_line *out);

/* One sheet as the file gives it: rows in file order. Arrays owned by the set. */
struct push_sheet {
    char table_id[TALLY_COLLECTOR_ID_MAX + 1];
    uint32_t version;
    uint32_t *projects, *votes;
    size_t n, cap;
    uint32_t blank, null_ballots;
    uint64_t blank_line, null_line; /* where blank / null was given; 0: not given */
    uint64_t line;                  /* its first row */
};

/* The sheets of a file, in the order their first rows stand; rows of one (table_id,
 * version) gather into one sheet wherever they stand. */
struct push_sheet_set {
    struct push_sheet *sheets;
    size_t n, cap;
    uint32_t *slots; /* open addressing over (table_id, version): index + 1, 0 empty */
    size_t n_slots;
    uint64_t rows; /* project rows in all */
};

void push_sheet_set_init(struct push_sheet_set *s);
void push_sheet_set_cleanup(struct push_sheet_set *s);

/* Adds the row of line number line to its sheet. Returns 0, or -1 with the reason in err
 * (blank or null given twice for one sheet, naming the line of the first). A project on two
 * rows is left to tallyd, which rejects the sheet as bad_sheet. */
int push_sheet_set_add(struct push_sheet_set *s, const struct push_sheet_line *l, uint64_t line,
                       char *err, size_t err_len) __attribute__((warn_unused_result));

/* How many sheets from index first (< s->n) go into the next batch: as many as fit in
 * PUSH_SHEETS_PER_BATCH sheets and max_rows rows, at least one (a sheet with more rows than
 * max_rows cannot be sent at all: the caller checks push_sheet_set_widest first). */
size_t push_sheet_set_pack(const struct push_sheet_set *s, size_t first, uint32_t max_rows);

/* Index of the sheet with the most rows, or SIZE_MAX for an empty set. */
size_t push_sheet_set_widest(const struct push_sheet_set *s);

/* ---- the cursor of a sheets run: how many sheets of which file are spooled ---- */

#define PUSH_SHEET_CURSOR_BYTES 32u
#define PUSH_FILE_HASH_BYTES 16u

void push_sheet_cursor_encode(uint64_t sheets_done, const uint8_t hash[PUSH_FILE_HASH_BYTES],
                              uint8_t out[PUSH_SHEET_CURSOR_BYTES]);
/* Returns 0, or -1 if buf is not a sheets cursor (a vote run's cursor, say). */
int push_sheet_cursor_decode(const uint8_t *buf, size_t len, uint64_t *sheets_done,
                             uint8_t hash[PUSH_FILE_HASH_BYTES])
    __attribute__((warn_unused_result));

/* The line tally-push prints after the vote summary when sheets are involved, appended to
 * buf (which holds len bytes and a NUL-terminated prefix):
 *   " sheets N accepted A duplicate D rejected R[ REASON K]..."
 * with REASON K for each non-zero reasons[k] (k 1..9, names as tally_client_reason_name).
 * Returns the length of the whole text, as snprintf would. */
int push_summary_sheets_append(char *buf, size_t len, uint64_t sheets, uint64_t accepted,
                               uint64_t duplicate, uint64_t rejected, const uint64_t reasons[10]);

#endif
