/* tally-gen, the source of every expected result: deterministic from --seed, the registry has
 * the promised shape (25 areas, distinct sparse ids across the whole uint32 range, quoted
 * names), the truth files agree with each other and with the vote files, and without
 * --tables the output is, byte for byte, what it was before tables existed (pinned by hash).
 * With tables: test_gen_tables.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int gen(const char *dir, const char *seed, const char *votes)
{
    char reg[1200], out[1200];
    snprintf(reg, sizeof reg, "%s/registry.csv", dir);
    snprintf(out, sizeof out, "%s/votes", dir);
    char *a1[] = {(char *)ts_prog("tally-gen"),
                  "registry",
                  "--out",
                  reg,
                  "--circuits",
                  "700",
                  "--projects",
                  "5000",
                  "--seed",
                  (char *)seed,
                  NULL};
    char *a2[] = {(char *)ts_prog("tally-gen"),
                  "votes",
                  "--registry",
                  reg,
                  "--collectors",
                  "3",
                  "--votes",
                  (char *)votes,
                  "--out-dir",
                  out,
                  "--repeat-rate",
                  "0.05",
                  "--unknown-rate",
                  "0.01",
                  "--malformed",
                  "5",
                  "--seed",
                  (char *)seed,
                  "--quiet",
                  NULL};
    if (ts_run(a1, NULL, NULL, 60000) != 0 || ts_run(a2, NULL, NULL, 60000) != 0)
        return -1;
    return 0;
}

static bool same_file(const char *a, const char *b)
{
    char *x = ts_read_file(a), *y = ts_read_file(b);
    bool same = x && y && strcmp(x, y) == 0;
    free(x);
    free(y);
    return same;
}

/* FNV-1a 64 of a file's bytes (0 when unreadable). */
static uint64_t file_fnv(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    uint64_t h = 0xcbf29ce484222325ull;
    int c;
    while ((c = getc(f)) != EOF)
        h = (h ^ (uint8_t)c) * 0x100000001b3ull;
    fclose(f);
    return h;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_gen(void **state)
{
    (void)state;
    char d1[1024], d2[1024], d3[1024];
    snprintf(d1, sizeof d1, "%s", ts_workdir("gen1"));
    snprintf(d2, sizeof d2, "%s", ts_workdir("gen2"));
    snprintf(d3, sizeof d3, "%s", ts_workdir("gen3"));
    assert_int_equal(gen(d1, "5", "100000"), 0);
    assert_int_equal(gen(d2, "5", "100000"), 0);
    assert_int_equal(gen(d3, "6", "100000"), 0);

    const char *files[] = {"registry.csv",          "votes/collector-0.csv",
                           "votes/collector-1.csv", "votes/collector-2.csv",
                           "votes/truth.csv",       "votes/truth-summary.txt"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char a[1200], b[1200], c[1200];
        snprintf(a, sizeof a, "%s/%s", d1, files[i]);
        snprintf(b, sizeof b, "%s/%s", d2, files[i]);
        snprintf(c, sizeof c, "%s/%s", d3, files[i]);
        if (!same_file(a, b))
            fail_msg("%s differs between two runs with the same seed", files[i]);
        if (same_file(a, c))
            fail_msg("%s is the same for different seeds", files[i]);
    }

    /* The bytes tally-gen wrote for seed 5 before voting tables existed (issue 10): data
     * generated then must stay reproducible. */
    char path[1200];
    static const struct {
        const char *file;
        uint64_t fnv;
    } pinned[] = {
        {"registry.csv", 0x98ef13bcb33d716dull},
        {"votes/collector-0.csv", 0xf8a5903f84e918b3ull},
        {"votes/collector-1.csv", 0xaa2ee634f1eabfdcull},
        {"votes/collector-2.csv", 0x92645bfcd59e38fcull},
        {"votes/truth.csv", 0x67e16506b15f49eeull},
        {"votes/truth-summary.txt", 0xf0f757f069396306ull},
    };
    for (size_t i = 0; i < sizeof pinned / sizeof pinned[0]; i++) {
        char p[1200];
        snprintf(p, sizeof p, "%s/%s", d1, pinned[i].file);
        if (file_fnv(p) != pinned[i].fnv)
            fail_msg("%s is not what tally-gen always wrote for seed 5 (FNV-1a %016llx)",
                     pinned[i].file, (unsigned long long)file_fnv(p));
    }
    snprintf(path, sizeof path, "%s/votes/sheets.csv", d1);
    assert_null(ts_read_file(path)); /* no tables, no sheets */

    /* Registry: 5000 projects, distinct ids, some above 2^31, some quoted names, 25 areas. */
    snprintf(path, sizeof path, "%s/registry.csv", d1);
    char *reg = ts_read_file(path);
    assert_non_null(reg);
    assert_true(strncmp(reg, "project_id,project_name,circuit_id,circuit_name,state,seats\n", 60) ==
                0);
    uint64_t *ids = calloc(6000, sizeof *ids);
    assert_non_null(ids);
    size_t n = 0, quoted = 0, high = 0;
    for (char *line = strchr(reg, '\n') + 1; *line; line = strchr(line, '\n') + 1) {
        unsigned long long id = strtoull(line, NULL, 10);
        assert_true(n < 6000);
        ids[n++] = id;
        high += id > 0x7fffffffull;
        char *end = strchr(line, '\n');
        assert_non_null(end);
        quoted += memchr(line, '"', (size_t)(end - line)) != NULL;
    }
    assert_int_equal(n, 5000);
    qsort(ids, n, sizeof *ids, cmp_u64);
    for (size_t i = 1; i < n; i++)
        assert_true(ids[i] != ids[i - 1] && ids[i] != 0);
    assert_true(high > 0);
    assert_true(quoted > 0);
    assert_non_null(strstr(reg, ",Distrito Capital,"));
    assert_non_null(strstr(reg, "ñ"));
    free(reg);

    /* Truth: every project once, sorted, summing to `accepted`; the summary adds up. */
    struct ts_truth t;
    snprintf(path, sizeof path, "%s/votes/truth-summary.txt", d1);
    assert_int_equal(ts_truth_read(path, &t), 0);
    assert_int_equal(t.votes, 100000);
    assert_int_equal(t.accepted + t.duplicate + t.rejected, t.votes);
    assert_int_equal(t.malformed, 5);
    assert_true(t.duplicate > 0 && t.rejected > 0);
    snprintf(path, sizeof path, "%s/votes/truth.csv", d1);
    char *truth = ts_read_file(path);
    assert_non_null(truth);
    assert_true(strncmp(truth, "project_id,votes\n", 17) == 0);
    uint64_t sum = 0, rows = 0, prev = 0;
    for (char *line = strchr(truth, '\n') + 1; *line; line = strchr(line, '\n') + 1) {
        unsigned long long id, v;
        assert_int_equal(sscanf(line, "%llu,%llu", &id, &v), 2);
        assert_true(rows == 0 || id > prev);
        assert_int_equal(id, ids[rows]);
        prev = id;
        sum += v;
        rows++;
    }
    assert_int_equal(rows, 5000);
    assert_int_equal(sum, t.accepted);
    free(truth);
    free(ids);

    /* Vote files: lines add up to votes + malformed (+ header lines of even files). */
    uint64_t lines = 0;
    for (int c = 0; c < 3; c++) {
        snprintf(path, sizeof path, "%s/votes/collector-%d.csv", d1, c);
        char *text = ts_read_file(path);
        assert_non_null(text);
        if (c % 2 == 0)
            assert_true(strncmp(text, "voter,project_id\n", 17) == 0);
        for (char *p = text; (p = strchr(p, '\n')); p++)
            lines++;
        free(text);
    }
    assert_int_equal(lines, t.votes + t.malformed + 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
