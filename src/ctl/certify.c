/* tallyctl certify: after the close and a passing verify, the official results of the
 * record's head written into a directory (projects.csv, circuits.csv, states.csv,
 * report.html; atomically, never over other files without --force), then the certification
 * recorded in consultation_state with the report's SHA-256. Certifying the same head again
 * rewrites the same bytes (the time and actor are the recorded ones) and changes nothing. */
#include "ctl/cmds.h"
#include "ctl/consult.h"

#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { CERT_PROJECTS, CERT_CIRCUITS, CERT_STATES, CERT_REPORT, CERT_FILES };

static const char *const cert_names[CERT_FILES] = {"projects.csv", "circuits.csv", "states.csv",
                                                   "report.html"};

struct cert_file {
    char *data;
    size_t len;
    bool same; /* the directory holds these bytes already */
};

static void verify_progress(void *arg, const char *line)
{
    (void)arg;
    fprintf(stderr, "tallyctl certify: verify: %s\n", line);
}

/* Renders file k of the report into memory. Returns 0 or -1. */
static int cert_render(const struct ctl_report *r, int k, struct cert_file *out)
{
    FILE *f = open_memstream(&out->data, &out->len);
    if (!f)
        return -1;
    int rc = k == CERT_PROJECTS   ? ctl_report_projects_csv(f, r)
             : k == CERT_CIRCUITS ? ctl_report_circuits_csv(f, r)
             : k == CERT_STATES   ? ctl_report_states_csv(f, r)
                                  : ctl_report_html(f, r);
    if (fclose(f) != 0)
        rc = -1;
    return rc;
}

/* 1 when path holds exactly data, 0 when it does not exist, -1 when it holds something
 * else (or cannot be read). */
static int cert_compare(const char *path, const struct cert_file *cf)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return errno == ENOENT ? 0 : -1;
    int rc = 1;
    size_t off = 0;
    char buf[65536];
    for (;;) {
        size_t got = fread(buf, 1, sizeof(buf), f);
        if (got == 0)
            break;
        if (off + got > cf->len || memcmp(cf->data + off, buf, got) != 0) {
            rc = -1;
            break;
        }
        off += got;
    }
    if (rc == 1 && (ferror(f) || off != cf->len))
        rc = -1;
    fclose(f);
    return rc;
}

/* Every file into dir: refuses (before writing any) when one exists with other bytes and
 * not force. Returns 0 or -1 (said). */
static int cert_write(const struct ctl_consult_args *a, struct cert_file *files)
{
    char err[4200];
    if (ctl_dir_make(a->out, err, sizeof(err)) < 0) {
        ctl_err("certify: %s", err);
        return -1;
    }
    for (int k = 0; k < CERT_FILES; k++) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/%s", a->out, cert_names[k]);
        int got = cert_compare(path, &files[k]);
        files[k].same = got == 1;
        if (got < 0 && !a->force) {
            ctl_err("certify: %s exists already with other content: nothing written (--force "
                    "replaces the files)",
                    path);
            return -1;
        }
    }
    for (int k = 0; k < CERT_FILES; k++) {
        if (files[k].same)
            continue;
        struct ctl_out o;
        if (ctl_out_open(&o, a->out, cert_names[k], err, sizeof(err)) < 0) {
            ctl_err("certify: %s", err);
            return -1;
        }
        fwrite(files[k].data, 1, files[k].len, o.f);
        if (ctl_out_commit(&o, a->force, err, sizeof(err)) < 0) {
            ctl_err("certify: %s", err);
            return -1;
        }
    }
    return 0;
}

/* The record must be certifiable as it stands: closed, verified, its head the close's. */
static int cert_check(const struct ctl_results *res, const struct store_verify_report *v)
{
    const struct store_consultation_state *st = &res->st;
    char head[65], was[65];
    ctl_hex(res->rep.head, 32, head);
    if (!st->closed) {
        ctl_err("certify: the consultation is not closed (tallyctl close --actor NAME first)");
        return -1;
    }
    if (memcmp(v->head_hash, res->rep.head, 32) != 0) {
        ctl_err("certify: the record changed while it was read (a tallyd still writing?): "
                "nothing certified");
        return -1;
    }
    if (st->closed_checkpoint_id != res->rec.last_checkpoint_id) {
        ctl_err("certify: the close was applied at checkpoint %" PRIu64
                " but the record goes on to checkpoint %" PRIu64 ": nothing certified",
                st->closed_checkpoint_id, res->rec.last_checkpoint_id);
        return -1;
    }
    if (st->certified && memcmp(st->certified_hash, res->rep.head, 32) != 0) {
        ctl_hex(st->certified_hash, 32, was);
        ctl_err("certify: already certified at head %s (checkpoint %" PRIu64
                "), but the head is now %s: the record changed after its certification",
                was, st->certified_checkpoint_id, head);
        return -1;
    }
    return 0;
}

int cmd_certify(struct store *s, const struct ctl_consult_args *a)
{
    int rc = EXIT_RUNTIME;
    struct cert_file files[CERT_FILES];
    memset(files, 0, sizeof(files));
    struct store_consultation_state st0;
    if (store_consultation_read(s, &st0) < 0) {
        ctl_err("certify: %s", store_last_error(s));
        return EXIT_RUNTIME;
    }
    if (!st0.closed) {
        ctl_err("certify: the consultation is not closed (tallyctl close --actor NAME first)");
        return EXIT_RUNTIME;
    }
    struct store_verify_report v;
    int vr = store_verify(s, &v, verify_progress, NULL);
    if (vr < 0) {
        ctl_err("certify: cannot verify the record: %s", store_last_error(s));
        return EXIT_RUNTIME;
    }
    if (vr > 0) {
        ctl_err("certify: verify FAILED: %s; nothing certified", v.problem);
        return EXIT_RUNTIME;
    }
    struct ctl_results res;
    if (ctl_results_read(s, &res, true, "certify") < 0)
        return EXIT_RUNTIME;
    if (cert_check(&res, &v) < 0)
        goto done;

    bool again = res.st.certified;
    struct ctl_report *r = &res.rep;
    r->official = true;
    /* Whole seconds: the time is in the report and must read back from SQL exactly. */
    r->certified_us = again ? res.st.certified_us : (int64_t)time(NULL) * 1000000;
    r->certified_by = again ? res.st.certified_by : a->actor ? a->actor : ctl_default_actor();
    for (int k = 0; k < CERT_FILES; k++) {
        if (cert_render(r, k, &files[k]) < 0) {
            ctl_err("certify: rendering %s failed", cert_names[k]);
            goto done;
        }
    }
    uint8_t sha[32];
    char sha_hex[65], head[65], path[4200];
    crypto_hash_sha256(sha, (const unsigned char *)files[CERT_REPORT].data, files[CERT_REPORT].len);
    ctl_hex(sha, 32, sha_hex);
    ctl_hex(r->head, 32, head);
    if (again && res.st.has_report_sha256 && memcmp(sha, res.st.report_sha256, 32) != 0) {
        char was[65];
        ctl_hex(res.st.report_sha256, 32, was);
        ctl_err("certify: already certified at head %s, but this tallyctl writes another "
                "report.html (SHA-256 %s, certified %s): nothing written",
                head, sha_hex, was);
        goto done;
    }
    if (cert_write(a, files) < 0)
        goto done;
    snprintf(path, sizeof(path), "%s/report.html", a->out);
    if (again) {
        printf("already certified: head %s, checkpoint %" PRIu64 ", report %s (unchanged)\n"
               "report SHA-256 %s\n",
               head, r->checkpoint, path, sha_hex);
        rc = EXIT_OK;
        goto done;
    }
    struct store_certification c = {.checkpoint_id = r->checkpoint,
                                    .hash = r->head,
                                    .at_us = r->certified_us,
                                    .actor = r->certified_by,
                                    .report_sha256 = sha};
    int got = store_certify(s, &c);
    if (got < 0) {
        ctl_err("certify: %s (the files are written, the certification is not recorded)",
                store_last_error(s));
        goto done;
    }
    if (got > 0) {
        ctl_err("certify: the consultation's state changed meanwhile (reopened, or certified "
                "at another head): the certification is not recorded");
        goto done;
    }
    printf("certified: head %s, checkpoint %" PRIu64 ", report %s\nreport SHA-256 %s\n", head,
           r->checkpoint, path, sha_hex);
    rc = EXIT_OK;
done:
    for (int k = 0; k < CERT_FILES; k++)
        free(files[k].data);
    ctl_results_cleanup(&res);
    return rc;
}
