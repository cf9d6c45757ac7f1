/* The correction log of the HTTP API: a copy of every durable correction (a replaced tally
 * sheet, a retracted batch) rendered once as JSON, the circuits each one touched and, per
 * circuit, the time of the last one (corrected_at). Serves GET /v1/corrections and the SSE
 * `correction` events. Does not decide what a correction is: ingest does. */
#include "http/internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "core/log.h"
#include "core/xalloc.h"

void http_corrections_init(struct http_corrections *c, const struct http_layout *l)
{
    memset(c, 0, sizeof(*c));
    c->corrected_ms = xcalloc(l->cat->n_circuits + 1, sizeof(int64_t));
}

void http_corrections_cleanup(struct http_corrections *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->json[i]);
        free(c->json_embargo[i]);
    }
    free(c->json);
    free(c->json_len);
    free(c->json_embargo);
    free(c->json_embargo_len);
    free(c->ids);
    free(c->corrected_ms);
    memset(c, 0, sizeof(*c));
}

/* Dense project index of an external id, or -1. */
static int64_t find_project(const struct http_layout *l, uint32_t id)
{
    size_t lo = 0, hi = l->cat->n_projects;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t x = l->cat->projects[l->project_by_id[mid]].id;
        if (x == id)
            return l->project_by_id[mid];
        if (x < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void json_opt_string(struct evbuffer *out, const char *s)
{
    if (s)
        http_json_string(out, s);
    else
        evbuffer_add(out, "null", 4);
}

/* The correction's JSON (docs/api.md) into out, and the same without its count deltas
 * (per project, blank, null) into embargoed; marks the circuits it touched in
 * corrected_ms. */
static void render_one(struct http_corrections *c, const struct http_layout *l,
                       const struct http_correction *k, struct evbuffer *out,
                       struct evbuffer *embargoed)
{
    const struct http_catalog *cat = l->cat;
    evbuffer_add_printf(
        out, "{\"id\":%" PRIu64 ",\"checkpoint\":%" PRIu64 ",\"kind\":\"%s\",\"actor\":", k->id,
        k->checkpoint, k->retract ? "retract" : "sheet");
    json_opt_string(out, k->actor);
    evbuffer_add(out, ",\"reason\":", 10);
    json_opt_string(out, k->reason);
    evbuffer_add(out, ",\"at\":", 6);
    http_json_time(out, k->at_ms);
    evbuffer_add(out, ",\"table\":", 9);
    json_opt_string(out, k->table_id);
    evbuffer_add(out, ",\"collector\":", 13);
    json_opt_string(out, k->collector_id);
    if (k->collector_id)
        evbuffer_add_printf(out, ",\"seq\":%" PRIu64, k->seq);
    else
        evbuffer_add(out, ",\"seq\":null", 11);
    if (k->retract)
        evbuffer_add(out, ",\"from_version\":null,\"to_version\":null", 38);
    else
        evbuffer_add_printf(out, ",\"from_version\":%" PRIu32 ",\"to_version\":%" PRIu32,
                            k->from_version, k->to_version);

    /* The circuits: of its projects, and of its table. */
    uint32_t *ids = xcalloc(k->n_deltas + 1, sizeof(uint32_t));
    size_t n = 0;
    for (size_t i = 0; i < k->n_deltas; i++) {
        int64_t p = find_project(l, k->project_ids[i]);
        if (p >= 0)
            ids[n++] = cat->circuits[cat->projects[p].circuit].id;
    }
    if (k->has_table_circuit)
        ids[n++] = k->table_circuit_id;
    qsort(ids, n, sizeof(uint32_t), cmp_u32);
    evbuffer_add(out, ",\"circuits\":[", 13);
    size_t shown = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && ids[i] == ids[i - 1])
            continue;
        int64_t ci = http_layout_find_circuit(l, ids[i]);
        if (ci < 0)
            continue;
        if (k->at_ms > c->corrected_ms[ci])
            c->corrected_ms[ci] = k->at_ms;
        evbuffer_add_printf(out, "%s%" PRIu32, shown++ ? "," : "", ids[i]);
    }
    free(ids);
    evbuffer_add(out, "]", 1);
    /* Both renderings share everything up to here; the ballots are progress. */
    size_t common = evbuffer_get_length(out);
    void *head = evbuffer_pullup(out, (ev_ssize_t)common);
    evbuffer_add(embargoed, head, common);
    evbuffer_add_printf(embargoed, ",\"ballots_delta\":%" PRId64 "}", k->ballots_delta);
    evbuffer_add(out, ",\"deltas\":[", 11);
    for (size_t i = 0; i < k->n_deltas; i++)
        evbuffer_add_printf(out, "%s{\"project\":%" PRIu32 ",\"delta\":%" PRId64 "}", i ? "," : "",
                            k->project_ids[i], k->deltas[i]);
    evbuffer_add_printf(out,
                        "],\"blank_delta\":%" PRId64 ",\"null_delta\":%" PRId64
                        ",\"ballots_delta\":%" PRId64 "}",
                        k->blank_delta, k->null_delta, k->ballots_delta);
}

void http_corrections_update(struct http_corrections *c, const struct http_layout *l,
                             const struct http_checkpoint *cp)
{
    if (!cp->corrections)
        return;
    struct evbuffer *b = evbuffer_new(), *e = evbuffer_new();
    if (!b || !e)
        abort();
    for (size_t i = c->n; i < cp->n_corrections; i++) {
        const struct http_correction *k = &cp->corrections[i];
        if (c->n > 0 && k->id <= c->ids[c->n - 1]) {
            log_warn("HTTP: correction %" PRIu64 " is not after %" PRIu64 ": ignored", k->id,
                     c->ids[c->n - 1]);
            continue;
        }
        if (c->n == c->cap) {
            c->cap = c->cap ? c->cap * 2 : 16;
            c->json = xreallocarray(c->json, c->cap, sizeof(*c->json));
            c->json_len = xreallocarray(c->json_len, c->cap, sizeof(*c->json_len));
            c->json_embargo = xreallocarray(c->json_embargo, c->cap, sizeof(*c->json_embargo));
            c->json_embargo_len =
                xreallocarray(c->json_embargo_len, c->cap, sizeof(*c->json_embargo_len));
            c->ids = xreallocarray(c->ids, c->cap, sizeof(*c->ids));
        }
        render_one(c, l, k, b, e);
        size_t len = evbuffer_get_length(b);
        c->json[c->n] = xmalloc(len + 1);
        evbuffer_remove(b, c->json[c->n], len);
        c->json[c->n][len] = '\0';
        c->json_len[c->n] = len;
        len = evbuffer_get_length(e);
        c->json_embargo[c->n] = xmalloc(len + 1);
        evbuffer_remove(e, c->json_embargo[c->n], len);
        c->json_embargo[c->n][len] = '\0';
        c->json_embargo_len[c->n] = len;
        c->ids[c->n] = k->id;
        c->n++;
    }
    evbuffer_free(b);
    evbuffer_free(e);
}

/* Entry i as the snapshot may show it: without its count deltas under embargo. */
static void add_entry(const struct http_snapshot *s, const struct http_corrections *c, size_t i,
                      struct evbuffer *out)
{
    if (http_snapshot_has_counts(s))
        evbuffer_add(out, c->json[i], c->json_len[i]);
    else
        evbuffer_add(out, c->json_embargo[i], c->json_embargo_len[i]);
}

void http_render_corrections(const struct http_snapshot *s, const struct http_corrections *c,
                             struct evbuffer *out)
{
    const struct http_catalog *cat = s->layout->cat;
    evbuffer_add(out, "{\"consultation\":{\"id\":", 22);
    http_json_string(out, cat->consultation_id);
    evbuffer_add(out, ",\"name\":", 8);
    http_json_string(out, cat->consultation_name);
    evbuffer_add_printf(out, "},\"checkpoint\":%" PRIu64 ",\"time\":", s->checkpoint);
    http_json_time(out, s->committed_ms);
    if (!http_snapshot_has_counts(s))
        evbuffer_add(out, ",\"embargo\":true", 15);
    /* Only what this snapshot made durable: a request between a log update and its
     * snapshot (none today, both happen in one publish) would not see the future. */
    size_t n = s->corrections_to < c->n ? s->corrections_to : c->n;
    evbuffer_add_printf(out, ",\"count\":%zu,\"corrections\":[", n);
    for (size_t i = n; i-- > 0;) {
        evbuffer_add(out, i + 1 < n ? ",\n" : "\n", i + 1 < n ? 2 : 1);
        add_entry(s, c, i, out);
    }
    evbuffer_add(out, "]}\n", 3);
}

void http_render_event_corrections(const struct http_snapshot *s, const struct http_corrections *c,
                                   size_t from, size_t to, struct evbuffer *out)
{
    for (size_t i = from; i < to && i < c->n; i++) {
        http_render_event_id(s, out);
        evbuffer_add(out, "event: correction\ndata: ", 24);
        add_entry(s, c, i, out);
        evbuffer_add(out, "\n\n", 2);
    }
}
