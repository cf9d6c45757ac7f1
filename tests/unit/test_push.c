/* Unit tests of tally-push's pure pieces: CSV vote lines (with their table), ballot tokens
 * (golden values checked against Python's hashlib.blake2b(digest_size=8, key=...)), key
 * files, cursors, the table dictionary, sheets lines, sheets and their packing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "push/push.h"
#include "push/sheets.h"
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
    /* A first line that is not two or three fields is malformed, not a header. */
    assert_malformed("voter\n", true);
    assert_malformed("voter,project,table,extra\n", true);
    assert_int_equal(parse("voter,project,table\n", true, &pl, buf, sizeof(buf)), PUSH_LINE_HEADER);
    /* A number too large for a uint32 is still a number: malformed, not a header. */
    assert_malformed("V1,4294967296\n", true);
}

static void test_line_malformed(void **state)
{
    (void)state;
    assert_malformed("V1\n", false);
    assert_malformed("V1,2,3,4\n", false); /* 3 fields: a table id (test_line_table) */
    assert_malformed("V1,2,,\n", false);
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

/* ---- votes naming their table, and tally sheets (issue 10) ---- */

static void test_line_table(void **state)
{
    (void)state;
    char buf[256];
    struct push_line pl;
    assert_int_equal(parse("V1,7,mesa-01\n", false, &pl, buf, sizeof(buf)), PUSH_LINE_VOTE);
    assert_int_equal(pl.project, 7);
    assert_int_equal(pl.table_len, 7);
    assert_memory_equal(pl.table, "mesa-01", 7);
    /* An empty third field: no table. */
    assert_int_equal(parse("V1,7,\r\n", false, &pl, buf, sizeof(buf)), PUSH_LINE_VOTE);
    assert_int_equal(pl.table_len, 0);
    assert_int_equal(parse("V1,7\n", false, &pl, buf, sizeof(buf)), PUSH_LINE_VOTE);
    assert_null(pl.table);
    assert_int_equal(parse("V1,7,\"T.2_x\"", false, &pl, buf, sizeof(buf)), PUSH_LINE_VOTE);
    assert_int_equal(pl.table_len, 5);
    /* The three-column header, as the two-column one. */
    assert_int_equal(parse("voter,project_id,table_id\n", true, &pl, buf, sizeof(buf)),
                     PUSH_LINE_HEADER);
    assert_int_equal(parse("V1,7,mesa 1\n", false, &pl, buf, sizeof(buf)), PUSH_LINE_MALFORMED);
    assert_string_equal(pl.reason, "table id must be 1-63 characters of [A-Za-z0-9._-]");
    char longer[128];
    snprintf(longer, sizeof(longer), "V1,7,%064d\n", 0);
    assert_int_equal(parse(longer, false, &pl, buf, sizeof(buf)), PUSH_LINE_MALFORMED);
    assert_int_equal(parse("V1,7,m,x\n", false, &pl, buf, sizeof(buf)), PUSH_LINE_MALFORMED);
    assert_string_equal(pl.reason,
                        "expected 2 or 3 fields (voter,project_id[,table_id]), found more");
    assert_true(push_table_id_is_valid("a", 1));
    assert_false(push_table_id_is_valid("", 0));
    assert_false(push_table_id_is_valid("a/b", 3));
}

static void test_tables_dictionary(void **state)
{
    (void)state;
    struct push_tables t;
    push_tables_init(&t);
    assert_int_equal(push_tables_index(&t, "m-1", 3), 1);
    assert_int_equal(push_tables_index(&t, "m-2", 3), 2);
    assert_int_equal(push_tables_index(&t, "m-1xyz", 3), 1); /* by length, not NUL */
    assert_string_equal(t.ids[1], "m-2");
    char id[16];
    for (unsigned i = 3; i <= PUSH_TABLES_PER_BATCH; i++) {
        int n = snprintf(id, sizeof(id), "t%u", i);
        assert_int_equal(push_tables_index(&t, id, (size_t)n), i);
    }
    assert_int_equal(push_tables_index(&t, "one-more", 8), 0); /* full */
    assert_int_equal(push_tables_index(&t, "t77", 3), 77);     /* known ones still found */
    push_tables_reset(&t);
    assert_int_equal(push_tables_index(&t, "one-more", 8), 1);
    push_tables_cleanup(&t);
}

static enum push_sheet_line_kind sheet_parse(const char *text, bool first,
                                             struct push_sheet_line *out)
{
    static char buf[256];
    size_t len = strlen(text);
    assert_true(len < sizeof(buf));
    memcpy(buf, text, len + 1);
    return push_sheet_line_parse(buf, len, first, out);
}

static void assert_sheet_bad(const char *text, const char *reason)
{
    struct push_sheet_line l;
    assert_int_equal(sheet_parse(text, false, &l), PUSH_SHEET_MALFORMED);
    assert_string_equal(l.reason, reason);
}

static void test_sheet_lines(void **state)
{
    (void)state;
    struct push_sheet_line l;
    assert_int_equal(sheet_parse("table_id,version,project_id,votes\n", true, &l),
                     PUSH_SHEET_HEADER);
    assert_int_equal(sheet_parse("\xEF\xBB\xBFtable_id,version,project_id,votes\r\n", true, &l),
                     PUSH_SHEET_HEADER);
    /* Without the header: refused on line 1. */
    assert_int_equal(sheet_parse("m-1,1,7,10\n", true, &l), PUSH_SHEET_MALFORMED);
    assert_string_equal(l.reason,
                        "a sheets file starts with the header table_id,version,project_id,votes");
    assert_int_equal(sheet_parse("voter,project_id\n", true, &l), PUSH_SHEET_MALFORMED);
    assert_int_equal(sheet_parse("m-1,2,7,10\n", false, &l), PUSH_SHEET_ROW);
    assert_string_equal(l.table_id, "m-1");
    assert_int_equal(l.version, 2);
    assert_int_equal(l.kind, PUSH_SHEET_PROJECT);
    assert_int_equal(l.project, 7);
    assert_int_equal(l.votes, 10);
    assert_int_equal(sheet_parse("m-1,2,blank,3", false, &l), PUSH_SHEET_ROW);
    assert_int_equal(l.kind, PUSH_SHEET_BLANK_ROW);
    assert_int_equal(l.votes, 3);
    assert_int_equal(sheet_parse("\"m-1\",2,null,2147483647\r\n", false, &l), PUSH_SHEET_ROW);
    assert_int_equal(l.kind, PUSH_SHEET_NULL_ROW);
    assert_int_equal(l.votes, 2147483647u);
    assert_int_equal(sheet_parse("\n", false, &l), PUSH_SHEET_BLANK);
    assert_sheet_bad("m 1,1,7,10\n", "table id must be 1-63 characters of [A-Za-z0-9._-]");
    assert_sheet_bad(",1,7,10\n", "table id must be 1-63 characters of [A-Za-z0-9._-]");
    assert_sheet_bad("m-1,0,7,10\n", "version must be a number from 1 to 4294967295");
    assert_sheet_bad("m-1,v2,7,10\n", "version must be a number from 1 to 4294967295");
    assert_sheet_bad("m-1,4294967296,7,10\n", "version must be a number from 1 to 4294967295");
    assert_sheet_bad("m-1,1,Blank,10\n",
                     "project_id must be a project id (0 to 4294967295), blank or null");
    assert_sheet_bad("m-1,1,-3,10\n",
                     "project_id must be a project id (0 to 4294967295), blank or null");
    assert_sheet_bad("m-1,1,7,2147483648\n", "votes must be a number from 0 to 2147483647");
    assert_sheet_bad("m-1,1,7,\n", "votes must be a number from 0 to 2147483647");
    assert_sheet_bad("m-1,1,7,+1\n", "votes must be a number from 0 to 2147483647");
    assert_sheet_bad("m-1,1,7\n", "expected 4 fields (table_id,version,project_id,votes), "
                                  "found fewer");
    assert_sheet_bad("m-1,1,7,1,2\n", "expected 4 fields (table_id,version,project_id,votes), "
                                      "found more");
    assert_sheet_bad("\"m-1,1,7,1\n", "unterminated quoted field");
}

static void add_row(struct push_sheet_set *s, const char *text, uint64_t line, int want)
{
    struct push_sheet_line l;
    assert_int_equal(sheet_parse(text, false, &l), PUSH_SHEET_ROW);
    char err[256] = "";
    assert_int_equal(push_sheet_set_add(s, &l, line, err, sizeof(err)), want);
    if (want < 0)
        assert_non_null(strstr(err, "given twice"));
}

static void test_sheet_set(void **state)
{
    (void)state;
    struct push_sheet_set s;
    push_sheet_set_init(&s);
    /* Rows of one (table, version) are one sheet wherever they stand. */
    add_row(&s, "m-1,1,7,10", 2, 0);
    add_row(&s, "m-2,1,7,4", 3, 0);
    add_row(&s, "m-1,2,7,11", 4, 0); /* another version: another sheet */
    add_row(&s, "m-1,1,8,3", 5, 0);
    add_row(&s, "m-1,1,blank,2", 6, 0);
    add_row(&s, "m-1,1,null,1", 7, 0);
    add_row(&s, "m-2,1,blank,0", 8, 0);
    add_row(&s, "m-1,1,blank,5", 9, -1); /* blank twice */
    add_row(&s, "m-2,1,null,0", 10, 0);
    add_row(&s, "m-2,1,null,9", 11, -1); /* null twice, even after 0 */
    assert_int_equal(s.n, 3);
    assert_string_equal(s.sheets[0].table_id, "m-1");
    assert_int_equal(s.sheets[0].version, 1);
    assert_int_equal(s.sheets[0].n, 2);
    assert_int_equal(s.sheets[0].projects[1], 8);
    assert_int_equal(s.sheets[0].votes[1], 3);
    assert_int_equal(s.sheets[0].blank, 2);
    assert_int_equal(s.sheets[0].null_ballots, 1);
    assert_int_equal(s.sheets[0].line, 2);
    assert_string_equal(s.sheets[1].table_id, "m-2");
    assert_int_equal(s.sheets[2].version, 2);
    assert_int_equal(s.rows, 4);
    assert_int_equal(push_sheet_set_widest(&s), 0);
    struct push_sheet_line l;
    char err[256];
    assert_int_equal(sheet_parse("m-1,1,blank,5", false, &l), PUSH_SHEET_ROW);
    assert_int_equal(push_sheet_set_add(&s, &l, 12, err, sizeof(err)), -1);
    assert_string_equal(err, "blank given twice for sheet m-1 version 1 (first on line 6)");
    /* Packing: rows bound a batch, one sheet at least. */
    assert_int_equal(push_sheet_set_pack(&s, 0, 100), 3);
    assert_int_equal(push_sheet_set_pack(&s, 0, 3), 2);
    assert_int_equal(push_sheet_set_pack(&s, 0, 1), 1);
    assert_int_equal(push_sheet_set_pack(&s, 2, 1), 1);
    push_sheet_set_cleanup(&s);
    /* Many sheets: 256 to a batch, the index grows. */
    push_sheet_set_init(&s);
    char row[64];
    for (int i = 0; i < 1000; i++) {
        snprintf(row, sizeof(row), "t%d,1,1,%d", i, i);
        add_row(&s, row, (uint64_t)i + 2, 0);
    }
    for (int i = 0; i < 1000; i++) {
        snprintf(row, sizeof(row), "t%d,1,2,1", i);
        add_row(&s, row, (uint64_t)i + 1002, 0);
    }
    assert_int_equal(s.n, 1000);
    assert_int_equal(s.sheets[999].n, 2);
    assert_int_equal(push_sheet_set_pack(&s, 0, 100000), PUSH_SHEETS_PER_BATCH);
    assert_int_equal(push_sheet_set_pack(&s, 768, 100000), 232);
    push_sheet_set_cleanup(&s);
}

static void test_sheet_cursor_and_summary(void **state)
{
    (void)state;
    uint8_t h[PUSH_FILE_HASH_BYTES], h2[PUSH_FILE_HASH_BYTES], buf[PUSH_SHEET_CURSOR_BYTES];
    for (size_t i = 0; i < sizeof(h); i++)
        h[i] = (uint8_t)i;
    push_sheet_cursor_encode(300, h, buf);
    uint64_t done;
    assert_int_equal(push_sheet_cursor_decode(buf, sizeof(buf), &done, h2), 0);
    assert_int_equal(done, 300);
    assert_memory_equal(h, h2, sizeof(h));
    assert_int_equal(push_sheet_cursor_decode(buf, sizeof(buf) - 1, &done, h2), -1);
    /* A vote run's cursor is not a sheets cursor, and the other way round. */
    struct push_cursor vc = {.offset = 10, .line = 2, .prefix_len = 10};
    uint8_t vbuf[PUSH_CURSOR_BYTES];
    push_cursor_encode(&vc, vbuf);
    assert_int_equal(push_sheet_cursor_decode(vbuf, sizeof(vbuf), &done, h2), -1);
    struct push_cursor back;
    assert_int_equal(push_cursor_decode(buf, sizeof(buf), &back), -1);

    char line[256];
    push_summary_format(line, sizeof(line), 2, 0, 0, 0, 0, 0);
    uint64_t reasons[10] = {0};
    reasons[8] = 2;
    reasons[9] = 1;
    push_summary_sheets_append(line, sizeof(line), 7, 3, 1, 3, reasons);
    assert_string_equal(line, "batches 2 votes 0 accepted 0 duplicate 0 rejected 0 not_allowed 0 "
                              "sheets 7 accepted 3 duplicate 1 rejected 3 superseded 2 "
                              "bad_sheet 1");
    /* Truncated, never overrun. */
    char small[40] = "batches 1";
    int n = push_summary_sheets_append(small, sizeof(small), 7, 3, 1, 3, reasons);
    assert_true(n > (int)sizeof(small));
    assert_int_equal(strlen(small), sizeof(small) - 1);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_plain),
        cmocka_unit_test(test_line_quoted),
        cmocka_unit_test(test_line_header),
        cmocka_unit_test(test_line_malformed),
        cmocka_unit_test(test_line_embedded_nul),
        cmocka_unit_test(test_token_golden),
        cmocka_unit_test(test_key_parse),
        cmocka_unit_test(test_cursor_roundtrip),
        cmocka_unit_test(test_exit_for_status),
        cmocka_unit_test(test_summary_line),
        cmocka_unit_test(test_line_table),
        cmocka_unit_test(test_tables_dictionary),
        cmocka_unit_test(test_sheet_lines),
        cmocka_unit_test(test_sheet_set),
        cmocka_unit_test(test_sheet_cursor_and_summary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
