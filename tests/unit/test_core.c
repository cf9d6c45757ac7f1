/* Unit tests for the core library's shared writers and readers: the JSON string escaper
 * (byte for byte what the HTTP API has always written) and the CSV line reader and field
 * splitter (quoting, line endings, strict mode, line numbers, limits, buffer refills). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/csv.h"
#include "core/json.h"
#include "core/loopwatch.h"

/* ---- JSON ------------------------------------------------------------------------------- */

struct sink {
    char buf[512];
    size_t len;
    size_t calls;
};

static void sink_add(void *arg, const char *data, size_t len)
{
    struct sink *k = arg;
    assert_true(k->len + len < sizeof(k->buf));
    memcpy(k->buf + k->len, data, len);
    k->len += len;
    k->buf[k->len] = '\0';
    k->calls++;
}

static const char *json(const char *s)
{
    static struct sink k;
    memset(&k, 0, sizeof(k));
    json_string_write(s, sink_add, &k);
    return k.buf;
}

static void test_json_escapes(void **state)
{
    (void)state;
    assert_string_equal(json(""), "\"\"");
    assert_string_equal(json(NULL), "\"\"");
    assert_string_equal(json("plain text"), "\"plain text\"");
    assert_string_equal(json("a\"b\\c"), "\"a\\\"b\\\\c\"");
    assert_string_equal(json("\n\r\t"), "\"\\n\\r\\t\"");
    /* Other control bytes as \u00XX, lower-case hex. */
    assert_string_equal(json("\x01\x1f\x0b\b\f"), "\"\\u0001\\u001f\\u000b\\u0008\\u000c\"");
    /* No escape for '/', DEL or anything non-ASCII, valid UTF-8 or not. */
    assert_string_equal(json("a/b\x7f"), "\"a/b\x7f\"");
    assert_string_equal(json("Mérida ñ €𝄞"), "\"Mérida ñ €𝄞\"");
    assert_string_equal(json("\xff\xc3"), "\"\xff\xc3\"");
}

static void test_json_runs(void **state)
{
    (void)state;
    /* An unescaped run goes to the sink in one piece: quote, run, quote. */
    struct sink k = {0};
    json_string_write("a long run of text", sink_add, &k);
    assert_int_equal(k.calls, 3);
    memset(&k, 0, sizeof(k));
    json_string_write("ab\ncd", sink_add, &k);
    assert_string_equal(k.buf, "\"ab\\ncd\"");
}

/* ---- csv_split_line ----------------------------------------------------------------------- */

struct split_result {
    int rc;
    size_t n;
    struct csv_field f[8];
    struct csv_error err;
    char buf[256];
};

static struct split_result *split(const char *text, unsigned flags)
{
    static struct split_result r;
    memset(&r, 0, sizeof(r));
    size_t len = strlen(text);
    assert_true(len < sizeof(r.buf));
    memcpy(r.buf, text, len);
    memset(r.buf + len, '#', sizeof(r.buf) - len); /* past len stays untouched */
    r.rc = csv_split_line(r.buf, len, flags, r.f, 8, &r.n, &r.err);
    for (size_t i = len; i < sizeof(r.buf); i++)
        assert_int_equal(r.buf[i], '#');
    return &r;
}

static void assert_field(const struct split_result *r, size_t i, const char *want, bool quoted)
{
    assert_true(i < r->n);
    if (r->f[i].len != strlen(want) || memcmp(r->f[i].s, want, r->f[i].len) != 0)
        fail_msg("field %zu: got '%.*s', want '%s'", i, (int)r->f[i].len, r->f[i].s, want);
    assert_int_equal(r->f[i].quoted, quoted);
}

static void test_split_plain(void **state)
{
    (void)state;
    struct split_result *r = split("a,bc,,d\n", 0);
    assert_int_equal(r->rc, 0);
    assert_int_equal(r->n, 4);
    assert_field(r, 0, "a", false);
    assert_field(r, 1, "bc", false);
    assert_field(r, 2, "", false);
    assert_field(r, 3, "d", false);
    /* Line endings: \n, \r\n, none; without CSV_STRICT also a final lone \r. */
    r = split("x,y\r\n", 0);
    assert_int_equal(r->n, 2);
    assert_field(r, 1, "y", false);
    r = split("x,y", 0);
    assert_field(r, 1, "y", false);
    r = split("x,y\r", 0);
    assert_field(r, 1, "y", false);
    /* Only one \r belongs to the ending; another is data, as is one inside the line. */
    r = split("a\rb,y\r\r\n", 0);
    assert_field(r, 0, "a\rb", false);
    assert_field(r, 1, "y\r", false);
    /* An empty line is one empty unquoted field. */
    r = split("\n", 0);
    assert_int_equal(r->rc, 0);
    assert_int_equal(r->n, 1);
    assert_field(r, 0, "", false);
    r = split("", 0);
    assert_int_equal(r->n, 1);
}

static void test_split_quoted(void **state)
{
    (void)state;
    struct split_result *r = split("\"a,b\",\"say \"\"hi\"\"\",\"\",\"\"\"\"\r\n", 0);
    assert_int_equal(r->rc, 0);
    assert_int_equal(r->n, 4);
    assert_field(r, 0, "a,b", true);
    assert_field(r, 1, "say \"hi\"", true);
    assert_field(r, 2, "", true);
    assert_field(r, 3, "\"", true);
    /* Without CSV_STRICT a quote inside an unquoted field is text. */
    r = split("a\"b,c\n", 0);
    assert_int_equal(r->rc, 0);
    assert_field(r, 0, "a\"b", false);
    /* Unterminated: the quote opened on line 1; text after a closing quote. */
    r = split("x,\"open\n", 0);
    assert_int_equal(r->rc, -1);
    assert_int_equal(r->err.code, CSV_ERR_UNTERMINATED);
    assert_int_equal(r->err.line, 1);
    assert_int_equal(r->err.field, 2);
    r = split("\"a\"b,c\n", 0);
    assert_int_equal(r->rc, -1);
    assert_int_equal(r->err.code, CSV_ERR_AFTER_QUOTE);
    assert_int_equal(r->err.field, 1);
    /* The ending's \r is not "after the quote"; any other is. */
    assert_int_equal(split("\"a\"\r\n", 0)->rc, 0);
    assert_int_equal(split("\"a\"\r,b\n", 0)->err.code, CSV_ERR_AFTER_QUOTE);
}

static void test_split_counts_past_cap(void **state)
{
    (void)state;
    char line[] = "1,2,3,4,5";
    struct csv_field f[2];
    size_t n;
    struct csv_error err;
    assert_int_equal(csv_split_line(line, strlen(line), 0, f, 2, &n, &err), 0);
    assert_int_equal(n, 5);
    assert_int_equal(f[1].len, 1);
    assert_int_equal(f[1].s[0], '2');
    /* Fields past cap are still checked, and name their own number. */
    char bad[] = "1,2,\"x";
    assert_int_equal(csv_split_line(bad, strlen(bad), 0, f, 2, &n, &err), -1);
    assert_int_equal(err.field, 3);
}

static void test_split_strict(void **state)
{
    (void)state;
    struct split_result *r = split("a,\"b\"\r\n", CSV_STRICT);
    assert_int_equal(r->rc, 0);
    assert_field(r, 1, "b", true);
    r = split("a,b\"c\n", CSV_STRICT);
    assert_int_equal(r->err.code, CSV_ERR_BARE_QUOTE);
    assert_int_equal(r->err.field, 2);
    assert_int_equal(split("a\rb\n", CSV_STRICT)->err.code, CSV_ERR_LONE_CR);
    assert_int_equal(split("a,b\r", CSV_STRICT)->err.code, CSV_ERR_LONE_CR);
    assert_int_equal(split("\"a\"\r,b\n", CSV_STRICT)->err.code, CSV_ERR_LONE_CR);
    /* Inside quotes a \r is data, strict or not. */
    r = split("\"a\rb\",c\n", CSV_STRICT);
    assert_int_equal(r->rc, 0);
    assert_field(r, 0, "a\rb", true);
    char nul[] = {'a', ',', 'b', '\0', 'c', '\n'};
    struct csv_field f[4];
    size_t n;
    struct csv_error err;
    assert_int_equal(csv_split_line(nul, sizeof(nul), CSV_STRICT, f, 4, &n, &err), -1);
    assert_int_equal(err.code, CSV_ERR_NUL);
    assert_int_equal(err.field, 2);
    /* Without CSV_STRICT a NUL is data. */
    char nul2[] = {'a', '\0', 'b', ',', '9'};
    assert_int_equal(csv_split_line(nul2, sizeof(nul2), 0, f, 4, &n, &err), 0);
    assert_int_equal(f[0].len, 3);
}

/* ---- the reader --------------------------------------------------------------------------- */

static struct csv_reader *reader(const char *text, unsigned flags, size_t max_record)
{
    struct csv_options o = {.flags = flags, .max_record = max_record, .max_fields = 4};
    return csv_reader_new_buffer(text, strlen(text), &o);
}

static void test_reader_lines(void **state)
{
    (void)state;
    struct csv_reader *r = reader("a,b\nc\r\n\nlast", 0, 0);
    char *line;
    size_t len;
    const char *want[] = {"a,b\n", "c\r\n", "\n", "last"};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(csv_reader_line(r, &line, &len), 1);
        assert_int_equal(len, strlen(want[i]));
        assert_memory_equal(line, want[i], len);
    }
    assert_int_equal(csv_reader_line(r, &line, &len), 0);
    assert_int_equal(csv_reader_line(r, &line, &len), 0);
    csv_reader_free(r);
    csv_reader_free(NULL);
}

static void test_reader_multiline_records(void **state)
{
    (void)state;
    struct csv_reader *r = reader("h1,h2\r\n1,\"two\nlines\"\n2,\"a\r\nb\nc\",x\n\n3,z",
                                  CSV_MULTILINE | CSV_STRICT, 0);
    struct csv_record rec;
    assert_int_equal(csv_reader_next(r, &rec), 1);
    assert_int_equal(rec.line, 1);
    assert_string_equal(rec.fields[1].s, "h2");
    assert_int_equal(csv_reader_next(r, &rec), 1);
    assert_int_equal(rec.line, 2);
    assert_string_equal(rec.fields[1].s, "two\nlines");
    assert_int_equal(csv_reader_next(r, &rec), 1);
    assert_int_equal(rec.line, 4);
    assert_int_equal(rec.n_fields, 3);
    assert_string_equal(rec.fields[1].s, "a\r\nb\nc");
    assert_string_equal(rec.fields[2].s, "x"); /* NUL-terminated in place */
    assert_int_equal(csv_reader_next(r, &rec), 1);
    assert_int_equal(rec.line, 7);
    assert_int_equal(rec.n_fields, 1);
    assert_int_equal(rec.fields[0].len, 0);
    assert_int_equal(csv_reader_next(r, &rec), 1);
    assert_int_equal(rec.line, 8);
    assert_string_equal(rec.fields[1].s, "z");
    assert_int_equal(csv_reader_next(r, &rec), 0);
    csv_reader_free(r);
}

static void test_reader_errors(void **state)
{
    (void)state;
    /* The quote opened on line 2; the error is sticky. */
    struct csv_reader *r = reader("a\nb,\"x\ny\nz", CSV_MULTILINE, 0);
    struct csv_record rec;
    assert_int_equal(csv_reader_next(r, &rec), 1);
    assert_int_equal(csv_reader_next(r, &rec), -1);
    assert_int_equal(csv_reader_error(r)->code, CSV_ERR_UNTERMINATED);
    assert_int_equal(csv_reader_error(r)->line, 2);
    assert_int_equal(csv_reader_next(r, &rec), -1);
    csv_reader_free(r);
    /* An error on a record's third line names that line. */
    r = reader("1,\"a\nb\nc\"x\n", CSV_MULTILINE, 0);
    assert_int_equal(csv_reader_next(r, &rec), -1);
    assert_int_equal(csv_reader_error(r)->code, CSV_ERR_AFTER_QUOTE);
    assert_int_equal(csv_reader_error(r)->line, 3);
    csv_reader_free(r);
}

static void test_reader_limit(void **state)
{
    (void)state;
    /* The fields copied with a NUL between them must stay under max_record bytes:
     * "abcde\0f" is 7, "abcdef\0g" 8. */
    struct csv_reader *r = reader("abcde,f\nabcdef,g\n", 0, 8);
    struct csv_record rec;
    assert_int_equal(csv_reader_next(r, &rec), 1);
    assert_int_equal(csv_reader_next(r, &rec), -1);
    assert_int_equal(csv_reader_error(r)->code, CSV_ERR_TOO_LONG);
    assert_int_equal(csv_reader_error(r)->line, 2);
    assert_false(csv_reader_error(r)->in_quote);
    csv_reader_free(r);
    /* A runaway quote is stopped at the limit, naming the line it opened on, while the
     * reader holds no more than a few times the limit. */
    size_t n = 1u << 20;
    char *text = malloc(n + 8);
    assert_non_null(text);
    memcpy(text, "x\n\"", 3);
    memset(text + 3, 'y', n);
    text[n + 3] = '\0';
    r = reader(text, CSV_MULTILINE | CSV_STRICT, 1000);
    assert_int_equal(csv_reader_next(r, &rec), 1);
    assert_int_equal(csv_reader_next(r, &rec), -1);
    assert_int_equal(csv_reader_error(r)->code, CSV_ERR_TOO_LONG);
    assert_int_equal(csv_reader_error(r)->line, 2);
    assert_true(csv_reader_error(r)->in_quote);
    csv_reader_free(r);
    /* So is a record of nothing but empty fields. */
    memset(text, ',', n);
    text[n] = '\0';
    r = reader(text, CSV_STRICT, 1000);
    assert_int_equal(csv_reader_next(r, &rec), -1);
    assert_int_equal(csv_reader_error(r)->code, CSV_ERR_TOO_LONG);
    csv_reader_free(r);
    free(text);
}

static void test_reader_refills(void **state)
{
    (void)state;
    /* Lines and records across many buffer refills, one longer than the buffer, from a FILE
     * and from a descriptor. */
    FILE *f = tmpfile();
    assert_non_null(f);
    for (int i = 0; i < 20000; i++)
        fprintf(f, "%d,\"q \"\"%d\"\"\nnext\",%s\r\n", i, i, i == 7777 ? "" : "z");
    char *big = malloc(200000);
    assert_non_null(big);
    memset(big, 'b', 199999);
    big[199999] = '\0';
    fprintf(f, "%s,end\n", big);
    fflush(f);
    long size = ftell(f);
    rewind(f);
    struct csv_options o = {.flags = CSV_MULTILINE, .max_fields = 3};
    struct csv_reader *r = csv_reader_new_file(f, &o);
    struct csv_record rec;
    char want[64];
    for (int i = 0; i < 20000; i++) {
        assert_int_equal(csv_reader_next(r, &rec), 1);
        assert_int_equal(rec.line, 2 * (uint64_t)i + 1);
        snprintf(want, sizeof(want), "q \"%d\"\nnext", i);
        assert_string_equal(rec.fields[1].s, want);
        assert_string_equal(rec.fields[2].s, i == 7777 ? "" : "z");
    }
    assert_int_equal(csv_reader_next(r, &rec), 1);
    assert_int_equal(rec.fields[0].len, 199999);
    assert_string_equal(rec.fields[1].s, "end");
    assert_int_equal(csv_reader_next(r, &rec), 0);
    csv_reader_free(r);

    rewind(f);
    o.flags = 0;
    r = csv_reader_new_fd(fileno(f), &o);
    char *line;
    size_t len, lines = 0, bytes = 0;
    int got;
    while ((got = csv_reader_line(r, &line, &len)) == 1) {
        lines++;
        bytes += len;
        assert_int_equal(line[len - 1], '\n');
    }
    assert_int_equal(got, 0);
    assert_int_equal(lines, 40001);
    assert_int_equal((long)bytes, size);
    csv_reader_free(r);
    fclose(f);
    free(big);
}

static void on_alarm(int sig)
{
    (void)sig;
}

static void test_reader_fd_pipe(void **state)
{
    (void)state;
    /* A line that has arrived on a pipe is handed over without waiting for more; a read cut
     * short by a signal is reported as EINTR and loses nothing. */
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct csv_options o = {0};
    struct csv_reader *r = csv_reader_new_fd(p[0], &o);
    assert_int_equal(write(p[1], "one,1\ntw", 8), 8);
    char *line;
    size_t len;
    assert_int_equal(csv_reader_line(r, &line, &len), 1);
    assert_int_equal(len, 6);
    struct sigaction sa = {.sa_handler = on_alarm}, old; /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, &old);
    struct itimerval it = {.it_value = {.tv_usec = 50000}};
    setitimer(ITIMER_REAL, &it, NULL);
    assert_int_equal(csv_reader_line(r, &line, &len), -1);
    assert_int_equal(csv_reader_error(r)->sys, EINTR);
    sigaction(SIGALRM, &old, NULL);
    assert_int_equal(write(p[1], "o,2\n", 4), 4);
    close(p[1]);
    assert_int_equal(csv_reader_line(r, &line, &len), 1);
    assert_int_equal(len, 6);
    assert_memory_equal(line, "two,2\n", 6);
    assert_int_equal(csv_reader_line(r, &line, &len), 0);
    csv_reader_free(r);
    close(p[0]);
}

/* ---- loopwatch ---------------------------------------------------------------------- */

static void busy_ms(int ms)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* In nanoseconds: whole milliseconds of a negative nanosecond difference (across a
     * second) round toward zero and ended the wait up to a millisecond early. */
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while ((int64_t)(t.tv_sec - t0.tv_sec) * 1000000000 + (t.tv_nsec - t0.tv_nsec) <
           (int64_t)ms * 1000000);
}

static void nested_cb(void)
{
    LOOPWATCH_SCOPE();
    busy_ms(2);
}

static void outer_cb(void)
{
    LOOPWATCH_SCOPE();
    busy_ms(3);
    nested_cb(); /* a callback called from a callback is part of its sample */
}

/* One sample per outermost scope, in the bucket of its length; the max is the longest. */
static void test_loopwatch_samples(void **state)
{
    (void)state;
    loopwatch_reset();
    outer_cb();
    nested_cb();
    struct loopwatch_stats st;
    loopwatch_read(&st);
    assert_int_equal(st.samples, 2);
    assert_true(st.max_s >= 0.005 && st.max_s < 0.5);
    assert_true(st.sum_s >= 0.007);
    uint64_t n = 0;
    for (size_t b = 0; b <= LOOPWATCH_BUCKETS; b++)
        n += st.counts[b];
    assert_int_equal(n, 2);
    /* Nothing under the 2 ms the shorter one busied itself for (a busy machine only makes
     * samples longer), and the 5 ms one above the 2.5 ms bound. */
    assert_int_equal(st.counts[0] + st.counts[1] + st.counts[2] + st.counts[3], 0);
    uint64_t above = 0;
    for (size_t b = 5; b <= LOOPWATCH_BUCKETS; b++)
        above += st.counts[b];
    assert_true(above >= 1);
    loopwatch_reset();
    loopwatch_read(&st);
    assert_int_equal(st.samples, 0);
    assert_true(st.max_s == 0);
}

/* ---- arena ---------------------------------------------------------------------------- */

static void test_arena_alignment_and_growth(void **state)
{
    (void)state;
    struct arena a;
    arena_init(&a, 1024);
    uint8_t *prev = NULL;
    for (size_t i = 1; i < 200; i++) {
        uint8_t *p = arena_alloc(&a, i);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        memset(p, (int)i, i); /* writable, and must not overlap the previous block */
        if (prev)
            assert_int_equal(prev[0], (uint8_t)(i - 1));
        prev = p;
    }
    assert_true(arena_chunk_count(&a) > 1); /* ~20 KiB through 1 KiB chunks */
    /* One allocation bigger than any chunk so far gets a chunk that fits it. */
    uint8_t *big = arena_alloc(&a, 100000);
    memset(big, 0xab, 100000);
    assert_true(arena_bytes(&a) >= 100000);
    arena_cleanup(&a);
}

static void test_arena_reset_keeps_one_chunk(void **state)
{
    (void)state;
    struct arena a;
    arena_init(&a, 256);
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 100; i++)
            assert_non_null(arena_alloc(&a, 100));
        arena_reset(&a);
        /* After a reset one chunk remains, big enough for what the round used. */
        assert_int_equal(arena_chunk_count(&a), 1);
        assert_true(arena_bytes(&a) >= 100 * 100);
    }
    size_t held = arena_bytes(&a);
    for (int i = 0; i < 100; i++)
        arena_alloc(&a, 100);
    assert_int_equal(arena_chunk_count(&a), 1); /* the steady state allocates nothing */
    assert_int_equal(arena_bytes(&a), held);
    arena_cleanup(&a);
}

static void test_arena_trim_returns_memory(void **state)
{
    (void)state;
    struct arena a;
    arena_init(&a, 4096);
    arena_alloc(&a, 8u << 20); /* one unusually large frame */
    assert_true(arena_bytes(&a) >= (8u << 20));
    arena_trim(&a, 1u << 20);
    assert_true(arena_bytes(&a) <= 4096 * 2); /* back to the size given to arena_init */
    /* Under the bound, trim is a reset: the chunk stays. */
    arena_alloc(&a, 64 * 1024);
    arena_trim(&a, 1u << 20);
    assert_int_equal(arena_chunk_count(&a), 1);
    assert_true(arena_bytes(&a) >= 64 * 1024);
    arena_cleanup(&a);
    arena_cleanup(&a); /* twice is harmless */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loopwatch_samples),
        cmocka_unit_test(test_arena_alignment_and_growth),
        cmocka_unit_test(test_arena_reset_keeps_one_chunk),
        cmocka_unit_test(test_arena_trim_returns_memory),
        cmocka_unit_test(test_json_escapes),
        cmocka_unit_test(test_json_runs),
        cmocka_unit_test(test_split_plain),
        cmocka_unit_test(test_split_quoted),
        cmocka_unit_test(test_split_counts_past_cap),
        cmocka_unit_test(test_split_strict),
        cmocka_unit_test(test_reader_lines),
        cmocka_unit_test(test_reader_multiline_records),
        cmocka_unit_test(test_reader_errors),
        cmocka_unit_test(test_reader_limit),
        cmocka_unit_test(test_reader_refills),
        cmocka_unit_test(test_reader_fd_pipe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
