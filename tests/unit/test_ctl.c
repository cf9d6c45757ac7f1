/* Unit tests for the ctl library: the registry CSV reader (RFC 4180 quoting, CRLF,
 * line numbers across embedded newlines, header with or without min_votes, integers,
 * UTF-8), the voting-table CSV reader, text helpers, and the circuit lists of add-collector
 * --circuits and tallyctl collectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/collectors.h"
#include "ctl/registry_csv.h"
#include "ctl/tables_csv.h"
#include "ctl/text.h"

#define HDR "project_id,project_name,circuit_id,circuit_name,state,seats"

static struct ctl_registry *open_text(const char *text)
{
    return ctl_registry_new_buffer(text, strlen(text));
}

/* Reads every record, expecting them all to parse; returns the count. */
static size_t count_ok(const char *text)
{
    struct ctl_registry *r = open_text(text);
    struct ctl_registry_record rec;
    size_t n = 0;
    int got;
    while ((got = ctl_registry_next(r, &rec)) == 1)
        n++;
    if (got != 0)
        fail_msg("unexpected error: %s", ctl_registry_error(r));
    ctl_registry_free(r);
    return n;
}

/* Expects the input to fail on the given line with a reason containing needle. */
static void expect_error(const char *text, uint64_t line, const char *needle)
{
    struct ctl_registry *r = open_text(text);
    struct ctl_registry_record rec;
    int got;
    while ((got = ctl_registry_next(r, &rec)) == 1)
        ;
    assert_int_equal(got, -1);
    if (ctl_registry_error_line(r) != line || !strstr(ctl_registry_error(r), needle))
        fail_msg("want line %llu with \"%s\", got \"%s\"", (unsigned long long)line, needle,
                 ctl_registry_error(r));
    /* Errors are sticky. */
    assert_int_equal(ctl_registry_next(r, &rec), -1);
    ctl_registry_free(r);
}

static void test_plain_rows(void **state)
{
    (void)state;
    const char *text = HDR "\n"
                           "7,Agua potable,100,Circuito Uno,Zulia,2\n"
                           "4294967295,Vialidad,0,Circuito Cero,Lara,1\n";
    struct ctl_registry *r = open_text(text);
    struct ctl_registry_record rec;
    assert_int_equal(ctl_registry_next(r, &rec), 1);
    assert_int_equal(rec.line, 2);
    assert_int_equal(rec.project_id, 7);
    assert_string_equal(rec.project_name, "Agua potable");
    assert_int_equal(rec.circuit_id, 100);
    assert_string_equal(rec.circuit_name, "Circuito Uno");
    assert_string_equal(rec.state, "Zulia");
    assert_int_equal(rec.seats, 2);
    assert_int_equal(ctl_registry_next(r, &rec), 1);
    assert_int_equal(rec.line, 3);
    assert_int_equal(rec.project_id, UINT32_MAX);
    assert_int_equal(rec.circuit_id, 0);
    assert_int_equal(ctl_registry_next(r, &rec), 0);
    assert_int_equal(ctl_registry_next(r, &rec), 0);
    ctl_registry_free(r);
}

static void test_quoting(void **state)
{
    (void)state;
    const char *text = HDR "\r\n"
                           "1,\"Cancha, techada\",2,\"El \"\"Progreso\"\"\",\"\",1\r\n";
    struct ctl_registry *r = open_text(text);
    struct ctl_registry_record rec;
    /* An empty quoted state is still empty: refused. */
    assert_int_equal(ctl_registry_next(r, &rec), -1);
    assert_non_null(strstr(ctl_registry_error(r), "state is empty"));
    ctl_registry_free(r);

    text = HDR "\r\n"
               "1,\"Cancha, techada\",2,\"El \"\"Progreso\"\"\",\"Zulia\",\"3\"\r\n";
    r = open_text(text);
    assert_int_equal(ctl_registry_next(r, &rec), 1);
    assert_string_equal(rec.project_name, "Cancha, techada");
    assert_string_equal(rec.circuit_name, "El \"Progreso\"");
    assert_string_equal(rec.state, "Zulia");
    assert_int_equal(rec.seats, 3);
    assert_int_equal(ctl_registry_next(r, &rec), 0);
    ctl_registry_free(r);
}

static void test_crlf_and_no_final_newline(void **state)
{
    (void)state;
    assert_int_equal(count_ok(HDR "\r\n1,a,2,b,c,1\r\n2,a,2,b,c,1"), 2);
    assert_int_equal(count_ok(HDR "\n1,a,2,b,c,1\r\n2,a,2,b,c,1\n"), 2);
    assert_int_equal(count_ok(HDR), 0);
    assert_int_equal(count_ok(HDR "\r\n"), 0);
    /* Empty lines are skipped. */
    assert_int_equal(count_ok(HDR "\n\n1,a,2,b,c,1\n\r\n\n"), 1);
    /* A byte order mark before the header is accepted. */
    assert_int_equal(count_ok("\xef\xbb\xbf" HDR "\n1,a,2,b,c,1\n"), 1);
}

static void test_embedded_newline_line_numbers(void **state)
{
    (void)state;
    const char *text = HDR "\n"
                           "1,\"two\nlines\",2,b,c,1\n"
                           "2,\"three\r\nline\nname\",2,b,c,1\n"
                           "3,x,2,b,c,1\n"
                           "4,x,2,b,c,zero\n";
    struct ctl_registry *r = open_text(text);
    struct ctl_registry_record rec;
    assert_int_equal(ctl_registry_next(r, &rec), 1);
    assert_int_equal(rec.line, 2);
    assert_string_equal(rec.project_name, "two\nlines");
    assert_int_equal(ctl_registry_next(r, &rec), 1);
    assert_int_equal(rec.line, 4);
    assert_string_equal(rec.project_name, "three\r\nline\nname");
    assert_int_equal(ctl_registry_next(r, &rec), 1);
    assert_int_equal(rec.line, 7);
    assert_int_equal(ctl_registry_next(r, &rec), -1);
    assert_int_equal(ctl_registry_error_line(r), 8);
    assert_non_null(strstr(ctl_registry_error(r), "seats"));
    ctl_registry_free(r);
}

static void test_header(void **state)
{
    (void)state;
    expect_error("", 1, "empty file");
    expect_error("project_id,name\n1,a\n", 1, "header must be exactly");
    expect_error("Project_id,project_name,circuit_id,circuit_name,state,seats\n", 1,
                 "header must be exactly");
    expect_error(HDR ",extra\n", 1, "header must be exactly");
    /* Quoted header fields are the same fields. */
    assert_int_equal(count_ok("\"project_id\",project_name,circuit_id,circuit_name,state,"
                              "\"seats\"\n1,a,2,b,c,1\n"),
                     1);
}

static void test_malformed_csv(void **state)
{
    (void)state;
    expect_error(HDR "\n1,a,2,b,c,1\n2,\"open,2,b,c,1\n3,a,2,b,c,1\n", 3, "unterminated");
    expect_error(HDR "\n1,\"a\"x,2,b,c,1\n", 2, "after closing quote");
    expect_error(HDR "\n1,a\"b,2,b,c,1\n", 2, "quote inside unquoted");
    expect_error(HDR "\n1,a,2,b,c,1\r2,a,2,b,c,1\n", 2, "carriage return");
    expect_error(HDR "\n1,a,2,b,c\n", 2, "expected 6 fields, found 5");
    expect_error(HDR "\n1,a,2,b,c,1,\n", 2, "expected 6 fields, found 7");
    expect_error(HDR "\n1,a,2,b,c,1\n1,a,2,b,c,1,x,y,z\n", 3, "found 9");
    const char nul[] = HDR "\n1,a\0b,2,b,c,1\n";
    struct ctl_registry *r = ctl_registry_new_buffer(nul, sizeof(nul) - 1);
    struct ctl_registry_record rec;
    assert_int_equal(ctl_registry_next(r, &rec), -1);
    assert_non_null(strstr(ctl_registry_error(r), "NUL"));
    ctl_registry_free(r);
}

static void test_runaway_quote_is_bounded(void **state)
{
    (void)state;
    size_t n = CTL_REGISTRY_MAX_RECORD + 100;
    char *text = malloc(sizeof(HDR) + 8 + n);
    assert_non_null(text);
    int k = sprintf(text, "%s\n1,\"", HDR);
    memset(text + k, 'x', n);
    text[k + n] = '\0';
    expect_error(text, 2, "longer than");
    free(text);
}

static void test_integers(void **state)
{
    (void)state;
    expect_error(HDR "\n,a,2,b,c,1\n", 2, "project_id is empty");
    expect_error(HDR "\n4294967296,a,2,b,c,1\n", 2, "project_id \"4294967296\" is not");
    expect_error(HDR "\n1,a,99999999999999999999999,b,c,1\n", 2, "circuit_id");
    expect_error(HDR "\n-1,a,2,b,c,1\n", 2, "project_id");
    expect_error(HDR "\n+1,a,2,b,c,1\n", 2, "project_id");
    expect_error(HDR "\n 1,a,2,b,c,1\n", 2, "project_id");
    expect_error(HDR "\n1,a,2x,b,c,1\n", 2, "circuit_id");
    expect_error(HDR "\n1,a,2,b,c,0\n", 2, "seats \"0\" is not an integer from 1");
    expect_error(HDR "\n1,a,2,b,c,2147483648\n", 2, "seats");
    expect_error(HDR "\n1,a,2,b,c,1.5\n", 2, "seats");
    assert_int_equal(count_ok(HDR "\n0,a,4294967295,b,c,2147483647\n007,a,2,b,c,01\n"), 2);
}

static void test_utf8(void **state)
{
    (void)state;
    assert_int_equal(count_ok(HDR "\n1,Mérida ñandú €𝄞,2,Bolívar,Táchira,1\n"), 1);
    expect_error(HDR "\n1,a\xff,2,b,c,1\n", 2, "project_name is not valid UTF-8");
    expect_error(HDR "\n1,a,2,\xc3,c,1\n", 2, "circuit_name is not valid UTF-8");
    expect_error(HDR "\n1,a,2,b,\xc0\xaf,1\n", 2, "state is not valid UTF-8");

    assert_true(ctl_utf8_is_valid("", 0));
    assert_true(ctl_utf8_is_valid("abc", 3));
    assert_true(ctl_utf8_is_valid("\xc3\xa9", 2));          /* é */
    assert_true(ctl_utf8_is_valid("\xe2\x82\xac", 3));      /* € */
    assert_true(ctl_utf8_is_valid("\xf0\x9d\x84\x9e", 4));  /* U+1D11E */
    assert_true(ctl_utf8_is_valid("\xf4\x8f\xbf\xbf", 4));  /* U+10FFFF */
    assert_false(ctl_utf8_is_valid("\xc3", 1));             /* truncated */
    assert_false(ctl_utf8_is_valid("\x80", 1));             /* lone continuation */
    assert_false(ctl_utf8_is_valid("\xc1\xbf", 2));         /* overlong */
    assert_false(ctl_utf8_is_valid("\xe0\x80\xaf", 3));     /* overlong */
    assert_false(ctl_utf8_is_valid("\xed\xa0\x80", 3));     /* surrogate */
    assert_false(ctl_utf8_is_valid("\xf4\x90\x80\x80", 4)); /* past U+10FFFF */
    assert_false(ctl_utf8_is_valid("\xf5\x80\x80\x80", 4)); /* invalid lead */
    assert_false(ctl_utf8_is_valid("\xe2\x82\x41", 3));     /* bad continuation */
}

static void test_file_reader(void **state)
{
    (void)state;
    /* Larger than the reader's buffer, so records straddle refills. */
    FILE *f = tmpfile();
    assert_non_null(f);
    fprintf(f, "%s\r\n", HDR);
    for (int i = 0; i < 5000; i++)
        fprintf(f,
                "%d,\"Proyecto %d, con \"\"comillas\"\"\nen dos líneas\",%d,Circuito,Zulia,1\r\n",
                i, i, i / 7);
    rewind(f);
    struct ctl_registry *r = ctl_registry_new_file(f);
    struct ctl_registry_record rec;
    int n = 0;
    while (ctl_registry_next(r, &rec) == 1) {
        assert_int_equal(rec.project_id, n);
        assert_int_equal(rec.line, 2 + 2 * (uint64_t)n);
        n++;
    }
    assert_int_equal(n, 5000);
    assert_string_equal(rec.project_name, "Proyecto 4999, con \"comillas\"\nen dos líneas");
    ctl_registry_free(r);
    fclose(f);
}

/* ---- registry: the optional min_votes column ---------------------------------------- */

#define HDR7 HDR ",min_votes"

static void test_registry_min_votes(void **state)
{
    (void)state;
    struct ctl_registry *r = open_text(HDR7 "\n1,a,2,b,c,1,150\n2,a,2,b,c,1,0\n"
                                            "3,a,2,b,c,1,2147483647\n");
    struct ctl_registry_record rec;
    assert_int_equal(ctl_registry_next(r, &rec), 1);
    assert_int_equal(rec.min_votes, 150);
    assert_int_equal(ctl_registry_next(r, &rec), 1);
    assert_int_equal(rec.min_votes, 0);
    assert_int_equal(ctl_registry_next(r, &rec), 1);
    assert_int_equal(rec.min_votes, INT32_MAX);
    assert_int_equal(ctl_registry_next(r, &rec), 0);
    ctl_registry_free(r);

    /* Six columns: min_votes 0 (a record left dirty by the caller is overwritten). */
    r = open_text(HDR "\n1,a,2,b,c,1\n");
    memset(&rec, 0xff, sizeof(rec));
    assert_int_equal(ctl_registry_next(r, &rec), 1);
    assert_int_equal(rec.min_votes, 0);
    ctl_registry_free(r);

    assert_int_equal(count_ok("\xef\xbb\xbf" HDR7 "\r\n\r\n1,a,2,b,c,1,\"7\"\r\n"), 1);
    expect_error(HDR7 "\n1,a,2,b,c,1\n", 2, "expected 7 fields, found 6");
    expect_error(HDR "\n1,a,2,b,c,1,5\n", 2, "expected 6 fields, found 7");
    expect_error(HDR7 "\n1,a,2,b,c,1,\n", 2, "min_votes is empty");
    expect_error(HDR7 "\n1,a,2,b,c,1,-1\n", 2, "min_votes \"-1\" is not an integer from 0 to");
    expect_error(HDR7 "\n1,a,2,b,c,1,2147483648\n", 2, "min_votes");
    expect_error(HDR7 "\n1,a,2,b,c,1,1e3\n", 2, "min_votes");
    expect_error(HDR ",min_vote\n", 1, "header must be exactly " HDR " (or " HDR7 ")");
    expect_error(HDR ",min_votes,x\n", 1, "header must be exactly");
}

/* ---- voting tables -------------------------------------------------------------------- */

#define THDR "table_id,circuit_id,electors"

static struct ctl_tables *tables_text(const char *text)
{
    return ctl_tables_new_buffer(text, strlen(text));
}

static size_t tables_count_ok(const char *text)
{
    struct ctl_tables *t = tables_text(text);
    struct ctl_tables_record rec;
    size_t n = 0;
    int got;
    while ((got = ctl_tables_next(t, &rec)) == 1)
        n++;
    if (got != 0)
        fail_msg("unexpected error: %s", ctl_tables_error(t));
    ctl_tables_free(t);
    return n;
}

static void tables_expect_error(const char *text, size_t len, uint64_t line, const char *needle)
{
    struct ctl_tables *t = ctl_tables_new_buffer(text, len ? len : strlen(text));
    struct ctl_tables_record rec;
    int got;
    while ((got = ctl_tables_next(t, &rec)) == 1)
        ;
    assert_int_equal(got, -1);
    if (ctl_tables_error_line(t) != line || !strstr(ctl_tables_error(t), needle))
        fail_msg("want line %llu with \"%s\", got \"%s\"", (unsigned long long)line, needle,
                 ctl_tables_error(t));
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "line %llu: ", (unsigned long long)line);
    assert_int_equal(strncmp(ctl_tables_error(t), prefix, strlen(prefix)), 0);
    assert_string_equal(ctl_tables_error_reason(t), ctl_tables_error(t) + strlen(prefix));
    assert_int_equal(ctl_tables_next(t, &rec), -1); /* sticky */
    ctl_tables_free(t);
}

static void test_tables_rows(void **state)
{
    (void)state;
    struct ctl_tables *t = tables_text(THDR "\nM-001,100,350\n\"Z.2_b\",4294967295,0\r\n"
                                            "x,0,2147483647");
    struct ctl_tables_record rec;
    assert_string_equal(ctl_tables_error(t), "no error");
    assert_int_equal(ctl_tables_next(t, &rec), 1);
    assert_int_equal(rec.line, 2);
    assert_string_equal(rec.table_id, "M-001");
    assert_int_equal(rec.circuit_id, 100);
    assert_int_equal(rec.electors, 350);
    assert_int_equal(ctl_tables_next(t, &rec), 1);
    assert_int_equal(rec.line, 3);
    assert_string_equal(rec.table_id, "Z.2_b");
    assert_int_equal(rec.circuit_id, UINT32_MAX);
    assert_int_equal(rec.electors, 0);
    assert_int_equal(ctl_tables_next(t, &rec), 1);
    assert_int_equal(rec.line, 4);
    assert_int_equal(rec.electors, INT32_MAX);
    assert_int_equal(ctl_tables_next(t, &rec), 0);
    assert_int_equal(ctl_tables_next(t, &rec), 0);
    ctl_tables_free(t);
}

static void test_tables_header(void **state)
{
    (void)state;
    assert_int_equal(tables_count_ok(THDR), 0);
    assert_int_equal(tables_count_ok(THDR "\r\n"), 0);
    assert_int_equal(tables_count_ok("\xef\xbb\xbf" THDR "\r\n\r\n\na,1,2\r\n\nb,1,2\n\n"), 2);
    assert_int_equal(tables_count_ok("\"table_id\",circuit_id,\"electors\"\na,1,2\n"), 1);
    tables_expect_error("", 0, 1, "empty file: expected the header " THDR);
    tables_expect_error("table,circuit,electors\na,1,2\n", 0, 1,
                        "the header must be exactly " THDR);
    tables_expect_error("Table_id,circuit_id,electors\n", 0, 1, "header must be exactly");
    tables_expect_error(THDR ",extra\n", 0, 1, "header must be exactly");
    tables_expect_error("table_id,circuit_id\n", 0, 1, "header must be exactly");
    /* A registry file given by mistake. */
    tables_expect_error(HDR "\n1,a,2,b,c,1\n", 0, 1, "header must be exactly " THDR);
    /* The mark only before the header. */
    tables_expect_error(THDR "\n\xef\xbb\xbf"
                             "a,1,2\n",
                        0, 2, "table_id \"???a\" is not 1 to 63");
}

static void test_tables_quoting_and_lines(void **state)
{
    (void)state;
    /* A quoted field may span lines (never validly here: no field may hold a line break):
     * a record is named by its first line, and the lines after it count every line. */
    tables_expect_error(THDR "\na,1,2\n\"b\nc\",1,2\n", 0, 3, "table_id \"b?c\"");
    tables_expect_error(THDR "\na,\"1\n\",2\nd,1,x\n", 0, 2, "circuit_id \"1?\"");
    tables_expect_error(THDR "\na,1,2\n\"a,1,2\nb,1,2\n", 0, 3, "unterminated");
    tables_expect_error(THDR "\n\"a\"x,1,2\n", 0, 2, "after closing quote in field 1");
    tables_expect_error(THDR "\na\"b,1,2\n", 0, 2, "quote inside unquoted field 1");
    tables_expect_error(THDR "\na,1,2\rb,1,2\n", 0, 2, "carriage return");
    const char nul[] = THDR "\na,1\0,2\n";
    tables_expect_error(nul, sizeof(nul) - 1, 2, "NUL byte in field 2");
    tables_expect_error(THDR "\na,1\n", 0, 2, "expected 3 fields, found 2");
    tables_expect_error(THDR "\na,1,2,\n", 0, 2, "expected 3 fields, found 4");
    tables_expect_error(THDR "\n\n\na,1,2,3,4,5,6\n", 0, 4, "found 7");
    tables_expect_error(THDR "\n,1,2\n", 0, 2, "table_id is empty");
    tables_expect_error(THDR "\n\"\",1,2\n", 0, 2, "table_id is empty");
    tables_expect_error(THDR "\na,,2\n", 0, 2, "circuit_id is empty");
    tables_expect_error(THDR "\na,1,\n", 0, 2, "electors is empty");
    /* A runaway quote is refused once past the record limit, not read to the end. */
    size_t n = CTL_TABLES_MAX_RECORD + 100;
    char *text = malloc(sizeof(THDR) + 8 + n);
    assert_non_null(text);
    int k = sprintf(text, "%s\n\"", THDR);
    memset(text + k, 'x', n);
    text[k + n] = '\0';
    tables_expect_error(text, 0, 2, "longer than 4096 bytes (unterminated quote");
    free(text);
}

static void test_tables_ids_and_numbers(void **state)
{
    (void)state;
    char id63[64], line[128];
    memset(id63, 'a', 63);
    id63[63] = '\0';
    snprintf(line, sizeof(line), THDR "\n%s,1,2\n", id63);
    assert_int_equal(tables_count_ok(line), 1);
    snprintf(line, sizeof(line), THDR "\n%sb,1,2\n", id63);
    tables_expect_error(line, 0, 2, "table_id \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\"");
    tables_expect_error(THDR "\nmesa 1,1,2\n", 0, 2,
                        "table_id \"mesa 1\" is not 1 to 63 of A-Z a-z 0-9 . _ -");
    tables_expect_error(THDR "\nmesa/1,1,2\n", 0, 2, "table_id \"mesa/1\"");
    tables_expect_error(THDR "\nm\xc3\xa9sa,1,2\n", 0, 2, "table_id \"m??sa\"");
    tables_expect_error(THDR "\n\"a,b\",1,2\n", 0, 2, "table_id \"a,b\"");
    tables_expect_error(THDR "\na,4294967296,2\n", 0, 2,
                        "circuit_id \"4294967296\" is not an integer from 0 to 4294967295");
    tables_expect_error(THDR "\na,-1,2\n", 0, 2, "circuit_id \"-1\"");
    tables_expect_error(THDR "\na, 1,2\n", 0, 2, "circuit_id \" 1\"");
    tables_expect_error(THDR "\na,1x,2\n", 0, 2, "circuit_id \"1x\"");
    tables_expect_error(THDR "\na,1,2147483648\n", 0, 2,
                        "electors \"2147483648\" is not an integer from 0 to 2147483647");
    tables_expect_error(THDR "\na,1,99999999999999999999999999\n", 0, 2, "electors");
    tables_expect_error(THDR "\na,1,+5\n", 0, 2, "electors \"+5\"");
    tables_expect_error(THDR "\na,1,5.0\n", 0, 2, "electors");
    tables_expect_error(THDR "\na,1,-0\n", 0, 2, "electors");
    assert_int_equal(tables_count_ok(THDR "\na,007,0000\n"), 1);
}

static void test_tables_file_reader(void **state)
{
    (void)state;
    /* Larger than the reader's buffer, so records straddle refills. */
    FILE *f = tmpfile();
    assert_non_null(f);
    fprintf(f, "\xef\xbb\xbf%s\r\n", THDR);
    for (int i = 0; i < 20000; i++)
        fprintf(f, "\"mesa-%05d\",%d,%d\r\n", i, i / 10, i % 500);
    rewind(f);
    struct ctl_tables *t = ctl_tables_new_file(f);
    struct ctl_tables_record rec;
    int n = 0, got;
    char want[16];
    while ((got = ctl_tables_next(t, &rec)) == 1) {
        snprintf(want, sizeof(want), "mesa-%05d", n);
        assert_string_equal(rec.table_id, want);
        assert_int_equal(rec.circuit_id, n / 10);
        assert_int_equal(rec.electors, n % 500);
        assert_int_equal(rec.line, 2 + (uint64_t)n);
        n++;
    }
    assert_int_equal(got, 0);
    assert_int_equal(n, 20000);
    ctl_tables_free(t);
    fclose(f);
    ctl_tables_free(NULL);
}

static void test_collector_id(void **state)
{
    (void)state;
    assert_true(ctl_collector_id_is_valid("c0"));
    assert_true(ctl_collector_id_is_valid("Zulia-01.a_b"));
    char id[65];
    memset(id, 'a', 63);
    id[63] = '\0';
    assert_true(ctl_collector_id_is_valid(id));
    id[63] = 'a';
    id[64] = '\0';
    assert_false(ctl_collector_id_is_valid(id));
    assert_false(ctl_collector_id_is_valid(""));
    assert_false(ctl_collector_id_is_valid("a b"));
    assert_false(ctl_collector_id_is_valid("a/b"));
    assert_false(ctl_collector_id_is_valid("ñ"));
}

static void test_json_string(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    ctl_json_write_string(f, "a\"b\\c\nd\te\x01 ñ");
    fclose(f);
    assert_string_equal(buf, "\"a\\\"b\\\\c\\nd\\te\\u0001 ñ\"");
    free(buf);
}

static void expect_circuits(const char *list, const uint32_t *want, size_t n_want)
{
    uint32_t *got = NULL;
    size_t n = 99;
    char err[200] = "";
    if (ctl_circuits_parse(list, &got, &n, err, sizeof(err)) != 0)
        fail_msg("'%s': %s", list, err);
    assert_int_equal(n, n_want);
    assert_memory_equal(got, want, n * sizeof(*want));
    free(got);
}

static void expect_circuits_error(const char *list, const char *needle)
{
    uint32_t *got = (uint32_t *)1;
    size_t n = 99;
    char err[200] = "";
    assert_int_equal(ctl_circuits_parse(list, &got, &n, err, sizeof(err)), -1);
    assert_null(got);
    assert_int_equal(n, 0);
    if (!strstr(err, needle))
        fail_msg("'%s': want \"%s\" in \"%s\"", list, needle, err);
}

static void test_circuits_parse(void **state)
{
    (void)state;
    const uint32_t one[] = {7};
    expect_circuits("7", one, 1);
    const uint32_t three[] = {0, 5, 4294967295u};
    expect_circuits("5,4294967295,0", three, 3);
    expect_circuits(" 5 , 0,4294967295 ", three, 3);
    const uint32_t dup[] = {5, 9};
    expect_circuits("9,5,9,5", dup, 2);

    uint32_t *got = (uint32_t *)1;
    size_t n = 99;
    char err[200];
    assert_int_equal(ctl_circuits_parse("all", &got, &n, err, sizeof(err)), 1);
    assert_null(got);
    assert_int_equal(n, 0);
    assert_int_equal(ctl_circuits_parse(" all ", &got, &n, err, sizeof(err)), 1);

    expect_circuits_error("", "no circuit ids given");
    expect_circuits_error("  ", "no circuit ids given");
    expect_circuits_error("5,,6", "item 2 of the circuit list is empty");
    expect_circuits_error("5,", "item 2 of the circuit list is empty");
    expect_circuits_error(",5", "item 1 of the circuit list is empty");
    expect_circuits_error("5,7x", "'7x' is not a circuit id");
    expect_circuits_error("4294967296", "'4294967296' is not a circuit id");
    expect_circuits_error("-1", "'-1' is not a circuit id");
    expect_circuits_error("+1", "'+1' is not a circuit id");
    expect_circuits_error("007", "'007' is not a circuit id");
    expect_circuits_error("1 2", "'1 2' is not a circuit id");
    expect_circuits_error("all,5", "'all' is not a circuit id");
    expect_circuits_error("99999999999999999999999", "is not a circuit id");
}

static void test_circuits_format(void **state)
{
    (void)state;
    char buf[64];
    const uint32_t ids[] = {1, 22, 333, 4444};
    ctl_circuits_format(0, NULL, 0, 10, buf, sizeof(buf));
    assert_string_equal(buf, "every");
    ctl_circuits_format(1, NULL, 0, 10, buf, sizeof(buf));
    assert_string_equal(buf, "none");
    ctl_circuits_format(1, ids, 4, 10, buf, sizeof(buf));
    assert_string_equal(buf, "1,22,333,4444");
    ctl_circuits_format(1, ids, 4, 2, buf, sizeof(buf));
    assert_string_equal(buf, "1,22,... (2 more)");
    char small[6];
    ctl_circuits_format(1, ids, 4, 10, small, sizeof(small));
    assert_string_equal(small, "1,22,");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_rows),
        cmocka_unit_test(test_quoting),
        cmocka_unit_test(test_crlf_and_no_final_newline),
        cmocka_unit_test(test_embedded_newline_line_numbers),
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_malformed_csv),
        cmocka_unit_test(test_runaway_quote_is_bounded),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_file_reader),
        cmocka_unit_test(test_registry_min_votes),
        cmocka_unit_test(test_tables_rows),
        cmocka_unit_test(test_tables_header),
        cmocka_unit_test(test_tables_quoting_and_lines),
        cmocka_unit_test(test_tables_ids_and_numbers),
        cmocka_unit_test(test_tables_file_reader),
        cmocka_unit_test(test_collector_id),
        cmocka_unit_test(test_json_string),
        cmocka_unit_test(test_circuits_parse),
        cmocka_unit_test(test_circuits_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
