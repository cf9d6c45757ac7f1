/* wire: framing and decoding, including the ways a peer can get it wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/arena.h"
#include "wire/digest.h"
#include "wire/wire.h"

static size_t encode_batch(uint8_t *buf, uint64_t seq, size_t n)
{
    uint64_t *ballots = calloc(n, sizeof(uint64_t));
    uint32_t *projects = calloc(n, sizeof(uint32_t));
    for (size_t i = 0; i < n; i++) {
        ballots[i] = 0x1000 + i;
        projects[i] = (uint32_t)(i % 7);
    }
    Tally__Batch b = TALLY__BATCH__INIT;
    b.seq = seq;
    b.n_ballots = n;
    b.ballots = ballots;
    b.n_projects = n;
    b.projects = projects;
    Tally__Frame f = TALLY__FRAME__INIT;
    f.msg_case = TALLY__FRAME__MSG_BATCH;
    f.batch = &b;
    size_t len = wire_frame_encode(&f, buf);
    assert_int_equal(len, wire_frame_size(&f));
    free(ballots);
    free(projects);
    return len;
}

static void test_roundtrip(void **state)
{
    (void)state;
    static uint8_t buf[1 << 20];
    size_t len = encode_batch(buf, 42, 10000);
    size_t payload = 0;
    assert_int_equal(wire_frame_peek(buf, len, 1 << 20, &payload), WIRE_OK);
    assert_int_equal(payload + 4, len);

    struct arena a;
    arena_init(&a, 4096);
    Tally__Frame *f = NULL;
    assert_int_equal(wire_frame_decode(buf + 4, payload, &a, &f), WIRE_OK);
    assert_int_equal(f->msg_case, TALLY__FRAME__MSG_BATCH);
    assert_int_equal(f->batch->seq, 42);
    assert_int_equal(f->batch->n_ballots, 10000);
    assert_int_equal(f->batch->ballots[9999], 0x1000 + 9999);
    assert_int_equal(f->batch->projects[13], 13 % 7);
    /* Packed arrays: about 10 bytes a vote on the wire. */
    assert_true(len < 10000 * 11);
    arena_reset(&a);
    /* A second decode of the same size reuses the arena's chunk. */
    assert_int_equal(wire_frame_decode(buf + 4, payload, &a, &f), WIRE_OK);
    assert_int_equal(arena_chunk_count(&a), 1);
    arena_cleanup(&a);
}

static void test_truncated_needs_more(void **state)
{
    (void)state;
    uint8_t buf[4096];
    size_t len = encode_batch(buf, 1, 100);
    size_t payload;
    for (size_t cut = 0; cut < len; cut++)
        assert_int_equal(wire_frame_peek(buf, cut, 1 << 20, &payload), WIRE_NEED_MORE);
    assert_int_equal(wire_frame_peek(buf, len, 1 << 20, &payload), WIRE_OK);
}

static void test_oversized_refused_from_header(void **state)
{
    (void)state;
    uint8_t hdr[4];
    size_t payload;
    wire_header_put(hdr, 1025);
    /* Refused on the header alone: no need to buffer the body. */
    assert_int_equal(wire_frame_peek(hdr, 4, 1024, &payload), WIRE_ERR_TOO_LARGE);
    wire_header_put(hdr, 0xffffffffu);
    assert_int_equal(wire_frame_peek(hdr, 4, 1024, &payload), WIRE_ERR_TOO_LARGE);
    wire_header_put(hdr, 1024);
    assert_int_equal(wire_frame_peek(hdr, 4, 1024, &payload), WIRE_NEED_MORE);
}

static void test_zero_length_is_malformed(void **state)
{
    (void)state;
    uint8_t hdr[4] = {0, 0, 0, 0};
    size_t payload;
    assert_int_equal(wire_frame_peek(hdr, 4, 1024, &payload), WIRE_ERR_MALFORMED);
}

static void test_garbage_is_malformed(void **state)
{
    (void)state;
    struct arena a;
    arena_init(&a, 1024);
    Tally__Frame *f;
    const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02};
    assert_int_equal(wire_frame_decode(garbage, sizeof(garbage), &a, &f), WIRE_ERR_MALFORMED);
    /* Valid protobuf, but no message in the oneof. */
    const uint8_t unknown_field[] = {0x78, 0x01};
    assert_int_equal(wire_frame_decode(unknown_field, sizeof(unknown_field), &a, &f),
                     WIRE_ERR_MALFORMED);
    /* A batch whose packed array claims more bytes than there are. */
    uint8_t buf[4096];
    size_t len = encode_batch(buf, 1, 100);
    assert_int_equal(wire_frame_decode(buf + 4, len - 4 - 10, &a, &f), WIRE_ERR_MALFORMED);
    /* Random bytes never crash the decoder. */
    srand(7);
    uint8_t rnd[512];
    for (int round = 0; round < 2000; round++) {
        size_t n = 1 + (size_t)rand() % sizeof(rnd);
        for (size_t i = 0; i < n; i++)
            rnd[i] = (uint8_t)rand();
        enum wire_status st = wire_frame_decode(rnd, n, &a, &f);
        assert_true(st == WIRE_OK || st == WIRE_ERR_MALFORMED);
        arena_reset(&a);
    }
    arena_cleanup(&a);
}

/* The protobuf-c 1.4.1 weaknesses wire_message_check stands in front of (tests/fuzz has the
 * same bytes as corpus regressions). */
static void guard_check(const uint8_t *buf, size_t len, enum wire_status want)
{
    const char *why = NULL;
    enum wire_status got = wire_message_check(&tally__frame__descriptor, buf, len, &why);
    if (got != want)
        fail_msg("wire_message_check: got %d, want %d (%s)", (int)got, (int)want,
                 why ? why : "no reason");
    if (want != WIRE_OK)
        assert_non_null(why);
}

static void test_protobuf_c_guards(void **state)
{
    (void)state;
    /* Field number 0 as a two-byte tag inside Hello: protobuf-c keeps it as unknown. */
    static const uint8_t field0[] = {0x0a, 0x02, 0x80, 0x00};
    guard_check(field0, sizeof(field0), WIRE_ERR_MALFORMED);
    /* A tag past 2^29 - 1 (upstream #506: an undefined shift in protobuf-c). */
    static const uint8_t shift[] = {0xf8, 0xff, 0xff, 0xff, 0x7f, 0x00};
    guard_check(shift, sizeof(shift), WIRE_ERR_MALFORMED);
    /* A bool sent as bytes (Ack.retransmit, wire type 2). */
    static const uint8_t boolbytes[] = {0x22, 0x03, 0x3a, 0x01, 0x78};
    guard_check(boolbytes, sizeof(boolbytes), WIRE_ERR_MALFORMED);
    /* A varint longer than 64 bits (Hello.protocol_version). */
    static const uint8_t longvarint[] = {0x0a, 0x0c, 0x18, 0xff, 0xff, 0xff, 0xff,
                                         0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    guard_check(longvarint, sizeof(longvarint), WIRE_ERR_MALFORMED);
    /* 300 empty Batch sub-messages: protobuf-c unpacks each again (72 x memory). */
    uint8_t flood[600];
    for (size_t i = 0; i < sizeof(flood); i += 2) {
        flood[i] = 0x1a;
        flood[i + 1] = 0x00;
    }
    guard_check(flood, sizeof(flood), WIRE_ERR_MALFORMED);
    /* ... and each of them goes through wire_frame_decode as malformed too. */
    struct arena a;
    arena_init(&a, 4096);
    Tally__Frame *f = NULL;
    assert_int_equal(wire_frame_decode(field0, sizeof(field0), &a, &f), WIRE_ERR_MALFORMED);
    assert_int_equal(wire_frame_decode(flood, sizeof(flood), &a, &f), WIRE_ERR_MALFORMED);
    arena_reset(&a);
    /* Still accepted: an unknown field with the largest field number, inside Ping. */
    static const uint8_t unknown[] = {0x32, 0x06, 0xf8, 0xff, 0xff, 0xff, 0x0f, 0x00};
    guard_check(unknown, sizeof(unknown), WIRE_OK);
    assert_int_equal(wire_frame_decode(unknown, sizeof(unknown), &a, &f), WIRE_OK);
    assert_int_equal(f->msg_case, TALLY__FRAME__MSG_PING);
    arena_cleanup(&a);
}

static void test_error_names(void **state)
{
    (void)state;
    assert_string_equal(wire_error_name(TALLY__ERROR_CODE__ERROR_SEQ_GAP), "ERROR_SEQ_GAP");
    assert_string_equal(wire_error_name((Tally__ErrorCode)999), "ERROR_UNKNOWN");
}

/* ---- voting tables and tally sheets (issue 10) ---- */

static char *tbl_ids[3] = {"t-1", "t-2", "T_3.x"};

static void table_batch(Tally__Batch *b, uint64_t *ballots, uint32_t *projects, uint32_t *vt)
{
    tally__batch__init(b);
    for (size_t i = 0; i < 3; i++) {
        ballots[i] = 100 + i;
        projects[i] = (uint32_t)i + 1;
        vt[i] = (uint32_t)i; /* 0: none, 1, 2 */
    }
    b->seq = 1;
    b->n_ballots = b->n_projects = 3;
    b->ballots = ballots;
    b->projects = projects;
    b->n_tables = 3;
    b->tables = tbl_ids;
    b->n_vote_tables = 3;
    b->vote_tables = vt;
}

static void test_batch_table_faults(void **state)
{
    (void)state;
    uint64_t ballots[3];
    uint32_t projects[3], vt[3];
    Tally__Batch b;
    table_batch(&b, ballots, projects, vt);
    assert_int_equal(wire_batch_check(&b, 10), WIRE_BATCH_OK);
    /* Dictionary without vote_tables: allowed (nothing names a table). */
    b.n_vote_tables = 0;
    assert_int_equal(wire_batch_check(&b, 10), WIRE_BATCH_OK);
    b.n_vote_tables = 2;
    assert_int_equal(wire_batch_check(&b, 10), WIRE_BATCH_TABLES_LEN);
    b.n_vote_tables = 3;
    vt[2] = 4; /* past the 3 entries */
    assert_int_equal(wire_batch_check(&b, 10), WIRE_BATCH_TABLE_INDEX);
    vt[2] = 3; /* the last one: fine */
    assert_int_equal(wire_batch_check(&b, 10), WIRE_BATCH_OK);
    char *bad[3] = {"t-1", "no spaces", "x"};
    b.tables = bad;
    assert_int_equal(wire_batch_check(&b, 10), WIRE_BATCH_TABLE_ID);
    char *empty[3] = {"t-1", "", "x"};
    b.tables = empty;
    assert_int_equal(wire_batch_check(&b, 10), WIRE_BATCH_TABLE_ID);
    char long_id[65];
    memset(long_id, 'a', 64);
    long_id[64] = '\0';
    char *toolong[3] = {"t-1", long_id, "x"};
    b.tables = toolong;
    assert_int_equal(wire_batch_check(&b, 10), WIRE_BATCH_TABLE_ID);
    long_id[63] = '\0'; /* 63: the longest id */
    assert_int_equal(wire_batch_check(&b, 10), WIRE_BATCH_OK);
    /* Too many tables: counted before any id is looked at. */
    char **many = calloc(WIRE_MAX_BATCH_TABLES + 1, sizeof(*many));
    for (size_t i = 0; i <= WIRE_MAX_BATCH_TABLES; i++)
        many[i] = "t";
    b.tables = many;
    b.n_tables = WIRE_MAX_BATCH_TABLES;
    assert_int_equal(wire_batch_check(&b, 10), WIRE_BATCH_OK);
    b.n_tables = WIRE_MAX_BATCH_TABLES + 1;
    assert_int_equal(wire_batch_check(&b, 10), WIRE_BATCH_TOO_MANY_TABLES);
    free(many);
    /* The existing checks come first. */
    table_batch(&b, ballots, projects, vt);
    b.seq = 0;
    b.n_vote_tables = 1;
    assert_int_equal(wire_batch_check(&b, 10), WIRE_BATCH_SEQ_ZERO);
}

static void sheet_init(Tally__Sheet *s, char *id, uint32_t version, uint32_t *projects,
                       uint32_t *votes, size_t n)
{
    tally__sheet__init(s);
    s->table_id = id;
    s->version = version;
    s->n_projects = s->n_votes = n;
    s->projects = projects;
    s->votes = votes;
}

static void test_batch_sheet_faults(void **state)
{
    (void)state;
    uint32_t sp[3] = {1, 2, 3}, sv[3] = {5, 0, 7};
    Tally__Sheet s1, s2;
    sheet_init(&s1, "m-1", 1, sp, sv, 3);
    sheet_init(&s2, "m-2", 2, sp, sv, 2);
    Tally__Sheet *ps[2] = {&s1, &s2};
    Tally__Batch b = TALLY__BATCH__INIT;
    b.seq = 4;
    b.n_sheets = 2;
    b.sheets = ps;
    assert_int_equal(wire_batch_check(&b, 5), WIRE_BATCH_OK);
    /* Rows: 3 + 2 = 5; a limit of 4 is too few. */
    assert_int_equal(wire_batch_check(&b, 4), WIRE_BATCH_TOO_MANY_SHEETS);
    /* A sheet's own faults are the tally's bad_sheet, not the batch's; its longer array
     * counts as its rows. */
    s1.n_votes = 2;
    s1.version = 0;
    assert_int_equal(wire_batch_check(&b, 5), WIRE_BATCH_OK);
    s1.table_id = "bad id";
    assert_int_equal(wire_batch_check(&b, 5), WIRE_BATCH_TABLE_ID);
    s1.table_id = "m-1";
    /* Mixed with anything of a ballot batch. */
    uint64_t ballots[1] = {9};
    uint32_t projects[1] = {1}, vt[1] = {0};
    b.n_ballots = b.n_projects = 1;
    b.ballots = ballots;
    b.projects = projects;
    assert_int_equal(wire_batch_check(&b, 5), WIRE_BATCH_MIXED);
    b.n_ballots = b.n_projects = 0;
    b.n_tables = 1;
    b.tables = tbl_ids;
    assert_int_equal(wire_batch_check(&b, 5), WIRE_BATCH_MIXED);
    b.n_tables = 0;
    b.n_vote_tables = 1;
    b.vote_tables = vt;
    assert_int_equal(wire_batch_check(&b, 5), WIRE_BATCH_MIXED);
    b.n_vote_tables = 0;
    /* 256 sheets at most. */
    Tally__Sheet *many[WIRE_MAX_BATCH_SHEETS + 1];
    Tally__Sheet empty;
    sheet_init(&empty, "e", 1, NULL, NULL, 0);
    for (size_t i = 0; i <= WIRE_MAX_BATCH_SHEETS; i++)
        many[i] = &empty;
    b.sheets = many;
    b.n_sheets = WIRE_MAX_BATCH_SHEETS;
    assert_int_equal(wire_batch_check(&b, 5), WIRE_BATCH_OK);
    b.n_sheets = WIRE_MAX_BATCH_SHEETS + 1;
    assert_int_equal(wire_batch_check(&b, 5), WIRE_BATCH_TOO_MANY_SHEETS);
}

static void test_batch_fault_names(void **state)
{
    (void)state;
    for (int f = WIRE_BATCH_OK; f <= WIRE_BATCH_TOO_MANY_SHEETS; f++) {
        const char *n = wire_batch_fault_name((enum wire_batch_fault)f);
        assert_non_null(n);
        assert_string_not_equal(n, "unknown fault");
    }
    assert_string_equal(wire_batch_fault_name((enum wire_batch_fault)99), "unknown fault");
    assert_string_equal(wire_batch_fault_name(WIRE_BATCH_MIXED),
                        "tally sheets together with ballots, projects or tables");
}

static void hex_of(const uint8_t d[WIRE_DIGEST_BYTES], char out[65])
{
    wire_digest_hex(d, out);
}

static void test_digest_msg_v1_equal(void **state)
{
    (void)state;
    /* Every batch without tables or sheets keeps its v1 digest, nonce or not. */
    srand(11);
    for (int round = 0; round < 50; round++) {
        size_t n = 1 + (size_t)rand() % 40;
        uint64_t ballots[40];
        uint32_t projects[40];
        uint8_t nonce[16];
        for (size_t i = 0; i < n; i++) {
            ballots[i] = (uint64_t)rand() << 32 | (uint64_t)rand();
            projects[i] = (uint32_t)rand();
        }
        for (size_t i = 0; i < sizeof(nonce); i++)
            nonce[i] = (uint8_t)rand();
        Tally__Batch b = TALLY__BATCH__INIT;
        b.seq = (uint64_t)round + 1;
        b.n_ballots = b.n_projects = n;
        b.ballots = ballots;
        b.projects = projects;
        if (round % 2) {
            b.nonce.data = nonce;
            b.nonce.len = sizeof(nonce);
        }
        uint8_t a[WIRE_DIGEST_BYTES], want[WIRE_DIGEST_BYTES];
        wire_batch_digest_msg(&b, a);
        wire_batch_digest(b.seq, b.nonce.data, b.nonce.len, ballots, projects, n, want);
        assert_memory_equal(a, want, WIRE_DIGEST_BYTES);
        /* A dictionary, even an unused one, takes the v2 encoding: another digest. */
        b.n_tables = 1;
        b.tables = tbl_ids;
        wire_batch_digest_msg(&b, a);
        assert_memory_not_equal(a, want, WIRE_DIGEST_BYTES);
    }
}

static void test_digest_msg_v2_golden(void **state)
{
    (void)state;
    uint64_t ballots[3] = {1, 2, 3};
    uint32_t projects[3] = {7, 8, 9}, vt[3] = {0, 1, 2};
    char *tables[2] = {"t-1", "t-2"};
    uint8_t nonce[4] = {1, 2, 3, 4};
    Tally__Batch b = TALLY__BATCH__INIT;
    b.seq = 5;
    b.nonce.data = nonce;
    b.nonce.len = 4;
    b.n_ballots = b.n_projects = 3;
    b.ballots = ballots;
    b.projects = projects;
    b.n_tables = 2;
    b.tables = tables;
    b.n_vote_tables = 3;
    b.vote_tables = vt;
    uint8_t d[WIRE_DIGEST_BYTES], d2[WIRE_DIGEST_BYTES];
    char hex[65];
    /* Pinned: digest.h's v2 encoding, also computed independently with Python's hashlib. */
    wire_batch_digest_msg(&b, d);
    hex_of(d, hex);
    assert_string_equal(hex, "d3fb986b37b02d206b1a3bcd2383e48a9f30d07aec920de8334619a6137ec58e");
    /* Every part counts: a vote_tables entry, a table id. */
    vt[1] = 2;
    wire_batch_digest_msg(&b, d2);
    assert_memory_not_equal(d, d2, WIRE_DIGEST_BYTES);
    vt[1] = 1;
    tables[1] = "t-3";
    wire_batch_digest_msg(&b, d2);
    assert_memory_not_equal(d, d2, WIRE_DIGEST_BYTES);

    uint32_t sp[3] = {9, 3, 5}, sv[3] = {10, 0, 4};
    Tally__Sheet s;
    sheet_init(&s, "m-1", 2, sp, sv, 3);
    s.blank = 1;
    s.null_ballots = 2;
    Tally__Sheet *ps[1] = {&s};
    Tally__Batch c = TALLY__BATCH__INIT;
    c.seq = 6;
    c.nonce.data = nonce;
    c.nonce.len = 4;
    c.n_sheets = 1;
    c.sheets = ps;
    wire_batch_digest_msg(&c, d);
    hex_of(d, hex);
    assert_string_equal(hex, "000e21c55174e06b9b4404d40036af0941e73fb4a89741d0719751f15746da3a");
    /* The batch digest sees row order; the sheet digest does not. */
    uint32_t sp2[3] = {5, 9, 3}, sv2[3] = {4, 10, 0};
    Tally__Sheet s2;
    sheet_init(&s2, "m-1", 2, sp2, sv2, 3);
    s2.blank = 1;
    s2.null_ballots = 2;
    ps[0] = &s2;
    wire_batch_digest_msg(&c, d2);
    assert_memory_not_equal(d, d2, WIRE_DIGEST_BYTES);
}

static void test_sheet_digest(void **state)
{
    (void)state;
    uint32_t sp[3] = {9, 3, 5}, sv[3] = {10, 0, 4};
    Tally__Sheet s;
    sheet_init(&s, "m-1", 2, sp, sv, 3);
    s.blank = 1;
    s.null_ballots = 2;
    uint8_t d[WIRE_DIGEST_BYTES], d2[WIRE_DIGEST_BYTES];
    char hex[65];
    /* Pinned: docs/consultation.md "Content" over rows (5,4), (9,10), checked in Python. */
    wire_sheet_digest(&s, d);
    hex_of(d, hex);
    assert_string_equal(hex, "faea80464adf1a9862d27b15b0a9609defbeda1508805e03f7d7477bbcf035e9");
    /* Row order and zero rows do not matter. */
    uint32_t sp2[2] = {5, 9}, sv2[2] = {4, 10};
    wire_sheet_digest_rows("m-1", 2, 1, 2, sp2, sv2, 2, d2);
    assert_memory_equal(d, d2, WIRE_DIGEST_BYTES);
    uint32_t sp3[4] = {9, 77, 5, 3}, sv3[4] = {10, 0, 4, 0};
    wire_sheet_digest_rows("m-1", 2, 1, 2, sp3, sv3, 4, d2);
    assert_memory_equal(d, d2, WIRE_DIGEST_BYTES);
    /* Everything else does. */
    wire_sheet_digest_rows("m-1", 3, 1, 2, sp2, sv2, 2, d2);
    assert_memory_not_equal(d, d2, WIRE_DIGEST_BYTES);
    wire_sheet_digest_rows("m-2", 2, 1, 2, sp2, sv2, 2, d2);
    assert_memory_not_equal(d, d2, WIRE_DIGEST_BYTES);
    wire_sheet_digest_rows("m-1", 2, 2, 1, sp2, sv2, 2, d2);
    assert_memory_not_equal(d, d2, WIRE_DIGEST_BYTES);
    sv2[0] = 5;
    wire_sheet_digest_rows("m-1", 2, 1, 2, sp2, sv2, 2, d2);
    assert_memory_not_equal(d, d2, WIRE_DIGEST_BYTES);
    /* Unequal lengths: the first min(n) pairs. */
    s.n_votes = 1; /* (9,10) only */
    wire_sheet_digest(&s, d);
    wire_sheet_digest_rows("m-1", 2, 1, 2, sp, sv, 1, d2);
    assert_memory_equal(d, d2, WIRE_DIGEST_BYTES);
    /* Many rows (the sorted copy on the heap), in two orders. */
    enum { N = 1000 };
    uint32_t *p = calloc(N, sizeof(*p)), *v = calloc(N, sizeof(*v));
    uint32_t *rp = calloc(N, sizeof(*rp)), *rv = calloc(N, sizeof(*rv));
    for (uint32_t i = 0; i < N; i++) {
        p[i] = i * 7 + 1;
        v[i] = i % 5;
        rp[N - 1 - i] = p[i];
        rv[N - 1 - i] = v[i];
    }
    wire_sheet_digest_rows("big", 1, 0, 0, p, v, N, d);
    wire_sheet_digest_rows("big", 1, 0, 0, rp, rv, N, d2);
    assert_memory_equal(d, d2, WIRE_DIGEST_BYTES);
    free(p);
    free(v);
    free(rp);
    free(rv);
}

/* A Frame{Batch{sheets}} as libtally encodes it: passes the scan and decodes. */
static size_t encode_sheet_frame(uint8_t *buf, size_t n_sheets)
{
    Tally__Sheet *s = calloc(n_sheets, sizeof(*s));
    Tally__Sheet **ps = calloc(n_sheets, sizeof(*ps));
    uint32_t sp[2] = {1, 2}, sv[2] = {3, 4};
    char id[32];
    snprintf(id, sizeof(id), "table-x");
    for (size_t i = 0; i < n_sheets; i++) {
        sheet_init(&s[i], id, (uint32_t)i + 1, sp, sv, 2);
        s[i].blank = 1;
        s[i].null_ballots = 1;
        ps[i] = &s[i];
    }
    Tally__Batch b = TALLY__BATCH__INIT;
    b.seq = 1;
    b.n_sheets = n_sheets;
    b.sheets = ps;
    Tally__Frame f = TALLY__FRAME__INIT;
    f.msg_case = TALLY__FRAME__MSG_BATCH;
    f.batch = &b;
    size_t len = wire_frame_encode(&f, buf);
    free(ps);
    free(s);
    return len;
}

static void test_scan_sheets(void **state)
{
    (void)state;
    /* 256 sheets, each with its own table_id, version, blank and null: 1024 non-repeated
     * fields, each the first of its instance, all fine. */
    uint8_t *buf = malloc(1 << 16);
    size_t len = encode_sheet_frame(buf, WIRE_MAX_BATCH_SHEETS);
    guard_check(buf + 4, len - 4, WIRE_OK);
    struct arena a;
    arena_init(&a, 4096);
    Tally__Frame *f = NULL;
    assert_int_equal(wire_frame_decode(buf + 4, len - 4, &a, &f), WIRE_OK);
    assert_int_equal(f->batch->n_sheets, WIRE_MAX_BATCH_SHEETS);
    assert_string_equal(f->batch->sheets[255]->table_id, "table-x");
    assert_int_equal(f->batch->sheets[255]->version, 256);
    assert_int_equal(wire_batch_check(f->batch, 1000), WIRE_BATCH_OK);
    arena_reset(&a);
    /* One Sheet whose version is sent 300 times: the repetitions use the budget. */
    size_t n = 0;
    uint8_t *p = malloc(4096);
    p[n++] = 0x1a; /* Frame.batch */
    size_t at = n;
    n += 2;        /* a 2-byte length, filled below */
    p[n++] = 0x3a; /* Batch.sheets */
    size_t at2 = n;
    n += 2;
    for (int i = 0; i < 300; i++) {
        p[n++] = 0x10; /* Sheet.version */
        p[n++] = 0x01;
    }
    size_t inner = n - at2 - 2;
    p[at2] = (uint8_t)(0x80 | (inner & 0x7f));
    p[at2 + 1] = (uint8_t)(inner >> 7);
    size_t outer = n - at - 2;
    p[at] = (uint8_t)(0x80 | (outer & 0x7f));
    p[at + 1] = (uint8_t)(outer >> 7);
    guard_check(p, n, WIRE_ERR_MALFORMED);
    /* 5000 empty Sheets ("3a 00"): each is a struct in the arena; past
     * WIRE_SCAN_MAX_MESSAGES sub-messages the scan refuses. */
    size_t big = 3 + 2 * 5000;
    uint8_t *q = malloc(big + 8);
    size_t m = 0, body = 2 * 5000;
    q[m++] = 0x1a;
    q[m++] = (uint8_t)(0x80 | (body & 0x7f));
    q[m++] = (uint8_t)(body >> 7);
    for (int i = 0; i < 5000; i++) {
        q[m++] = 0x3a;
        q[m++] = 0x00;
    }
    guard_check(q, m, WIRE_ERR_MALFORMED);
    /* 4000 of them still pass (and then fail wire_batch_check: too many sheets). */
    body = 2 * 4000;
    m = 0;
    q[m++] = 0x1a;
    q[m++] = (uint8_t)(0x80 | (body & 0x7f));
    q[m++] = (uint8_t)(body >> 7);
    for (int i = 0; i < 4000; i++) {
        q[m++] = 0x3a;
        q[m++] = 0x00;
    }
    guard_check(q, m, WIRE_OK);
    assert_int_equal(wire_frame_decode(q, m, &a, &f), WIRE_OK);
    f->batch->seq = 1;
    assert_int_equal(wire_batch_check(f->batch, 100000), WIRE_BATCH_TOO_MANY_SHEETS);
    arena_cleanup(&a);
    free(q);
    free(p);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_truncated_needs_more),
        cmocka_unit_test(test_oversized_refused_from_header),
        cmocka_unit_test(test_zero_length_is_malformed),
        cmocka_unit_test(test_garbage_is_malformed),
        cmocka_unit_test(test_error_names),
        cmocka_unit_test(test_protobuf_c_guards),
        cmocka_unit_test(test_batch_table_faults),
        cmocka_unit_test(test_batch_sheet_faults),
        cmocka_unit_test(test_batch_fault_names),
        cmocka_unit_test(test_digest_msg_v1_equal),
        cmocka_unit_test(test_digest_msg_v2_golden),
        cmocka_unit_test(test_sheet_digest),
        cmocka_unit_test(test_scan_sheets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
