/* The results files of tallyctl certify and export, pure: structs in, bytes out to a FILE.
 * The certification's projects.csv, circuits.csv, states.csv and report.html, and the
 * export's per-circuit CSV, JSON and Pabulib files with their index (docs/consultation.md
 * parts B and C). Winners come from src/rules; nothing here reads a database or a clock. */
#ifndef CTL_REPORT_H
#define CTL_REPORT_H

#include "rules/rules.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct ctl_rep_project {
    uint32_t id;
    const char *name; /* borrowed */
    uint64_t votes;
    uint32_t min_votes;
    struct rules_outcome out; /* filled by ctl_report_finish */
};

struct ctl_rep_circuit {
    uint32_t id;
    const char *name, *state; /* borrowed */
    uint32_t seats;
    uint64_t tables, tables_reported, electors, electors_reported, ballots;
    uint64_t remaining; /* votes still possible, RULES_REMAINING_UNKNOWN when not known */
    /* Its projects (borrowed array, any order): ctl_report_finish sorts them into the
     * listing order of src/rules (votes descending, id; a lot's choice first). */
    struct ctl_rep_project *projects;
    size_t n_projects;
    struct rules_circuit res; /* filled by ctl_report_finish */
};

struct ctl_rep_state {
    const char *name; /* borrowed from a circuit */
    uint64_t circuits, tables, tables_reported, electors, electors_reported, ballots;
};

/* A correction of the count, as stored (every pointer borrowed). */
struct ctl_rep_correction {
    uint64_t id, checkpoint_id;
    bool retract; /* else a sheet replaced by a higher version */
    const char *actor, *reason;
    int64_t at_us;
    const char *table_id, *collector_id; /* NULL: none */
    uint64_t seq;
    uint32_t from_version, to_version;
    const uint32_t *project_ids;
    const int64_t *deltas;
    size_t n_deltas;
    int64_t blank_delta, null_delta, ballots_delta;
};

struct ctl_report {
    const char *consultation; /* its name */
    const char *instance;     /* its id (Pabulib instance) */
    const char *country;      /* Pabulib country */
    bool official;            /* certified: "official", else "provisional" */
    bool embargo;             /* exports: progress only */
    uint8_t head[32];
    uint64_t checkpoint;
    int64_t certified_us;     /* report.html: when certified */
    const char *certified_by; /* report.html: who */
    /* The tie rule by lot: the seed (borrowed) and its published hash. Ranking uses the
     * seed when use_lot (certification), the report shows both when has_lot. */
    bool has_lot, use_lot;
    const uint8_t *seed;
    size_t seed_len;
    uint8_t seed_hash[32];
    struct ctl_rep_circuit *circuits; /* by id (borrowed array) */
    size_t n_circuits;
    const struct ctl_rep_correction *corrections; /* by id */
    size_t n_corrections;
    struct ctl_rep_state *states; /* by name (byte order); made by ctl_report_finish */
    size_t n_states;
};

/* Ranks every circuit (rules_circuit_rank with its remaining, and the seed when use_lot),
 * reorders each circuit's projects into listing order, and sums the circuits into
 * r->states (malloc'd: ctl_report_cleanup). */
void ctl_report_finish(struct ctl_report *r);
void ctl_report_cleanup(struct ctl_report *r); /* frees r->states only */

/* "provisional" or "official". */
const char *ctl_report_status(const struct ctl_report *r);
/* Lower-case hex of n bytes into out (2n + 1). */
void ctl_hex(const uint8_t *b, size_t n, char *out);
/* Turnout ballots / electors_reported as "0.4512" (rounded half up to 4 decimals) into
 * out (32), "" when electors_reported is 0. */
void ctl_turnout_text(uint64_t ballots, uint64_t electors_reported, char out[32]);

/* s as HTML text (& < > " ' escaped). */
void ctl_html_escape(FILE *f, const char *s);
/* s as one CSV field with separator sep: quoted (doubling quotes) when it holds sep, a
 * quote, CR or LF, or begins or ends with a space. */
void ctl_csv_field(FILE *f, const char *s, char sep);

/* The certification's files. Each returns 0, or -1 when the stream failed. */
int ctl_report_projects_csv(FILE *f, const struct ctl_report *r);
int ctl_report_circuits_csv(FILE *f, const struct ctl_report *r);
int ctl_report_states_csv(FILE *f, const struct ctl_report *r);
/* One self-contained printable page in Spanish: no script, no external reference. */
int ctl_report_html(FILE *f, const struct ctl_report *r);

/* The export's files for circuit c (index into r->circuits). Under r->embargo CSV and
 * JSON carry progress only. Pabulib refuses (-1, nothing written) under the embargo;
 * tick, when not NULL, is called every 65,536 vote lines with the count written so far.
 * Each returns 0, or -1 when the stream failed. */
int ctl_export_circuit_csv(FILE *f, const struct ctl_report *r, size_t c);
int ctl_export_circuit_json(FILE *f, const struct ctl_report *r, size_t c);
typedef void (*ctl_export_tick_cb)(void *arg, uint64_t lines);
int ctl_export_circuit_pabulib(FILE *f, const struct ctl_report *r, size_t c,
                               ctl_export_tick_cb tick, void *arg);
/* The index: every circuit with its progress (and winners, tie, decided unless under the
 * embargo) and its file name, circuit-<id>.<ext>. */
int ctl_export_index_csv(FILE *f, const struct ctl_report *r, const char *ext);
int ctl_export_index_json(FILE *f, const struct ctl_report *r, const char *ext);

#endif
