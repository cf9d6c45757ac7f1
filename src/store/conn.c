/* One libpq connection per struct store: opening it with safe defaults, closing it, and
 * turning libpq failures into one-line errors classified as retry or fatal. Knows no
 * table; the SQL lives in migrate.c, checkpoint.c, recover.c and admin.c. */
#include "store/internal.h"

#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copies msg into dst as one line: newlines and tabs become spaces, runs of spaces
 * collapse, trailing space goes. libpq messages often span two or three lines. */
static void conn_one_line(char *dst, size_t len, const char *msg)
{
    size_t o = 0;
    bool space = false;
    for (const char *p = msg; *p && o + 1 < len; p++) {
        char c = (*p == '\n' || *p == '\r' || *p == '\t') ? ' ' : *p;
        if (c == ' ') {
            space = o > 0;
            continue;
        }
        if (space && o + 2 < len)
            dst[o++] = ' ';
        space = false;
        dst[o++] = c;
    }
    dst[o] = '\0';
}

void store_set_error(struct store *s, const char *fmt, ...)
{
    char buf[STORE_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    conn_one_line(s->err, sizeof(s->err), buf);
}

/* Server NOTICEs ("relation already exists, skipping") go to the log at debug level,
 * WARNINGs at warn level, instead of libpq's default raw print to stderr. */
static void conn_notice(void *arg, const PGresult *res)
{
    (void)arg;
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    if (!msg)
        return;
    if (sev && strcmp(sev, "WARNING") == 0)
        log_warn("store: PostgreSQL: %s", msg);
    else
        log_debug("store: PostgreSQL %s: %s", sev ? sev : "notice", msg);
}

struct store *store_open(const char *conninfo, char *err, size_t err_len)
{
    /* Defaults come first so anything in conninfo or the environment overrides them
     * (libpq processes keywords in order and keeps the last value). A short connect
     * timeout and TCP keepalives let the worker notice a dead server in seconds, not
     * the kernel's two hours. */
    const char *keys[12];
    const char *vals[12];
    int n = 0;
    if (!getenv("PGCONNECT_TIMEOUT")) {
        keys[n] = "connect_timeout";
        vals[n++] = "5";
    }
    if (!getenv("PGCLIENTENCODING")) {
        keys[n] = "client_encoding";
        vals[n++] = "UTF8";
    }
    keys[n] = "fallback_application_name";
    vals[n++] = "tallyd";
    keys[n] = "keepalives_idle";
    vals[n++] = "10";
    keys[n] = "keepalives_interval";
    vals[n++] = "5";
    keys[n] = "keepalives_count";
    vals[n++] = "3";
    /* Keepalives do not cover data sent and never acknowledged (a COPY into a partition). */
    keys[n] = "tcp_user_timeout";
    vals[n++] = "30000";
    keys[n] = "dbname";
    vals[n++] = conninfo ? conninfo : "";
    keys[n] = NULL;
    vals[n] = NULL;

    struct store *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    s->conn = PQconnectdbParams(keys, vals, 1);
    if (!s->conn) {
        snprintf(err, err_len, "out of memory connecting to PostgreSQL");
        goto fail;
    }
    if (PQstatus(s->conn) != CONNECTION_OK) {
        conn_one_line(err, err_len, PQerrorMessage(s->conn));
        goto fail;
    }
    PQsetNoticeReceiver(s->conn, conn_notice, NULL);
    return s;

fail:
    if (err_len && !err[0])
        snprintf(err, err_len, "cannot connect to PostgreSQL");
    store_close(s);
    return NULL;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    if (s->conn)
        PQfinish(s->conn);
    free(s);
}

const char *store_last_error(const struct store *s)
{
    if (!s)
        return "no connection";
    return s->err[0] ? s->err : "no error";
}

static bool conn_sqlstate_is_transient(const char *state)
{
    /* 08 connection exception, 40 transaction rollback (serialization, deadlock),
     * 53 insufficient resources, 57 operator intervention (shutdown, cannot connect now). */
    static const char *const classes[] = {"08", "40", "53", "57"};
    if (!state || strlen(state) != 5)
        return false;
    for (size_t i = 0; i < sizeof(classes) / sizeof(classes[0]); i++)
        if (strncmp(state, classes[i], 2) == 0)
            return true;
    return false;
}

enum store_result store_classify(struct store *s, const PGresult *res, const char *what)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;

    if (primary)
        store_set_error(s, "%s: %s%s%s%s [SQLSTATE %s]", what, primary, detail ? " (" : "",
                        detail ? detail : "", detail ? ")" : "", state ? state : "?");
    else
        store_set_error(s, "%s: %s", what, PQerrorMessage(s->conn));

    if (PQstatus(s->conn) == CONNECTION_BAD || conn_sqlstate_is_transient(state))
        return STORE_RETRY;
    /* 25006: this server is a standby (the primary failed over and the conninfo reached a
     * replica, or lacks target_session_attrs=read-write). A promotion heals it; a fresh
     * session may reach the new primary. */
    if (state && strcmp(state, "25006") == 0) {
        char msg[STORE_ERR_LEN];
        snprintf(msg, sizeof(msg), "%s", s->err);
        store_set_error(s,
                        "%.400s: the server is read-only (a standby?); list every server in "
                        "--db with target_session_attrs=read-write to follow a failover",
                        msg);
        return STORE_RETRY;
    }
    /* A failure with no SQLSTATE and a live connection is client-side (out of memory,
     * protocol confusion): retrying on a fresh connection is the safe answer. */
    if (!state)
        return STORE_RETRY;
    return STORE_FATAL;
}

enum store_result store_exec_cmd(struct store *s, const char *sql)
{
    PGresult *res = PQexec(s->conn, sql);
    enum store_result rc = STORE_OK;
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        rc = store_classify(s, res, sql);
    PQclear(res);
    return rc;
}

void store_rollback(struct store *s)
{
    if (PQstatus(s->conn) != CONNECTION_OK)
        return;
    if (PQtransactionStatus(s->conn) == PQTRANS_IDLE)
        return;
    PQclear(PQexec(s->conn, "ROLLBACK"));
}

int store_parse_u64(const char *text, uint64_t max, uint64_t *out)
{
    if (!text || *text < '0' || *text > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

PGresult *store_query_rows(struct store *s, const char *sql, const char *what)
{
    PGresult *res = PQexec(s->conn, sql);
    if (PQresultStatus(res) == PGRES_TUPLES_OK)
        return res;
    store_classify(s, res, what);
    PQclear(res);
    return NULL;
}

bool store_connect_error_is_permanent(const char *err)
{
    /* libpq reports connection failures as text only (no SQLSTATE before a session
     * exists), so the server's and libpq's own messages are matched. Anything not listed
     * is retried: a wrong guess there costs waiting, not a stopped tallyd. */
    static const char *const permanent[] = {
        "invalid connection option",
        "missing \"=\" after",
        "invalid URI",
        "invalid integer value",
        "invalid port number",
        "invalid sslmode value",
        "invalid value for parameter",
        "unterminated quoted string",
        "does not exist", /* database "x" / role "x" */
        "authentication failed",
        "no pg_hba.conf entry",
        "password is required",
        "permission denied for database",
        "is not permitted to log in",
        "definition of service",
    };
    for (size_t i = 0; i < sizeof(permanent) / sizeof(permanent[0]); i++)
        if (strstr(err, permanent[i]))
            return true;
    return false;
}

int store_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}
