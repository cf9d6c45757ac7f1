/* The PostgreSQL server the benchmark uses: a scratch cluster made with tests/pg.sh in the
 * scratch directory (stopped and deleted at the end), or the server --db names. Each peer
 * gets a fresh database on it. Owns no tables: the peers do. */
#include "bench.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

static int read_line(const char *path, char *out, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    if (!fgets(out, (int)len, f)) {
        fclose(f);
        return -1;
    }
    fclose(f);
    out[strcspn(out, "\r\n")] = 0;
    return 0;
}

int pg_env_start(struct pg_env *e, const struct bench_opts *o, const char *workdir)
{
    memset(e, 0, sizeof(*e));
    e->pg_sh = o->pg_sh_path;
    if (o->db) {
        snprintf(e->admin_conninfo, sizeof(e->admin_conninfo), "%s", o->db);
    } else {
        snprintf(e->dir, sizeof(e->dir), "%s/pg", workdir);
        snprintf(e->log, sizeof(e->log), "%s/pg.log", workdir);
        progress("setup", "starting a scratch PostgreSQL in %s (tests/pg.sh)", e->dir);
        char *argv[] = {"/bin/bash", (char *)e->pg_sh, "start", e->dir, NULL};
        int rc = proc_run(argv, e->log, 180000);
        if (rc != 0) {
            fprintf(stderr, "tally-bench: %s start failed (exit %d)\n", e->pg_sh, rc);
            file_tail(e->log, 30);
            pg_env_stop(e);
            return -1;
        }
        char path[1200];
        snprintf(path, sizeof(path), "%s/conninfo", e->dir);
        if (read_line(path, e->admin_conninfo, sizeof(e->admin_conninfo)) != 0) {
            fprintf(stderr, "tally-bench: %s wrote no conninfo\n", e->pg_sh);
            pg_env_stop(e);
            return -1;
        }
    }
    PGconn *c = PQconnectdb(e->admin_conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "tally-bench: cannot connect to PostgreSQL (%s): %s", e->admin_conninfo,
                PQerrorMessage(c));
        PQfinish(c);
        pg_env_stop(e);
        return -1;
    }
    PQfinish(c);
    return 0;
}

void pg_env_stop(struct pg_env *e)
{
    if (!e->dir[0])
        return;
    progress("setup", "stopping the scratch PostgreSQL");
    char *argv[] = {"/bin/bash", (char *)e->pg_sh, "stop", e->dir, NULL};
    if (proc_run(argv, e->log, 120000) != 0)
        fprintf(stderr, "tally-bench: %s stop %s failed; see %s\n", e->pg_sh, e->dir, e->log);
    e->dir[0] = 0;
}

/* "database ... does not exist, skipping" and the like: not worth a line on stderr. */
static void notice_quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static int admin_exec(struct pg_env *e, const char *sql)
{
    PGconn *c = PQconnectdb(e->admin_conninfo);
    int rc = -1;
    PQsetNoticeProcessor(c, notice_quiet, NULL);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "tally-bench: PostgreSQL: %s", PQerrorMessage(c));
    } else {
        PGresult *res = PQexec(c, sql);
        if (PQresultStatus(res) == PGRES_COMMAND_OK)
            rc = 0;
        else
            fprintf(stderr, "tally-bench: %s: %s", sql, PQerrorMessage(c));
        PQclear(res);
    }
    PQfinish(c);
    return rc;
}

/* Appends key='value' to out, quoted as libpq's conninfo syntax wants. */
static void conninfo_add(char *out, size_t len, const char *key, const char *val)
{
    size_t n = strlen(out);
    n += (size_t)snprintf(out + n, n < len ? len - n : 0, "%s%s='", n ? " " : "", key);
    for (const char *p = val; *p && n + 3 < len; p++) {
        if (*p == '\'' || *p == '\\')
            out[n++] = '\\';
        out[n++] = *p;
    }
    if (n + 2 < len) {
        out[n++] = '\'';
        out[n] = 0;
    }
}

int pg_db_create(struct pg_env *e, const char *name, char *conninfo, size_t len)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    if (admin_exec(e, sql) != 0)
        return -1;
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
    if (admin_exec(e, sql) != 0)
        return -1;
    /* The same server and credentials, another database: rebuild the conninfo from its
     * parsed options (works for URIs and key=value strings alike). */
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(e->admin_conninfo, &err);
    if (!opts) {
        fprintf(stderr, "tally-bench: bad conninfo: %s\n", err ? err : "?");
        PQfreemem(err);
        return -1;
    }
    conninfo[0] = 0;
    for (PQconninfoOption *p = opts; p->keyword; p++) {
        if (strcmp(p->keyword, "dbname") == 0 || !p->val || !p->val[0])
            continue;
        conninfo_add(conninfo, len, p->keyword, p->val);
    }
    conninfo_add(conninfo, len, "dbname", name);
    PQconninfoFree(opts);
    return 0;
}

void pg_db_drop(struct pg_env *e, const char *name)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    admin_exec(e, sql);
}

bool pg_check_counts(const struct workload *w, const uint64_t *truth, const PGresult *res,
                     char *why, size_t why_len)
{
    size_t n = (size_t)PQntuples(res);
    uint32_t *ids = calloc(n + 1, sizeof(uint32_t));
    uint64_t *votes = calloc(n + 1, sizeof(uint64_t));
    if (!ids || !votes)
        abort();
    for (size_t i = 0; i < n; i++) {
        ids[i] = (uint32_t)strtoul(PQgetvalue(res, (int)i, 0), NULL, 10);
        votes[i] = strtoull(PQgetvalue(res, (int)i, 1), NULL, 10);
    }
    bool ok = wl_check(w, truth, ids, votes, n, why, why_len);
    free(ids);
    free(votes);
    return ok;
}
