/* SQLite's allocation-failure loop over apply, checkpoint and recovery of src/tally, with
 * and without wire decoding into an arena first: a scripted run in a child process, once per
 * allocation failing in turn (src/core/xalloc.c compiled here with TALLY_FAULT_INJECTION). The
 * child must finish with exactly a reference model's counts, or die by SIGABRT after xalloc's
 * "out of memory": never another signal, an assertion, a wrong count or a hang. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/xalloc.h"
#include "tally/tally.h"
#include "wire/digest.h"
#include "wire/wire.h"

#define N_PROJECTS 40
#define N_COLLECTORS 3
#define N_BATCHES 120
#define MAX_VOTES 40
#define BALLOT_SPACE 6000 /* ballots drawn from [1, BALLOT_SPACE]: some come twice */
#define UNKNOWN_PROJECT 7u
#define EXPECTED_BALLOTS 16 /* far below the ~2,200 distinct ones: the set grows ~7 times */
#define CHILD_SECONDS 20    /* a child still running then is hung: SIGALRM ends it */

struct batch {
    uint32_t collector;
    uint64_t seq;
    size_t n;
    uint64_t ballots[MAX_VOTES];
    uint32_t projects[MAX_VOTES];
    uint8_t nonce[16];
    uint8_t digest[WIRE_DIGEST_BYTES];
    uint8_t *frame; /* the encoded wire frame, header included */
    size_t frame_len;
};

static struct tally_project projects[N_PROJECTS];
static struct batch batches[N_BATCHES];
static const char *const collector_ids[N_COLLECTORS] = {"c0", "c1", "c2"};
static const uint32_t c2_circuits[] = {1, 2};

/* What the run must end with: the reference model's figures. */
static struct {
    uint64_t votes[N_PROJECTS]; /* by dense index = registry order */
    uint64_t durable[N_PROJECTS];
    struct tally_totals applied, durable_total;
    size_t ballots;
    uint64_t tokens[BALLOT_SPACE]; /* the accepted ballots, for recovery */
    uint64_t durable_seq[N_COLLECTORS];
} want;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ULL;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dULL;
    x ^= x >> 33;
    return x;
}

static bool seal_after(size_t k)
{
    return k % 7 == 6;
}

static bool commit_after(size_t k)
{
    return k % 7 == 3 || k % 7 == 6;
}

/* The script, and the reference model run over it. */
static void script_build(void)
{
    for (uint32_t i = 0; i < N_PROJECTS; i++)
        projects[i] = (struct tally_project){.id = 100 + 3 * i, .circuit_id = i % 4};
    uint64_t seqs[N_COLLECTORS] = {0};
    static bool used[BALLOT_SPACE + 1];
    uint64_t pend[N_PROJECTS] = {0}, infl[N_PROJECTS] = {0};
    uint64_t pend_seq[N_COLLECTORS] = {0}, infl_seq[N_COLLECTORS] = {0};
    size_t pend_batches = 0;
    bool inflight = false;
    for (size_t k = 0; k < N_BATCHES; k++) {
        struct batch *b = &batches[k];
        b->collector = (uint32_t)(k % N_COLLECTORS);
        b->seq = ++seqs[b->collector];
        b->n = 20 + k % 17 + (k == 0 ? 20 : 0);
        for (size_t i = 0; i < b->n; i++) {
            uint64_t h = mix(k * 1000 + i);
            b->ballots[i] = 1 + h % BALLOT_SPACE;
            b->projects[i] =
                (h >> 32) % 20 == 0 ? UNKNOWN_PROJECT : projects[(h >> 40) % N_PROJECTS].id;
        }
        for (size_t i = 0; i < sizeof(b->nonce); i++)
            b->nonce[i] = (uint8_t)(k + i);
        wire_batch_digest(b->seq, b->nonce, sizeof(b->nonce), b->ballots, b->projects, b->n,
                          b->digest);
        Tally__Batch pb = TALLY__BATCH__INIT;
        pb.seq = b->seq;
        pb.n_ballots = b->n;
        pb.ballots = b->ballots;
        pb.n_projects = b->n;
        pb.projects = b->projects;
        pb.nonce.data = b->nonce;
        pb.nonce.len = sizeof(b->nonce);
        Tally__Frame f = TALLY__FRAME__INIT;
        f.msg_case = TALLY__FRAME__MSG_BATCH;
        f.batch = &pb;
        b->frame_len = wire_frame_size(&f);
        b->frame = malloc(b->frame_len);
        if (!b->frame)
            abort();
        wire_frame_encode(&f, b->frame);

        /* The model: unknown project, then the circuit limit, then ballot dedup. */
        for (size_t i = 0; i < b->n; i++) {
            want.applied.votes++;
            uint32_t id = b->projects[i];
            if (id == UNKNOWN_PROJECT) {
                want.applied.rejected++;
                continue;
            }
            uint32_t dense = (id - 100) / 3;
            uint32_t circuit = projects[dense].circuit_id;
            if (b->collector == 2 && circuit != c2_circuits[0] && circuit != c2_circuits[1]) {
                want.applied.rejected++;
                want.applied.rejected_not_allowed++;
                continue;
            }
            if (used[b->ballots[i]]) {
                want.applied.duplicate++;
                continue;
            }
            used[b->ballots[i]] = true;
            want.tokens[want.ballots++] = b->ballots[i];
            want.applied.accepted++;
            want.votes[dense]++;
            pend[dense]++;
        }
        want.applied.batches++;
        pend_seq[b->collector] = b->seq;
        pend_batches++;
        if (commit_after(k) && inflight) {
            for (size_t p = 0; p < N_PROJECTS; p++)
                want.durable[p] += infl[p];
            for (size_t c = 0; c < N_COLLECTORS; c++)
                if (infl_seq[c])
                    want.durable_seq[c] = infl_seq[c];
            inflight = false;
        }
        if (seal_after(k) && !inflight && pend_batches) {
            memcpy(infl, pend, sizeof(pend));
            memset(pend, 0, sizeof(pend));
            memcpy(infl_seq, pend_seq, sizeof(pend_seq));
            memset(pend_seq, 0, sizeof(pend_seq));
            pend_batches = 0;
            inflight = true;
        }
    }
    /* The end: commit what is in flight, seal and commit the rest. */
    if (inflight)
        for (size_t p = 0; p < N_PROJECTS; p++)
            want.durable[p] += infl[p];
    for (size_t c = 0; c < N_COLLECTORS; c++)
        if (infl_seq[c] && inflight)
            want.durable_seq[c] = infl_seq[c];
    for (size_t p = 0; p < N_PROJECTS; p++)
        want.durable[p] += pend[p];
    for (size_t c = 0; c < N_COLLECTORS; c++)
        if (pend_seq[c])
            want.durable_seq[c] = pend_seq[c];
    want.durable_total = want.applied; /* everything is durable at the end */
}

static bool totals_equal(const struct tally_totals *a, const struct tally_totals *b)
{
    return a->batches == b->batches && a->votes == b->votes && a->accepted == b->accepted &&
           a->duplicate == b->duplicate && a->rejected == b->rejected &&
           a->rejected_not_allowed == b->rejected_not_allowed;
}

/* ---- the child: the run under test ---- */

static int apply(struct tally *t, const struct batch *b, const uint64_t *ballots,
                 const uint32_t *projs, const uint8_t *digest)
{
    struct tally_batch_result res;
    uint64_t expected;
    const uint8_t *stored;
    return tally_apply_batch(t, b->collector, b->seq, digest, ballots, projs, b->n, &res, &expected,
                             &stored);
}

static int check(const struct tally *t, const struct tally_totals *applied);
static int recover(const struct tally *t, const uint8_t key[TALLY_HASH_KEY_BYTES]);

/* Returns 0 when the tally and its recovery end as the model says; prints the first
 * difference otherwise. */
static int child_run(bool from_wire)
{
    uint8_t key[TALLY_HASH_KEY_BYTES];
    for (size_t i = 0; i < sizeof(key); i++)
        key[i] = (uint8_t)(0x5a ^ i);
    struct tally *t = tally_new(projects, N_PROJECTS, EXPECTED_BALLOTS, key);
    if (!t) {
        fprintf(stderr, "tally_new failed\n");
        return 1;
    }
    for (uint32_t c = 0; c < N_COLLECTORS; c++)
        if (tally_collector_add(t, collector_ids[c], 0, &(struct tally_totals){0}) != c) {
            fprintf(stderr, "collector %u has another index\n", c);
            return 1;
        }
    if (tally_collector_restrict(t, 2, c2_circuits, 2) != 0) {
        fprintf(stderr, "tally_collector_restrict failed\n");
        return 1;
    }
    struct arena a;
    arena_init(&a, 64); /* small: a frame takes several chunks */
    for (size_t k = 0; k < N_BATCHES; k++) {
        const struct batch *b = &batches[k];
        int rc;
        if (from_wire) {
            size_t plen;
            Tally__Frame *f;
            if (wire_frame_peek(b->frame, b->frame_len, 1 << 20, &plen) != WIRE_OK ||
                wire_frame_decode(b->frame + 4, plen, &a, &f) != WIRE_OK ||
                f->msg_case != TALLY__FRAME__MSG_BATCH || f->batch->n_ballots != b->n) {
                fprintf(stderr, "batch %zu does not decode\n", k);
                return 1;
            }
            uint8_t digest[WIRE_DIGEST_BYTES];
            wire_batch_digest(f->batch->seq, f->batch->nonce.data, f->batch->nonce.len,
                              f->batch->ballots, f->batch->projects, f->batch->n_ballots, digest);
            rc = apply(t, b, f->batch->ballots, f->batch->projects, digest);
            /* Every other frame resets, the others trim: both paths give chunks back. */
            if (k % 2)
                arena_reset(&a);
            else
                arena_trim(&a, 128);
        } else {
            rc = apply(t, b, b->ballots, b->projects, b->digest);
        }
        if (rc != TALLY_APPLIED) {
            fprintf(stderr, "batch %zu: apply returned %d\n", k, rc);
            return 1;
        }
        if (k == 10 && apply(t, &batches[4], batches[4].ballots, batches[4].projects,
                             batches[4].digest) != TALLY_RETRANSMIT) {
            fprintf(stderr, "the retransmission of batch 4 was not recognised\n");
            return 1;
        }
        if (commit_after(k) && tally_checkpoint_inflight(t))
            tally_checkpoint_commit(t);
        if (seal_after(k))
            (void)tally_checkpoint_seal(t);
    }
    if (tally_checkpoint_inflight(t))
        tally_checkpoint_commit(t);
    if (tally_checkpoint_seal(t))
        tally_checkpoint_commit(t);
    arena_cleanup(&a);
    int bad = check(t, &want.applied);
    if (!bad)
        bad = recover(t, key);
    tally_free(t);
    return bad;
}

/* The figures of t against the model's (reading them allocates nothing). */
static int check(const struct tally *t, const struct tally_totals *applied)
{
    int bad = 0;
    for (size_t p = 0; p < N_PROJECTS; p++) {
        if (tally_votes_at(t, p) != want.votes[p] || tally_durable_votes(t)[p] != want.durable[p]) {
            fprintf(stderr,
                    "project %zu: %" PRIu64 " votes, %" PRIu64 " durable; want %" PRIu64
                    ", %" PRIu64 "\n",
                    p, tally_votes_at(t, p), tally_durable_votes(t)[p], want.votes[p],
                    want.durable[p]);
            bad = 1;
        }
    }
    if (!totals_equal(tally_applied_totals(t), applied) ||
        !totals_equal(tally_durable_totals(t), &want.durable_total)) {
        fprintf(stderr, "totals differ: accepted %" PRIu64 " (want %" PRIu64 ")\n",
                tally_applied_totals(t)->accepted, want.applied.accepted);
        bad = 1;
    }
    if (tally_ballot_count(t) != want.ballots) {
        fprintf(stderr, "%zu ballots, want %zu\n", tally_ballot_count(t), want.ballots);
        bad = 1;
    }
    for (uint32_t c = 0; c < N_COLLECTORS; c++)
        if (tally_collector_at(t, c)->durable_seq != want.durable_seq[c]) {
            fprintf(stderr, "collector %u durable seq %" PRIu64 ", want %" PRIu64 "\n", c,
                    tally_collector_at(t, c)->durable_seq, want.durable_seq[c]);
            bad = 1;
        }
    return bad;
}

/* What a restarted tallyd does with t's durable state: a new tally (small again), the
 * collectors, counts, tokens and digests restored; then every batch again (all must be
 * retransmissions) and one new batch per collector made of used ballots (all duplicates, or
 * rejected), sealed and committed. */
static int recover(const struct tally *t, const uint8_t key[TALLY_HASH_KEY_BYTES])
{
    struct tally *r = tally_new(projects, N_PROJECTS, EXPECTED_BALLOTS, key);
    int bad = 0;
    for (uint32_t c = 0; c < N_COLLECTORS; c++) {
        const struct tally_collector *col = tally_collector_at(t, c);
        (void)tally_collector_add(r, collector_ids[c], col->durable_seq, &col->durable);
    }
    (void)tally_collector_restrict(r, 2, c2_circuits, 2);
    for (size_t p = 0; p < N_PROJECTS; p++)
        tally_restore_votes(r, projects[p].id, tally_durable_votes(t)[p]);
    /* In pages, as recovery reads them, and the odd single token. */
    size_t done = 0;
    while (done < want.ballots) {
        size_t n = want.ballots - done > 500 ? 500 : 1;
        if (n == 1 ? !tally_restore_token(r, want.tokens[done])
                   : tally_restore_tokens(r, want.tokens + done, n) != 0) {
            fprintf(stderr, "recovery: a token restored twice\n");
            bad = 1;
        }
        done += n;
    }
    for (size_t k = 0; k < N_BATCHES; k++)
        (void)tally_restore_digest(r, batches[k].collector, batches[k].seq, batches[k].digest);
    for (size_t k = 0; k < N_BATCHES && !bad; k++)
        if (apply(r, &batches[k], batches[k].ballots, batches[k].projects, batches[k].digest) !=
            TALLY_RETRANSMIT) {
            fprintf(stderr, "recovery: batch %zu is not a retransmission\n", k);
            bad = 1;
        }
    uint64_t batches_more = want.durable_total.batches, dup_more = want.durable_total.duplicate;
    for (uint32_t c = 0; c < N_COLLECTORS && !bad; c++) {
        /* The batch after the collector's last, made of its first batch's ballots. */
        struct batch b = batches[c];
        b.seq = want.durable_seq[c] + 1;
        wire_batch_digest(b.seq, NULL, 0, b.ballots, b.projects, b.n, b.digest);
        struct tally_batch_result res;
        uint64_t expected;
        const uint8_t *stored;
        if (tally_apply_batch(r, c, b.seq, b.digest, b.ballots, b.projects, b.n, &res, &expected,
                              &stored) != TALLY_APPLIED ||
            res.accepted != 0) {
            fprintf(stderr, "recovery: collector %u's next batch is not all duplicates\n", c);
            bad = 1;
            break;
        }
        batches_more++;
        dup_more += res.duplicate;
    }
    if (!bad && tally_checkpoint_seal(r))
        tally_checkpoint_commit(r);
    /* Recovered totals carry over into the durable ones. */
    if (!bad &&
        (tally_ballot_count(r) != want.ballots || tally_durable_totals(r)->duplicate != dup_more ||
         tally_durable_totals(r)->batches != batches_more)) {
        fprintf(stderr,
                "recovery: %zu ballots (want %zu), %" PRIu64 " durable duplicates (want %" PRIu64
                ")\n",
                tally_ballot_count(r), want.ballots, tally_durable_totals(r)->duplicate, dup_more);
        bad = 1;
    }
    for (size_t p = 0; p < N_PROJECTS && !bad; p++)
        if (tally_durable_votes(r)[p] != want.durable[p] || tally_votes_at(r, p) != want.votes[p]) {
            fprintf(stderr, "recovery: project %zu differs\n", p);
            bad = 1;
        }
    tally_free(r);
    return bad;
}

/* ---- the parent: the loop ---- */

enum outcome { FINISHED, ABORTED, BROKEN };

/* Runs the child with allocation nth failing. *calls gets the allocations a finished child
 * made (so the loop knows when nth went past the last). */
static enum outcome run_one(bool from_wire, unsigned long nth, unsigned long *calls, char *why,
                            size_t why_len)
{
    int out[2], err[2];
    if (pipe(out) < 0 || pipe(err) < 0) {
        perror("pipe");
        exit(1);
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    if (pid == 0) {
        close(out[0]);
        close(err[0]);
        dup2(err[1], 2);
        alarm(CHILD_SECONDS);
        xalloc_fault_arm(nth);
        int bad = child_run(from_wire);
        unsigned long n = xalloc_fault_calls();
        xalloc_fault_arm(0);
        if (write(out[1], &n, sizeof(n)) != (ssize_t)sizeof(n))
            _exit(2);
        _exit(bad ? 3 : 0);
    }
    close(out[1]);
    close(err[1]);
    /* All of stderr, so that a chatty child never blocks; the first 2 KiB are kept. */
    char text[2048], scratch[4096];
    size_t len = 0;
    for (;;) {
        bool room = len < sizeof(text) - 1;
        ssize_t r = room ? read(err[0], text + len, sizeof(text) - 1 - len)
                         : read(err[0], scratch, sizeof(scratch));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (room)
            len += (size_t)r;
    }
    text[len] = '\0';
    unsigned long n = 0;
    bool got = read(out[0], &n, sizeof(n)) == (ssize_t)sizeof(n);
    close(out[0]);
    close(err[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    *calls = n;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && got && len == 0)
        return FINISHED;
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT && strstr(text, "out of memory (") &&
        !strstr(text, "Assertion"))
        return ABORTED;
    if (WIFSIGNALED(status))
        snprintf(why, why_len, "killed by signal %d (%s): %s", WTERMSIG(status),
                 strsignal(WTERMSIG(status)), text);
    else
        snprintf(why, why_len, "exit %d: %s", WEXITSTATUS(status), text);
    return BROKEN;
}

static int loop(bool from_wire)
{
    const char *name = from_wire ? "wire decode + apply + checkpoint" : "apply + checkpoint";
    int64_t t0 = mono_ms();
    unsigned long aborted = 0, broken = 0, calls = 0;
    for (unsigned long nth = 1;; nth++) {
        char why[2300] = "";
        enum outcome o = run_one(from_wire, nth, &calls, why, sizeof(why));
        if (o == FINISHED && calls < nth)
            break; /* nothing failed: every allocation has had its turn */
        if (o == FINISHED) {
            fprintf(stderr, "FAIL %s, allocation %lu: it failed, yet the run finished\n", name,
                    nth);
            broken++;
        } else if (o == ABORTED) {
            aborted++;
        } else {
            fprintf(stderr, "FAIL %s, allocation %lu: %s\n", name, nth, why);
            broken++;
        }
        if (nth > 100000 || broken > 20) {
            fprintf(stderr, "FAIL %s: giving up\n", name);
            return 1;
        }
    }
    printf("alloc faults: %-34s %lu allocations, %lu failure points aborted cleanly, %lu "
           "broken, %.1f s\n",
           name, calls, aborted, broken, (double)(mono_ms() - t0) / 1000.0);
    return broken ? 1 : 0;
}

int main(void)
{
    script_build();
    /* The fault-free run in this process first: the model and the tally must agree. */
    if (child_run(false) != 0 || child_run(true) != 0) {
        fprintf(stderr, "FAIL the fault-free run does not match the model\n");
        return 1;
    }
    printf("alloc faults: %d batches, %" PRIu64 " votes, %zu distinct ballots into a set sized for "
           "%d\n",
           N_BATCHES, want.applied.votes, want.ballots, EXPECTED_BALLOTS);
    int rc = loop(false);
    rc |= loop(true);
    for (size_t k = 0; k < N_BATCHES; k++)
        free(batches[k].frame);
    return rc;
}
