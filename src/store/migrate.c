/* Versioned schema migrations: applies the embedded migrations (migrations/NNN_*.sql)
 * newer than the database's version, one transaction each, serialised between
 * processes by an advisory lock, with the C step a version may need (converting rows an
 * older schema wrote) in the same transaction. Owns the schema_migrations table, not the
 * SQL itself nor the conversions. */
#include "store/convert.h"
#include "store/internal.h"

#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>

/* Work that SQL alone cannot do, run after version's SQL and before it is recorded: a
 * failure rolls the whole migration back. */
static const struct {
    int version;
    int (*run)(struct store *s);
} migrate_c_steps[] = {
    {4, store_convert_v4},
};

/* Statements run after version committed, outside any transaction (VACUUM cannot run in
 * one); a failure is logged, not fatal: the migration itself stands. */
static const struct {
    int version;
    const char *sql;
    const char *why;
} migrate_after[] = {
    /* DROP COLUMN only hides a column: every old row keeps its tokens and counts in the
     * table's files (heap and TOAST) until the row is rewritten. A rewrite now takes the
     * old link between tokens and choices out of the live files (WAL and backups keep
     * it: docs/record.md). */
    {5, "VACUUM (FULL) batches",
     "the dropped token and count columns stay in batches' files until it runs"},
};

static void migrate_run_after(struct store *s, int version)
{
    for (size_t i = 0; i < sizeof(migrate_after) / sizeof(migrate_after[0]); i++) {
        if (migrate_after[i].version != version)
            continue;
        if (store_exec_cmd(s, migrate_after[i].sql) != STORE_OK)
            log_warn("store: after migration %d: %s; %s (docs/record.md)", version,
                     store_last_error(s), migrate_after[i].why);
    }
}

static int migrate_run_c_step(struct store *s, int version)
{
    for (size_t i = 0; i < sizeof(migrate_c_steps) / sizeof(migrate_c_steps[0]); i++)
        if (migrate_c_steps[i].version == version)
            return migrate_c_steps[i].run(s);
    return 0;
}

/* Reads the applied version inside the current transaction (0 when none). */
static enum store_result migrate_read_version(struct store *s, int *version)
{
    enum store_result rc = STORE_OK;
    PGresult *res = PQexec(s->conn, "SELECT coalesce(max(version), 0) FROM schema_migrations");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = store_classify(s, res, "reading schema version");
        goto done;
    }
    *version = atoi(PQgetvalue(res, 0, 0));
done:
    PQclear(res);
    return rc;
}

/* Applies migration m if the database is exactly one version behind it. */
static int migrate_step(struct store *s, const struct store_migration *m, bool *applied)
{
    char sql[160];
    int version = 0;
    *applied = false;
    if (store_exec_cmd(s, "BEGIN") != STORE_OK)
        goto fail;
    snprintf(sql, sizeof(sql), "SELECT pg_advisory_xact_lock(%lld)", STORE_LOCK_MIGRATE);
    if (store_exec_cmd(s, sql) != STORE_OK)
        goto fail;
    /* Under the lock, so two processes never race on creating it. */
    if (store_exec_cmd(s, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                          " version int PRIMARY KEY,"
                          " name text NOT NULL,"
                          " applied_at timestamptz NOT NULL DEFAULT now())") != STORE_OK)
        goto fail;
    if (migrate_read_version(s, &version) != STORE_OK)
        goto fail;
    if (version > (int)store_n_migrations) {
        store_set_error(s, "database schema version %d is newer than this build knows (%zu)",
                        version, store_n_migrations);
        goto fail;
    }
    if (version < m->version) {
        PGresult *res = PQexec(s->conn, m->sql);
        if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
            char what[96];
            snprintf(what, sizeof(what), "migration %d (%s)", m->version, m->name);
            store_classify(s, res, what);
            PQclear(res);
            goto fail;
        }
        PQclear(res);
        if (migrate_run_c_step(s, m->version) < 0) {
            char why[STORE_ERR_LEN];
            snprintf(why, sizeof(why), "%s", s->err);
            store_set_error(s, "migration %d (%s): %s", m->version, m->name, why);
            goto fail;
        }
        char v[16];
        snprintf(v, sizeof(v), "%d", m->version);
        const char *params[2] = {v, m->name};
        res = PQexecParams(s->conn, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                           2, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            store_classify(s, res, "recording migration");
            PQclear(res);
            goto fail;
        }
        PQclear(res);
        *applied = true;
    }
    if (store_exec_cmd(s, "COMMIT") != STORE_OK)
        goto fail;
    return 0;

fail:
    store_rollback(s);
    return -1;
}

int store_migrate(struct store *s)
{
    return store_migrate_to(s, (int)store_n_migrations);
}

int store_migrate_to(struct store *s, int target)
{
    if (target < 0 || target > (int)store_n_migrations) {
        store_set_error(s, "no schema version %d: this build knows versions 0 to %zu", target,
                        store_n_migrations);
        return -1;
    }
    for (size_t i = 0; i < store_n_migrations && store_migrations[i].version <= target; i++) {
        const struct store_migration *m = &store_migrations[i];
        bool applied;
        if (migrate_step(s, m, &applied) < 0)
            return -1;
        if (applied) {
            log_info("store: applied schema migration %d (%s)", m->version, m->name);
            migrate_run_after(s, m->version);
        }
    }
    return 0;
}

int store_schema_version(struct store *s, int *version)
{
    int rc = -1;
    *version = 0;
    PGresult *res = PQexec(s->conn, "SELECT to_regclass('schema_migrations') IS NOT NULL");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        store_classify(s, res, "reading schema version");
        goto done;
    }
    if (PQgetvalue(res, 0, 0)[0] != 't') {
        rc = 0;
        goto done;
    }
    PQclear(res);
    res = PQexec(s->conn, "SELECT coalesce(max(version), 0) FROM schema_migrations");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        store_classify(s, res, "reading schema version");
        goto done;
    }
    *version = atoi(PQgetvalue(res, 0, 0));
    rc = 0;
done:
    PQclear(res);
    return rc;
}

int store_schema_latest(void)
{
    return (int)store_n_migrations;
}
