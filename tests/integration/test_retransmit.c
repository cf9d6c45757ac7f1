/* Retransmission after durable is not counted twice:
 *  - tally-push run again on a copy of its spool taken before the push finished (every batch
 *    sent and applied, none durable yet: the tables were locked) exits 0 and leaves the
 *    results unchanged, the server having made them durable since;
 *  - on the wire, a Batch whose seq was applied before is compared by content digest: the
 *    same content is acknowledged as a retransmission and not applied, other content is
 *    refused with ERROR_SEQ_CONFLICT (counted in tally_seq_conflicts_total) and not applied
 *    either, also after a restart; a gap is refused with the expected seq; the next seq is
 *    applied once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"
#include "tally/protocol.h"
#include "tally.pb-c.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct ts_case tc;

#define BATCH 200 /* 30,000 votes: 150 batches, under libtally's 256 spooled by default */

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    return ts_case_setup(&tc, "retransmit", 400, 60, 1, 30000, "0.02", "0.001", 0, 31);
}

static int teardown(void **state)
{
    (void)state;
    ts_case_teardown(&tc, true);
    return 0;
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strncmp(e->d_name, "batch-", 6) == 0;
    closedir(d);
    return n;
}

static void run_push(const char *spool, const char *tag, int *code, struct ts_push_result *r)
{
    char file[1200], out[1200], err[1200];
    ts_case_paths(&tc, 0, file, NULL, NULL, NULL, sizeof file);
    snprintf(out, sizeof out, "%s/push-%s.out", tc.dir, tag);
    snprintf(err, sizeof err, "%s/push-%s.err", tc.dir, tag);
    struct ts_proc p;
    assert_int_equal(ts_push_spawn(&p, &tc.d, "c0", spool, file, BATCH, out, err), 0);
    if (ts_proc_wait(&p, ts_scale(90000)) != 0) {
        ts_proc_kill(&p);
        ts_dump_tail("tally-push stderr", err, 30);
        fail_msg("tally-push %s did not finish within 90 s", tag);
    }
    *code = ts_proc_code(&p);
    if (*code != 0)
        ts_dump_tail("tally-push stderr", err, 30);
    if (r && ts_push_result_read(out, r) != 0)
        memset(r, 0, sizeof *r);
}

/* Sends a Batch and returns the first answer that is about it (an Ack for this seq, or an
 * Error), skipping durable-only acks (seq 0). */
static struct ts_frame batch_answer(int fd, uint64_t seq, const uint64_t *ballots,
                                    const uint32_t *projects, size_t n)
{
    assert_int_equal(ts_wire_batch(fd, seq, ballots, projects, n), 0);
    int64_t deadline = ts_now_ms() + ts_scale(10000);
    struct ts_frame f;
    while (ts_now_ms() < deadline) {
        int r = ts_wire_recv(fd, &f, (int)(deadline - ts_now_ms()));
        if (r == 0)
            fail_msg("connection closed while waiting for the answer to seq %llu",
                     (unsigned long long)seq);
        if (r < 0)
            break;
        if (f.kind == TALLY__FRAME__MSG_ERROR || (f.kind == TALLY__FRAME__MSG_ACK && f.seq == seq))
            return f;
    }
    fail_msg("no answer to Batch seq %llu within 10 s", (unsigned long long)seq);
    return f; /* not reached */
}

/* Waits for an Ack whose durable_seq reaches seq. */
static void wait_durable(int fd, uint64_t seq)
{
    int64_t deadline = ts_now_ms() + ts_scale(15000);
    struct ts_frame f;
    while (ts_now_ms() < deadline) {
        int r = ts_wire_recv(fd, &f, (int)(deadline - ts_now_ms()));
        if (r <= 0)
            break;
        if (f.kind == TALLY__FRAME__MSG_ACK && f.durable_seq >= seq)
            return;
    }
    fail_msg("durable_seq did not reach %llu within 15 s", (unsigned long long)seq);
}

static int hello(uint64_t *durable)
{
    int fd = ts_connect(tc.d.port, 5000);
    assert_true(fd >= 0);
    assert_int_equal(ts_wire_hello(fd, "c0", TALLY_PROTOCOL_VERSION), 0);
    struct ts_frame f;
    assert_int_equal(ts_wire_recv(fd, &f, ts_scale(10000)), 1);
    if (f.kind != TALLY__FRAME__MSG_WELCOME)
        fail_msg("expected Welcome, got kind %d (error %d: %s)", f.kind, f.error_code, f.message);
    *durable = f.durable_seq;
    return fd;
}

static void assert_results(const char *want, const char *when)
{
    char *got = ts_results_csv(tc.conninfo);
    assert_non_null(got);
    if (strcmp(got, want) != 0) {
        char path[1200];
        snprintf(path, sizeof path, "%s/expected.csv", tc.dir);
        ts_write_file(path, want);
        ts_csv_compare(got, path);
        fail_msg("results wrong %s", when);
    }
    free(got);
}

static void test_retransmit(void **state)
{
    (void)state;
    char spool[1200], copy[1200];
    ts_case_paths(&tc, 0, NULL, spool, NULL, NULL, sizeof spool);
    snprintf(copy, sizeof copy, "%s/spool-copy", tc.dir);

    /* With the tables locked no checkpoint can commit: tally-push spools and sends every
     * batch and gets only provisional acks. Freeze it (SIGSTOP) once all are spooled, copy
     * the spool, let it go. */
    tc.d.checkpoint_ms = 100;
    assert_int_equal(ts_tallyd_start(&tc.d, ts_scale(30000)), 0);
    struct ts_db *lock = ts_db_open(tc.conninfo);
    assert_non_null(lock);
    assert_int_equal(ts_db_exec(lock, "BEGIN"), 0);
    assert_int_equal(ts_db_exec(lock, "LOCK TABLE checkpoints, batches, tallies, collectors "
                                      "IN ACCESS EXCLUSIVE MODE"),
                     0);
    char file[1200], out[1200], err[1200];
    ts_case_paths(&tc, 0, file, NULL, out, err, sizeof file);
    const int want_batches = (int)((tc.truth.votes + BATCH - 1) / BATCH);
    struct ts_proc push;
    assert_int_equal(ts_push_spawn(&push, &tc.d, "c0", spool, file, BATCH, out, err), 0);
    int64_t deadline = ts_now_ms() + ts_scale(30000);
    while (count_entries(spool) < want_batches && ts_now_ms() < deadline && !ts_proc_done(&push))
        ts_sleep_ms(20);
    ts_sleep_ms(300); /* let it send them all */
    ts_proc_signal(&push, SIGSTOP);
    ts_sleep_ms(50);
    int spooled = count_entries(spool);
    int copied = ts_copy_dir(spool, copy);
    ts_proc_signal(&push, SIGCONT);
    fprintf(stderr, "spool copy holds %d of %d batches\n", spooled, want_batches);
    assert_int_equal(copied, 0);
    assert_int_equal(spooled, want_batches);
    assert_false(ts_proc_done(&push));
    assert_int_equal(ts_db_exec(lock, "ROLLBACK"), 0);
    ts_db_close(lock);

    /* The original run now completes. */
    if (ts_proc_wait(&push, ts_scale(60000)) != 0 || ts_proc_code(&push) != 0) {
        ts_dump_tail("tally-push stderr", err, 30);
        fail_msg("tally-push did not finish with 0 (%d)", ts_proc_code(&push));
    }
    struct ts_push_result first;
    assert_int_equal(ts_push_result_read(out, &first), 0);
    assert_int_equal(first.batches, want_batches);
    assert_int_equal(first.accepted, tc.truth.accepted);
    assert_int_equal(first.duplicate, tc.truth.duplicate);
    assert_int_equal(first.rejected, tc.truth.rejected);
    char *truth = ts_read_file(tc.truth_csv);
    assert_non_null(truth);
    assert_results(truth, "after the first push");

    /* The stale copy: every batch in it has been applied and is durable by now. */
    int code;
    struct ts_push_result second;
    run_push(copy, "copy", &code, &second);
    assert_int_equal(code, 0);
    assert_int_equal(second.batches, first.batches);
    assert_int_equal(second.accepted, first.accepted);
    assert_int_equal(second.duplicate, first.duplicate);
    assert_int_equal(second.rejected, first.rejected);
    assert_results(truth, "after tally-push ran on a stale copy of its spool");

    /* The protocol, by hand. */
    uint64_t durable;
    int fd = hello(&durable);
    assert_true(durable >= (uint64_t)first.batches);
    assert_true(durable >= 1);
    uint32_t pid = ts_truth_first_project(tc.truth_csv);
    assert_true(pid != 0);
    enum { N = 50 };
    uint64_t ballots[N];
    uint32_t projects[N];
    for (int i = 0; i < N; i++) {
        ballots[i] = 0x7e57000000000000ull + (uint64_t)i; /* tokens no voter has */
        projects[i] = pid;
    }

    /* seq 1 and seq = durable with other content: another source under this collector id.
     * Refused loudly, nothing of it applied, and the connection is closed. */
    struct ts_frame f = batch_answer(fd, 1, ballots, projects, N);
    assert_int_equal(f.kind, TALLY__FRAME__MSG_ERROR);
    assert_int_equal(f.error_code, TALLY__ERROR_CODE__ERROR_SEQ_CONFLICT);
    assert_non_null(strstr(f.message, "another source"));
    close(fd);
    fd = hello(&durable);
    f = batch_answer(fd, durable, ballots, projects, N);
    assert_int_equal(f.kind, TALLY__FRAME__MSG_ERROR);
    assert_int_equal(f.error_code, TALLY__ERROR_CODE__ERROR_SEQ_CONFLICT);
    close(fd);
    ts_sleep_ms(3 * tc.d.checkpoint_ms + 200);
    assert_results(truth, "after applied seqs were resent with other content");
    uint64_t conflicts = 0;
    char metrics[65536];
    assert_int_equal(ts_http_get(tc.d.http_port, "/metrics", metrics, sizeof metrics, 5000), 200);
    const char *m = strstr(metrics, "\ntally_seq_conflicts_total ");
    assert_non_null(m);
    conflicts = strtoull(m + strlen("\ntally_seq_conflicts_total "), NULL, 10);
    assert_int_equal(conflicts, 2);

    /* A gap is refused and names the expected seq. */
    fd = hello(&durable);
    f = batch_answer(fd, durable + 2, ballots, projects, N);
    assert_int_equal(f.kind, TALLY__FRAME__MSG_ERROR);
    assert_int_equal(f.error_code, TALLY__ERROR_CODE__ERROR_SEQ_GAP);
    assert_int_equal(f.expected_seq, durable + 1);
    close(fd);

    /* Positive control: the next seq is applied, once. */
    fd = hello(&durable);
    f = batch_answer(fd, durable + 1, ballots, projects, N);
    assert_int_equal(f.kind, TALLY__FRAME__MSG_ACK);
    assert_false(f.retransmit);
    assert_int_equal(f.accepted, N);
    wait_durable(fd, durable + 1);
    close(fd);
    char *plus = ts_truth_with(tc.truth_csv, pid, N);
    assert_results(plus, "after one new batch");

    /* That batch again, on a new connection and after a tallyd restart: recognised by its
     * recovered digest, acknowledged, not applied; with other content, refused. */
    assert_int_equal(ts_tallyd_stop(&tc.d, ts_scale(30000)), 0);
    assert_int_equal(ts_tallyd_start(&tc.d, ts_scale(30000)), 0);
    uint64_t durable2;
    fd = hello(&durable2);
    assert_int_equal(durable2, durable + 1);
    f = batch_answer(fd, durable + 1, ballots, projects, N);
    assert_int_equal(f.kind, TALLY__FRAME__MSG_ACK);
    assert_true(f.retransmit);
    ballots[0] ^= 1;
    f = batch_answer(fd, durable + 1, ballots, projects, N);
    ballots[0] ^= 1;
    assert_int_equal(f.kind, TALLY__FRAME__MSG_ERROR);
    assert_int_equal(f.error_code, TALLY__ERROR_CODE__ERROR_SEQ_CONFLICT);
    close(fd);
    fd = hello(&durable2);
    /* The same tokens under a new seq: all duplicate ballots. */
    f = batch_answer(fd, durable + 2, ballots, projects, N);
    assert_int_equal(f.kind, TALLY__FRAME__MSG_ACK);
    assert_false(f.retransmit);
    assert_int_equal(f.accepted, 0);
    assert_int_equal(f.duplicate, N);
    wait_durable(fd, durable + 2);
    close(fd);
    assert_results(plus, "after the batch was resent");
    free(plus);
    free(truth);
    assert_int_equal(ts_tallyd_stop(&tc.d, ts_scale(30000)), 0);
}

/* Two tally-push with their own spools under one collector id: the second one's seq 1 holds
 * other content than the first one's, so tallyd refuses it (ERROR_SEQ_CONFLICT), tally-push
 * exits 1 saying another source is using the id and keeps its spool, and nothing of it
 * counts. */
static void test_two_sources_one_id(void **state)
{
    (void)state;
    assert_int_equal(ts_tallyd_start(&tc.d, ts_scale(30000)), 0);
    assert_int_equal(ts_ctl(tc.conninfo, NULL, "add-collector", "twin", NULL), 0);
    ts_sleep_ms(1500); /* tallyd learns of new collectors within a second */
    char *before = ts_results_csv(tc.conninfo);
    assert_non_null(before);
    uint32_t pid = ts_truth_first_project(tc.truth_csv);
    char file_a[1200], file_b[1200], text[256];
    snprintf(file_a, sizeof file_a, "%s/twin-a.csv", tc.dir);
    snprintf(file_b, sizeof file_b, "%s/twin-b.csv", tc.dir);
    snprintf(text, sizeof text, "twin-voter-1,%u\ntwin-voter-2,%u\n", pid, pid);
    assert_int_equal(ts_write_file(file_a, text), 0);
    snprintf(text, sizeof text, "twin-voter-3,%u\ntwin-voter-4,%u\n", pid, pid);
    assert_int_equal(ts_write_file(file_b, text), 0);

    /* Both at once: whichever seq 1 tallyd applies first wins; the other is refused,
     * either by ERROR_SEQ_CONFLICT (it sent its own seq 1) or at Welcome (the first was
     * already durable when it said Hello). */
    const char *files[2] = {file_a, file_b};
    struct ts_proc p[2];
    char err[2][1200];
    for (int i = 0; i < 2; i++) {
        char spool[1200], out[1200];
        snprintf(spool, sizeof spool, "%s/twin-spool-%d", tc.dir, i);
        snprintf(out, sizeof out, "%s/twin-%d.out", tc.dir, i);
        snprintf(err[i], sizeof err[i], "%s/twin-%d.err", tc.dir, i);
        assert_int_equal(ts_push_spawn(&p[i], &tc.d, "twin", spool, files[i], 0, out, err[i]), 0);
    }
    int codes[2];
    for (int i = 0; i < 2; i++) {
        if (ts_proc_wait(&p[i], ts_scale(30000)) != 0) {
            ts_proc_kill(&p[i]);
            ts_dump_tail("tally-push stderr", err[i], 20);
            fail_msg("tally-push %d did not stop", i);
        }
        codes[i] = ts_proc_code(&p[i]);
    }
    assert_true((codes[0] == 0 && codes[1] == 1) || (codes[0] == 1 && codes[1] == 0));
    int loser = codes[0] == 1 ? 0 : 1;
    char *msg = ts_read_file(err[loser]);
    assert_non_null(msg);
    if (!strstr(msg, "another source is using collector id 'twin'")) {
        ts_dump_tail("refused tally-push stderr", err[loser], 10);
        fail_msg("the refused source was not told why");
    }
    free(msg);
    char spool_lost[1200];
    snprintf(spool_lost, sizeof spool_lost, "%s/twin-spool-%d", tc.dir, loser);
    assert_true(count_entries(spool_lost) >= 1); /* kept */
    /* The winner's two votes count, the other's do not. */
    char *after = ts_results_csv(tc.conninfo);
    assert_non_null(after);
    assert_string_not_equal(after, before);
    free(after);
    free(before);
    assert_int_equal(ts_tallyd_stop(&tc.d, ts_scale(30000)), 0);
    uint64_t accepted = 0;
    assert_int_equal(
        ts_sql_u64(tc.conninfo, "SELECT accepted FROM collectors WHERE id = 'twin'", &accepted), 0);
    assert_int_equal(accepted, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retransmit),
        cmocka_unit_test(test_two_sources_one_id),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
