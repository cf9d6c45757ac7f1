/* tally-gen internals: a deterministic random source, RFC 4180 CSV reading and writing,
 * the registry and voting tables as read back, and the three generators (registry, tables,
 * votes). Nothing here talks to the network or the database; everything follows from
 * --seed. */
#ifndef GEN_GEN_H
#define GEN_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- random numbers: xoshiro256** seeded through splitmix64 ---------------------- */

struct gen_rng {
    uint64_t s[4];
};

void gen_rng_seed(struct gen_rng *r, uint64_t seed, uint64_t stream);
uint64_t gen_rng_next(struct gen_rng *r);
/* Uniform in [0, n); n > 0. */
uint64_t gen_rng_below(struct gen_rng *r, uint64_t n);
/* Uniform in [0, 1). */
double gen_rng_unit(struct gen_rng *r);
/* Standard normal. */
double gen_rng_normal(struct gen_rng *r);

/* ---- a set of uint32 (open addressing), for distinct sparse ids ------------------ */

struct gen_u32set {
    uint32_t *slots; /* 0 marks an empty slot, so 0 is never a member */
    size_t mask;
    size_t n;
};

void gen_u32set_init(struct gen_u32set *s, size_t expected);
void gen_u32set_cleanup(struct gen_u32set *s);
/* Adds v (v != 0). Returns true when it was not there before. */
bool gen_u32set_add(struct gen_u32set *s, uint32_t v);
bool gen_u32set_has(const struct gen_u32set *s, uint32_t v);

/* ---- buffered output ------------------------------------------------------------- */

struct gen_out {
    FILE *f;
    const char *path;
    char *buf;
    size_t len, cap;
    int failed; /* errno of the first write failure */
};

int gen_out_open(struct gen_out *o, const char *path);
void gen_out_str(struct gen_out *o, const char *s);
void gen_out_u64(struct gen_out *o, uint64_t v);
void gen_out_char(struct gen_out *o, char c);
/* Writes the n bytes at s. */
void gen_out_mem(struct gen_out *o, const char *s, size_t n);
/* Writes s as one CSV field, quoted (RFC 4180) when it holds a comma, quote or newline. */
void gen_out_csv_field(struct gen_out *o, const char *s);
/* Flushes and closes; returns 0, or -1 after printing why. */
int gen_out_close(struct gen_out *o);

/* ---- CSV reading ----------------------------------------------------------------- */

#define GEN_CSV_MAX_FIELDS 16

struct csv_reader;

struct gen_csv {
    FILE *f;
    struct csv_reader *csv;
    char *fields[GEN_CSV_MAX_FIELDS]; /* the current record's, unquoted, NUL-terminated */
    size_t n_fields;
    uint64_t record; /* 1-based number of the current record */
};

int gen_csv_open(struct gen_csv *c, const char *path);
/* Reads the next record. Returns 1 with c->fields set, 0 at the end, -1 on a
 * malformed record (unterminated quote, text after a closing quote, too many fields). */
int gen_csv_next(struct gen_csv *c);
void gen_csv_close(struct gen_csv *c);
/* Parses a decimal uint32 field: digits only, no sign or space. Returns 0 or -1. */
int gen_parse_u32(const char *s, uint32_t *out);

/* ---- a registry and its voting tables, as read back (votes.c, tables.c) ---------- */

struct gen_reg {
    size_t n;
    uint32_t *ids;         /* external project id, file order */
    uint32_t *circuit;     /* circuit index of each project */
    size_t n_circuits;     /* circuit indexes follow ascending external circuit ids */
    uint32_t *circuit_ids; /* external id of each circuit index */
    struct gen_u32set idset;
};

/* Reads a registry CSV (columns found by name: project_id, circuit_id). Returns 0, or -1
 * after printing why (then *reg holds nothing to free). */
int gen_reg_load(const char *path, struct gen_reg *reg);
void gen_reg_cleanup(struct gen_reg *reg);
/* The circuit index of external circuit id cid, or -1 when the registry has none. */
int64_t gen_reg_find_circuit(const struct gen_reg *reg, uint32_t cid);

#define GEN_TABLE_ID_MAX 63

struct gen_tables {
    size_t n;
    char *names; /* the ids, each NUL-terminated, at name_off[i] */
    size_t *name_off;
    uint8_t *name_len;
    uint32_t *circuit; /* circuit index (struct gen_reg) */
    uint32_t *electors;
};

/* Reads a tables CSV (header table_id,circuit_id,electors) against reg: ids
 * [A-Za-z0-9._-]{1,63} and distinct, circuits of the registry, electors 0..2^31-1.
 * Returns 0, or -1 after printing the line that is wrong. */
int gen_tables_load(const char *path, const struct gen_reg *reg, struct gen_tables *t);
void gen_tables_cleanup(struct gen_tables *t);
/* The table indexes ordered by id bytes (strcmp), malloc'd: the caller frees it. */
uint32_t *gen_tables_sorted(const struct gen_tables *t);

#define GEN_MAX_COLLECTORS 256

/* ---- pieces of the vote files shared by votes.c and votes_tables.c ----------------- */

/* Voter index -> national id number ("V-12345678"), a bijection on [0, 2^bits). */
struct gen_voter_ids {
    unsigned bits;
    uint64_t mask, salt;
};

/* Sizes the bijection for n_voters and draws its salt (one value from r). */
void gen_voter_ids_init(struct gen_voter_ids *v, uint64_t n_voters, struct gen_rng *r);
/* Writes "V-<number>" for voter. */
void gen_out_voter(struct gen_out *o, const struct gen_voter_ids *v, uint32_t voter);
/* Writes the k-th malformed line (one tally-push must skip), drawing its shape from r. */
void gen_out_malformed(struct gen_out *o, struct gen_rng *r, uint64_t k);
/* Appends v to the growing array *list (n used of cap). */
void gen_u32_push(uint32_t **list, size_t *n, size_t *cap, uint32_t v);

/* One vote line as generated, before it is written. */
struct gen_line {
    uint32_t voter;
    uint32_t project_id; /* external id, known or not */
    int32_t project;     /* registry index, -1 for an unknown project */
};

/* The outcome rule applied literally, collector after collector in file order: an unknown
 * project is rejected (the ballot stays unused), a voter's second valid vote is a
 * duplicate, else the vote counts (counts[project]++, and ballots[voter_table[voter]]++ when
 * voter_table is not NULL). lines[t] belongs to collector line_collector[t]; accepted_voter
 * (one byte per voter, zeroed) is the caller's scratch. */
void gen_replay(const struct gen_line *lines, const uint16_t *line_collector, uint64_t n,
                uint32_t collectors, uint8_t *accepted_voter, uint64_t *counts,
                const uint32_t *voter_table, uint64_t *ballots, uint64_t *accepted,
                uint64_t *duplicate, uint64_t *rejected);

struct gen_votes_opts;

/* What a consultation with voting tables adds to truth-summary.txt. */
struct gen_table_summary {
    uint64_t tables, tables_reported, electors, electors_reported, ballots;
    uint64_t sheets, corrections, sheets_duplicate, blank, null_ballots;
};

/* DIR/truth.csv: project_id,votes for every project, sorted by id. 0 or -1. */
int gen_write_truth(const char *dir, const struct gen_reg *reg, const uint64_t *counts);
/* DIR/truth-summary.txt; ts (NULL without tables) adds its lines at the end. 0 or -1. */
int gen_write_summary(const char *dir, const struct gen_votes_opts *o, uint64_t accepted,
                      uint64_t duplicate, uint64_t rejected, uint64_t voters,
                      const uint64_t *per_collector, const struct gen_table_summary *ts);

/* ---- the generators -------------------------------------------------------------- */

struct gen_registry_opts {
    const char *out;
    uint32_t states, circuits, projects;
    uint64_t seed;
};

int gen_registry(const struct gen_registry_opts *o);

struct gen_tables_opts {
    const char *registry;
    const char *out;
    uint32_t electors_per_table; /* each table's electors: within +-25 % of it */
    uint32_t tables_per_circuit;
    uint64_t seed;
};

/* `tally-gen tables`: o->tables_per_circuit tables per circuit of the registry. 0 or -1. */
int gen_tables(const struct gen_tables_opts *o);

struct gen_votes_opts {
    const char *registry;
    const char *out_dir;
    uint32_t collectors;
    uint64_t votes;
    double repeat_rate, unknown_rate;
    uint64_t malformed; /* malformed lines planted in the last collector's file */
    uint64_t seed;
    bool quiet;
    /* With voting tables (NULL: none, and the output is what it always was). */
    const char *tables;
    double sheet_share;   /* share of the tables that report by tally sheet */
    uint32_t corrections; /* sheets that get a version 2 */
};

/* `tally-gen votes`: the collector files and the truth (with tables: gen_votes_tables). */
int gen_votes(const struct gen_votes_opts *o);
/* The same for a consultation with voting tables (votes_tables.c). */
int gen_votes_tables(const struct gen_votes_opts *o);

#endif
