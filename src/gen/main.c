/* tally-gen: command line for the test-data generators (registry.c, tables.c, votes.c,
 * votes_tables.c). Parses
 * options (getopt_long) and reports usage errors; the generators own everything else. */
#include "gen/gen.h"

#include "core/addr.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#define TALLY_GEN_VERSION "0.1.0"

static void usage(FILE *f)
{
    fputs("usage:\n"
          "  tally-gen registry --out FILE [--states 25] [--circuits 4500] [--projects 30000]\n"
          "                     [--seed S]\n"
          "  tally-gen tables --registry FILE --out FILE [--electors-per-table 400]\n"
          "                   [--tables-per-circuit 2] [--seed S]\n"
          "  tally-gen votes --registry FILE --collectors K --votes N --out-dir DIR\n"
          "                  [--repeat-rate 0.02] [--unknown-rate 0.001] [--malformed M]\n"
          "                  [--tables FILE [--sheet-share 0.3] [--corrections 1]]\n"
          "                  [--seed S] [--quiet]\n"
          "\n"
          "registry: a consultation's projects as CSV (RFC 4180, UTF-8), header\n"
          "  project_id,project_name,circuit_id,circuit_name,state,seats\n"
          "  the first 25 areas are 23 states, Distrito Capital and Dependencias Federales;\n"
          "  circuits are spread over them by population, ~projects/circuits projects per\n"
          "  circuit, 1-2 seats; project and circuit ids are distinct sparse uint32 values.\n"
          "\n"
          "tables: the voting tables of the registry's circuits, for tallyctl load-tables:\n"
          "  header table_id,circuit_id,electors; K tables per circuit named T<circuit>-<k>,\n"
          "  each with electors within 25 % of --electors-per-table.\n"
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
          "votes --tables FILE: each voter belongs to a table and votes for projects of its\n"
          "  circuit; lines are voter,project_id,table_id, a voter's first line in the\n"
          "  file of its table's region (the circuits cut in K ranges). Each table draws a\n"
          "  turnout of 40-80 % of its electors; a ballot-by-ballot table never holds more\n"
          "  ballots (it fails when --votes needs more than they hold). --sheet-share of\n"
          "  the tables report by tally sheet instead, their ballots in\n"
          "    DIR/sheets.csv         table_id,version,project_id,votes (blank, null rows);\n"
          "                           --corrections of the sheets get a version 2 (other\n"
          "                           counts), after the version 1 sheets\n"
          "    DIR/sheets-dup.csv     one uncorrected version 1 sheet again: a duplicate\n"
          "  and truth.csv counts each table's latest sheet; truth-summary.txt adds tables,\n"
          "  tables_reported, electors, electors_reported, ballots, sheets (in sheets.csv),\n"
          "  corrections, sheets_duplicate, blank and null; and\n"
          "    DIR/truth-tables.csv   table_id,mode,ballots (mode sheet, ballots or none)\n"
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

/* getopt_long's values: OPT_WORD is what its in-order mode returns for a non-option. */
enum {
    OPT_WORD = 1,
    OPT_HELP = 'h',
    OPT_VERSION = 256,
    OPT_OUT,
    OPT_STATES,
    OPT_CIRCUITS,
    OPT_PROJECTS,
    OPT_SEED,
    OPT_QUIET,
    OPT_REGISTRY,
    OPT_OUT_DIR,
    OPT_COLLECTORS,
    OPT_VOTES,
    OPT_REPEAT_RATE,
    OPT_UNKNOWN_RATE,
    OPT_MALFORMED,
    OPT_ELECTORS,
    OPT_PER_CIRCUIT,
    OPT_TABLES,
    OPT_SHEET_SHARE,
    OPT_CORRECTIONS
};

/* The next element, by getopt_long in its in-order mode, so each is judged where it stands,
 * as tally-gen always did: the first unknown one is an error, "--" included, and -h is --help
 * only as an element of its own. Returns the option (':' for a value missing at the end), -1
 * at the end; *text is the element it came from, *name its "--long" name. */
static int opt_next(int argc, char **argv, const struct option *opts, const char **text, char *name,
                    size_t name_len)
{
    opterr = 0;
    *name = '\0';
    int prev = optind > 0 ? optind : 1; /* 0 asks glibc to start afresh at 1 */
    if (prev < argc && strcmp(argv[prev], "--") == 0) {
        *text = argv[prev];
        return '?';
    }
    int ch = getopt_long(argc, argv, "-:", opts, NULL);
    *text = prev < argc ? argv[prev] : "";
    if (ch == '?' && optopt == 'h' && strcmp(*text, "-h") == 0)
        ch = OPT_HELP;
    int val = ch == ':' ? optopt : ch;
    for (const struct option *o = opts; o->name; o++)
        if (o->val == val)
            snprintf(name, name_len, "--%s", o->name);
    return ch;
}

static int cmd_registry(int argc, char **argv)
{
    static const struct option opts[] = {
        {"out", required_argument, NULL, OPT_OUT},
        {"states", required_argument, NULL, OPT_STATES},
        {"circuits", required_argument, NULL, OPT_CIRCUITS},
        {"projects", required_argument, NULL, OPT_PROJECTS},
        {"seed", required_argument, NULL, OPT_SEED},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    struct gen_registry_opts o = {NULL, 25, 4500, 30000, 1};
    optind = 0; /* a new argv: glibc starts afresh */
    const char *text;
    char name[32];
    int ch;
    while ((ch = opt_next(argc, argv, opts, &text, name, sizeof(name))) != -1) {
        const char *v = ch == ':' ? NULL : optarg; /* a value missing at the end */
        int bad = 0;
        switch (ch == ':' ? optopt : ch) {
        case OPT_HELP:
            usage(stdout);
            return 0;
        case OPT_OUT:
            o.out = v;
            if (!v)
                fprintf(stderr, "tally-gen registry: %s needs a value\n", name);
            bad = !v;
            break;
        case OPT_STATES:
            bad = opt_u32(name, v, 1, &o.states);
            break;
        case OPT_CIRCUITS:
            bad = opt_u32(name, v, 1, &o.circuits);
            break;
        case OPT_PROJECTS:
            bad = opt_u32(name, v, 1, &o.projects);
            break;
        case OPT_SEED:
            bad = opt_u64(name, v, &o.seed);
            break;
        default: /* an unknown option, or a word */
            fprintf(stderr, "tally-gen registry: unknown option '%s' (see --help)\n", text);
            return 2;
        }
        if (bad)
            return 2;
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

static int cmd_tables(int argc, char **argv)
{
    static const struct option opts[] = {
        {"registry", required_argument, NULL, OPT_REGISTRY},
        {"out", required_argument, NULL, OPT_OUT},
        {"electors-per-table", required_argument, NULL, OPT_ELECTORS},
        {"tables-per-circuit", required_argument, NULL, OPT_PER_CIRCUIT},
        {"seed", required_argument, NULL, OPT_SEED},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    struct gen_tables_opts o = {NULL, NULL, 400, 2, 1};
    optind = 0; /* a new argv: glibc starts afresh */
    const char *text;
    char name[32];
    int ch;
    while ((ch = opt_next(argc, argv, opts, &text, name, sizeof(name))) != -1) {
        const char *v = ch == ':' ? NULL : optarg; /* a value missing at the end */
        int bad = 0;
        switch (ch == ':' ? optopt : ch) {
        case OPT_HELP:
            usage(stdout);
            return 0;
        case OPT_REGISTRY:
            o.registry = v;
            bad = !v;
            break;
        case OPT_OUT:
            o.out = v;
            bad = !v;
            break;
        case OPT_ELECTORS:
            bad = opt_u32(name, v, 1, &o.electors_per_table);
            break;
        case OPT_PER_CIRCUIT:
            bad = opt_u32(name, v, 1, &o.tables_per_circuit);
            break;
        case OPT_SEED:
            bad = opt_u64(name, v, &o.seed);
            break;
        default: /* an unknown option, or a word */
            fprintf(stderr, "tally-gen tables: unknown option '%s' (see --help)\n", text);
            return 2;
        }
        if (bad) {
            if (!v)
                fprintf(stderr, "tally-gen tables: %s needs a value\n", name);
            return 2;
        }
    }
    if (!o.registry || !o.out) {
        fprintf(stderr, "tally-gen tables: --registry and --out are required\n");
        return 2;
    }
    if (o.electors_per_table > 1000000000u || o.tables_per_circuit > 100000u) {
        fprintf(stderr, "tally-gen tables: at most 1000000000 --electors-per-table and 100000 "
                        "--tables-per-circuit\n");
        return 2;
    }
    return gen_tables(&o) ? 1 : 0;
}

static int cmd_votes(int argc, char **argv)
{
    static const struct option opts[] = {
        {"registry", required_argument, NULL, OPT_REGISTRY},
        {"out-dir", required_argument, NULL, OPT_OUT_DIR},
        {"collectors", required_argument, NULL, OPT_COLLECTORS},
        {"votes", required_argument, NULL, OPT_VOTES},
        {"repeat-rate", required_argument, NULL, OPT_REPEAT_RATE},
        {"unknown-rate", required_argument, NULL, OPT_UNKNOWN_RATE},
        {"malformed", required_argument, NULL, OPT_MALFORMED},
        {"tables", required_argument, NULL, OPT_TABLES},
        {"sheet-share", required_argument, NULL, OPT_SHEET_SHARE},
        {"corrections", required_argument, NULL, OPT_CORRECTIONS},
        {"seed", required_argument, NULL, OPT_SEED},
        {"quiet", no_argument, NULL, OPT_QUIET},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    struct gen_votes_opts o = {.repeat_rate = 0.02,
                               .unknown_rate = 0.001,
                               .seed = 1,
                               .sheet_share = 0.3,
                               .corrections = 1};
    bool have_votes = false, sheet_opts = false;
    optind = 0; /* a new argv: glibc starts afresh */
    const char *text;
    char name[32];
    int ch;
    while ((ch = opt_next(argc, argv, opts, &text, name, sizeof(name))) != -1) {
        const char *v = ch == ':' ? NULL : optarg; /* a value missing at the end */
        int bad = 0;
        switch (ch == ':' ? optopt : ch) {
        case OPT_HELP:
            usage(stdout);
            return 0;
        case OPT_QUIET:
            o.quiet = true;
            break;
        case OPT_REGISTRY:
            o.registry = v;
            bad = !v;
            break;
        case OPT_OUT_DIR:
            o.out_dir = v;
            bad = !v;
            break;
        case OPT_COLLECTORS:
            bad = opt_u32(name, v, 1, &o.collectors);
            break;
        case OPT_VOTES:
            bad = opt_u64(name, v, &o.votes);
            have_votes = true;
            break;
        case OPT_REPEAT_RATE:
            bad = opt_rate(name, v, &o.repeat_rate);
            break;
        case OPT_UNKNOWN_RATE:
            bad = opt_rate(name, v, &o.unknown_rate);
            break;
        case OPT_MALFORMED:
            bad = opt_u64(name, v, &o.malformed);
            break;
        case OPT_TABLES:
            o.tables = v;
            bad = !v;
            break;
        case OPT_SHEET_SHARE:
            bad = opt_rate(name, v, &o.sheet_share);
            sheet_opts = true;
            break;
        case OPT_CORRECTIONS:
            bad = opt_u32(name, v, 0, &o.corrections);
            sheet_opts = true;
            break;
        case OPT_SEED:
            bad = opt_u64(name, v, &o.seed);
            break;
        default: /* an unknown option, or a word */
            fprintf(stderr, "tally-gen votes: unknown option '%s' (see --help)\n", text);
            return 2;
        }
        if (bad) {
            if (!v)
                fprintf(stderr, "tally-gen votes: %s needs a value\n", name);
            return 2;
        }
    }
    if (!o.registry || !o.out_dir || !o.collectors || !have_votes) {
        fprintf(stderr, "tally-gen votes: --registry, --collectors, --votes and --out-dir are "
                        "required\n");
        return 2;
    }
    if (sheet_opts && !o.tables) {
        fprintf(stderr, "tally-gen votes: --sheet-share and --corrections need --tables\n");
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
    static const struct option opts[] = {
        {"help", no_argument, NULL, OPT_HELP},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    /* The first element is the command, or --help / --version. */
    const char *text;
    char name[32];
    int ch = opt_next(argc, argv, opts, &text, name, sizeof(name));
    if (ch == OPT_HELP || (ch == OPT_WORD && !strcmp(optarg, "help"))) {
        usage(stdout);
        return 0;
    }
    if (ch == OPT_VERSION) {
        printf("tally-gen %s\n", TALLY_GEN_VERSION);
        return 0;
    }
    if (ch == OPT_WORD && !strcmp(optarg, "registry"))
        return cmd_registry(argc - 1, argv + 1);
    if (ch == OPT_WORD && !strcmp(optarg, "tables"))
        return cmd_tables(argc - 1, argv + 1);
    if (ch == OPT_WORD && !strcmp(optarg, "votes"))
        return cmd_votes(argc - 1, argv + 1);
    fprintf(stderr, "tally-gen: unknown command '%s' (registry, tables or votes; see --help)\n",
            text);
    return 2;
}
