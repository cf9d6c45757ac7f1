/* Small administrative writes used by tallyctl: registering collectors, pinning their
 * certificates, limiting them to circuits, disabling and enabling them. The registry
 * import is in registry.c; nothing here runs on tallyd's hot path. */
#include "store/internal.h"

#include "core/xalloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool admin_id_is_valid(const char *id)
{
    size_t n = 0;
    for (const char *p = id; *p; p++, n++) {
        char c = *p;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return n >= 1 && n <= 63;
}

/* The schema has migration 6's collector columns. */
static bool admin_has_identity(struct store *s)
{
    return strstr(store_collector_columns(s), "cert_pin") != NULL;
}

static void admin_pin_hex(const uint8_t *pin, char out[2 * STORE_PIN_BYTES + 3])
{
    static const char digits[] = "0123456789abcdef";
    out[0] = '\\';
    out[1] = 'x';
    for (size_t i = 0; i < STORE_PIN_BYTES; i++) {
        out[2 + 2 * i] = digits[pin[i] >> 4];
        out[3 + 2 * i] = digits[pin[i] & 15];
    }
    out[2 + 2 * STORE_PIN_BYTES] = '\0';
}

/* Runs a text-parameter query expected to return rows; NULL with the error set. */
static PGresult *admin_rows(struct store *s, const char *sql, int n, const char *const *params,
                            const char *what)
{
    PGresult *res = PQexecParams(s->conn, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) == PGRES_TUPLES_OK)
        return res;
    store_classify(s, res, what);
    PQclear(res);
    return NULL;
}

/* "{1,5,9}" from ids, sorted and distinct (malloc'd). */
static char *admin_array_text(const uint32_t *ids, size_t n)
{
    uint32_t *sorted = xcalloc(n ? n : 1, sizeof(*sorted));
    if (n)
        memcpy(sorted, ids, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), store_cmp_u32);
    char *out = xcalloc(2 + 11 * (n ? n : 1) + 1, 1);
    size_t o = 0;
    out[o++] = '{';
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && sorted[i] == sorted[i - 1])
            continue;
        o += (size_t)sprintf(out + o, "%s%" PRIu32, o > 1 ? "," : "", sorted[i]);
    }
    out[o++] = '}';
    out[o] = '\0';
    free(sorted);
    return out;
}

/* The circuits the spec limits the collector to, as an int8[] literal (malloc'd), after
 * checking they exist; NULL with the error set. */
static char *admin_resolve_circuits(struct store *s, const struct store_collector_spec *spec)
{
    if (spec->restrict_circuits) {
        if (spec->n_circuits == 0) {
            store_set_error(s, "no circuit ids given");
            return NULL;
        }
        char *arr = admin_array_text(spec->circuits, spec->n_circuits);
        const char *params[1] = {arr};
        PGresult *res = admin_rows(s,
                                   "SELECT count(*), coalesce(string_agg(u::text, ', '"
                                   " ORDER BY u), '') FROM unnest($1::int8[]) u"
                                   " WHERE NOT EXISTS (SELECT 1 FROM circuits c"
                                   " WHERE c.circuit_id = u)",
                                   1, params, "checking circuit ids");
        if (!res) {
            free(arr);
            return NULL;
        }
        bool unknown = strcmp(PQgetvalue(res, 0, 0), "0") != 0;
        if (unknown)
            store_set_error(s,
                            "unknown circuit id%s %.300s: not in the registry (tallyctl "
                            "load-registry loads it)",
                            strcmp(PQgetvalue(res, 0, 0), "1") == 0 ? "" : "s",
                            PQgetvalue(res, 0, 1));
        PQclear(res);
        if (unknown) {
            free(arr);
            return NULL;
        }
        return arr;
    }
    const char *params[1] = {spec->state};
    PGresult *res = admin_rows(s,
                               "SELECT '{' || coalesce(string_agg(circuit_id::text, ','"
                               " ORDER BY circuit_id), '') || '}', count(*),"
                               " EXISTS (SELECT 1 FROM areas WHERE kind = 'state' AND code = $1)"
                               " FROM circuits WHERE state = $1",
                               1, params, "reading the state's circuits");
    if (!res)
        return NULL;
    char *arr = NULL;
    if (PQgetvalue(res, 0, 2)[0] != 't')
        store_set_error(s, "no state named \"%.100s\" in the registry", spec->state);
    else if (strcmp(PQgetvalue(res, 0, 1), "0") == 0)
        store_set_error(s, "state \"%.100s\" has no circuits", spec->state);
    else
        arr = xstrdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return arr;
}

/* Fails when pin is pinned to a collector other than id, naming it. Returns 0 or -1. */
static int admin_check_pin(struct store *s, const char *id, const char *pin_text)
{
    const char *params[2] = {pin_text, id};
    PGresult *res = admin_rows(s,
                               "SELECT id FROM collectors WHERE cert_pin = $1::bytea"
                               " AND id <> $2 LIMIT 1",
                               2, params, "checking the certificate pin");
    if (!res)
        return -1;
    int rc = 0;
    if (PQntuples(res) == 1) {
        store_set_error(s,
                        "this certificate (pin %.16s...) is already pinned to collector %s: "
                        "each collector needs its own certificate",
                        pin_text + 2, PQgetvalue(res, 0, 0));
        rc = -1;
    }
    PQclear(res);
    return rc;
}

/* Runs a text-parameter command; returns its affected-row count, or -1 with the error. */
static long admin_exec(struct store *s, const char *sql, int n, const char *const *params,
                       const char *what)
{
    PGresult *res = PQexecParams(s->conn, sql, n, NULL, params, NULL, NULL, 0);
    long rows = -1;
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        const char *constraint = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);
        if (state && strcmp(state, "23505") == 0 && constraint && strstr(constraint, "cert_pin"))
            store_set_error(s, "%s: this certificate is already pinned to another collector", what);
        else
            store_classify(s, res, what);
    } else {
        rows = strtol(PQcmdTuples(res), NULL, 10);
    }
    PQclear(res);
    return rows;
}

int store_collector_add(struct store *s, const struct store_collector_spec *spec, bool *created)
{
    *created = false;
    if (!admin_id_is_valid(spec->id)) {
        store_set_error(s, "invalid collector id '%.80s': use 1 to 63 of A-Z a-z 0-9 . _ -",
                        spec->id);
        return -1;
    }
    int modes = (int)spec->restrict_circuits + (spec->state != NULL) + (int)spec->every_circuit;
    if (modes > 1) {
        store_set_error(s, "give circuits, a state or every circuit, not more than one");
        return -1;
    }
    const char *id_param[1] = {spec->id};
    if (!spec->pin && modes == 0) {
        /* The plain registration, as every schema version has it. */
        long n =
            admin_exec(s, "INSERT INTO collectors (id) VALUES ($1) ON CONFLICT (id) DO NOTHING", 1,
                       id_param, "adding collector");
        *created = n == 1;
        return n < 0 ? -1 : 0;
    }

    char *circuits = NULL;
    char pin_text[2 * STORE_PIN_BYTES + 3];
    if (spec->pin)
        admin_pin_hex(spec->pin, pin_text);
    if (store_exec_cmd(s, "BEGIN") != STORE_OK)
        goto fail;
    if (!admin_has_identity(s)) {
        int version = 0;
        if (store_schema_version(s, &version) < 0)
            goto fail;
        store_set_error(s,
                        "schema version %d has no certificate pins or circuit limits: run "
                        "tallyctl migrate first",
                        version);
        goto fail;
    }
    if ((spec->restrict_circuits || spec->state) && !(circuits = admin_resolve_circuits(s, spec)))
        goto fail;
    if (spec->pin && admin_check_pin(s, spec->id, pin_text) < 0)
        goto fail;
    const char *set_circuits = modes ? "t" : "f";
    const char *params[4] = {spec->id, spec->pin ? pin_text : NULL, circuits, set_circuits};
    long n = admin_exec(s,
                        "INSERT INTO collectors (id, cert_pin, circuits)"
                        " VALUES ($1, $2::bytea, $3::int8[]) ON CONFLICT (id) DO NOTHING",
                        3, params, "adding collector");
    if (n < 0)
        goto fail;
    *created = n == 1;
    /* Only what differs is written: the same settings again are no write at all. */
    if (!*created && admin_exec(s,
                                "UPDATE collectors SET cert_pin = coalesce($2::bytea, cert_pin),"
                                " circuits = CASE WHEN $4::bool THEN $3::int8[] ELSE circuits END"
                                " WHERE id = $1 AND (cert_pin IS DISTINCT FROM"
                                " coalesce($2::bytea, cert_pin) OR ($4::bool AND circuits"
                                " IS DISTINCT FROM $3::int8[]))",
                                4, params, "changing collector") < 0)
        goto fail;
    if (store_exec_cmd(s, "COMMIT") != STORE_OK)
        goto fail;
    free(circuits);
    return 0;

fail:
    *created = false;
    store_rollback(s);
    free(circuits);
    return -1;
}

int store_collector_get(struct store *s, const char *id, struct store_collector *out)
{
    memset(out, 0, sizeof(*out));
    char sql[512];
    snprintf(sql, sizeof(sql), "SELECT %s FROM collectors WHERE id = $1",
             store_collector_columns(s));
    const char *params[1] = {id};
    PGresult *res = admin_rows(s, sql, 1, params, "reading collector");
    if (!res)
        return -1;
    int rc = 0;
    if (PQntuples(res) == 1)
        rc = store_collector_parse(s, res, 0, out) < 0 ? -1 : 1;
    PQclear(res);
    return rc;
}

int store_collector_set_disabled(struct store *s, const char *id, bool disabled)
{
    const char *params[2] = {id, disabled ? "t" : "f"};
    if (!admin_has_identity(s)) {
        int version = 0;
        if (store_schema_version(s, &version) == 0)
            store_set_error(s,
                            "schema version %d cannot disable collectors: run tallyctl "
                            "migrate first",
                            version);
        return -1;
    }
    long n = admin_exec(s,
                        "UPDATE collectors SET disabled_at = CASE WHEN $2::bool THEN now() END"
                        " WHERE id = $1 AND (disabled_at IS NULL) = $2::bool",
                        2, params, disabled ? "disabling collector" : "enabling collector");
    if (n < 0)
        return -1;
    if (n == 1)
        return 0;
    PGresult *res =
        admin_rows(s, "SELECT 1 FROM collectors WHERE id = $1", 1, params, "reading collector");
    if (!res)
        return -1;
    int rc = PQntuples(res) == 1 ? 1 : -1;
    PQclear(res);
    if (rc < 0)
        store_set_error(s, "no collector named '%.80s' (tallyctl add-collector registers one)", id);
    return rc;
}
