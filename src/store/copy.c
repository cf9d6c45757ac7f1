/* COPY ... FROM STDIN (FORMAT binary) from a row callback: the header, the tuples sent in
 * chunks of about a megabyte (so no load needs all of its rows in memory at once), the
 * trailer, and the COPY's own result; aborted with a message on the first failed row. */
#include "store/copy.h"

#include <stdio.h>

#define COPY_CHUNK (1u << 20)

static enum store_result copy_flush(struct store *s, struct store_bin *b, const char *what)
{
    if (b->len == 0)
        return STORE_OK;
    if (PQputCopyData(s->conn, (const char *)b->data, (int)b->len) != 1) {
        store_set_error(s, "%s: %s", what, PQerrorMessage(s->conn));
        return STORE_RETRY;
    }
    store_bin_reset(b);
    return STORE_OK;
}

enum store_result store_copy_in(struct store *s, const char *sql, const char *what,
                                store_copy_row_cb row, void *arg)
{
    PGresult *res = PQexec(s->conn, sql);
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        enum store_result rc = store_classify(s, res, what);
        PQclear(res);
        return rc;
    }
    PQclear(res);

    struct store_bin b;
    store_bin_init(&b);
    store_bin_copy_header(&b);
    enum store_result rc = STORE_OK;
    const char *abort_msg = NULL;
    for (;;) {
        int got = row(arg, &b, &abort_msg);
        if (got == 0)
            break;
        if (got < 0) {
            rc = STORE_FATAL; /* the input, not the connection: trying again cannot help */
            break;
        }
        if (b.len >= COPY_CHUNK && (rc = copy_flush(s, &b, what)) != STORE_OK)
            break;
    }
    if (rc == STORE_OK) {
        store_bin_copy_trailer(&b);
        rc = copy_flush(s, &b, what);
    }
    if (PQputCopyEnd(s->conn, rc == STORE_OK ? NULL : (abort_msg ? abort_msg : "aborted")) != 1 &&
        rc == STORE_OK) {
        store_set_error(s, "%s: ending COPY: %s", what, PQerrorMessage(s->conn));
        rc = STORE_RETRY;
    }
    while ((res = PQgetResult(s->conn)) != NULL) {
        if (rc == STORE_OK && PQresultStatus(res) != PGRES_COMMAND_OK)
            rc = store_classify(s, res, what);
        PQclear(res);
    }
    store_bin_cleanup(&b);
    return rc;
}
