/* push_receipts: tally-push --verify-receipts' pure half (push/receipts.h). Receipts are
 * built here with src/record's own functions (a checkpoint tree of up to 9 batches, a chain
 * of three checkpoints to the head), written as tallyd's JSON, parsed back and verified; then
 * each field is tampered with in turn and the reason checked; and the parser is fed broken
 * JSON of every kind the contract rules out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "push/receipts.h"
#include "record/record.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LEAVES 9
#define CHAIN 3

/* One receipt's ingredients, the way tallyd would make them; tests change them before
 * writing the JSON to tamper with what tallyd says. */
struct fixture {
    char collector[64];
    uint64_t seq;
    uint8_t digest[32];
    uint64_t checkpoint;
    size_t leaf_index, tree_size;
    uint8_t path[8][32];
    size_t n_path;
    struct push_receipt_link chain[CHAIN];
    size_t n_chain;
    uint8_t head[32];
};

static void hex(const uint8_t *d, char out[65])
{
    push_hex32_format(d, out);
}

/* The batch c0/17 at index of a tree of n batches (the others c1/1, c1/2, ...), in
 * checkpoint 812 of a chain 812, 813, 814. */
static void fixture_make(struct fixture *f, size_t n, size_t index)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->collector, sizeof(f->collector), "c0");
    f->seq = 17;
    for (size_t i = 0; i < 32; i++)
        f->digest[i] = (uint8_t)(0xa0 + i);
    uint8_t leaves[MAX_LEAVES][32];
    for (size_t i = 0; i < n; i++) {
        if (i == index) {
            record_merkle_leaf("c0", 17, f->digest, leaves[i]);
        } else {
            uint8_t d[32];
            memset(d, (int)i, sizeof(d));
            record_merkle_leaf("c1", i + 1, d, leaves[i]);
        }
    }
    f->checkpoint = 812;
    f->leaf_index = index;
    f->tree_size = n;
    f->n_path = record_merkle_path((const uint8_t(*)[32])leaves, n, index, f->path);
    f->n_chain = CHAIN;
    uint8_t prev[32];
    memset(prev, 0x5a, sizeof(prev)); /* checkpoint 811's hash, not part of the receipt */
    for (size_t k = 0; k < CHAIN; k++) {
        struct push_receipt_link *l = &f->chain[k];
        l->id = 812 + k;
        l->epoch = 3;
        memcpy(l->prev_hash, prev, 32);
        if (k == 0)
            record_merkle_root((const uint8_t(*)[32])leaves, n, l->merkle_root);
        else
            memset(l->merkle_root, (int)(0x10 + k), 32);
        memset(l->body_hash, (int)(0x20 + k), 32);
        record_chain_link(l->prev_hash, l->id, l->epoch, l->merkle_root, l->body_hash, l->hash);
        l->has_hash = true;
        memcpy(prev, l->hash, 32);
    }
    memcpy(f->head, prev, 32);
}

/* tallyd's JSON for f (malloc'd). */
static char *fixture_json(const struct fixture *f)
{
    size_t cap = 8192, n = 0;
    char *b = malloc(cap);
    char h[65];
    hex(f->digest, h);
    n += (size_t)snprintf(b + n, cap - n,
                          "{\"collector\":\"%s\",\"seq\":%" PRIu64 ",\"digest\":\"%s\","
                          "\"checkpoint\":%" PRIu64 ",\"leaf_index\":%zu,\"tree_size\":%zu,"
                          "\"path\":[",
                          f->collector, f->seq, h, f->checkpoint, f->leaf_index, f->tree_size);
    for (size_t i = 0; i < f->n_path; i++) {
        hex(f->path[i], h);
        n += (size_t)snprintf(b + n, cap - n, "%s\"%s\"", i ? "," : "", h);
    }
    n += (size_t)snprintf(b + n, cap - n, "],\"chain\":[");
    for (size_t k = 0; k < f->n_chain; k++) {
        const struct push_receipt_link *l = &f->chain[k];
        char p[65], r[65], bh[65];
        hex(l->prev_hash, p);
        hex(l->merkle_root, r);
        hex(l->body_hash, bh);
        hex(l->hash, h);
        n += (size_t)snprintf(b + n, cap - n,
                              "%s{\"id\":%" PRIu64 ",\"epoch\":%" PRIu64 ",\"prev_hash\":\"%s\","
                              "\"merkle_root\":\"%s\",\"body_hash\":\"%s\",\"hash\":\"%s\"}",
                              k ? "," : "", l->id, l->epoch, p, r, bh, h);
    }
    hex(f->head, h);
    snprintf(b + n, cap - n, "],\"head\":\"%s\"}\n", h);
    return b;
}

/* Parses f's JSON and verifies it as the spool's c0/17 (digest: f's unless other) against
 * head (f's unless other). Returns what verify returns; why gets the reason. */
static int check(const struct fixture *f, const uint8_t *digest, const uint8_t *head, char *why,
                 size_t len)
{
    struct fixture good; /* the spool's digest is the untampered one */
    fixture_make(&good, 5, 3);
    char *json = fixture_json(f);
    struct push_receipt r;
    char err[256];
    int rc = push_receipt_parse(json, strlen(json), &r, err, sizeof(err));
    if (rc < 0)
        fail_msg("parse: %s\n%s", err, json);
    rc = push_receipt_verify(&r, "c0", 17, digest ? digest : good.digest, head ? head : f->head,
                             why, len);
    push_receipt_cleanup(&r);
    free(json);
    return rc;
}

static void assert_fails_with(const struct fixture *f, const uint8_t *head, const char *want)
{
    char why[768] = "";
    if (check(f, NULL, head, why, sizeof(why)) == 0)
        fail_msg("verified, expected '%s'", want);
    if (!strstr(why, want))
        fail_msg("expected '%s' in: %s", want, why);
}

static void test_hex(void **state)
{
    (void)state;
    uint8_t d[32], e[32];
    char h[65];
    for (size_t i = 0; i < 32; i++)
        d[i] = (uint8_t)(i * 9);
    hex(d, h);
    assert_int_equal(strlen(h), 64);
    assert_int_equal(push_hex32_parse(h, 64, e), 0);
    assert_memory_equal(d, e, 32);
    h[5] = (char)(h[5] >= 'a' ? h[5] - 32 : h[5]); /* upper case is taken */
    assert_int_equal(push_hex32_parse(h, 64, e), 0);
    assert_memory_equal(d, e, 32);
    assert_int_equal(push_hex32_parse(h, 63, e), -1);
    h[10] = 'g';
    assert_int_equal(push_hex32_parse(h, 64, e), -1);
    assert_int_equal(push_hex32_parse(NULL, 64, e), -1);
}

/* Every index of every tree of 1..9 batches verifies; so does every chain that passes the
 * head and goes on (a head published before tallyd wrote the later checkpoints). */
static void test_good_receipts(void **state)
{
    (void)state;
    for (size_t n = 1; n <= MAX_LEAVES; n++)
        for (size_t i = 0; i < n; i++) {
            struct fixture f;
            fixture_make(&f, n, i);
            char why[768] = "";
            if (check(&f, f.digest, NULL, why, sizeof(why)) != 0)
                fail_msg("n %zu index %zu: %s", n, i, why);
        }
    struct fixture f;
    fixture_make(&f, 5, 3);
    char why[768];
    assert_int_equal(check(&f, NULL, f.chain[0].hash, why, sizeof(why)), 0);
    assert_int_equal(check(&f, NULL, f.chain[1].hash, why, sizeof(why)), 0);
    /* The receipt's own hash fields and head are never believed: wrong ones change nothing. */
    memset(f.chain[2].hash, 0, 32);
    f.chain[0].has_hash = false;
    memset(f.head, 0, 32);
    struct fixture g;
    fixture_make(&g, 5, 3);
    assert_int_equal(check(&f, NULL, g.head, why, sizeof(why)), 0);
}

static void test_tampered_path(void **state)
{
    (void)state;
    struct fixture f;
    fixture_make(&f, 5, 3);
    f.path[1][7] ^= 1;
    assert_fails_with(&f, NULL, "Merkle path (leaf 3 of 5, 3 hashes) does not lead");
    fixture_make(&f, 5, 3);
    f.leaf_index = 2;
    assert_fails_with(&f, NULL, "does not lead to checkpoint 812's merkle_root");
    fixture_make(&f, 5, 3);
    f.tree_size = 4; /* 3 is then the last leaf of a full tree: a path of 2 */
    assert_fails_with(&f, NULL, "does not lead");
    fixture_make(&f, 5, 3);
    f.n_path = 2; /* a hash left out */
    assert_fails_with(&f, NULL, "does not lead");
    fixture_make(&f, 5, 3);
    f.leaf_index = 5; /* past the tree */
    assert_fails_with(&f, NULL, "does not lead");
    fixture_make(&f, 5, 3);
    f.chain[0].merkle_root[0] ^= 1; /* the path then no longer reaches it */
    assert_fails_with(&f, NULL, "does not lead");
}

/* The leaf is the spool's: another digest, seq or collector in the receipt, or the
 * receipt's digest made to match a leaf of its own, are all caught. */
static void test_other_batch(void **state)
{
    (void)state;
    struct fixture f;
    fixture_make(&f, 5, 3);
    snprintf(f.collector, sizeof(f.collector), "c1");
    assert_fails_with(&f, NULL, "the receipt is for c1/17, not this batch");
    fixture_make(&f, 5, 3);
    f.seq = 18;
    assert_fails_with(&f, NULL, "the receipt is for c0/18, not this batch");
    fixture_make(&f, 5, 3);
    f.digest[4] ^= 1;
    assert_fails_with(&f, NULL, "tallyd holds digest");
    /* A consistent receipt for another digest: the spool's digest makes another leaf. */
    fixture_make(&f, 5, 3);
    uint8_t mine[32];
    memcpy(mine, f.digest, 32);
    mine[0] ^= 0xff;
    char why[768] = "";
    assert_int_equal(check(&f, mine, NULL, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "tallyd holds digest"));
}

static void test_broken_chain(void **state)
{
    (void)state;
    struct fixture f;
    /* A field of checkpoint 813 changed, its claimed hash kept: 813 is named. */
    fixture_make(&f, 5, 3);
    f.chain[1].body_hash[3] ^= 1;
    assert_fails_with(&f, NULL, "checkpoint 813 hashes to");
    /* The same without hash fields: the next entry's prev_hash is named instead. */
    fixture_make(&f, 5, 3);
    f.chain[1].merkle_root[3] ^= 1;
    f.chain[1].has_hash = false;
    char *json = fixture_json(&f);
    /* fixture_json always writes hash: drop it from the text. */
    char h[65], *at;
    hex(f.chain[1].hash, h);
    char needle[80];
    snprintf(needle, sizeof(needle), ",\"hash\":\"%s\"", h);
    at = strstr(json, needle);
    assert_non_null(at);
    memmove(at, at + strlen(needle), strlen(at + strlen(needle)) + 1);
    struct push_receipt r;
    char err[256], why[768];
    assert_int_equal(push_receipt_parse(json, strlen(json), &r, err, sizeof(err)), 0);
    assert_false(r.chain[1].has_hash);
    assert_int_equal(push_receipt_verify(&r, "c0", 17, f.digest, f.head, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "checkpoint 814's prev_hash"));
    assert_non_null(strstr(why, "is not the hash"));
    push_receipt_cleanup(&r);
    free(json);
    /* A prev_hash changed: that link no longer follows its predecessor. */
    fixture_make(&f, 5, 3);
    f.chain[2].prev_hash[0] ^= 1;
    assert_fails_with(&f, NULL, "checkpoint 814's prev_hash");
    /* Ids that skip, repeat, or a chain that does not start at the batch's checkpoint. */
    fixture_make(&f, 5, 3);
    f.chain[2].id = 815;
    assert_fails_with(&f, NULL, "chain[2] is checkpoint 815, not 813 + 1");
    fixture_make(&f, 5, 3);
    f.chain[1].id = 812;
    assert_fails_with(&f, NULL, "chain[1] is checkpoint 812, not 812 + 1");
    fixture_make(&f, 5, 3);
    f.checkpoint = 811;
    assert_fails_with(&f, NULL, "the chain starts at checkpoint 812, not at the batch's 811");
    /* The last entry changed: its recomputed link is not the head. */
    fixture_make(&f, 5, 3);
    f.chain[2].epoch = 4;
    assert_fails_with(&f, NULL, "does not reach head");
}

static void test_wrong_head(void **state)
{
    (void)state;
    struct fixture f;
    fixture_make(&f, 5, 3);
    uint8_t head[32];
    memcpy(head, f.head, 32);
    head[31] ^= 1;
    assert_fails_with(&f, head, "the chain from checkpoint 812 to 814 does not reach head");
    /* tallyd's receipt claims that head itself: still refused. */
    memcpy(f.head, head, 32);
    assert_fails_with(&f, head, "does not reach head");
    /* A head older than the batch's checkpoint (811's) is not in the chain. */
    fixture_make(&f, 5, 3);
    memcpy(head, f.chain[0].prev_hash, 32);
    assert_fails_with(&f, head, "does not reach head");
}

static void assert_parse_fails(const char *json, const char *want)
{
    struct push_receipt r;
    char err[256] = "";
    int rc = push_receipt_parse(json, strlen(json), &r, err, sizeof(err));
    push_receipt_cleanup(&r);
    if (rc == 0)
        fail_msg("parsed, expected '%s': %s", want, json);
    if (!strstr(err, want))
        fail_msg("expected '%s' in: %s", want, err);
}

/* The good JSON with the first occurrence of from replaced by to (malloc'd). */
static char *edit(const char *from, const char *to)
{
    struct fixture f;
    fixture_make(&f, 5, 3);
    char *json = fixture_json(&f);
    char *at = strstr(json, from);
    assert_non_null(at);
    size_t out_len = strlen(json) - strlen(from) + strlen(to) + 1;
    char *out = malloc(out_len);
    snprintf(out, out_len, "%.*s%s%s", (int)(at - json), json, to, at + strlen(from));
    free(json);
    return out;
}

static void test_parse_errors(void **state)
{
    (void)state;
    struct fixture f;
    fixture_make(&f, 5, 3);
    char *json = fixture_json(&f);
    size_t len = strlen(json);
    struct push_receipt r;
    char err[256];
    assert_int_equal(push_receipt_parse(json, len, &r, err, sizeof(err)), 0);
    assert_string_equal(r.collector, "c0");
    assert_int_equal(r.seq, 17);
    assert_int_equal(r.checkpoint, 812);
    assert_int_equal(r.n_path, 3);
    assert_int_equal(r.n_chain, 3);
    assert_true(r.has_head);
    push_receipt_cleanup(&r);
    /* Every cut of the body is refused (a body cut short on the wire). */
    for (size_t cut = 0; cut + 2 < len; cut += 7) {
        int rc = push_receipt_parse(json, cut, &r, err, sizeof(err));
        push_receipt_cleanup(&r);
        if (rc == 0)
            fail_msg("a receipt cut at %zu bytes parsed", cut);
    }
    assert_int_equal(push_receipt_parse(json, 40, &r, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not valid JSON"));
    push_receipt_cleanup(&r);
    free(json);

    assert_parse_fails("", "empty");
    assert_parse_fails("  \n", "empty");
    assert_parse_fails("[1,2]", "not a JSON object");
    assert_parse_fails("{\"collector\":\"c0\"} {}", "not valid JSON");
    assert_parse_fails("{\"collector\":\"c0\",}", "not valid JSON");
    assert_parse_fails("{'collector':'c0'}", "not valid JSON");
    assert_parse_fails("{\"collector\":\"c0\"}", "receipt has no seq");
    assert_parse_fails("[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]", "not valid JSON");

    struct {
        const char *from, *to, *want;
    } cases[] = {
        {"\"seq\":17", "\"seq\":\"17\"", "seq is not an integer"},
        {"\"seq\":17", "\"seq\":-17", "seq is negative"},
        {"\"seq\":17", "\"seq\":17.5", "seq is not an integer"},
        {"\"collector\":\"c0\"", "\"collector\":7", "collector is not a string"},
        {"\"collector\":\"c0\"", "\"collector\":\"c\\u0000x\"", "not a collector id"},
        {"\"checkpoint\":812", "\"checkpont\":812", "receipt has no checkpoint"},
        {"\"leaf_index\":3", "\"leaf_index\":null", "leaf_index is not an integer"},
        {"\"path\":[", "\"path\":[1,", "path[0] is not 64 hex digits"},
        {"\"path\":[", "\"path\":{},\"old_path\":[", "path is not an array"},
        {"\"path\":[\"", "\"path\":[\"ab", "path[0] is not 64 hex digits"},
        {"\"chain\":[", "\"chain\":[7,", "chain[0] is not an object"},
        {"\"epoch\":3", "\"epoch\":\"3\"", "chain[0].epoch is not an integer"},
        {"\"body_hash\":\"", "\"body_hash\":\"zz", "chain[0].body_hash is not 64 hex"},
        {"\"prev_hash\"", "\"prev_hsh\"", "receipt has no chain[0].prev_hash"},
        {"\"digest\":\"", "\"digest\":\"0", "digest is not 64 hex digits"},
        {"\"head\":\"", "\"head\":\"0", "head is not 64 hex digits"},
        {"\"collector\":\"c0\"", "\"collector\":\"\xff\xfe\"", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *j = edit(cases[i].from, cases[i].to);
        assert_parse_fails(j, cases[i].want);
        free(j);
    }

    /* An empty chain, and more path hashes than any tree needs. */
    char *j = edit("\"chain\":[", "\"chain\":[],\"x\":[");
    assert_parse_fails(j, "chain is empty");
    free(j);
    char big[80 * 70] = "";
    size_t n = 0;
    for (int i = 0; i < 65; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "\"%064d\",", 0);
    char to[sizeof(big) + 16];
    snprintf(to, sizeof(to), "\"path\":[%s", big);
    j = edit("\"path\":[", to);
    assert_parse_fails(j, "path has 68 entries");
    free(j);

    /* A missing head and unknown fields are fine. */
    j = edit("\"checkpoint\"", "\"later\":{\"x\":[1,2]},\"checkpoint\"");
    assert_int_equal(push_receipt_parse(j, strlen(j), &r, err, sizeof(err)), 0);
    push_receipt_cleanup(&r);
    free(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hex),           cmocka_unit_test(test_good_receipts),
        cmocka_unit_test(test_tampered_path), cmocka_unit_test(test_other_batch),
        cmocka_unit_test(test_broken_chain),  cmocka_unit_test(test_wrong_head),
        cmocka_unit_test(test_parse_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
