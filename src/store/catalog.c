/* The registry's names, states, seats and each project's min_votes for the results API:
 * read once at start-up, after recovery (the schema is current by then: migration 7 gave
 * projects min_votes). Owns the catalog's memory; writes nothing. */
#include "store/internal.h"

#include "core/xalloc.h"

#include <stdlib.h>
#include <string.h>

int store_catalog_read(struct store *s, struct store_catalog *out)
{
    memset(out, 0, sizeof(*out));
    PGresult *res = NULL;
    uint64_t v;

    res = store_query_rows(s, "SELECT name FROM consultation ORDER BY created_at, id LIMIT 1",
                           "reading consultation");
    if (!res)
        goto fail;
    out->consultation_name = xstrdup(PQntuples(res) ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);

    res = store_query_rows(s,
                           "SELECT circuit_id, seats, name, coalesce(state, '') FROM circuits"
                           " ORDER BY circuit_id",
                           "reading circuits");
    if (!res)
        goto fail;
    out->n_circuits = (size_t)PQntuples(res);
    out->circuits = xcalloc(out->n_circuits, sizeof(*out->circuits));
    for (size_t i = 0; i < out->n_circuits; i++) {
        struct store_catalog_circuit *c = &out->circuits[i];
        if (store_parse_u64(PQgetvalue(res, (int)i, 0), UINT32_MAX, &v))
            goto bad;
        c->id = (uint32_t)v;
        if (store_parse_u64(PQgetvalue(res, (int)i, 1), UINT32_MAX, &v))
            goto bad;
        c->seats = (uint32_t)v;
        c->name = xstrdup(PQgetvalue(res, (int)i, 2));
        c->state = xstrdup(PQgetvalue(res, (int)i, 3));
    }
    PQclear(res);

    res = store_query_rows(s,
                           "SELECT p.id, c.circuit_id, p.name, p.min_votes FROM projects p"
                           " JOIN circuits c ON c.area_id = p.circuit_area_id ORDER BY p.id",
                           "reading projects");
    if (!res)
        goto fail;
    out->n_projects = (size_t)PQntuples(res);
    out->projects = xcalloc(out->n_projects, sizeof(*out->projects));
    for (size_t i = 0; i < out->n_projects; i++) {
        struct store_catalog_project *p = &out->projects[i];
        if (store_parse_u64(PQgetvalue(res, (int)i, 0), UINT32_MAX, &v))
            goto bad;
        p->id = (uint32_t)v;
        if (store_parse_u64(PQgetvalue(res, (int)i, 1), UINT32_MAX, &v))
            goto bad;
        p->circuit_id = (uint32_t)v;
        p->name = xstrdup(PQgetvalue(res, (int)i, 2));
        if (store_parse_u64(PQgetvalue(res, (int)i, 3), INT32_MAX, &v))
            goto bad;
        p->min_votes = (uint32_t)v;
    }
    PQclear(res);
    return 0;
bad:
    store_set_error(s, "catalog: an id, seats or min_votes value out of range");
    PQclear(res);
fail:
    store_catalog_cleanup(out);
    return -1;
}

void store_catalog_cleanup(struct store_catalog *c)
{
    free(c->consultation_name);
    for (size_t i = 0; c->projects && i < c->n_projects; i++)
        free(c->projects[i].name);
    for (size_t i = 0; c->circuits && i < c->n_circuits; i++) {
        free(c->circuits[i].name);
        free(c->circuits[i].state);
    }
    free(c->projects);
    free(c->circuits);
    memset(c, 0, sizeof(*c));
}
