/* tallyctl's load commands: load-registry and load-tables. Each reads its CSV file (or
 * stdin) through its ctl reader, hands the rows to the store in one transaction, and words
 * the outcome: a malformed or conflicting row as FILE:LINE: reason, the summary on stdout.
 * Owns no SQL and no CSV parsing. */
#include "ctl/cmds.h"
#include "ctl/registry_csv.h"
#include "ctl/tables_csv.h"
#include "store/store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* FILE '-' is stdin; *name is what messages call it. NULL (said why) on failure. */
static FILE *load_open(const char *path, const char **name)
{
    if (strcmp(path, "-") == 0) {
        *name = "<stdin>";
        return stdin;
    }
    *name = path;
    FILE *f = fopen(path, "rb");
    if (!f)
        ctl_err("%s: %s", path, strerror(errno));
    return f;
}

static void load_close(FILE *f)
{
    if (f != stdin)
        fclose(f);
}

/* ---- load-registry ---------------------------------------------------------------- */

struct registry_ctx {
    struct ctl_registry *reader;
    bool input_failed;
};

static int registry_next(void *arg, struct store_registry_row *row)
{
    struct registry_ctx *ctx = arg;
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
    row->min_votes = rec.min_votes;
    return 1;
}

int cmd_load_registry(struct store *s, const char *path)
{
    const char *name;
    FILE *f = load_open(path, &name);
    if (!f)
        return EXIT_RUNTIME;
    int rc = EXIT_RUNTIME;
    struct registry_ctx ctx = {.reader = ctl_registry_new_file(f)};
    struct store_registry_summary sum;
    if (store_registry_load(s, registry_next, &ctx, &sum) < 0) {
        if (ctx.input_failed)
            ctl_err("%s:%" PRIu64 ": %s", name, ctl_registry_error_line(ctx.reader),
                    ctl_registry_error_reason(ctx.reader));
        else if (sum.conflict_line)
            ctl_err("%s:%" PRIu64 ": %s", name, sum.conflict_line, store_last_error(s));
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
    load_close(f);
    return rc;
}

/* ---- load-tables ------------------------------------------------------------------ */

struct tables_ctx {
    struct ctl_tables *reader;
    bool input_failed;
};

static int tables_next(void *arg, struct store_table *row)
{
    struct tables_ctx *ctx = arg;
    struct ctl_tables_record rec;
    int got = ctl_tables_next(ctx->reader, &rec);
    if (got <= 0) {
        ctx->input_failed = got < 0;
        return got;
    }
    row->line = rec.line;
    row->id = rec.table_id;
    row->circuit_id = rec.circuit_id;
    row->electors = rec.electors;
    return 1;
}

int cmd_load_tables(struct store *s, const char *path)
{
    const char *name;
    FILE *f = load_open(path, &name);
    if (!f)
        return EXIT_RUNTIME;
    int rc = EXIT_RUNTIME;
    struct tables_ctx ctx = {.reader = ctl_tables_new_file(f)};
    struct store_tables_summary sum;
    if (store_tables_load(s, tables_next, &ctx, &sum) < 0) {
        if (ctx.input_failed)
            ctl_err("%s:%" PRIu64 ": %s", name, ctl_tables_error_line(ctx.reader),
                    ctl_tables_error_reason(ctx.reader));
        else if (sum.conflict_line)
            ctl_err("%s:%" PRIu64 ": %s", name, sum.conflict_line, store_last_error(s));
        else
            ctl_err("load-tables: %s", store_last_error(s));
        goto done;
    }
    printf("loaded %" PRIu64 " tables in %" PRIu64 " circuits (%" PRIu64 " electors; %" PRIu64
           " new)\n",
           sum.tables, sum.circuits, sum.electors, sum.new_tables);
    rc = EXIT_OK;
done:
    ctl_tables_free(ctx.reader);
    load_close(f);
    return rc;
}
