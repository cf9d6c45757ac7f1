/* sim_core: the deterministic simulation run over many seeds (SIM_SEEDS, from SIM_SEED on),
 * a failing seed shrunk to its shortest fault phase and printed with its trace; the
 * checker shown to catch bugs planted in the model; runs shown to replay exactly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <sodium.h>

#include "sim.h"

#ifndef SIM_DEFAULT_SEEDS
#define SIM_DEFAULT_SEEDS 100000
#endif

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return dflt;
    char *end;
    unsigned long long x = strtoull(v, &end, 0);
    return *end ? dflt : (uint64_t)x;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct sim sim; /* large: not on the stack */

static void print_trace(const struct sim *s, size_t max)
{
    size_t n = s->n_lines < SIM_MAX_TRACE ? s->n_lines : SIM_MAX_TRACE;
    size_t from = n > max ? n - max : 0;
    if (from)
        printf("  ... %zu earlier lines\n", s->n_lines - (n - from));
    for (size_t i = from; i < n; i++)
        printf("  %s\n", s->lines[(s->n_lines - n + i) % SIM_MAX_TRACE]);
}

static void print_config(const struct sim *s)
{
    printf("  %d collectors, %d projects, %ld fault steps; faults: crash %u, collector crash %u, "
           "cut %u, drop %u, dup %u, reorder %u, stall %u\n",
           s->cfg.n_coll, s->cfg.n_projects, (long)s->cfg.fault_steps, s->cfg.w_crash,
           s->cfg.w_ccrash, s->cfg.w_cut, s->cfg.w_drop, s->cfg.w_dup, s->cfg.w_reorder,
           s->cfg.w_stall);
    for (int c = 0; c < s->cfg.n_coll; c++)
        printf("  %s: %d batches, window %u%s\n", s->coll[c].name, s->coll[c].n_gen,
               s->coll[c].window,
               s->coll[c].twin_of >= 0 ? ", a second process on the same id (a copied spool)"
               : s->coll[c].restricted ? ", restricted"
                                       : "");
}

/* The shortest fault phase with which the seed still fails (bisected), then its trace. */
static void report_failure(uint64_t seed, enum sim_bug bug)
{
    long hi = sim.cfg.fault_steps, lo = 0;
    char first[sizeof(sim.violation)];
    snprintf(first, sizeof(first), "%s", sim.violation);
    while (lo < hi) {
        long mid = lo + (hi - lo) / 2;
        if (sim_run(&sim, seed, mid, bug, false, false) < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    if (sim_run(&sim, seed, hi, bug, false, true) == 0) /* not monotone: the whole run then */
        sim_run(&sim, seed, -1, bug, false, true);
    printf("SIM FAILURE seed %llu: %s\n", (unsigned long long)seed, first);
    char planted[32] = "";
    if (bug)
        snprintf(planted, sizeof(planted), "SIM_BUG=%d ", (int)bug);
    printf("  reproduce: %sSIM_SEED=%llu SIM_SEEDS=1 SIM_TRACE=1 ctest -R sim_core -V\n", planted,
           (unsigned long long)seed);
    printf("  shortest failing run: %ld fault steps: %s\n", (long)sim.cfg.fault_steps,
           sim.violation);
    print_config(&sim);
    print_trace(&sim, 300);
    fflush(stdout);
}

static void test_seeds(void **state)
{
    (void)state;
    uint64_t first = env_u64("SIM_SEED", 1);
    uint64_t n = env_u64("SIM_SEEDS", getenv("SIM_SEED") ? 1 : SIM_DEFAULT_SEEDS);
    bool trace = env_u64("SIM_TRACE", 0) != 0;
    /* SIM_BUG=1..5 plants a bug (enum sim_bug), to see what a failure report looks like. */
    enum sim_bug bug = (enum sim_bug)env_u64("SIM_BUG", SIM_BUG_NONE);
    struct sim_stats sum = {0};
    uint64_t failed = 0, first_failed = 0, ran = 0, twins = 0;
    double t0 = now_s();
    for (uint64_t seed = first; seed < first + n; seed++) {
        ran++;
        int rc = sim_run(&sim, seed, -1, bug, false, trace);
        if (trace) {
            print_config(&sim);
            print_trace(&sim, SIM_MAX_TRACE);
        }
        const struct sim_stats *x = &sim.st;
        sum.steps += x->steps;
        sum.applied += x->applied;
        sum.retransmits += x->retransmits;
        sum.gaps += x->gaps;
        sum.checkpoints += x->checkpoints;
        sum.server_crashes += x->server_crashes;
        sum.late_commits += x->late_commits;
        sum.lost_seals += x->lost_seals;
        sum.stops += x->stops;
        sum.conflicts += x->conflicts;
        sum.fatals += x->fatals;
        twins += sim.cfg.n_coll > 1 && sim.coll[sim.cfg.n_coll - 1].twin_of >= 0;
        sum.collector_crashes += x->collector_crashes;
        sum.cuts += x->cuts;
        sum.drops += x->drops;
        sum.dups += x->dups;
        sum.reorders += x->reorders;
        sum.stalls += x->stalls;
        sum.reconnects += x->reconnects;
        sum.votes += x->votes;
        if (rc < 0) {
            if (!failed++) {
                first_failed = seed;
                report_failure(seed, bug);
            } else {
                printf("SIM FAILURE seed %llu: %s\n", (unsigned long long)seed, sim.violation);
            }
            if (failed >= 10)
                break;
        }
    }
    double dt = now_s() - t0;
    printf("sim_core: %llu seeds from %llu in %.2f s (%.0f seeds/s), %llu failed\n",
           (unsigned long long)ran, (unsigned long long)first, dt, (double)ran / (dt > 0 ? dt : 1),
           (unsigned long long)failed);
    printf("  steps %llu, votes %llu, batches applied %llu, retransmits %llu, gaps %llu, "
           "checkpoints %llu\n",
           (unsigned long long)sum.steps, (unsigned long long)sum.votes,
           (unsigned long long)sum.applied, (unsigned long long)sum.retransmits,
           (unsigned long long)sum.gaps, (unsigned long long)sum.checkpoints);
    printf("  tallyd kills %llu (after COMMIT %llu, before %llu), clean stops %llu, collector "
           "kills %llu, cuts %llu, drops %llu, dups %llu, reorders %llu, stalls %llu, "
           "connections %llu\n",
           (unsigned long long)sum.server_crashes, (unsigned long long)sum.late_commits,
           (unsigned long long)sum.lost_seals, (unsigned long long)sum.stops,
           (unsigned long long)sum.collector_crashes, (unsigned long long)sum.cuts,
           (unsigned long long)sum.drops, (unsigned long long)sum.dups,
           (unsigned long long)sum.reorders, (unsigned long long)sum.stalls,
           (unsigned long long)sum.reconnects);
    printf("  seeds with two processes on one collector id %llu: seq conflicts %llu, collectors "
           "stopped by libtally %llu\n",
           (unsigned long long)twins, (unsigned long long)sum.conflicts,
           (unsigned long long)sum.fatals);
    fflush(stdout);
    if (failed)
        fail_msg("%llu of %llu seeds broke an invariant; first: seed %llu",
                 (unsigned long long)failed, (unsigned long long)n,
                 (unsigned long long)first_failed);
}

/* Each planted bug must be caught within a few thousand seeds: by the step-by-step
 * invariants, and by the end-of-run verdict alone (lean). */
static void test_catches_planted_bugs(void **state)
{
    (void)state;
    static const struct {
        enum sim_bug bug;
        const char *name;
    } bugs[] = {
        {SIM_BUG_ACK_AT_SEAL, "durable ack at seal"},
        {SIM_BUG_SKIP_TOKENS, "recovery without tokens"},
        {SIM_BUG_RELEASE_ON_APPLY, "release on provisional ack"},
        {SIM_BUG_FORGET_WATERMARK, "recovery without watermarks"},
        /* Harmless with one process per id: only the second process makes it lose data. */
        {SIM_BUG_RELEASE_UNCONFIRMED, "release without confirmation"},
    };
    for (size_t i = 0; i < sizeof(bugs) / sizeof(bugs[0]); i++)
        for (int lean = 0; lean < 2; lean++) {
            uint64_t seed = 1;
            while (seed <= 5000 && sim_run(&sim, seed, -1, bugs[i].bug, lean, false) == 0)
                seed++;
            printf("planted bug '%s'%s: caught by seed %llu: %s\n", bugs[i].name,
                   lean ? " (verdict only)" : "", (unsigned long long)seed, sim.violation);
            if (seed > 5000)
                fail_msg("planted bug '%s' went unnoticed in 5000 seeds", bugs[i].name);
        }
}

/* Same seed, same run, event for event. */
static void test_replays_exactly(void **state)
{
    (void)state;
    for (uint64_t seed = 7; seed < 12; seed++) {
        sim_run(&sim, seed, -1, SIM_BUG_NONE, false, true);
        size_t n = sim.n_lines < SIM_MAX_TRACE ? sim.n_lines : SIM_MAX_TRACE;
        char(*copy)[160] = malloc(n * sizeof(*copy));
        assert_non_null(copy);
        memcpy(copy, sim.lines, n * sizeof(*copy));
        size_t n_lines = sim.n_lines;
        struct sim_stats st = sim.st;
        sim_run(&sim, seed, -1, SIM_BUG_NONE, false, true);
        assert_int_equal(n_lines, sim.n_lines);
        assert_memory_equal(&st, &sim.st, sizeof(st));
        assert_memory_equal(copy, sim.lines, n * sizeof(*copy));
        free(copy);
    }
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replays_exactly),
        cmocka_unit_test(test_catches_planted_bugs),
        cmocka_unit_test(test_seeds),
    };
    int rc = cmocka_run_group_tests_name("sim_core", tests, NULL, NULL);
    sim_cleanup(&sim);
    return rc;
}
