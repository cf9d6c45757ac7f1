/* Fuzz harness: one payload decoded (wire_frame_decode) and put through what ingest does
 * with it: Hello's checks (version, consultation, collector id form, registration) and
 * Batch's (wire_batch_check, the digests, tally_apply_batch on a small registry), with a
 * reference model of the checks and of the tally's outcome. Batches with voting tables or
 * tally sheets are held to the wire's rules and digests (wire_batch_digest_msg,
 * wire_sheet_digest: row order and zero rows do not matter) and stop there. Byte 0 picks: bit 0,
 * the rest is a Batch body the harness wraps in Frame{batch} (so the fuzzer works inside the
 * Batch); bit 1, collector c1 (limited to circuit 10) instead of c0; bits 2-7, the max votes per
 * batch (1..64). */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include "ctl/text.h"
#include "tally/protocol.h"
#include "tally/tally.h"
#include "wire/digest.h"
#include "wire/wire.h"

#define CONSULTATION "fuzz-consultation"

static const struct tally_project registry[] = {
    {1, 10}, {2, 10}, {3, 20}, {5, 20}, {8, 30}, {13, 30}, {0xffffffffu, 10},
};
#define N_PROJECTS (sizeof(registry) / sizeof(registry[0]))

/* ingest.c's collector_id_is_valid (static there), as it stands: the three copies of the
 * rule (ingest, wire, tallyctl) must agree. */
static bool ingest_collector_id_is_valid(const char *id)
{
    size_t n = 0;
    for (; id[n]; n++) {
        char ch = id[n];
        bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
        if (!ok || n >= TALLY_COLLECTOR_ID_MAX)
            return false;
    }
    return n > 0;
}

/* ingest.c's on_hello checks, in its order; true when the Hello would be welcomed. */
static bool hello_ok(struct tally *t, const Tally__Hello *h)
{
    if (h->protocol_version != TALLY_PROTOCOL_VERSION)
        return false;
    if (h->consultation_id && h->consultation_id[0] &&
        strcmp(h->consultation_id, CONSULTATION) != 0)
        return false;
    const char *id = h->collector_id ? h->collector_id : "";
    bool valid = wire_collector_id_is_valid(id);
    FUZZ_ASSERT(valid == ingest_collector_id_is_valid(id));
    FUZZ_ASSERT(valid == ctl_collector_id_is_valid(id));
    if (!valid)
        return false;
    return tally_collector_find(t, id) >= 0;
}

static bool allowed(uint32_t project, bool restricted, bool *known)
{
    for (size_t i = 0; i < N_PROJECTS; i++)
        if (registry[i].id == project) {
            *known = true;
            return !restricted || registry[i].circuit_id == 10;
        }
    *known = false;
    return false;
}

/* docs/consultation.md's batch rules for tables and sheets, written again from the text. */
static bool ref_tables_sheets_fault(const Tally__Batch *b, uint32_t max_votes)
{
    if (b->n_sheets) {
        if (b->n_ballots || b->n_projects || b->n_tables || b->n_vote_tables || b->n_sheets > 256)
            return true;
        uint64_t rows = 0;
        for (size_t i = 0; i < b->n_sheets; i++) {
            const Tally__Sheet *s = b->sheets[i];
            rows += s->n_projects > s->n_votes ? s->n_projects : s->n_votes;
            if (!ingest_collector_id_is_valid(s->table_id))
                return true;
        }
        return rows > max_votes;
    }
    if (b->n_tables > 4096 || (b->n_vote_tables && b->n_vote_tables != b->n_ballots))
        return true;
    for (size_t i = 0; i < b->n_vote_tables; i++)
        if (b->vote_tables[i] > b->n_tables)
            return true;
    for (size_t i = 0; i < b->n_tables; i++)
        if (!ingest_collector_id_is_valid(b->tables[i]))
            return true;
    return false;
}

/* A sheet's digest does not change with its rows reversed or a zero row added. */
static void sheet_digest_check(const Tally__Sheet *s)
{
    size_t n = s->n_projects < s->n_votes ? s->n_projects : s->n_votes;
    uint32_t *p = malloc((n + 1) * sizeof(*p)), *v = malloc((n + 1) * sizeof(*v));
    for (size_t i = 0; i < n; i++) {
        p[n - 1 - i] = s->projects[i];
        v[n - 1 - i] = s->votes[i];
    }
    p[n] = 12345;
    v[n] = 0;
    uint8_t d[WIRE_DIGEST_BYTES], r[WIRE_DIGEST_BYTES];
    wire_sheet_digest(s, d);
    wire_sheet_digest_rows(s->table_id, s->version, s->blank, s->null_ballots, p, v, n + 1, r);
    FUZZ_ASSERT(memcmp(d, r, sizeof(d)) == 0);
    free(p);
    free(v);
}

/* ingest.c's on_batch up to the Ack, with the outcome held to a reference model. */
static bool batch_ok(struct tally *t, uint32_t c, bool restricted, const Tally__Batch *b,
                     uint32_t max_votes)
{
    enum wire_batch_fault fault = wire_batch_check(b, max_votes);
    bool ref_fault = b->n_ballots != b->n_projects || b->n_ballots > max_votes || b->seq == 0 ||
                     b->nonce.len > WIRE_NONCE_MAX || ref_tables_sheets_fault(b, max_votes);
    FUZZ_ASSERT((fault != WIRE_BATCH_OK) == ref_fault);
    FUZZ_ASSERT(wire_batch_fault_name(fault)[0]);
    if (fault != WIRE_BATCH_OK)
        return false;
    size_t n = b->n_ballots;
    uint8_t digest[WIRE_DIGEST_BYTES], again[WIRE_DIGEST_BYTES];
    wire_batch_digest_msg(b, digest);
    wire_batch_digest_msg(b, again);
    FUZZ_ASSERT(memcmp(digest, again, sizeof(digest)) == 0);
    bool plain = !b->n_tables && !b->n_vote_tables && !b->n_sheets;
    wire_batch_digest(b->seq, b->nonce.data, b->nonce.len, b->ballots, b->projects, n, again);
    FUZZ_ASSERT((memcmp(digest, again, sizeof(digest)) == 0) == plain);
    for (size_t i = 0; i < b->n_sheets; i++)
        sheet_digest_check(b->sheets[i]);
    if (!plain)
        return true; /* the tally's table and sheet rules are not driven here (yet) */
    memcpy(again, digest, sizeof(again));

    struct tally_batch_result res = {0};
    uint64_t expected = 0;
    const uint8_t *had = NULL;
    enum tally_apply_status st =
        tally_apply_batch(t, c, b->seq, digest, b->ballots, b->projects, n, &res, &expected, &had);
    if (b->seq != 1) {
        /* A fresh collector (durable_seq 0) expects seq 1. */
        FUZZ_ASSERT(st == TALLY_GAP && expected == 1);
        return false;
    }
    FUZZ_ASSERT(st == TALLY_APPLIED);
    /* The model: a vote counts when its project is known and allowed and its ballot has
     * not counted before; a rejected vote's ballot stays unused. */
    uint32_t acc = 0, dup = 0, unknown = 0, not_allowed = 0;
    for (size_t i = 0; i < n; i++) {
        bool known;
        if (!allowed(b->projects[i], restricted, &known)) {
            if (known)
                not_allowed++;
            else
                unknown++;
            continue;
        }
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++) {
            bool k2;
            seen = b->ballots[j] == b->ballots[i] && allowed(b->projects[j], restricted, &k2);
        }
        if (seen)
            dup++;
        else
            acc++;
    }
    FUZZ_ASSERT(res.accepted == acc && res.duplicate == dup && res.rejected_unknown == unknown &&
                res.rejected_not_allowed == not_allowed);
    const struct tally_totals *tot = tally_applied_totals(t);
    FUZZ_ASSERT(tot->votes == n && tot->accepted == acc && tot->duplicate == dup &&
                tot->rejected == (uint64_t)unknown + not_allowed && tot->batches == 1);
    uint64_t sum = 0;
    for (size_t i = 0; i < N_PROJECTS; i++)
        sum += tally_votes_at(t, i);
    /* votes_at is durable + pending or durable only: either way at most what was accepted. */
    FUZZ_ASSERT(sum == acc || sum == 0);

    /* The same batch again is a retransmission; other content under seq 1 a conflict. */
    st = tally_apply_batch(t, c, b->seq, digest, b->ballots, b->projects, n, &res, &expected, &had);
    FUZZ_ASSERT(st == TALLY_RETRANSMIT);
    digest[0] ^= 1;
    st = tally_apply_batch(t, c, b->seq, digest, b->ballots, b->projects, n, &res, &expected, &had);
    FUZZ_ASSERT(st == TALLY_CONFLICT && had && memcmp(had, again, sizeof(again)) == 0);
    FUZZ_ASSERT(tally_applied_totals(t)->votes == n);
    return true;
}

/* A length-prefixed field 3 (Frame.batch) around body. */
static uint8_t *wrap_batch(const uint8_t *body, size_t len, size_t *out_len)
{
    uint8_t *p = malloc(len + 11);
    size_t n = 0;
    p[n++] = 0x1a;
    size_t v = len;
    do {
        p[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    memcpy(p + n, body, len);
    *out_len = n + len;
    return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    uint32_t max_votes = 1u + (mode >> 2);
    bool as_c1 = mode & 2;
    size_t len;
    uint8_t *payload;
    if (mode & 1) {
        payload = wrap_batch(data + 1, size - 1, &len);
    } else {
        len = size - 1;
        payload = malloc(len ? len : 1);
        memcpy(payload, data + 1, len);
    }
    static const uint8_t key[TALLY_HASH_KEY_BYTES] = "fuzz: fixed ballot set hash key";
    struct tally *t = tally_new(registry, N_PROJECTS, 64, key);
    FUZZ_ASSERT(t);
    uint32_t c0 = tally_collector_add(t, "c0", 0, NULL);
    uint32_t c1 = tally_collector_add(t, "c1", 0, NULL);
    static const uint32_t only10[] = {10};
    FUZZ_ASSERT(tally_collector_restrict(t, c1, only10, 1) == 0);

    struct arena a;
    arena_init(&a, 4096);
    Tally__Frame *f = NULL;
    bool ok = false;
    if (wire_frame_decode(payload, len, &a, &f) == WIRE_OK) {
        if (f->msg_case == TALLY__FRAME__MSG_HELLO)
            ok = hello_ok(t, f->hello);
        else if (f->msg_case == TALLY__FRAME__MSG_BATCH)
            ok = batch_ok(t, as_c1 ? c1 : c0, as_c1, f->batch, max_votes);
    }
    fuzz_verdict = ok ? FUZZ_ACCEPTED : FUZZ_REFUSED;
    arena_cleanup(&a);
    tally_free(t);
    free(payload);
    return 0;
}
