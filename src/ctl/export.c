/* tallyctl export: the results as they stand (provisional, or official once certified)
 * into a directory, one file per circuit (circuit-<id>.csv|json|pb) and an index, each
 * with the chain head and the status. Under the embargo CSV and JSON carry progress only
 * and Pabulib is refused. Files are replaced atomically; a progress line goes to stderr
 * every second while a long export runs. */
#include "ctl/cmds.h"
#include "ctl/consult.h"

#include <inttypes.h>
#include <string.h>
#include <time.h>

struct export_progress {
    struct timespec last;
    size_t done, total;
    uint64_t lines; /* Pabulib vote lines of the circuit being written */
    bool said;
};

static void export_tick(struct export_progress *p)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if ((now.tv_sec - p->last.tv_sec) * 1000 + (now.tv_nsec - p->last.tv_nsec) / 1000000 < 1000)
        return;
    p->last = now;
    p->said = true;
    if (p->lines)
        fprintf(stderr, "tallyctl export: %zu of %zu circuits (%" PRIu64 " vote lines)\n", p->done,
                p->total, p->lines);
    else
        fprintf(stderr, "tallyctl export: %zu of %zu circuits\n", p->done, p->total);
}

static void export_lines(void *arg, uint64_t lines)
{
    struct export_progress *p = arg;
    p->lines = lines;
    export_tick(p);
}

/* One file: circuit index c, or the index when c is SIZE_MAX. Returns 0 or -1 (said). */
static int export_file(const struct ctl_consult_args *a, const struct ctl_report *r, size_t c,
                       const char *ext, struct export_progress *p)
{
    char name[64], err[4200];
    if (c == SIZE_MAX)
        snprintf(name, sizeof(name), "index.%s", strcmp(ext, "json") == 0 ? "json" : "csv");
    else
        snprintf(name, sizeof(name), "circuit-%" PRIu32 ".%s", r->circuits[c].id, ext);
    struct ctl_out o;
    if (ctl_out_open(&o, a->out, name, err, sizeof(err)) < 0) {
        ctl_err("export: %s", err);
        return -1;
    }
    int rc;
    bool json = strcmp(ext, "json") == 0;
    if (c == SIZE_MAX)
        rc = json ? ctl_export_index_json(o.f, r, ext) : ctl_export_index_csv(o.f, r, ext);
    else if (json)
        rc = ctl_export_circuit_json(o.f, r, c);
    else if (strcmp(ext, "pb") == 0)
        rc = ctl_export_circuit_pabulib(o.f, r, c, export_lines, p);
    else
        rc = ctl_export_circuit_csv(o.f, r, c);
    if (rc < 0) {
        ctl_out_abort(&o);
        ctl_err("export: writing %s/%s failed", a->out, name);
        return -1;
    }
    if (ctl_out_commit(&o, true, err, sizeof(err)) < 0) {
        ctl_err("export: %s", err);
        return -1;
    }
    return 0;
}

int cmd_export(struct store *s, const struct ctl_consult_args *a)
{
    bool pabulib = strcmp(a->format, "pabulib") == 0;
    const char *ext = pabulib ? "pb" : a->format;
    struct ctl_results res;
    if (ctl_results_read(s, &res, false, "export") < 0)
        return EXIT_RUNTIME;
    int rc = EXIT_RUNTIME;
    struct ctl_report *r = &res.rep;
    r->country = a->country;
    if (pabulib && r->embargo) {
        ctl_err("export: the Pabulib format carries every vote: refused under the embargo "
                "(tallyctl embargo off lifts it)");
        goto done;
    }
    char err[4200];
    if (ctl_dir_make(a->out, err, sizeof(err)) < 0) {
        ctl_err("export: %s", err);
        goto done;
    }
    struct export_progress p = {.total = r->n_circuits};
    clock_gettime(CLOCK_MONOTONIC, &p.last);
    for (size_t c = 0; c < r->n_circuits; c++) {
        p.lines = 0;
        if (export_file(a, r, c, ext, &p) < 0)
            goto done;
        p.done = c + 1;
        export_tick(&p);
    }
    if (export_file(a, r, SIZE_MAX, ext, &p) < 0)
        goto done;
    char head[65];
    ctl_hex(r->head, 32, head);
    printf("exported %zu circuits as %s to %s: %s%s, head %s, checkpoint %" PRIu64 "\n",
           r->n_circuits, a->format, a->out, ctl_report_status(r),
           r->embargo ? " under the embargo (progress only)" : "", head, r->checkpoint);
    rc = EXIT_OK;
done:
    ctl_results_cleanup(&res);
    return rc;
}
