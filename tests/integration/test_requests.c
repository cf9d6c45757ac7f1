/* tallyd applying what tallyctl asks (docs/consultation.md part B), the requests written
 * here by SQL exactly as tallyctl writes them, against a real tallyd and PostgreSQL:
 *  - a retraction subtracts the batch's counts (results, a correction row with negative
 *    deltas, the request completed by the checkpoint that carries it); a second retraction
 *    of it, an unknown batch and a sheet batch are refused with the reason;
 *  - a tie rule is recorded with its seed's hash; a second one is refused;
 *  - close: a new seq gets ERROR_CLOSED, a retransmission is still acknowledged, later
 *    requests are refused, and all of it holds after SIGKILL and restart;
 *  - the embargo set in the row is applied by tallyd (embargo_applied) and the SQL views
 *    hide counts meanwhile; `tallyctl verify` passes at the end, events and all. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"
#include "tally.pb-c.h"
#include "tally/protocol.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char conninfo[512];
static struct ts_tallyd d;

static const char registry[] = "project_id,project_name,circuit_id,circuit_name,state,seats\n"
                               "11,Agua,1,Uno,Lara,1\n"
                               "12,Luz,1,Uno,Lara,1\n"
                               "21,Escuela,2,Dos,Zulia,1\n";
static const char tables[] = "table_id,circuit_id,electors\nM1,1,100\nM2,2,100\n";

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    const char *dir = ts_workdir("requests");
    char reg[1200], tab[1200];
    snprintf(reg, sizeof reg, "%s/registry.csv", dir);
    snprintf(tab, sizeof tab, "%s/tables.csv", dir);
    if (ts_write_file(reg, registry) != 0 || ts_write_file(tab, tables) != 0 ||
        ts_db_create("requests", conninfo, sizeof conninfo) != 0 ||
        ts_db_prepare(conninfo, reg, 1) != 0 ||
        ts_ctl(conninfo, NULL, "load-tables", tab, NULL) != 0)
        return -1;
    memset(&d, 0, sizeof d);
    snprintf(d.conninfo, sizeof d.conninfo, "%s", conninfo);
    snprintf(d.dir, sizeof d.dir, "%s", dir);
    d.checkpoint_ms = 50;
    /* Requests come with the refresh: a short one keeps the test short. */
    snprintf(d.extra, sizeof d.extra, "--refresh-ms 100");
    return ts_tallyd_start(&d, ts_scale(20000));
}

static int teardown(void **state)
{
    (void)state;
    ts_tallyd_kill(&d);
    ts_cleanup();
    return 0;
}

static uint64_t sql_u64(const char *sql)
{
    uint64_t v = 0;
    if (ts_sql_u64(conninfo, sql, &v) != 0)
        fail_msg("query failed: %s", sql);
    return v;
}

static int hello(uint64_t *durable)
{
    int fd = ts_connect(d.port, 5000);
    assert_true(fd >= 0);
    assert_int_equal(ts_wire_hello(fd, "c0", TALLY_PROTOCOL_VERSION), 0);
    struct ts_frame f;
    assert_int_equal(ts_wire_recv(fd, &f, ts_scale(10000)), 1);
    if (f.kind != TALLY__FRAME__MSG_WELCOME)
        fail_msg("expected Welcome, got kind %d (error %d: %s)", f.kind, f.error_code, f.message);
    *durable = f.durable_seq;
    return fd;
}

/* Sends batch seq (votes for projects, naming table tables[i] when given) and returns its
 * answer (the caller frees it). */
static Tally__Frame *send_batch(int fd, uint64_t seq, const uint64_t *ballots,
                                const uint32_t *projects, const uint32_t *vt, size_t n,
                                uint64_t *durable)
{
    static char *dict[] = {"M1", "M2"};
    Tally__Batch b = TALLY__BATCH__INIT;
    b.seq = seq;
    uint8_t nonce[16] = {(uint8_t)seq, 9};
    b.nonce.data = nonce;
    b.nonce.len = sizeof nonce;
    b.ballots = (uint64_t *)ballots;
    b.n_ballots = n;
    b.projects = (uint32_t *)projects;
    b.n_projects = n;
    if (vt) {
        b.vote_tables = (uint32_t *)vt;
        b.n_vote_tables = n;
        b.tables = dict;
        b.n_tables = 2;
    }
    Tally__Frame f = TALLY__FRAME__INIT;
    f.msg_case = TALLY__FRAME__MSG_BATCH;
    f.batch = &b;
    assert_int_equal(ts_wire_send_frame(fd, &f), 0);
    Tally__Frame *a = ts_wire_answer(fd, seq, durable, ts_scale(10000));
    if (!a)
        fail_msg("no answer to batch %llu", (unsigned long long)seq);
    return a;
}

static Tally__Frame *send_sheet(int fd, uint64_t seq, uint64_t *durable)
{
    uint32_t projects[] = {21}, votes[] = {5};
    Tally__Sheet s = TALLY__SHEET__INIT;
    s.table_id = "M2";
    s.version = 1;
    s.projects = projects;
    s.n_projects = 1;
    s.votes = votes;
    s.n_votes = 1;
    Tally__Sheet *sp[] = {&s};
    Tally__Batch b = TALLY__BATCH__INIT;
    b.seq = seq;
    b.sheets = sp;
    b.n_sheets = 1;
    Tally__Frame f = TALLY__FRAME__INIT;
    f.msg_case = TALLY__FRAME__MSG_BATCH;
    f.batch = &b;
    assert_int_equal(ts_wire_send_frame(fd, &f), 0);
    Tally__Frame *a = ts_wire_answer(fd, seq, durable, ts_scale(10000));
    assert_non_null(a);
    return a;
}

/* Inserts a request as tallyctl does and waits for tallyd to complete it; returns its
 * outcome (malloc'd). */
/* A reason longer than any fixed buffer, in UTF-8 with characters of two bytes: it must
 * reach the record whole. */
#define LONG_REASON                                                                                \
    "mesa número 7: el acta se cargó dos veces por error; la retira la junta, según consta en " \
    "el acta de la sesión, año 2026, con las firmas de los testigos y del coordinador"

static char *request_why(const char *kind, const char *reason, const char *extra_cols,
                         const char *extra_vals)
{
    char sql[1024];
    snprintf(sql, sizeof sql,
             "INSERT INTO requests (kind, actor, reason%s) VALUES ('%s', 'test', '%s'%s)"
             " RETURNING id",
             extra_cols, kind, reason, extra_vals);
    uint64_t id = sql_u64(sql);
    int64_t deadline = ts_now_ms() + ts_scale(15000);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM requests WHERE id = %llu AND done_at IS NOT NULL",
             (unsigned long long)id);
    while (sql_u64(sql) == 0) {
        if (ts_now_ms() > deadline)
            fail_msg("request %llu (%s) not completed within 15 s", (unsigned long long)id, kind);
        ts_sleep_ms(50);
    }
    snprintf(sql, sizeof sql, "SELECT outcome FROM requests WHERE id = %llu",
             (unsigned long long)id);
    char *out = ts_sql_text(conninfo, sql);
    assert_non_null(out);
    size_t len = strlen(out);
    while (len && (out[len - 1] == '\n' || out[len - 1] == '\r'))
        out[--len] = '\0';
    return out;
}

static char *request(const char *kind, const char *extra_cols, const char *extra_vals)
{
    return request_why(kind, "because", extra_cols, extra_vals);
}

static void assert_outcome(char *got, const char *want_prefix)
{
    if (strncmp(got, want_prefix, strlen(want_prefix)) != 0)
        fail_msg("outcome '%s', wanted '%s...'", got, want_prefix);
    free(got);
}

static uint64_t votes_of(uint32_t project)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT votes FROM project_votes WHERE project_id = %u", project);
    return sql_u64(sql);
}

static void assert_verify(void)
{
    char *out = NULL;
    int rc = ts_ctl(conninfo, &out, "verify", NULL, NULL);
    if (rc != 0)
        fail_msg("tallyctl verify exited %d", rc);
    free(out);
}

static void test_requests(void **state)
{
    (void)state;
    uint64_t durable = 0;
    int fd = hello(&durable);
    uint64_t b1[] = {1, 2, 3}, b2[] = {4, 5, 6, 7};
    uint32_t p1[] = {11, 11, 12}, p2[] = {11, 12, 12, 21};
    uint32_t t2[] = {1, 1, 1, 2};
    Tally__Frame *f;
    f = send_batch(fd, 1, b1, p1, NULL, 3, &durable);
    tally__frame__free_unpacked(f, NULL);
    f = send_batch(fd, 2, b2, p2, t2, 4, &durable);
    assert_int_equal(f->ack->accepted, 4);
    tally__frame__free_unpacked(f, NULL);
    /* M2 takes ballots now: its sheet is refused. */
    f = send_sheet(fd, 3, &durable);
    assert_int_equal(f->ack->n_sheets, 1);
    assert_int_equal(f->ack->sheets[0]->reason, TALLY__REJECT_REASON__REJECT_TABLE_MODE_CONFLICT);
    tally__frame__free_unpacked(f, NULL);
    assert_int_equal(ts_wire_wait_durable(fd, 3, &durable, ts_scale(15000)), 0);
    assert_int_equal(votes_of(11), 3);
    assert_int_equal(votes_of(12), 3);
    assert_int_equal(votes_of(21), 1);

    /* Retract batch 2: its counts and its tables' ballots go. */
    assert_outcome(request_why("retract", LONG_REASON, ", collector_id, seq", ", 'c0', 2"),
                   "applied");
    assert_int_equal(votes_of(11), 2);
    assert_int_equal(votes_of(12), 1);
    assert_int_equal(votes_of(21), 0);
    assert_int_equal(sql_u64("SELECT count(*) FROM corrections WHERE kind = 'retract'"
                             " AND collector_id = 'c0' AND seq = 2 AND actor = 'test'"
                             " AND reason = '" LONG_REASON "' AND ballots_delta = -4"),
                     1);
    assert_int_equal(sql_u64("SELECT count(*) FROM requests WHERE kind = 'retract'"
                             " AND checkpoint_id IS NOT NULL"),
                     1);
    assert_int_equal(sql_u64("SELECT ballots FROM table_progress WHERE table_id = 'M1'"), 0);
    assert_outcome(request("retract", ", collector_id, seq", ", 'c0', 2"), "refused: ");
    assert_outcome(request("retract", ", collector_id, seq", ", 'c0', 99"), "refused: no durable");
    assert_outcome(request("retract", ", collector_id, seq", ", 'c0', 3"), "refused: ");
    /* A damaged batch row refuses its retraction, and the refreshes go on. */
    assert_int_equal(ts_sql_exec(conninfo, "CREATE TABLE saved AS SELECT counts FROM batches"
                                           " WHERE collector_id = 'c0' AND seq = 1"),
                     0);
    assert_int_equal(ts_sql_exec(conninfo, "UPDATE batches SET counts = '\\xff'::bytea"
                                           " WHERE collector_id = 'c0' AND seq = 1"),
                     0);
    assert_outcome(request("retract", ", collector_id, seq", ", 'c0', 1"),
                   "refused: the batch's stored counts do not decode");
    assert_int_equal(ts_sql_exec(conninfo, "UPDATE batches SET counts = (SELECT counts FROM saved)"
                                           " WHERE collector_id = 'c0' AND seq = 1;"
                                           " DROP TABLE saved"),
                     0);
    /* The ballots of a retracted batch stay spent: voting again is a duplicate. */
    uint64_t b4[] = {4};
    uint32_t p4[] = {11};
    f = send_batch(fd, 4, b4, p4, NULL, 1, &durable);
    assert_int_equal(f->ack->duplicate_ballots, 1);
    tally__frame__free_unpacked(f, NULL);
    /* M2 holds no ballot any more: now its sheet counts. */
    f = send_sheet(fd, 5, &durable);
    assert_int_equal(f->ack->sheets[0]->status, TALLY__SHEET_STATUS__SHEET_ACCEPTED);
    tally__frame__free_unpacked(f, NULL);
    assert_int_equal(ts_wire_wait_durable(fd, 5, &durable, ts_scale(15000)), 0);
    assert_int_equal(votes_of(21), 5);

    /* A tie rule, once. */
    assert_outcome(request("tie_rule", ", seed", ", '\\x000102030405060708090a0b0c0d0e0f'::bytea"),
                   "applied");
    assert_int_equal(sql_u64("SELECT length(tie_seed_hash) FROM consultation_state"), 32);
    assert_outcome(request("tie_rule", ", seed", ", '\\x0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f'::bytea"),
                   "refused: ");

    /* The embargo, set in the row as tallyctl embargo does: tallyd applies and says so. */
    assert_int_equal(ts_sql_exec(conninfo, "UPDATE consultation_state SET embargo = true,"
                                           " embargo_applied = NULL"),
                     0);
    int64_t deadline = ts_now_ms() + ts_scale(10000);
    while (sql_u64("SELECT count(*) FROM consultation_state WHERE embargo_applied") == 0) {
        if (ts_now_ms() > deadline)
            fail_msg("tallyd did not apply the embargo within 10 s");
        ts_sleep_ms(50);
    }
    assert_int_equal(sql_u64("SELECT count(*) FROM results WHERE votes IS NOT NULL"), 0);
    assert_int_equal(sql_u64("SELECT count(*) FROM circuit_winners"), 0);
    assert_int_equal(ts_sql_exec(conninfo, "UPDATE consultation_state SET embargo = false,"
                                           " embargo_applied = NULL"),
                     0);
    deadline = ts_now_ms() + ts_scale(10000);
    while (sql_u64("SELECT count(*) FROM consultation_state WHERE embargo_applied = false") == 0) {
        if (ts_now_ms() > deadline)
            fail_msg("tallyd did not lift the embargo within 10 s");
        ts_sleep_ms(50);
    }

    /* Close: new seqs are refused, retransmissions acknowledged, requests refused. */
    assert_outcome(request("close", "", ""), "applied");
    assert_int_equal(sql_u64("SELECT count(*) FROM consultation_state WHERE closed_at IS NOT NULL"
                             " AND closed_checkpoint_id = (SELECT max(id) FROM checkpoints)"),
                     1);
    f = send_batch(fd, 1, b1, p1, NULL, 3, &durable);
    assert_int_equal(f->msg_case, TALLY__FRAME__MSG_ACK);
    assert_true(f->ack->retransmit);
    tally__frame__free_unpacked(f, NULL);
    uint64_t b5[] = {50};
    uint32_t p5[] = {12};
    f = send_batch(fd, 6, b5, p5, NULL, 1, &durable);
    assert_int_equal(f->msg_case, TALLY__FRAME__MSG_ERROR);
    assert_int_equal(f->error->code, TALLY__ERROR_CODE__ERROR_CLOSED);
    tally__frame__free_unpacked(f, NULL);
    close(fd);
    assert_outcome(request("retract", ", collector_id, seq", ", 'c0', 1"), "refused: ");
    assert_verify();

    /* Still closed after SIGKILL and restart. */
    ts_tallyd_kill(&d);
    assert_int_equal(ts_tallyd_start(&d, ts_scale(20000)), 0);
    fd = hello(&durable);
    f = send_batch(fd, 6, b5, p5, NULL, 1, &durable);
    assert_int_equal(f->msg_case, TALLY__FRAME__MSG_ERROR);
    assert_int_equal(f->error->code, TALLY__ERROR_CODE__ERROR_CLOSED);
    tally__frame__free_unpacked(f, NULL);
    close(fd);
    assert_int_equal(votes_of(11), 2);
    assert_verify();
    assert_int_equal(ts_tallyd_stop(&d, ts_scale(20000)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requests),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
