/* tally-push --sheets, pure: one sheets CSV line checked (split by core/csv.h), rows
 * gathered into sheets by (table_id, version), sheets packed into batches, the sheets
 * cursor and the summary's sheet part. Owns no file or socket (sheets_run.c does). */
#include "push/sheets.h"

#include "core/csv.h"
#include "core/endian.h"
#include "core/xalloc.h"
#include "push/push.h"
#include "tally/client.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHEET_CURSOR_MAGIC 0x31535054u /* "TPS1" read little-endian */

/* 1-10 decimal digits up to max: 0 with *v, or -1. */
static int parse_num(const char *s, size_t len, uint64_t max, uint64_t *v)
{
    if (len == 0 || len > 10)
        return -1;
    uint64_t x = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        x = x * 10 + (uint64_t)(s[i] - '0');
    }
    if (x > max)
        return -1;
    *v = x;
    return 0;
}

static bool field_is(const struct csv_field *f, const char *word)
{
    return f->len == strlen(word) && memcmp(f->s, word, f->len) == 0;
}

enum push_sheet_line_kind push_sheet_line_parse(char *line, size_t len, bool first,
                                                struct push_sheet_line *out)
{
    memset(out, 0, sizeof(*out));
    if (first && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
        line += 3;
        len -= 3;
    }
    struct csv_field f[4];
    size_t n;
    struct csv_error err;
    if (csv_split_line(line, len, 0, f, 4, &n, &err) < 0) {
        out->reason = err.field > 4                      ? "expected 4 fields, found more"
                      : err.code == CSV_ERR_UNTERMINATED ? "unterminated quoted field"
                                                         : "text after a closing quote";
        return PUSH_SHEET_MALFORMED;
    }
    bool blank = n == 1 && !f[0].quoted && f[0].len == 0;
    if (first) {
        if (n == 4 && field_is(&f[0], "table_id") && field_is(&f[1], "version") &&
            field_is(&f[2], "project_id") && field_is(&f[3], "votes"))
            return PUSH_SHEET_HEADER;
        out->reason = "a sheets file starts with the header " PUSH_SHEETS_HEADER;
        return PUSH_SHEET_MALFORMED;
    }
    if (blank)
        return PUSH_SHEET_BLANK;
    if (n != 4) {
        out->reason = n < 4 ? "expected 4 fields (table_id,version,project_id,votes), found fewer"
                            : "expected 4 fields (table_id,version,project_id,votes), found more";
        return PUSH_SHEET_MALFORMED;
    }
    if (!push_table_id_is_valid(f[0].s, f[0].len)) {
        out->reason = "table id must be 1-63 characters of [A-Za-z0-9._-]";
        return PUSH_SHEET_MALFORMED;
    }
    uint64_t v;
    if (parse_num(f[1].s, f[1].len, UINT32_MAX, &v) < 0 || v == 0) {
        out->reason = "version must be a number from 1 to 4294967295";
        return PUSH_SHEET_MALFORMED;
    }
    out->version = (uint32_t)v;
    if (field_is(&f[2], "blank")) {
        out->kind = PUSH_SHEET_BLANK_ROW;
    } else if (field_is(&f[2], "null")) {
        out->kind = PUSH_SHEET_NULL_ROW;
    } else if (parse_num(f[2].s, f[2].len, UINT32_MAX, &v) == 0) {
        out->kind = PUSH_SHEET_PROJECT;
        out->project = (uint32_t)v;
    } else {
        out->reason = "project_id must be a project id (0 to 4294967295), blank or null";
        return PUSH_SHEET_MALFORMED;
    }
    if (parse_num(f[3].s, f[3].len, PUSH_SHEET_VOTES_MAX, &v) < 0) {
        out->reason = "votes must be a number from 0 to 2147483647";
        return PUSH_SHEET_MALFORMED;
    }
    out->votes = (uint32_t)v;
    memcpy(out->table_id, f[0].s, f[0].len);
    out->table_id[f[0].len] = '\0';
    return PUSH_SHEET_ROW;
}

void push_sheet_set_init(struct push_sheet_set *s)
{
    memset(s, 0, sizeof(*s));
}

void push_sheet_set_cleanup(struct push_sheet_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->sheets[i].projects);
        free(s->sheets[i].votes);
    }
    free(s->sheets);
    free(s->slots);
    memset(s, 0, sizeof(*s));
}

static uint64_t key_hash(const char *id, uint32_t version)
{
    uint64_t h = 1469598103934665603ull ^ version; /* FNV-1a */
    for (const char *p = id; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    return h ^ (h >> 29);
}

/* The slot holding (id, version), or the empty slot where it goes. */
static size_t slot_find(const struct push_sheet_set *s, const char *id, uint32_t version)
{
    size_t mask = s->n_slots - 1, i = (size_t)key_hash(id, version) & mask;
    for (;; i = (i + 1) & mask) {
        uint32_t k = s->slots[i];
        if (k == 0)
            return i;
        const struct push_sheet *sh = &s->sheets[k - 1];
        if (sh->version == version && strcmp(sh->table_id, id) == 0)
            return i;
    }
}

static void slots_grow(struct push_sheet_set *s)
{
    size_t old_n = s->n_slots;
    uint32_t *old = s->slots;
    s->n_slots = old_n ? old_n * 2 : 256;
    s->slots = xcalloc(s->n_slots, sizeof(*s->slots));
    for (size_t i = 0; i < old_n; i++)
        if (old[i]) {
            const struct push_sheet *sh = &s->sheets[old[i] - 1];
            s->slots[slot_find(s, sh->table_id, sh->version)] = old[i];
        }
    free(old);
}

int push_sheet_set_add(struct push_sheet_set *s, const struct push_sheet_line *l, uint64_t line,
                       char *err, size_t err_len)
{
    if ((s->n + 1) * 2 > s->n_slots)
        slots_grow(s);
    size_t slot = slot_find(s, l->table_id, l->version);
    if (!s->slots[slot]) {
        if (s->n == UINT32_MAX - 1) {
            snprintf(err, err_len, "too many sheets");
            return -1;
        }
        if (s->n == s->cap) {
            s->cap = s->cap ? s->cap * 2 : 64;
            s->sheets = xreallocarray(s->sheets, s->cap, sizeof(*s->sheets));
        }
        struct push_sheet *sh = &s->sheets[s->n];
        memset(sh, 0, sizeof(*sh));
        memcpy(sh->table_id, l->table_id, sizeof(sh->table_id));
        sh->version = l->version;
        sh->line = line;
        s->slots[slot] = (uint32_t)++s->n;
    }
    struct push_sheet *sh = &s->sheets[s->slots[slot] - 1];
    switch (l->kind) {
    case PUSH_SHEET_BLANK_ROW:
    case PUSH_SHEET_NULL_ROW: {
        bool is_blank = l->kind == PUSH_SHEET_BLANK_ROW;
        uint64_t *at = is_blank ? &sh->blank_line : &sh->null_line;
        if (*at) {
            snprintf(err, err_len,
                     "%s given twice for sheet %s version %" PRIu32 " (first on line %" PRIu64 ")",
                     is_blank ? "blank" : "null", sh->table_id, sh->version, *at);
            return -1;
        }
        *at = line;
        *(is_blank ? &sh->blank : &sh->null_ballots) = l->votes;
        return 0;
    }
    case PUSH_SHEET_PROJECT:
        break;
    }
    if (sh->n == sh->cap) {
        sh->cap = sh->cap ? sh->cap * 2 : 8;
        sh->projects = xreallocarray(sh->projects, sh->cap, sizeof(*sh->projects));
        sh->votes = xreallocarray(sh->votes, sh->cap, sizeof(*sh->votes));
    }
    sh->projects[sh->n] = l->project;
    sh->votes[sh->n] = l->votes;
    sh->n++;
    s->rows++;
    return 0;
}

size_t push_sheet_set_pack(const struct push_sheet_set *s, size_t first, uint32_t max_rows)
{
    size_t k = 0;
    uint64_t rows = 0;
    while (first + k < s->n && k < PUSH_SHEETS_PER_BATCH) {
        uint64_t r = s->sheets[first + k].n;
        if (k > 0 && rows + r > max_rows)
            break;
        rows += r;
        k++;
    }
    return k;
}

size_t push_sheet_set_widest(const struct push_sheet_set *s)
{
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < s->n; i++)
        if (best == SIZE_MAX || s->sheets[i].n > s->sheets[best].n)
            best = i;
    return best;
}

void push_sheet_cursor_encode(uint64_t sheets_done, const uint8_t hash[PUSH_FILE_HASH_BYTES],
                              uint8_t out[PUSH_SHEET_CURSOR_BYTES])
{
    le32_put(out, SHEET_CURSOR_MAGIC);
    le32_put(out + 4, 0);
    le64_put(out + 8, sheets_done);
    memcpy(out + 16, hash, PUSH_FILE_HASH_BYTES);
}

int push_sheet_cursor_decode(const uint8_t *buf, size_t len, uint64_t *sheets_done,
                             uint8_t hash[PUSH_FILE_HASH_BYTES])
{
    if (len != PUSH_SHEET_CURSOR_BYTES || le32_get(buf) != SHEET_CURSOR_MAGIC ||
        le32_get(buf + 4) != 0)
        return -1;
    *sheets_done = le64_get(buf + 8);
    memcpy(hash, buf + 16, PUSH_FILE_HASH_BYTES);
    return 0;
}

int push_summary_sheets_append(char *buf, size_t len, uint64_t sheets, uint64_t accepted,
                               uint64_t duplicate, uint64_t rejected, const uint64_t reasons[10])
{
    size_t at = strnlen(buf, len);
    int n =
        snprintf(buf + at, len - at,
                 " sheets %" PRIu64 " accepted %" PRIu64 " duplicate %" PRIu64 " rejected %" PRIu64,
                 sheets, accepted, duplicate, rejected);
    size_t total = at + (size_t)(n > 0 ? n : 0);
    for (unsigned k = 1; k < TALLY_CLIENT_REASONS; k++) {
        if (!reasons[k])
            continue;
        size_t off = total < len ? total : len - 1;
        n = snprintf(buf + off, len - off, " %s %" PRIu64, tally_client_reason_name(k), reasons[k]);
        total += (size_t)(n > 0 ? n : 0);
    }
    return (int)total;
}
