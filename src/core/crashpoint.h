/* Named crash points for fault tests: TALLY_CRASH_POINT("before_commit") marks a moment in
 * tallyd's code where a test may kill the process. They exist only in a build configured
 * with -DTALLY_CRASH_POINTS=ON (which defines TALLY_CRASH_POINTS); in every other build the
 * macros expand to nothing, evaluate nothing and cost nothing.
 *
 * In a crash-points build the environment variable TALLY_CRASH_AT=name[:N] (read once, at
 * the first point reached) arms one point: the N-th time (default the first) execution
 * passes it, on whichever thread, the process logs one line and raises SIGKILL: no
 * cleanup, no flush, no atexit, as a power cut would leave it. Unset: every point is a
 * no-op. Thread-safe (the loop and the store thread both pass points).
 *
 * The points and where they are (tests/integration/test_crashpoints.c kills at each):
 *   after_read               net/conn.c: bytes read from a collector, before they are decoded
 *   mid_apply                ingest/ingest.c: a batch applied to the tally, its Ack not queued
 *   before_commit            store/checkpoint.c: a checkpoint written, COMMIT not yet sent
 *   after_commit_before_ack  store/worker.c: COMMIT returned, done() not yet posted to the loop
 *   mid_ack                  ingest/checkpoint.c: durable acks being queued, after each one
 *   mid_checkpoint           store/checkpoint.c: halfway through a checkpoint's batch rows COPY
 *   during_reconnect         store/worker.c: a lost session re-opened, writer lock retaken
 *   token_page_open          store/checkpoint.c: the newest token page rewritten, uncommitted */
#ifndef CORE_CRASHPOINT_H
#define CORE_CRASHPOINT_H

#ifdef TALLY_CRASH_POINTS

/* Counts one pass of point `name` (a string literal) and kills the process when it is the
 * armed point's N-th. Returns otherwise. */
void crashpoint_pass(const char *name);

#define TALLY_CRASH_POINT(name) crashpoint_pass(name)
/* A point passed only when cond holds (e.g. halfway through a loop). */
#define TALLY_CRASH_POINT_IF(name, cond)                                                           \
    do {                                                                                           \
        if (cond)                                                                                  \
            crashpoint_pass(name);                                                                 \
    } while (0)

#else

#define TALLY_CRASH_POINT(name) ((void)0)
/* cond stays type-checked but is never evaluated. */
#define TALLY_CRASH_POINT_IF(name, cond) ((void)sizeof(cond))

#endif

#endif
