/* Registry CSV reader: RFC 4180 records (quotes, "" escapes, embedded commas and newlines,
 * CRLF or LF), split by core/csv.h in its strict mode, plus the registry's own checks (exact
 * header of six columns or seven with min_votes, as many fields in every record, uint32 ids,
 * seats >= 1, UTF-8 names) and the wording of every error, each with the line it happens on.
 * Knows nothing of the database. */
#include "ctl/registry_csv.h"
#include "ctl/csv_common.h"
#include "ctl/text.h"

#include "core/csv.h"
#include "core/xalloc.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define CSV_FAIL (-2)

struct ctl_registry {
    struct csv_reader *csv;
    struct csv_record rec; /* the current record */
    bool header_done;
    bool failed;
    size_t n_fields; /* the header's: CTL_REGISTRY_FIELDS or CTL_REGISTRY_MAX_FIELDS */

    uint64_t err_line;
    char err[320];
    size_t err_reason; /* offset of the reason in err, past "line N: " */
};

static const struct csv_options csv_opts = {
    .flags = CSV_STRICT | CSV_MULTILINE,
    .max_record = CTL_REGISTRY_MAX_RECORD,
    .max_fields = CTL_REGISTRY_MAX_FIELDS + 1,
};

struct ctl_registry *ctl_registry_new_file(FILE *f)
{
    struct ctl_registry *r = xcalloc(1, sizeof(*r));
    r->csv = csv_reader_new_file(f, &csv_opts);
    return r;
}

struct ctl_registry *ctl_registry_new_buffer(const char *buf, size_t len)
{
    struct ctl_registry *r = xcalloc(1, sizeof(*r));
    r->csv = csv_reader_new_buffer(buf, len, &csv_opts);
    return r;
}

void ctl_registry_free(struct ctl_registry *r)
{
    if (!r)
        return;
    csv_reader_free(r->csv);
    free(r);
}

const char *ctl_registry_error(const struct ctl_registry *r)
{
    return r->err[0] ? r->err : "no error";
}

const char *ctl_registry_error_reason(const struct ctl_registry *r)
{
    return r->err[0] ? r->err + r->err_reason : "no error";
}

uint64_t ctl_registry_error_line(const struct ctl_registry *r)
{
    return r->err_line;
}

static int csv_fail(struct ctl_registry *r, uint64_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int csv_fail(struct ctl_registry *r, uint64_t line, const char *fmt, ...)
{
    r->failed = true;
    r->err_line = line;
    int n = snprintf(r->err, sizeof(r->err), "line %" PRIu64 ": ", line);
    r->err_reason = n > 0 && (size_t)n < sizeof(r->err) ? (size_t)n : 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err + r->err_reason, sizeof(r->err) - r->err_reason, fmt, ap);
    va_end(ap);
    return CSV_FAIL;
}

/* Splits the next record into fields. Returns 1, 0 at end of input, or CSV_FAIL. */
static int csv_record(struct ctl_registry *r)
{
    int got = csv_reader_next(r->csv, &r->rec);
    if (got < 0) {
        const struct csv_error *e = csv_reader_error(r->csv);
        char why[200];
        ctl_csv_syntax_reason(e, CTL_REGISTRY_MAX_RECORD, why, sizeof(why));
        return csv_fail(r, e->line, "%s", why);
    }
    return got;
}

static const char *csv_field(const struct ctl_registry *r, size_t i)
{
    return r->rec.fields[i].s;
}

static const char *const csv_names[CTL_REGISTRY_MAX_FIELDS] = {
    "project_id", "project_name", "circuit_id", "circuit_name", "state", "seats", "min_votes"};

static int csv_header(struct ctl_registry *r)
{
    int got = csv_record(r);
    if (got == CSV_FAIL)
        return CSV_FAIL;
    if (got == 0)
        return csv_fail(r, 1, "empty file: expected the header " CTL_REGISTRY_HEADER);
    size_t n = r->rec.n_fields;
    bool ok = n == CTL_REGISTRY_FIELDS || n == CTL_REGISTRY_MAX_FIELDS;
    for (size_t i = 0; ok && i < n; i++) {
        const char *f = csv_field(r, i);
        if (i == 0 && memcmp(f, "\xef\xbb\xbf", 3) == 0)
            f += 3; /* byte order mark written by some spreadsheets */
        ok = strcmp(f, csv_names[i]) == 0;
    }
    if (!ok)
        return csv_fail(r, r->rec.line,
                        "the header must be exactly " CTL_REGISTRY_HEADER
                        " (or " CTL_REGISTRY_HEADER_MIN_VOTES ")");
    r->n_fields = n;
    r->header_done = true;
    return 0;
}

int ctl_registry_next(struct ctl_registry *r, struct ctl_registry_record *rec)
{
    if (r->failed)
        return -1;
    if (!r->header_done && csv_header(r) < 0)
        return -1;
    int got;
    /* Empty lines (one empty unquoted field) are skipped. */
    do {
        got = csv_record(r);
    } while (got == 1 && r->rec.n_fields == 1 && !r->rec.fields[0].quoted &&
             r->rec.fields[0].len == 0);
    if (got == CSV_FAIL)
        return -1;
    if (got == 0)
        return 0;

    uint64_t line = r->rec.line;
    if (r->rec.n_fields != r->n_fields) {
        csv_fail(r, line, "expected %zu fields, found %zu", r->n_fields, r->rec.n_fields);
        return -1;
    }
    for (size_t i = 0; i < r->n_fields; i++) {
        const char *f = csv_field(r, i);
        if (!*f) {
            csv_fail(r, line, "%s is empty", csv_names[i]);
            return -1;
        }
        if (!ctl_utf8_is_valid(f, strlen(f))) {
            csv_fail(r, line, "%s is not valid UTF-8", csv_names[i]);
            return -1;
        }
    }
    /* project_id, circuit_id, seats and (when the header has it) min_votes. */
    uint64_t v[4] = {0, 0, 0, 0};
    const size_t num_idx[4] = {0, 2, 5, 6};
    const uint64_t num_max[4] = {UINT32_MAX, UINT32_MAX, INT32_MAX, INT32_MAX};
    const uint64_t num_min[4] = {0, 0, 1, 0};
    for (size_t k = 0; k < 4 && num_idx[k] < r->n_fields; k++) {
        const char *f = csv_field(r, num_idx[k]);
        if (ctl_csv_uint(f, num_max[k], &v[k]) < 0 || v[k] < num_min[k]) {
            csv_fail(r, line, "%s \"%.40s\" is not an integer from %" PRIu64 " to %" PRIu64,
                     csv_names[num_idx[k]], f, num_min[k], num_max[k]);
            return -1;
        }
    }
    rec->line = line;
    rec->project_id = (uint32_t)v[0];
    rec->project_name = csv_field(r, 1);
    rec->circuit_id = (uint32_t)v[1];
    rec->circuit_name = csv_field(r, 3);
    rec->state = csv_field(r, 4);
    rec->seats = (uint32_t)v[2];
    rec->min_votes = (uint32_t)v[3];
    return 1;
}
