/* Frames on the wire: a 4-byte big-endian length, then a protobuf-encoded tally.Frame.
 * Pure: bytes in, messages out. No sockets, no clock, no logging. */
#ifndef WIRE_WIRE_H
#define WIRE_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "tally.pb-c.h"

/* The three outcomes of looking at buffered bytes, plus the two ways it can be wrong. */
enum wire_status {
    WIRE_OK = 0,             /* a whole frame is there */
    WIRE_NEED_MORE = 1,      /* not yet: wait for more bytes */
    WIRE_ERR_TOO_LARGE = -1, /* the length prefix exceeds the limit */
    WIRE_ERR_MALFORMED = -2, /* the payload is not a valid Frame, or the Frame is empty */
};

/* Reads the frame header at the start of buf (len bytes buffered). On WIRE_OK,
 * *payload_len is the payload size and the frame occupies 4 + *payload_len bytes. A
 * zero length is WIRE_ERR_MALFORMED: no valid Frame encodes to nothing useful. */
enum wire_status wire_frame_peek(const uint8_t *buf, size_t len, size_t max_payload,
                                 size_t *payload_len) __attribute__((warn_unused_result));

/* Decodes one payload; the message and everything it points to live in arena a until
 * arena_reset. The payload is not referenced after return. The payload passes
 * wire_message_check first: protobuf-c never sees what that refuses. Returns WIRE_OK or
 * WIRE_ERR_MALFORMED. */
enum wire_status wire_frame_decode(const uint8_t *payload, size_t len, struct arena *a,
                                   Tally__Frame **out) __attribute__((warn_unused_result));

/* The scan run before protobuf-c 1.4.1 unpacks anything, for what that library gets wrong
 * (tests/fuzz/README.md): it walks every tag of the message and, through the descriptors,
 * of every known sub-message, and refuses
 *   - field number 0 written as a multi-byte tag (protobuf-c only refuses the 1-byte form
 *     and keeps the field as an unknown one), and field numbers above 2^29 - 1: a 5-byte
 *     tag whose last byte is 0x40 or more is the undefined shift of upstream issue #506;
 *   - wire types 3, 4 (groups), 6 and 7; a known field with a wire type its type does not
 *     take (protobuf-c reads a bool from any wire type); a packed repeated field that is
 *     not a whole number of elements, or holds none (protobuf-c computes NULL + 0 for one
 *     without a complete element; encoders leave an empty field out); a varint over 10
 *     bytes or 64 bits; a length past the end of its message;
 *   - nesting deeper than WIRE_SCAN_MAX_DEPTH (the proto has no recursion; this holds if
 *     it ever gets some: protobuf-c has no recursion limit);
 *   - more than WIRE_SCAN_MAX_SINGULAR records of unknown fields and of non-repeated
 *     fields met again in the same message instance, in the whole payload (the first
 *     occurrence of each known non-repeated field per instance is free: each of 256 Sheets
 *     of a Batch has its own table_id and version). protobuf-c unpacks a sub-message again
 *     at each repetition of its field and copies each unknown field; with an arena that
 *     frees nothing, "1a 00" repeated (an empty Batch, again and again) costs ~100 bytes of
 *     memory per 2 input bytes;
 *   - more than WIRE_SCAN_MAX_MESSAGES sub-messages in all (repeated or not): each costs
 *     its struct in the arena, ~100 bytes for an empty "3a 00" Sheet; a Batch of 256
 *     sheets or an Ack of 256 SheetResults holds some 260;
 *   - more than WIRE_SCAN_MAX_RECORDS records in all (protobuf-c keeps 32 bytes of scan
 *     state per record: repeated scalars sent unpacked are one record each; packed, as
 *     proto3 encoders and libtally send them, a Batch of any size is a handful).
 * Unknown fields are otherwise accepted (proto3) and not looked into. Pure; allocates
 * nothing. Returns WIRE_OK, or WIRE_ERR_MALFORMED with *why (static text; why may be
 * NULL) saying what was refused. */
#define WIRE_SCAN_MAX_DEPTH 4
#define WIRE_SCAN_MAX_SINGULAR 256
#define WIRE_SCAN_MAX_RECORDS (1u << 18)
#define WIRE_SCAN_MAX_MESSAGES 4096u
enum wire_status wire_message_check(const ProtobufCMessageDescriptor *desc, const uint8_t *buf,
                                    size_t len, const char **why)
    __attribute__((warn_unused_result));

/* What is wrong with a decoded Batch before it reaches the tally, in the order tallyd
 * checks (ERROR_BAD_BATCH for each; wire_batch_fault_name says which). The first four
 * concern every batch; the rest its voting tables (docs/consultation.md, "Per-ballot votes
 * naming their table") and its tally sheets ("Tally sheets"). */
enum wire_batch_fault {
    WIRE_BATCH_OK = 0,
    WIRE_BATCH_MISMATCH = 1,        /* n_ballots != n_projects */
    WIRE_BATCH_TOO_MANY = 2,        /* more than max_votes votes */
    WIRE_BATCH_SEQ_ZERO = 3,        /* seqs start at 1 */
    WIRE_BATCH_NONCE_LONG = 4,      /* nonce over WIRE_NONCE_MAX bytes */
    WIRE_BATCH_TABLES_LEN = 5,      /* vote_tables non-empty and n_vote_tables != n_ballots */
    WIRE_BATCH_TABLE_INDEX = 6,     /* a vote_tables entry past the dictionary (> n_tables) */
    WIRE_BATCH_TABLE_ID = 7,        /* a dictionary id or a sheet's table_id not a table id */
    WIRE_BATCH_TOO_MANY_TABLES = 8, /* n_tables > WIRE_MAX_BATCH_TABLES */
    WIRE_BATCH_MIXED = 9,           /* sheets with ballots, projects, tables or vote_tables */
    WIRE_BATCH_TOO_MANY_SHEETS = 10 /* > WIRE_MAX_BATCH_SHEETS sheets, or > max_votes rows */
};
#define WIRE_MAX_BATCH_TABLES 4096u
#define WIRE_MAX_BATCH_SHEETS 256u
/* The checks a Batch passes before its digest is taken (ingest's on_batch; the fuzz
 * harness holds them to the tally). After the first four: a sheet batch with anything of a
 * ballot batch is WIRE_BATCH_MIXED; then the dictionary's size, vote_tables' length, its
 * indexes and the dictionary's ids; then the number of sheets and of their rows (a sheet's
 * rows: the longer of its projects and votes) and each sheet's table_id. What is wrong
 * inside one sheet (version 0, a project twice, projects and votes of unequal length) is
 * the tally's bad_sheet, not a batch fault. Pure; O(size of the batch). */
enum wire_batch_fault wire_batch_check(const Tally__Batch *b, uint32_t max_votes);

/* A short static phrase naming a fault ("vote_tables and ballots differ in length"), for
 * the ERROR_BAD_BATCH message and logs; "unknown fault" for a value outside the enum. */
const char *wire_batch_fault_name(enum wire_batch_fault fault);

/* A voting table id: the collector id form below, [A-Za-z0-9._-]{1,63}. */
bool wire_table_id_is_valid(const char *id);

/* protocol.h's collector id form, [A-Za-z0-9._-]{1,63}: checked before an id from the
 * wire is looked up, logged or echoed. */
bool wire_collector_id_is_valid(const char *id);

/* Bytes wire_frame_encode will write for f, header included. */
size_t wire_frame_size(const Tally__Frame *f);
/* Writes header + payload into out (wire_frame_size(f) bytes); returns bytes written. */
size_t wire_frame_encode(const Tally__Frame *f, uint8_t *out);

void wire_header_put(uint8_t out[4], uint32_t payload_len);

/* A ProtobufCAllocator that takes memory from arena a and never frees. */
void wire_allocator_init(ProtobufCAllocator *pa, struct arena *a);

/* Human-readable name of an error code, for logs and messages. */
const char *wire_error_name(Tally__ErrorCode code);

#endif
