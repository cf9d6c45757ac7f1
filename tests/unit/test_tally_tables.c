/* tally: voting tables, per-ballot votes naming a table, tally sheets (every reason,
 * replacement, duplicates), per-batch counts, table deltas, recovery of tables and sheets,
 * applied against durable views, and a randomized run against a reference model. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tally/tally.h"

static const uint8_t key[TALLY_HASH_KEY_BYTES] = {
    0x5b, 0x1e, 0x93, 0x0c, 0x7a, 0xd2, 0x44, 0xe8, 0x21, 0x6f, 0xb9, 0x03, 0xc5, 0x8d, 0x17, 0x7e,
    0xa0, 0x39, 0x62, 0xf4, 0x0b, 0xde, 0x85, 0x4c, 0x11, 0xe7, 0x58, 0x9a, 0x2d, 0xc3, 0x76, 0xbf,
};

/* Projects 10, 11, 12 are circuit 1; 20, 21 circuit 2. */
static const struct tally_project registry[] = {{10, 1}, {11, 1}, {12, 1}, {20, 2}, {21, 2}};
#define N_REG (sizeof(registry) / sizeof(registry[0]))
/* Dense table indices follow this order: T1 0, T2 1, U1 2, "a.b-c_9" 3. */
static const struct tally_table_def tables[] = {
    {"T2", 1, 100}, {"T1", 1, 5}, {"U1", 2, 3}, {"a.b-c_9", 2, 10}};
#define N_TABLES (sizeof(tables) / sizeof(tables[0]))

static struct tally *make(void)
{
    struct tally *t = tally_new(registry, N_REG, 100, key);
    assert_non_null(t);
    assert_int_equal(tally_tables_set(t, tables, N_TABLES), 0);
    assert_int_equal(tally_collector_add(t, "north", 0, NULL), 0);
    assert_int_equal(tally_collector_add(t, "south", 0, NULL), 1);
    return t;
}

static uint64_t votes_of(const struct tally *t, uint32_t id)
{
    int32_t i = tally_project_index(t, id);
    assert_true(i >= 0);
    return tally_votes_at(t, (size_t)i);
}

static int32_t tab(const struct tally *t, const char *id)
{
    return tally_table_find(t, id);
}

static struct tally_table_view view(const struct tally *t, const char *id, bool durable)
{
    struct tally_table_view v;
    int32_t i = tab(t, id);
    assert_true(i >= 0);
    tally_table_get(t, (size_t)i, durable, &v);
    return v;
}

/* Any function of the content will do: the tally only compares digests. */
static void fake_digest(uint64_t salt, const uint64_t *b, const uint32_t *p, size_t n,
                        uint8_t out[TALLY_DIGEST_BYTES])
{
    uint64_t h = 1469598103934665603ULL ^ salt;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (b ? b[i] : 0) ^ ((uint64_t)p[i] << 32)) * 1099511628211ULL;
    for (size_t i = 0; i < TALLY_DIGEST_BYTES; i++)
        out[i] = (uint8_t)(h >> (8 * (i % 8))) ^ (uint8_t)i;
}

/* n votes, vote i naming table names[i] (NULL: none; names NULL: no vote names one). The
 * dictionary has one entry per vote, as a batch may repeat nothing but may well. */
static enum tally_apply_status vote(struct tally *t, uint32_t c, uint64_t seq, const uint64_t *b,
                                    const uint32_t *p, const char *const *names, size_t n,
                                    struct tally_batch_result *r)
{
    int32_t dict[64];
    uint32_t vt[64];
    assert_true(n <= 64);
    for (size_t i = 0; i < n; i++) {
        dict[i] = names && names[i] ? tab(t, names[i]) : -1;
        vt[i] = names && names[i] ? (uint32_t)i + 1 : 0;
    }
    uint8_t d[TALLY_DIGEST_BYTES];
    fake_digest(seq, b, p, n, d);
    uint64_t expected = 0;
    const uint8_t *stored = NULL;
    return tally_apply_batch_tables(t, c, seq, d, b, p, n, dict, n, names ? vt : NULL, r, &expected,
                                    &stored);
}

/* A sheet and its canonical digest (rows with votes > 0, sorted, as the wire's). */
struct sheet {
    struct tally_sheet_in in;
    uint8_t digest[TALLY_DIGEST_BYTES];
};

static void sheet_make(struct sheet *s, const struct tally *t, const char *table, uint32_t version,
                       const uint32_t *projects, const uint32_t *votes, size_t n, uint32_t blank,
                       uint32_t null_ballots)
{
    memset(s, 0, sizeof(*s));
    s->in.table = table ? tab(t, table) : -1;
    s->in.version = version;
    s->in.projects = projects;
    s->in.votes = votes;
    s->in.n_projects = s->in.n_votes = n;
    s->in.blank = blank;
    s->in.null_ballots = null_ballots;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const char *q = table ? table : ""; *q; q++)
        h = (h ^ (uint8_t)*q) * 0x100000001b3ULL;
    h = (h ^ version) * 0x100000001b3ULL;
    h = (h ^ blank) * 0x100000001b3ULL;
    h = (h ^ ((uint64_t)null_ballots << 20)) * 0x100000001b3ULL;
    /* Order-free: a sum of per-row hashes over rows with votes. */
    uint64_t rows = 0;
    for (size_t i = 0; i < n; i++)
        if (votes[i])
            rows += (((uint64_t)projects[i] << 32 | votes[i]) * 0x9e3779b97f4a7c15ULL) ^ 0x5555;
    h ^= rows;
    for (size_t i = 0; i < TALLY_DIGEST_BYTES; i++)
        s->digest[i] = (uint8_t)(h >> (8 * (i % 8))) ^ (uint8_t)(i * 7);
    s->in.digest = s->digest;
}

/* A sheet batch of n sheets; its batch digest derives from the sheets' digests. */
static enum tally_apply_status sheets(struct tally *t, uint32_t c, uint64_t seq,
                                      const struct sheet *s, size_t n, struct tally_sheet_out *out,
                                      struct tally_batch_result *r)
{
    struct tally_sheet_in in[16];
    uint32_t p[16];
    assert_true(n <= 16);
    for (size_t i = 0; i < n; i++) {
        in[i] = s[i].in;
        memcpy(&p[i], s[i].digest, sizeof(p[i]));
    }
    uint8_t d[TALLY_DIGEST_BYTES];
    fake_digest(seq ^ 0xabcdef, NULL, p, n, d);
    uint64_t expected = 0;
    const uint8_t *stored = NULL;
    return tally_apply_sheets(t, c, seq, d, in, n, out, r, &expected, &stored);
}

/* One sheet alone in batch seq: returns its outcome. */
static struct tally_sheet_out sheet1(struct tally *t, uint32_t c, uint64_t seq,
                                     const struct sheet *s)
{
    struct tally_sheet_out out;
    struct tally_batch_result r;
    assert_int_equal(sheets(t, c, seq, s, 1, &out, &r), TALLY_APPLIED);
    return out;
}

static void assert_rejected(struct tally_sheet_out o, unsigned reason)
{
    assert_int_equal(o.status, TALLY_SHEET_REJECTED);
    assert_string_equal(tally_reason_name(o.reason), tally_reason_name(reason));
}

static void test_reason_names(void **state)
{
    (void)state;
    assert_string_equal(tally_reason_name(TALLY_REASON_UNKNOWN_PROJECT), "unknown_project");
    assert_string_equal(tally_reason_name(TALLY_REASON_NOT_ALLOWED), "not_allowed");
    assert_string_equal(tally_reason_name(TALLY_REASON_UNKNOWN_TABLE), "unknown_table");
    assert_string_equal(tally_reason_name(4), "outside_table_circuit");
    assert_string_equal(tally_reason_name(5), "over_electors");
    assert_string_equal(tally_reason_name(6), "table_mode_conflict");
    assert_string_equal(tally_reason_name(7), "sheet_conflict");
    assert_string_equal(tally_reason_name(8), "superseded");
    assert_string_equal(tally_reason_name(TALLY_REASON_BAD_SHEET), "bad_sheet");
    assert_string_equal(tally_reason_name(0), "?");
    assert_string_equal(tally_reason_name(TALLY_REASONS), "?");
}

static void test_tables_set_and_find(void **state)
{
    (void)state;
    struct tally *t = tally_new(registry, N_REG, 10, key);
    assert_int_equal(tally_table_find(t, "T1"), -1); /* none yet */
    const struct tally_table_def bad[][1] = {
        {{"", 1, 1}},
        {{"a b", 1, 1}},
        {{"é", 1, 1}},
        {{NULL, 1, 1}},
        {{"0123456789012345678901234567890123456789012345678901234567890123", 1, 1}}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(tally_tables_set(t, bad[i], 1), -EINVAL);
    const struct tally_table_def dup[] = {{"x", 1, 1}, {"y", 1, 1}, {"x", 2, 2}};
    assert_int_equal(tally_tables_set(t, dup, 3), -EINVAL);
    const struct tally_table_def ok63[] = {
        {"012345678901234567890123456789012345678901234567890123456789012", 1, 1}};
    assert_int_equal(tally_tables_set(t, ok63, 1), 0);
    assert_int_equal(tally_tables_set(t, tables, N_TABLES), -EINVAL); /* once */
    assert_int_equal(tally_table_count(t), 1);
    tally_free(t);

    t = make();
    assert_int_equal(tally_table_count(t), N_TABLES);
    for (size_t i = 0; i < N_TABLES; i++) {
        assert_int_equal(tab(t, tables[i].id), (int32_t)i);
        struct tally_table_view v;
        tally_table_get(t, i, false, &v);
        assert_string_equal(v.id, tables[i].id);
        assert_int_equal(v.circuit_id, tables[i].circuit_id);
        assert_int_equal(v.electors, tables[i].electors);
        assert_int_equal(v.mode, TALLY_TABLE_NONE);
        assert_int_equal(v.ballots, 0);
    }
    assert_int_equal(tab(t, "T3"), -1);
    assert_int_equal(tab(t, "t1"), -1);
    tally_free(t);
}

/* ---- per-ballot votes -------------------------------------------------------------- */

static void test_vote_unknown_table(void **state)
{
    (void)state;
    struct tally *t = make();
    const uint64_t b[] = {1, 2, 3};
    const uint32_t p[] = {10, 10, 11};
    const char *n[] = {"nope", "T1", NULL};
    struct tally_batch_result r;
    assert_int_equal(vote(t, 0, 1, b, p, n, 3, &r), TALLY_APPLIED);
    assert_int_equal(r.accepted, 2);
    assert_int_equal(r.reasons[TALLY_REASON_UNKNOWN_TABLE], 1);
    assert_int_equal(r.rejected_unknown, 0);
    assert_int_equal(votes_of(t, 10), 1);
    assert_int_equal(view(t, "T1", false).ballots, 1);
    assert_int_equal(view(t, "T1", false).mode, TALLY_TABLE_BALLOTS);
    assert_int_equal(tally_applied_totals(t)->rejected, 1);
    /* Ballot 1 was not used. */
    const char *n2[] = {"T1"};
    assert_int_equal(vote(t, 0, 2, b, p, n2, 1, &r), TALLY_APPLIED);
    assert_int_equal(r.accepted, 1);
    uint64_t by[TALLY_REASONS];
    tally_reason_counts(t, false, by);
    assert_int_equal(by[TALLY_REASON_UNKNOWN_TABLE], 1);
    assert_int_equal(by[0], 0);
    tally_free(t);
}

static void test_vote_outside_table_circuit(void **state)
{
    (void)state;
    struct tally *t = make();
    const uint64_t b[] = {1, 2};
    const uint32_t p[] = {20, 20};
    const char *n[] = {"T1", "U1"};
    struct tally_batch_result r;
    assert_int_equal(vote(t, 0, 1, b, p, n, 2, &r), TALLY_APPLIED);
    assert_int_equal(r.accepted, 1);
    assert_int_equal(r.reasons[TALLY_REASON_OUTSIDE_TABLE_CIRCUIT], 1);
    assert_int_equal(view(t, "T1", false).ballots, 0);
    assert_int_equal(view(t, "T1", false).mode, TALLY_TABLE_NONE);
    assert_int_equal(view(t, "U1", false).ballots, 1);
    const char *n2[] = {"a.b-c_9"};
    assert_int_equal(vote(t, 1, 1, b, p, n2, 1, &r), TALLY_APPLIED); /* ballot 1 unused */
    assert_int_equal(r.accepted, 1);
    tally_free(t);
}

static void test_vote_table_mode_conflict(void **state)
{
    (void)state;
    struct tally *t = make();
    const uint32_t sp[] = {10};
    const uint32_t sv[] = {2};
    struct sheet s;
    sheet_make(&s, t, "T2", 1, sp, sv, 1, 0, 0);
    assert_int_equal(sheet1(t, 0, 1, &s).status, TALLY_SHEET_ACCEPTED);
    const uint64_t b[] = {1, 2};
    const uint32_t p[] = {10, 10};
    const char *n[] = {"T2", NULL};
    struct tally_batch_result r;
    assert_int_equal(vote(t, 0, 2, b, p, n, 2, &r), TALLY_APPLIED);
    assert_int_equal(r.accepted, 1);
    assert_int_equal(r.reasons[TALLY_REASON_TABLE_MODE_CONFLICT], 1);
    assert_int_equal(votes_of(t, 10), 3); /* 2 from the sheet, 1 vote without a table */
    assert_int_equal(view(t, "T2", false).ballots, 2);
    assert_int_equal(view(t, "T2", false).mode, TALLY_TABLE_SHEET);
    const char *n2[] = {"T1"};
    assert_int_equal(vote(t, 0, 3, b, p, n2, 1, &r), TALLY_APPLIED);
    assert_int_equal(r.accepted, 1); /* ballot 1 unused */
    tally_free(t);
}

/* T1 has 5 electors: the 5th ballot is accepted, the 6th rejected (and unused), in one
 * batch and across batches; a duplicate does not use up an elector. */
static void test_vote_over_electors(void **state)
{
    (void)state;
    struct tally *t = make();
    const uint64_t b[] = {1, 2, 3, 1, 4, 5, 6, 7};
    const uint32_t p[] = {10, 11, 12, 10, 10, 10, 11, 11};
    const char *n[] = {"T1", "T1", "T1", "T1", "T1", "T1", "T1", "T2"};
    struct tally_batch_result r;
    assert_int_equal(vote(t, 0, 1, b, p, n, 8, &r), TALLY_APPLIED);
    assert_int_equal(r.accepted, 6); /* 1 2 3 4 5 in T1, 7 in T2 */
    assert_int_equal(r.duplicate, 1);
    assert_int_equal(r.reasons[TALLY_REASON_OVER_ELECTORS], 1);
    assert_int_equal(view(t, "T1", false).ballots, 5);
    assert_int_equal(view(t, "T2", false).ballots, 1);
    const uint64_t b2[] = {6, 8};
    const uint32_t p2[] = {11, 12};
    const char *n2[] = {"T1", "T2"};
    assert_int_equal(vote(t, 1, 1, b2, p2, n2, 2, &r), TALLY_APPLIED);
    assert_int_equal(r.accepted, 1);
    assert_int_equal(r.reasons[TALLY_REASON_OVER_ELECTORS], 1);
    const char *n3[] = {"T2"};
    assert_int_equal(vote(t, 1, 2, b2, p2, n3, 1, &r), TALLY_APPLIED);
    assert_int_equal(r.accepted, 1); /* ballot 6 was never used */
    assert_int_equal(votes_of(t, 11), 3);
    assert_int_equal(tally_applied_totals(t)->rejected, 2);
    tally_free(t);
}

/* unknown project, then not_allowed, come before the table checks; the table checks come
 * in their order; dedup comes last. */
static void test_vote_check_order(void **state)
{
    (void)state;
    struct tally *t = make();
    const uint32_t c1[] = {1};
    assert_int_equal(tally_collector_restrict(t, 0, c1, 1), 0);
    const uint32_t sp[] = {20};
    const uint32_t sv[] = {1};
    struct sheet s;
    sheet_make(&s, t, "U1", 1, sp, sv, 1, 0, 0);
    assert_int_equal(sheet1(t, 1, 1, &s).status, TALLY_SHEET_ACCEPTED);
    /* 99 unknown + unknown table; 20 not allowed + table in sheet mode; 11 unknown table;
     * 11 outside U1 (which is also in sheet mode) */
    const uint64_t b[] = {1, 2, 3, 4, 5};
    const uint32_t p[] = {99, 20, 11, 11, 11};
    const char *n[] = {"zz", "U1", "zz", "U1", "T1"};
    struct tally_batch_result r;
    assert_int_equal(vote(t, 0, 1, b, p, n, 5, &r), TALLY_APPLIED);
    assert_int_equal(r.accepted, 1);
    assert_int_equal(r.rejected_unknown, 1);
    assert_int_equal(r.rejected_not_allowed, 1);
    assert_int_equal(r.reasons[TALLY_REASON_UNKNOWN_PROJECT], 1);
    assert_int_equal(r.reasons[TALLY_REASON_NOT_ALLOWED], 1);
    assert_int_equal(r.reasons[TALLY_REASON_UNKNOWN_TABLE], 1);
    assert_int_equal(r.reasons[TALLY_REASON_OUTSIDE_TABLE_CIRCUIT], 1);
    assert_int_equal(r.reasons[TALLY_REASON_TABLE_MODE_CONFLICT], 0);
    const struct tally_totals *tot = tally_applied_totals(t);
    assert_int_equal(tot->rejected, 4);
    assert_int_equal(tot->rejected_not_allowed, 1);
    /* The delta batch carries the same. */
    const struct tally_delta *d = tally_checkpoint_seal(t);
    assert_int_equal(d->batches[1].kind, 0);
    assert_int_equal(d->batches[1].rejected_unknown, 1);
    assert_int_equal(d->batches[1].reasons[TALLY_REASON_UNKNOWN_TABLE], 1);
    assert_int_equal(d->batches[1].reasons[TALLY_REASON_OUTSIDE_TABLE_CIRCUIT], 1);
    tally_checkpoint_commit(t);
    tally_free(t);
}

/* ---- sheets: each reason ------------------------------------------------------------ */

static void test_sheet_unknown_table_and_not_allowed(void **state)
{
    (void)state;
    struct tally *t = make();
    const uint32_t c2[] = {2};
    assert_int_equal(tally_collector_restrict(t, 0, c2, 1), 0);
    const uint32_t sp[] = {10, 20};
    const uint32_t sv[] = {1, 1};
    struct sheet s[3];
    sheet_make(&s[0], t, NULL, 1, sp, sv, 1, 0, 0);     /* unknown table */
    sheet_make(&s[1], t, "T1", 1, sp, sv, 1, 0, 0);     /* circuit 1: not allowed */
    sheet_make(&s[2], t, "U1", 1, sp + 1, sv, 1, 1, 0); /* circuit 2: fine */
    struct tally_sheet_out out[3];
    struct tally_batch_result r;
    assert_int_equal(sheets(t, 0, 1, s, 3, out, &r), TALLY_APPLIED);
    assert_rejected(out[0], TALLY_REASON_UNKNOWN_TABLE);
    assert_rejected(out[1], TALLY_REASON_NOT_ALLOWED);
    assert_int_equal(out[2].status, TALLY_SHEET_ACCEPTED);
    assert_int_equal(out[2].replaced_version, 0);
    assert_int_equal(r.reasons[TALLY_REASON_UNKNOWN_TABLE], 1);
    assert_int_equal(r.reasons[TALLY_REASON_NOT_ALLOWED], 1);
    assert_int_equal(r.sheets_accepted, 1);
    assert_int_equal(r.accepted + r.duplicate + r.rejected_unknown + r.rejected_not_allowed, 0);
    assert_int_equal(votes_of(t, 10), 0);
    assert_int_equal(votes_of(t, 20), 1);
    assert_int_equal(view(t, "T1", false).mode, TALLY_TABLE_NONE);
    /* An empty restriction allows no table; lifting it allows every one. */
    assert_int_equal(tally_collector_restrict(t, 0, c2, 0), 0);
    sheet_make(&s[0], t, "U1", 2, sp + 1, sv, 1, 0, 0);
    assert_rejected(sheet1(t, 0, 2, &s[0]), TALLY_REASON_NOT_ALLOWED);
    assert_int_equal(tally_collector_restrict(t, 0, NULL, 0), 0);
    assert_int_equal(sheet1(t, 0, 3, &s[1]).status, TALLY_SHEET_ACCEPTED);
    const struct tally_totals *tot = tally_applied_totals(t);
    assert_int_equal(tot->batches, 3);
    assert_int_equal(tot->votes, 0);
    assert_int_equal(tot->rejected, 0);
    assert_int_equal(tot->sheets, 5);
    assert_int_equal(tot->sheets_accepted, 2);
    assert_int_equal(tot->sheets_rejected, 3);
    assert_int_equal(tally_collector_at(t, 0)->pending.sheets_rejected, 3);
    uint64_t by[TALLY_REASONS];
    tally_reason_counts(t, true, by);
    assert_int_equal(by[TALLY_REASON_NOT_ALLOWED], 2);
    tally_reason_counts(t, false, by);
    assert_int_equal(by[TALLY_REASON_NOT_ALLOWED], 0);
    tally_free(t);
}

static void test_sheet_bad_sheet(void **state)
{
    (void)state;
    struct tally *t = make();
    const uint32_t sp[] = {10, 11, 10};
    const uint32_t sv[] = {1, 1, 0};
    const uint32_t big[] = {0x80000000u};
    struct sheet s[5];
    sheet_make(&s[0], t, "T2", 0, sp, sv, 2, 0, 0); /* version 0 */
    sheet_make(&s[1], t, "T2", 1, sp, sv, 3, 0, 0); /* 10 on two rows (one with 0 votes) */
    sheet_make(&s[2], t, "T2", 1, sp, sv, 2, 0, 0);
    s[2].in.n_votes = 1; /* lengths differ */
    sheet_make(&s[3], t, "T2", 1, sp, big, 1, 0, 0);
    sheet_make(&s[4], t, "T2", 1, sp, sv, 1, 0x80000000u, 0);
    struct tally_sheet_out out[5];
    struct tally_batch_result r;
    assert_int_equal(sheets(t, 0, 1, s, 5, out, &r), TALLY_APPLIED);
    for (size_t i = 0; i < 5; i++)
        assert_rejected(out[i], TALLY_REASON_BAD_SHEET);
    assert_int_equal(r.reasons[TALLY_REASON_BAD_SHEET], 5);
    assert_int_equal(votes_of(t, 10), 0);
    assert_int_equal(view(t, "T2", false).version, 0);
    tally_free(t);
}

static void test_sheet_unknown_project_and_outside_circuit(void **state)
{
    (void)state;
    struct tally *t = make();
    const uint32_t unk[] = {10, 99};
    const uint32_t out_c[] = {10, 20};
    const uint32_t both[] = {20, 99};
    const uint32_t sv[] = {1, 0}; /* a row with 0 votes is still checked */
    struct sheet s[3];
    sheet_make(&s[0], t, "T2", 1, unk, sv, 2, 0, 0);
    sheet_make(&s[1], t, "T2", 1, out_c, sv, 2, 0, 0);
    sheet_make(&s[2], t, "T2", 1, both, sv, 2, 0, 0);
    struct tally_sheet_out out[3];
    struct tally_batch_result r;
    assert_int_equal(sheets(t, 0, 1, s, 3, out, &r), TALLY_APPLIED);
    assert_rejected(out[0], TALLY_REASON_UNKNOWN_PROJECT);
    assert_rejected(out[1], TALLY_REASON_OUTSIDE_TABLE_CIRCUIT);
    assert_rejected(out[2], TALLY_REASON_UNKNOWN_PROJECT);
    assert_int_equal(votes_of(t, 10), 0);
    tally_free(t);
}

/* T1 has 5 electors: blank + null + rows == 5 is accepted, 6 is not. */
static void test_sheet_over_electors(void **state)
{
    (void)state;
    struct tally *t = make();
    const uint32_t sp[] = {10, 11};
    const uint32_t sv[] = {2, 1};
    struct sheet s;
    sheet_make(&s, t, "T1", 1, sp, sv, 2, 1, 2);
    assert_rejected(sheet1(t, 0, 1, &s), TALLY_REASON_OVER_ELECTORS);
    assert_int_equal(view(t, "T1", false).mode, TALLY_TABLE_NONE);
    sheet_make(&s, t, "T1", 1, sp, sv, 2, 1, 1);
    assert_int_equal(sheet1(t, 0, 2, &s).status, TALLY_SHEET_ACCEPTED);
    struct tally_table_view v = view(t, "T1", false);
    assert_int_equal(v.ballots, 5);
    assert_int_equal(v.blank, 1);
    assert_int_equal(v.null_ballots, 1);
    assert_int_equal(v.version, 1);
    tally_free(t);
}

static void test_sheet_table_mode_conflict(void **state)
{
    (void)state;
    struct tally *t = make();
    const uint64_t b[] = {1};
    const uint32_t p[] = {10};
    const char *n[] = {"T2"};
    struct tally_batch_result r;
    assert_int_equal(vote(t, 0, 1, b, p, n, 1, &r), TALLY_APPLIED);
    const uint32_t sv[] = {4};
    struct sheet s;
    sheet_make(&s, t, "T2", 1, p, sv, 1, 0, 0);
    assert_rejected(sheet1(t, 0, 2, &s), TALLY_REASON_TABLE_MODE_CONFLICT);
    assert_int_equal(votes_of(t, 10), 1);
    struct tally_table_view v = view(t, "T2", false);
    assert_int_equal(v.mode, TALLY_TABLE_BALLOTS);
    assert_int_equal(v.ballots, 1);
    assert_int_equal(v.version, 0);
    tally_free(t);
}

/* Same version, same content (rows in another order, a zero row added): a duplicate,
 * counted once; other content: sheet_conflict; a lower version: superseded. */
static void test_sheet_duplicate_conflict_superseded(void **state)
{
    (void)state;
    struct tally *t = make();
    const uint32_t p1[] = {10, 11};
    const uint32_t v1[] = {3, 4};
    const uint32_t p1b[] = {12, 11, 10};
    const uint32_t v1b[] = {0, 4, 3};
    const uint32_t v1c[] = {3, 5};
    struct sheet s, dup, conflict, v2, old;
    sheet_make(&s, t, "T2", 2, p1, v1, 2, 1, 0);
    sheet_make(&dup, t, "T2", 2, p1b, v1b, 3, 1, 0);
    sheet_make(&conflict, t, "T2", 2, p1, v1c, 2, 1, 0);
    sheet_make(&v2, t, "T2", 3, p1, v1c, 2, 1, 0);
    sheet_make(&old, t, "T2", 1, p1, v1, 2, 1, 0);
    assert_memory_equal(s.digest, dup.digest, TALLY_DIGEST_BYTES);
    assert_int_equal(sheet1(t, 0, 1, &s).status, TALLY_SHEET_ACCEPTED);
    struct tally_sheet_out out[3];
    struct tally_batch_result r;
    struct sheet batch[3] = {dup, conflict, old};
    assert_int_equal(sheets(t, 1, 1, batch, 3, out, &r), TALLY_APPLIED);
    assert_int_equal(out[0].status, TALLY_SHEET_DUPLICATE);
    assert_int_equal(out[0].reason, 0);
    assert_rejected(out[1], TALLY_REASON_SHEET_CONFLICT);
    assert_rejected(out[2], TALLY_REASON_SUPERSEDED);
    assert_int_equal(r.sheets_duplicate, 1);
    assert_int_equal(r.reasons[TALLY_REASON_SHEET_CONFLICT], 1);
    assert_int_equal(r.reasons[TALLY_REASON_SUPERSEDED], 1);
    assert_int_equal(votes_of(t, 10), 3);
    assert_int_equal(votes_of(t, 11), 4);
    /* v3 replaces; afterwards v2 is superseded too. */
    assert_int_equal(sheet1(t, 0, 2, &v2).replaced_version, 2);
    assert_rejected(sheet1(t, 0, 3, &s), TALLY_REASON_SUPERSEDED);
    assert_int_equal(votes_of(t, 11), 5);
    const struct tally_totals *tot = tally_applied_totals(t);
    assert_int_equal(tot->sheets, 6);
    assert_int_equal(tot->sheets_accepted, 2);
    assert_int_equal(tot->sheets_duplicate, 1);
    assert_int_equal(tot->sheets_rejected, 3);
    const struct tally_delta *d = tally_checkpoint_seal(t);
    assert_int_equal(d->n_sheets, 2); /* only accepted ones */
    assert_int_equal(d->batches[1].kind, 1);
    assert_int_equal(d->batches[1].sheets, 3);
    assert_int_equal(d->batches[1].sheets_duplicate, 1);
    assert_int_equal(d->batches[1].n_counts, 0);
    tally_checkpoint_commit(t);
    tally_free(t);
}

/* ---- replacement, batches of sheets, deltas ---------------------------------------- */

static int64_t out_delta_of(const struct tally_delta *d, uint32_t id)
{
    for (size_t i = 0; i < d->n_touched; i++)
        if (d->out_ids[i] == id)
            return d->out_deltas[i];
    return 0;
}

static bool listed(const struct tally_delta *d, uint32_t id)
{
    for (size_t i = 0; i < d->n_touched; i++)
        if (d->out_ids[i] == id)
            return true;
    return false;
}

/* v2 replaces v1: the counts are v2's, the correction holds v2 - v1 per project (negative
 * ones included, ascending, no zeros), blank, null and ballots. */
static void test_sheet_replacement(void **state)
{
    (void)state;
    struct tally *t = make();
    const uint32_t p1[] = {12, 10, 11};
    const uint32_t v1[] = {5, 7, 3};
    const uint32_t p2[] = {11, 10};
    const uint32_t v2[] = {9, 7};
    struct sheet s1, s2;
    sheet_make(&s1, t, "T2", 1, p1, v1, 3, 4, 2);
    sheet_make(&s2, t, "T2", 2, p2, v2, 2, 1, 3);
    assert_int_equal(sheet1(t, 0, 1, &s1).status, TALLY_SHEET_ACCEPTED);
    struct tally_delta *d = tally_checkpoint_seal(t);
    assert_int_equal(d->n_sheets, 1);
    assert_int_equal(d->n_corrections, 0);
    assert_int_equal(d->sheets[0].n_rows, 3);
    const struct tally_count *rows = d->sheet_rows + d->sheets[0].rows_off;
    assert_int_equal(rows[0].id, 10);
    assert_int_equal(rows[1].id, 11);
    assert_int_equal(rows[2].id, 12);
    assert_int_equal(rows[2].n, 5);
    assert_int_equal(d->blank_delta, 4);
    tally_checkpoint_commit(t);

    struct tally_sheet_out o = sheet1(t, 1, 1, &s2);
    assert_int_equal(o.status, TALLY_SHEET_ACCEPTED);
    assert_int_equal(o.replaced_version, 1);
    assert_int_equal(votes_of(t, 10), 7);
    assert_int_equal(votes_of(t, 11), 9);
    assert_int_equal(votes_of(t, 12), 0);
    uint64_t blank, null_b;
    tally_blank_null(t, false, &blank, &null_b);
    assert_int_equal(blank, 1);
    assert_int_equal(null_b, 3);
    tally_blank_null(t, true, &blank, &null_b);
    assert_int_equal(blank, 4);
    assert_int_equal(null_b, 2);
    struct tally_table_view v = view(t, "T2", false);
    assert_int_equal(v.ballots, 20);
    assert_int_equal(v.version, 2);
    assert_int_equal(view(t, "T2", true).ballots, 21);
    assert_int_equal(view(t, "T2", true).version, 1);

    d = tally_checkpoint_seal(t);
    assert_int_equal(d->n_corrections, 1);
    const struct tally_delta_correction *c = &d->corrections[0];
    assert_int_equal(c->kind, 0);
    assert_int_equal(c->table, tab(t, "T2"));
    assert_int_equal(c->collector, 1);
    assert_int_equal(c->seq, 1);
    assert_int_equal(c->from_version, 1);
    assert_int_equal(c->to_version, 2);
    assert_int_equal(c->n_deltas, 2); /* 10 unchanged */
    const struct tally_signed_count *cd = d->correction_deltas + c->deltas_off;
    assert_int_equal(cd[0].id, 11);
    assert_int_equal(cd[0].delta, 6);
    assert_int_equal(cd[1].id, 12);
    assert_int_equal(cd[1].delta, -5);
    assert_int_equal(c->blank_delta, -3);
    assert_int_equal(c->null_delta, 1);
    assert_int_equal(c->ballots_delta, -1);
    assert_int_equal(d->blank_delta, -3);
    assert_int_equal(d->null_delta, 1);
    /* Project deltas: only the non-zero ones, signed. */
    assert_int_equal(d->n_touched, 2);
    assert_int_equal(out_delta_of(d, 11), 6);
    assert_int_equal(out_delta_of(d, 12), -5);
    assert_false(listed(d, 10));
    assert_int_equal(d->n_out_tables, 0); /* sheets are no per-ballot table delta */
    tally_checkpoint_commit(t);
    assert_int_equal(tally_durable_votes(t)[tally_project_index(t, 12)], 0);
    assert_int_equal(tally_durable_votes(t)[tally_project_index(t, 11)], 9);
    tally_blank_null(t, true, &blank, &null_b);
    assert_int_equal(blank, 1);
    assert_int_equal(null_b, 3);
    assert_int_equal(view(t, "T2", true).version, 2);
    assert_int_equal(view(t, "T2", true).ballots, 20);
    tally_free(t);
}

/* Two sheets of one table in one batch: the second sees the first. A project touched
 * and netted to 0 within one checkpoint is not in the sealed delta. */
static void test_sheet_two_in_one_batch(void **state)
{
    (void)state;
    struct tally *t = make();
    const uint32_t pa[] = {10};
    const uint32_t pb[] = {11};
    const uint32_t va[] = {3};
    struct sheet s[4];
    sheet_make(&s[0], t, "T2", 1, pa, va, 1, 0, 0);
    sheet_make(&s[1], t, "T2", 1, pa, va, 1, 0, 0); /* duplicate of the first */
    sheet_make(&s[2], t, "T2", 2, pb, va, 1, 0, 0); /* replaces it */
    sheet_make(&s[3], t, "T2", 1, pb, va, 1, 0, 0); /* superseded by the third */
    struct tally_sheet_out out[4];
    struct tally_batch_result r;
    assert_int_equal(sheets(t, 0, 1, s, 4, out, &r), TALLY_APPLIED);
    assert_int_equal(out[0].status, TALLY_SHEET_ACCEPTED);
    assert_int_equal(out[1].status, TALLY_SHEET_DUPLICATE);
    assert_int_equal(out[2].status, TALLY_SHEET_ACCEPTED);
    assert_int_equal(out[2].replaced_version, 1);
    assert_rejected(out[3], TALLY_REASON_SUPERSEDED);
    assert_int_equal(votes_of(t, 10), 0);
    assert_int_equal(votes_of(t, 11), 3);
    const struct tally_delta *d = tally_checkpoint_seal(t);
    assert_int_equal(d->n_sheets, 2);
    assert_int_equal(d->n_corrections, 1);
    assert_int_equal(d->corrections[0].from_version, 1);
    assert_int_equal(d->corrections[0].to_version, 2);
    assert_int_equal(d->n_touched, 1);
    assert_int_equal(d->out_ids[0], 11);
    assert_int_equal(d->out_deltas[0], 3);
    tally_checkpoint_commit(t);
    /* The committed table holds the last sheet of the delta. */
    assert_int_equal(view(t, "T2", true).version, 2);
    /* After commit a new vote to 10 lists it again, once. */
    const uint64_t b[] = {1, 2};
    const uint32_t p[] = {10, 10};
    assert_int_equal(vote(t, 0, 2, b, p, NULL, 2, &r), TALLY_APPLIED);
    d = tally_checkpoint_seal(t);
    assert_int_equal(d->n_touched, 1);
    assert_int_equal(d->out_deltas[0], 2);
    tally_checkpoint_commit(t);
    tally_free(t);
}

/* A netted-to-0 project touched again by votes is listed once. */
static void test_touched_listed_once(void **state)
{
    (void)state;
    struct tally *t = make();
    const uint32_t pa[] = {10};
    const uint32_t pb[] = {11};
    const uint32_t va[] = {1};
    struct sheet s[2];
    sheet_make(&s[0], t, "T2", 1, pa, va, 1, 0, 0);
    sheet_make(&s[1], t, "T2", 2, pb, va, 1, 0, 0);
    struct tally_sheet_out out[2];
    struct tally_batch_result r;
    assert_int_equal(sheets(t, 0, 1, s, 2, out, &r), TALLY_APPLIED);
    const uint64_t b[] = {1, 2, 3};
    const uint32_t p[] = {10, 10, 12};
    assert_int_equal(vote(t, 0, 2, b, p, NULL, 3, &r), TALLY_APPLIED);
    const struct tally_delta *d = tally_checkpoint_seal(t);
    assert_int_equal(d->n_touched, 3);
    assert_int_equal(out_delta_of(d, 10), 2);
    assert_int_equal(out_delta_of(d, 11), 1);
    assert_int_equal(out_delta_of(d, 12), 1);
    tally_checkpoint_commit(t);
    assert_int_equal(tally_durable_votes(t)[0], 2);
    tally_free(t);
}

static void test_sheet_batch_dedup(void **state)
{
    (void)state;
    struct tally *t = make();
    const uint32_t pa[] = {10};
    const uint32_t va[] = {3};
    const uint32_t vb[] = {4};
    struct sheet s, other;
    sheet_make(&s, t, "T2", 1, pa, va, 1, 0, 0);
    sheet_make(&other, t, "T2", 2, pa, vb, 1, 0, 0);
    struct tally_sheet_out out;
    struct tally_batch_result r;
    uint8_t d1[TALLY_DIGEST_BYTES], d2[TALLY_DIGEST_BYTES];
    memset(d1, 1, sizeof(d1));
    memset(d2, 2, sizeof(d2));
    uint64_t expected = 0;
    const uint8_t *stored = NULL;
    assert_int_equal(tally_apply_sheets(t, 0, 1, d1, &s.in, 1, &out, &r, &expected, &stored),
                     TALLY_APPLIED);
    assert_int_equal(tally_apply_sheets(t, 0, 1, d1, &s.in, 1, &out, &r, &expected, &stored),
                     TALLY_RETRANSMIT);
    assert_int_equal(tally_apply_sheets(t, 0, 1, d2, &other.in, 1, &out, &r, &expected, &stored),
                     TALLY_CONFLICT);
    assert_memory_equal(stored, d1, TALLY_DIGEST_BYTES);
    assert_int_equal(tally_apply_sheets(t, 0, 3, d2, &other.in, 1, &out, &r, &expected, &stored),
                     TALLY_GAP);
    assert_int_equal(expected, 2);
    assert_int_equal(votes_of(t, 10), 3);
    assert_int_equal(view(t, "T2", false).version, 1);
    assert_int_equal(tally_applied_totals(t)->batches, 1);
    assert_int_equal(tally_applied_totals(t)->sheets, 1);
    /* A ballot batch and a sheet batch share the collector's sequence. */
    const uint64_t b[] = {1};
    assert_int_equal(vote(t, 0, 2, b, pa, NULL, 1, &r), TALLY_APPLIED);
    assert_int_equal(tally_apply_sheets(t, 0, 3, d2, &other.in, 1, &out, &r, &expected, &stored),
                     TALLY_APPLIED);
    assert_int_equal(votes_of(t, 10), 5);
    /* A sheet batch is pending like any batch; it weighs in the backlog by its sheets and
     * rows (so a flood of sheets is held back like one of votes): 1 vote, 2 sheets, 2 rows. */
    assert_true(tally_has_pending(t));
    assert_int_equal(tally_backlog_votes(t), 1 + 2 + 2);
    const struct tally_delta *d = tally_checkpoint_seal(t);
    assert_int_equal(d->n_batches, 3);
    assert_int_equal(d->n_marks, 1);
    assert_int_equal(d->marks[0].add.batches, 3);
    assert_int_equal(d->marks[0].add.sheets, 2);
    assert_int_equal(d->marks[0].add.sheets_accepted, 2);
    assert_int_equal(d->marks[0].add.votes, 1);
    tally_checkpoint_commit(t);
    assert_int_equal(tally_collector_at(t, 0)->durable.sheets, 2);
    assert_int_equal(tally_durable_totals(t)->sheets_accepted, 2);
    tally_free(t);

    /* An empty pending delta with only a sheet batch is still sealed. */
    t = make();
    assert_int_equal(tally_apply_sheets(t, 0, 1, d1, &s.in, 1, &out, &r, &expected, &stored),
                     TALLY_APPLIED);
    assert_true(tally_has_pending(t));
    assert_int_equal(tally_backlog_votes(t), 1 + 1); /* one sheet of one row */
    assert_non_null(tally_checkpoint_seal(t));
    tally_checkpoint_commit(t);
    assert_false(tally_has_pending(t));
    tally_free(t);
}

static int cmp_count(const void *a, const void *b)
{
    const struct tally_count *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

/* Per-batch counts are what each batch counted; their sum is the sealed delta; table
 * deltas come sorted by table id (T1 < T2 < U1 < a.b-c_9 in byte order). */
static void test_batch_counts_and_table_deltas(void **state)
{
    (void)state;
    struct tally *t = make();
    struct tally_batch_result r;
    const uint64_t b1[] = {1, 2, 3, 4, 5, 2};
    const uint32_t p1[] = {10, 20, 10, 21, 11, 20};
    const char *n1[] = {"T2", "a.b-c_9", NULL, "U1", "T1", "U1"};
    assert_int_equal(vote(t, 0, 1, b1, p1, n1, 6, &r), TALLY_APPLIED);
    assert_int_equal(r.accepted, 5);
    const uint64_t b2[] = {6, 7, 8, 9};
    const uint32_t p2[] = {10, 10, 99, 20};
    const char *n2[] = {"T2", "T2", "T2", "U1"};
    assert_int_equal(vote(t, 1, 1, b2, p2, n2, 4, &r), TALLY_APPLIED);
    const uint64_t b3[] = {10, 11};
    const uint32_t p3[] = {12, 12};
    assert_int_equal(vote(t, 1, 2, b3, p3, NULL, 2, &r), TALLY_APPLIED);

    const struct tally_delta *d = tally_checkpoint_seal(t);
    assert_int_equal(d->n_batches, 3);
    /* Batch 1: 10 x2, 20, 21, 11; tables T2, a.b-c_9, U1, T1 one each. */
    const struct tally_delta_batch *x = &d->batches[0];
    assert_int_equal(x->n_counts, 4);
    struct tally_count c[8];
    memcpy(c, d->batch_counts + x->counts_off, x->n_counts * sizeof(*c));
    qsort(c, x->n_counts, sizeof(*c), cmp_count);
    assert_int_equal(c[0].id, 10);
    assert_int_equal(c[0].n, 2);
    assert_int_equal(c[1].id, 11);
    assert_int_equal(c[2].id, 20);
    assert_int_equal(c[3].id, 21);
    assert_int_equal(x->n_tables, 4);
    memcpy(c, d->batch_tables + x->tables_off, x->n_tables * sizeof(*c));
    qsort(c, x->n_tables, sizeof(*c), cmp_count);
    for (uint32_t k = 0; k < 4; k++) {
        assert_int_equal(c[k].id, k);
        assert_int_equal(c[k].n, 1);
    }
    x = &d->batches[1];
    assert_int_equal(x->n_counts, 2); /* 10 x2, 20 */
    assert_int_equal(x->n_tables, 2); /* T2 2, U1 1 */
    x = &d->batches[2];
    assert_int_equal(x->n_counts, 1);
    assert_int_equal(d->batch_counts[x->counts_off].n, 2);
    assert_int_equal(x->n_tables, 0);

    /* Sum over batches == sealed project deltas. */
    int64_t sum[100] = {0};
    for (size_t i = 0; i < d->n_batches; i++)
        for (size_t j = 0; j < d->batches[i].n_counts; j++)
            sum[d->batch_counts[d->batches[i].counts_off + j].id] +=
                d->batch_counts[d->batches[i].counts_off + j].n;
    int64_t total = 0;
    for (size_t i = 0; i < d->n_touched; i++) {
        assert_int_equal(sum[d->out_ids[i]], d->out_deltas[i]);
        total += d->out_deltas[i];
    }
    assert_int_equal(total, 10);
    /* The same for tables, and their order by id. */
    int64_t tsum[N_TABLES] = {0};
    for (size_t i = 0; i < d->n_batches; i++)
        for (size_t j = 0; j < d->batches[i].n_tables; j++)
            tsum[d->batch_tables[d->batches[i].tables_off + j].id] +=
                d->batch_tables[d->batches[i].tables_off + j].n;
    assert_int_equal(d->n_out_tables, 4);
    const char *order[] = {"T1", "T2", "U1", "a.b-c_9"};
    const int64_t want[] = {1, 3, 2, 1};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(d->out_tables[i], tab(t, order[i]));
        assert_int_equal(d->out_table_deltas[i], want[i]);
        assert_int_equal(tsum[d->out_tables[i]], want[i]);
    }
    tally_checkpoint_commit(t);
    assert_int_equal(view(t, "T2", true).ballots, 3);
    assert_int_equal(view(t, "T2", true).mode, TALLY_TABLE_BALLOTS);
    tally_free(t);
}

/* Before commit the durable view is the committed one; after, the applied one. */
static void test_durable_vs_applied(void **state)
{
    (void)state;
    struct tally *t = make();
    struct tally_batch_result r;
    const uint64_t b[] = {1, 2};
    const uint32_t p[] = {10, 20};
    const char *n[] = {"T2", "U1"};
    assert_int_equal(vote(t, 0, 1, b, p, n, 2, &r), TALLY_APPLIED);
    const uint32_t sp[] = {21};
    const uint32_t sv[] = {2};
    struct sheet s;
    sheet_make(&s, t, "a.b-c_9", 1, sp, sv, 1, 1, 1);
    assert_int_equal(sheet1(t, 1, 1, &s).status, TALLY_SHEET_ACCEPTED);
    assert_int_equal(view(t, "T2", false).ballots, 1);
    assert_int_equal(view(t, "T2", true).ballots, 0);
    assert_int_equal(view(t, "T2", true).mode, TALLY_TABLE_NONE);
    assert_int_equal(view(t, "a.b-c_9", true).mode, TALLY_TABLE_NONE);
    assert_non_null(tally_checkpoint_seal(t));
    /* Sealed, not committed: still not durable; later batches go to the next delta. */
    const uint64_t b2[] = {3};
    assert_int_equal(vote(t, 0, 2, b2, p, n, 1, &r), TALLY_APPLIED);
    assert_int_equal(view(t, "T2", true).ballots, 0);
    uint64_t blank = 9;
    tally_blank_null(t, true, &blank, NULL);
    assert_int_equal(blank, 0);
    tally_checkpoint_commit(t);
    assert_int_equal(view(t, "T2", true).ballots, 1);
    assert_int_equal(view(t, "T2", false).ballots, 2);
    struct tally_table_view v = view(t, "a.b-c_9", true);
    assert_int_equal(v.mode, TALLY_TABLE_SHEET);
    assert_int_equal(v.version, 1);
    assert_int_equal(v.ballots, 4);
    assert_int_equal(v.blank, 1);
    assert_int_equal(v.null_ballots, 1);
    tally_blank_null(t, true, &blank, NULL);
    assert_int_equal(blank, 1);
    assert_int_equal(tally_durable_votes(t)[tally_project_index(t, 21)], 2);
    assert_non_null(tally_checkpoint_seal(t));
    tally_checkpoint_commit(t);
    assert_int_equal(view(t, "T2", true).ballots, 2);
    tally_free(t);
}

/* Recovery: a restored sheet is the current one (duplicate, superseded, replacement
 * deltas against it); restored per-ballot ballots count toward electors and mode. */
static void test_restore_tables(void **state)
{
    (void)state;
    struct tally *t = tally_new(registry, N_REG, 100, key);
    const uint32_t ids[] = {10, 11, 12};
    const uint64_t votes[] = {4, 0, 6};
    struct sheet s;
    assert_int_equal(tally_restore_sheet(t, 0, 1, NULL, ids, votes, 3, 0, 0), -EINVAL);
    assert_int_equal(tally_tables_set(t, tables, N_TABLES), 0);
    assert_int_equal(tally_collector_add(t, "north", 0, NULL), 0);
    int32_t t2 = tab(t, "T2"), t1 = tab(t, "T1");
    sheet_make(&s, t, "T2", 3, ids, (const uint32_t[]){4, 0, 6}, 3, 2, 1);
    assert_int_equal(tally_restore_sheet(t, (uint32_t)t2, 0, s.digest, ids, votes, 3, 2, 1),
                     -EINVAL);
    assert_int_equal(tally_restore_sheet(t, N_TABLES, 3, s.digest, ids, votes, 3, 2, 1), -EINVAL);
    const uint32_t unsorted[] = {11, 10};
    assert_int_equal(tally_restore_sheet(t, (uint32_t)t2, 3, s.digest, unsorted, votes, 2, 2, 1),
                     -EINVAL);
    assert_int_equal(tally_restore_sheet(t, (uint32_t)t2, 3, s.digest, ids, votes, 3, 2, 1), 0);
    assert_int_equal(tally_restore_table_ballots(t, (uint32_t)t1, 5), 0);
    assert_int_equal(tally_restore_table_ballots(t, N_TABLES, 5), -EINVAL);
    tally_restore_votes(t, 10, 4);
    tally_restore_votes(t, 12, 6 + 2); /* 2 more from per-ballot votes in T1 */
    tally_restore_votes(t, 11, 3);
    for (int dur = 0; dur < 2; dur++) {
        struct tally_table_view v = view(t, "T2", dur);
        assert_int_equal(v.mode, TALLY_TABLE_SHEET);
        assert_int_equal(v.version, 3);
        assert_int_equal(v.ballots, 13);
        v = view(t, "T1", dur);
        assert_int_equal(v.mode, TALLY_TABLE_BALLOTS);
        assert_int_equal(v.ballots, 5);
        uint64_t blank, null_b;
        tally_blank_null(t, dur, &blank, &null_b);
        assert_int_equal(blank, 2);
        assert_int_equal(null_b, 1);
    }
    assert_int_equal(votes_of(t, 10), 4); /* restoring changes no project count */

    assert_int_equal(sheet1(t, 0, 1, &s).status, TALLY_SHEET_DUPLICATE);
    struct sheet old;
    sheet_make(&old, t, "T2", 2, ids, (const uint32_t[]){1, 1, 1}, 3, 0, 0);
    assert_rejected(sheet1(t, 0, 2, &old), TALLY_REASON_SUPERSEDED);
    /* T1 is full (5 of 5) and in ballots mode. */
    struct tally_batch_result r;
    const uint64_t b[] = {1};
    const uint32_t p[] = {10};
    const char *n[] = {"T1"};
    assert_int_equal(vote(t, 0, 3, b, p, n, 1, &r), TALLY_APPLIED);
    assert_int_equal(r.reasons[TALLY_REASON_OVER_ELECTORS], 1);
    struct sheet t1s;
    sheet_make(&t1s, t, "T1", 1, ids, (const uint32_t[]){1}, 1, 0, 0);
    assert_rejected(sheet1(t, 0, 4, &t1s), TALLY_REASON_TABLE_MODE_CONFLICT);

    /* v4 replaces the restored v3: {10: 4 -> 1, 11: 0 -> 2, 12: 6 -> 6}. */
    const uint32_t p4[] = {10, 11, 12};
    const uint32_t v4[] = {1, 2, 6};
    struct sheet s4;
    sheet_make(&s4, t, "T2", 4, p4, v4, 3, 2, 0);
    struct tally_sheet_out o = sheet1(t, 0, 5, &s4);
    assert_int_equal(o.status, TALLY_SHEET_ACCEPTED);
    assert_int_equal(o.replaced_version, 3);
    assert_int_equal(votes_of(t, 10), 1);
    assert_int_equal(votes_of(t, 11), 5);
    assert_int_equal(votes_of(t, 12), 8);
    const struct tally_delta *d = tally_checkpoint_seal(t);
    assert_int_equal(d->n_corrections, 1);
    const struct tally_delta_correction *c = &d->corrections[0];
    assert_int_equal(c->from_version, 3);
    assert_int_equal(c->n_deltas, 2);
    const struct tally_signed_count *cd = d->correction_deltas + c->deltas_off;
    assert_int_equal(cd[0].id, 10);
    assert_int_equal(cd[0].delta, -3);
    assert_int_equal(cd[1].id, 11);
    assert_int_equal(cd[1].delta, 2);
    assert_int_equal(c->blank_delta, 0);
    assert_int_equal(c->null_delta, -1);
    assert_int_equal(c->ballots_delta, -2);
    tally_checkpoint_commit(t);
    assert_int_equal(tally_durable_votes(t)[tally_project_index(t, 10)], 1);
    uint64_t null_b;
    tally_blank_null(t, true, NULL, &null_b);
    assert_int_equal(null_b, 0);
    tally_free(t);
}

/* ---- randomized, against a reference model ------------------------------------------ */

#define RP 7   /* project ids 1..6 known; 9 unknown */
#define RT 6   /* tables A..F; "Z" unknown */
#define RB 400 /* ballots 1..RB */
#define RC 3   /* collectors */
#define ROPS 4000

static const struct tally_project rreg[] = {{1, 1}, {2, 1}, {3, 1}, {4, 2}, {5, 2}, {6, 3}};
static const struct tally_table_def rtab[] = {{"D", 2, 6}, {"A", 1, 4}, {"B", 1, 8},
                                              {"C", 2, 3}, {"E", 3, 5}, {"F", 1, 0}};
static const char *const rnames[] = {"A", "B", "C", "D", "E", "F", "Z"};

struct mtable {
    uint64_t ballots; /* per-ballot */
    uint32_t version, blank, null_ballots;
    uint32_t rows[10]; /* by project id */
    uint8_t digest[TALLY_DIGEST_BYTES];
};

struct model {
    uint64_t counts[10];  /* by project id */
    struct mtable tb[RT]; /* by dense index */
    uint64_t blank, null_ballots;
};

static uint64_t rstate = 0x243f6a8885a308d3ULL;
static uint32_t rnd(uint32_t n)
{
    rstate ^= rstate << 13;
    rstate ^= rstate >> 7;
    rstate ^= rstate << 17;
    return (uint32_t)(rstate % n);
}

static uint32_t rcircuit(uint32_t project)
{
    return project >= 1 && project <= 6 ? rreg[project - 1].circuit_id : 0;
}

static bool rallowed(uint32_t c, uint32_t circuit)
{
    return c == 0 || (c == 1 && circuit == 1) || (c == 2 && (circuit == 2 || circuit == 3));
}

static uint64_t msheet_total(const struct mtable *m)
{
    uint64_t s = (uint64_t)m->blank + m->null_ballots;
    for (size_t p = 0; p < 10; p++)
        s += m->rows[p];
    return s;
}

static void model_check(const struct tally *t, const struct model *m, bool durable)
{
    for (uint32_t id = 1; id <= 6; id++) {
        int32_t p = tally_project_index(t, id);
        uint64_t got = durable ? tally_durable_votes(t)[p] : tally_votes_at(t, (size_t)p);
        assert_int_equal(got, m->counts[id]);
    }
    for (size_t k = 0; k < RT; k++) {
        struct tally_table_view v;
        tally_table_get(t, k, durable, &v);
        const struct mtable *mt = &m->tb[k];
        assert_int_equal(v.version, mt->version);
        if (mt->version) {
            assert_int_equal(v.mode, TALLY_TABLE_SHEET);
            assert_int_equal(v.ballots, msheet_total(mt));
            assert_int_equal(v.blank, mt->blank);
            assert_int_equal(v.null_ballots, mt->null_ballots);
        } else {
            assert_int_equal(v.mode, mt->ballots ? TALLY_TABLE_BALLOTS : TALLY_TABLE_NONE);
            assert_int_equal(v.ballots, mt->ballots);
        }
    }
    uint64_t blank, null_b;
    tally_blank_null(t, durable, &blank, &null_b);
    assert_int_equal(blank, m->blank);
    assert_int_equal(null_b, m->null_ballots);
}

static unsigned model_vote(struct model *m, bool *used, uint32_t c, uint64_t ballot,
                           uint32_t project, int table)
{
    if (rcircuit(project) == 0)
        return TALLY_REASON_UNKNOWN_PROJECT;
    if (!rallowed(c, rcircuit(project)))
        return TALLY_REASON_NOT_ALLOWED;
    struct mtable *mt = NULL;
    if (table != -2) {
        if (table < 0)
            return TALLY_REASON_UNKNOWN_TABLE;
        mt = &m->tb[table];
        if (rtab[table].circuit_id != rcircuit(project))
            return TALLY_REASON_OUTSIDE_TABLE_CIRCUIT;
        if (mt->version)
            return TALLY_REASON_TABLE_MODE_CONFLICT;
        if (mt->ballots >= rtab[table].electors)
            return TALLY_REASON_OVER_ELECTORS;
    }
    if (used[ballot])
        return 100; /* duplicate */
    used[ballot] = true;
    m->counts[project]++;
    if (mt)
        mt->ballots++;
    return 0;
}

/* The rules of docs/consultation.md, plainly: returns a reason, 0 accepted, 100 duplicate. */
static unsigned model_sheet(struct model *m, uint32_t c, const struct sheet *s)
{
    const struct tally_sheet_in *in = &s->in;
    if (in->table < 0)
        return TALLY_REASON_UNKNOWN_TABLE;
    struct mtable *mt = &m->tb[in->table];
    const struct tally_table_def *def = &rtab[in->table];
    if (!rallowed(c, def->circuit_id))
        return TALLY_REASON_NOT_ALLOWED;
    if (in->version == 0 || in->n_projects != in->n_votes)
        return TALLY_REASON_BAD_SHEET;
    for (size_t i = 0; i < in->n_projects; i++)
        for (size_t j = 0; j < i; j++)
            if (in->projects[i] == in->projects[j])
                return TALLY_REASON_BAD_SHEET;
    if (in->version < mt->version)
        return TALLY_REASON_SUPERSEDED;
    if (in->version == mt->version)
        return memcmp(s->digest, mt->digest, TALLY_DIGEST_BYTES) == 0 ? 100
                                                                      : TALLY_REASON_SHEET_CONFLICT;
    uint64_t sum = (uint64_t)in->blank + in->null_ballots;
    for (size_t i = 0; i < in->n_projects; i++)
        if (rcircuit(in->projects[i]) == 0)
            return TALLY_REASON_UNKNOWN_PROJECT;
    for (size_t i = 0; i < in->n_projects; i++) {
        if (rcircuit(in->projects[i]) != def->circuit_id)
            return TALLY_REASON_OUTSIDE_TABLE_CIRCUIT;
        sum += in->votes[i];
    }
    if (sum > def->electors)
        return TALLY_REASON_OVER_ELECTORS;
    if (mt->ballots)
        return TALLY_REASON_TABLE_MODE_CONFLICT;
    for (size_t p = 0; p < 10; p++)
        m->counts[p] -= mt->rows[p];
    m->blank -= mt->blank;
    m->null_ballots -= mt->null_ballots;
    memset(mt->rows, 0, sizeof(mt->rows));
    for (size_t i = 0; i < in->n_projects; i++) {
        mt->rows[in->projects[i]] = in->votes[i];
        m->counts[in->projects[i]] += in->votes[i];
    }
    mt->version = in->version;
    mt->blank = in->blank;
    mt->null_ballots = in->null_ballots;
    m->blank += in->blank;
    m->null_ballots += in->null_ballots;
    memcpy(mt->digest, s->digest, TALLY_DIGEST_BYTES);
    return 0;
}

/* At seal: the delta is exactly applied-now minus the last sealed state, its per-batch
 * counts add up to the ballot batches' share, and table deltas come in id order. */
static void delta_check(const struct tally *t, const struct tally_delta *d, const struct model *now,
                        const struct model *before, const int64_t *ballot_counts)
{
    int64_t from_batches[10] = {0};
    for (size_t i = 0; i < d->n_batches; i++)
        for (size_t j = 0; j < d->batches[i].n_counts; j++) {
            const struct tally_count *x = &d->batch_counts[d->batches[i].counts_off + j];
            assert_true(x->n > 0);
            from_batches[x->id] += x->n;
        }
    for (uint32_t id = 1; id <= 6; id++) {
        assert_int_equal(from_batches[id], ballot_counts[id]);
        int64_t want = (int64_t)now->counts[id] - (int64_t)before->counts[id];
        bool found = false;
        for (size_t i = 0; i < d->n_touched; i++)
            if (d->out_ids[i] == id) {
                assert_false(found);
                found = true;
                assert_int_equal(d->out_deltas[i], want);
            }
        assert_true(found == (want != 0));
    }
    size_t n_want = 0;
    for (size_t k = 0; k < RT; k++)
        n_want += now->tb[k].ballots != before->tb[k].ballots;
    assert_int_equal(d->n_out_tables, n_want);
    for (size_t i = 0; i < d->n_out_tables; i++) {
        uint32_t k = d->out_tables[i];
        assert_int_equal(d->out_table_deltas[i],
                         (int64_t)(now->tb[k].ballots - before->tb[k].ballots));
        if (i > 0) {
            struct tally_table_view a, b;
            tally_table_get(t, d->out_tables[i - 1], false, &a);
            tally_table_get(t, k, false, &b);
            assert_true(strcmp(a.id, b.id) < 0);
        }
    }
    assert_int_equal(d->blank_delta, (int64_t)now->blank - (int64_t)before->blank);
    assert_int_equal(d->null_delta, (int64_t)now->null_ballots - (int64_t)before->null_ballots);
    /* Every correction's deltas are non-zero, ascending. */
    for (size_t i = 0; i < d->n_corrections; i++) {
        const struct tally_delta_correction *c = &d->corrections[i];
        assert_true(c->to_version > c->from_version);
        for (size_t j = 0; j < c->n_deltas; j++) {
            const struct tally_signed_count *x = &d->correction_deltas[c->deltas_off + j];
            assert_true(x->delta != 0);
            if (j > 0)
                assert_true(x->id > x[-1].id);
        }
    }
}

static void test_randomized_against_model(void **state)
{
    (void)state;
    struct tally *t = tally_new(rreg, 6, 16, key);
    assert_int_equal(tally_tables_set(t, rtab, RT), 0);
    for (uint32_t c = 0; c < RC; c++) {
        char id[8];
        snprintf(id, sizeof(id), "c%u", c);
        assert_int_equal(tally_collector_add(t, id, 0, NULL), c);
    }
    const uint32_t c1[] = {1}, c2[] = {3, 2};
    assert_int_equal(tally_collector_restrict(t, 1, c1, 1), 0);
    assert_int_equal(tally_collector_restrict(t, 2, c2, 2), 0);
    int32_t dict[7];
    for (size_t i = 0; i < 7; i++)
        dict[i] = tally_table_find(t, rnames[i]);
    assert_int_equal(dict[6], -1);

    static struct model m, sealed, durable;
    memset(&m, 0, sizeof(m));
    static bool used[RB + 1];
    int64_t ballot_counts[10] = {0}; /* ballot batches' accepted votes in the pending delta */
    uint64_t seq[RC] = {0};
    uint8_t last_digest[RC][TALLY_DIGEST_BYTES];
    bool inflight = false;
    unsigned seen[TALLY_REASONS + 1] = {0}, sheet_seen[TALLY_REASONS + 1] = {0};
    size_t replacements = 0;

    for (int op = 0; op < ROPS; op++) {
        uint32_t what = rnd(100);
        uint32_t c = rnd(RC);
        if (what < 45) {
            size_t n = rnd(13);
            uint64_t b[12];
            uint32_t p[12], vt[12];
            unsigned want[12];
            bool with_tables = rnd(4) != 0; /* else vote_tables NULL */
            for (size_t i = 0; i < n; i++) {
                b[i] = 1 + rnd(RB);
                p[i] = rnd(8) == 0 ? 9 : 1 + rnd(6);
                /* Votes name A, C, D, F (0 electors) and Z, B rarely: sheets get B and E. */
                static const uint32_t pick[] = {1, 3, 4, 6, 7, 1, 3, 4};
                vt[i] = !with_tables || rnd(10) < 3 ? 0 : rnd(60) ? pick[rnd(8)] : 2;
                int table = vt[i] ? dict[vt[i] - 1] : -2;
                want[i] = model_vote(&m, used, c, b[i], p[i], table);
                if (want[i] == 0)
                    ballot_counts[p[i]]++;
            }
            uint8_t dg[TALLY_DIGEST_BYTES];
            fake_digest(++seq[c] ^ ((uint64_t)c << 40), b, p, n, dg);
            memcpy(last_digest[c], dg, sizeof(dg));
            struct tally_batch_result r;
            uint64_t expected;
            const uint8_t *stored;
            assert_int_equal(tally_apply_batch_tables(t, c, seq[c], dg, b, p, n, dict, 7,
                                                      with_tables ? vt : NULL, &r, &expected,
                                                      &stored),
                             TALLY_APPLIED);
            uint32_t acc = 0, dup = 0, by[TALLY_REASONS] = {0};
            for (size_t i = 0; i < n; i++) {
                if (want[i] == 0)
                    acc++;
                else if (want[i] == 100)
                    dup++;
                else
                    by[want[i]]++;
                seen[want[i] == 100 ? TALLY_REASONS : want[i]]++;
            }
            assert_int_equal(r.accepted, acc);
            assert_int_equal(r.duplicate, dup);
            for (unsigned k = 0; k < TALLY_REASONS; k++)
                assert_int_equal(r.reasons[k], by[k]);
        } else if (what < 80) {
            size_t n = 1 + rnd(3);
            struct sheet s[3];
            uint32_t sp[3][4], sv[3][4];
            for (size_t i = 0; i < n; i++) {
                int ti = (int)rnd(7);
                const char *name = rnames[ti];
                int32_t dense = dict[ti];
                size_t rows = rnd(4);
                uint32_t version = rnd(12) == 0 ? 0 : 1 + rnd(3) + (uint32_t)op / 100;
                uint32_t blank = rnd(2), null_b = rnd(2);
                if (dense >= 0 && m.tb[dense].version && rnd(5) == 0) {
                    /* The current sheet again, rows in reverse order. */
                    const struct mtable *mt = &m.tb[dense];
                    rows = 0;
                    for (uint32_t id = 9; id >= 1; id--)
                        if (mt->rows[id] && rows < 4) {
                            sp[i][rows] = id;
                            sv[i][rows++] = mt->rows[id];
                        }
                    version = mt->version;
                    blank = mt->blank;
                    null_b = mt->null_ballots;
                } else {
                    for (size_t j = 0; j < rows; j++) {
                        sp[i][j] = rnd(10) == 0 ? 9 : 1 + rnd(6);
                        if (dense >= 0 && rnd(10) < 7) { /* mostly of the table's circuit */
                            uint32_t circ = rtab[dense].circuit_id;
                            do
                                sp[i][j] = 1 + rnd(6);
                            while (rcircuit(sp[i][j]) != circ);
                        }
                        sv[i][j] = rnd(4);
                    }
                }
                sheet_make(&s[i], t, name, version, sp[i], sv[i], rows, blank, null_b);
                if (rnd(40) == 0)
                    s[i].in.n_votes = rows + 1; /* bad_sheet (never read past rows) */
            }
            unsigned want[3];
            struct tally_sheet_out out[3];
            struct tally_batch_result r;
            uint64_t expected;
            const uint8_t *stored;
            struct tally_sheet_in in[3];
            uint32_t dp[3];
            for (size_t i = 0; i < n; i++) {
                uint32_t had = s[i].in.table >= 0 ? m.tb[s[i].in.table].version : 0;
                want[i] = model_sheet(&m, c, &s[i]);
                if (want[i] == 0 && had)
                    replacements++;
                in[i] = s[i].in;
                memcpy(&dp[i], s[i].digest, sizeof(dp[i]));
                sheet_seen[want[i] == 100 ? TALLY_REASONS : want[i]]++;
            }
            uint8_t dg[TALLY_DIGEST_BYTES];
            fake_digest(++seq[c] ^ ((uint64_t)c << 40) ^ 0x77, NULL, dp, n, dg);
            memcpy(last_digest[c], dg, sizeof(dg));
            assert_int_equal(
                tally_apply_sheets(t, c, seq[c], dg, in, n, out, &r, &expected, &stored),
                TALLY_APPLIED);
            for (size_t i = 0; i < n; i++) {
                if (want[i] == 0) {
                    assert_int_equal(out[i].status, TALLY_SHEET_ACCEPTED);
                } else if (want[i] == 100) {
                    assert_int_equal(out[i].status, TALLY_SHEET_DUPLICATE);
                } else {
                    assert_int_equal(out[i].status, TALLY_SHEET_REJECTED);
                    assert_int_equal(out[i].reason, want[i]);
                }
            }
        } else if (what < 90) {
            if (!inflight) {
                struct tally_delta *d = tally_checkpoint_seal(t);
                if (d) {
                    delta_check(t, d, &m, &sealed, ballot_counts);
                    sealed = m;
                    memset(ballot_counts, 0, sizeof(ballot_counts));
                    inflight = true;
                }
            }
        } else if (what < 98) {
            if (inflight) {
                tally_checkpoint_commit(t);
                durable = sealed;
                inflight = false;
                model_check(t, &durable, true);
            }
        } else if (seq[c] > 0) {
            struct tally_batch_result r;
            uint64_t expected;
            const uint8_t *stored;
            const uint64_t b[] = {1};
            const uint32_t p[] = {1};
            assert_int_equal(
                tally_apply_batch(t, c, seq[c], last_digest[c], b, p, 1, &r, &expected, &stored),
                TALLY_RETRANSMIT);
        }
        model_check(t, &m, false);
        model_check(t, &durable, true);
    }
    /* The run exercised every reason, duplicates of both kinds, and replacements. */
    for (unsigned k = 1; k <= 6; k++)
        assert_true(seen[k] > 0);
    assert_true(seen[TALLY_REASONS] > 0);
    for (unsigned k = 1; k < TALLY_REASONS; k++)
        assert_true(sheet_seen[k] > 0);
    assert_true(sheet_seen[0] > 0 && sheet_seen[TALLY_REASONS] > 0);
    assert_true(replacements > 10);
    tally_free(t);
}

/* A retraction subtracts the batch's counts and table ballots as a correction of kind 1;
 * counts it does not hold are refused whole; a table back at 0 ballots takes a sheet. */
static void test_retract(void **state)
{
    (void)state;
    struct tally *t = make();
    struct tally_batch_result r;
    const uint64_t b[] = {1, 2, 3};
    const uint32_t p[] = {10, 10, 11};
    const char *names[] = {"T2", "T2", NULL};
    assert_int_equal(vote(t, 0, 1, b, p, names, 3, &r), TALLY_APPLIED);
    assert_non_null(tally_checkpoint_seal(t));
    tally_checkpoint_commit(t);

    uint32_t too_many[] = {10, 3};
    uint32_t tabs[] = {(uint32_t)tab(t, "T2"), 2};
    assert_int_equal(tally_retract_batch(t, 0, 1, 7, too_many, 1, tabs, 1), -EINVAL);
    assert_int_equal(tally_retract_batch(t, 0, 2, 7, too_many, 0, NULL, 0), -EINVAL);
    assert_false(tally_has_pending(t));

    uint32_t counts[] = {10, 2, 11, 1};
    assert_int_equal(tally_retract_batch(t, 0, 1, 7, counts, 2, tabs, 1), 0);
    assert_true(tally_has_pending(t));
    assert_int_equal(votes_of(t, 10), 0);
    assert_int_equal(votes_of(t, 11), 0);
    assert_int_equal(view(t, "T2", false).ballots, 0);
    assert_int_equal(view(t, "T2", false).mode, TALLY_TABLE_NONE);
    assert_int_equal(view(t, "T2", true).ballots, 2);

    struct tally_delta *d = tally_checkpoint_seal(t);
    assert_non_null(d);
    assert_int_equal(d->n_batches, 0);
    assert_int_equal(d->n_corrections, 1);
    const struct tally_delta_correction *c = &d->corrections[0];
    assert_int_equal(c->kind, 1);
    assert_int_equal(c->tag, 7);
    assert_int_equal(c->table, TALLY_NO_TABLE);
    assert_int_equal(c->seq, 1);
    assert_int_equal(c->n_deltas, 2);
    assert_int_equal(d->correction_deltas[c->deltas_off].id, 10);
    assert_int_equal(d->correction_deltas[c->deltas_off].delta, -2);
    assert_int_equal(c->ballots_delta, -3);
    assert_int_equal(d->n_touched, 2);
    assert_int_equal(d->n_out_tables, 1);
    assert_int_equal(d->out_table_deltas[0], -2);
    tally_checkpoint_commit(t);
    assert_int_equal(view(t, "T2", true).ballots, 0);
    assert_int_equal(tally_durable_votes(t)[tally_project_index(t, 10)], 0);

    /* An empty forced checkpoint seals once. */
    tally_force_checkpoint(t);
    d = tally_checkpoint_seal(t);
    assert_non_null(d);
    assert_int_equal(d->n_batches + d->n_corrections, 0);
    tally_checkpoint_commit(t);
    assert_false(tally_has_pending(t));
    tally_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reason_names),
        cmocka_unit_test(test_tables_set_and_find),
        cmocka_unit_test(test_vote_unknown_table),
        cmocka_unit_test(test_vote_outside_table_circuit),
        cmocka_unit_test(test_vote_table_mode_conflict),
        cmocka_unit_test(test_vote_over_electors),
        cmocka_unit_test(test_vote_check_order),
        cmocka_unit_test(test_sheet_unknown_table_and_not_allowed),
        cmocka_unit_test(test_sheet_bad_sheet),
        cmocka_unit_test(test_sheet_unknown_project_and_outside_circuit),
        cmocka_unit_test(test_sheet_over_electors),
        cmocka_unit_test(test_sheet_table_mode_conflict),
        cmocka_unit_test(test_sheet_duplicate_conflict_superseded),
        cmocka_unit_test(test_sheet_replacement),
        cmocka_unit_test(test_sheet_two_in_one_batch),
        cmocka_unit_test(test_touched_listed_once),
        cmocka_unit_test(test_sheet_batch_dedup),
        cmocka_unit_test(test_batch_counts_and_table_deltas),
        cmocka_unit_test(test_durable_vs_applied),
        cmocka_unit_test(test_restore_tables),
        cmocka_unit_test(test_randomized_against_model),
        cmocka_unit_test(test_retract),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
