/* tally-gen: command line for the test-data generators (registry.c, votes.c). Parses
 * options and reports usage errors; the generators own everything else. */
#include "gen/gen.h"

#include "core/addr.h"

#include <stdlib.h>
#include <string.h>

#define TALLY_GEN_VERSION "0.1.0"

static void usage(FILE *f)
{
    fputs("usage:\n"
          "  tally-gen registry --out FILE [--states 25] [--circuits 4500] [--projects 30000]\n"
          "                     [--seed S]\n"
          "  tally-gen votes --registry FILE --collectors K --votes N --out-dir DIR\n"
          "                  [--repeat-rate 0.02] [--unknown-rate 0.001] [--malformed M]\n"
          "                  [--seed S] [--quiet]\n"
          "\n"
          "registry: a consultation's projects as CSV (RFC 4180, UTF-8), header\n"
          "  project_id,project_name,circuit_id,circuit_name,state,seats\n"
          "  the first 25 areas are 23 states, Distrito Capital and Dependencias Federales;\n"
          "  circuits are spread over them by population, ~projects/circuits projects per\n"
          "  circuit, 1-2 seats; project and circuit ids are distinct sparse uint32 values.\n"
          "\n"
          "votes: DIR/collector-<i>.csv (voter,project_id; even-numbered files start with a\n"
          "  header line) for i in 0..K-1, with a share of repeated voters and of votes for\n"
          "  project ids not in the registry, and --malformed lines planted in the last\n"
          "  collector's file; plus the exact expected outcome:\n"
          "    DIR/truth.csv          project_id,votes for every project, sorted by id\n"
          "    DIR/truth-summary.txt  votes, accepted, duplicate, rejected, malformed totals\n"
          "  Rule: each collector's lines in file order; an unknown project is rejected and\n"
          "  does not use up the ballot; a voter's second valid vote (any collector) is a\n"
          "  duplicate. A voter seen at several collectors votes the same project at all of\n"
          "  them, so the truth does not depend on how collectors interleave.\n"
          "\n"
          "Output depends only on the options (same --seed, same files).\n"
          "\n"
          "  -h, --help   show this help (also after a command)\n"
          "  --version    show the version and exit\n",
          f);
}

static int opt_u32(const char *name, const char *val, uint32_t min, uint32_t *out)
{
    uint64_t v;
    if (!val || parse_u64(val, UINT32_MAX, &v) || v < min) {
        fprintf(stderr, "tally-gen: %s needs a whole number >= %u\n", name, min);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int opt_u64(const char *name, const char *val, uint64_t *out)
{
    if (!val || parse_u64(val, UINT64_MAX, out)) {
        fprintf(stderr, "tally-gen: %s needs a whole number\n", name);
        return -1;
    }
    return 0;
}

static int opt_rate(const char *name, const char *val, double *out)
{
    char *end;
    if (!val || !*val) {
        fprintf(stderr, "tally-gen: %s needs a value\n", name);
        return -1;
    }
    double d = strtod(val, &end);
    if (*end || !(d >= 0.0 && d < 1.0)) {
        fprintf(stderr, "tally-gen: %s must be in [0, 1)\n", name);
        return -1;
    }
    *out = d;
    return 0;
}

static int cmd_registry(int argc, char **argv)
{
    struct gen_registry_opts o = {NULL, 25, 4500, 30000, 1};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--out")) {
            o.out = v;
            bad = !v;
        } else if (!strcmp(a, "--states")) {
            bad = opt_u32(a, v, 1, &o.states);
        } else if (!strcmp(a, "--circuits")) {
            bad = opt_u32(a, v, 1, &o.circuits);
        } else if (!strcmp(a, "--projects")) {
            bad = opt_u32(a, v, 1, &o.projects);
        } else if (!strcmp(a, "--seed")) {
            bad = opt_u64(a, v, &o.seed);
        } else {
            fprintf(stderr, "tally-gen registry: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (bad)
            return 2;
        i++;
    }
    if (!o.out) {
        fprintf(stderr, "tally-gen registry: --out FILE is required\n");
        return 2;
    }
    if (o.circuits < o.states || o.projects < o.circuits) {
        fprintf(stderr, "tally-gen registry: need states <= circuits <= projects\n");
        return 2;
    }
    return gen_registry(&o) ? 1 : 0;
}

static int cmd_votes(int argc, char **argv)
{
    struct gen_votes_opts o = {.repeat_rate = 0.02, .unknown_rate = 0.001, .seed = 1};
    bool have_votes = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--quiet")) {
            o.quiet = true;
            continue;
        } else if (!strcmp(a, "--registry")) {
            o.registry = v;
            bad = !v;
        } else if (!strcmp(a, "--out-dir")) {
            o.out_dir = v;
            bad = !v;
        } else if (!strcmp(a, "--collectors")) {
            bad = opt_u32(a, v, 1, &o.collectors);
        } else if (!strcmp(a, "--votes")) {
            bad = opt_u64(a, v, &o.votes);
            have_votes = true;
        } else if (!strcmp(a, "--repeat-rate")) {
            bad = opt_rate(a, v, &o.repeat_rate);
        } else if (!strcmp(a, "--unknown-rate")) {
            bad = opt_rate(a, v, &o.unknown_rate);
        } else if (!strcmp(a, "--malformed")) {
            bad = opt_u64(a, v, &o.malformed);
        } else if (!strcmp(a, "--seed")) {
            bad = opt_u64(a, v, &o.seed);
        } else {
            fprintf(stderr, "tally-gen votes: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (bad) {
            if (!v)
                fprintf(stderr, "tally-gen votes: %s needs a value\n", a);
            return 2;
        }
        i++;
    }
    if (!o.registry || !o.out_dir || !o.collectors || !have_votes) {
        fprintf(stderr, "tally-gen votes: --registry, --collectors, --votes and --out-dir are "
                        "required\n");
        return 2;
    }
    if (o.repeat_rate + o.unknown_rate >= 1.0) {
        fprintf(stderr, "tally-gen votes: --repeat-rate + --unknown-rate must be below 1\n");
        return 2;
    }
    return gen_votes(&o) ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("tally-gen %s\n", TALLY_GEN_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "registry"))
        return cmd_registry(argc - 2, argv + 2);
    if (!strcmp(argv[1], "votes"))
        return cmd_votes(argc - 2, argv + 2);
    fprintf(stderr, "tally-gen: unknown command '%s' (registry or votes; see --help)\n", argv[1]);
    return 2;
}
