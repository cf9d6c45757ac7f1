/* Renderers: a snapshot into the bytes of a response — JSON for the /v1 API and the event
 * stream, RFC 4180 CSV (metrics.c: Prometheus text). Pure: no sockets, no clock, no
 * routing; callers decide caching and headers. Every count goes through
 * http_snapshot_has_counts(): under embargo the snapshot has none. */
#include "http/internal.h"

#include "core/json.h"
#include "core/xalloc.h"
#include "tally/protocol.h"

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

static const char *const reason_names[TALLY_REASON_COUNT] = {TALLY_REASON_NAMES};

/* {"reason": n, ...} for reasons first..last. */
static void json_reasons(struct evbuffer *out, const uint64_t *by, unsigned first, unsigned last)
{
    evbuffer_add(out, "{", 1);
    for (unsigned k = first; k <= last; k++)
        evbuffer_add_printf(out, "%s\"%s\":%" PRIu64, k > first ? "," : "", reason_names[k], by[k]);
    evbuffer_add(out, "}", 1);
}

/* "totals" keeps the shape it always had (the two reasons it had); then, beside it, votes
 * rejected by the voting tables' checks and the tally sheets received. */
static void json_totals(struct evbuffer *out, const struct http_totals *t)
{
    evbuffer_add_printf(out,
                        "{\"batches\":%" PRIu64 ",\"votes\":%" PRIu64 ",\"accepted\":%" PRIu64
                        ",\"duplicate\":%" PRIu64 ",\"rejected\":{\"unknown_project\":%" PRIu64
                        ",\"not_allowed\":%" PRIu64 "}},\"rejected_tables\":",
                        t->batches, t->votes, t->accepted, t->duplicate,
                        t->rejected_unknown_project, t->rejected_not_allowed);
    json_reasons(out, t->rejected, 3, TALLY_REASON_VOTE_LAST);
    evbuffer_add_printf(out,
                        ",\"sheets\":{\"sent\":%" PRIu64 ",\"accepted\":%" PRIu64
                        ",\"duplicate\":%" PRIu64 ",\"rejected\":%" PRIu64 ",\"rejected_by\":",
                        t->sheets, t->sheets_accepted, t->sheets_duplicate, t->sheets_rejected);
    json_reasons(out, t->sheets_rejected_by, 1, TALLY_REASON_COUNT - 1);
    evbuffer_add(out, "}", 1);
}

void http_render_progress(const struct http_snapshot *s, struct evbuffer *out,
                          const struct http_progress *p, const uint64_t *circuits_decided)
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
    /* Blank and null ballots are counts, and decided follows from the votes. */
    if (http_snapshot_has_counts(s)) {
        evbuffer_add_printf(out, ",\"blank\":%" PRIu64 ",\"null\":%" PRIu64, p->blank,
                            p->null_ballots);
        if (circuits_decided)
            evbuffer_add_printf(out, ",\"circuits_decided\":%" PRIu64, *circuits_decided);
    }
    evbuffer_add(out, "}", 1);
}

static void json_hash_or_null(struct evbuffer *out, bool has, const uint8_t h[32])
{
    static const char hex[] = "0123456789abcdef";
    if (!has) {
        evbuffer_add(out, "null", 4);
        return;
    }
    char buf[66];
    buf[0] = buf[65] = '"';
    for (size_t i = 0; i < 32; i++) {
        buf[1 + 2 * i] = hex[h[i] >> 4];
        buf[2 + 2 * i] = hex[h[i] & 15];
    }
    evbuffer_add(out, buf, sizeof(buf));
}

void http_render_status(const struct http_snapshot *s, struct evbuffer *out)
{
    const struct http_status *st = &s->status;
    evbuffer_add_printf(
        out, ",\"status\":\"%s\",\"certified_hash\":", st->certified ? "official" : "provisional");
    json_hash_or_null(out, st->certified, st->certified_hash);
    evbuffer_add_printf(out,
                        ",\"closed\":%s,\"embargo\":%s,\"tie_seed_hash\":", json_bool(st->closed),
                        json_bool(st->embargo));
    json_hash_or_null(out, st->tie_rule, st->tie_seed_hash);
}

/* ,"embargo":true — said in every document that leaves its counts out for the embargo. */
static void json_embargo_mark(const struct http_snapshot *s, struct evbuffer *out)
{
    if (!http_snapshot_has_counts(s))
        evbuffer_add(out, ",\"embargo\":true", 15);
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

/* Project i (dense) is a row of this rendering. */
static bool row_keeps(const struct http_snapshot *s, const struct http_filter *f, uint32_t i)
{
    if (!filter_keeps(s, f, s->layout->cat->projects[i].circuit))
        return false;
    return !f->since || f->full || s->row_checkpoint[i] > f->since_id;
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

void http_render_results_head(const struct http_snapshot *s, const struct http_filter *f, bool csv,
                              struct evbuffer *out)
{
    static const char csv_head[] =
        "project_id,project_name,circuit_id,circuit_name,state,votes,rank,winner,tie\r\n";
    /* Under embargo: the registry's columns only. */
    static const char csv_head_embargo[] =
        "project_id,project_name,circuit_id,circuit_name,state\r\n";
    bool counts = http_snapshot_has_counts(s);
    if (csv && counts) {
        evbuffer_add(out, csv_head, sizeof(csv_head) - 1);
        return;
    }
    if (csv) {
        evbuffer_add(out, csv_head_embargo, sizeof(csv_head_embargo) - 1);
        return;
    }
    json_head(s, out);
    if (f->since && f->since_big)
        evbuffer_add_printf(out, ",\"since\":null,\"full\":%s", json_bool(f->full));
    else if (f->since)
        evbuffer_add_printf(out, ",\"since\":%" PRIu64 ",\"full\":%s", f->since_id,
                            json_bool(f->full));
    if (!counts) {
        json_embargo_mark(s, out);
        evbuffer_add(out, ",\"progress\":", 12);
        http_render_progress(s, out, &s->progress, NULL);
    }
    evbuffer_add(out, ",\"projects\":[", 13);
}

char *http_render_results(const struct http_snapshot *s, const struct http_filter *f, bool csv,
                          size_t *len, size_t *head_len_out)
{
    const struct http_layout *l = s->layout;
    const struct http_catalog *cat = l->cat;
    bool counts = http_snapshot_has_counts(s);
    struct evbuffer *head = evbuffer_new();
    if (!head)
        abort();
    http_render_results_head(s, f, csv, head);
    size_t head_len = evbuffer_get_length(head);
    *head_len_out = head_len;
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
        if (!row_keeps(s, f, i))
            continue;
        if (!csv && !first)
            p = PUT(p, ",");
        if (!csv)
            p = PUT(p, "\n");
        first = false;
        if (!counts) {
            /* The fixed part ends in `,"votes":` (JSON) or `,` (CSV): cut it. */
            size_t cut = csv ? 1 : sizeof(",\"votes\":") - 1;
            p = put_str(p, rows + off[k], off[k + 1] - off[k] - cut);
            p = csv ? PUT(p, "\r\n") : PUT(p, "}");
            continue;
        }
        bool winner = s->flags[i] & HTTP_FLAG_WINNER, tie = s->flags[i] & HTTP_FLAG_TIE;
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
    http_render_progress(s, out, &s->progress, &s->circuits_decided);
    http_render_status(s, out);
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
        evbuffer_add_printf(out, ",\"circuits\":%zu,\"projects\":%zu", circuits, projects);
        if (http_snapshot_has_counts(s))
            evbuffer_add_printf(out, ",\"votes\":%" PRIu64 ",\"winners\":%zu", s->state_votes[st],
                                winners);
        evbuffer_add(out, ",\"progress\":", 12);
        http_render_progress(s, out, &s->state_progress[st], NULL);
        evbuffer_add(out, "}", 1);
    }
    evbuffer_add(out, "]}\n", 3);
}

void http_render_states(const struct http_snapshot *s, struct evbuffer *out)
{
    const struct http_layout *l = s->layout;
    const struct http_catalog *cat = l->cat;
    json_head(s, out);
    json_embargo_mark(s, out);
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
        evbuffer_add_printf(out, ",\"circuits\":%" PRIu64, circuits);
        if (http_snapshot_has_counts(s))
            evbuffer_add_printf(out, ",\"votes\":%" PRIu64 ",\"winners\":%" PRIu64,
                                s->state_votes[st], winners);
        evbuffer_add(out, ",\"progress\":", 12);
        http_render_progress(s, out, &s->state_progress[st], &decided);
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
    if (http_snapshot_has_counts(s))
        evbuffer_add_printf(out, ",\"decided\":%s", json_bool(sc->decided));
    evbuffer_add(out, ",\"progress\":", 12);
    http_render_progress(s, out, &sc->progress, NULL);
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
    evbuffer_add_printf(out, ",\"seats\":%" PRIu32 ",\"projects\":%" PRIu32, cc->seats,
                        s->layout->first[c + 1] - s->layout->first[c]);
    if (!http_snapshot_has_counts(s))
        return;
    evbuffer_add_printf(out, ",\"votes\":%" PRIu64 ",\"winners\":", sc->votes);
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
    json_embargo_mark(s, out);
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
    json_embargo_mark(s, out);
    evbuffer_add(out, ",", 1);
    json_circuit_fields(s, c, out);
    evbuffer_add(out, ",\"ranking\":[", 12);
    if (!http_snapshot_has_counts(s)) {
        /* Under embargo the projects by id, without a figure: the order would rank them. */
        bool first = true;
        for (size_t k = 0; k < l->cat->n_projects; k++) {
            uint32_t i = l->project_by_id[k];
            const struct http_catalog_project *p = &l->cat->projects[i];
            if (p->circuit != c)
                continue;
            evbuffer_add_printf(out, "%s\n{\"id\":%" PRIu32 ",\"name\":", first ? "" : ",", p->id);
            http_json_string(out, p->name);
            evbuffer_add_printf(out, ",\"min_votes\":%" PRIu32 "}",
                                l->cat->min_votes ? l->cat->min_votes[i] : 0);
            first = false;
        }
    }
    for (uint32_t k = l->first[c]; http_snapshot_has_counts(s) && k < l->first[c + 1]; k++) {
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
        uint64_t rejected = c->durable.rejected_unknown_project + c->durable.rejected_not_allowed;
        for (unsigned r = 3; r <= TALLY_REASON_VOTE_LAST; r++)
            rejected += c->durable.rejected[r];
        evbuffer_add_printf(out,
                            ",\"batches\":%" PRIu64 ",\"votes\":%" PRIu64 ",\"accepted\":%" PRIu64
                            ",\"duplicate\":%" PRIu64 ",\"rejected\":%" PRIu64
                            ",\"rejected_by_reason\":{\"unknown_project\":%" PRIu64
                            ",\"not_allowed\":%" PRIu64 "},\"durable_seq\":%" PRIu64
                            ",\"applied_seq\":%" PRIu64 ",\"lag\":%" PRIu64 ",\"rejected_tables\":",
                            c->durable.batches, c->durable.votes, c->durable.accepted,
                            c->durable.duplicate, rejected, c->durable.rejected_unknown_project,
                            c->durable.rejected_not_allowed, c->durable_seq, c->applied_seq, lag);
        json_reasons(out, c->durable.rejected, 3, TALLY_REASON_VOTE_LAST);
        evbuffer_add_printf(out,
                            ",\"sheets\":{\"sent\":%" PRIu64 ",\"accepted\":%" PRIu64
                            ",\"duplicate\":%" PRIu64 ",\"rejected\":%" PRIu64 "}}",
                            c->durable.sheets, c->durable.sheets_accepted,
                            c->durable.sheets_duplicate, c->durable.sheets_rejected);
    }
    evbuffer_add(out, "]}\n", 3);
}

/* ---- /v1/history -------------------------------------------------------------------------- */

void http_render_history(const struct http_snapshot *s, const struct http_history *hist,
                         struct evbuffer *out)
{
    json_head(s, out);
    evbuffer_add_printf(out, ",\"stride\":%" PRIu64 ",\"points\":[", hist->stride);
    for (size_t k = 0; k < hist->n; k++) {
        const struct http_history_point *p = &hist->points[k];
        evbuffer_add_printf(out, "%s\n{\"checkpoint\":%" PRIu64 ",\"time\":", k ? "," : "",
                            p->checkpoint);
        http_json_time(out, p->committed_ms);
        evbuffer_add_printf(out,
                            ",\"accepted\":%" PRIu64 ",\"duplicate\":%" PRIu64
                            ",\"rejected\":%" PRIu64 ",\"tables_reported\":%" PRIu64 "}",
                            p->accepted, p->duplicate, p->rejected, p->tables_reported);
    }
    evbuffer_add(out, "]}\n", 3);
}

/* ---- the event stream ----------------------------------------------------------------------- */

/* id: N / event: KIND / data: {"checkpoint":N,"time":T,"head_hash":H,"totals":{..} — left
 * open. Every kind carries the head, so a client can match what it shows to the chain. */
void http_render_event_id(const struct http_snapshot *s, struct evbuffer *out)
{
    if (s->status_gen)
        evbuffer_add_printf(out, "id: %" PRIu64 "-%" PRIu32 "\n", s->checkpoint, s->status_gen);
    else
        evbuffer_add_printf(out, "id: %" PRIu64 "\n", s->checkpoint);
}

static void event_head(const struct http_snapshot *s, const char *kind, struct evbuffer *out)
{
    http_render_event_id(s, out);
    evbuffer_add_printf(out, "event: %s\ndata: {\"checkpoint\":%" PRIu64 ",\"time\":", kind,
                        s->checkpoint);
    http_json_time(out, s->committed_ms);
    evbuffer_add(out, ",\"head_hash\":", 13);
    http_json_head_hash(out, s);
    http_render_status(s, out);
    evbuffer_add(out, ",\"totals\":", 10);
    json_totals(out, &s->totals);
    evbuffer_add(out, ",\"progress\":", 12);
    http_render_progress(s, out, &s->progress, &s->circuits_decided);
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
    bool counts = http_snapshot_has_counts(s);
    /* Under embargo no "changed" (project votes) and circuits without their figures. */
    if (counts)
        evbuffer_add(out, ",\"changed\":[", 12);
    bool first = true;
    for (size_t k = 0; counts && k < n_changed; k++) {
        if (changed[k] >= s->layout->cat->n_projects)
            continue;
        event_vote(s, changed[k], first, out);
        first = false;
    }
    /* The circuits whose progress, decided or corrected_at changed since the previous
     * snapshot, with their winners (a decided flag means little without them). */
    evbuffer_add(out, counts ? "],\"circuits\":[" : ",\"circuits\":[", counts ? 14 : 13);
    for (size_t k = 0; k < s->n_changed_circuits; k++) {
        uint32_t c = s->changed_circuits[k];
        evbuffer_add_printf(out, "%s{\"id\":%" PRIu32, k ? "," : "",
                            s->layout->cat->circuits[c].id);
        if (counts) {
            evbuffer_add(out, ",\"winners\":", 11);
            json_winners(s, c, out);
            evbuffer_add_printf(out, ",\"tie\":%s", json_bool(s->circuits[c].tie));
        }
        json_circuit_progress(s, c, out);
        evbuffer_add(out, "}", 1);
    }
    evbuffer_add(out, "]}\n\n", 4);
}

void http_render_event_reset(const struct http_snapshot *s, struct evbuffer *out)
{
    event_head(s, "reset", out);
    if (!http_snapshot_has_counts(s)) {
        evbuffer_add(out, "}\n\n", 3);
        return;
    }
    evbuffer_add(out, ",\"changed\":[", 12);
    for (size_t k = 0; k < s->layout->cat->n_projects; k++)
        event_vote(s, s->layout->project_by_id[k], k == 0, out);
    evbuffer_add(out, "]}\n\n", 4);
}
