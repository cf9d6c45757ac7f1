/* Voting tables, tally sheets and per-ballot votes naming their table, on the wire against a
 * real tallyd and PostgreSQL (docs/consultation.md):
 *  - every sheet check answers its reason in the Ack and counts nothing (unknown table, a
 *    restricted collector's foreign table, bad sheet, superseded, sheet conflict, unknown
 *    project, project outside the table's circuit, over electors, table mode both ways);
 *  - a higher version replaces the lower one (counts equal the new sheet, a correction row
 *    with negative deltas), the same version with the same content in another row order is a
 *    duplicate;
 *  - votes naming a table are checked against it, electors included, and count once;
 *  - all of it is durable, recovered after SIGKILL (the next version replaces the recovered
 *    one; a per-ballot table stays per-ballot and full) and `tallyctl verify` passes. */
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

static const char registry[] =
    "project_id,project_name,circuit_id,circuit_name,state,seats,min_votes\n"
    "101,Agua,1,Uno,Lara,1,0\n"
    "102,Luz,1,Uno,Lara,1,0\n"
    "103,Vialidad,1,Uno,Lara,1,10\n"
    "201,Escuela,2,Dos,Zulia,2,0\n"
    "202,Cancha,2,Dos,Zulia,2,0\n"
    "203,Plaza,2,Dos,Zulia,2,0\n"
    "301,Puente,3,Tres,Zulia,1,0\n";

static const char tables[] = "table_id,circuit_id,electors\n"
                             "T1,1,100\n"
                             "T2,1,50\n"
                             "T3,2,80\n"
                             "T4,2,10\n"
                             "T5,3,5\n";

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    const char *dir = ts_workdir("sheets");
    char reg[1200], tab[1200];
    snprintf(reg, sizeof reg, "%s/registry.csv", dir);
    snprintf(tab, sizeof tab, "%s/tables.csv", dir);
    if (ts_write_file(reg, registry) != 0 || ts_write_file(tab, tables) != 0 ||
        ts_db_create("sheets", conninfo, sizeof conninfo) != 0 ||
        ts_db_prepare(conninfo, reg, 1) != 0 ||
        ts_ctl(conninfo, NULL, "load-tables", tab, NULL) != 0)
        return -1;
    char *restricted[] = {(char *)ts_prog("tallyctl"),
                          "--db",
                          conninfo,
                          "add-collector",
                          "r2",
                          "--circuits",
                          "2",
                          NULL};
    if (ts_run(restricted, NULL, NULL, ts_scale(20000)) != 0)
        return -1;
    memset(&d, 0, sizeof d);
    snprintf(d.conninfo, sizeof d.conninfo, "%s", conninfo);
    snprintf(d.dir, sizeof d.dir, "%s", dir);
    d.checkpoint_ms = 50;
    return ts_tallyd_start(&d, ts_scale(20000));
}

static int teardown(void **state)
{
    (void)state;
    ts_tallyd_kill(&d);
    ts_cleanup();
    return 0;
}

/* ---- frames --------------------------------------------------------------------------- */

struct sheet {
    const char *table;
    uint32_t version;
    uint32_t projects[4], votes[4];
    size_t n;
    uint32_t blank, null_ballots;
};

static void send_frame(int fd, Tally__Frame *f)
{
    assert_int_equal(ts_wire_send_frame(fd, f), 0);
}

static void send_sheets(int fd, uint64_t seq, const struct sheet *s, size_t n)
{
    Tally__Sheet *sv = calloc(n, sizeof(*sv));
    Tally__Sheet **sp = calloc(n, sizeof(*sp));
    for (size_t i = 0; i < n; i++) {
        tally__sheet__init(&sv[i]);
        sv[i].table_id = (char *)s[i].table;
        sv[i].version = s[i].version;
        sv[i].projects = (uint32_t *)s[i].projects;
        sv[i].n_projects = s[i].n;
        sv[i].votes = (uint32_t *)s[i].votes;
        sv[i].n_votes = s[i].n;
        sv[i].blank = s[i].blank;
        sv[i].null_ballots = s[i].null_ballots;
        sp[i] = &sv[i];
    }
    Tally__Batch b = TALLY__BATCH__INIT;
    b.seq = seq;
    uint8_t nonce[16];
    for (size_t i = 0; i < sizeof nonce; i++)
        nonce[i] = (uint8_t)(seq * 31 + i);
    b.nonce.data = nonce;
    b.nonce.len = sizeof nonce;
    b.sheets = sp;
    b.n_sheets = n;
    Tally__Frame f = TALLY__FRAME__INIT;
    f.msg_case = TALLY__FRAME__MSG_BATCH;
    f.batch = &b;
    send_frame(fd, &f);
    free(sp);
    free(sv);
}

static void send_votes(int fd, uint64_t seq, const uint64_t *ballots, const uint32_t *projects,
                       const uint32_t *vote_tables, size_t n, char **dict, size_t n_dict)
{
    Tally__Batch b = TALLY__BATCH__INIT;
    b.seq = seq;
    uint8_t nonce[16] = {(uint8_t)seq, 7};
    b.nonce.data = nonce;
    b.nonce.len = sizeof nonce;
    b.ballots = (uint64_t *)ballots;
    b.n_ballots = n;
    b.projects = (uint32_t *)projects;
    b.n_projects = n;
    b.vote_tables = (uint32_t *)vote_tables;
    b.n_vote_tables = vote_tables ? n : 0;
    b.tables = dict;
    b.n_tables = n_dict;
    Tally__Frame f = TALLY__FRAME__INIT;
    f.msg_case = TALLY__FRAME__MSG_BATCH;
    f.batch = &b;
    send_frame(fd, &f);
}

/* The next frame about seq (its Ack or an Error). The caller frees it. */
static Tally__Frame *answer(int fd, uint64_t seq, uint64_t *durable)
{
    Tally__Frame *f = ts_wire_answer(fd, seq, durable, ts_scale(10000));
    if (!f)
        fail_msg("no answer to seq %llu within 10 s", (unsigned long long)seq);
    return f;
}

static int hello(const char *collector, uint64_t *durable)
{
    int fd = ts_connect(d.port, 5000);
    assert_true(fd >= 0);
    assert_int_equal(ts_wire_hello(fd, collector, TALLY_PROTOCOL_VERSION), 0);
    struct ts_frame f;
    assert_int_equal(ts_wire_recv(fd, &f, ts_scale(10000)), 1);
    if (f.kind != TALLY__FRAME__MSG_WELCOME)
        fail_msg("expected Welcome, got kind %d (error %d: %s)", f.kind, f.error_code, f.message);
    *durable = f.durable_seq;
    return fd;
}

static void wait_durable(int fd, uint64_t seq, uint64_t *durable)
{
    if (ts_wire_wait_durable(fd, seq, durable, ts_scale(15000)) != 0)
        fail_msg("durable_seq %llu, not %llu", (unsigned long long)*durable,
                 (unsigned long long)seq);
}

/* Asserts sheet i of an Ack: status, reason, replaced version. */
static void want_sheet(const Tally__Frame *f, size_t i, Tally__SheetStatus st,
                       Tally__RejectReason reason, uint32_t replaced)
{
    assert_int_equal(f->msg_case, TALLY__FRAME__MSG_ACK);
    assert_true(i < f->ack->n_sheets);
    const Tally__SheetResult *r = f->ack->sheets[i];
    if (r->status != st || r->reason != reason || r->replaced_version != replaced)
        fail_msg("sheet %zu (%s v%u): status %d reason %d replaced %u; wanted %d %d %u", i,
                 r->table_id, r->version, r->status, r->reason, r->replaced_version, st, reason,
                 replaced);
}

static uint64_t votes_of(uint32_t project)
{
    char sql[160];
    uint64_t v = 0;
    snprintf(sql, sizeof sql, "SELECT votes FROM results WHERE project_id = %u", project);
    assert_int_equal(ts_sql_u64(conninfo, sql, &v), 0);
    return v;
}

static uint64_t sql_u64(const char *sql)
{
    uint64_t v = 0;
    if (ts_sql_u64(conninfo, sql, &v) != 0)
        fail_msg("query failed: %s", sql);
    return v;
}

static void assert_verify(void)
{
    char *out = NULL;
    int rc = ts_ctl(conninfo, &out, "verify", NULL, NULL);
    if (rc != 0)
        fail_msg("tallyctl verify exited %d", rc);
    assert_non_null(strstr(out, "head "));
    free(out);
}

#define ACCEPTED TALLY__SHEET_STATUS__SHEET_ACCEPTED
#define DUPLICATE TALLY__SHEET_STATUS__SHEET_DUPLICATE
#define REJECTED TALLY__SHEET_STATUS__SHEET_REJECTED

static void test_sheets_and_tables(void **state)
{
    (void)state;
    uint64_t durable = 0;
    int fd = hello("c0", &durable);
    assert_int_equal(durable, 0);

    /* 1: first sheets, each check once. */
    const struct sheet s1[] = {
        {"T1", 1, {101, 102}, {40, 30}, 2, 2, 1}, {"T3", 1, {201, 202}, {50, 20}, 2, 0, 0},
        {"T4", 1, {201}, {11}, 1, 0, 0},        /* 11 > 10 electors */
        {"T2", 1, {201}, {5}, 1, 0, 0},         /* 201 is of circuit 2, T2 of 1 */
        {"TX", 1, {101}, {1}, 1, 0, 0},         /* no such table */
        {"T5", 1, {301, 301}, {1, 1}, 2, 0, 0}, /* a project twice */
        {"T5", 0, {301}, {1}, 1, 0, 0},         /* version 0 */
        {"T4", 1, {999}, {1}, 1, 0, 0},         /* unknown project */
    };
    send_sheets(fd, 1, s1, 8);
    Tally__Frame *f = answer(fd, 1, &durable);
    want_sheet(f, 0, ACCEPTED, 0, 0);
    want_sheet(f, 1, ACCEPTED, 0, 0);
    want_sheet(f, 2, REJECTED, TALLY__REJECT_REASON__REJECT_OVER_ELECTORS, 0);
    want_sheet(f, 3, REJECTED, TALLY__REJECT_REASON__REJECT_OUTSIDE_TABLE_CIRCUIT, 0);
    want_sheet(f, 4, REJECTED, TALLY__REJECT_REASON__REJECT_UNKNOWN_TABLE, 0);
    want_sheet(f, 5, REJECTED, TALLY__REJECT_REASON__REJECT_BAD_SHEET, 0);
    want_sheet(f, 6, REJECTED, TALLY__REJECT_REASON__REJECT_BAD_SHEET, 0);
    want_sheet(f, 7, REJECTED, TALLY__REJECT_REASON__REJECT_UNKNOWN_PROJECT, 0);
    tally__frame__free_unpacked(f, NULL);

    /* 2: a correction, a duplicate in another row order, a conflict, a stale version. */
    const struct sheet s2[] = {
        {"T1", 2, {101, 102, 103}, {35, 40, 1}, 3, 1, 0},
        {"T3", 1, {202, 201}, {20, 50}, 2, 0, 0},
        {"T3", 1, {201, 202}, {50, 21}, 2, 0, 0},
        {"T1", 1, {101, 102}, {40, 30}, 2, 2, 1},
    };
    send_sheets(fd, 2, s2, 4);
    f = answer(fd, 2, &durable);
    want_sheet(f, 0, ACCEPTED, 0, 1);
    want_sheet(f, 1, DUPLICATE, 0, 0);
    want_sheet(f, 2, REJECTED, TALLY__REJECT_REASON__REJECT_SHEET_CONFLICT, 0);
    want_sheet(f, 3, REJECTED, TALLY__REJECT_REASON__REJECT_SUPERSEDED, 0);
    tally__frame__free_unpacked(f, NULL);

    /* 3: votes naming tables. T2 takes ballots; T1 has a sheet; T5 holds 5 electors. */
    char *dict[] = {"T2", "T1", "T5", "TX"};
    uint64_t ballots[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    uint32_t projects[] = {101, 201, 101, 301, 301, 301, 301, 301, 301, 101, 102};
    uint32_t vt[] = {1, 1, 2, 3, 3, 3, 3, 3, 3, 0, 4};
    send_votes(fd, 3, ballots, projects, vt, 11, dict, 4);
    f = answer(fd, 3, &durable);
    assert_int_equal(f->msg_case, TALLY__FRAME__MSG_ACK);
    assert_int_equal(f->ack->accepted, 7); /* 1, 4-8, 10 */
    assert_int_equal(f->ack->rejected, 4);
    assert_int_equal(f->ack->n_rejected_by_reason, 10);
    assert_int_equal(f->ack->rejected_by_reason[TALLY__REJECT_REASON__REJECT_OUTSIDE_TABLE_CIRCUIT],
                     1);
    assert_int_equal(f->ack->rejected_by_reason[TALLY__REJECT_REASON__REJECT_TABLE_MODE_CONFLICT],
                     1);
    assert_int_equal(f->ack->rejected_by_reason[TALLY__REJECT_REASON__REJECT_OVER_ELECTORS], 1);
    assert_int_equal(f->ack->rejected_by_reason[TALLY__REJECT_REASON__REJECT_UNKNOWN_TABLE], 1);
    tally__frame__free_unpacked(f, NULL);

    /* 4: a sheet for the per-ballot table. */
    const struct sheet s4[] = {{"T2", 1, {101}, {3}, 1, 0, 0}};
    send_sheets(fd, 4, s4, 1);
    f = answer(fd, 4, &durable);
    want_sheet(f, 0, REJECTED, TALLY__REJECT_REASON__REJECT_TABLE_MODE_CONFLICT, 0);
    tally__frame__free_unpacked(f, NULL);

    /* A retransmission of 2 counts nothing again. */
    send_sheets(fd, 2, s2, 4);
    f = answer(fd, 2, &durable);
    assert_true(f->ack->retransmit);
    tally__frame__free_unpacked(f, NULL);
    wait_durable(fd, 4, &durable);
    assert_int_equal(durable, 4);
    /* The batch rows say the same: kind, reasons, the per-batch counts of a ballot batch. */
    assert_int_equal(sql_u64("SELECT count(*) FROM batches WHERE kind = 'sheets'"), 3);
    assert_int_equal(sql_u64("SELECT rejected_by_reason[5] FROM batches WHERE seq = 3"), 1);
    assert_int_equal(sql_u64("SELECT sheets_accepted FROM batches WHERE seq = 1"), 2);
    assert_int_equal(sql_u64("SELECT count(*) FROM batches WHERE seq = 3 AND counts IS NOT NULL"),
                     1);

    /* A collector limited to circuit 2: T1 is not its table, T3's next version is. */
    uint64_t rd = 0;
    int fr = hello("r2", &rd);
    const struct sheet r1[] = {{"T1", 3, {101}, {1}, 1, 0, 0},
                               {"T3", 2, {201, 203}, {45, 30}, 2, 1, 1}};
    send_sheets(fr, 1, r1, 2);
    f = answer(fr, 1, &rd);
    want_sheet(f, 0, REJECTED, TALLY__REJECT_REASON__REJECT_NOT_ALLOWED, 0);
    want_sheet(f, 1, ACCEPTED, 0, 1);
    tally__frame__free_unpacked(f, NULL);
    wait_durable(fr, 1, &rd);
    close(fr);

    /* Latest version wins, ballots count once. */
    assert_int_equal(votes_of(101), 35 + 1 + 1);
    assert_int_equal(votes_of(102), 40);
    assert_int_equal(votes_of(103), 1);
    assert_int_equal(votes_of(201), 45);
    assert_int_equal(votes_of(202), 0);
    assert_int_equal(votes_of(203), 30);
    assert_int_equal(votes_of(301), 5);
    assert_int_equal(sql_u64("SELECT count(*) FROM sheets"), 4);
    assert_int_equal(sql_u64("SELECT count(*) FROM corrections WHERE kind = 'sheet'"), 2);
    /* T1 v1 -> v2: 101 -5, 102 +10, 103 +1, blank -1, null -1; ballots 73 -> 77. */
    assert_int_equal(sql_u64("SELECT ballots_delta + 100 FROM corrections WHERE table_id = 'T1'"),
                     104);
    assert_int_equal(sql_u64("SELECT d + 100 FROM corrections c, unnest(c.project_ids, c.deltas)"
                             " AS u(p, d) WHERE c.table_id = 'T1' AND u.p = 101"),
                     95);
    assert_int_equal(sql_u64("SELECT blank_delta + 100 FROM corrections WHERE table_id = 'T1'"),
                     99);
    assert_int_equal(
        sql_u64("SELECT sum(n) FROM checkpoints, unnest(table_ids, table_ballots) AS u(t, n)"
                " WHERE t = 'T5'"),
        5);
    assert_int_equal(sql_u64("SELECT count(*) FROM checkpoints WHERE format = 3"),
                     sql_u64("SELECT count(*) FROM checkpoints"));
    assert_verify();

    /* Killed and restarted: the recovered sheets are the ones replaced next. */
    close(fd);
    ts_tallyd_kill(&d);
    assert_int_equal(ts_tallyd_start(&d, ts_scale(20000)), 0);
    fd = hello("c0", &durable);
    assert_int_equal(durable, 4);
    const struct sheet s5[] = {
        {"T1", 2, {103, 101, 102}, {1, 35, 40}, 3, 1, 0}, /* the recovered one again */
        {"T1", 3, {101}, {60}, 1, 0, 0},
        {"T2", 1, {101}, {1}, 1, 0, 0},
    };
    send_sheets(fd, 5, s5, 3);
    f = answer(fd, 5, &durable);
    want_sheet(f, 0, DUPLICATE, 0, 0);
    want_sheet(f, 1, ACCEPTED, 0, 2);
    want_sheet(f, 2, REJECTED, TALLY__REJECT_REASON__REJECT_TABLE_MODE_CONFLICT, 0);
    tally__frame__free_unpacked(f, NULL);
    uint64_t b6[] = {100};
    uint32_t p6[] = {301}, t6[] = {1};
    char *d6[] = {"T5"};
    send_votes(fd, 6, b6, p6, t6, 1, d6, 1);
    f = answer(fd, 6, &durable);
    assert_int_equal(f->ack->accepted, 0);
    assert_int_equal(f->ack->rejected_by_reason[TALLY__REJECT_REASON__REJECT_OVER_ELECTORS], 1);
    tally__frame__free_unpacked(f, NULL);
    wait_durable(fd, 6, &durable);
    close(fd);

    assert_int_equal(votes_of(101), 60 + 1 + 1);
    assert_int_equal(votes_of(102), 0);
    assert_int_equal(votes_of(103), 0);
    /* Reporting progress and decided, in SQL and in the API alike: circuit 1 holds 49
     * possible votes at T2 against a lead of 62, circuit 2 10 at T4 against 30, circuit 3
     * none. */
    assert_int_equal(sql_u64("SELECT remaining FROM circuit_progress WHERE circuit_id = 1"), 49);
    assert_int_equal(sql_u64("SELECT remaining FROM circuit_progress WHERE circuit_id = 2"), 10);
    assert_int_equal(sql_u64("SELECT tables_reported FROM circuit_progress WHERE circuit_id = 2"),
                     1);
    assert_int_equal(sql_u64("SELECT count(*) FROM circuit_decided WHERE decided"), 3);
    char body[65536];
    for (int c = 1; c <= 3; c++) {
        char path[64];
        snprintf(path, sizeof path, "/v1/circuits/%d", c);
        assert_int_equal(ts_http_get(d.http_port, path, body, sizeof body, ts_scale(5000)), 200);
        if (!strstr(body, "\"decided\":true"))
            fail_msg("%s is not decided: %.400s", path, body);
    }
    assert_int_equal(sql_u64("SELECT sheets_rejected FROM collectors WHERE id = 'c0'"), 10);
    assert_int_equal(sql_u64("SELECT sheets_accepted FROM collectors WHERE id = 'c0'"), 4);
    assert_int_equal(sql_u64("SELECT sheets_duplicate FROM collectors WHERE id = 'c0'"), 2);
    /* Every reason, counted and recovered after the restart, in the API. */
    char summary[65536];
    assert_int_equal(
        ts_http_get(d.http_port, "/v1/summary", summary, sizeof summary, ts_scale(5000)), 200);
    const char *want_votes = "\"rejected_tables\":{\"unknown_table\":1,"
                             "\"outside_table_circuit\":1,\"over_electors\":2,"
                             "\"table_mode_conflict\":1}";
    const char *want_sheets = "\"rejected_by\":{\"unknown_project\":1,\"not_allowed\":1,"
                              "\"unknown_table\":1,\"outside_table_circuit\":1,"
                              "\"over_electors\":1,\"table_mode_conflict\":2,"
                              "\"sheet_conflict\":1,\"superseded\":1,\"bad_sheet\":2}";
    if (!strstr(summary, want_votes) || !strstr(summary, want_sheets))
        fail_msg("/v1/summary lacks %s or %s: %.1500s", want_votes, want_sheets, summary);
    assert_verify();
    assert_int_equal(ts_tallyd_stop(&d, ts_scale(20000)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sheets_and_tables),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
