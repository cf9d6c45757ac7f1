/* Versioned schema migrations: applies the embedded migrations (migrations/NNN_*.sql)
 * newer than the database's version, one transaction each, serialised between
 * processes by an advisory lock, with the C step a version may need (converting rows an
 * older schema wrote) in the same transaction; and at tallyd's start, the decision whether
 * to migrate at all (never DDL on a current schema) with the role it runs as. Owns the
 * schema_migrations table, not the SQL itself nor the conversions. */
#include "store/convert.h"
#include "store/internal.h"

#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int store_role_read(struct store *s, char role[64], bool *superuser, bool *owns_schema)
{
    /* pg_has_role(..., 'USAGE'): the role's rights are this session's without SET ROLE;
     * true for a superuser whatever the owner. public's owner is pg_database_owner from
     * PostgreSQL 15 on, whose member is the database's owner. */
    PGresult *res =
        store_query_rows(s,
                         "SELECT current_user, coalesce(r.rolsuper, false),"
                         " coalesce(pg_has_role(current_user, c.relowner, 'USAGE'), false)"
                         " OR coalesce(pg_has_role(current_user, n.nspowner, 'USAGE'), false)"
                         " FROM (SELECT 1) z LEFT JOIN pg_roles r ON r.rolname = current_user"
                         " LEFT JOIN pg_namespace n ON n.nspname = current_schema()"
                         " LEFT JOIN pg_class c ON c.oid = to_regclass('schema_migrations')",
                         "reading this session's role");
    if (!res)
        return -1;
    snprintf(role, 64, "%s", PQgetvalue(res, 0, 0));
    *superuser = PQgetvalue(res, 0, 1)[0] == 't';
    *owns_schema = PQgetvalue(res, 0, 2)[0] == 't';
    PQclear(res);
    return 0;
}

static enum store_result migrate_behind(struct store *s, int version, const char *why)
{
    char reason[STORE_ERR_LEN];
    snprintf(reason, sizeof(reason), "%s", why ? why : "");
    store_set_error(s,
                    "schema is at version %d, this build needs %zu: run `tallyctl migrate` as "
                    "the schema owner%s%.300s%s",
                    version, store_n_migrations, reason[0] ? " (" : "", reason,
                    reason[0] ? ")" : "");
    return STORE_FATAL;
}

/* The schema version told from the catalog, which every role may read, for a role that
 * may not read schema_migrations (granted to tally_writer by migration 6 only): what each
 * migration left that the next ones keep. *older: "version or older". */
static int migrate_guess_version(struct store *s, bool *older)
{
    PGresult *res = store_query_rows(
        s,
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid ="
        " to_regclass('collectors') AND attname = 'cert_pin' AND NOT attisdropped) THEN 6"
        " WHEN to_regclass('project_votes') IS NOT NULL THEN 5"
        " WHEN to_regclass('writer') IS NOT NULL THEN 4 ELSE 3 END",
        "reading the schema from the catalog");
    if (!res)
        return -1;
    int v = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    *older = v == 3;
    return v;
}

enum store_result store_migrate_at_start(struct store *s, bool may_migrate)
{
    int version = 0;
    if (store_schema_version(s, &version) < 0) {
        if (PQstatus(s->conn) == CONNECTION_BAD)
            return STORE_RETRY;
        if (may_migrate || !strstr(s->err, "[SQLSTATE 42501]"))
            return STORE_FATAL;
        bool older = false;
        char why[STORE_ERR_LEN];
        snprintf(why, sizeof(why), "%s", s->err);
        if ((version = migrate_guess_version(s, &older)) < 0)
            return STORE_FATAL;
        if (version >= (int)store_n_migrations) {
            store_set_error(s,
                            "%.300s: this role lacks tally_writer's rights; run `tallyctl "
                            "migrate` as the schema owner (it grants them) and make the login "
                            "a member of tally_writer",
                            why);
            return STORE_FATAL;
        }
        store_set_error(s,
                        "schema is at version %d%s, this build needs %zu: run `tallyctl "
                        "migrate` as the schema owner",
                        version, older ? " or older" : "", store_n_migrations);
        return STORE_FATAL;
    }
    if (version == (int)store_n_migrations)
        return STORE_OK; /* no DDL: a tally_writer login starts as any other */
    if (version > (int)store_n_migrations) {
        store_set_error(s, "database schema version %d is newer than this build knows (%zu)",
                        version, store_n_migrations);
        return STORE_FATAL;
    }
    if (!may_migrate)
        return migrate_behind(s, version, "this role neither owns the schema nor is a superuser");
    if (store_migrate(s) == 0)
        return STORE_OK;
    if (PQstatus(s->conn) == CONNECTION_BAD)
        return STORE_RETRY;
    /* 42501 insufficient_privilege: "must be owner of table ...", "permission denied for
     * schema ...". */
    if (strstr(s->err, "[SQLSTATE 42501]")) {
        char why[STORE_ERR_LEN];
        snprintf(why, sizeof(why), "%s", s->err);
        return migrate_behind(s, version, why);
    }
    return STORE_FATAL;
}
