/* Internal to the store module: reading results too big for one PGresult through a
 * cursor, a chunk of rows at a time in binary format, and decoding the binary values
 * they carry (int8, bytea, one-dimensional int8[]). Shared by convert.c and verify.c;
 * implemented in cursor.c. Decoders check every length and never trust the server's
 * bytes. */
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

/* A binary int8 value. Returns 0 with *out set, or -1 when NULL or not 8 bytes. */
int store_val_int8(const PGresult *r, int row, int col, int64_t *out);

/* A binary bytea (or text) value of *len bytes, borrowed from r (valid until r is
 * cleared); NULL with *len 0 when SQL NULL. */
const uint8_t *store_val_bytes(const PGresult *r, int row, int col, size_t *len);

/* A binary one-dimensional int8[] without NULLs into *buf, owned by the caller (grown
 * with xreallocarray as needed, *cap elements; free it when done). Returns 0 with *n
 * elements, or -1 when NULL or malformed (*buf then holds nothing meaningful). */
int store_val_int8_array(const PGresult *r, int row, int col, int64_t **buf, size_t *cap,
                         size_t *n);

#endif
