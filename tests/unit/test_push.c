/* Unit tests of tally-push's pure pieces: CSV vote lines, ballot tokens (golden values
 * checked against Python's hashlib.blake2b(digest_size=8, key=...)), key files, cursors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "push/push.h"
#include "tally/client.h"

/* Parses text (copied, since parsing unquotes in place) and returns its kind. */
static enum push_line_kind parse(const char *text, bool first, struct push_line *out, char *buf,
                                 size_t buf_len)
{
    size_t len = strlen(text);
    assert_true(len < buf_len);
    memcpy(buf, text, len + 1);
    return push_line_parse(buf, len, first, out);
}

static void assert_vote(const char *text, bool first, const char *voter, uint32_t project)
{
    char buf[256];
    struct push_line pl;
    assert_int_equal(parse(text, first, &pl, buf, sizeof(buf)), PUSH_LINE_VOTE);
    assert_int_equal(pl.voter_len, strlen(voter));
    assert_memory_equal(pl.voter, voter, pl.voter_len);
    assert_int_equal(pl.project, project);
}

static void assert_malformed(const char *text, bool first)
{
    char buf[256];
    struct push_line pl;
    assert_int_equal(parse(text, first, &pl, buf, sizeof(buf)), PUSH_LINE_MALFORMED);
    assert_non_null(pl.reason);
}

static void test_line_plain(void **state)
{
    (void)state;
    assert_vote("V-0001,17\n", false, "V-0001", 17);
    assert_vote("V-0001,17\r\n", false, "V-0001", 17);
    assert_vote("V-0001,17", false, "V-0001", 17); /* last line without newline */
    assert_vote("V-0001,0\n", false, "V-0001", 0);
    assert_vote("V-0001,4294967295\n", false, "V-0001", 4294967295u);
    assert_vote("V-0001,007\n", false, "V-0001", 7);
    /* The voter id is taken byte for byte: spaces are part of it. */
    assert_vote(" V 1 ,3\n", false, " V 1 ", 3);
    /* A lone \r inside the line is data, only the line ending is stripped. */
    assert_vote("a\rb,3\r\n", false, "a\rb", 3);
}

static void test_line_quoted(void **state)
{
    (void)state;
    assert_vote("\"Pérez, José\",5\n", false, "Pérez, José", 5);
    assert_vote("\"say \"\"hi\"\"\",5\r\n", false, "say \"hi\"", 5);
    assert_vote("\"\"\"\",5\n", false, "\"", 5);
    assert_vote("V1,\"12\"\n", false, "V1", 12);
    assert_vote("\"V1\",\"12\"", false, "V1", 12);
    assert_malformed("\"V1,12\n", false);    /* unterminated */
    assert_malformed("\"V1\"x,12\n", false); /* text after the closing quote */
    assert_malformed("\"\",12\n", false);    /* empty once unquoted */
    assert_malformed("V1,\"12\"3\n", false);
}

static void test_line_header(void **state)
{
    (void)state;
    char buf[256];
    struct push_line pl;
    assert_int_equal(parse("voter,project_id\n", true, &pl, buf, sizeof(buf)), PUSH_LINE_HEADER);
    assert_int_equal(parse("voter,project_id\r\n", true, &pl, buf, sizeof(buf)), PUSH_LINE_HEADER);
    assert_int_equal(parse("\"voter\",\"project\"\n", true, &pl, buf, sizeof(buf)),
                     PUSH_LINE_HEADER);
    assert_int_equal(parse("voter,\n", true, &pl, buf, sizeof(buf)), PUSH_LINE_HEADER);
    /* With a byte-order mark in front. */
    assert_int_equal(parse("\xEF\xBB\xBFvoter,project\n", true, &pl, buf, sizeof(buf)),
                     PUSH_LINE_HEADER);
    assert_vote("\xEF\xBB\xBFV-1,4\n", true, "V-1", 4);
    /* A first line whose second field is a number is data. */
    assert_vote("voter,12\n", true, "voter", 12);
    /* Only the first line can be a header. */
    assert_malformed("voter,project_id\n", false);
    /* A first line that is not two fields is malformed, not a header. */
    assert_malformed("voter\n", true);
    assert_malformed("voter,project,extra\n", true);
    /* A number too large for a uint32 is still a number: malformed, not a header. */
    assert_malformed("V1,4294967296\n", true);
}

static void test_line_malformed(void **state)
{
    (void)state;
    assert_malformed("V1\n", false);
    assert_malformed("V1,2,3\n", false);
    assert_malformed("V1,2,\n", false);
    assert_malformed(",12\n", false);
    assert_malformed("V1,\n", false);
    assert_malformed("V1,-1\n", false);
    assert_malformed("V1,+1\n", false);
    assert_malformed("V1, 1\n", false);
    assert_malformed("V1,1 \n", false);
    assert_malformed("V1,1.0\n", false);
    assert_malformed("V1,0x10\n", false);
    assert_malformed("V1,4294967296\n", false);
    assert_malformed("V1,99999999999999999999999\n", false);
    char buf[16];
    struct push_line pl;
    assert_int_equal(parse("\n", false, &pl, buf, sizeof(buf)), PUSH_LINE_BLANK);
    assert_int_equal(parse("\r\n", false, &pl, buf, sizeof(buf)), PUSH_LINE_BLANK);
    assert_int_equal(parse("", true, &pl, buf, sizeof(buf)), PUSH_LINE_BLANK);
}

static void test_line_embedded_nul(void **state)
{
    (void)state;
    char line[] = {'a', '\0', 'b', ',', '9', '\n'};
    struct push_line pl;
    assert_int_equal(push_line_parse(line, sizeof(line), false, &pl), PUSH_LINE_VOTE);
    assert_int_equal(pl.voter_len, 3);
    assert_memory_equal(pl.voter, "a\0b", 3);
}

static void test_token_golden(void **state)
{
    (void)state;
    uint8_t key[PUSH_KEY_BYTES];
    for (unsigned i = 0; i < PUSH_KEY_BYTES; i++)
        key[i] = (uint8_t)i;
    /* Values from hashlib.blake2b(voter, digest_size=8, key=key), read little-endian. */
    assert_true(push_token(key, "V-0001", 6) == 0x5e52c3bdc9949b68ull);
    assert_true(push_token(key, "", 0) == 0xda23b69e45e0fbb6ull);
    const char *v = "José Pérez, \"Jr\"";
    assert_true(push_token(key, v, strlen(v)) == 0x595be2290d81583bull);
    assert_true(push_token(push_demo_key, "V-0001", 6) == 0x7d5baf6ae3719184ull);
    /* Same input, same token; another key, another token. */
    assert_true(push_token(key, "V-0001", 6) == push_token(key, "V-0001", 6));
    assert_true(push_token(key, "V-0001", 6) != push_token(push_demo_key, "V-0001", 6));
    assert_true(push_token(key, "V-0001", 6) != push_token(key, "V-0002", 6));
}

static void test_key_parse(void **state)
{
    (void)state;
    uint8_t key[PUSH_KEY_BYTES], want[PUSH_KEY_BYTES];
    for (unsigned i = 0; i < PUSH_KEY_BYTES; i++)
        want[i] = (uint8_t)(0xA0 + i);
    assert_int_equal(push_key_parse(want, sizeof(want), key), 0);
    assert_memory_equal(key, want, sizeof(want));

    char hex[80];
    for (unsigned i = 0; i < PUSH_KEY_BYTES; i++)
        snprintf(hex + 2 * i, 3, "%02x", want[i]);
    memset(key, 0, sizeof(key));
    assert_int_equal(push_key_parse((const uint8_t *)hex, 64, key), 0);
    assert_memory_equal(key, want, sizeof(want));
    strcpy(hex + 64, "\n");
    memset(key, 0, sizeof(key));
    assert_int_equal(push_key_parse((const uint8_t *)hex, 65, key), 0);
    assert_memory_equal(key, want, sizeof(want));
    strcpy(hex + 64, "\r\n");
    assert_int_equal(push_key_parse((const uint8_t *)hex, 66, key), 0);
    for (int i = 0; i < 64; i++)
        if (hex[i] >= 'a' && hex[i] <= 'f')
            hex[i] = (char)(hex[i] - 'a' + 'A');
    memset(key, 0, sizeof(key));
    assert_int_equal(push_key_parse((const uint8_t *)hex, 64, key), 0);
    assert_memory_equal(key, want, sizeof(want));

    /* Everything else is refused and leaves the key alone. */
    memset(key, 0x55, sizeof(key));
    uint8_t before[PUSH_KEY_BYTES];
    memcpy(before, key, sizeof(key));
    assert_int_equal(push_key_parse((const uint8_t *)hex, 63, key), -1);
    strcpy(hex + 64, "\n\n");
    assert_int_equal(push_key_parse((const uint8_t *)hex, 66, key), -1);
    strcpy(hex + 64, " ");
    assert_int_equal(push_key_parse((const uint8_t *)hex, 65, key), -1);
    hex[10] = 'g';
    assert_int_equal(push_key_parse((const uint8_t *)hex, 64, key), -1);
    assert_int_equal(push_key_parse(want, 31, key), -1);
    assert_int_equal(push_key_parse(want, 0, key), -1);
    uint8_t raw33[33] = {0};
    assert_int_equal(push_key_parse(raw33, 33, key), -1);
    assert_memory_equal(key, before, sizeof(key));
}

static void test_cursor_roundtrip(void **state)
{
    (void)state;
    struct push_cursor c = {.offset = 123456789, .line = 9876, .malformed = 3, .prefix_len = 4096};
    push_prefix_hash("abc", 3, c.prefix_hash);
    uint8_t blob[PUSH_CURSOR_BYTES];
    push_cursor_encode(&c, blob);
    struct push_cursor d;
    assert_int_equal(push_cursor_decode(blob, sizeof(blob), &d), 0);
    assert_true(d.offset == c.offset && d.line == c.line && d.malformed == c.malformed);
    assert_int_equal(d.prefix_len, 4096);
    assert_memory_equal(d.prefix_hash, c.prefix_hash, PUSH_PREFIX_HASH_BYTES);

    assert_int_equal(push_cursor_decode(blob, sizeof(blob) - 1, &d), -1);
    blob[0] ^= 1;
    assert_int_equal(push_cursor_decode(blob, sizeof(blob), &d), -1);
    /* Short input: the prefix covers exactly the bytes consumed. */
    c.offset = 100;
    c.prefix_len = 99;
    push_cursor_encode(&c, blob);
    assert_int_equal(push_cursor_decode(blob, sizeof(blob), &d), -1);
    c.prefix_len = 100;
    push_cursor_encode(&c, blob);
    assert_int_equal(push_cursor_decode(blob, sizeof(blob), &d), 0);
}

static void test_exit_for_status(void **state)
{
    (void)state;
    assert_int_equal(push_exit_for_status(TALLY_CLIENT_OK), 0);
    assert_int_equal(push_exit_for_status(TALLY_CLIENT_ERR_AUTH), PUSH_EXIT_AUTH);
    assert_int_equal(push_exit_for_status(TALLY_CLIENT_ERR_DISABLED), PUSH_EXIT_DISABLED);
    assert_int_equal(push_exit_for_status(TALLY_CLIENT_ERR_REFUSED), PUSH_EXIT_FATAL);
    assert_int_equal(push_exit_for_status(TALLY_CLIENT_ERR_SEQ_CONFLICT), PUSH_EXIT_FATAL);
    assert_int_equal(PUSH_EXIT_AUTH, 4);
    assert_int_equal(PUSH_EXIT_DISABLED, 5);
}

static void test_summary_line(void **state)
{
    (void)state;
    char buf[256];
    push_summary_format(buf, sizeof(buf), 3, 30, 25, 2, 3, 1);
    /* The fields scripts parse come first, unchanged; not_allowed is appended. */
    assert_string_equal(buf, "batches 3 votes 30 accepted 25 duplicate 2 rejected 3 not_allowed 1");
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_plain),        cmocka_unit_test(test_line_quoted),
        cmocka_unit_test(test_line_header),       cmocka_unit_test(test_line_malformed),
        cmocka_unit_test(test_line_embedded_nul), cmocka_unit_test(test_token_golden),
        cmocka_unit_test(test_key_parse),         cmocka_unit_test(test_cursor_roundtrip),
        cmocka_unit_test(test_exit_for_status),   cmocka_unit_test(test_summary_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
