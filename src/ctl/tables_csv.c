/* Voting-table CSV reader: RFC 4180 records split by core/csv.h in its strict, multi-line
 * mode (as the registry's), plus the tables' own checks (exact header, three fields, table
 * ids of the collector id syntax, uint32 circuit ids, electors 0 .. 2^31-1) and the wording
 * of every error with its line. Knows nothing of the database: an unknown circuit is the
 * store's finding. */
#include "ctl/tables_csv.h"
#include "ctl/csv_common.h"
#include "ctl/text.h"

#include "core/csv.h"
#include "core/xalloc.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct ctl_tables {
    struct csv_reader *csv;
    struct csv_record rec; /* the current record */
    bool header_done;
    bool failed;

    uint64_t err_line;
    char err[320];
    size_t err_reason; /* offset of the reason in err, past "line N: " */
};

static const struct csv_options tables_opts = {
    .flags = CSV_STRICT | CSV_MULTILINE,
    .max_record = CTL_TABLES_MAX_RECORD,
    .max_fields = CTL_TABLES_FIELDS + 1,
};

static const char *const tables_names[CTL_TABLES_FIELDS] = {"table_id", "circuit_id", "electors"};

struct ctl_tables *ctl_tables_new_file(FILE *f)
{
    struct ctl_tables *t = xcalloc(1, sizeof(*t));
    t->csv = csv_reader_new_file(f, &tables_opts);
    return t;
}

struct ctl_tables *ctl_tables_new_buffer(const char *buf, size_t len)
{
    struct ctl_tables *t = xcalloc(1, sizeof(*t));
    t->csv = csv_reader_new_buffer(buf, len, &tables_opts);
    return t;
}

void ctl_tables_free(struct ctl_tables *t)
{
    if (!t)
        return;
    csv_reader_free(t->csv);
    free(t);
}

const char *ctl_tables_error(const struct ctl_tables *t)
{
    return t->err[0] ? t->err : "no error";
}

const char *ctl_tables_error_reason(const struct ctl_tables *t)
{
    return t->err[0] ? t->err + t->err_reason : "no error";
}

uint64_t ctl_tables_error_line(const struct ctl_tables *t)
{
    return t->err_line;
}

static int tables_fail(struct ctl_tables *t, uint64_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records the first error (sticky) and returns -1. */
static int tables_fail(struct ctl_tables *t, uint64_t line, const char *fmt, ...)
{
    t->failed = true;
    t->err_line = line;
    int n = snprintf(t->err, sizeof(t->err), "line %" PRIu64 ": ", line);
    t->err_reason = n > 0 && (size_t)n < sizeof(t->err) ? (size_t)n : 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->err + t->err_reason, sizeof(t->err) - t->err_reason, fmt, ap);
    va_end(ap);
    return -1;
}

/* The next record, empty lines skipped when skip_empty. Returns 1, 0 at the end, or -1. */
static int tables_record(struct ctl_tables *t, bool skip_empty)
{
    int got;
    do {
        got = csv_reader_next(t->csv, &t->rec);
    } while (skip_empty && got == 1 && t->rec.n_fields == 1 && !t->rec.fields[0].quoted &&
             t->rec.fields[0].len == 0);
    if (got < 0) {
        const struct csv_error *e = csv_reader_error(t->csv);
        char why[200];
        ctl_csv_syntax_reason(e, CTL_TABLES_MAX_RECORD, why, sizeof(why));
        return tables_fail(t, e->line, "%s", why);
    }
    return got;
}

static int tables_header(struct ctl_tables *t)
{
    int got = tables_record(t, false);
    if (got < 0)
        return -1;
    if (got == 0)
        return tables_fail(t, 1, "empty file: expected the header " CTL_TABLES_HEADER);
    bool ok = t->rec.n_fields == CTL_TABLES_FIELDS;
    for (size_t i = 0; ok && i < CTL_TABLES_FIELDS; i++) {
        const char *f = t->rec.fields[i].s;
        if (i == 0 && memcmp(f, "\xef\xbb\xbf", 3) == 0)
            f += 3; /* byte order mark written by some spreadsheets */
        ok = strcmp(f, tables_names[i]) == 0;
    }
    if (!ok)
        return tables_fail(t, t->rec.line, "the header must be exactly " CTL_TABLES_HEADER);
    t->header_done = true;
    return 0;
}

/* s shown in a message: at most 40 bytes, anything but printable ASCII as '?' (an id is
 * ASCII; anything else is what made it wrong, and may not be printable). */
static void tables_show(const char *s, char out[44])
{
    size_t i = 0;
    for (; s[i] && i < 40; i++)
        out[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    if (s[i]) {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
}

int ctl_tables_next(struct ctl_tables *t, struct ctl_tables_record *rec)
{
    if (t->failed)
        return -1;
    if (!t->header_done && tables_header(t) < 0)
        return -1;
    int got = tables_record(t, true);
    if (got <= 0)
        return got;

    uint64_t line = t->rec.line;
    if (t->rec.n_fields != CTL_TABLES_FIELDS)
        return tables_fail(t, line, "expected %d fields, found %zu", CTL_TABLES_FIELDS,
                           t->rec.n_fields);
    for (size_t i = 0; i < CTL_TABLES_FIELDS; i++)
        if (!t->rec.fields[i].s[0])
            return tables_fail(t, line, "%s is empty", tables_names[i]);
    char shown[44];
    const char *id = t->rec.fields[0].s;
    if (!ctl_collector_id_is_valid(id)) {
        tables_show(id, shown);
        return tables_fail(t, line, "table_id \"%s\" is not 1 to 63 of A-Z a-z 0-9 . _ -", shown);
    }
    uint64_t v[2];
    const uint64_t max[2] = {UINT32_MAX, INT32_MAX};
    for (size_t k = 0; k < 2; k++) {
        const char *f = t->rec.fields[k + 1].s;
        if (ctl_csv_uint(f, max[k], &v[k]) < 0) {
            tables_show(f, shown);
            return tables_fail(t, line, "%s \"%s\" is not an integer from 0 to %" PRIu64,
                               tables_names[k + 1], shown, max[k]);
        }
    }
    rec->line = line;
    rec->table_id = id;
    rec->circuit_id = (uint32_t)v[0];
    rec->electors = (uint32_t)v[1];
    return 1;
}
