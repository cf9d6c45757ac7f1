/* Receipts from a real tallyd (docs/consultation.md, part C): two collectors push with
 * tally-push, then for every batch whose digest a spool kept, GET /v1/receipts/{c}/{seq}
 * is checked here with src/record alone, trusting nothing tallyd says: the leaf from the
 * collector id, seq and the spool's digest, the audit path up to chain[0].merkle_root,
 * every link recomputed and chained, the last one equal to the head the database holds.
 * A tampered seq and an unknown collector answer 404, a malformed path 400, and a batch of
 * a checkpoint older than format 3 409. Needs the record library (TALLY_TEST_RECORD). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef TALLY_TEST_RECORD
#include "record/record.h"
#endif

#define COLLECTORS 2
#define BODY_MAX (8u << 20)

static struct ts_case tc;

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    if (ts_case_setup(&tc, "receipts", 60, 12, COLLECTORS, 6000, "0.02", "0", 0, 77))
        return -1;
    /* Long enough for several batches, of both collectors, in one checkpoint. */
    tc.d.checkpoint_ms = 400;
    return ts_tallyd_start(&tc.d, ts_scale(30000));
}

static int teardown(void **state)
{
    (void)state;
    ts_case_teardown(&tc, false);
    return 0;
}

static int get(const char *path, char **body)
{
    char *b = malloc(BODY_MAX);
    assert_non_null(b);
    int status = ts_http_get(tc.d.http_port, path, b, BODY_MAX, ts_scale(10000));
    *body = b;
    return status;
}

#ifdef TALLY_TEST_RECORD

/* ---- reading the receipt JSON -------------------------------------------------------------- */

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* "<64 lower-case hex>" at p into out; returns past the closing quote. */
static const char *hex32(const char *p, uint8_t out[32])
{
    if (*p++ != '"')
        fail_msg("expected a hash at %.40s", p - 1);
    for (size_t i = 0; i < 32; i++) {
        int a = hexval(p[2 * i]), b = hexval(p[2 * i + 1]);
        if (a < 0 || b < 0)
            fail_msg("not lower-case hex: %.70s", p);
        out[i] = (uint8_t)(a << 4 | b);
    }
    if (p[64] != '"')
        fail_msg("a hash of more than 64 digits: %.70s", p);
    return p + 65;
}

/* Right after "key": in [from, ...). */
static const char *after_key(const char *from, const char *key)
{
    char k[64];
    snprintf(k, sizeof(k), "\"%s\":", key);
    const char *p = strstr(from, k);
    if (!p)
        fail_msg("no \"%s\" in %.200s", key, from);
    return p + strlen(k);
}

static uint64_t u64_of(const char *from, const char *key)
{
    return strtoull(after_key(from, key), NULL, 10);
}

struct link {
    uint64_t id, epoch;
    uint8_t prev[32], root[32], body[32], hash[32];
};

struct receipt {
    uint8_t digest[32], head[32];
    uint64_t seq, checkpoint, leaf_index, tree_size;
    uint8_t path[64][32];
    size_t n_path;
    struct link *chain;
    size_t n_chain;
};

static void receipt_parse(const char *body, struct receipt *r)
{
    memset(r, 0, sizeof(*r));
    r->seq = u64_of(body, "seq");
    hex32(after_key(body, "digest"), r->digest);
    r->checkpoint = u64_of(body, "checkpoint");
    r->leaf_index = u64_of(body, "leaf_index");
    r->tree_size = u64_of(body, "tree_size");
    const char *p = after_key(body, "path");
    assert_int_equal(*p++, '[');
    while (*p == '"') {
        assert_true(r->n_path < 64);
        p = hex32(p, r->path[r->n_path++]);
        if (*p == ',')
            p++;
    }
    assert_int_equal(*p, ']');
    p = after_key(p, "chain");
    assert_int_equal(*p++, '[');
    size_t cap = 16;
    r->chain = calloc(cap, sizeof(*r->chain));
    for (;;) {
        while (*p == '\n' || *p == ',')
            p++;
        if (*p != '{')
            break;
        if (r->n_chain == cap) {
            cap *= 2;
            r->chain = realloc(r->chain, cap * sizeof(*r->chain));
            assert_non_null(r->chain);
        }
        struct link *l = &r->chain[r->n_chain++];
        l->id = u64_of(p, "id");
        l->epoch = u64_of(p, "epoch");
        hex32(after_key(p, "prev_hash"), l->prev);
        hex32(after_key(p, "merkle_root"), l->root);
        hex32(after_key(p, "body_hash"), l->body);
        p = hex32(after_key(p, "hash"), l->hash);
        assert_int_equal(*p++, '}');
    }
    assert_int_equal(*p, ']');
    hex32(after_key(p, "head"), r->head);
}

/* Verifies a receipt of (collector, seq) whose digest the spool kept, from scratch; NULL
 * when it holds, else why not. head: the chain's last hash as the database holds it. */
static const char *receipt_check(const struct receipt *r, const char *collector, uint64_t seq,
                                 const uint8_t digest[32], const uint8_t head[32])
{
    if (r->seq != seq || memcmp(r->digest, digest, 32) != 0)
        return "the receipt names another batch";
    if (r->n_chain == 0 || r->chain[0].id != r->checkpoint)
        return "the chain does not start at the batch's checkpoint";
    uint8_t leaf[32];
    record_merkle_leaf(collector, seq, digest, leaf);
    if (!record_merkle_verify(leaf, r->leaf_index, r->tree_size, (const uint8_t(*)[32])r->path,
                              r->n_path, r->chain[0].root))
        return "the audit path does not lead to chain[0].merkle_root";
    for (size_t i = 0; i < r->n_chain; i++) {
        const struct link *l = &r->chain[i];
        if (i > 0 && (l->id != r->chain[i - 1].id + 1 || memcmp(l->prev, r->chain[i - 1].hash, 32)))
            return "a link's prev_hash is not the previous link";
        uint8_t h[32];
        record_chain_link(l->prev, l->id, l->epoch, l->root, l->body, h);
        if (memcmp(h, l->hash, 32) != 0)
            return "a link's hash does not recompute";
    }
    if (memcmp(r->chain[r->n_chain - 1].hash, head, 32) != 0 || memcmp(r->head, head, 32) != 0)
        return "the last link is not the head";
    return NULL;
}

/* The head hash as the database holds it now. */
static void db_head(uint8_t out[32], uint64_t *last_id)
{
    assert_int_equal(ts_sql_u64(tc.conninfo, "SELECT max(id) FROM checkpoints", last_id), 0);
    for (int i = 0; i < 4; i++) {
        char sql[200];
        uint64_t v;
        snprintf(sql, sizeof(sql),
                 "SELECT ('x' || encode(substring(hash FROM %d FOR 8), 'hex'))::bit(64)::int8"
                 " FROM checkpoints ORDER BY id DESC LIMIT 1",
                 1 + 8 * i);
        assert_int_equal(ts_sql_u64(tc.conninfo, sql, &v), 0);
        for (int k = 0; k < 8; k++)
            out[8 * i + k] = (uint8_t)(v >> (56 - 8 * k));
    }
}

struct spool_rec {
    uint64_t seq;
    uint8_t digest[32];
};

/* The spool's digests file: 40-byte records, LE64 seq then the digest (src/client/spool.c). */
static size_t spool_digests(uint32_t i, struct spool_rec **out)
{
    char file[1200], spool[1200], o[1200], e[1200], path[1300];
    ts_case_paths(&tc, i, file, spool, o, e, sizeof(file));
    snprintf(path, sizeof(path), "%s/digests", spool);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("no digests file %s", path);
    size_t cap = 64, n = 0;
    struct spool_rec *a = calloc(cap, sizeof(*a));
    uint8_t rec[40];
    while (fread(rec, 1, 40, f) == 40) {
        if (n == cap) {
            cap *= 2;
            a = realloc(a, cap * sizeof(*a));
        }
        uint64_t seq = 0;
        for (int k = 7; k >= 0; k--)
            seq = seq << 8 | rec[k];
        a[n].seq = seq;
        memcpy(a[n].digest, rec + 8, 32);
        n++;
    }
    fclose(f);
    *out = a;
    return n;
}
#endif

static void test_receipts(void **state)
{
    (void)state;
    /* One after the other: c0's receipts then carry a chain of several checkpoints. */
    struct ts_proc push[COLLECTORS];
    for (uint32_t i = 0; i < COLLECTORS; i++) {
        assert_int_equal(ts_case_push(&tc, &push[i], i, 97), 0);
        assert_int_equal(ts_proc_wait(&push[i], ts_scale(60000)), 0);
        assert_int_equal(ts_proc_code(&push[i]), 0);
    }
    char *body;
    /* Malformed paths and unknown batches. */
    assert_int_equal(get("/v1/receipts/c0/0", &body), 400);
    free(body);
    assert_int_equal(get("/v1/receipts/c%2F0/1", &body), 400);
    free(body);
    assert_int_equal(get("/v1/receipts/nobody/1", &body), 404);
    assert_non_null(strstr(body, "\"error\":"));
    free(body);
    assert_int_equal(get("/v1/receipts/c0/1000000", &body), 404);
    free(body);
#ifndef TALLY_TEST_RECORD
    skip(); /* built without the record library: nothing to check receipts with */
#else
    uint8_t head[32];
    uint64_t last_id;
    db_head(head, &last_id);
    size_t checked = 0, multi = 0, longest = 0;
    for (uint32_t i = 0; i < COLLECTORS; i++) {
        struct spool_rec *recs;
        size_t n = spool_digests(i, &recs);
        assert_true(n > 5);
        char collector[16];
        snprintf(collector, sizeof(collector), "c%u", i);
        for (size_t k = 0; k < n; k++) {
            char path[128];
            snprintf(path, sizeof(path), "/v1/receipts/%s/%" PRIu64, collector, recs[k].seq);
            int status = get(path, &body);
            if (status != 200)
                fail_msg("%s: %d %.200s", path, status, body);
            struct receipt r;
            receipt_parse(body, &r);
            const char *why = receipt_check(&r, collector, recs[k].seq, recs[k].digest, head);
            if (why)
                fail_msg("%s: %s", path, why);
            /* One bit off anywhere and it must fail: the digest, then the path. */
            uint8_t bad[32];
            memcpy(bad, recs[k].digest, 32);
            bad[k % 32] ^= 1;
            assert_non_null(receipt_check(&r, collector, recs[k].seq, bad, head));
            assert_non_null(receipt_check(&r, collector, recs[k].seq + 1, recs[k].digest, head));
            if (r.n_path) {
                r.path[0][3] ^= 0x80;
                assert_non_null(receipt_check(&r, collector, recs[k].seq, recs[k].digest, head));
            }
            assert_int_equal(r.chain[r.n_chain - 1].id, last_id);
            multi += r.tree_size > 1;
            if (r.n_chain > longest)
                longest = r.n_chain;
            checked++;
            free(r.chain);
            free(body);
        }
        free(recs);
    }
    fprintf(stderr,
            "receipts: %zu verified against the head of checkpoint %" PRIu64
            " (%zu in checkpoints of several batches, longest chain %zu)\n",
            checked, last_id, multi, longest);
    assert_true(multi > 0);
    assert_true(longest > 1);

    /* A batch of a checkpoint older than format 3: 409 (made so by hand: format, root and
     * body hash go together). */
    assert_int_equal(ts_sql_exec(tc.conninfo,
                                 "UPDATE checkpoints SET format = NULL, merkle_root = NULL,"
                                 " body_hash = NULL WHERE id = (SELECT checkpoint_id FROM"
                                 " batches WHERE collector_id = 'c0' AND seq = 1)"),
                     0);
    assert_int_equal(get("/v1/receipts/c0/1", &body), 409);
    assert_non_null(strstr(body, "format 3"));
    free(body);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_receipts),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    ts_cleanup();
    return rc;
}
