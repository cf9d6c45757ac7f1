/* What tallyctl certify and export share: the record read through the store (state,
 * durable totals, catalog, progress views, corrections) into one ranked struct ctl_report,
 * and files written atomically into a directory (a temporary file, fsync, then link or
 * rename). Owns no SQL (store does) and no format (report.c, export_fmt.c). */
#include "ctl/consult.h"
#include "ctl/cmds.h"

#include "core/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the record into a report --------------------------------------------------------- */

static const struct store_circuit_progress *progress_find(const struct ctl_results *res,
                                                          uint32_t id)
{
    size_t lo = 0, hi = res->n_progress;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (res->progress[mid].circuit_id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < res->n_progress && res->progress[lo].circuit_id == id ? &res->progress[lo] : NULL;
}

/* The durable votes of project id (rec.projects is ordered by id). */
static uint64_t votes_of(const struct store_recovery *rec, uint32_t id)
{
    size_t lo = 0, hi = rec->n_projects;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (rec->projects[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < rec->n_projects && rec->projects[lo].id == id ? rec->projects[lo].votes : 0;
}

static void build_corrections(struct ctl_results *res)
{
    size_t n = res->rec.n_corrections;
    res->corrections = xcalloc(n ? n : 1, sizeof(*res->corrections));
    for (size_t i = 0; i < n; i++) {
        const struct store_correction_row *x = &res->rec.corrections[i];
        res->corrections[i] = (struct ctl_rep_correction){
            .id = x->id,
            .checkpoint_id = x->checkpoint_id,
            .retract = x->kind == STORE_CORRECTION_RETRACT,
            .actor = x->actor,
            .reason = x->reason,
            .at_us = x->at_us,
            .table_id = x->table_id,
            .collector_id = x->collector_id,
            .seq = x->seq,
            .from_version = x->from_version,
            .to_version = x->to_version,
            .project_ids = x->project_ids,
            .deltas = x->deltas,
            .n_deltas = x->n_deltas,
            .blank_delta = x->blank_delta,
            .null_delta = x->null_delta,
            .ballots_delta = x->ballots_delta,
        };
    }
}

/* Circuits by id, each with its projects (catalog projects are by id; circuits by id). */
static void build_circuits(struct ctl_results *res, bool closed)
{
    const struct store_catalog *cat = &res->cat;
    size_t nc = cat->n_circuits, np = cat->n_projects;
    res->circuits = xcalloc(nc ? nc : 1, sizeof(*res->circuits));
    res->projects = xcalloc(np ? np : 1, sizeof(*res->projects));
    size_t *count = xcalloc(nc + 1, sizeof(*count));
    /* Counting sort of the projects by circuit index. */
    size_t *at = xcalloc(np ? np : 1, sizeof(*at));
    for (size_t i = 0; i < np; i++) {
        size_t lo = 0, hi = nc;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (cat->circuits[mid].id < cat->projects[i].circuit_id)
                lo = mid + 1;
            else
                hi = mid;
        }
        at[i] = lo; /* a project of an unknown circuit cannot be (a foreign key): lo < nc */
        if (lo < nc)
            count[lo + 1]++;
    }
    for (size_t c = 0; c < nc; c++)
        count[c + 1] += count[c];
    for (size_t c = 0; c < nc; c++) {
        const struct store_catalog_circuit *cc = &cat->circuits[c];
        struct ctl_rep_circuit *rc = &res->circuits[c];
        rc->id = cc->id;
        rc->name = cc->name;
        rc->state = cc->state;
        rc->seats = cc->seats;
        rc->projects = res->projects + count[c];
        const struct store_circuit_progress *p = progress_find(res, cc->id);
        if (p) {
            rc->tables = p->tables;
            rc->tables_reported = p->tables_reported;
            rc->electors = p->electors;
            rc->electors_reported = p->electors_reported;
            rc->ballots = p->ballots;
        }
        /* Without tables nobody knows how many votes may still come, until the close. */
        rc->remaining = closed ? 0 : p && p->tables ? p->remaining : RULES_REMAINING_UNKNOWN;
    }
    for (size_t i = 0; i < np; i++) {
        if (at[i] >= nc)
            continue;
        struct ctl_rep_circuit *rc = &res->circuits[at[i]];
        const struct store_catalog_project *cp = &cat->projects[i];
        rc->projects[rc->n_projects++] = (struct ctl_rep_project){
            .id = cp->id,
            .name = cp->name,
            .votes = votes_of(&res->rec, cp->id),
            .min_votes = cp->min_votes,
        };
    }
    free(at);
    free(count);
}

int ctl_results_read(struct store *s, struct ctl_results *res, bool certifying, const char *what)
{
    memset(res, 0, sizeof(*res));
    bool have_rec = false, have_cat = false;
    if (store_consultation_read(s, &res->st) < 0)
        goto fail;
    if (store_recover(s, &res->rec, NULL, NULL) < 0)
        goto fail;
    have_rec = true;
    if (store_catalog_read(s, &res->cat) < 0)
        goto fail;
    have_cat = true;
    if (store_circuit_progress_read(s, &res->progress, &res->n_progress) < 0)
        goto fail;
    build_corrections(res);
    build_circuits(res, res->st.closed);
    struct ctl_report *r = &res->rep;
    r->consultation = res->cat.consultation_name;
    r->instance = res->rec.consultation_id;
    r->official = res->st.certified;
    r->embargo = res->st.embargo;
    memcpy(r->head, res->rec.head_hash, 32);
    r->checkpoint = res->rec.last_checkpoint_id;
    r->has_lot = res->st.has_tie_rule;
    if (r->has_lot) {
        memcpy(r->seed_hash, res->st.tie_seed_hash, 32);
        r->seed = res->st.tie_seed;
        r->seed_len = res->st.tie_seed_len;
        r->use_lot = certifying || res->st.certified;
    }
    r->circuits = res->circuits;
    r->n_circuits = res->cat.n_circuits;
    r->corrections = res->corrections;
    r->n_corrections = res->rec.n_corrections;
    ctl_report_finish(r);
    return 0;

fail:
    ctl_err("%s: %s", what, store_last_error(s));
    if (have_cat)
        store_catalog_cleanup(&res->cat);
    if (have_rec)
        store_recovery_cleanup(&res->rec);
    memset(res, 0, sizeof(*res));
    return -1;
}

void ctl_results_cleanup(struct ctl_results *res)
{
    ctl_report_cleanup(&res->rep);
    free(res->corrections);
    free(res->circuits);
    free(res->projects);
    free(res->progress);
    store_catalog_cleanup(&res->cat);
    store_recovery_cleanup(&res->rec);
    memset(res, 0, sizeof(*res));
}

/* ---- files ---------------------------------------------------------------------------- */

int ctl_dir_make(const char *dir, char *err, size_t len)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path)) {
        snprintf(err, len, "%s: path too long", dir);
        return -1;
    }
    for (char *p = path + 1;; p++) {
        bool end = *p == '\0';
        if (*p != '/' && !end)
            continue;
        *p = '\0';
        if (mkdir(path, 0755) < 0 && errno != EEXIST) {
            snprintf(err, len, "%s: %s", path, strerror(errno));
            return -1;
        }
        if (end)
            break;
        *p = '/';
    }
    struct stat st;
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, len, "%s: not a directory", dir);
        return -1;
    }
    return 0;
}

int ctl_out_open(struct ctl_out *o, const char *dir, const char *name, char *err, size_t len)
{
    memset(o, 0, sizeof(*o));
    if (snprintf(o->path, sizeof(o->path), "%s/%s", dir, name) >= (int)sizeof(o->path) ||
        snprintf(o->tmp, sizeof(o->tmp), "%s/.%s.XXXXXX", dir, name) >= (int)sizeof(o->tmp)) {
        snprintf(err, len, "%s/%s: path too long", dir, name);
        return -1;
    }
    int fd = mkstemp(o->tmp);
    if (fd < 0) {
        snprintf(err, len, "%s: %s", o->tmp, strerror(errno));
        return -1;
    }
    fchmod(fd, 0644);
    o->f = fdopen(fd, "w");
    if (!o->f) {
        snprintf(err, len, "%s: %s", o->tmp, strerror(errno));
        close(fd);
        unlink(o->tmp);
        return -1;
    }
    return 0;
}

int ctl_out_commit(struct ctl_out *o, bool replace, char *err, size_t len)
{
    int e = 0;
    if (fflush(o->f) != 0 || ferror(o->f) || fsync(fileno(o->f)) < 0)
        e = errno ? errno : EIO;
    if (fclose(o->f) != 0 && !e)
        e = errno;
    o->f = NULL;
    if (e) {
        snprintf(err, len, "writing %s: %s", o->path, strerror(e));
        unlink(o->tmp);
        return -1;
    }
    /* link() never replaces: the name is taken atomically or not at all. */
    int rc = replace ? rename(o->tmp, o->path) : link(o->tmp, o->path);
    if (rc < 0) {
        e = errno;
        snprintf(err, len, "%s: %s", o->path,
                 e == EEXIST ? "exists already (--force replaces it)" : strerror(e));
        unlink(o->tmp);
        errno = e;
        return -1;
    }
    if (!replace)
        unlink(o->tmp);
    return 0;
}

void ctl_out_abort(struct ctl_out *o)
{
    if (o->f) {
        fclose(o->f);
        o->f = NULL;
        unlink(o->tmp);
    }
}

const char *ctl_default_actor(void)
{
    const char *u = getenv("USER");
    if (u && *u)
        return u;
    struct passwd *pw = getpwuid(getuid());
    return pw && pw->pw_name && *pw->pw_name ? pw->pw_name : "tallyctl";
}
