/* Renderers: a snapshot (or the live metrics) into the bytes of a response — JSON for the
 * /v1 API and the event stream, RFC 4180 CSV, Prometheus text exposition 0.0.4. Pure:
 * no sockets, no clock, no routing; callers decide caching and headers. */
#include "http/internal.h"

#include "core/json.h"
#include "core/loopwatch.h"
#include "core/xalloc.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

/* ---- primitives ------------------------------------------------------------------------- */

static void json_sink_evbuffer(void *arg, const char *data, size_t len)
{
    evbuffer_add(arg, data, len);
}

void http_json_string(struct evbuffer *out, const char *s)
{
    json_string_write(s, json_sink_evbuffer, out);
}

void http_json_head_hash(struct evbuffer *out, const struct http_snapshot *s)
{
    static const char hex[] = "0123456789abcdef";
    /* Checkpoint 0 is the empty state before any COMMIT: there is no chain yet, and zeros
     * would read as a hash an auditor could look for. */
    if (s->checkpoint == 0) {
        evbuffer_add(out, "null", 4);
        return;
    }
    char buf[2 * sizeof(s->head_hash) + 2];
    size_t n = 0;
    buf[n++] = '"';
    for (size_t i = 0; i < sizeof(s->head_hash); i++) {
        buf[n++] = hex[s->head_hash[i] >> 4];
        buf[n++] = hex[s->head_hash[i] & 15];
    }
    buf[n++] = '"';
    evbuffer_add(out, buf, n);
}

void http_json_time(struct evbuffer *out, int64_t ms)
{
    if (ms <= 0) {
        evbuffer_add(out, "null", 4);
        return;
    }
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char buf[48];
    size_t n = strftime(buf, sizeof(buf), "\"%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof(buf) - n, ".%03dZ\"", (int)(ms % 1000));
    evbuffer_add(out, buf, strlen(buf));
}

/* RFC 4180: quoted only when it holds a comma, a quote or a line break; quotes doubled. */
void http_csv_field(struct evbuffer *out, const char *s)
{
    s = s ? s : "";
    if (!s[strcspn(s, ",\"\r\n")]) {
        evbuffer_add(out, s, strlen(s));
        return;
    }
    evbuffer_add(out, "\"", 1);
    for (const char *q; (q = strchr(s, '"')); s = q + 1) {
        evbuffer_add(out, s, (size_t)(q - s));
        evbuffer_add(out, "\"\"", 2);
    }
    evbuffer_add(out, s, strlen(s));
    evbuffer_add(out, "\"", 1);
}

static const char *json_bool(bool b)
{
    return b ? "true" : "false";
}

static void json_totals(struct evbuffer *out, const struct http_totals *t)
{
    evbuffer_add_printf(out,
                        "{\"batches\":%" PRIu64 ",\"votes\":%" PRIu64 ",\"accepted\":%" PRIu64
                        ",\"duplicate\":%" PRIu64 ",\"rejected\":{\"unknown_project\":%" PRIu64
                        ",\"not_allowed\":%" PRIu64 "}}",
                        t->batches, t->votes, t->accepted, t->duplicate,
                        t->rejected_unknown_project, t->rejected_not_allowed);
}

void http_render_progress(struct evbuffer *out, const struct http_progress *p,
                          const uint64_t *circuits_decided)
{
    evbuffer_add_printf(
        out,
        "{\"tables\":%" PRIu64 ",\"tables_reported\":%" PRIu64 ",\"electors\":%" PRIu64
        ",\"electors_reported\":%" PRIu64 ",\"ballots\":%" PRIu64 ",\"turnout\":",
        p->tables, p->tables_reported, p->electors, p->electors_reported, p->ballots);
    /* A ratio to four decimals (0.01 %); null while no reported table has electors. */
    if (p->electors_reported)
        evbuffer_add_printf(out, "%.4f", (double)p->ballots / (double)p->electors_reported);
    else
        evbuffer_add(out, "null", 4);
    evbuffer_add_printf(out, ",\"blank\":%" PRIu64 ",\"null\":%" PRIu64, p->blank, p->null_ballots);
    if (circuits_decided)
        evbuffer_add_printf(out, ",\"circuits_decided\":%" PRIu64, *circuits_decided);
    evbuffer_add(out, "}", 1);
}

/* {"consultation":{...},"checkpoint":N,"time":T, — the head every /v1 document shares. */
static void json_head(const struct http_snapshot *s, struct evbuffer *out)
{
    const struct http_catalog *cat = s->layout->cat;
    evbuffer_add(out, "{\"consultation\":{\"id\":", 22);
    http_json_string(out, cat->consultation_id);
    evbuffer_add(out, ",\"name\":", 8);
    http_json_string(out, cat->consultation_name);
    evbuffer_add_printf(out, "},\"checkpoint\":%" PRIu64 ",\"time\":", s->checkpoint);
    http_json_time(out, s->committed_ms);
}

static bool filter_keeps(const struct http_snapshot *s, const struct http_filter *f, uint32_t c)
{
    if (f->circuit >= 0 && (int64_t)c != f->circuit)
        return false;
    if (f->state >= 0 && (int64_t)s->layout->circuit_state[c] != f->state)
        return false;
    return true;
}

/* ---- /v1/results -------------------------------------------------------------------------- */

static char *flatten(struct evbuffer *b, size_t *len)
{
    *len = evbuffer_get_length(b);
    char *p = xmalloc(*len + 1);
    evbuffer_remove(b, p, *len);
    return p;
}

void http_render_layout_rows(struct http_layout *l)
{
    const struct http_catalog *cat = l->cat;
    size_t np = cat->n_projects;
    struct evbuffer *j = evbuffer_new(), *c = evbuffer_new();
    if (!j || !c)
        abort();
    l->json_off = xcalloc(np + 1, sizeof(size_t));
    l->csv_off = xcalloc(np + 1, sizeof(size_t));
    for (size_t k = 0; k < np; k++) {
        const struct http_catalog_project *p = &cat->projects[l->project_by_id[k]];
        const struct http_catalog_circuit *cc = &cat->circuits[p->circuit];
        evbuffer_add_printf(j, "{\"id\":%" PRIu32 ",\"name\":", p->id);
        http_json_string(j, p->name);
        evbuffer_add_printf(j, ",\"circuit_id\":%" PRIu32 ",\"votes\":", cc->id);
        l->json_off[k + 1] = evbuffer_get_length(j);

        evbuffer_add_printf(c, "%" PRIu32 ",", p->id);
        http_csv_field(c, p->name);
        evbuffer_add_printf(c, ",%" PRIu32 ",", cc->id);
        http_csv_field(c, cc->name);
        evbuffer_add(c, ",", 1);
        http_csv_field(c, cc->state);
        evbuffer_add(c, ",", 1);
        l->csv_off[k + 1] = evbuffer_get_length(c);
    }
    size_t len;
    l->json_rows = flatten(j, &len);
    l->csv_rows = flatten(c, &len);
    evbuffer_free(j);
    evbuffer_free(c);
}

static char *put_u64(char *p, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static char *put_str(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define PUT(p, lit) put_str(p, lit, sizeof(lit) - 1)

char *http_render_results(const struct http_snapshot *s, const struct http_filter *f, bool csv,
                          size_t *len)
{
    const struct http_layout *l = s->layout;
    const struct http_catalog *cat = l->cat;
    static const char csv_head[] =
        "project_id,project_name,circuit_id,circuit_name,state,votes,rank,winner,tie\r\n";
    struct evbuffer *head = evbuffer_new();
    if (!head)
        abort();
    if (csv) {
        evbuffer_add(head, csv_head, sizeof(csv_head) - 1);
    } else {
        json_head(s, head);
        evbuffer_add(head, ",\"projects\":[", 13);
    }
    size_t head_len = evbuffer_get_length(head);
    /* Fixed parts, plus per row at most: 2 separator bytes, 20 digits of votes, 10 of rank
     * and the longest tail below. */
    const size_t *off = csv ? l->csv_off : l->json_off;
    const char *rows = csv ? l->csv_rows : l->json_rows;
    size_t cap = head_len + off[cat->n_projects] + cat->n_projects * 100 + 8;
    char *buf = xmalloc(cap);
    evbuffer_remove(head, buf, head_len);
    evbuffer_free(head);
    char *p = buf + head_len;
    bool first = true;
    for (size_t k = 0; k < cat->n_projects; k++) {
        uint32_t i = l->project_by_id[k];
        if (!filter_keeps(s, f, cat->projects[i].circuit))
            continue;
        bool winner = s->flags[i] & HTTP_FLAG_WINNER, tie = s->flags[i] & HTTP_FLAG_TIE;
        if (!csv && !first)
            p = PUT(p, ",");
        if (!csv)
            p = PUT(p, "\n");
        first = false;
        p = put_str(p, rows + off[k], off[k + 1] - off[k]);
        p = put_u64(p, s->votes[i]);
        if (csv) {
            p = PUT(p, ",");
            p = put_u64(p, s->rank[i]);
            p = winner ? PUT(p, ",true") : PUT(p, ",false");
            p = tie ? PUT(p, ",true\r\n") : PUT(p, ",false\r\n");
        } else {
            p = PUT(p, ",\"rank\":");
            p = put_u64(p, s->rank[i]);
            p = winner ? PUT(p, ",\"winner\":true") : PUT(p, ",\"winner\":false");
            p = tie ? PUT(p, ",\"tie\":true}") : PUT(p, ",\"tie\":false}");
        }
    }
    if (!csv)
        p = PUT(p, "]}\n");
    *len = (size_t)(p - buf);
    return buf;
}

/* ---- /v1/summary, /v1/circuits, /v1/collectors -------------------------------------------- */

void http_render_summary(const struct http_snapshot *s, struct evbuffer *out)
{
    const struct http_layout *l = s->layout;
    const struct http_catalog *cat = l->cat;
    json_head(s, out);
    evbuffer_add(out, ",\"head_hash\":", 13);
    http_json_head_hash(out, s);
    evbuffer_add_printf(out, ",\"writer_epoch\":%" PRIu64 ",\"totals\":", s->writer_epoch);
    json_totals(out, &s->totals);
    evbuffer_add(out, ",\"progress\":", 12);
    http_render_progress(out, &s->progress, &s->circuits_decided);
    evbuffer_add_printf(out,
                        ",\"collectors\":{\"registered\":%zu,\"connected\":%" PRIu32
                        ",\"reporting\":%" PRIu32 "},\"projects\":%zu,\"circuits\":%zu,"
                        "\"states\":[",
                        s->n_collectors, s->collectors_connected, s->collectors_reporting,
                        cat->n_projects, cat->n_circuits);
    for (size_t st = 0; st < l->n_states; st++) {
        /* A pass over the circuits per state: states are few (25 in the sample). */
        size_t circuits = 0, projects = 0, winners = 0;
        for (size_t c = 0; c < cat->n_circuits; c++) {
            if (l->circuit_state[c] != st)
                continue;
            circuits++;
            projects += l->first[c + 1] - l->first[c];
            winners += s->circuits[c].winners;
        }
        evbuffer_add(out, st ? ",{\"name\":" : "{\"name\":", st ? 9 : 8);
        http_json_string(out, l->states[st]);
        evbuffer_add_printf(
            out, ",\"circuits\":%zu,\"projects\":%zu,\"votes\":%" PRIu64 ",\"winners\":%zu",
            circuits, projects, s->state_votes[st], winners);
        evbuffer_add(out, ",\"progress\":", 12);
        http_render_progress(out, &s->state_progress[st], NULL);
        evbuffer_add(out, "}", 1);
    }
    evbuffer_add(out, "]}\n", 3);
}

void http_render_states(const struct http_snapshot *s, struct evbuffer *out)
{
    const struct http_layout *l = s->layout;
    const struct http_catalog *cat = l->cat;
    json_head(s, out);
    evbuffer_add(out, ",\"states\":[", 11);
    for (size_t st = 0; st < l->n_states; st++) {
        uint64_t circuits = 0, decided = 0, winners = 0;
        for (size_t c = 0; c < cat->n_circuits; c++) {
            if (l->circuit_state[c] != st)
                continue;
            circuits++;
            decided += s->circuits[c].decided;
            winners += s->circuits[c].winners;
        }
        evbuffer_add_printf(out, "%s\n{\"name\":", st ? "," : "");
        http_json_string(out, l->states[st]);
        evbuffer_add_printf(out,
                            ",\"circuits\":%" PRIu64 ",\"votes\":%" PRIu64 ",\"winners\":%" PRIu64
                            ",\"progress\":",
                            circuits, s->state_votes[st], winners);
        http_render_progress(out, &s->state_progress[st], &decided);
        evbuffer_add(out, "}", 1);
    }
    evbuffer_add(out, "]}\n", 3);
}

static void json_winners(const struct http_snapshot *s, uint32_t c, struct evbuffer *out)
{
    const struct http_catalog *cat = s->layout->cat;
    evbuffer_add(out, "[", 1);
    bool first = true;
    for (uint32_t k = s->layout->first[c]; k < s->layout->first[c + 1]; k++) {
        uint32_t i = s->ranked[k];
        if (!(s->flags[i] & HTTP_FLAG_WINNER))
            continue;
        evbuffer_add_printf(out, "%s%" PRIu32, first ? "" : ",", cat->projects[i].id);
        first = false;
    }
    evbuffer_add(out, "]", 1);
}

/* ,"decided":..,"progress":{..},"corrected_at":.. — a circuit's reporting progress. */
static void json_circuit_progress(const struct http_snapshot *s, uint32_t c, struct evbuffer *out)
{
    const struct http_snap_circuit *sc = &s->circuits[c];
    evbuffer_add_printf(out, ",\"decided\":%s,\"progress\":", json_bool(sc->decided));
    http_render_progress(out, &sc->progress, NULL);
    evbuffer_add(out, ",\"corrected_at\":", 16);
    http_json_time(out, sc->corrected_ms);
}

/* "id":..,"name":..,"state":..,"seats":..,"projects":..,"votes":..,"winners":[..],"tie":..,
 * "margin":.. — the fields a circuit has in the list and in its own document (both add
 * json_circuit_progress's at the end). */
static void json_circuit_fields(const struct http_snapshot *s, uint32_t c, struct evbuffer *out)
{
    const struct http_catalog_circuit *cc = &s->layout->cat->circuits[c];
    const struct http_snap_circuit *sc = &s->circuits[c];
    evbuffer_add_printf(out, "\"id\":%" PRIu32 ",\"name\":", cc->id);
    http_json_string(out, cc->name);
    evbuffer_add(out, ",\"state\":", 9);
    http_json_string(out, cc->state);
    evbuffer_add_printf(
        out, ",\"seats\":%" PRIu32 ",\"projects\":%" PRIu32 ",\"votes\":%" PRIu64 ",\"winners\":",
        cc->seats, s->layout->first[c + 1] - s->layout->first[c], sc->votes);
    json_winners(s, c, out);
    evbuffer_add_printf(out, ",\"tie\":%s,\"margin\":", json_bool(sc->tie));
    if (sc->has_margin)
        evbuffer_add_printf(out, "%" PRIu64, sc->margin);
    else
        evbuffer_add(out, "null", 4);
}

void http_render_circuits(const struct http_snapshot *s, int64_t state, struct evbuffer *out)
{
    const struct http_layout *l = s->layout;
    json_head(s, out);
    evbuffer_add(out, ",\"circuits\":[", 13);
    bool first = true;
    for (size_t k = 0; k < l->cat->n_circuits; k++) {
        uint32_t c = l->circuit_by_id[k];
        if (state >= 0 && (int64_t)l->circuit_state[c] != state)
            continue;
        evbuffer_add(out, first ? "\n{" : ",\n{", first ? 2 : 3);
        first = false;
        json_circuit_fields(s, c, out);
        json_circuit_progress(s, c, out);
        evbuffer_add(out, "}", 1);
    }
    evbuffer_add(out, "]}\n", 3);
}

void http_render_circuit(const struct http_snapshot *s, uint32_t c, struct evbuffer *out)
{
    const struct http_layout *l = s->layout;
    json_head(s, out);
    evbuffer_add(out, ",", 1);
    json_circuit_fields(s, c, out);
    evbuffer_add(out, ",\"ranking\":[", 12);
    for (uint32_t k = l->first[c]; k < l->first[c + 1]; k++) {
        uint32_t i = s->ranked[k];
        const struct http_catalog_project *p = &l->cat->projects[i];
        evbuffer_add_printf(out, "%s\n{\"id\":%" PRIu32 ",\"name\":", k > l->first[c] ? "," : "",
                            p->id);
        http_json_string(out, p->name);
        evbuffer_add_printf(out,
                            ",\"votes\":%" PRIu64 ",\"rank\":%" PRIu32
                            ",\"winner\":%s,\"tie\":%s,\"margin_to_next\":",
                            s->votes[i], s->rank[i], json_bool(s->flags[i] & HTTP_FLAG_WINNER),
                            json_bool(s->flags[i] & HTTP_FLAG_TIE));
        if (k + 1 < l->first[c + 1])
            evbuffer_add_printf(out, "%" PRIu64, s->votes[i] - s->votes[s->ranked[k + 1]]);
        else
            evbuffer_add(out, "null", 4);
        evbuffer_add_printf(out, ",\"min_votes\":%" PRIu32 ",\"eligible\":%s,\"by_lot\":%s}",
                            l->cat->min_votes ? l->cat->min_votes[i] : 0,
                            json_bool(s->flags[i] & HTTP_FLAG_ELIGIBLE),
                            json_bool(s->flags[i] & HTTP_FLAG_BY_LOT));
    }
    evbuffer_add(out, "]", 1);
    json_circuit_progress(s, c, out);
    evbuffer_add(out, "}\n", 2);
}

void http_render_collectors(const struct http_snapshot *s, struct evbuffer *out)
{
    json_head(s, out);
    evbuffer_add(out, ",\"collectors\":[", 15);
    for (size_t k = 0; k < s->n_collectors; k++) {
        const struct http_snap_collector *c = &s->collectors[k];
        evbuffer_add_printf(out, "%s\n{\"id\":", k ? "," : "");
        http_json_string(out, c->id);
        evbuffer_add_printf(out, ",\"connected\":%s,\"last_seen\":", json_bool(c->connected));
        http_json_time(out, c->last_seen_ms);
        uint64_t lag = c->applied_seq > c->durable_seq ? c->applied_seq - c->durable_seq : 0;
        evbuffer_add_printf(
            out,
            ",\"batches\":%" PRIu64 ",\"votes\":%" PRIu64 ",\"accepted\":%" PRIu64
            ",\"duplicate\":%" PRIu64 ",\"rejected\":%" PRIu64
            ",\"rejected_by_reason\":{\"unknown_project\":%" PRIu64 ",\"not_allowed\":%" PRIu64
            "},\"durable_seq\":%" PRIu64 ",\"applied_seq\":%" PRIu64 ",\"lag\":%" PRIu64 "}",
            c->durable.batches, c->durable.votes, c->durable.accepted, c->durable.duplicate,
            c->durable.rejected_unknown_project + c->durable.rejected_not_allowed,
            c->durable.rejected_unknown_project, c->durable.rejected_not_allowed, c->durable_seq,
            c->applied_seq, lag);
    }
    evbuffer_add(out, "]}\n", 3);
}

/* ---- the event stream ----------------------------------------------------------------------- */

/* id: N / event: KIND / data: {"checkpoint":N,"time":T,"head_hash":H,"totals":{..} — left
 * open. Every kind carries the head, so a client can match what it shows to the chain. */
static void event_head(const struct http_snapshot *s, const char *kind, struct evbuffer *out)
{
    evbuffer_add_printf(out,
                        "id: %" PRIu64 "\nevent: %s\ndata: {\"checkpoint\":%" PRIu64 ",\"time\":",
                        s->checkpoint, kind, s->checkpoint);
    http_json_time(out, s->committed_ms);
    evbuffer_add(out, ",\"head_hash\":", 13);
    http_json_head_hash(out, s);
    evbuffer_add(out, ",\"totals\":", 10);
    json_totals(out, &s->totals);
    evbuffer_add(out, ",\"progress\":", 12);
    http_render_progress(out, &s->progress, &s->circuits_decided);
}

void http_render_event_snapshot(const struct http_snapshot *s, struct evbuffer *out)
{
    event_head(s, "snapshot", out);
    evbuffer_add(out, "}\n\n", 3);
}

static void event_vote(const struct http_snapshot *s, uint32_t i, bool first, struct evbuffer *out)
{
    evbuffer_add_printf(out, "%s{\"id\":%" PRIu32 ",\"votes\":%" PRIu64 "}", first ? "" : ",",
                        s->layout->cat->projects[i].id, s->votes[i]);
}

void http_render_event_checkpoint(const struct http_snapshot *s, const uint32_t *changed,
                                  size_t n_changed, struct evbuffer *out)
{
    event_head(s, "checkpoint", out);
    evbuffer_add(out, ",\"changed\":[", 12);
    bool first = true;
    for (size_t k = 0; k < n_changed; k++) {
        if (changed[k] >= s->layout->cat->n_projects)
            continue;
        event_vote(s, changed[k], first, out);
        first = false;
    }
    /* The circuits whose progress, decided or corrected_at changed since the previous
     * snapshot, with their winners (a decided flag means little without them). */
    evbuffer_add(out, "],\"circuits\":[", 14);
    for (size_t k = 0; k < s->n_changed_circuits; k++) {
        uint32_t c = s->changed_circuits[k];
        evbuffer_add_printf(out, "%s{\"id\":%" PRIu32 ",\"winners\":", k ? "," : "",
                            s->layout->cat->circuits[c].id);
        json_winners(s, c, out);
        evbuffer_add_printf(out, ",\"tie\":%s", json_bool(s->circuits[c].tie));
        json_circuit_progress(s, c, out);
        evbuffer_add(out, "}", 1);
    }
    evbuffer_add(out, "]}\n\n", 4);
}

void http_render_event_reset(const struct http_snapshot *s, struct evbuffer *out)
{
    event_head(s, "reset", out);
    evbuffer_add(out, ",\"changed\":[", 12);
    for (size_t k = 0; k < s->layout->cat->n_projects; k++)
        event_vote(s, s->layout->project_by_id[k], k == 0, out);
    evbuffer_add(out, "]}\n\n", 4);
}

/* ---- /metrics ------------------------------------------------------------------------------- */

static void metric_head(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metric_u64(struct evbuffer *out, const char *name, const char *type, const char *help,
                       uint64_t v)
{
    metric_head(out, name, type, help);
    evbuffer_add_printf(out, "%s %" PRIu64 "\n", name, v);
}

/* The shortest text that reads back as v, as the Prometheus clients write floats (Go's
 * FormatFloat(v, 'g', -1, 64)): a fixed "%.9g" printed a start time of 1796125874.33 as
 * 1.79612587e+09, up to five seconds off. */
static void metric_value_f64(struct evbuffer *out, double v)
{
    char s[32];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(s, sizeof(s), "%.*g", prec, v);
        if (strtod(s, NULL) == v)
            break;
    }
    evbuffer_add(out, s, strlen(s));
}

static void metric_f64(struct evbuffer *out, const char *name, const char *type, const char *help,
                       double v)
{
    metric_head(out, name, type, help);
    evbuffer_add_printf(out, "%s ", name);
    metric_value_f64(out, v);
    evbuffer_add(out, "\n", 1);
}

/* How long single callbacks held the event loop since tallyd got ready (core/loopwatch). */
static void render_loop_metrics(struct evbuffer *out)
{
    struct loopwatch_stats ls;
    loopwatch_read(&ls);
    const char *h = "tally_loop_iteration_seconds";
    metric_head(out, h, "histogram",
                "Time the event loop spent in one callback (a collector's frames, a checkpoint "
                "hand-off, an HTTP request, a timer) without polling, since tallyd got ready.");
    uint64_t cum = 0;
    for (size_t b = 0; b < LOOPWATCH_BUCKETS; b++) {
        cum += ls.counts[b];
        evbuffer_add_printf(out, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", h, loopwatch_bounds[b], cum);
    }
    evbuffer_add_printf(out, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n%s_sum ", h, ls.samples, h);
    metric_value_f64(out, ls.sum_s);
    evbuffer_add_printf(out, "\n%s_count %" PRIu64 "\n", h, ls.samples);
    metric_f64(out, "tally_loop_iteration_max_seconds", "gauge",
               "Longest single event-loop callback since tallyd got ready.", ls.max_s);
}

void http_render_metrics(const struct http_metrics *m, const struct http_metrics_extra *x,
                         struct evbuffer *out)
{
    metric_head(out, "tally_build_info", "gauge", "This tallyd's version and source commit.");
    evbuffer_add_printf(out, "tally_build_info{version=\"%s\",commit=\"%s\"} 1\n",
                        m->version ? m->version : "unknown", m->commit ? m->commit : "unknown");
    metric_f64(out, "process_cpu_seconds_total", "counter", "User and system CPU time spent.",
               m->process_cpu_seconds);
    metric_u64(out, "process_resident_memory_bytes", "gauge", "Resident memory size.",
               m->process_resident_bytes);
    metric_u64(out, "process_open_fds", "gauge", "Open file descriptors.", m->process_open_fds);
    metric_u64(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
               m->process_max_fds);
    metric_f64(out, "process_start_time_seconds", "gauge",
               "Start time of the process since the epoch, in seconds.", m->process_start_time);
    metric_u64(out, "tally_votes_accepted_total", "counter",
               "Votes counted, durable in PostgreSQL.", m->votes_accepted);
    metric_u64(out, "tally_votes_duplicate_total", "counter",
               "Votes whose ballot was already counted, durable.", m->votes_duplicate);
    metric_head(out, "tally_votes_rejected_total", "counter",
                "Votes rejected, by reason, durable.");
    evbuffer_add_printf(out, "tally_votes_rejected_total{reason=\"unknown_project\"} %" PRIu64 "\n",
                        m->votes_rejected_unknown_project);
    evbuffer_add_printf(out, "tally_votes_rejected_total{reason=\"not_allowed\"} %" PRIu64 "\n",
                        m->votes_rejected_not_allowed);
    metric_u64(out, "tally_batches_total", "counter", "Batches applied in memory.", m->batches);
    metric_u64(out, "tally_seq_conflicts_total", "counter",
               "Batches refused because their seq was applied before with other content "
               "(ERROR_SEQ_CONFLICT).",
               m->seq_conflicts);
    metric_u64(out, "tally_bytes_received_total", "counter", "Bytes read from collectors.",
               m->bytes_received);
    /* Not "tally_connections": that family name is the counter's below (OpenMetrics). */
    metric_u64(out, "tally_connections_open", "gauge", "Collector connections open.",
               m->connections_open);
    metric_u64(out, "tally_connections_total", "counter", "Collector connections accepted.",
               m->connections_total);
    metric_u64(out, "tally_checkpoints_total", "counter", "Checkpoints committed since start.",
               m->checkpoints);

    const char *h = "tally_checkpoint_duration_seconds";
    metric_head(out, h, "histogram", "Time from handing a checkpoint to the store to its COMMIT.");
    for (size_t b = 0; b < HTTP_CHECKPOINT_BUCKETS; b++)
        evbuffer_add_printf(out, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", h,
                            http_checkpoint_bucket_le[b], m->checkpoint_bucket[b]);
    uint64_t count = m->checkpoint_bucket[HTTP_CHECKPOINT_BUCKETS];
    evbuffer_add_printf(out, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", h, count);
    evbuffer_add_printf(out, "%s_sum ", h);
    metric_value_f64(out, m->checkpoint_seconds_sum);
    evbuffer_add_printf(out, "\n%s_count %" PRIu64 "\n", h, count);

    metric_f64(out, "tally_checkpoint_lag_seconds", "gauge",
               "Age of the oldest batch applied in memory and not yet durable (0 when everything "
               "applied is durable).",
               m->checkpoint_lag_seconds);
    metric_u64(out, "tally_postgres_up", "gauge",
               "1 when the store's last attempt reached PostgreSQL.", m->postgres_up ? 1 : 0);
    metric_u64(out, "tally_pg_errors_total", "counter", "Failed PostgreSQL attempts.",
               m->pg_errors);
    metric_u64(out, "tally_backlog_votes", "gauge", "Votes applied in memory, not yet durable.",
               m->backlog_votes);
    metric_u64(out, "tally_ballots", "gauge", "Distinct ballots held.", m->ballots);
    metric_u64(out, "tally_ballot_set_bytes", "gauge",
               "Memory of the ballot set (both tables while it grows).", m->ballot_set_bytes);
    render_loop_metrics(out);
    metric_u64(out, "tally_ingest_paused", "gauge",
               "1 while reading from collectors is paused by back-pressure.", m->paused ? 1 : 0);
    metric_u64(out, "tally_writer_epoch", "gauge",
               "Writer epoch this tallyd holds (bumped by each tallyd that takes the writer "
               "lock); 0 while it is not the writer.",
               m->writer_epoch);
    static const struct {
        const char *name, *help;
        size_t off;
    } limits[] = {
        {"tally_net_hello_timeouts_total", "Connections closed without Hello at the deadline.",
         offsetof(struct http_metrics, hello_timeouts)},
        {"tally_net_frame_timeouts_total", "Connections closed for a frame not finished in time.",
         offsetof(struct http_metrics, frame_timeouts)},
        {"tally_net_idle_timeouts_total", "Sessions closed after the idle timeout.",
         offsetof(struct http_metrics, idle_timeouts)},
        {"tally_net_conn_limit_refused_total",
         "Connections closed at accept: --max-connections reached.",
         offsetof(struct http_metrics, conn_limit_refused)},
        {"tally_net_pre_auth_too_large_total",
         "Frames before Hello over the pre-authentication limit (refused, never decoded).",
         offsetof(struct http_metrics, pre_auth_too_large)},
        {"tally_net_buffer_pauses_total",
         "Times reading stopped: --max-buffered-bytes buffered across connections.",
         offsetof(struct http_metrics, buffer_pauses)},
        {"tally_net_accept_pauses_total",
         "Times accepting paused for lack of file descriptors (EMFILE, ENFILE).",
         offsetof(struct http_metrics, accept_pauses)},
        {"tally_net_tls_handshake_failures_total",
         "TLS handshakes that failed (plain TCP, untrusted or no certificate).",
         offsetof(struct http_metrics, tls_handshake_failures)},
        {"tally_net_pre_auth_evicted_total",
         "Connections without Hello closed to make room for a new one (the oldest first).",
         offsetof(struct http_metrics, pre_auth_evicted)},
        {"tally_net_tcp_probes_total",
         "Connections closed by the peer before sending a byte (port checks, probes).",
         offsetof(struct http_metrics, tcp_probes)},
        {"tally_auth_refused_total",
         "Hellos refused with ERROR_AUTH: the certificate is not pinned to that collector.",
         offsetof(struct http_metrics, auth_refused)},
        {"tally_collector_disabled_refused_total",
         "Hellos refused and sessions dropped because the collector is disabled.",
         offsetof(struct http_metrics, disabled_refused)},
    };
    for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++)
        metric_u64(out, limits[i].name, "counter", limits[i].help,
                   *(const uint64_t *)((const char *)m + limits[i].off));
    metric_u64(out, "tally_net_buffered_bytes", "gauge",
               "Input bytes buffered across collector connections.", m->buffered_bytes);
    metric_u64(out, "tally_net_decode_arena_bytes", "gauge",
               "Decode memory held by collector connections.", m->arena_bytes);
    metric_u64(out, "tally_collector_tls", "gauge",
               "1 when the collector port speaks mutual TLS, 0 for plain TCP.", m->tls ? 1 : 0);
    metric_u64(out, "tally_db_role_privileged", "gauge",
               "1 when tallyd's database role is a superuser or owns the schema (it needs only "
               "tally_writer).",
               m->db_role_privileged ? 1 : 0);

    const struct http_snapshot *s = x->snap;
    metric_u64(out, "tally_collectors_registered", "gauge",
               "Collectors registered, at the last checkpoint.", s ? s->n_collectors : 0);
    metric_u64(out, "tally_collectors_connected", "gauge",
               "Collectors connected, at the last checkpoint.", s ? s->collectors_connected : 0);
    metric_u64(out, "tally_last_checkpoint_id", "gauge", "Id of the last published checkpoint.",
               s ? s->checkpoint : 0);
    /* Reporting progress, national, at the last checkpoint (docs/api.md). */
    static const struct http_progress none;
    const struct http_progress *pg = s ? &s->progress : &none;
    metric_u64(out, "tally_tables_expected", "gauge", "Voting tables loaded.", pg->tables);
    metric_u64(out, "tally_tables_reported", "gauge",
               "Voting tables reported (a tally sheet or at least one per-ballot vote), durable.",
               pg->tables_reported);
    metric_u64(out, "tally_electors", "gauge", "Electors of every voting table.", pg->electors);
    metric_u64(out, "tally_electors_reported", "gauge", "Electors of the reported voting tables.",
               pg->electors_reported);
    metric_u64(out, "tally_ballots_reported", "gauge",
               "Ballots of the reported voting tables (per-ballot votes, or blank + null + rows "
               "of their sheet), durable.",
               pg->ballots);
    metric_u64(out, "tally_blank_ballots", "gauge", "Blank ballots of tally sheets, durable.",
               pg->blank);
    metric_u64(out, "tally_null_ballots", "gauge", "Null ballots of tally sheets, durable.",
               pg->null_ballots);
    metric_u64(out, "tally_circuits_decided", "gauge",
               "Circuits whose winners the votes still possible cannot change.",
               s ? s->circuits_decided : 0);
    /* Per collector (ids are [A-Za-z0-9._-], safe as label values). */
    static const char *const fam[4][2] = {
        {"tally_collector_connected", "1 while the collector is connected."},
        {"tally_collector_durable_seq", "Last batch seq of the collector durable in PostgreSQL."},
        {"tally_collector_applied_seq", "Last batch seq of the collector applied in memory."},
        {"tally_collector_last_seen_timestamp_seconds",
         "When the collector last sent a frame (unix seconds; 0: not since start)."},
    };
    for (int k = 0; k < 4 && s; k++) {
        metric_head(out, fam[k][0], "gauge", fam[k][1]);
        for (size_t i = 0; i < s->n_collectors; i++) {
            const struct http_snap_collector *c = &s->collectors[i];
            if (k == 3)
                evbuffer_add_printf(out, "%s{collector=\"%s\"} %.3f\n", fam[k][0], c->id,
                                    (double)c->last_seen_ms / 1000.0);
            else
                evbuffer_add_printf(out, "%s{collector=\"%s\"} %" PRIu64 "\n", fam[k][0], c->id,
                                    k == 0   ? (uint64_t)c->connected
                                    : k == 1 ? c->durable_seq
                                             : c->applied_seq);
        }
    }
    metric_u64(out, "tally_http_requests_total", "counter", "HTTP requests answered.",
               x->http_requests);
    metric_u64(out, "tally_http_sse_subscribers", "gauge", "Open /v1/events streams.",
               x->sse_subscribers);
    metric_u64(out, "tally_http_sse_dropped_total", "counter",
               "Event streams dropped for falling too far behind.", x->sse_dropped);
}
