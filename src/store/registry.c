/* Registry import for tallyctl: streams rows into a temporary table with COPY BINARY,
 * finds the first conflicting row (within the input or against the database) by file
 * line, and inserts states, circuits, projects (with min_votes from migration 7 on) and
 * their zero tallies set-based, all in one transaction. Owns no parsing: rows come from the
 * caller's iterator. */
#include "store/bin.h"
#include "store/copy.h"
#include "store/internal.h"

#include "core/xalloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The conflict query in three parts around the projects the database holds: the table
 * itself, or before migration 7 (no min_votes column) a view of it whose min_votes is 0. */
static const char reg_conflict_sql_a[] =
    "WITH fp AS (SELECT DISTINCT ON (project_id) * FROM registry_in ORDER BY project_id, line),"
    " fc AS (SELECT DISTINCT ON (circuit_id) * FROM registry_in ORDER BY circuit_id, line),"
    " conflicts AS ("
    /* a later row of the input disagrees with the first row for the same project */
    "  SELECT r.line, CASE WHEN r.circuit_id <> f.circuit_id"
    "   THEN format('project %s already in circuit %s (line %s), not %s',"
    "               r.project_id, f.circuit_id, f.line, r.circuit_id)"
    "   WHEN r.project_name <> f.project_name"
    "   THEN format('project %s already named \"%s\" (line %s), not \"%s\"',"
    "               r.project_id, f.project_name, f.line, r.project_name)"
    "   ELSE format('project %s already has min_votes %s (line %s), not %s',"
    "               r.project_id, f.min_votes, f.line, r.min_votes) END AS msg"
    "  FROM registry_in r JOIN fp f ON f.project_id = r.project_id"
    "  WHERE r.line <> f.line AND (r.circuit_id <> f.circuit_id"
    "    OR r.project_name <> f.project_name OR r.min_votes <> f.min_votes)"
    "  UNION ALL"
    /* ... or with the first row for the same circuit */
    "  SELECT r.line, CASE WHEN r.state <> f.state"
    "   THEN format('circuit %s already in state \"%s\" (line %s), not \"%s\"',"
    "               r.circuit_id, f.state, f.line, r.state)"
    "   WHEN r.seats <> f.seats"
    "   THEN format('circuit %s already has %s seats (line %s), not %s',"
    "               r.circuit_id, f.seats, f.line, r.seats)"
    "   ELSE format('circuit %s already named \"%s\" (line %s), not \"%s\"',"
    "               r.circuit_id, f.circuit_name, f.line, r.circuit_name) END"
    "  FROM registry_in r JOIN fc f ON f.circuit_id = r.circuit_id"
    "  WHERE r.line <> f.line"
    "    AND (r.state <> f.state OR r.seats <> f.seats OR r.circuit_name <> f.circuit_name)"
    "  UNION ALL"
    /* a project already in the database differs */
    "  SELECT r.line, CASE WHEN c.circuit_id IS DISTINCT FROM r.circuit_id"
    "   THEN format('project %s already in circuit %s, not %s',"
    "               r.project_id, c.circuit_id, r.circuit_id)"
    "   WHEN p.name <> r.project_name"
    "   THEN format('project %s already named \"%s\", not \"%s\"',"
    "               r.project_id, p.name, r.project_name)"
    "   ELSE format('project %s already has min_votes %s, not %s',"
    "               r.project_id, p.min_votes, r.min_votes) END"
    "  FROM registry_in r JOIN ";
static const char reg_projects_now[] = "projects";
static const char reg_projects_v6[] =
    "(SELECT id, name, circuit_area_id, 0::bigint AS min_votes FROM projects)";
static const char reg_conflict_sql_b[] =
    " p ON p.id = r.project_id"
    "  JOIN circuits c ON c.area_id = p.circuit_area_id"
    "  WHERE c.circuit_id IS DISTINCT FROM r.circuit_id OR p.name <> r.project_name"
    "    OR p.min_votes <> r.min_votes"
    "  UNION ALL"
    /* a circuit already in the database differs */
    "  SELECT r.line, CASE WHEN c.state IS DISTINCT FROM r.state"
    "   THEN format('circuit %s already in state \"%s\", not \"%s\"',"
    "               r.circuit_id, c.state, r.state)"
    "   WHEN c.seats <> r.seats"
    "   THEN format('circuit %s already has %s seats, not %s', r.circuit_id, c.seats, r.seats)"
    "   ELSE format('circuit %s already named \"%s\", not \"%s\"',"
    "               r.circuit_id, c.name, r.circuit_name) END"
    "  FROM registry_in r JOIN circuits c ON c.circuit_id = r.circuit_id"
    "  WHERE c.state IS DISTINCT FROM r.state OR c.seats <> r.seats OR c.name <> r.circuit_name"
    " )"
    " SELECT line, msg FROM conflicts ORDER BY line LIMIT 1";

static const char reg_states_sql[] = "INSERT INTO areas (kind, code, name)"
                                     " SELECT DISTINCT 'state', state, state FROM registry_in"
                                     " ON CONFLICT (kind, code) DO NOTHING";

static const char reg_circuits_sql[] =
    "INSERT INTO areas (kind, code, name, parent_id, seats)"
    " SELECT 'circuit', f.circuit_id::text, f.circuit_name, st.id, f.seats"
    " FROM (SELECT DISTINCT ON (circuit_id) circuit_id, circuit_name, state, seats"
    "       FROM registry_in ORDER BY circuit_id, line) f"
    " JOIN areas st ON st.kind = 'state' AND st.code = f.state"
    " ON CONFLICT (kind, code) DO NOTHING";

static const char reg_projects_sql[] =
    "WITH np AS ("
    "  INSERT INTO projects (id, name, circuit_area_id, min_votes)"
    "  SELECT f.project_id, f.project_name, c.id, f.min_votes"
    "  FROM (SELECT DISTINCT ON (project_id) project_id, project_name, circuit_id, min_votes"
    "        FROM registry_in ORDER BY project_id, line) f"
    "  JOIN areas c ON c.kind = 'circuit' AND c.code = f.circuit_id::text"
    "  ON CONFLICT (id) DO NOTHING RETURNING id)"
    " INSERT INTO tallies (project_id) SELECT id FROM np ON CONFLICT DO NOTHING";

/* Before migration 7 (every min_votes is 0 by then: reg_min_votes_unsupported). */
static const char reg_projects_v6_sql[] =
    "WITH np AS ("
    "  INSERT INTO projects (id, name, circuit_area_id)"
    "  SELECT f.project_id, f.project_name, c.id"
    "  FROM (SELECT DISTINCT ON (project_id) project_id, project_name, circuit_id"
    "        FROM registry_in ORDER BY project_id, line) f"
    "  JOIN areas c ON c.kind = 'circuit' AND c.code = f.circuit_id::text"
    "  ON CONFLICT (id) DO NOTHING RETURNING id)"
    " INSERT INTO tallies (project_id) SELECT id FROM np ON CONFLICT DO NOTHING";

/* Runs a statement and stores its affected-row count in *count (if not NULL). */
static int reg_exec_count(struct store *s, const char *sql, const char *what, uint64_t *count)
{
    PGresult *res = PQexec(s->conn, sql);
    int rc = -1;
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        store_classify(s, res, what);
        goto done;
    }
    if (count && store_parse_u64(PQcmdTuples(res), UINT64_MAX, count) < 0)
        *count = 0;
    rc = 0;
done:
    PQclear(res);
    return rc;
}

struct reg_rows {
    struct store *s;
    store_registry_next_cb next;
    void *arg;
};

/* One input row into the COPY, checked first. */
static int reg_row(void *arg, struct store_bin *b, const char **abort_msg)
{
    struct reg_rows *g = arg;
    struct store_registry_row row;
    memset(&row, 0, sizeof(row));
    int got = g->next(g->arg, &row);
    if (got < 0) {
        store_set_error(g->s, "registry input error");
        *abort_msg = "input error";
    }
    if (got <= 0)
        return got;
    if (row.seats < 1 || row.seats > INT32_MAX || row.min_votes > INT32_MAX || !row.project_name ||
        !row.circuit_name || !row.state || row.line > INT64_MAX) {
        store_set_error(g->s, "line %" PRIu64 ": invalid row", row.line);
        *abort_msg = "invalid row";
        return -1;
    }
    store_bin_copy_tuple(b, 8);
    store_bin_field_int8(b, (int64_t)row.line);
    store_bin_field_int8(b, row.project_id);
    store_bin_field_text(b, row.project_name);
    store_bin_field_int8(b, row.circuit_id);
    store_bin_field_text(b, row.circuit_name);
    store_bin_field_text(b, row.state);
    store_bin_field_int4(b, (int32_t)row.seats);
    store_bin_field_int4(b, (int32_t)row.min_votes);
    return 1;
}

/* Streams every row from next() into registry_in. */
static int reg_copy_in(struct store *s, store_registry_next_cb next, void *arg)
{
    struct reg_rows g = {s, next, arg};
    return store_copy_in(s,
                         "COPY registry_in (line, project_id, project_name, circuit_id,"
                         " circuit_name, state, seats, min_votes) FROM STDIN (FORMAT binary)",
                         "loading registry rows", reg_row, &g) == STORE_OK
               ? 0
               : -1;
}

/* Whether projects has min_votes (migration 7): 1, 0, or -1 on failure. tallyctl loads a
 * registry into older databases too (tests build them with migrate --to). */
static int reg_has_min_votes(struct store *s)
{
    PGresult *res = store_query_rows(s,
                                     "SELECT EXISTS (SELECT 1 FROM pg_attribute"
                                     " WHERE attrelid = 'projects'::regclass"
                                     " AND attname = 'min_votes' AND NOT attisdropped)",
                                     "reading the projects columns");
    if (!res)
        return -1;
    int has = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return has;
}

/* Before migration 7 a min_votes other than 0 has nowhere to go. Returns 1 (the first such
 * line recorded), 0, or -1 on failure. */
static int reg_min_votes_unsupported(struct store *s, struct store_registry_summary *sum)
{
    PGresult *res = store_query_rows(s,
                                     "SELECT line FROM registry_in WHERE min_votes <> 0"
                                     " ORDER BY line LIMIT 1",
                                     "checking min_votes");
    if (!res)
        return -1;
    int rc = 0;
    if (PQntuples(res) == 1) {
        if (store_parse_u64(PQgetvalue(res, 0, 0), UINT64_MAX, &sum->conflict_line) < 0)
            sum->conflict_line = 0;
        store_set_error(s, "min_votes needs schema version 7 (run tallyctl migrate first)");
        rc = 1;
    }
    PQclear(res);
    return rc;
}

/* Returns 1 and records the conflict when one exists, 0 when none, -1 on failure. */
static int reg_find_conflict(struct store *s, bool has_min_votes,
                             struct store_registry_summary *sum)
{
    const char *projects = has_min_votes ? reg_projects_now : reg_projects_v6;
    size_t na = strlen(reg_conflict_sql_a), np = strlen(projects);
    char *sql = xmalloc(na + np + sizeof(reg_conflict_sql_b));
    memcpy(sql, reg_conflict_sql_a, na);
    memcpy(sql + na, projects, np);
    memcpy(sql + na + np, reg_conflict_sql_b, sizeof(reg_conflict_sql_b));
    PGresult *res = PQexec(s->conn, sql);
    free(sql);
    int rc = -1;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        store_classify(s, res, "checking registry conflicts");
        goto done;
    }
    rc = 0;
    if (PQntuples(res) == 1) {
        if (store_parse_u64(PQgetvalue(res, 0, 0), UINT64_MAX, &sum->conflict_line) < 0)
            sum->conflict_line = 0;
        store_set_error(s, "%s", PQgetvalue(res, 0, 1));
        rc = 1;
    }
done:
    PQclear(res);
    return rc;
}

static int reg_count_input(struct store *s, struct store_registry_summary *sum)
{
    PGresult *res = PQexec(s->conn, "SELECT count(DISTINCT project_id),"
                                    " count(DISTINCT circuit_id), count(DISTINCT state)"
                                    " FROM registry_in");
    int rc = -1;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        store_classify(s, res, "counting registry rows");
        goto done;
    }
    if (store_parse_u64(PQgetvalue(res, 0, 0), UINT64_MAX, &sum->projects) < 0 ||
        store_parse_u64(PQgetvalue(res, 0, 1), UINT64_MAX, &sum->circuits) < 0 ||
        store_parse_u64(PQgetvalue(res, 0, 2), UINT64_MAX, &sum->states) < 0) {
        store_set_error(s, "bad registry counts");
        goto done;
    }
    rc = 0;
done:
    PQclear(res);
    return rc;
}

int store_registry_load(struct store *s, store_registry_next_cb next, void *arg,
                        struct store_registry_summary *sum)
{
    char sql[96];
    memset(sum, 0, sizeof(*sum));
    if (store_exec_cmd(s, "BEGIN") != STORE_OK)
        goto fail;
    /* Two loads at once would both see "no conflict" and then collide on a key. */
    snprintf(sql, sizeof(sql), "SELECT pg_advisory_xact_lock(%lld)", STORE_LOCK_REGISTRY);
    if (store_exec_cmd(s, sql) != STORE_OK)
        goto fail;
    /* The DISTINCT ON sorts over 100k rows spill to disk at the default 4 MB. */
    if (store_exec_cmd(s, "SET LOCAL work_mem = '64MB'") != STORE_OK)
        goto fail;
    if (store_exec_cmd(s,
                       "CREATE TEMP TABLE registry_in ("
                       " line bigint NOT NULL, project_id bigint NOT NULL,"
                       " project_name text NOT NULL, circuit_id bigint NOT NULL,"
                       " circuit_name text NOT NULL, state text NOT NULL,"
                       " seats int NOT NULL, min_votes int NOT NULL) ON COMMIT DROP") != STORE_OK)
        goto fail;
    if (reg_copy_in(s, next, arg) < 0)
        goto fail;
    /* Temporary tables have no statistics until analysed; without them the planner may
     * pick nested loops over 100k rows for the self-joins below. */
    if (store_exec_cmd(s, "ANALYZE registry_in") != STORE_OK)
        goto fail;
    int has_min_votes = reg_has_min_votes(s);
    if (has_min_votes < 0 || (!has_min_votes && reg_min_votes_unsupported(s, sum) != 0))
        goto fail;
    if (reg_find_conflict(s, has_min_votes, sum) != 0)
        goto fail;
    if (reg_count_input(s, sum) < 0 ||
        reg_exec_count(s, reg_states_sql, "inserting states", &sum->new_states) < 0 ||
        reg_exec_count(s, reg_circuits_sql, "inserting circuits", &sum->new_circuits) < 0 ||
        reg_exec_count(s, has_min_votes ? reg_projects_sql : reg_projects_v6_sql,
                       "inserting projects", &sum->new_projects) < 0)
        goto fail;
    if (store_exec_cmd(s, "COMMIT") != STORE_OK)
        goto fail;
    return 0;

fail:
    store_rollback(s);
    return -1;
}
