/* Internal to tallyctl: what certify and export share (consult_util.c): the record read into
 * a struct ctl_report, and files written atomically into a directory. */
#ifndef CTL_CONSULT_H
#define CTL_CONSULT_H

#include "ctl/report.h"
#include "store/consultation.h"
#include "store/store.h"

#include <stdbool.h>
#include <stdio.h>

/* The record as certify and export read it; everything owned here. */
struct ctl_results {
    struct store_consultation_state st;
    struct store_recovery rec; /* durable votes, head, corrections */
    struct store_catalog cat;  /* names, seats, states, min_votes */
    struct store_circuit_progress *progress;
    size_t n_progress;
    struct ctl_rep_project *projects; /* grouped by circuit, pointed into by circuits */
    struct ctl_rep_circuit *circuits;
    struct ctl_rep_correction *corrections;
    struct ctl_report rep; /* ranked (ctl_report_finish) */
};

/* Reads the state, the durable totals, the catalog and the progress, builds res->rep and
 * ranks it: remaining 0 once closed (nothing more can come), else the progress view's
 * (unknown for a circuit without tables); the tie seed decides by lot when certifying or
 * certified (before, a tie stays a tie). Errors are said as "tallyctl: <what>: ...".
 * Returns 0 or -1 (res cleaned). */
int ctl_results_read(struct store *s, struct ctl_results *res, bool certifying, const char *what);
void ctl_results_cleanup(struct ctl_results *res);

/* mkdir -p dir. Returns 0, or -1 with why in err. */
int ctl_dir_make(const char *dir, char *err, size_t len);

/* A file being written as dir/.name.XXXXXX, renamed into place by ctl_out_commit. */
struct ctl_out {
    FILE *f;
    char tmp[4096], path[4096];
};

/* Opens the temporary file. Returns 0, or -1 with why in err. */
int ctl_out_open(struct ctl_out *o, const char *dir, const char *name, char *err, size_t len);
/* Flushes, fsyncs and moves the file into place: replacing what is there when replace,
 * else failing (errno EEXIST) when the name exists. Returns 0, or -1 with why in err (the
 * temporary file removed). */
int ctl_out_commit(struct ctl_out *o, bool replace, char *err, size_t len);
void ctl_out_abort(struct ctl_out *o); /* closes and removes the temporary file */

/* Who runs tallyctl, for --actor's default: $USER, the login name, or "tallyctl". */
const char *ctl_default_actor(void);

#endif
