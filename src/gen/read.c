/* tally-gen reads back what it wrote: a registry (its projects and their circuits) and a
 * voting tables file, both checked enough that the generators can trust them. Generating
 * them is registry.c's and tables.c's. */
#include "gen/gen.h"

#include "core/xalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct circuit_key {
    uint32_t circuit_id;
    uint32_t project; /* index into registry */
};

static int cmp_circuit_key(const void *a, const void *b)
{
    const struct circuit_key *x = a, *y = b;
    if (x->circuit_id != y->circuit_id)
        return x->circuit_id < y->circuit_id ? -1 : 1;
    return x->project < y->project ? -1 : x->project > y->project;
}

int gen_parse_u32(const char *s, uint32_t *out)
{
    if (!*s)
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > UINT32_MAX || *s == '-' || *s == '+' || *s == ' ')
        return -1;
    *out = (uint32_t)v;
    return 0;
}

int gen_reg_load(const char *path, struct gen_reg *reg)
{
    struct gen_csv csv;
    memset(reg, 0, sizeof *reg);
    if (gen_csv_open(&csv, path))
        return -1;
    int rc = -1, col_pid = -1, col_cid = -1;
    size_t cap = 1024;
    struct circuit_key *keys = xcalloc(cap, sizeof *keys);

    if (gen_csv_next(&csv) != 1) {
        fprintf(stderr, "tally-gen: %s: empty or unreadable registry\n", path);
        goto done;
    }
    for (size_t i = 0; i < csv.n_fields; i++) {
        if (!strcmp(csv.fields[i], "project_id"))
            col_pid = (int)i;
        else if (!strcmp(csv.fields[i], "circuit_id"))
            col_cid = (int)i;
    }
    if (col_pid < 0 || col_cid < 0) {
        fprintf(stderr, "tally-gen: %s: header lacks project_id or circuit_id\n", path);
        goto done;
    }
    gen_u32set_init(&reg->idset, 1024);
    for (;;) {
        int r = gen_csv_next(&csv);
        if (r == 0)
            break;
        if (r < 0 || csv.n_fields <= (size_t)col_pid || csv.n_fields <= (size_t)col_cid) {
            fprintf(stderr, "tally-gen: %s: record %llu is malformed\n", path,
                    (unsigned long long)csv.record + 1);
            goto done;
        }
        uint32_t pid, cid;
        if (gen_parse_u32(csv.fields[col_pid], &pid) || pid == 0 ||
            gen_parse_u32(csv.fields[col_cid], &cid)) {
            fprintf(stderr, "tally-gen: %s: record %llu: bad project_id or circuit_id\n", path,
                    (unsigned long long)csv.record);
            goto done;
        }
        if (!gen_u32set_add(&reg->idset, pid)) {
            fprintf(stderr, "tally-gen: %s: project_id %u appears twice\n", path, pid);
            goto done;
        }
        if (reg->n == cap) {
            cap *= 2;
            keys = xreallocarray(keys, cap, sizeof *keys);
            reg->ids = xreallocarray(reg->ids, cap, sizeof *reg->ids);
        } else if (!reg->ids) {
            reg->ids = xcalloc(cap, sizeof *reg->ids);
        }
        keys[reg->n] = (struct circuit_key){cid, (uint32_t)reg->n};
        reg->ids[reg->n] = pid;
        reg->n++;
    }
    if (reg->n == 0) {
        fprintf(stderr, "tally-gen: %s: no projects\n", path);
        goto done;
    }
    qsort(keys, reg->n, sizeof *keys, cmp_circuit_key);
    reg->circuit = xcalloc(reg->n, sizeof *reg->circuit);
    reg->circuit_ids = xcalloc(reg->n, sizeof *reg->circuit_ids);
    for (size_t i = 0; i < reg->n; i++) {
        if (i > 0 && keys[i].circuit_id != keys[i - 1].circuit_id)
            reg->n_circuits++;
        reg->circuit[keys[i].project] = (uint32_t)reg->n_circuits;
        reg->circuit_ids[reg->n_circuits] = keys[i].circuit_id;
    }
    reg->n_circuits++;
    rc = 0;
done:
    free(keys);
    gen_csv_close(&csv);
    if (rc)
        gen_reg_cleanup(reg);
    return rc;
}

void gen_reg_cleanup(struct gen_reg *reg)
{
    free(reg->ids);
    free(reg->circuit);
    free(reg->circuit_ids);
    gen_u32set_cleanup(&reg->idset);
    memset(reg, 0, sizeof *reg);
}

int64_t gen_reg_find_circuit(const struct gen_reg *reg, uint32_t cid)
{
    size_t lo = 0, hi = reg->n_circuits;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (reg->circuit_ids[mid] < cid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < reg->n_circuits && reg->circuit_ids[lo] == cid ? (int64_t)lo : -1;
}

/* ---- voting tables ------------------------------------------------------------------ */

static bool table_id_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > GEN_TABLE_ID_MAX)
        return false;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static const struct gen_tables *sort_tables;

static int cmp_table_name(const void *a, const void *b)
{
    const struct gen_tables *t = sort_tables;
    return strcmp(t->names + t->name_off[*(const uint32_t *)a],
                  t->names + t->name_off[*(const uint32_t *)b]);
}

uint32_t *gen_tables_sorted(const struct gen_tables *t)
{
    uint32_t *order = xcalloc(t->n ? t->n : 1, sizeof *order);
    for (size_t i = 0; i < t->n; i++)
        order[i] = (uint32_t)i;
    sort_tables = t;
    qsort(order, t->n, sizeof *order, cmp_table_name);
    return order;
}

int gen_tables_load(const char *path, const struct gen_reg *reg, struct gen_tables *t)
{
    struct gen_csv csv;
    memset(t, 0, sizeof *t);
    if (gen_csv_open(&csv, path))
        return -1;
    int rc = -1;
    size_t cap = 0, names_len = 0, names_cap = 0;
    uint32_t *order = NULL;
    if (gen_csv_next(&csv) != 1 || csv.n_fields != 3 || strcmp(csv.fields[0], "table_id") ||
        strcmp(csv.fields[1], "circuit_id") || strcmp(csv.fields[2], "electors")) {
        fprintf(stderr, "tally-gen: %s: the header must be table_id,circuit_id,electors\n", path);
        goto done;
    }
    for (;;) {
        int r = gen_csv_next(&csv);
        if (r == 0)
            break;
        uint32_t cid, electors;
        if (r < 0 || csv.n_fields != 3 || !table_id_valid(csv.fields[0]) ||
            gen_parse_u32(csv.fields[1], &cid) || gen_parse_u32(csv.fields[2], &electors) ||
            electors > INT32_MAX) {
            fprintf(stderr,
                    "tally-gen: %s: record %llu: want table_id ([A-Za-z0-9._-]{1,63}), "
                    "circuit_id, electors (0..2147483647)\n",
                    path, (unsigned long long)csv.record + (r < 0));
            goto done;
        }
        int64_t c = gen_reg_find_circuit(reg, cid);
        if (c < 0) {
            fprintf(stderr, "tally-gen: %s: record %llu: circuit %u is not in the registry\n", path,
                    (unsigned long long)csv.record, cid);
            goto done;
        }
        if (t->n == cap) {
            cap = cap ? cap * 2 : 1024;
            t->name_off = xreallocarray(t->name_off, cap, sizeof *t->name_off);
            t->name_len = xreallocarray(t->name_len, cap, sizeof *t->name_len);
            t->circuit = xreallocarray(t->circuit, cap, sizeof *t->circuit);
            t->electors = xreallocarray(t->electors, cap, sizeof *t->electors);
        }
        size_t len = strlen(csv.fields[0]);
        if (names_len + len + 1 > names_cap) {
            names_cap = names_cap ? names_cap * 2 : 16384;
            t->names = xreallocarray(t->names, names_cap, 1);
        }
        memcpy(t->names + names_len, csv.fields[0], len + 1);
        t->name_off[t->n] = names_len;
        t->name_len[t->n] = (uint8_t)len;
        names_len += len + 1;
        t->circuit[t->n] = (uint32_t)c;
        t->electors[t->n] = electors;
        t->n++;
    }
    if (t->n == 0) {
        fprintf(stderr, "tally-gen: %s: no tables\n", path);
        goto done;
    }
    order = gen_tables_sorted(t);
    sort_tables = t;
    for (size_t i = 1; i < t->n; i++) {
        if (cmp_table_name(&order[i - 1], &order[i]) == 0) {
            fprintf(stderr, "tally-gen: %s: table %s appears twice\n", path,
                    t->names + t->name_off[order[i]]);
            goto done;
        }
    }
    rc = 0;
done:
    free(order);
    gen_csv_close(&csv);
    if (rc)
        gen_tables_cleanup(t);
    return rc;
}

void gen_tables_cleanup(struct gen_tables *t)
{
    free(t->names);
    free(t->name_off);
    free(t->name_len);
    free(t->circuit);
    free(t->electors);
    memset(t, 0, sizeof *t);
}
