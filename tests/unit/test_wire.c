/* wire: framing and decoding, including the ways a peer can get it wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/arena.h"
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
