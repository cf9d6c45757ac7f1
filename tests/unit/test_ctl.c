/* Unit tests for the ctl library: the registry CSV reader (RFC 4180 quoting, CRLF,
 * line numbers across embedded newlines, header, integers, UTF-8), text helpers, and the
 * circuit lists of add-collector --circuits and tallyctl collectors. */
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
        cmocka_unit_test(test_collector_id),
        cmocka_unit_test(test_json_string),
        cmocka_unit_test(test_circuits_parse),
        cmocka_unit_test(test_circuits_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
