/* Chunked reads through a server-side cursor and the decoders of the binary values they
 * return (int8, bytea, one-dimensional int8[]), for convert.c and verify.c (cursor.h
 * says who owns what). Opens and ends no transaction: the caller's must be open. */
#include "store/cursor.h"

#include "core/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STORE_OID_INT8_VALUE 20 /* int8 as an array's element type */

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
