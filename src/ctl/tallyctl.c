/* tallyctl: the operator's command line. Parses arguments, runs one command against
 * PostgreSQL through the store module (or, for ca, on files through tls), prints the
 * answer. Owns the wording of usage and errors and the output formats; owns no SQL (store
 * does) and no CSV parsing (ctl). The load, collector and ca commands are in load_cmd.c,
 * collector_cmd.c and ca_cmd.c. */
#include "core/log.h"
#include "ctl/cmds.h"
#include "ctl/collectors.h"
#include "ctl/registry_csv.h"
#include "ctl/tables_csv.h"
#include "ctl/text.h"
#include "store/store.h"
#include "tls/tls.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TALLYCTL_VERSION "0.1.0"

_Static_assert(STORE_PIN_BYTES == TLS_PIN_BYTES, "a stored pin is a TLS pin");

static const char usage_text[] =
    "usage: tallyctl [--db CONNINFO] COMMAND [ARGS]\n"
    "\n"
    "Administers tallyd's PostgreSQL database.\n"
    "\n"
    "Commands:\n"
    "  migrate [--to N]            apply schema migrations (only up to version N with --to,\n"
    "                              for tests that build an old database); prints the\n"
    "                              schema version\n"
    "  load-registry FILE.csv      load states, circuits and projects (FILE '-' is stdin);\n"
    "                              header: " CTL_REGISTRY_HEADER "\n"
    "                              or with a seventh column, min_votes (the votes a project\n"
    "                              needs at least to win; without it 0); all or nothing;\n"
    "                              loading the same file again changes nothing; a row that\n"
    "                              conflicts (with the file or the database; min_votes too,\n"
    "                              so a six-column file over projects loaded with min_votes\n"
    "                              other than 0 is refused) is reported as FILE:LINE\n"
    "  load-tables FILE.csv        load voting tables and their electors (FILE '-' is\n"
    "                              stdin); header: " CTL_TABLES_HEADER "\n"
    "                              table_id: 1 to 63 of A-Z a-z 0-9 . _ -; circuit_id: a\n"
    "                              registry circuit (load-registry first); electors: 0 to\n"
    "                              2147483647; all or nothing; the same file again changes\n"
    "                              nothing; a row that conflicts (a table given twice, or\n"
    "                              held with another circuit or electors) is reported as\n"
    "                              FILE:LINE; tallyd reads the tables at its next start\n"
    "  add-collector ID [--cert FILE] [--circuits LIST | --state NAME]\n"
    "                              register a collector, ID matching [A-Za-z0-9._-]{1,63};\n"
    "                              an already registered ID keeps what is not given again:\n"
    "    --cert FILE               pin the collector to this PEM certificate (SHA-256 of its\n"
    "                              public key); a new --cert replaces the pin\n"
    "    --circuits LIST           take votes only for projects of these circuits (circuit\n"
    "                              ids from the registry, comma-separated); 'all' lifts it\n"
    "    --state NAME              ... of every circuit the state has now\n"
    "  disable-collector ID        refuse the collector from its next Hello on (a running\n"
    "                              tallyd drops its session at its next collectors refresh)\n"
    "  enable-collector ID         take it again\n"
    "  collectors [--format text|json]\n"
    "                              each collector's pin (text: its first 16 hex digits),\n"
    "                              disabled, durable_seq and circuits\n"
    "  results [--format csv|json] durable results: every project's votes (csv: header\n"
    "                              project_id,votes; json: consultation, last checkpoint,\n"
    "                              totals and projects), ordered by project_id\n"
    "  status [--format text|json] last checkpoint, the voting tables and their electors\n"
    "                              (when any), each collector's durable_seq and totals\n"
    "  verify                      audit the record with SELECT alone, in one snapshot:\n"
    "                              every collector, batch, checkpoint and token page against\n"
    "                              each other, the tallies against the count deltas, and the\n"
    "                              hash chain (docs/record.md); prints the totals and the\n"
    "                              head hash, or the first disagreement found\n"
    "  ca init DIR [--server-name NAME]...\n"
    "                              make a private CA in DIR (ca.crt, ca.key) and tallyd's\n"
    "                              certificate server.crt/server.key for localhost, 127.0.0.1,\n"
    "                              ::1 and each NAME (a DNS name or IP address); no database\n"
    "  ca issue DIR ID             issue collector ID's certificate DIR/ID.crt and key\n"
    "                              DIR/ID.key from that CA; prints its pin; no database\n"
    "\n"
    "The organiser's commands (retract, close and the tie rule are asked of the running\n"
    "tallyd, which applies them in a checkpoint; each waits --wait-ms MS, default 30000):\n"
    "  retract --collector ID --seq N --reason TEXT --actor NAME [--wait-ms MS]\n"
    "                              take a durable ballot batch's votes out of the count (a\n"
    "                              correction; its ballot tokens stay spent); prints the\n"
    "                              correction's deltas\n"
    "  close --actor NAME [--wait-ms MS]\n"
    "                              close the consultation: tallyd takes no new batch after\n"
    "                              the checkpoint that applies it; prints it and the head\n"
    "  set tie-rule lot --seed HEX --actor NAME [--wait-ms MS]\n"
    "                              decide a tie on the last seat by lot at certification:\n"
    "                              BLAKE2b-256(seed || project id) ascending; the seed is 32\n"
    "                              to 128 hex digits, kept secret until certification; its\n"
    "                              BLAKE2b-256, printed, is published now\n"
    "  embargo [on|off] [--actor NAME]\n"
    "                              results show progress only (tables, ballots, turnout), no\n"
    "                              votes, ranks or winners: the SQL views at once, tallyd's\n"
    "                              outputs within its next refresh (waits 5 s for it); alone,\n"
    "                              prints the embargo's state\n"
    "  certify --out DIR [--actor NAME] [--force]\n"
    "                              after close and a passing verify: the official results\n"
    "                              into DIR (projects.csv, circuits.csv, states.csv and a\n"
    "                              printable report.html), recorded with the head hash and\n"
    "                              the report's SHA-256; other files of those names in DIR\n"
    "                              are replaced only with --force; the same head again\n"
    "                              changes nothing\n"
    "  export --format csv|json|pabulib --out DIR [--country NAME]\n"
    "                              the results as they stand, one file per circuit\n"
    "                              (circuit-ID.csv|json|pb) and index.csv|json, each with\n"
    "                              the head hash and the status (provisional or official);\n"
    "                              under the embargo csv and json carry progress only and\n"
    "                              pabulib is refused; --country goes into Pabulib's META\n"
    "\n"
    "Options:\n"
    "  --db CONNINFO   libpq connection string or URI, e.g.\n"
    "                  'host=127.0.0.1 port=5432 user=tally dbname=tally';\n"
    "                  without it the PG* environment variables apply (PGHOST, ...)\n"
    "  -h, --help      show this help\n"
    "  --version       show the version and the newest schema version this build knows\n"
    "\n"
    "Exit status: 0 success, 1 runtime error (database unreachable, conflicting data,\n"
    "malformed file; for verify also a record that disagrees with itself; a request tallyd\n"
    "refused; certify refused), 2 usage error, 3 a request or the embargo not applied by\n"
    "tallyd in time (a request stays pending: tallyd applies it when it runs).\n";

void ctl_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tallyctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int ctl_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int ctl_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tallyctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see tallyctl --help)\n", stderr);
    va_end(ap);
    return EXIT_USAGE;
}

static struct store *ctl_connect(const char *conninfo)
{
    char err[512] = "";
    struct store *s = store_open(conninfo, err, sizeof(err));
    if (!s)
        ctl_err("cannot connect to PostgreSQL: %s", err);
    return s;
}

/* ---- migrate ---------------------------------------------------------------------- */

/* target < 0: every migration this build has. */
static int cmd_migrate(struct store *s, int target)
{
    int version;
    if ((target < 0 ? store_migrate(s) : store_migrate_to(s, target)) < 0) {
        ctl_err("migrate: %s", store_last_error(s));
        return EXIT_RUNTIME;
    }
    if (store_schema_version(s, &version) < 0) {
        ctl_err("migrate: %s", store_last_error(s));
        return EXIT_RUNTIME;
    }
    printf("schema version %d\n", version);
    return EXIT_OK;
}

/* ---- results and status ----------------------------------------------------------- */

struct totals {
    uint64_t batches, votes, accepted, duplicate, rejected;
};

static struct totals totals_sum(const struct store_recovery *r)
{
    struct totals t = {0};
    for (size_t i = 0; i < r->n_collectors; i++) {
        t.batches += r->collectors[i].batches;
        t.votes += r->collectors[i].votes;
        t.accepted += r->collectors[i].accepted;
        t.duplicate += r->collectors[i].duplicate;
        t.rejected += r->collectors[i].rejected;
    }
    return t;
}

static void results_csv(const struct store_recovery *r)
{
    printf("project_id,votes\n");
    for (size_t i = 0; i < r->n_projects; i++)
        printf("%" PRIu32 ",%" PRIu64 "\n", r->projects[i].id, r->projects[i].votes);
}

static void results_json(const struct store_recovery *r)
{
    struct totals t = totals_sum(r);
    fputs("{\"consultation\": ", stdout);
    ctl_json_write_string(stdout, r->consultation_id);
    printf(", \"last_checkpoint\": %" PRIu64 ", \"totals\": {\"accepted\": %" PRIu64
           ", \"duplicate\": %" PRIu64 ", \"rejected\": %" PRIu64 ", \"batches\": %" PRIu64
           "}, \"projects\": [",
           r->last_checkpoint_id, t.accepted, t.duplicate, t.rejected, t.batches);
    for (size_t i = 0; i < r->n_projects; i++)
        printf("%s\n  {\"project_id\": %" PRIu32 ", \"votes\": %" PRIu64 "}", i ? "," : "",
               r->projects[i].id, r->projects[i].votes);
    printf("%s]}\n", r->n_projects ? "\n" : "");
}

/* The voting tables, for status: how many and their electors. */
struct tables_sum {
    size_t tables;
    uint64_t electors;
};

static void status_text(const struct store_recovery *r, const struct tables_sum *v)
{
    struct totals t = totals_sum(r);
    printf("consultation     %s\n", r->consultation_id);
    printf("last_checkpoint  %" PRIu64 "\n", r->last_checkpoint_id);
    printf("projects         %zu\n", r->n_projects);
    if (v->tables)
        printf("tables           %zu (%" PRIu64 " electors)\n", v->tables, v->electors);
    printf("collectors       %zu\n", r->n_collectors);
    printf("totals           batches %" PRIu64 " votes %" PRIu64 " accepted %" PRIu64
           " duplicate %" PRIu64 " rejected %" PRIu64 "\n",
           t.batches, t.votes, t.accepted, t.duplicate, t.rejected);
    if (r->n_collectors == 0)
        return;
    printf("\n%-24s %12s %10s %12s %12s %10s %10s\n", "collector", "durable_seq", "batches",
           "votes", "accepted", "duplicate", "rejected");
    for (size_t i = 0; i < r->n_collectors; i++) {
        const struct store_collector *c = &r->collectors[i];
        printf("%-24s %12" PRIu64 " %10" PRIu64 " %12" PRIu64 " %12" PRIu64 " %10" PRIu64
               " %10" PRIu64 "\n",
               c->id, c->durable_seq, c->batches, c->votes, c->accepted, c->duplicate, c->rejected);
    }
}

static void status_json(const struct store_recovery *r, const struct tables_sum *v)
{
    struct totals t = totals_sum(r);
    fputs("{\"consultation\": ", stdout);
    ctl_json_write_string(stdout, r->consultation_id);
    printf(", \"last_checkpoint\": %" PRIu64 ", \"projects\": %zu", r->last_checkpoint_id,
           r->n_projects);
    if (v->tables)
        printf(", \"tables\": %zu, \"electors\": %" PRIu64, v->tables, v->electors);
    printf(", \"totals\": {\"batches\": %" PRIu64 ", \"votes\": %" PRIu64 ", \"accepted\": %" PRIu64
           ", \"duplicate\": %" PRIu64 ", \"rejected\": %" PRIu64 "}, \"collectors\": [",
           t.batches, t.votes, t.accepted, t.duplicate, t.rejected);
    for (size_t i = 0; i < r->n_collectors; i++) {
        const struct store_collector *c = &r->collectors[i];
        printf("%s\n  {\"id\": ", i ? "," : "");
        ctl_json_write_string(stdout, c->id);
        printf(", \"durable_seq\": %" PRIu64 ", \"batches\": %" PRIu64 ", \"votes\": %" PRIu64
               ", \"accepted\": %" PRIu64 ", \"duplicate\": %" PRIu64 ", \"rejected\": %" PRIu64
               "}",
               c->durable_seq, c->batches, c->votes, c->accepted, c->duplicate, c->rejected);
    }
    printf("%s]}\n", r->n_collectors ? "\n" : "");
}

/* The tables and their electors (none before migration 7). Returns 0 or -1. */
static int tables_sum_read(struct store *s, struct tables_sum *v)
{
    struct store_table *a;
    size_t n;
    if (store_tables_read(s, &a, &n) < 0)
        return -1;
    v->tables = n;
    v->electors = 0;
    for (size_t i = 0; i < n; i++)
        v->electors += a[i].electors;
    store_tables_free(a, n);
    return 0;
}

/* results and status read the same snapshot (status the tables after it); format is
 * already validated. */
static int cmd_report(struct store *s, const char *what, const char *format)
{
    struct store_recovery r;
    struct tables_sum v = {0, 0};
    if (store_recover(s, &r, NULL, NULL) < 0) {
        ctl_err("%s: %s", what, store_last_error(s));
        return EXIT_RUNTIME;
    }
    bool status = strcmp(what, "status") == 0;
    if (status && tables_sum_read(s, &v) < 0) {
        ctl_err("%s: %s", what, store_last_error(s));
        store_recovery_cleanup(&r);
        return EXIT_RUNTIME;
    }
    if (!status && strcmp(format, "json") == 0)
        results_json(&r);
    else if (!status)
        results_csv(&r);
    else if (strcmp(format, "json") == 0)
        status_json(&r, &v);
    else
        status_text(&r, &v);
    store_recovery_cleanup(&r);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        ctl_err("%s: writing output: %s", what, strerror(errno));
        return EXIT_RUNTIME;
    }
    return EXIT_OK;
}

/* ---- verify ----------------------------------------------------------------------- */

static void verify_progress(void *arg, const char *line)
{
    (void)arg;
    fprintf(stderr, "tallyctl verify: %s\n", line);
}

/* stdout: "verified: ..." and "head <hex>" on success, nothing otherwise; the first
 * disagreement goes to stderr as "tallyctl verify: FAILED: <problem>" (exit 1). */
static int cmd_verify(struct store *s)
{
    struct store_verify_report r;
    int rc = store_verify(s, &r, verify_progress, NULL);
    if (rc < 0) {
        fprintf(stderr, "tallyctl verify: cannot read the record: %s\n", store_last_error(s));
        return EXIT_RUNTIME;
    }
    if (rc > 0) {
        fprintf(stderr, "tallyctl verify: FAILED: %s\n", r.problem);
        return EXIT_RUNTIME;
    }
    char head[2 * sizeof(r.head_hash) + 1];
    for (size_t i = 0; i < sizeof(r.head_hash); i++)
        snprintf(head + 2 * i, 3, "%02x", r.head_hash[i]);
    printf("verified: %" PRIu64 " checkpoints, %" PRIu64 " batches of %" PRIu64
           " collectors, %" PRIu64 " token pages (%" PRIu64 " tokens), %" PRIu64
           " votes over %" PRIu64 " projects\n",
           r.checkpoints, r.batches, r.collectors, r.pages, r.tokens, r.votes, r.projects);
    printf("head %s\n", head);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "tallyctl verify: writing output: %s\n", strerror(errno));
        return EXIT_RUNTIME;
    }
    return EXIT_OK;
}

/* ---- arguments -------------------------------------------------------------------- */

enum {
    OPT_VERSION = 256,
    OPT_DB,
    OPT_TO,
    OPT_FORMAT,
    OPT_CERT,
    OPT_CIRCUITS,
    OPT_STATE,
    OPT_SERVER_NAME
};

static const struct option ctl_options[] = {
    {"db", required_argument, NULL, OPT_DB},
    {"help", no_argument, NULL, 'h'}, /* and -h, see ctl_args_parse */
    {"version", no_argument, NULL, OPT_VERSION},
    {"to", required_argument, NULL, OPT_TO},                   /* migrate */
    {"format", required_argument, NULL, OPT_FORMAT},           /* results, status, collectors */
    {"cert", required_argument, NULL, OPT_CERT},               /* add-collector */
    {"circuits", required_argument, NULL, OPT_CIRCUITS},       /* add-collector */
    {"state", required_argument, NULL, OPT_STATE},             /* add-collector */
    {"server-name", required_argument, NULL, OPT_SERVER_NAME}, /* ca init */
    {NULL, 0, NULL, 0},
};

#define CTL_MAX_NAMES 32 /* ca init --server-name */

struct ctl_args {
    const char *db;     /* NULL: the PG* environment */
    const char *cmd;    /* NULL until the first word */
    const char *arg;    /* the load commands' file, the collector commands' id, ca's DIR */
    const char *sub;    /* ca: init or issue */
    const char *id;     /* ca issue's collector id */
    const char *format; /* results, status, collectors */
    int target;         /* migrate --to; -1 for every migration */
    size_t words;       /* words after the command */
    bool to_given;
    struct ctl_add_collector add; /* add-collector's options */
    bool circuits_given;
    const char *names[CTL_MAX_NAMES]; /* ca init --server-name */
    size_t n_names;
    char err[512];   /* the first usage error, reported once every option is seen */
    bool db_missing; /* --db without a value, which outranks err */
};

static void ctl_args_error(struct ctl_args *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void ctl_args_error(struct ctl_args *a, const char *fmt, ...)
{
    if (a->err[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->err, sizeof(a->err), fmt, ap);
    va_end(ap);
}

static bool cmd_is(const struct ctl_args *a, const char *name)
{
    return a->cmd && strcmp(a->cmd, name) == 0;
}

/* load-registry and load-tables: one argument, a CSV file. */
static bool cmd_is_load(const struct ctl_args *a)
{
    return cmd_is(a, "load-registry") || cmd_is(a, "load-tables");
}

/* The commands whose one argument is a collector id. */
static bool cmd_takes_id(const struct ctl_args *a)
{
    return cmd_is(a, "add-collector") || cmd_is(a, "disable-collector") ||
           cmd_is(a, "enable-collector");
}

/* The commands whose first argument is taken whatever it looks like ("-", "-c0"). */
static bool cmd_wants_word(const struct ctl_args *a)
{
    return (cmd_is_load(a) || cmd_takes_id(a)) && a->words == 0;
}

static void ctl_args_bad_id(struct ctl_args *a, const char *w)
{
    ctl_args_error(a, "invalid collector id '%s': use 1 to 63 of A-Z a-z 0-9 . _ -", w);
}

static void ctl_args_ca_word(struct ctl_args *a, const char *w)
{
    size_t want = a->sub && strcmp(a->sub, "issue") == 0 ? 3 : 2;
    if (a->words == 0) {
        if (strcmp(w, "init") != 0 && strcmp(w, "issue") != 0)
            ctl_args_error(a, "ca: unknown subcommand '%s' (init or issue)", w);
        a->sub = w;
    } else if (a->words >= want) {
        ctl_args_error(a, "ca %s: unexpected argument '%s'", a->sub, w);
    } else if (a->words == 1) {
        a->arg = w;
    } else {
        a->id = w;
        if (!ctl_collector_id_is_valid(w))
            ctl_args_bad_id(a, w);
    }
    a->words++;
}

/* A word of the command line: the command, then its arguments. */
static void ctl_args_word(struct ctl_args *a, const char *w)
{
    if (a->err[0])
        return;
    if (!a->cmd && w[0] == '-') { /* "-" or "--" where the command goes */
        ctl_args_error(a, "unknown option '%s'", w);
        return;
    }
    if (!a->cmd) {
        a->cmd = w;
        if (cmd_is(a, "results"))
            a->format = "csv";
        else if (cmd_is(a, "status") || cmd_is(a, "collectors"))
            a->format = "text";
        else if (!cmd_is(a, "migrate") && !cmd_is(a, "verify") && !cmd_is_load(a) &&
                 !cmd_takes_id(a) && !cmd_is(a, "ca"))
            ctl_args_error(a, "unknown command '%s'", w);
        return;
    }
    if (cmd_is(a, "ca")) {
        ctl_args_ca_word(a, w);
        return;
    }
    bool takes_arg = cmd_is_load(a) || cmd_takes_id(a);
    if (!takes_arg || a->words > 0) {
        ctl_args_error(a, "%s: unexpected argument '%s'", a->cmd, w);
        return;
    }
    a->words++;
    a->arg = w;
    /* "--cert" is a valid id, but nobody names a collector after an option. */
    static const char *const add_opts[] = {"--cert", "--circuits", "--state"};
    for (size_t i = 0; cmd_is(a, "add-collector") && i < 3; i++) {
        size_t n = strlen(add_opts[i]);
        if (strncmp(w, add_opts[i], n) == 0 && (w[n] == '\0' || w[n] == '='))
            ctl_args_error(a, "add-collector: the collector id comes first: add-collector ID "
                              "[--cert FILE] [--circuits LIST | --state NAME]");
    }
    if (cmd_takes_id(a) && !ctl_collector_id_is_valid(w))
        ctl_args_bad_id(a, w);
}

/* --to and --format belong right after their command, before any other word;
 * add-collector's options after its ID; --server-name after ca init (--db, --help and
 * --version go anywhere); elsewhere they read as a stray argument, as they always did. */
static bool ctl_args_option_fits(struct ctl_args *a, int ch, const char *text)
{
    bool fits = false;
    if (a->cmd && ch == OPT_TO)
        fits = a->words == 0 && cmd_is(a, "migrate") && !a->to_given;
    else if (a->cmd && ch == OPT_FORMAT)
        fits = a->words == 0 &&
               (cmd_is(a, "results") || cmd_is(a, "status") || cmd_is(a, "collectors"));
    else if (a->cmd && (ch == OPT_CERT || ch == OPT_CIRCUITS || ch == OPT_STATE))
        fits = a->words == 1 && cmd_is(a, "add-collector");
    else if (a->cmd && ch == OPT_SERVER_NAME)
        fits = a->words >= 1 && cmd_is(a, "ca") && a->sub && strcmp(a->sub, "init") == 0;
    if (fits)
        return true;
    if (!a->cmd)
        ctl_args_error(a, "unknown option '%s'", text);
    else
        ctl_args_error(a, "%s: unexpected argument '%s'", a->cmd, text);
    return false;
}

static void ctl_args_add_option(struct ctl_args *a, int ch, const char *val)
{
    if (ch == OPT_CERT) {
        if (a->add.cert)
            ctl_args_error(a, "add-collector: --cert given twice");
        a->add.cert = val;
        return;
    }
    if ((ch == OPT_CIRCUITS && a->circuits_given) || (ch == OPT_STATE && a->add.state)) {
        ctl_args_error(a, "add-collector: %s given twice",
                       ch == OPT_STATE ? "--state" : "--circuits");
        return;
    }
    if ((ch == OPT_CIRCUITS && a->add.state) || (ch == OPT_STATE && a->circuits_given)) {
        ctl_args_error(a, "add-collector: give --circuits or --state, not both");
        return;
    }
    if (ch == OPT_STATE) {
        if (!val[0])
            ctl_args_error(a, "add-collector: --state needs a state's name");
        a->add.state = val;
        return;
    }
    a->circuits_given = true;
    char why[200];
    int got = ctl_circuits_parse(val, &a->add.circuits, &a->add.n_circuits, why, sizeof(why));
    if (got < 0)
        ctl_args_error(a, "add-collector: --circuits: %s", why);
    a->add.every_circuit = got == 1;
    a->add.restrict_circuits = got == 0;
}

static void ctl_args_value(struct ctl_args *a, int ch, const char *val)
{
    if (ch == OPT_TO) {
        a->to_given = true;
        char *end;
        errno = 0;
        long v = strtol(val, &end, 10);
        if (errno || end == val || *end || v < 0 || v > store_schema_latest())
            ctl_args_error(a, "--to: no schema version '%s' (this build knows 0 to %d)", val,
                           store_schema_latest());
        else
            a->target = (int)v;
        return;
    }
    if (ch == OPT_CERT || ch == OPT_CIRCUITS || ch == OPT_STATE) {
        ctl_args_add_option(a, ch, val);
        return;
    }
    if (ch == OPT_SERVER_NAME) {
        if (!val[0])
            ctl_args_error(a, "ca init: --server-name needs a DNS name or an IP address");
        else if (a->n_names == CTL_MAX_NAMES)
            ctl_args_error(a, "ca init: more than %d --server-name", CTL_MAX_NAMES);
        else
            a->names[a->n_names++] = val;
        return;
    }
    a->format = val;
    bool ok = cmd_is(a, "results") ? strcmp(val, "csv") == 0 || strcmp(val, "json") == 0
                                   : strcmp(val, "text") == 0 || strcmp(val, "json") == 0;
    if (!ok)
        ctl_args_error(a, "%s: unknown format '%s'", a->cmd, val);
}

static const char *ctl_option_needs(int opt)
{
    switch (opt) {
    case OPT_TO:
        return "--to needs a schema version";
    case OPT_CERT:
        return "add-collector: --cert needs a certificate file";
    case OPT_CIRCUITS:
        return "add-collector: --circuits needs a list of circuit ids";
    case OPT_STATE:
        return "add-collector: --state needs a state's name";
    case OPT_SERVER_NAME:
        return "ca init: --server-name needs a DNS name or an IP address";
    default:
        return "--format needs a value";
    }
}

/* The elements taken out wherever they stand, as they always were: the load commands' and
 * the collector commands' argument is the first other element after the command, whatever
 * it looks like ("-", "-c0", "--x.csv"). */
static bool is_global(const char *e)
{
    return strcmp(e, "-h") == 0 || strcmp(e, "--help") == 0 || strcmp(e, "--version") == 0 ||
           strcmp(e, "--db") == 0 || strncmp(e, "--db=", 5) == 0;
}

static void print_version(void)
{
    printf("tallyctl %s (schema %d)\n", TALLYCTL_VERSION, store_schema_latest());
}

/* After every element: what a command still lacks. */
static void ctl_args_finish(struct ctl_args *a)
{
    if (!a->err[0] && !a->cmd)
        ctl_args_error(a, "no command given");
    if (!a->err[0] && !a->arg && cmd_is_load(a))
        ctl_args_error(a, "%s needs a CSV file", a->cmd);
    if (!a->err[0] && !a->arg && cmd_takes_id(a))
        ctl_args_error(a, "%s needs a collector id", a->cmd);
    if (!a->err[0] && cmd_is(a, "ca") && !a->sub)
        ctl_args_error(a, "ca needs a subcommand: init DIR or issue DIR ID");
    if (!a->err[0] && cmd_is(a, "ca") && !a->arg)
        ctl_args_error(a, "ca %s needs a directory", a->sub);
    if (!a->err[0] && cmd_is(a, "ca") && strcmp(a->sub, "issue") == 0 && !a->id)
        ctl_args_error(a, "ca issue needs a directory and a collector id");
    if (!a->err[0] && a->circuits_given && a->add.restrict_circuits && a->add.n_circuits == 0)
        ctl_args_error(a, "add-collector: --circuits lists no circuit");
    a->add.id = a->arg;
}

/* The whole command line, in order: getopt_long in its in-order mode, so each word is seen
 * where it stands. "--" is a word like any other (it always was). --help and --version win
 * wherever they are; otherwise the first problem is reported. Returns 0 to run a->cmd, 1
 * when --help or --version was printed, or EXIT_USAGE after saying why. a->add.circuits is
 * malloc'd when given (also on failure). */
static int ctl_args_parse(int argc, char **argv, struct ctl_args *a)
{
    memset(a, 0, sizeof(*a));
    a->target = -1;
    /* -h, --help and --version count wherever they stand, even where --to or --format
     * wants its value, as they always did; only --db's value is never one. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--db") == 0) {
            i++;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage_text, stdout);
            return 1;
        } else if (strcmp(argv[i], "--version") == 0) {
            print_version();
            return 1;
        }
    }
    opterr = 0;
    bool in_cluster = false; /* getopt_long is inside an element like -xy */
    while (optind < argc) {
        const char *next = argv[optind];
        if (!in_cluster && (strcmp(next, "--") == 0 || (cmd_wants_word(a) && !is_global(next)))) {
            ctl_args_word(a, next);
            optind++;
            continue;
        }
        int prev = optind;
        /* No short options: -h was taken above as an element of its own; -hx is unknown. */
        int ch = getopt_long(argc, argv, "-:", ctl_options, NULL);
        if (ch == -1)
            break;
        in_cluster = optind == prev;
        /* The element the option was written in ("--to", not its value, for "--to N"). */
        const char *text = argv[prev];
        switch (ch) {
        case 'h': /* an abbreviation (--hel): --help itself was taken above */
            fputs(usage_text, stdout);
            return 1;
        case OPT_VERSION:
            print_version();
            return 1;
        case OPT_DB:
            a->db = optarg;
            break;
        case 1:
            ctl_args_word(a, optarg);
            break;
        case OPT_TO:
        case OPT_FORMAT:
        case OPT_CERT:
        case OPT_CIRCUITS:
        case OPT_STATE:
        case OPT_SERVER_NAME:
            if (!a->err[0] && ctl_args_option_fits(a, ch, text))
                ctl_args_value(a, ch, optarg);
            break;
        case ':':
            if (optopt == OPT_DB)
                a->db_missing = true;
            else if (!a->err[0] && ctl_args_option_fits(a, optopt, text))
                ctl_args_error(a, "%s", ctl_option_needs(optopt));
            break;
        default: /* '?': an option nobody has */
            if (!a->cmd)
                ctl_args_error(a, "unknown option '%s'", text);
            else
                ctl_args_error(a, "%s: unexpected argument '%s'", a->cmd, text);
            break;
        }
    }
    if (a->db_missing)
        return ctl_usage_error("--db needs a connection string");
    ctl_args_finish(a);
    if (a->err[0])
        return ctl_usage_error("%s", a->err);
    return 0;
}

/* The commands that need no database. */
static int ctl_run_offline(const struct ctl_args *a)
{
    if (strcmp(a->sub, "init") == 0)
        return cmd_ca_init(a->arg, a->names, a->n_names);
    return cmd_ca_issue(a->arg, a->id);
}

static int ctl_run(struct store *s, const struct ctl_args *a, const uint8_t *pin)
{
    if (cmd_is(a, "migrate"))
        return cmd_migrate(s, a->target);
    if (cmd_is(a, "verify"))
        return cmd_verify(s);
    if (cmd_is(a, "load-registry"))
        return cmd_load_registry(s, a->arg);
    if (cmd_is(a, "load-tables"))
        return cmd_load_tables(s, a->arg);
    if (cmd_is(a, "add-collector"))
        return cmd_add_collector(s, &a->add, pin);
    if (cmd_is(a, "disable-collector") || cmd_is(a, "enable-collector"))
        return cmd_set_disabled(s, a->arg, cmd_is(a, "disable-collector"));
    if (cmd_is(a, "collectors"))
        return cmd_collectors(s, a->format);
    return cmd_report(s, a->cmd, a->format);
}

int main(int argc, char **argv)
{
    /* The organiser's commands have their own command line (consult_cmd.c); --help and
     * --version win wherever they stand, as for every command. */
    int consult = ctl_consult_command(argc, argv);
    if (consult > 0) {
        for (int i = 1; i < argc; i++) {
            if (strcmp(argv[i], "--db") == 0) {
                i++;
            } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
                fputs(usage_text, stdout);
                return EXIT_OK;
            } else if (strcmp(argv[i], "--version") == 0) {
                print_version();
                return EXIT_OK;
            }
        }
        return cmd_consult(argc, argv, consult);
    }

    /* The whole command line is valid before anything connects. */
    struct ctl_args a;
    int rc = ctl_args_parse(argc, argv, &a);
    if (rc) {
        free(a.add.circuits);
        return rc == 1 ? EXIT_OK : rc;
    }
    if (cmd_is(&a, "ca"))
        return ctl_run_offline(&a);

    /* The certificate is read before connecting: a wrong path is told without a database. */
    uint8_t pin[TLS_PIN_BYTES];
    if (a.add.cert) {
        char err[512] = "";
        if (tls_pin_of_file(a.add.cert, pin, err, sizeof(err)) < 0) {
            if (err[0])
                ctl_err("add-collector --cert: %s", err);
            else
                ctl_err("add-collector --cert: %s: unreadable", a.add.cert);
            free(a.add.circuits);
            return EXIT_RUNTIME;
        }
    }

    /* Failures come back through store_last_error() and are reported in tallyctl's own
     * words; the store's informational lines would only add timestamps to the output. */
    log_set_level(LOG_WARN);
    struct store *s = ctl_connect(a.db);
    if (s) {
        rc = ctl_run(s, &a, a.add.cert ? pin : NULL);
        store_close(s);
    } else {
        rc = EXIT_RUNTIME;
    }
    free(a.add.circuits);
    return rc;
}
