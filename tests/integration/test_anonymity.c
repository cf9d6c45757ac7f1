/* No stored record narrows a token to fewer than --min-anonymity ballots, checked the way
 * an attacker with read access would: a trickle of one-vote batches, each made durable in
 * its own checkpoint, then a plain pg_dump scanned for every token pushed. Every dump line
 * that holds one of them must be a token_pages row holding at least 100 tokens, and nothing
 * else may hold one. The record tallyd wrote then verifies, and stops verifying once a
 * token page is edited. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"
#include "tally.pb-c.h"
#include "tally/protocol.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TRICKLE 250
#define MIN_ANON 100

static struct ts_case tc;

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    return ts_case_setup(&tc, "anonymity", 50, 10, 1, 100, "0", "0", 0, 5);
}

static int teardown(void **state)
{
    (void)state;
    ts_case_teardown(&tc, true);
    return 0;
}

/* Waits for an Ack of seq and then a durable ack covering it. */
static void wait_durable(int fd, uint64_t seq)
{
    struct ts_frame f;
    for (int64_t end = ts_now_ms() + ts_scale(10000); ts_now_ms() < end;) {
        int rc = ts_wire_recv(fd, &f, 2000);
        if (rc != 1)
            fail_msg("connection ended waiting for seq %llu (%d)", (unsigned long long)seq, rc);
        if (f.kind == TALLY__FRAME__MSG_ERROR)
            fail_msg("error %d: %s", f.error_code, f.message);
        if (f.kind == TALLY__FRAME__MSG_ACK && f.durable_seq >= seq)
            return;
    }
    fail_msg("seq %llu not durable in time", (unsigned long long)seq);
}

static void hex_le(uint64_t v, char out[17])
{
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", (unsigned)((v >> (8 * i)) & 0xff));
}

/* Tokens in the longest \x... hex run of a dump line (a bytea in COPY text form). */
static size_t tokens_in_line(const char *line, size_t len)
{
    size_t best = 0;
    for (size_t i = 0; i + 2 < len; i++) {
        if (line[i] != '\\' || line[i + 1] != 'x')
            continue;
        size_t j = i + 2;
        while (j < len &&
               ((line[j] >= '0' && line[j] <= '9') || (line[j] >= 'a' && line[j] <= 'f')))
            j++;
        if ((j - i - 2) / 16 > best)
            best = (j - i - 2) / 16;
        i = j;
    }
    return best;
}

static void test_trickle_then_pg_dump(void **state)
{
    (void)state;
    tc.d.checkpoint_ms = 10;
    snprintf(tc.d.extra, sizeof tc.d.extra, "--min-anonymity %d", MIN_ANON);
    assert_int_equal(ts_tallyd_start(&tc.d, ts_scale(30000)), 0);
    int fd = ts_connect(tc.d.port, 5000);
    assert_true(fd >= 0);
    assert_int_equal(ts_wire_hello(fd, "c0", TALLY_PROTOCOL_VERSION), 0);
    struct ts_frame f;
    assert_int_equal(ts_wire_recv(fd, &f, 5000), 1);
    assert_int_equal(f.kind, TALLY__FRAME__MSG_WELCOME);

    uint32_t project = ts_truth_first_project(tc.truth_csv);
    static uint64_t tokens[TRICKLE];
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < TRICKLE; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        tokens[i] = x;
        /* One vote per batch, each durable before the next: one checkpoint each. */
        assert_int_equal(ts_wire_batch(fd, (uint64_t)i + 1, &tokens[i], &project, 1), 0);
        wait_durable(fd, (uint64_t)i + 1);
    }
    close(fd);
    /* The head of the chain is published, and it is what verify recomputes below. */
    char summary[65536];
    assert_int_equal(ts_http_get(tc.d.http_port, "/v1/summary", summary, sizeof summary, 5000),
                     200);
    const char *h = strstr(summary, "\"head_hash\":\"");
    assert_non_null(h);
    char head[65];
    snprintf(head, sizeof head, "%.64s", h + strlen("\"head_hash\":\""));
    uint64_t checkpoints = 0;
    assert_int_equal(ts_sql_u64(tc.conninfo, "SELECT count(*) FROM checkpoints", &checkpoints), 0);
    assert_true(checkpoints >= TRICKLE);
    assert_int_equal(ts_tallyd_stop(&tc.d, ts_scale(30000)), 0);

    /* The attacker's view. */
    char dump[1200], cmd[2000];
    snprintf(dump, sizeof dump, "%s/dump.sql", tc.dir);
    snprintf(cmd, sizeof cmd, "pg_dump --no-owner -d '%s' > '%s'", tc.conninfo, dump);
    assert_int_equal(system(cmd), 0);
    char *text = ts_read_file(dump);
    assert_non_null(text);
    char hex[TRICKLE][17];
    for (int i = 0; i < TRICKLE; i++)
        hex_le(tokens[i], hex[i]);
    int found = 0;
    const char *copy = NULL; /* the COPY statement of the block we are in */
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (strncmp(line, "COPY ", 5) == 0)
            copy = line;
        int hits = 0;
        for (int i = 0; i < TRICKLE; i++)
            hits += memmem(line, len, hex[i], 16) != NULL;
        if (hits) {
            if (!copy || strncmp(copy, "COPY public.token_pages ", 24) != 0)
                fail_msg("a token appears outside token_pages: %.120s", line);
            size_t n = tokens_in_line(line, len);
            if (n < MIN_ANON)
                fail_msg("a token_pages row holds %zu tokens, fewer than %d", n, MIN_ANON);
            found += hits;
        }
        line = nl ? nl + 1 : line + len;
    }
    assert_int_equal(found, TRICKLE); /* every token is stored, each once */
    free(text);

    /* tallyd's own record verifies; an edited token page does not. */
    char *out = NULL;
    assert_int_equal(ts_ctl(tc.conninfo, &out, "verify", NULL, NULL), 0);
    assert_non_null(out);
    char want[80];
    snprintf(want, sizeof want, "head %s", head);
    if (!strstr(out, want))
        fail_msg("verify's head differs from /v1/summary's %s:\n%s", head, out);
    free(out);
    assert_int_equal(ts_sql_exec(tc.conninfo,
                                 "UPDATE token_pages SET tokens = overlay(tokens placing"
                                 " '\\x0102030405060708'::bytea from 1 for 8)"
                                 " WHERE id = (SELECT min(id) FROM token_pages)"),
                     0);
    assert_int_equal(ts_ctl(tc.conninfo, NULL, "verify", NULL, NULL), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trickle_then_pg_dump),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
