/* tally-gen internals: a deterministic random source, RFC 4180 CSV reading and writing,
 * and the two generators (registry, votes). Nothing here talks to the network or the
 * database; everything follows from --seed. */
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

/* ---- the generators -------------------------------------------------------------- */

struct gen_registry_opts {
    const char *out;
    uint32_t states, circuits, projects;
    uint64_t seed;
};

int gen_registry(const struct gen_registry_opts *o);

struct gen_votes_opts {
    const char *registry;
    const char *out_dir;
    uint32_t collectors;
    uint64_t votes;
    double repeat_rate, unknown_rate;
    uint64_t malformed; /* malformed lines planted in the last collector's file */
    uint64_t seed;
    bool quiet;
};

int gen_votes(const struct gen_votes_opts *o);

#endif
