/* The in-process limit: tallyd's own apply path (tally_apply_batch: validation, ballot
 * dedup, counting, the checkpoint delta) on the same batches, in one thread, with no network
 * and no database; and the same after wire_frame_decode of the pre-encoded frames. Each is
 * repeated on a fresh tally until it has run --peer-seconds; the figure is the median pass.
 * A streamed workload's batches and frames are made as they come, off the clock. Also
 * encodes the frames, which the tallyd peer sends. */
#include "bench.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/arena.h"
#include "tally/tally.h"
#include "wire/digest.h"
#include "wire/wire.h"

size_t frame_batch_encode(uint64_t seq, const uint64_t *ballots, const uint32_t *projects,
                          uint32_t n, uint8_t **buf, size_t *cap)
{
    Tally__Batch msg = TALLY__BATCH__INIT;
    msg.seq = seq;
    msg.n_ballots = n;
    msg.ballots = (uint64_t *)ballots;
    msg.n_projects = n;
    msg.projects = (uint32_t *)projects;
    Tally__Frame f = TALLY__FRAME__INIT;
    f.msg_case = TALLY__FRAME__MSG_BATCH;
    f.batch = &msg;
    size_t len = wire_frame_size(&f);
    if (len > *cap) {
        free(*buf);
        *buf = malloc(len);
        if (!*buf)
            abort();
        *cap = len;
    }
    return wire_frame_encode(&f, *buf);
}

void frames_encode(struct bench_ctx *c)
{
    const struct workload *w = c->w;
    c->frames = calloc(w->n_collectors, sizeof(*c->frames));
    c->frame_len = calloc(w->n_collectors, sizeof(*c->frame_len));
    if (!c->frames || !c->frame_len)
        abort();
    for (size_t k = 0; k < w->n_collectors; k++) {
        const struct wl_collector *wc = &w->collectors[k];
        c->frames[k] = calloc(wc->n_batches ? wc->n_batches : 1, sizeof(uint8_t *));
        c->frame_len[k] = calloc(wc->n_batches ? wc->n_batches : 1, sizeof(size_t));
        if (!c->frames[k] || !c->frame_len[k])
            abort();
        for (size_t b = 0; b < wc->n_batches; b++) {
            const struct wl_batch *wb = &wc->batches[b];
            size_t cap = 0;
            c->frame_len[k][b] = frame_batch_encode(wb->seq, wb->ballots, wb->projects, wb->n,
                                                    &c->frames[k][b], &cap);
        }
    }
}

void frames_free(struct bench_ctx *c)
{
    if (!c->frames)
        return;
    for (size_t k = 0; k < c->w->n_collectors; k++) {
        for (size_t b = 0; b < c->w->collectors[k].n_batches; b++)
            free(c->frames[k][b]);
        free(c->frames[k]);
        free(c->frame_len[k]);
    }
    free(c->frames);
    free(c->frame_len);
    c->frames = NULL;
    c->frame_len = NULL;
}

/* The order batches arrive in when K collectors send at once: one op of each in turn. */
struct arrival {
    uint32_t collector;
    uint32_t op;
};

static struct arrival *arrivals_make(const struct workload *w, size_t *n_out)
{
    size_t n = 0;
    for (size_t k = 0; k < w->n_collectors; k++)
        n += w->collectors[k].n_ops;
    struct arrival *a = calloc(n ? n : 1, sizeof(*a));
    if (!a)
        abort();
    size_t i = 0;
    for (size_t round = 0; i < n; round++)
        for (size_t k = 0; k < w->n_collectors; k++)
            if (round < w->collectors[k].n_ops)
                a[i++] = (struct arrival){(uint32_t)k, (uint32_t)round};
    *n_out = n;
    return a;
}

static struct tally *tally_make(const struct bench_ctx *c)
{
    const struct workload *w = c->w;
    struct tally_project *p = calloc(w->n_projects, sizeof(*p));
    if (!p)
        abort();
    for (size_t i = 0; i < w->n_projects; i++) {
        p[i].id = w->projects[i].id;
        p[i].circuit_id = w->projects[i].circuit_id;
    }
    /* Sized as tallyd's is: its --expected-ballots, or its default of 1,000,000. */
    uint64_t expected = bench_expected_ballots(c->o, w);
    /* A fresh random hash key for each tally, as tallyd draws one per process. */
    uint8_t key[TALLY_HASH_KEY_BYTES];
    if (getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key))
        abort();
    struct tally *t = tally_new(p, w->n_projects, expected ? (size_t)expected : 1000000, key);
    free(p);
    if (!t)
        return NULL;
    for (size_t k = 0; k < w->n_collectors; k++)
        tally_collector_add(t, w->collectors[k].id, 0, NULL);
    return t;
}

/* Checkpoint cadence in the limit: seal and commit (no I/O) every this many batches, so the
 * pending delta stays as small as tallyd's. */
#define LIMIT_SEAL_EVERY 64

/* A streamed pass makes each batch (and for decode its frame) as it comes, off the clock. */
struct limit_scratch {
    uint64_t *ballots;
    uint32_t *projects;
    uint8_t *frame;
    size_t cap;
};

/* One pass over all arrivals; decode: go through wire_frame_decode first. Returns the
 * seconds taken (without making streamed batches), or a negative value on a protocol
 * surprise (message in r). */
static double limit_pass(struct bench_ctx *c, struct tally *t, const struct arrival *a, size_t n,
                         bool decode, struct peer_result *r)
{
    const struct workload *w = c->w;
    struct arena arena;
    arena_init(&arena, 256 * 1024);
    struct limit_scratch sc = {0};
    if (w->stream) {
        sc.ballots = calloc(c->o->batch, sizeof(uint64_t));
        sc.projects = calloc(c->o->batch, sizeof(uint32_t));
        if (!sc.ballots || !sc.projects)
            abort();
    }
    size_t since_seal = 0;
    double t0 = now_s(), last = t0, making = 0;
    uint64_t votes_done = 0;
    double secs = -1;
    for (size_t i = 0; i < n && !bench_stop; i++) {
        const struct wl_collector *wc = &w->collectors[a[i].collector];
        const struct wl_op *op = &wc->ops[a[i].op];
        const struct wl_batch *b = &wc->batches[op->batch];
        const uint64_t *ballots = b->ballots;
        const uint32_t *projects = b->projects;
        size_t nv = b->n;
        uint64_t seq = b->seq;
        const uint8_t *fr = NULL;
        size_t fr_len = 0;
        if (w->stream) {
            double m0 = now_s();
            wl_stream_fill(w, a[i].collector, op->batch, sc.ballots, sc.projects, NULL);
            ballots = sc.ballots;
            projects = sc.projects;
            if (decode) {
                fr_len = frame_batch_encode(seq, ballots, projects, b->n, &sc.frame, &sc.cap);
                fr = sc.frame;
            }
            making += now_s() - m0;
        } else if (decode) {
            fr = c->frames[a[i].collector][op->batch];
            fr_len = c->frame_len[a[i].collector][op->batch];
        }
        if (decode) {
            size_t len = 0;
            Tally__Frame *f = NULL;
            if (wire_frame_peek(fr, fr_len, 1u << 30, &len) != WIRE_OK ||
                wire_frame_decode(fr + 4, len, &arena, &f) != WIRE_OK ||
                f->msg_case != TALLY__FRAME__MSG_BATCH) {
                peer_fail(r, "a pre-encoded frame does not decode");
                goto out;
            }
            ballots = f->batch->ballots;
            projects = f->batch->projects;
            nv = f->batch->n_ballots;
            seq = f->batch->seq;
        }
        /* The digest is part of tallyd's apply path: it is what a retransmission is
         * compared by. */
        uint8_t digest[WIRE_DIGEST_BYTES];
        wire_batch_digest(seq, NULL, 0, ballots, projects, nv, digest);
        struct tally_batch_result res;
        uint64_t expected = 0;
        const uint8_t *had = NULL;
        enum tally_apply_status st = tally_apply_batch(t, a[i].collector, seq, digest, ballots,
                                                       projects, nv, &res, &expected, &had);
        if (decode)
            arena_reset(&arena);
        if (st == TALLY_GAP || st == TALLY_CONFLICT || (st == TALLY_RETRANSMIT) != op->retransmit) {
            peer_fail(r, "collector %s batch %llu: unexpected apply status %d", wc->id,
                      (unsigned long long)seq, (int)st);
            goto out;
        }
        if (st == TALLY_APPLIED) {
            votes_done += nv;
            if (++since_seal == LIMIT_SEAL_EVERY) {
                if (tally_checkpoint_seal(t))
                    tally_checkpoint_commit(t);
                since_seal = 0;
            }
        }
        if ((i & 63) == 0) {
            double now = now_s();
            if (now - last >= 1.0) {
                progress(r->name, "%s: %llu votes applied (%.0f votes/s)",
                         decode ? "decode+apply" : "apply", (unsigned long long)votes_done,
                         (double)votes_done / (now - t0 - making));
                last = now;
            }
        }
    }
    if (tally_checkpoint_seal(t))
        tally_checkpoint_commit(t);
    secs = bench_stop ? -1 : now_s() - t0 - making;
out:
    arena_cleanup(&arena);
    free(sc.ballots);
    free(sc.projects);
    free(sc.frame);
    return secs;
}

static bool limit_check(struct bench_ctx *c, struct tally *t, struct peer_result *r,
                        const char *what)
{
    const struct workload *w = c->w;
    size_t n = tally_project_count(t);
    uint32_t *ids = calloc(n ? n : 1, sizeof(uint32_t));
    uint64_t *votes = calloc(n ? n : 1, sizeof(uint64_t));
    if (!ids || !votes)
        abort();
    for (size_t i = 0; i < n; i++) {
        ids[i] = tally_project_at(t, i)->id;
        votes[i] = tally_votes_at(t, i);
    }
    char why[300];
    bool ok = wl_check(w, w->truth, ids, votes, n, why, sizeof(why));
    free(ids);
    free(votes);
    const struct tally_totals *tot = tally_applied_totals(t);
    if (ok && (tot->votes != w->n_votes || tot->accepted != w->n_distinct ||
               tot->duplicate != w->n_duplicate || tot->rejected != 0)) {
        snprintf(why, sizeof(why), "totals: votes %llu accepted %llu duplicate %llu rejected %llu",
                 (unsigned long long)tot->votes, (unsigned long long)tot->accepted,
                 (unsigned long long)tot->duplicate, (unsigned long long)tot->rejected);
        ok = false;
    }
    if (!ok) {
        snprintf(r->note, sizeof(r->note), "%s miscounts: %s", what, why);
        progress(r->name, "NOT EXACT: %s", r->note);
    }
    return ok;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Passes of one kind on fresh tallies until they add up to --peer-seconds (at least one),
 * each checked. Fills rates[] (votes/s of each pass, sorted) and returns how many, or -1
 * (interrupted, a protocol surprise or a miscount: exact says which). */
static int limit_passes(struct bench_ctx *c, const struct arrival *a, size_t n, bool decode,
                        double *rates, int max, bool *exact, size_t *set_bytes,
                        struct peer_result *r)
{
    const struct workload *w = c->w;
    double spent = 0;
    int passes = 0;
    *exact = true;
    while (passes < max && (passes == 0 || spent < c->o->peer_seconds) && !bench_stop) {
        struct tally *t = tally_make(c);
        if (!t) {
            peer_fail(r, "tally_new refused the registry");
            return -1;
        }
        double secs = limit_pass(c, t, a, n, decode, r);
        bool ok = secs >= 0 && limit_check(c, t, r, decode ? "decode+apply" : "apply");
        if (set_bytes)
            *set_bytes = tally_ballot_bytes(t);
        tally_free(t);
        if (secs < 0) {
            if (!r->failed)
                peer_fail(r, "interrupted");
            return -1;
        }
        if (!ok) {
            *exact = false;
            return -1;
        }
        rates[passes++] = (double)w->n_votes / secs;
        spent += secs;
    }
    if (bench_stop && !r->failed) {
        peer_fail(r, "interrupted");
        return -1;
    }
    qsort(rates, (size_t)passes, sizeof(*rates), cmp_double);
    return passes;
}

static double median(const double *sorted, int n)
{
    return n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

#define LIMIT_MAX_PASSES 1000

void peer_limit_run(struct bench_ctx *c, struct peer_result *r)
{
    const struct workload *w = c->w;
    size_t n = 0;
    struct arrival *a = arrivals_make(w, &n);
    double *rates = calloc(LIMIT_MAX_PASSES, sizeof(double));
    double *drates = calloc(LIMIT_MAX_PASSES, sizeof(double));
    if (!rates || !drates)
        abort();
    progress(r->name,
             "apply: %llu votes in %zu batch sends, one thread, no I/O; each pass "
             "repeated for %g s",
             (unsigned long long)w->n_votes, n, c->o->peer_seconds);
    size_t set_bytes = 0;
    bool exact = false, dexact = false;
    int np = limit_passes(c, a, n, false, rates, LIMIT_MAX_PASSES, &exact, &set_bytes, r);
    int nd = np < 0 ? -1 : limit_passes(c, a, n, true, drates, LIMIT_MAX_PASSES, &dexact, NULL, r);
    free(a);
    if (np < 0 || nd < 0) {
        if (!r->failed) { /* a miscount: it ran, and says so */
            r->ran = true;
            r->exact = false;
            r->votes = w->n_votes;
        }
        free(rates);
        free(drates);
        return;
    }

    r->ran = true;
    r->exact = exact && dexact;
    r->votes = w->n_votes;
    r->votes_per_s = median(rates, np);
    r->wall_s = (double)w->n_votes / r->votes_per_s;
    double dvps = median(drates, nd);
    r->alt_votes_per_s = dvps;
    sb_printf(&r->json,
              ", \"what\": \"tally_apply_batch on the same batches, one thread, no network, no "
              "database; the median of passes on fresh tallies, repeated for peer_seconds\", "
              "\"passes\": %d, \"votes_per_s_min\": %.0f, \"votes_per_s_max\": %.0f, "
              "\"decode_apply_votes_per_s\": %.0f, \"decode_apply_passes\": %d, "
              "\"decode_apply_votes_per_s_min\": %.0f, \"decode_apply_votes_per_s_max\": %.0f, "
              "\"ballot_set_bytes\": %zu, \"ballot_set_bytes_per_ballot\": %.2f",
              np, rates[0], rates[np - 1], dvps, nd, drates[0], drates[nd - 1], set_bytes,
              (double)set_bytes / (double)(w->n_distinct ? w->n_distinct : 1));
    snprintf(r->table, sizeof(r->table), "median of %d passes (%.2f-%.2f M votes/s)", np,
             rates[0] / 1e6, rates[np - 1] / 1e6);
    progress(r->name, "apply %.0f votes/s (%d passes), decode+apply %.0f votes/s (%d), %s",
             r->votes_per_s, np, dvps, nd, r->exact ? "exact" : "NOT EXACT");
    free(rates);
    free(drates);
}
