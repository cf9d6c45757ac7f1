/* The single-writer lock and epoch: the session-level advisory lock a writing tallyd holds
 * for its life, the writer row that names who took it and the epoch every checkpoint
 * checks. Owns that SQL; the decision to wait, retry or stop is worker.c's. */
#include "store/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WRITER_KEY_HI ((uint64_t)STORE_LOCK_WRITER >> 32)
#define WRITER_KEY_LO ((uint64_t)STORE_LOCK_WRITER & 0xffffffffu)

/* The backend holding the writer lock of this database, or 0. */
static int writer_backend(struct store *s)
{
    char sql[400];
    snprintf(sql, sizeof(sql),
             "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
             " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
             " AND classid::bigint = %" PRIu64 " AND objid::bigint = %" PRIu64
             " AND objsubid = 1 LIMIT 1",
             WRITER_KEY_HI, WRITER_KEY_LO);
    PGresult *res = PQexec(s->conn, sql);
    int pid = 0;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
        pid = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    return pid;
}

enum store_result store_writer_read(struct store *s, struct store_holder *h)
{
    memset(h, 0, sizeof(*h));
    /* Before migration 4 there is no writer row: nothing is known of a holder. */
    PGresult *res = PQexec(s->conn, "SELECT to_regclass('writer') IS NOT NULL");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        enum store_result rc = store_classify(s, res, "reading the writer row");
        PQclear(res);
        return rc;
    }
    bool have = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (!have)
        return STORE_OK;
    res = PQexec(s->conn, "SELECT epoch, coalesce(host, ''), coalesce(pid, 0),"
                          " coalesce(to_char(since AT TIME ZONE 'UTC',"
                          " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''),"
                          " coalesce(extract(epoch FROM since)::bigint, 0) FROM writer");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        enum store_result rc = store_classify(s, res, "reading the writer row");
        PQclear(res);
        return rc;
    }
    if (PQntuples(res) == 1) {
        store_parse_u64(PQgetvalue(res, 0, 0), INT64_MAX, &h->epoch);
        snprintf(h->host, sizeof(h->host), "%s", PQgetvalue(res, 0, 1));
        h->pid = atoi(PQgetvalue(res, 0, 2));
        snprintf(h->since, sizeof(h->since), "%s", PQgetvalue(res, 0, 3));
        h->since_unix = strtoll(PQgetvalue(res, 0, 4), NULL, 10);
    }
    PQclear(res);
    return STORE_OK;
}

int store_writer_try_lock(struct store *s, struct store_holder *holder)
{
    char sql[80];
    snprintf(sql, sizeof(sql), "SELECT pg_try_advisory_lock(%lld)", STORE_LOCK_WRITER);
    PGresult *res = PQexec(s->conn, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        int rc = store_classify(s, res, "taking the writer lock");
        PQclear(res);
        return rc;
    }
    bool taken = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (taken)
        return 1;
    enum store_result rc = store_writer_read(s, holder);
    if (rc != STORE_OK)
        return rc;
    holder->backend_pid = writer_backend(s);
    return 0;
}

enum store_result store_writer_take_over(struct store *s, const char *host, int pid,
                                         uint64_t *epoch)
{
    char pid_text[16];
    snprintf(pid_text, sizeof(pid_text), "%d", pid);
    const char *params[2] = {host, pid_text};
    PGresult *res = PQexecParams(s->conn,
                                 "UPDATE writer SET epoch = epoch + 1, host = $1, pid = $2::int,"
                                 " since = now() RETURNING epoch",
                                 2, NULL, params, NULL, NULL, 0);
    enum store_result rc = STORE_OK;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = store_classify(s, res, "taking over as the writer");
    } else if (PQntuples(res) != 1 ||
               store_parse_u64(PQgetvalue(res, 0, 0), INT64_MAX, epoch) < 0) {
        store_set_error(s, "the writer row is missing (run migrations)");
        rc = STORE_FATAL;
    }
    PQclear(res);
    return rc;
}

void store_holder_describe(const struct store_holder *h, char *buf, size_t len)
{
    int o = 0;
    if (h->host[0] || h->pid)
        o = snprintf(buf, len, "tallyd on host %.64s pid %d since %.39s (epoch %" PRIu64 ")",
                     h->host[0] ? h->host : "?", h->pid, h->since[0] ? h->since : "?", h->epoch);
    else
        o = snprintf(buf, len, "a session that is not a known tallyd");
    if (o >= 0 && (size_t)o < len && h->backend_pid)
        snprintf(buf + o, len - (size_t)o, ", PostgreSQL backend %d", h->backend_pid);
}

void store_writer_holder(const char *conninfo, char *buf, size_t len)
{
    buf[0] = '\0';
    char err[STORE_ERR_LEN];
    struct store *s = store_open(conninfo, err, sizeof(err));
    if (!s)
        return;
    struct store_holder h;
    /* Taken means nobody held it; closing the session releases it again. */
    if (store_writer_try_lock(s, &h) == 0) {
        char who[200];
        store_holder_describe(&h, who, sizeof(who));
        snprintf(buf, len, "the writer lock of this database is held by %s", who);
    }
    store_close(s);
}
