/* Internal to the store module: reading results in binary format, whole or (too big for
 * one PGresult) through a cursor a chunk of rows at a time, and decoding the binary values
 * they carry (int8, bool, bytea, per-batch counts, one-dimensional int8[] and text[]). Shared by
 * the store's readers; implemented in cursor.c. Decoders check every length and never trust the
 * server's bytes. */
#ifndef STORE_CURSOR_H
#define STORE_CURSOR_H

#include "store/internal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Embedded in the caller (no heap of its own but the current chunk). Only valid inside
 * the transaction it was opened in. */
struct store_cursor {
    char name[32];
    char fetch[64]; /* "FETCH FORWARD <chunk> FROM <name>" */
    PGresult *res;  /* the current chunk, owned by the cursor */
    int row, n;
    bool open, end;
};

/* Declares cursor name for sql (no parameters) in the open transaction; rows then come
 * chunk at a time. c is initialised here (its previous contents are ignored), so
 * store_cursor_close on it is safe even when this fails. Returns 0, or -1 with the error
 * recorded (what names the step). */
int store_cursor_open(struct store *s, struct store_cursor *c, const char *name, const char *sql,
                      int chunk, const char *what) __attribute__((warn_unused_result));

/* Moves to the next row: 1 with c->res / c->row naming it, 0 after the last row, -1 on
 * failure (error recorded). c->res stays owned by the cursor and is valid until the next
 * call or store_cursor_close. */
int store_cursor_next(struct store *s, struct store_cursor *c, const char *what)
    __attribute__((warn_unused_result));

/* Frees the chunk and closes the cursor (errors ignored: a failed transaction is rolled
 * back by the caller anyway). Safe on a zeroed or already closed cursor. */
void store_cursor_close(struct store *s, struct store_cursor *c);

/* Runs a parameterless query expected to return rows, with binary results; NULL on
 * failure, with the error recorded (what names the step), as store_query_rows. A text
 * value of it is still NUL-terminated (libpq adds one), so PQgetvalue reads it. */
PGresult *store_query_rows_binary(struct store *s, const char *sql, const char *what);

/* A binary int8 value. Returns 0 with *out set, or -1 when NULL or not 8 bytes. */
int store_val_int8(const PGresult *r, int row, int col, int64_t *out);

/* A binary int8 value in 0..max. Returns 0 with *out set, or -1 (NULL, not 8 bytes, out
 * of range). */
int store_val_u64(const PGresult *r, int row, int col, uint64_t max, uint64_t *out);

/* A binary bool value: true only when it is true (false when NULL). */
bool store_val_bool(const PGresult *r, int row, int col);

/* A binary bytea (or text) value of *len bytes, borrowed from r (valid until r is
 * cleared); NULL with *len 0 when SQL NULL. */
const uint8_t *store_val_bytes(const PGresult *r, int row, int col, size_t *len);

/* A binary one-dimensional int8[] without NULLs into *buf, owned by the caller (grown
 * with xreallocarray as needed, *cap elements; free it when done). Returns 0 with *n
 * elements, or -1 when NULL or malformed (*buf then holds nothing meaningful). */
int store_val_int8_array(const PGresult *r, int row, int col, int64_t **buf, size_t *cap,
                         size_t *n);

/* A binary bytea of per-batch counts (store/counts.h; SQL NULL reads as none) into
 * *pairs, malloc'd, 2 * *n values (project id, votes), ascending; owned by the caller, also
 * on failure (then the pairs decoded so far; NULL when none). Returns 0, or -1 when the
 * bytes do not decode. */
int store_val_counts(const PGresult *r, int row, int col, uint32_t **pairs, size_t *n);

/* Two binary int8[] columns of one length (a row's ids and their values) into *a and *b,
 * malloc'd (never NULL on success, even when empty) and owned by the caller. Returns 0
 * with *n elements each, or -1 (either malformed, lengths differ) with nothing allocated. */
int store_val_int8_pairs(const PGresult *r, int row, int col_a, int col_b, int64_t **a, int64_t **b,
                         size_t *n);

/* A binary one-dimensional text[] without NULLs (an empty array has no dimension): calls
 * each(arg, k, bytes, len) per element, bytes borrowed from r and not NUL-terminated.
 * Returns 0, -1 when NULL or malformed, or what each returned when not 0. */
int store_val_text_array(const PGresult *r, int row, int col,
                         int (*each)(void *arg, size_t k, const char *s, size_t len), void *arg);

/* A binary text[] as above into *out, a malloc'd array of *n malloc'd strings (never NULL
 * once called, even when empty). Owned by the caller, also on failure: then *n counts the
 * strings made so far. Returns 0, or -1 when malformed or an element holds a NUL. */
int store_val_strings(const PGresult *r, int row, int col, char ***out, size_t *n);

#endif
