/* tally-gen's small tools: the random source, a uint32 set, a buffered writer and the
 * registry's CSV records (core/csv.h). Deterministic and allocation-light; no knowledge of
 * votes. */
#include "gen/gen.h"

#include "core/csv.h"
#include "core/rng.h"
#include "core/xalloc.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- random ---------------------------------------------------------------------- */

void gen_rng_seed(struct gen_rng *r, uint64_t seed, uint64_t stream)
{
    xoshiro256ss_seed(r->s, seed ^ (stream * 0xd1b54a32d192ed03ull));
}

uint64_t gen_rng_next(struct gen_rng *r)
{
    return xoshiro256ss_next(r->s);
}

uint64_t gen_rng_below(struct gen_rng *r, uint64_t n)
{
    /* Lemire's multiply-shift; the tiny bias is irrelevant for test data but the
     * result must not depend on the platform, and it does not. */
    return (uint64_t)(((unsigned __int128)gen_rng_next(r) * n) >> 64);
}

double gen_rng_unit(struct gen_rng *r)
{
    return (double)(gen_rng_next(r) >> 11) * 0x1.0p-53;
}

double gen_rng_normal(struct gen_rng *r)
{
    double u1 = gen_rng_unit(r);
    double u2 = gen_rng_unit(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* ---- uint32 set -------------------------------------------------------------------- */

void gen_u32set_init(struct gen_u32set *s, size_t expected)
{
    size_t cap = 16;
    while (cap < expected * 2 + 16)
        cap <<= 1;
    s->slots = xcalloc(cap, sizeof *s->slots);
    s->mask = cap - 1;
    s->n = 0;
}

void gen_u32set_cleanup(struct gen_u32set *s)
{
    free(s->slots);
    s->slots = NULL;
}

static size_t u32_hash(uint32_t v)
{
    return (size_t)(((uint64_t)v * 0x9e3779b97f4a7c15ull) >> 32);
}

static void u32set_grow(struct gen_u32set *s)
{
    struct gen_u32set bigger;
    gen_u32set_init(&bigger, (s->mask + 1));
    for (size_t i = 0; i <= s->mask; i++)
        if (s->slots[i])
            gen_u32set_add(&bigger, s->slots[i]);
    free(s->slots);
    *s = bigger;
}

bool gen_u32set_add(struct gen_u32set *s, uint32_t v)
{
    if ((s->n + 1) * 2 > s->mask + 1)
        u32set_grow(s);
    for (size_t i = u32_hash(v) & s->mask;; i = (i + 1) & s->mask) {
        if (s->slots[i] == v)
            return false;
        if (!s->slots[i]) {
            s->slots[i] = v;
            s->n++;
            return true;
        }
    }
}

bool gen_u32set_has(const struct gen_u32set *s, uint32_t v)
{
    for (size_t i = u32_hash(v) & s->mask;; i = (i + 1) & s->mask) {
        if (s->slots[i] == v)
            return v != 0;
        if (!s->slots[i])
            return false;
    }
}

/* ---- output ---------------------------------------------------------------------- */

int gen_out_open(struct gen_out *o, const char *path)
{
    memset(o, 0, sizeof *o);
    o->path = path;
    o->f = fopen(path, "w");
    if (!o->f) {
        fprintf(stderr, "tally-gen: cannot create %s: %s\n", path, strerror(errno));
        return -1;
    }
    o->cap = 1 << 20;
    o->buf = xmalloc(o->cap);
    return 0;
}

static void out_flush(struct gen_out *o)
{
    if (o->len && !o->failed && fwrite(o->buf, 1, o->len, o->f) != o->len)
        o->failed = errno ? errno : EIO;
    o->len = 0;
}

static void out_reserve(struct gen_out *o, size_t n)
{
    if (o->len + n > o->cap)
        out_flush(o);
    if (n > o->cap) {
        o->cap = n;
        o->buf = xreallocarray(o->buf, o->cap, 1);
    }
}

void gen_out_str(struct gen_out *o, const char *s)
{
    size_t n = strlen(s);
    out_reserve(o, n);
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

void gen_out_mem(struct gen_out *o, const char *s, size_t n)
{
    out_reserve(o, n);
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

void gen_out_char(struct gen_out *o, char c)
{
    out_reserve(o, 1);
    o->buf[o->len++] = c;
}

void gen_out_u64(struct gen_out *o, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    out_reserve(o, (size_t)n);
    while (n)
        o->buf[o->len++] = tmp[--n];
}

void gen_out_csv_field(struct gen_out *o, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        gen_out_str(o, s);
        return;
    }
    gen_out_char(o, '"');
    for (; *s; s++) {
        if (*s == '"')
            gen_out_char(o, '"');
        gen_out_char(o, *s);
    }
    gen_out_char(o, '"');
}

int gen_out_close(struct gen_out *o)
{
    int rc = 0;
    out_flush(o);
    if (fclose(o->f) != 0 && !o->failed)
        o->failed = errno ? errno : EIO;
    if (o->failed) {
        fprintf(stderr, "tally-gen: writing %s: %s\n", o->path, strerror(o->failed));
        rc = -1;
    }
    free(o->buf);
    o->buf = NULL;
    o->f = NULL;
    return rc;
}

/* ---- CSV reading ----------------------------------------------------------------- */

int gen_csv_open(struct gen_csv *c, const char *path)
{
    memset(c, 0, sizeof *c);
    c->f = fopen(path, "r");
    if (!c->f) {
        fprintf(stderr, "tally-gen: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    /* Quoted fields may hold commas, doubled quotes and newlines; a stray quote inside an
     * unquoted field is taken as text. */
    static const struct csv_options opt = {.flags = CSV_MULTILINE,
                                           .max_fields = GEN_CSV_MAX_FIELDS};
    c->csv = csv_reader_new_file(c->f, &opt);
    return 0;
}

void gen_csv_close(struct gen_csv *c)
{
    csv_reader_free(c->csv);
    if (c->f)
        fclose(c->f);
    memset(c, 0, sizeof *c);
}

int gen_csv_next(struct gen_csv *c)
{
    struct csv_record rec;
    int got = csv_reader_next(c->csv, &rec);
    if (got <= 0)
        return got;
    if (rec.n_fields > GEN_CSV_MAX_FIELDS)
        return -1;
    for (size_t i = 0; i < rec.n_fields; i++)
        c->fields[i] = rec.fields[i].s;
    c->n_fields = rec.n_fields;
    c->record++;
    return 1;
}

void gen_replay(const struct gen_line *lines, const uint16_t *line_collector, uint64_t n,
                uint32_t collectors, uint8_t *accepted_voter, uint64_t *counts,
                const uint32_t *voter_table, uint64_t *ballots, uint64_t *accepted,
                uint64_t *duplicate, uint64_t *rejected)
{
    *accepted = *duplicate = *rejected = 0;
    for (uint32_t c = 0; c < collectors; c++) {
        for (uint64_t t = 0; t < n; t++) {
            if (line_collector[t] != c)
                continue;
            const struct gen_line *ln = &lines[t];
            if (ln->project < 0) {
                (*rejected)++;
            } else if (accepted_voter[ln->voter]) {
                (*duplicate)++;
            } else {
                accepted_voter[ln->voter] = 1;
                counts[ln->project]++;
                if (voter_table)
                    ballots[voter_table[ln->voter]]++;
                (*accepted)++;
            }
        }
    }
}
