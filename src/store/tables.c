/* Voting tables for tallyctl load-tables and for whoever reads them (tallyd at start,
 * tallyctl status): the load streams rows into a temporary table with COPY BINARY, finds the
 * first unknown circuit or conflicting row by file line, and inserts the new tables
 * set-based, all in one transaction (as registry.c does for the registry). Owns no parsing:
 * rows come from the caller's iterator. */
#include "store/bin.h"
#include "store/copy.h"
#include "store/internal.h"

#include "core/xalloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The first problem by line (on one line: an unknown circuit first, then the file, then the
 * database). A table's circuit is the registry's circuit area (kind 'circuit', code its id
 * as text, written by registry.c as circuit_id::text): the (kind, code) key finds it. */
static const char tables_conflict_sql[] =
    "WITH ft AS (SELECT DISTINCT ON (id) * FROM tables_in ORDER BY id, line),"
    " conflicts AS ("
    /* a circuit the registry does not have */
    "  SELECT r.line, 1 AS k,"
    "   format('circuit %s is not in the registry (load-registry first)', r.circuit_id) AS msg"
    "  FROM tables_in r LEFT JOIN areas a ON a.kind = 'circuit' AND a.code = r.circuit_id::text"
    "  WHERE a.id IS NULL"
    "  UNION ALL"
    /* a later row of the input disagrees with the first row for the same table */
    "  SELECT r.line, 2, CASE WHEN r.circuit_id <> f.circuit_id"
    "   THEN format('table %s already in circuit %s (line %s), not %s',"
    "               r.id, f.circuit_id, f.line, r.circuit_id)"
    "   ELSE format('table %s already has %s electors (line %s), not %s',"
    "               r.id, f.electors, f.line, r.electors) END"
    "  FROM tables_in r JOIN ft f ON f.id = r.id"
    "  WHERE r.line <> f.line AND (r.circuit_id <> f.circuit_id OR r.electors <> f.electors)"
    "  UNION ALL"
    /* a table the database holds differs */
    "  SELECT r.line, 3, CASE WHEN a.code IS DISTINCT FROM r.circuit_id::text"
    "   THEN format('table %s is in circuit %s, not %s', r.id, a.code, r.circuit_id)"
    "   ELSE format('table %s has %s electors, not %s', r.id, v.electors, r.electors) END"
    "  FROM tables_in r JOIN voting_tables v ON v.id = r.id"
    "  LEFT JOIN areas a ON a.id = v.circuit_area_id"
    "  WHERE a.code IS DISTINCT FROM r.circuit_id::text OR v.electors <> r.electors"
    " )"
    " SELECT line, msg FROM conflicts ORDER BY line, k LIMIT 1";

static const char tables_count_sql[] =
    "SELECT count(*), count(DISTINCT circuit_id), coalesce(sum(electors), 0)"
    " FROM (SELECT DISTINCT ON (id) id, circuit_id, electors FROM tables_in"
    "       ORDER BY id, line) f";

static const char tables_insert_sql[] =
    "INSERT INTO voting_tables (id, circuit_area_id, electors)"
    " SELECT f.id, a.id, f.electors"
    " FROM (SELECT DISTINCT ON (id) id, circuit_id, electors FROM tables_in"
    "       ORDER BY id, line) f"
    " JOIN areas a ON a.kind = 'circuit' AND a.code = f.circuit_id::text"
    " ON CONFLICT (id) DO NOTHING";

/* What the database itself would refuse, said with the row's line instead. */
static bool tables_row_is_valid(const struct store_table *row)
{
    if (!row->id || row->electors > INT32_MAX || row->line > INT64_MAX)
        return false;
    size_t n = strlen(row->id);
    if (n < 1 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = row->id[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

struct tables_rows {
    struct store *s;
    store_tables_next_cb next;
    void *arg;
};

/* One input row into the COPY, checked first. */
static int tables_row(void *arg, struct store_bin *b, const char **abort_msg)
{
    struct tables_rows *t = arg;
    struct store_table row;
    memset(&row, 0, sizeof(row));
    int got = t->next(t->arg, &row);
    if (got < 0) {
        store_set_error(t->s, "voting tables input error");
        *abort_msg = "input error";
    }
    if (got <= 0)
        return got;
    if (!tables_row_is_valid(&row)) {
        store_set_error(t->s, "line %" PRIu64 ": invalid row", row.line);
        *abort_msg = "invalid row";
        return -1;
    }
    store_bin_copy_tuple(b, 4);
    store_bin_field_int8(b, (int64_t)row.line);
    store_bin_field_text(b, row.id);
    store_bin_field_int8(b, row.circuit_id);
    store_bin_field_int4(b, (int32_t)row.electors);
    return 1;
}

/* Streams every row from next() into tables_in. */
static int tables_copy_in(struct store *s, store_tables_next_cb next, void *arg)
{
    struct tables_rows t = {s, next, arg};
    return store_copy_in(
               s, "COPY tables_in (line, id, circuit_id, electors) FROM STDIN (FORMAT binary)",
               "loading voting tables", tables_row, &t) == STORE_OK
               ? 0
               : -1;
}

/* Returns 1 and records the conflict when one exists, 0 when none, -1 on failure. */
static int tables_find_conflict(struct store *s, struct store_tables_summary *sum)
{
    PGresult *res = store_query_rows(s, tables_conflict_sql, "checking voting tables");
    if (!res)
        return -1;
    int rc = 0;
    if (PQntuples(res) == 1) {
        if (store_parse_u64(PQgetvalue(res, 0, 0), UINT64_MAX, &sum->conflict_line) < 0)
            sum->conflict_line = 0;
        store_set_error(s, "%s", PQgetvalue(res, 0, 1));
        rc = 1;
    }
    PQclear(res);
    return rc;
}

static int tables_count_input(struct store *s, struct store_tables_summary *sum)
{
    PGresult *res = store_query_rows(s, tables_count_sql, "counting voting tables");
    if (!res)
        return -1;
    int rc = 0;
    if (store_parse_u64(PQgetvalue(res, 0, 0), UINT64_MAX, &sum->tables) < 0 ||
        store_parse_u64(PQgetvalue(res, 0, 1), UINT64_MAX, &sum->circuits) < 0 ||
        store_parse_u64(PQgetvalue(res, 0, 2), UINT64_MAX, &sum->electors) < 0) {
        store_set_error(s, "bad voting table counts");
        rc = -1;
    }
    PQclear(res);
    return rc;
}

static int tables_insert(struct store *s, struct store_tables_summary *sum)
{
    PGresult *res = PQexec(s->conn, tables_insert_sql);
    int rc = -1;
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        store_classify(s, res, "inserting voting tables");
        goto done;
    }
    if (store_parse_u64(PQcmdTuples(res), UINT64_MAX, &sum->new_tables) < 0)
        sum->new_tables = 0;
    rc = 0;
done:
    PQclear(res);
    return rc;
}

/* Whether voting_tables exists (migration 7): 1, 0, or -1 on failure. */
static int tables_exist(struct store *s)
{
    PGresult *res = store_query_rows(s, "SELECT to_regclass('voting_tables') IS NOT NULL",
                                     "looking for voting_tables");
    if (!res)
        return -1;
    int has = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return has;
}

int store_tables_load(struct store *s, store_tables_next_cb next, void *arg,
                      struct store_tables_summary *sum)
{
    char sql[96];
    memset(sum, 0, sizeof(*sum));
    if (store_exec_cmd(s, "BEGIN") != STORE_OK)
        goto fail;
    /* The registry's lock: a registry load at the same time could add the circuit a table
     * names after the check, or two table loads both see "new" and collide on a key. */
    snprintf(sql, sizeof(sql), "SELECT pg_advisory_xact_lock(%lld)", STORE_LOCK_REGISTRY);
    if (store_exec_cmd(s, sql) != STORE_OK)
        goto fail;
    int exist = tables_exist(s);
    if (exist <= 0) {
        if (exist == 0)
            store_set_error(s, "voting tables need schema version 7 (run tallyctl migrate "
                               "first)");
        goto fail;
    }
    if (store_exec_cmd(s, "SET LOCAL work_mem = '64MB'") != STORE_OK)
        goto fail;
    if (store_exec_cmd(s, "CREATE TEMP TABLE tables_in ("
                          " line bigint NOT NULL, id text NOT NULL, circuit_id bigint NOT NULL,"
                          " electors int NOT NULL) ON COMMIT DROP") != STORE_OK)
        goto fail;
    if (tables_copy_in(s, next, arg) < 0)
        goto fail;
    /* Without statistics the planner may pick nested loops for the self-join below. */
    if (store_exec_cmd(s, "ANALYZE tables_in") != STORE_OK)
        goto fail;
    if (tables_find_conflict(s, sum) != 0)
        goto fail;
    if (tables_count_input(s, sum) < 0 || tables_insert(s, sum) < 0)
        goto fail;
    if (store_exec_cmd(s, "COMMIT") != STORE_OK)
        goto fail;
    return 0;

fail:
    store_rollback(s);
    return -1;
}

int store_tables_read(struct store *s, struct store_table **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    PGresult *res = NULL;
    struct store_table *a = NULL;
    size_t rows = 0;
    int exist = tables_exist(s);
    if (exist < 0)
        goto fail;
    if (exist) {
        /* ORDER BY id COLLATE "C": byte order, whatever the database's collation. */
        res = store_query_rows(s,
                               "SELECT v.id, a.code, v.electors FROM voting_tables v"
                               " JOIN areas a ON a.id = v.circuit_area_id"
                               " ORDER BY v.id COLLATE \"C\"",
                               "reading voting tables");
        if (!res)
            goto fail;
        rows = (size_t)PQntuples(res);
    }
    a = xcalloc(rows ? rows : 1, sizeof(*a));
    for (size_t i = 0; i < rows; i++) {
        uint64_t circuit, electors;
        if (store_parse_u64(PQgetvalue(res, (int)i, 1), UINT32_MAX, &circuit) < 0 ||
            store_parse_u64(PQgetvalue(res, (int)i, 2), INT32_MAX, &electors) < 0) {
            store_set_error(s, "voting table %s: circuit or electors out of range",
                            PQgetvalue(res, (int)i, 0));
            store_tables_free(a, i);
            a = NULL;
            goto fail;
        }
        a[i].id = xstrdup(PQgetvalue(res, (int)i, 0));
        a[i].circuit_id = (uint32_t)circuit;
        a[i].electors = (uint32_t)electors;
    }
    PQclear(res);
    *out = a;
    *n = rows;
    return 0;

fail:
    PQclear(res);
    return -1;
}

void store_tables_free(struct store_table *a, size_t n)
{
    if (!a)
        return;
    for (size_t i = 0; i < n; i++)
        free((char *)a[i].id);
    free(a);
}
