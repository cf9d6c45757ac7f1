/* `tally-gen votes --tables`: a consultation with voting tables. Every voter belongs to one
 * table and votes, at every collector, for projects of that table's circuit; a share of the
 * tables reports by tally sheet instead (DIR/sheets.csv, some corrected by a version 2, and
 * one sheet again in DIR/sheets-dup.csv). Owns that ground truth; votes.c owns the rule for
 * repeated voters and unknown projects, which stays the same here (see its opening comment).
 *
 * Each table draws a turnout (40-80 %) of its electors: a sheet reports exactly that many
 * ballots, and a ballot-by-ballot table never holds more (each new voter takes a place at a
 * table drawn by the places left, so tables fill evenly). Accepted ballots always stay below
 * a table's electors, so a duplicate naming its table is a duplicate whatever the order (no
 * over_electors), and a table reports one way only (no table_mode_conflict). A voter's first
 * line goes to the collector of its table's region (the circuits cut in K ranges), so a
 * batch names a region's tables, not the whole country's; repeated voters go anywhere. */
#include "gen/gen.h"

#include "core/xalloc.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- projects by circuit, each circuit a Zipf law (s = 1.1) over a random ranking ---- */

struct circuit_pop {
    uint32_t *start; /* n_circuits + 1: circuit c's projects are proj[start[c] .. start[c+1]) */
    uint32_t *proj;  /* registry indexes, file order within a circuit */
    double *cum;     /* cumulative weight within the circuit, parallel to proj */
};

static void circuit_pop_init(struct circuit_pop *cp, const struct gen_reg *reg, struct gen_rng *r)
{
    size_t nc = reg->n_circuits;
    cp->start = xcalloc(nc + 1, sizeof *cp->start);
    cp->proj = xcalloc(reg->n, sizeof *cp->proj);
    cp->cum = xcalloc(reg->n, sizeof *cp->cum);
    for (size_t p = 0; p < reg->n; p++)
        cp->start[reg->circuit[p] + 1]++;
    for (size_t c = 0; c < nc; c++)
        cp->start[c + 1] += cp->start[c];
    uint32_t *fill = xcalloc(nc, sizeof *fill);
    for (size_t p = 0; p < reg->n; p++) {
        uint32_t c = reg->circuit[p];
        cp->proj[cp->start[c] + fill[c]++] = (uint32_t)p;
    }
    uint32_t *perm = xcalloc(reg->n, sizeof *perm);
    for (size_t c = 0; c < nc; c++) {
        uint32_t size = cp->start[c + 1] - cp->start[c], *rk = perm + cp->start[c];
        for (uint32_t i = 0; i < size; i++)
            rk[i] = i;
        for (uint32_t i = size; i > 1; i--) {
            uint32_t j = (uint32_t)gen_rng_below(r, i), t = rk[i - 1];
            rk[i - 1] = rk[j];
            rk[j] = t;
        }
        double total = 0;
        for (uint32_t i = 0; i < size; i++) {
            total += pow(rk[i] + 1.0, -1.1);
            cp->cum[cp->start[c] + i] = total;
        }
    }
    free(perm);
    free(fill);
}

static void circuit_pop_cleanup(struct circuit_pop *cp)
{
    free(cp->start);
    free(cp->proj);
    free(cp->cum);
}

/* A position in circuit c's list (cp->proj[pos] is the project). */
static uint32_t circuit_sample(const struct circuit_pop *cp, uint32_t c, struct gen_rng *r)
{
    uint32_t lo = cp->start[c], hi = cp->start[c + 1] - 1;
    double u = gen_rng_unit(r) * cp->cum[hi];
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (cp->cum[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* ---- places left at the ballot-by-ballot tables: a Fenwick tree of counts ------------ */

struct places {
    uint64_t *t; /* 1-based */
    size_t n, top;
    uint64_t total;
};

static void places_init(struct places *f, const uint64_t *w, size_t n)
{
    f->t = xcalloc(n + 1, sizeof *f->t);
    f->n = n;
    f->total = 0;
    for (size_t i = 1; i <= n; i++) {
        f->t[i] += w[i - 1];
        f->total += w[i - 1];
        size_t j = i + (i & -i);
        if (j <= n)
            f->t[j] += f->t[i];
    }
    for (f->top = 1; f->top * 2 <= n; f->top *= 2)
        ;
}

/* Takes one place, drawn uniformly among those left: returns its table, SIZE_MAX if none. */
static size_t places_take(struct places *f, struct gen_rng *r)
{
    if (f->total == 0)
        return SIZE_MAX;
    uint64_t w = gen_rng_below(r, f->total);
    size_t pos = 0;
    for (size_t step = f->top; step; step >>= 1) {
        if (pos + step <= f->n && f->t[pos + step] <= w) {
            pos += step;
            w -= f->t[pos];
        }
    }
    for (size_t i = pos + 1; i <= f->n; i += i & -i)
        f->t[i]--;
    f->total--;
    return pos;
}

/* ---- the lines ------------------------------------------------------------------------ */

struct voter {
    int32_t canonical; /* registry index of the first valid vote, -1 none yet */
    uint16_t owner;    /* collector that cast it */
};

/* One tally sheet's content: votes per position of the table's circuit, blank, null. */
struct sheet {
    uint32_t *votes;
    uint32_t blank, null_ballots;
};

static uint64_t sheet_total(const struct sheet *s, uint32_t size)
{
    uint64_t t = (uint64_t)s->blank + s->null_ballots;
    for (uint32_t i = 0; i < size; i++)
        t += s->votes[i];
    return t;
}

static void write_sheet(struct gen_out *o, const struct gen_tables *tabs, size_t t,
                        uint32_t version, const struct sheet *s, const struct gen_reg *reg,
                        const struct circuit_pop *cp)
{
    const char *name = tabs->names + tabs->name_off[t];
    uint32_t c = tabs->circuit[t], first = cp->start[c], size = cp->start[c + 1] - first;
    for (uint32_t i = 0; i <= size + 1; i++) {
        gen_out_mem(o, name, tabs->name_len[t]);
        gen_out_char(o, ',');
        gen_out_u64(o, version);
        gen_out_char(o, ',');
        if (i < size) {
            gen_out_u64(o, reg->ids[cp->proj[first + i]]);
            gen_out_char(o, ',');
            gen_out_u64(o, s->votes[i]);
        } else {
            gen_out_str(o, i == size ? "blank," : "null,");
            gen_out_u64(o, i == size ? s->blank : s->null_ballots);
        }
        gen_out_char(o, '\n');
    }
}

/* Draws k distinct indexes of the n in pool (reordering it): they end up in pool[0..k). */
static void pick(uint32_t *pool, size_t n, size_t k, struct gen_rng *r)
{
    for (size_t i = 0; i < k && i < n; i++) {
        size_t j = i + (size_t)gen_rng_below(r, n - i);
        uint32_t t = pool[i];
        pool[i] = pool[j];
        pool[j] = t;
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The tables' sheets: version 1 of each sheet table, version 2 of `corrections` of them. */
struct sheets {
    struct sheet *v1, *v2; /* per table; votes NULL when the table has none */
    uint32_t *corrected;   /* table indexes, ascending */
    size_t n_sheet, n_corrected;
    size_t dup; /* the table sent again in sheets-dup.csv, SIZE_MAX none */
};

static void sheets_make(struct sheets *sh, const struct gen_votes_opts *o,
                        const struct gen_tables *tabs, const uint8_t *is_sheet,
                        const uint64_t *target, const struct circuit_pop *cp, struct gen_rng *r)
{
    size_t T = tabs->n;
    sh->v1 = xcalloc(T, sizeof *sh->v1);
    sh->v2 = xcalloc(T, sizeof *sh->v2);
    uint32_t *cand = xcalloc(T, sizeof *cand);
    size_t n_cand = 0;
    sh->n_sheet = 0;
    for (size_t t = 0; t < T; t++) {
        if (!is_sheet[t])
            continue;
        sh->n_sheet++;
        uint32_t c = tabs->circuit[t], size = cp->start[c + 1] - cp->start[c];
        struct sheet *s = &sh->v1[t];
        s->votes = xcalloc(size, sizeof *s->votes);
        uint64_t b = target[t];
        s->blank = (uint32_t)floor((double)b * (0.005 + 0.02 * gen_rng_unit(r)));
        s->null_ballots = (uint32_t)floor((double)b * (0.005 + 0.015 * gen_rng_unit(r)));
        for (uint64_t k = s->blank + s->null_ballots; k < b; k++)
            s->votes[circuit_sample(cp, c, r) - cp->start[c]]++;
        if (b > (uint64_t)s->blank + s->null_ballots)
            cand[n_cand++] = (uint32_t)t;
    }
    /* Version 2: one project loses d votes, another (or blank) gains d to d + 3, within the
     * table's electors; the version 1 sheet left as it was. */
    size_t nc = o->corrections < n_cand ? o->corrections : n_cand;
    pick(cand, n_cand, nc, r);
    qsort(cand, nc, sizeof *cand, cmp_u32);
    sh->corrected = cand;
    sh->n_corrected = nc;
    for (size_t i = 0; i < nc; i++) {
        size_t t = cand[i];
        uint32_t c = tabs->circuit[t], size = cp->start[c + 1] - cp->start[c];
        const struct sheet *s1 = &sh->v1[t];
        struct sheet *s2 = &sh->v2[t];
        *s2 = *s1;
        s2->votes = xcalloc(size, sizeof *s2->votes);
        memcpy(s2->votes, s1->votes, size * sizeof *s2->votes);
        uint32_t a = 0;
        for (uint32_t k = 1; k < size; k++)
            if (s2->votes[k] > s2->votes[a])
                a = k;
        uint32_t d = 1 + (uint32_t)gen_rng_below(r, s2->votes[a] < 10 ? s2->votes[a] : 10);
        uint64_t room = tabs->electors[t] - (sheet_total(s1, size) - d);
        uint64_t inc = d + gen_rng_below(r, 4);
        if (inc > room)
            inc = room;
        s2->votes[a] -= d;
        if (size >= 2) {
            uint32_t b = (uint32_t)gen_rng_below(r, size - 1);
            s2->votes[b + (b >= a)] += (uint32_t)inc;
        } else {
            s2->blank += (uint32_t)inc;
        }
    }
    /* The duplicate: a sheet without a correction (its version 1 again is not superseded). */
    size_t n_plain = sh->n_sheet - nc, k = n_plain ? (size_t)gen_rng_below(r, n_plain) : 0;
    sh->dup = SIZE_MAX;
    for (size_t t = 0, seen = 0; t < T && n_plain; t++) {
        if (!is_sheet[t] || sh->v2[t].votes)
            continue;
        if (seen++ == k) {
            sh->dup = t;
            break;
        }
    }
}

static void sheets_cleanup(struct sheets *sh, size_t T)
{
    for (size_t t = 0; sh->v1 && t < T; t++) {
        free(sh->v1[t].votes);
        free(sh->v2[t].votes);
    }
    free(sh->v1);
    free(sh->v2);
    free(sh->corrected);
}

static int write_sheets(const char *dir, const struct sheets *sh, const struct gen_tables *tabs,
                        const struct gen_reg *reg, const struct circuit_pop *cp)
{
    char path[4096], dup_path[4096];
    snprintf(path, sizeof path, "%s/sheets.csv", dir);
    snprintf(dup_path, sizeof dup_path, "%s/sheets-dup.csv", dir);
    struct gen_out out, dup;
    if (gen_out_open(&out, path))
        return -1;
    gen_out_str(&out, "table_id,version,project_id,votes\n");
    for (size_t t = 0; t < tabs->n; t++)
        if (sh->v1[t].votes)
            write_sheet(&out, tabs, t, 1, &sh->v1[t], reg, cp);
    for (size_t i = 0; i < sh->n_corrected; i++)
        write_sheet(&out, tabs, sh->corrected[i], 2, &sh->v2[sh->corrected[i]], reg, cp);
    int rc = gen_out_close(&out);
    if (gen_out_open(&dup, dup_path))
        return -1;
    gen_out_str(&dup, "table_id,version,project_id,votes\n");
    if (sh->dup != SIZE_MAX)
        write_sheet(&dup, tabs, sh->dup, 1, &sh->v1[sh->dup], reg, cp);
    return gen_out_close(&dup) || rc ? -1 : 0;
}

/* DIR/truth-tables.csv: table_id,mode,ballots by table id bytes; mode sheet, ballots or
 * none, as the table_progress view says. */
static int write_truth_tables(const char *dir, const struct gen_tables *tabs,
                              const uint8_t *is_sheet, const uint64_t *ballots)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/truth-tables.csv", dir);
    struct gen_out out;
    if (gen_out_open(&out, path))
        return -1;
    uint32_t *order = gen_tables_sorted(tabs);
    gen_out_str(&out, "table_id,mode,ballots\n");
    for (size_t i = 0; i < tabs->n; i++) {
        size_t t = order[i];
        gen_out_mem(&out, tabs->names + tabs->name_off[t], tabs->name_len[t]);
        gen_out_str(&out, is_sheet[t] ? ",sheet," : ballots[t] ? ",ballots," : ",none,");
        gen_out_u64(&out, ballots[t]);
        gen_out_char(&out, '\n');
    }
    free(order);
    return gen_out_close(&out);
}

int gen_votes_tables(const struct gen_votes_opts *o)
{
    if (o->collectors == 0 || o->collectors > GEN_MAX_COLLECTORS) {
        fprintf(stderr, "tally-gen: --collectors must be 1..%d\n", GEN_MAX_COLLECTORS);
        return -1;
    }
    if (o->votes > UINT32_MAX - 1) {
        fprintf(stderr, "tally-gen: --votes must be below 2^32\n");
        return -1;
    }
    struct gen_reg reg;
    struct gen_tables tabs;
    if (gen_reg_load(o->registry, &reg))
        return -1;
    if (gen_tables_load(o->tables, &reg, &tabs)) {
        gen_reg_cleanup(&reg);
        return -1;
    }
    if (mkdir(o->out_dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "tally-gen: cannot create %s: %s\n", o->out_dir, strerror(errno));
        gen_tables_cleanup(&tabs);
        gen_reg_cleanup(&reg);
        return -1;
    }

    int rc = -1;
    struct gen_rng r, rt; /* the lines; the tables and sheets */
    gen_rng_seed(&r, o->seed, 2);
    gen_rng_seed(&rt, o->seed, 4);
    struct circuit_pop cp;
    circuit_pop_init(&cp, &reg, &rt);
    size_t T = tabs.n;
    uint32_t K = o->collectors;
    uint64_t N = o->votes;

    /* Turnout and mode of each table. */
    uint64_t *target = xcalloc(T, sizeof *target), *weight = xcalloc(T, sizeof *weight);
    uint8_t *is_sheet = xcalloc(T, 1);
    uint16_t *home = xcalloc(T, sizeof *home);
    uint32_t *pool = xcalloc(T, sizeof *pool);
    for (size_t t = 0; t < T; t++) {
        target[t] = (uint64_t)floor(tabs.electors[t] * (0.40 + 0.40 * gen_rng_unit(&rt)));
        pool[t] = (uint32_t)t;
    }
    size_t n_sheet = (size_t)llround(o->sheet_share * (double)T);
    pick(pool, T, n_sheet, &rt);
    for (size_t i = 0; i < n_sheet; i++)
        is_sheet[pool[i]] = 1;
    for (size_t t = 0; t < T; t++)
        weight[t] = is_sheet[t] ? 0 : target[t];
    struct places places;
    places_init(&places, weight, T);
    uint64_t capacity = places.total;

    struct gen_line *lines = xcalloc(N ? N : 1, sizeof *lines);
    uint16_t *line_collector = xcalloc(N ? N : 1, sizeof *line_collector);
    struct voter *voters = xcalloc(N ? N : 1, sizeof *voters);
    uint32_t *voter_table = xcalloc(N ? N : 1, sizeof *voter_table);
    uint32_t **own = xcalloc(K, sizeof *own);
    size_t *own_n = xcalloc(K, sizeof *own_n), *own_cap = xcalloc(K, sizeof *own_cap);
    uint64_t *per_collector = xcalloc(K, sizeof *per_collector);
    uint64_t *counts = xcalloc(reg.n, sizeof *counts), *check = xcalloc(reg.n, sizeof *check);
    uint64_t *ballots = xcalloc(T, sizeof *ballots);
    uint8_t *accepted_voter = xcalloc(N ? N : 1, 1);
    uint64_t *malformed_at = xcalloc(o->malformed ? o->malformed : 1, sizeof *malformed_at);
    struct gen_out *outs = xcalloc(K, sizeof *outs);
    struct sheets sh = {0};
    uint32_t n_voters = 0, opened = 0;
    bool progress = !o->quiet && N >= 1000000;

    /* A table's voters come first to the collector of its region (circuits in K ranges), as
     * a regional collector gathers its tables' votes; repeated voters may come to any. */
    for (size_t t = 0; t < T; t++)
        home[t] = (uint16_t)((uint64_t)tabs.circuit[t] * K / reg.n_circuits);
    for (uint64_t t = 0; t < N; t++) {
        double u = gen_rng_unit(&r);
        struct gen_line *ln = &lines[t];
        uint32_t v;
        uint16_t c = 0;
        bool reuse = u < o->unknown_rate ? n_voters > 0 && gen_rng_unit(&r) < 0.5
                                         : u < o->unknown_rate + o->repeat_rate && n_voters > 0;
        if (reuse)
            c = (uint16_t)gen_rng_below(&r, K);
        if (!reuse) {
            size_t tb = places_take(&places, &r);
            if (tb == SIZE_MAX) {
                fprintf(stderr,
                        "tally-gen: vote %llu: the ballot-by-ballot tables are full (their "
                        "turnout holds %llu ballots): give the tables more electors "
                        "(tally-gen tables --electors-per-table) or ask fewer --votes\n",
                        (unsigned long long)t + 1, (unsigned long long)capacity);
                goto done;
            }
            c = home[tb];
            v = n_voters++;
            voters[v] = (struct voter){-1, c};
            voter_table[v] = (uint32_t)tb;
            gen_u32_push(&own[c], &own_n[c], &own_cap[c], v);
        } else if (u >= o->unknown_rate && own_n[c] > 0 && gen_rng_unit(&r) < 0.5) {
            v = own[c][gen_rng_below(&r, own_n[c])]; /* a repeat first seen here */
        } else {
            v = (uint32_t)gen_rng_below(&r, n_voters);
        }
        line_collector[t] = c;
        per_collector[c]++;
        struct voter *vv = &voters[v];
        uint32_t circuit = tabs.circuit[voter_table[v]];
        if (u < o->unknown_rate) {
            /* Rejected: an id not in the registry, naming the voter's table. */
            uint32_t id;
            do
                id = (uint32_t)gen_rng_next(&r);
            while (id == 0 || gen_u32set_has(&reg.idset, id));
            *ln = (struct gen_line){v, id, -1};
            continue;
        }
        int32_t p;
        if (vv->canonical < 0) {
            p = (int32_t)cp.proj[circuit_sample(&cp, circuit, &r)];
            vv->canonical = p;
            vv->owner = c;
        } else if (reuse && vv->owner == c && gen_rng_unit(&r) < 0.5) {
            p = (int32_t)cp.proj[circuit_sample(&cp, circuit, &r)]; /* changed their mind */
        } else {
            p = vv->canonical;
        }
        *ln = (struct gen_line){v, reg.ids[p], p};
        if (progress && (t + 1) % 1000000 == 0)
            fprintf(stderr, "tally-gen: generated %llu/%llu votes\n", (unsigned long long)t + 1,
                    (unsigned long long)N);
    }

    /* Replay collector after collector, applying the rule literally. */
    uint64_t accepted, duplicate, rejected;
    gen_replay(lines, line_collector, N, K, accepted_voter, counts, voter_table, ballots, &accepted,
               &duplicate, &rejected);
    uint64_t voters_with_vote = 0;
    for (uint32_t v = 0; v < n_voters; v++) {
        if (voters[v].canonical >= 0) {
            check[voters[v].canonical]++;
            voters_with_vote++;
        }
    }
    bool bad = voters_with_vote != accepted || memcmp(check, counts, reg.n * sizeof *counts);
    for (size_t t = 0; t < T; t++)
        bad |= ballots[t] > target[t] || (ballots[t] && ballots[t] >= tabs.electors[t]);
    if (bad) {
        fprintf(stderr, "tally-gen: internal error: truth depends on interleaving or a table "
                        "is over its electors\n");
        goto done;
    }

    /* The sheets; the truth is each table's latest version. */
    sheets_make(&sh, o, &tabs, is_sheet, target, &cp, &rt);
    struct gen_table_summary ts = {.tables = T,
                                   .sheets = sh.n_sheet + sh.n_corrected,
                                   .corrections = sh.n_corrected,
                                   .sheets_duplicate = sh.dup != SIZE_MAX};
    for (size_t t = 0; t < T; t++) {
        ts.electors += tabs.electors[t];
        if (is_sheet[t]) {
            const struct sheet *s = sh.v2[t].votes ? &sh.v2[t] : &sh.v1[t];
            uint32_t c = tabs.circuit[t], first = cp.start[c], size = cp.start[c + 1] - first;
            for (uint32_t i = 0; i < size; i++)
                counts[cp.proj[first + i]] += s->votes[i];
            ballots[t] = sheet_total(s, size);
            ts.blank += s->blank;
            ts.null_ballots += s->null_ballots;
        }
        if (is_sheet[t] || ballots[t]) {
            ts.tables_reported++;
            ts.electors_reported += tabs.electors[t];
        }
        ts.ballots += ballots[t];
    }

    /* Write the collector files in one pass, each vote naming its voter's table. */
    struct gen_voter_ids ids;
    gen_voter_ids_init(&ids, n_voters, &r);
    uint64_t last_lines = per_collector[K - 1];
    for (uint64_t m = 0; m < o->malformed; m++)
        malformed_at[m] = gen_rng_below(&r, last_lines + 1);
    qsort(malformed_at, o->malformed, sizeof *malformed_at, cmp_u64);
    char(*paths)[4096] = xcalloc(K, sizeof *paths);
    for (; opened < K; opened++) {
        snprintf(paths[opened], sizeof paths[opened], "%s/collector-%u.csv", o->out_dir, opened);
        if (gen_out_open(&outs[opened], paths[opened]))
            break;
        if (opened % 2 == 0)
            gen_out_str(&outs[opened], "voter,project_id,table_id\n");
    }
    uint64_t last_pos = 0, next_malformed = 0;
    for (uint64_t t = 0; t < N && opened == K; t++) {
        uint16_t c = line_collector[t];
        struct gen_out *out = &outs[c];
        if (c == K - 1) {
            while (next_malformed < o->malformed && malformed_at[next_malformed] == last_pos)
                gen_out_malformed(out, &r, next_malformed++);
            last_pos++;
        }
        uint32_t tb = voter_table[lines[t].voter];
        gen_out_voter(out, &ids, lines[t].voter);
        gen_out_char(out, ',');
        gen_out_u64(out, lines[t].project_id);
        gen_out_char(out, ',');
        gen_out_mem(out, tabs.names + tabs.name_off[tb], tabs.name_len[tb]);
        gen_out_char(out, '\n');
    }
    while (opened == K && next_malformed < o->malformed)
        gen_out_malformed(&outs[K - 1], &r, next_malformed++);
    int failed = opened < K;
    for (uint32_t c = 0; c < opened; c++)
        if (gen_out_close(&outs[c]))
            failed = 1;
    free(paths);
    if (failed || write_sheets(o->out_dir, &sh, &tabs, &reg, &cp) ||
        gen_write_truth(o->out_dir, &reg, counts) ||
        write_truth_tables(o->out_dir, &tabs, is_sheet, ballots) ||
        gen_write_summary(o->out_dir, o, accepted, duplicate, rejected, n_voters, per_collector,
                          &ts))
        goto done;
    if (!o->quiet)
        fprintf(stderr,
                "tally-gen: %s: %u collectors, %llu votes (accepted %llu, duplicate %llu, "
                "rejected %llu, malformed %llu); %zu tables, %zu by tally sheet (%zu "
                "corrected), %llu ballots of %llu electors\n",
                o->out_dir, K, (unsigned long long)N, (unsigned long long)accepted,
                (unsigned long long)duplicate, (unsigned long long)rejected,
                (unsigned long long)o->malformed, T, sh.n_sheet, sh.n_corrected,
                (unsigned long long)ts.ballots, (unsigned long long)ts.electors);
    rc = 0;
done:
    sheets_cleanup(&sh, T);
    free(outs);
    free(malformed_at);
    free(accepted_voter);
    free(ballots);
    free(check);
    free(counts);
    free(per_collector);
    for (uint32_t c = 0; c < K; c++)
        free(own[c]);
    free(own_cap);
    free(own_n);
    free(own);
    free(voter_table);
    free(voters);
    free(line_collector);
    free(lines);
    free(home);
    free(places.t);
    free(pool);
    free(is_sheet);
    free(weight);
    free(target);
    circuit_pop_cleanup(&cp);
    gen_tables_cleanup(&tabs);
    gen_reg_cleanup(&reg);
    return rc;
}
