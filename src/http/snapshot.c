/* Results snapshots: the catalog's fixed layout (circuit membership, id order, states) and,
 * per published checkpoint, an immutable copy of the durable votes with each circuit's
 * ranking, winners and ties, and each resource's version (when it last changed, for the
 * ETags and ?since=). Renderings that every poller asks for are made once per snapshot and
 * kept. Knows nothing of HTTP routing, compression or ingest. */
#include "http/internal.h"

#include "core/xalloc.h"
#include "rules/rules.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

/* ---- layout ----------------------------------------------------------------------------- */

static int cmp_project_id(const void *a, const void *b, void *arg)
{
    const struct http_catalog *cat = arg;
    uint32_t x = cat->projects[*(const uint32_t *)a].id;
    uint32_t y = cat->projects[*(const uint32_t *)b].id;
    return x < y ? -1 : x > y;
}

static int cmp_circuit_id(const void *a, const void *b, void *arg)
{
    const struct http_catalog *cat = arg;
    uint32_t x = cat->circuits[*(const uint32_t *)a].id;
    uint32_t y = cat->circuits[*(const uint32_t *)b].id;
    return x < y ? -1 : x > y;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int http_layout_init(struct http_layout *l, const struct http_catalog *cat)
{
    memset(l, 0, sizeof(*l));
    l->cat = cat;
    size_t np = cat->n_projects, nc = cat->n_circuits;
    l->members = xcalloc(np, sizeof(uint32_t));
    l->first = xcalloc(nc + 1, sizeof(uint32_t));
    l->project_by_id = xcalloc(np, sizeof(uint32_t));
    l->circuit_by_id = xcalloc(nc, sizeof(uint32_t));
    l->states = xcalloc(nc, sizeof(char *));
    l->circuit_state = xcalloc(nc, sizeof(uint32_t));

    /* Counting sort of projects by circuit keeps dense order inside each circuit. */
    for (size_t i = 0; i < np; i++) {
        if (cat->projects[i].circuit >= nc)
            goto fail;
        l->first[cat->projects[i].circuit + 1]++;
    }
    for (size_t c = 0; c < nc; c++) {
        if (l->first[c + 1] > l->max_members)
            l->max_members = l->first[c + 1];
        l->first[c + 1] += l->first[c];
    }
    uint32_t *fill = xcalloc(nc + 1, sizeof(uint32_t));
    memcpy(fill, l->first, (nc + 1) * sizeof(uint32_t));
    for (size_t i = 0; i < np; i++)
        l->members[fill[cat->projects[i].circuit]++] = (uint32_t)i;
    free(fill);

    for (size_t i = 0; i < np; i++)
        l->project_by_id[i] = (uint32_t)i;
    qsort_r(l->project_by_id, np, sizeof(uint32_t), cmp_project_id, (void *)cat);
    for (size_t c = 0; c < nc; c++)
        l->circuit_by_id[c] = (uint32_t)c;
    qsort_r(l->circuit_by_id, nc, sizeof(uint32_t), cmp_circuit_id, (void *)cat);

    for (size_t c = 0; c < nc; c++)
        l->states[c] = cat->circuits[c].state ? cat->circuits[c].state : "";
    qsort(l->states, nc, sizeof(char *), cmp_str);
    size_t n = 0;
    for (size_t c = 0; c < nc; c++)
        if (n == 0 || strcmp(l->states[n - 1], l->states[c]) != 0)
            l->states[n++] = l->states[c];
    l->n_states = n;
    for (size_t c = 0; c < nc; c++) {
        int64_t s = http_layout_find_state(l, cat->circuits[c].state ? cat->circuits[c].state : "");
        l->circuit_state[c] = (uint32_t)s;
    }
    http_render_layout_rows(l);
    return 0;
fail:
    http_layout_cleanup(l);
    return -1;
}

void http_layout_cleanup(struct http_layout *l)
{
    free(l->members);
    free(l->first);
    free(l->project_by_id);
    free(l->circuit_by_id);
    free(l->states);
    free(l->circuit_state);
    free(l->json_rows);
    free(l->csv_rows);
    free(l->json_off);
    free(l->csv_off);
    memset(l, 0, sizeof(*l));
}

int64_t http_layout_find_circuit(const struct http_layout *l, uint32_t circuit_id)
{
    size_t lo = 0, hi = l->cat->n_circuits;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t id = l->cat->circuits[l->circuit_by_id[mid]].id;
        if (id == circuit_id)
            return l->circuit_by_id[mid];
        if (id < circuit_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

int64_t http_layout_find_state(const struct http_layout *l, const char *name)
{
    size_t lo = 0, hi = l->n_states;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(l->states[mid], name);
        if (c == 0)
            return (int64_t)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* ---- snapshot ----------------------------------------------------------------------------- */

/* Per-snapshot scratch for src/rules, sized for the largest circuit. */
struct rank_scratch {
    struct rules_project *in;
    struct rules_outcome *out;
    uint32_t *order;
};

/* Ranks one circuit through src/rules (ranking, seats, ties, min_votes, decided); the
 * listing order, ranks and flags land in the snapshot's dense arrays. */
static void rank_circuit(struct http_snapshot *s, uint32_t c, struct rank_scratch *x)
{
    const struct http_catalog *cat = s->layout->cat;
    uint32_t lo = s->layout->first[c], hi = s->layout->first[c + 1];
    size_t n = hi - lo;
    struct http_snap_circuit *sc = &s->circuits[c];
    const uint32_t *m = s->layout->members + lo;

    for (size_t k = 0; k < n; k++) {
        const struct http_catalog_project *p = &cat->projects[m[k]];
        x->in[k] = (struct rules_project){p->id, s->votes[m[k]],
                                          cat->min_votes ? cat->min_votes[m[k]] : 0};
        sc->votes += s->votes[m[k]];
    }
    struct rules_circuit res;
    rules_circuit_rank(x->in, n, cat->circuits[c].seats, sc->remaining, NULL, x->order, x->out,
                       &res);
    for (size_t k = 0; k < n; k++) {
        uint32_t i = m[x->order[k]];
        const struct rules_outcome *o = &x->out[x->order[k]];
        s->ranked[lo + k] = i;
        s->rank[i] = o->rank;
        s->flags[i] =
            (uint8_t)((o->winner ? HTTP_FLAG_WINNER : 0) | (o->tie ? HTTP_FLAG_TIE : 0) |
                      (o->by_lot ? HTTP_FLAG_BY_LOT : 0) | (o->eligible ? HTTP_FLAG_ELIGIBLE : 0));
    }
    sc->winners = res.winners;
    sc->tie = res.tie;
    sc->has_margin = res.has_margin;
    sc->margin = res.margin;
    sc->decided = res.decided;
}

static void progress_add(struct http_progress *to, const struct http_progress *p)
{
    to->tables += p->tables;
    to->tables_reported += p->tables_reported;
    to->electors += p->electors;
    to->electors_reported += p->electors_reported;
    to->ballots += p->ballots;
    to->blank += p->blank;
    to->null_ballots += p->null_ballots;
}

/* Each table into its circuit's progress and remaining votes. Remaining: the electors of
 * tables not reported by sheet, minus their ballots (a sheet closes its table). A circuit
 * without tables keeps remaining unknown, so it is never decided. */
static void tables_into_circuits(struct http_snapshot *s, const struct http_checkpoint *cp)
{
    size_t nc = s->layout->cat->n_circuits;
    for (size_t c = 0; c < nc; c++)
        s->circuits[c].remaining = RULES_REMAINING_UNKNOWN;
    for (size_t i = 0; cp->tables && i < cp->n_tables; i++) {
        const struct http_table *t = &cp->tables[i];
        int64_t c = http_layout_find_circuit(s->layout, t->circuit_id);
        if (c < 0)
            continue;
        struct http_snap_circuit *sc = &s->circuits[c];
        if (sc->remaining == RULES_REMAINING_UNKNOWN)
            sc->remaining = 0;
        struct http_progress *p = &sc->progress;
        p->tables++;
        p->electors += t->electors;
        if (t->reported) {
            p->tables_reported++;
            p->electors_reported += t->electors;
            p->ballots += t->ballots;
            p->blank += t->blank;
            p->null_ballots += t->null_ballots;
        }
        if (!t->sheet && t->ballots < t->electors)
            sc->remaining += t->electors - t->ballots;
    }
}

/* What the SSE checkpoint event reports per circuit: progress, decided, corrected_at and
 * the winners and ties (min_votes make them more than the changed votes tell). */
static bool circuit_changed(const struct http_snapshot *s, const struct http_snapshot *prev,
                            uint32_t c)
{
    const struct http_snap_circuit *a = &s->circuits[c], *b = &prev->circuits[c];
    if (memcmp(&a->progress, &b->progress, sizeof(a->progress)) != 0 || a->decided != b->decided ||
        a->corrected_ms != b->corrected_ms || a->tie != b->tie || a->winners != b->winners)
        return true;
    if (!http_snapshot_has_counts(s) || !http_snapshot_has_counts(prev))
        return false;
    for (uint32_t k = s->layout->first[c]; k < s->layout->first[c + 1]; k++) {
        uint32_t i = s->layout->members[k];
        if (s->flags[i] != prev->flags[i])
            return true;
    }
    return false;
}

/* Anything /v1/circuits/{id} shows of circuit c but its projects' rows. */
static bool circuit_fields_differ(const struct http_snap_circuit *a,
                                  const struct http_snap_circuit *b)
{
    return a->votes != b->votes || a->winners != b->winners || a->tie != b->tie ||
           a->has_margin != b->has_margin || a->margin != b->margin || a->decided != b->decided ||
           a->corrected_ms != b->corrected_ms ||
           memcmp(&a->progress, &b->progress, sizeof(a->progress)) != 0;
}

static bool summary_differs(const struct http_snapshot *s, const struct http_snapshot *prev)
{
    return memcmp(&s->totals, &prev->totals, sizeof(s->totals)) != 0 ||
           memcmp(&s->progress, &prev->progress, sizeof(s->progress)) != 0 ||
           memcmp(s->head_hash, prev->head_hash, sizeof(s->head_hash)) != 0 ||
           s->circuits_decided != prev->circuits_decided || s->writer_epoch != prev->writer_epoch ||
           s->n_collectors != prev->n_collectors ||
           s->collectors_connected != prev->collectors_connected ||
           s->collectors_reporting != prev->collectors_reporting;
}

/* Each resource's version against prev's, in one pass over the projects and circuits: a
 * project's row changed when its votes, rank or flags did; a circuit when a row of its or
 * a field of its did; a state and the nation when one of their circuits did. Everything
 * starts over at the first snapshot, a status change (the rows look different: the
 * embargo) and a checkpoint id lower than prev's. */
static void versions_compute(struct http_snapshot *s, const struct http_snapshot *prev)
{
    const struct http_layout *l = s->layout;
    size_t np = l->cat->n_projects, nc = l->cat->n_circuits, ns = l->n_states;
    struct http_version now = {s->checkpoint, s->republish};
    s->max_published =
        prev && prev->max_published > s->checkpoint ? prev->max_published : s->checkpoint;
    s->row_checkpoint = xcalloc(np + 1, sizeof(*s->row_checkpoint));
    s->circuit_version = xcalloc(nc + 1, sizeof(*s->circuit_version));
    s->state_version = xcalloc(ns + 1, sizeof(*s->state_version));
    if (!prev || prev->layout != l || http_status_differs(&prev->status, &s->status) ||
        s->checkpoint < prev->checkpoint) {
        for (size_t i = 0; i < np; i++)
            s->row_checkpoint[i] = s->checkpoint;
        for (size_t c = 0; c < nc; c++)
            s->circuit_version[c] = now;
        for (size_t st = 0; st < ns; st++)
            s->state_version[st] = now;
        s->results_version = s->summary_version = now;
        /* Nobody's rows are a base for changes: not at the first snapshot (a client's copy
         * of this id may come from before a restart, under another status: the embargo
         * lifted while tallyd was down), nor after a reset, nor for any id published before
         * the record went back (that id names other rows now). */
        s->since_min = s->max_published + 1;
        return;
    }
    bool counts = http_snapshot_has_counts(s), national = false, rows = false;
    memcpy(s->state_version, prev->state_version, ns * sizeof(*s->state_version));
    for (size_t c = 0; c < nc; c++) {
        bool changed = circuit_fields_differ(&s->circuits[c], &prev->circuits[c]);
        for (uint32_t k = l->first[c]; k < l->first[c + 1]; k++) {
            uint32_t i = l->members[k];
            /* Same status: both have counts or neither has (rows without counts never change). */
            bool row = counts && (s->votes[i] != prev->votes[i] || s->rank[i] != prev->rank[i] ||
                                  s->flags[i] != prev->flags[i]);
            s->row_checkpoint[i] = row ? s->checkpoint : prev->row_checkpoint[i];
            changed |= row;
            rows |= row;
        }
        s->circuit_version[c] = changed ? now : prev->circuit_version[c];
        if (changed)
            s->state_version[l->circuit_state[c]] = now;
        national |= changed;
    }
    s->results_version = national ? now : prev->results_version;
    s->summary_version = national || summary_differs(s, prev) ? now : prev->summary_version;
    s->since_min = prev->since_min;
    /* Rows that changed under an id already published: since=that id saw the old ones. */
    if (rows && s->checkpoint == prev->checkpoint)
        s->since_min = s->checkpoint + 1;
}

static int cmp_collector(const void *a, const void *b)
{
    return strcmp(((const struct http_snap_collector *)a)->id,
                  ((const struct http_snap_collector *)b)->id);
}

struct http_snapshot *http_snapshot_new(const struct http_layout *layout,
                                        const struct http_checkpoint *cp,
                                        const struct http_snapshot *prev,
                                        const int64_t *corrected_ms)
{
    const struct http_catalog *cat = layout->cat;
    size_t np = cat->n_projects, nc = cat->n_circuits;
    struct http_snapshot *s = xcalloc(1, sizeof(*s));
    s->refs = 1;
    s->layout = layout;
    s->checkpoint = cp->id;
    s->committed_ms = cp->committed_ms;
    memcpy(s->head_hash, cp->head_hash, sizeof(s->head_hash));
    s->writer_epoch = cp->epoch;
    s->totals = cp->totals;
    s->status = cp->status;
    /* Under embargo the counts are not even copied (http_snapshot_has_counts). */
    bool counts = !cp->status.embargo;
    if (counts) {
        s->votes = xcalloc(np + 1, sizeof(uint64_t));
        if (cp->votes)
            memcpy(s->votes, cp->votes, np * sizeof(uint64_t));
        s->rank = xcalloc(np + 1, sizeof(uint32_t));
        s->flags = xcalloc(np + 1, sizeof(uint8_t));
        s->ranked = xcalloc(np + 1, sizeof(uint32_t));
        s->state_votes = xcalloc(layout->n_states + 1, sizeof(uint64_t));
    }
    s->circuits = xcalloc(nc, sizeof(*s->circuits));
    s->state_progress = xcalloc(layout->n_states, sizeof(*s->state_progress));
    tables_into_circuits(s, cp);
    struct rank_scratch x = {
        .in = xcalloc(layout->max_members + 1, sizeof(*x.in)),
        .out = xcalloc(layout->max_members + 1, sizeof(*x.out)),
        .order = xcalloc(layout->max_members + 1, sizeof(*x.order)),
    };
    for (uint32_t c = 0; c < nc; c++) {
        struct http_snap_circuit *sc = &s->circuits[c];
        if (corrected_ms)
            sc->corrected_ms = corrected_ms[c];
        if (counts) {
            rank_circuit(s, c, &x);
            s->state_votes[layout->circuit_state[c]] += sc->votes;
            s->circuits_decided += sc->decided;
        }
        progress_add(&s->state_progress[layout->circuit_state[c]], &sc->progress);
        progress_add(&s->progress, &sc->progress);
    }
    free(x.in);
    free(x.out);
    free(x.order);
    if (prev && prev->layout == layout) {
        s->changed_circuits = xcalloc(nc + 1, sizeof(uint32_t));
        for (size_t k = 0; k < nc; k++) {
            uint32_t c = layout->circuit_by_id[k];
            if (circuit_changed(s, prev, c))
                s->changed_circuits[s->n_changed_circuits++] = c;
        }
    }

    s->n_collectors = cp->n_collectors;
    s->collectors = xcalloc(cp->n_collectors, sizeof(*s->collectors));
    for (size_t i = 0; i < cp->n_collectors; i++) {
        const struct http_collector_status *in = &cp->collectors[i];
        struct http_snap_collector *out = &s->collectors[i];
        out->id = xstrdup(in->id ? in->id : "");
        out->connected = in->connected;
        out->last_seen_ms = in->last_seen_ms;
        out->durable_seq = in->durable_seq;
        out->applied_seq = in->applied_seq;
        out->durable = in->durable;
        s->collectors_connected += in->connected;
        s->collectors_reporting += in->durable_seq > 0;
    }
    qsort(s->collectors, s->n_collectors, sizeof(*s->collectors), cmp_collector);
    if (prev && prev->layout == layout && prev->checkpoint == cp->id)
        s->republish = prev->republish + 1;
    versions_compute(s, prev);
    return s;
}

bool http_status_differs(const struct http_status *a, const struct http_status *b)
{
    return a->embargo != b->embargo || a->closed != b->closed || a->certified != b->certified ||
           a->tie_rule != b->tie_rule ||
           (a->certified && memcmp(a->certified_hash, b->certified_hash, 32) != 0) ||
           (a->tie_rule && memcmp(a->tie_seed_hash, b->tie_seed_hash, 32) != 0);
}

struct http_snapshot *http_snapshot_ref(struct http_snapshot *s)
{
    s->refs++;
    return s;
}

static struct http_cached *cached_new(const char *key, char *body, size_t len, size_t head_len)
{
    struct http_cached *e = xcalloc(1, sizeof(*e));
    e->refs = 1;
    snprintf(e->key, sizeof(e->key), "%s", key);
    e->body = body;
    e->len = len;
    e->head_len = head_len;
    return e;
}

static void cached_unref(struct http_cached *e)
{
    if (--e->refs > 0)
        return;
    free(e->body);
    free(e->gz);
    free(e);
}

static void cached_cleanup(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    cached_unref(arg);
}

void http_cached_add_bytes(struct http_cached *e, struct evbuffer *out, const void *p, size_t len)
{
    if (!len)
        return;
    e->refs++;
    if (evbuffer_add_reference(out, p, len, cached_cleanup, e) != 0)
        abort();
}

void http_snapshot_unref(struct http_snapshot *s)
{
    if (!s || --s->refs > 0)
        return;
    for (size_t i = 0; i < s->n_collectors; i++)
        free(s->collectors[i].id);
    free(s->collectors);
    free(s->state_votes);
    free(s->state_progress);
    free(s->changed_circuits);
    free(s->circuits);
    free(s->ranked);
    free(s->flags);
    free(s->rank);
    free(s->votes);
    free(s->row_checkpoint);
    free(s->circuit_version);
    free(s->state_version);
    for (size_t i = 0; i < s->n_cache; i++) {
        assert(!s->cache[i]->job); /* a job holds a snapshot reference */
        cached_unref(s->cache[i]);
    }
    free(s->cache);
    if (s->reset_event)
        cached_unref(s->reset_event);
    free(s);
}

/* Copies a rendered evbuffer into one flat malloc'd block kept by the snapshot. */
static char *flatten(struct evbuffer *b, size_t *len)
{
    *len = evbuffer_get_length(b);
    char *p = xmalloc(*len);
    evbuffer_remove(b, p, *len);
    return p;
}

struct http_cached *http_snapshot_cached(struct http_snapshot *s, const char *key)
{
    for (size_t i = 0; i < s->n_cache; i++)
        if (strcmp(s->cache[i]->key, key) == 0)
            return s->cache[i];
    return NULL;
}

struct http_cached *http_snapshot_cache_put(struct http_snapshot *s, const char *key, char *body,
                                            size_t len, size_t head_len, bool essential)
{
    assert(head_len <= len && !http_snapshot_cached(s, key));
    bool full =
        s->n_cache >= HTTP_SNAPSHOT_CACHE_MAX || s->cache_bytes + len > HTTP_SNAPSHOT_CACHE_BYTES;
    if ((full && (!essential || s->n_essential >= HTTP_SNAPSHOT_CACHE_RESERVED)) ||
        strlen(key) >= sizeof(s->cache[0]->key))
        return NULL;
    if (!s->cache)
        s->cache =
            xcalloc(HTTP_SNAPSHOT_CACHE_MAX + HTTP_SNAPSHOT_CACHE_RESERVED, sizeof(*s->cache));
    s->n_essential += essential;
    struct http_cached *e = cached_new(key, body, len, head_len);
    s->cache[s->n_cache++] = e;
    s->cache_bytes += len;
    return e;
}

void http_snapshot_add_reset_event(struct http_snapshot *s, struct evbuffer *out)
{
    if (!s->reset_event) {
        struct evbuffer *b = evbuffer_new();
        http_render_event_reset(s, b);
        size_t len;
        char *text = flatten(b, &len);
        s->reset_event = cached_new("reset-event", text, len, 0);
        evbuffer_free(b);
    }
    http_cached_add_bytes(s->reset_event, out, s->reset_event->body, s->reset_event->len);
}
