/* tallyctl: the operator's command line. Parses arguments, runs one command against
 * PostgreSQL through the store module, prints the answer. Owns the wording of usage and
 * errors and the output formats; owns no SQL (store does) and no CSV parsing (ctl). */
#include "core/log.h"
#include "ctl/registry_csv.h"
#include "ctl/text.h"
#include "store/store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

#define TALLYCTL_VERSION "0.1.0"

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
    "                              all or nothing; loading the same file again changes\n"
    "                              nothing; a conflicting row is reported as FILE:LINE\n"
    "  add-collector ID            register a collector, ID matching [A-Za-z0-9._-]{1,63};\n"
    "                              an already registered ID is left as it is\n"
    "  results [--format csv|json] durable results: every project's votes (csv: header\n"
    "                              project_id,votes; json: consultation, last checkpoint,\n"
    "                              totals and projects), ordered by project_id\n"
    "  status [--format text|json] last checkpoint and each collector's durable_seq and\n"
    "                              totals\n"
    "  verify                      audit the record with SELECT alone, in one snapshot:\n"
    "                              every collector, batch, checkpoint and token page against\n"
    "                              each other, the tallies against the count deltas, and the\n"
    "                              hash chain (docs/record.md); prints the totals and the\n"
    "                              head hash, or the first disagreement found\n"
    "\n"
    "Options:\n"
    "  --db CONNINFO   libpq connection string or URI, e.g.\n"
    "                  'host=127.0.0.1 port=5432 user=tally dbname=tally';\n"
    "                  without it the PG* environment variables apply (PGHOST, ...)\n"
    "  -h, --help      show this help\n"
    "  --version       show the version and the newest schema version this build knows\n"
    "\n"
    "Exit status: 0 success, 1 runtime error (database unreachable, conflicting data,\n"
    "malformed file; for verify also a record that disagrees with itself), 2 usage error.\n";

static void ctl_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void ctl_err(const char *fmt, ...)
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

/* ---- load-registry ---------------------------------------------------------------- */

struct load_ctx {
    struct ctl_registry *reader;
    bool input_failed;
};

static int load_next(void *arg, struct store_registry_row *row)
{
    struct load_ctx *ctx = arg;
    struct ctl_registry_record rec;
    int got = ctl_registry_next(ctx->reader, &rec);
    if (got <= 0) {
        ctx->input_failed = got < 0;
        return got;
    }
    row->line = rec.line;
    row->project_id = rec.project_id;
    row->project_name = rec.project_name;
    row->circuit_id = rec.circuit_id;
    row->circuit_name = rec.circuit_name;
    row->state = rec.state;
    row->seats = rec.seats;
    return 1;
}

static int cmd_load_registry(struct store *s, const char *path)
{
    int rc = EXIT_RUNTIME;
    bool is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (is_stdin)
        path = "<stdin>";
    struct load_ctx ctx = {0};
    if (!f) {
        ctl_err("%s: %s", path, strerror(errno));
        return EXIT_RUNTIME;
    }
    ctx.reader = ctl_registry_new_file(f);
    struct store_registry_summary sum;
    if (store_registry_load(s, load_next, &ctx, &sum) < 0) {
        if (ctx.input_failed)
            ctl_err("%s:%" PRIu64 ": %s", path, ctl_registry_error_line(ctx.reader),
                    ctl_registry_error_reason(ctx.reader));
        else if (sum.conflict_line)
            ctl_err("%s:%" PRIu64 ": %s", path, sum.conflict_line, store_last_error(s));
        else
            ctl_err("load-registry: %s", store_last_error(s));
        goto done;
    }
    printf("loaded %" PRIu64 " projects in %" PRIu64 " circuits, %" PRIu64 " states (%" PRIu64
           " new projects, %" PRIu64 " new circuits, %" PRIu64 " new states)\n",
           sum.projects, sum.circuits, sum.states, sum.new_projects, sum.new_circuits,
           sum.new_states);
    rc = EXIT_OK;
done:
    ctl_registry_free(ctx.reader);
    if (!is_stdin)
        fclose(f);
    return rc;
}

/* ---- add-collector ---------------------------------------------------------------- */

static int cmd_add_collector(struct store *s, const char *id)
{
    bool created;
    if (store_collector_add(s, id, &created) < 0) {
        ctl_err("add-collector: %s", store_last_error(s));
        return EXIT_RUNTIME;
    }
    if (created)
        printf("collector %s added\n", id);
    else
        printf("collector %s already registered; nothing changed\n", id);
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

static void status_text(const struct store_recovery *r)
{
    struct totals t = totals_sum(r);
    printf("consultation     %s\n", r->consultation_id);
    printf("last_checkpoint  %" PRIu64 "\n", r->last_checkpoint_id);
    printf("projects         %zu\n", r->n_projects);
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

static void status_json(const struct store_recovery *r)
{
    struct totals t = totals_sum(r);
    fputs("{\"consultation\": ", stdout);
    ctl_json_write_string(stdout, r->consultation_id);
    printf(", \"last_checkpoint\": %" PRIu64
           ", \"projects\": %zu, \"totals\": {\"batches\": %" PRIu64 ", \"votes\": %" PRIu64
           ", \"accepted\": %" PRIu64 ", \"duplicate\": %" PRIu64 ", \"rejected\": %" PRIu64
           "}, \"collectors\": [",
           r->last_checkpoint_id, r->n_projects, t.batches, t.votes, t.accepted, t.duplicate,
           t.rejected);
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

/* results and status read the same snapshot; format is already validated. */
static int cmd_report(struct store *s, const char *what, const char *format)
{
    struct store_recovery r;
    if (store_recover(s, &r, NULL, NULL) < 0) {
        ctl_err("%s: %s", what, store_last_error(s));
        return EXIT_RUNTIME;
    }
    if (strcmp(what, "results") == 0 && strcmp(format, "json") == 0)
        results_json(&r);
    else if (strcmp(what, "results") == 0)
        results_csv(&r);
    else if (strcmp(format, "json") == 0)
        status_json(&r);
    else
        status_text(&r);
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

/* Matches "--name VALUE" or "--name=VALUE" at argv[*i]; advances *i past it. Returns 1
 * when matched, 0 when argv[*i] is another thing, -1 when the value is missing. */
static int opt_value(int argc, char **argv, int *i, const char *name, const char **value)
{
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *value = a + n + 1;
        (*i)++;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *value = argv[*i + 1];
    *i += 2;
    return 1;
}

static bool is_help(const char *a)
{
    return strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0;
}

int main(int argc, char **argv)
{
    const char *db = NULL;
    /* --help, --version and --db may come anywhere; take them out first. */
    int kept = 1;
    for (int k = 1; k < argc;) {
        if (is_help(argv[k])) {
            fputs(usage_text, stdout);
            return EXIT_OK;
        }
        if (strcmp(argv[k], "--version") == 0) {
            printf("tallyctl %s (schema %d)\n", TALLYCTL_VERSION, store_schema_latest());
            return EXIT_OK;
        }
        int m = opt_value(argc, argv, &k, "--db", &db);
        if (m < 0)
            return ctl_usage_error("--db needs a connection string");
        if (m == 0)
            argv[kept++] = argv[k++];
    }
    argc = kept;
    int i = 1;
    if (i < argc && argv[i][0] == '-')
        return ctl_usage_error("unknown option '%s'", argv[i]);
    if (i >= argc)
        return ctl_usage_error("no command given");
    const char *cmd = argv[i++];

    /* Validate the whole command line before connecting. */
    const char *arg = NULL;
    const char *format = NULL;
    int target = -1;
    if (strcmp(cmd, "migrate") == 0) {
        const char *to = NULL;
        int m = i < argc ? opt_value(argc, argv, &i, "--to", &to) : 0;
        if (m < 0)
            return ctl_usage_error("--to needs a schema version");
        if (m > 0) {
            char *end;
            errno = 0;
            long v = strtol(to, &end, 10);
            if (errno || end == to || *end || v < 0 || v > store_schema_latest())
                return ctl_usage_error("--to: no schema version '%s' (this build knows 0 to %d)",
                                       to, store_schema_latest());
            target = (int)v;
        }
    } else if (strcmp(cmd, "verify") == 0) {
        /* no arguments */
    } else if (strcmp(cmd, "load-registry") == 0 || strcmp(cmd, "add-collector") == 0) {
        if (i >= argc)
            return ctl_usage_error("%s needs %s", cmd,
                                   cmd[0] == 'l' ? "a CSV file" : "a collector id");
        arg = argv[i++];
        if (cmd[0] == 'a' && !ctl_collector_id_is_valid(arg))
            return ctl_usage_error("invalid collector id '%s': use 1 to 63 of A-Z a-z 0-9 . _ -",
                                   arg);
    } else if (strcmp(cmd, "results") == 0 || strcmp(cmd, "status") == 0) {
        format = cmd[0] == 'r' ? "csv" : "text";
        while (i < argc) {
            int m = opt_value(argc, argv, &i, "--format", &format);
            if (m < 0)
                return ctl_usage_error("--format needs a value");
            if (m == 0)
                break;
        }
        bool ok = cmd[0] == 'r' ? strcmp(format, "csv") == 0 || strcmp(format, "json") == 0
                                : strcmp(format, "text") == 0 || strcmp(format, "json") == 0;
        if (!ok)
            return ctl_usage_error("%s: unknown format '%s'", cmd, format);
    } else {
        return ctl_usage_error("unknown command '%s'", cmd);
    }
    if (i < argc)
        return ctl_usage_error("%s: unexpected argument '%s'", cmd, argv[i]);

    /* Failures come back through store_last_error() and are reported in tallyctl's own
     * words; the store's informational lines would only add timestamps to the output. */
    log_set_level(LOG_WARN);
    struct store *s = ctl_connect(db);
    if (!s)
        return EXIT_RUNTIME;
    int rc;
    if (strcmp(cmd, "migrate") == 0)
        rc = cmd_migrate(s, target);
    else if (strcmp(cmd, "verify") == 0)
        rc = cmd_verify(s);
    else if (strcmp(cmd, "load-registry") == 0)
        rc = cmd_load_registry(s, arg);
    else if (strcmp(cmd, "add-collector") == 0)
        rc = cmd_add_collector(s, arg);
    else
        rc = cmd_report(s, cmd, format);
    store_close(s);
    return rc;
}
