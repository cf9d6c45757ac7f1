/* Binary-format reads, whole or chunked through a server-side cursor, and the decoders of
 * the binary values they return (int8, bool, bytea, one-dimensional int8[] and text[]),
 * for the store's readers (cursor.h says who owns what). Opens and ends no transaction:
 * a cursor needs the caller's open. */
#include "store/cursor.h"

#include "store/counts.h"

#include "core/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STORE_OID_INT8_VALUE 20 /* int8 as an array's element type */

PGresult *store_query_rows_binary(struct store *s, const char *sql, const char *what)
{
    PGresult *res = PQexecParams(s->conn, sql, 0, NULL, NULL, NULL, NULL, 1);
    if (PQresultStatus(res) == PGRES_TUPLES_OK)
        return res;
    store_classify(s, res, what);
    PQclear(res);
    return NULL;
}

int store_cursor_open(struct store *s, struct store_cursor *c, const char *name, const char *sql,
                      int chunk, const char *what)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->name, sizeof(c->name), "%s", name);
    snprintf(c->fetch, sizeof(c->fetch), "FETCH FORWARD %d FROM %s", chunk, name);
    size_t len = strlen(sql) + 64;
    char *decl = xcalloc(len, 1);
    snprintf(decl, len, "DECLARE %s NO SCROLL CURSOR FOR %s", name, sql);
    PGresult *res = PQexec(s->conn, decl);
    free(decl);
    int rc = 0;
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        store_classify(s, res, what);
        rc = -1;
    }
    PQclear(res);
    c->open = rc == 0;
    return rc;
}

int store_cursor_next(struct store *s, struct store_cursor *c, const char *what)
{
    if (c->end)
        return 0;
    if (c->res && ++c->row < c->n)
        return 1;
    PQclear(c->res);
    c->res = PQexecParams(s->conn, c->fetch, 0, NULL, NULL, NULL, NULL, 1);
    if (PQresultStatus(c->res) != PGRES_TUPLES_OK) {
        store_classify(s, c->res, what);
        PQclear(c->res);
        c->res = NULL;
        c->end = true;
        return -1;
    }
    c->row = 0;
    c->n = PQntuples(c->res);
    if (c->n == 0) {
        c->end = true;
        return 0;
    }
    return 1;
}

void store_cursor_close(struct store *s, struct store_cursor *c)
{
    PQclear(c->res);
    c->res = NULL;
    if (c->open && PQtransactionStatus(s->conn) == PQTRANS_INTRANS) {
        char sql[64];
        snprintf(sql, sizeof(sql), "CLOSE %s", c->name);
        PQclear(PQexec(s->conn, sql));
    }
    c->open = false;
}

static uint32_t store_be32_get(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t store_be64_get(const uint8_t *p)
{
    return (uint64_t)store_be32_get(p) << 32 | store_be32_get(p + 4);
}

int store_val_int8(const PGresult *r, int row, int col, int64_t *out)
{
    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 8)
        return -1;
    *out = (int64_t)store_be64_get((const uint8_t *)PQgetvalue(r, row, col));
    return 0;
}

int store_val_u64(const PGresult *r, int row, int col, uint64_t max, uint64_t *out)
{
    int64_t v;
    if (store_val_int8(r, row, col, &v) < 0 || v < 0 || (uint64_t)v > max)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

bool store_val_bool(const PGresult *r, int row, int col)
{
    return !PQgetisnull(r, row, col) && PQgetlength(r, row, col) == 1 &&
           PQgetvalue(r, row, col)[0] != 0;
}

const uint8_t *store_val_bytes(const PGresult *r, int row, int col, size_t *len)
{
    if (PQgetisnull(r, row, col)) {
        *len = 0;
        return NULL;
    }
    *len = (size_t)PQgetlength(r, row, col);
    return (const uint8_t *)PQgetvalue(r, row, col);
}

int store_val_int8_array(const PGresult *r, int row, int col, int64_t **buf, size_t *cap, size_t *n)
{
    *n = 0;
    size_t len;
    const uint8_t *p = store_val_bytes(r, row, col, &len);
    if (!p || len < 12)
        return -1;
    uint32_t ndim = store_be32_get(p);
    if (store_be32_get(p + 8) != STORE_OID_INT8_VALUE || ndim > 1)
        return -1;
    if (ndim == 0)
        return 0;
    if (len < 20)
        return -1;
    size_t count = store_be32_get(p + 12);
    /* Each element: a 4-byte length (8; -1 would be NULL) and its 8 bytes. */
    if ((len - 20) / 12 < count || len - 20 != count * 12)
        return -1;
    if (count > *cap) {
        *buf = xreallocarray(*buf, count, sizeof(**buf));
        *cap = count;
    }
    for (size_t i = 0; i < count; i++) {
        const uint8_t *e = p + 20 + 12 * i;
        if (store_be32_get(e) != 8)
            return -1;
        (*buf)[i] = (int64_t)store_be64_get(e + 4);
    }
    *n = count;
    return 0;
}

struct store_pairs {
    uint32_t *pairs;
    size_t n, cap;
};

static int store_pair_put(void *arg, uint32_t id, uint32_t votes)
{
    struct store_pairs *p = arg;
    p->pairs = xgrow(p->pairs, &p->cap, 2 * (p->n + 1), sizeof(*p->pairs));
    p->pairs[2 * p->n] = id;
    p->pairs[2 * p->n + 1] = votes;
    p->n++;
    return 0;
}

int store_val_counts(const PGresult *r, int row, int col, uint32_t **pairs, size_t *n)
{
    size_t len;
    const uint8_t *p = store_val_bytes(r, row, col, &len);
    struct store_pairs acc = {0};
    int rc = store_counts_decode(p ? p : (const uint8_t *)"", len, store_pair_put, &acc);
    *pairs = acc.pairs;
    *n = acc.n;
    return rc < 0 ? -1 : 0;
}

int store_val_int8_pairs(const PGresult *r, int row, int col_a, int col_b, int64_t **a, int64_t **b,
                         size_t *n)
{
    size_t cap_a = 1, cap_b = 1, n_b = 0;
    *a = xcalloc(1, sizeof(**a));
    *b = xcalloc(1, sizeof(**b));
    if (store_val_int8_array(r, row, col_a, a, &cap_a, n) == 0 &&
        store_val_int8_array(r, row, col_b, b, &cap_b, &n_b) == 0 && n_b == *n)
        return 0;
    free(*a);
    free(*b);
    *a = *b = NULL;
    *n = 0;
    return -1;
}

int store_val_text_array(const PGresult *r, int row, int col,
                         int (*each)(void *arg, size_t k, const char *s, size_t len), void *arg)
{
    size_t len;
    const uint8_t *p = store_val_bytes(r, row, col, &len);
    if (!p || len < 12)
        return -1;
    uint32_t ndim = store_be32_get(p), hasnull = store_be32_get(p + 4);
    if (ndim == 0)
        return len == 12 ? 0 : -1;
    if (ndim != 1 || hasnull != 0 || len < 20)
        return -1;
    uint32_t n = store_be32_get(p + 12);
    size_t pos = 20;
    for (uint32_t k = 0; k < n; k++) {
        if (len - pos < 4)
            return -1;
        uint32_t l = store_be32_get(p + pos);
        pos += 4;
        if (l > len - pos) /* also -1 (NULL) */
            return -1;
        int rc = each(arg, k, (const char *)p + pos, l);
        if (rc)
            return rc;
        pos += l;
    }
    return pos == len ? 0 : -1;
}

struct store_strings {
    char **a;
    size_t *n, cap;
};

static int store_string_put(void *arg, size_t k, const char *s, size_t len)
{
    (void)k;
    struct store_strings *st = arg;
    if (memchr(s, '\0', len))
        return -1;
    st->a = xgrow(st->a, &st->cap, *st->n + 1, sizeof(*st->a));
    char *e = xcalloc(len + 1, 1);
    memcpy(e, s, len);
    st->a[(*st->n)++] = e;
    return 0;
}

int store_val_strings(const PGresult *r, int row, int col, char ***out, size_t *n)
{
    *n = 0;
    struct store_strings st = {xcalloc(1, sizeof(char *)), n, 1};
    int rc = store_val_text_array(r, row, col, store_string_put, &st) == 0 ? 0 : -1;
    *out = st.a;
    return rc;
}
