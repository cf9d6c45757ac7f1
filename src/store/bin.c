/* PostgreSQL binary encodings for COPY BINARY and binary array parameters: big-endian
 * integers, length-prefixed fields, one-dimensional arrays without NULLs. Pure byte
 * building; owns no connection and sends nothing. */
#include "store/bin.h"
#include "store/internal.h"

#include <stdlib.h>
#include <string.h>

void store_bin_init(struct store_bin *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void store_bin_cleanup(struct store_bin *b)
{
    free(b->data);
    store_bin_init(b);
}

void store_bin_reset(struct store_bin *b)
{
    b->len = 0;
}

unsigned char *store_bin_reserve(struct store_bin *b, size_t n)
{
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len < n)
            cap *= 2;
        unsigned char *p = realloc(b->data, cap);
        if (!p)
            abort();
        b->data = p;
        b->cap = cap;
    }
    return b->data + b->len;
}

void store_bin_put(struct store_bin *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    memcpy(store_bin_reserve(b, n), p, n);
    b->len += n;
}

void store_bin_be16(struct store_bin *b, uint16_t v)
{
    unsigned char *p = store_bin_reserve(b, 2);
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
    b->len += 2;
}

void store_bin_be32(struct store_bin *b, uint32_t v)
{
    unsigned char *p = store_bin_reserve(b, 4);
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (24 - 8 * i));
    b->len += 4;
}

void store_bin_be64(struct store_bin *b, uint64_t v)
{
    unsigned char *p = store_bin_reserve(b, 8);
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (56 - 8 * i));
    b->len += 8;
}

void store_bin_copy_header(struct store_bin *b)
{
    static const unsigned char sig[11] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n', 0};
    store_bin_put(b, sig, sizeof(sig));
    store_bin_be32(b, 0); /* flags: no OIDs */
    store_bin_be32(b, 0); /* header extension length */
}

void store_bin_copy_tuple(struct store_bin *b, uint16_t n_fields)
{
    store_bin_be16(b, n_fields);
}

void store_bin_copy_trailer(struct store_bin *b)
{
    store_bin_be16(b, 0xffff);
}

void store_bin_field_int4(struct store_bin *b, int32_t v)
{
    store_bin_be32(b, 4);
    store_bin_be32(b, (uint32_t)v);
}

void store_bin_field_int8(struct store_bin *b, int64_t v)
{
    store_bin_be32(b, 8);
    store_bin_be64(b, (uint64_t)v);
}

void store_bin_field_text(struct store_bin *b, const char *s)
{
    store_bin_field_bytes(b, s, strlen(s));
}

void store_bin_field_bytes(struct store_bin *b, const void *p, size_t n)
{
    store_bin_be32(b, (uint32_t)n);
    store_bin_put(b, p, n);
}

void store_bin_field_tokens_le(struct store_bin *b, const uint64_t *tokens, size_t n)
{
    store_bin_be32(b, (uint32_t)(n * 8));
    unsigned char *p = store_bin_reserve(b, n * 8);
    for (size_t i = 0; i < n; i++)
        le64_put(p + 8 * i, tokens[i]);
    b->len += n * 8;
}

/* Array header: ndim, has-nulls flag, element type, then (size, lower bound) per dim.
 * An empty array has zero dimensions. */
static void bin_array_header(struct store_bin *b, uint32_t elem_oid, size_t n)
{
    store_bin_be32(b, n ? 1 : 0);
    store_bin_be32(b, 0);
    store_bin_be32(b, elem_oid);
    if (n) {
        store_bin_be32(b, (uint32_t)n);
        store_bin_be32(b, 1);
    }
}

static size_t bin_array_size(size_t n, size_t elem_size)
{
    return 12 + (n ? 8 : 0) + n * (4 + elem_size);
}

void store_bin_field_int8_array_u32(struct store_bin *b, const uint32_t *v, size_t n)
{
    store_bin_be32(b, (uint32_t)bin_array_size(n, 8));
    store_bin_array_int8_u32(b, v, n);
}

void store_bin_field_int4_array_u32(struct store_bin *b, const uint32_t *v, size_t n)
{
    store_bin_be32(b, (uint32_t)bin_array_size(n, 4));
    bin_array_header(b, STORE_OID_INT4, n);
    for (size_t i = 0; i < n; i++) {
        store_bin_be32(b, 4);
        store_bin_be32(b, v[i]); /* callers check v[i] <= INT32_MAX */
    }
}

void store_bin_array_int8(struct store_bin *b, const int64_t *v, size_t n)
{
    bin_array_header(b, STORE_OID_INT8, n);
    for (size_t i = 0; i < n; i++) {
        store_bin_be32(b, 8);
        store_bin_be64(b, (uint64_t)v[i]);
    }
}

void store_bin_array_int8_u32(struct store_bin *b, const uint32_t *v, size_t n)
{
    bin_array_header(b, STORE_OID_INT8, n);
    for (size_t i = 0; i < n; i++) {
        store_bin_be32(b, 8);
        store_bin_be64(b, v[i]);
    }
}

void store_bin_array_text(struct store_bin *b, size_t n, const char *(*get)(const void *, size_t),
                          const void *arg)
{
    bin_array_header(b, STORE_OID_TEXT, n);
    for (size_t i = 0; i < n; i++)
        store_bin_field_text(b, get(arg, i));
}

void store_bin_field_null(struct store_bin *b)
{
    store_bin_be32(b, 0xffffffffu); /* length -1: SQL NULL */
}

void store_bin_field_int8_array(struct store_bin *b, const int64_t *v, size_t n)
{
    store_bin_be32(b, (uint32_t)bin_array_size(n, 8));
    store_bin_array_int8(b, v, n);
}

void store_bin_field_int4_array_strided(struct store_bin *b, const uint32_t *v, size_t n,
                                        size_t stride)
{
    store_bin_be32(b, (uint32_t)bin_array_size(n, 4));
    bin_array_header(b, STORE_OID_INT4, n);
    for (size_t i = 0; i < n; i++) {
        store_bin_be32(b, 4);
        store_bin_be32(b, v[i * stride]); /* callers check v <= INT32_MAX */
    }
}

void store_bin_field_int8_array_strided(struct store_bin *b, const uint32_t *v, size_t n,
                                        size_t stride)
{
    store_bin_be32(b, (uint32_t)bin_array_size(n, 8));
    bin_array_header(b, STORE_OID_INT8, n);
    for (size_t i = 0; i < n; i++) {
        store_bin_be32(b, 8);
        store_bin_be64(b, v[i * stride]);
    }
}

void store_bin_field_text_array(struct store_bin *b, size_t n,
                                const char *(*get)(const void *, size_t), const void *arg)
{
    /* The length goes first but is known last: patched in place. */
    size_t at = b->len;
    store_bin_be32(b, 0);
    store_bin_array_text(b, n, get, arg);
    uint32_t len = (uint32_t)(b->len - at - 4);
    b->data[at] = (unsigned char)(len >> 24);
    b->data[at + 1] = (unsigned char)(len >> 16);
    b->data[at + 2] = (unsigned char)(len >> 8);
    b->data[at + 3] = (unsigned char)len;
}
