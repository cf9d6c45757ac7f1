/* Internal to the store module: PostgreSQL binary wire encodings (COPY BINARY tuples and
 * binary array parameters) built into a growable buffer. */
#ifndef STORE_BIN_H
#define STORE_BIN_H

#include <stddef.h>
#include <stdint.h>

/* Type OIDs of the built-in types we send in binary (pg_type.dat; stable across versions). */
#define STORE_OID_BYTEA 17
#define STORE_OID_INT8 20
#define STORE_OID_INT4 23
#define STORE_OID_TEXT 25
#define STORE_OID_INT8_ARRAY 1016
#define STORE_OID_TEXT_ARRAY 1009

struct store_bin {
    unsigned char *data;
    size_t len, cap;
};

void store_bin_init(struct store_bin *b);
void store_bin_cleanup(struct store_bin *b);
/* Empties the buffer, keeping its memory. */
void store_bin_reset(struct store_bin *b);
/* Makes room for n more bytes and returns where they go; aborts when memory runs out. */
unsigned char *store_bin_reserve(struct store_bin *b, size_t n);

void store_bin_put(struct store_bin *b, const void *p, size_t n);
void store_bin_be16(struct store_bin *b, uint16_t v);
void store_bin_be32(struct store_bin *b, uint32_t v);
void store_bin_be64(struct store_bin *b, uint64_t v);

/* COPY ... (FORMAT binary): the file header, a tuple's field count, fields and trailer. */
void store_bin_copy_header(struct store_bin *b);
void store_bin_copy_tuple(struct store_bin *b, uint16_t n_fields);
void store_bin_copy_trailer(struct store_bin *b);
/* A field: its 4-byte length then the value. */
void store_bin_field_int4(struct store_bin *b, int32_t v);
void store_bin_field_int8(struct store_bin *b, int64_t v);
void store_bin_field_text(struct store_bin *b, const char *s);
void store_bin_field_bytes(struct store_bin *b, const void *p, size_t n);
/* A bytea field holding n tokens as little-endian uint64s. */
void store_bin_field_tokens_le(struct store_bin *b, const uint64_t *tokens, size_t n);
/* int8[] / int4[] fields from uint32 values (one dimension, no NULLs). */
void store_bin_field_int8_array_u32(struct store_bin *b, const uint32_t *v, size_t n);
void store_bin_field_int4_array_u32(struct store_bin *b, const uint32_t *v, size_t n);

/* A NULL field. */
void store_bin_field_null(struct store_bin *b);
/* An int8[] field from int64 values. */
void store_bin_field_int8_array(struct store_bin *b, const int64_t *v, size_t n);
/* int4[] / int8[] fields of n uint32 values v[0], v[stride], v[2 * stride], ... (one column
 * of interleaved pairs). */
void store_bin_field_int4_array_strided(struct store_bin *b, const uint32_t *v, size_t n,
                                        size_t stride);
void store_bin_field_int8_array_strided(struct store_bin *b, const uint32_t *v, size_t n,
                                        size_t stride);
/* A text[] field of n strings read through get(arg, i). */
void store_bin_field_text_array(struct store_bin *b, size_t n,
                                const char *(*get)(const void *, size_t), const void *arg);

/* Bare binary arrays (a parameter's whole value, no length prefix). Values are taken as
 * they come; callers check ranges (int8 holds every value below 2^63). */
void store_bin_array_int8(struct store_bin *b, const int64_t *v, size_t n);
void store_bin_array_int8_u32(struct store_bin *b, const uint32_t *v, size_t n);
/* n strings, each read through get(arg, i). */
void store_bin_array_text(struct store_bin *b, size_t n, const char *(*get)(const void *, size_t),
                          const void *arg);

#endif
