/* Registry CSV reader: RFC 4180 records (quotes, "" escapes, embedded commas and newlines,
 * CRLF or LF), split by core/csv.h in its strict mode, plus the registry's own checks (exact
 * header, six fields, uint32 ids, seats >= 1, UTF-8 names) and the wording of every error,
 * each with the line it happens on. Knows nothing of the database. */
#include "ctl/registry_csv.h"
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

    uint64_t err_line;
    char err[320];
    size_t err_reason; /* offset of the reason in err, past "line N: " */
};

static const struct csv_options csv_opts = {
    .flags = CSV_STRICT | CSV_MULTILINE,
    .max_record = CTL_REGISTRY_MAX_RECORD,
    .max_fields = CTL_REGISTRY_FIELDS + 1,
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

/* The splitter's error in the registry's words. */
static int csv_syntax_fail(struct ctl_registry *r)
{
    const struct csv_error *e = csv_reader_error(r->csv);
    switch (e->code) {
    case CSV_ERR_UNTERMINATED:
        return csv_fail(r, e->line, "unterminated quoted field (quote opened here)");
    case CSV_ERR_AFTER_QUOTE:
        return csv_fail(r, e->line, "unexpected character after closing quote in field %zu",
                        e->field);
    case CSV_ERR_BARE_QUOTE:
        return csv_fail(r, e->line,
                        "quote inside unquoted field %zu (quote the whole field and double "
                        "the quote)",
                        e->field);
    case CSV_ERR_LONE_CR:
        return csv_fail(r, e->line, "carriage return not followed by a line feed");
    case CSV_ERR_NUL:
        return csv_fail(r, e->line, "NUL byte in field %zu", e->field);
    case CSV_ERR_TOO_LONG:
        if (e->in_quote)
            return csv_fail(r, e->line,
                            "record longer than %u bytes (unterminated quote on this line?)",
                            CTL_REGISTRY_MAX_RECORD);
        return csv_fail(r, e->line, "record longer than %u bytes", CTL_REGISTRY_MAX_RECORD);
    case CSV_ERR_READ:
        return csv_fail(r, e->line, "read error: %s", strerror(e->sys));
    case CSV_ERR_NONE:
        break;
    }
    return csv_fail(r, e->line, "malformed record");
}

/* Splits the next record into fields. Returns 1, 0 at end of input, or CSV_FAIL. */
static int csv_record(struct ctl_registry *r)
{
    int got = csv_reader_next(r->csv, &r->rec);
    if (got < 0)
        return csv_syntax_fail(r);
    return got;
}

static const char *csv_field(const struct ctl_registry *r, size_t i)
{
    return r->rec.fields[i].s;
}

static const char *const csv_names[CTL_REGISTRY_FIELDS] = {
    "project_id", "project_name", "circuit_id", "circuit_name", "state", "seats"};

static int csv_header(struct ctl_registry *r)
{
    int got = csv_record(r);
    if (got == CSV_FAIL)
        return CSV_FAIL;
    if (got == 0)
        return csv_fail(r, 1, "empty file: expected the header " CTL_REGISTRY_HEADER);
    bool ok = r->rec.n_fields == CTL_REGISTRY_FIELDS;
    for (size_t i = 0; ok && i < CTL_REGISTRY_FIELDS; i++) {
        const char *f = csv_field(r, i);
        if (i == 0 && memcmp(f, "\xef\xbb\xbf", 3) == 0)
            f += 3; /* byte order mark written by some spreadsheets */
        ok = strcmp(f, csv_names[i]) == 0;
    }
    if (!ok)
        return csv_fail(r, r->rec.line, "the header must be exactly " CTL_REGISTRY_HEADER);
    r->header_done = true;
    return 0;
}

/* Parses a plain unsigned decimal (digits only) no greater than max. */
static int csv_uint(const char *s, uint64_t max, uint64_t *out)
{
    if (!*s)
        return -1;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > max)
            return -1;
    }
    *out = v;
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
    if (r->rec.n_fields != CTL_REGISTRY_FIELDS) {
        csv_fail(r, line, "expected %d fields, found %zu", CTL_REGISTRY_FIELDS, r->rec.n_fields);
        return -1;
    }
    for (size_t i = 0; i < CTL_REGISTRY_FIELDS; i++) {
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
    uint64_t v[3];
    const size_t num_idx[3] = {0, 2, 5};
    const uint64_t num_max[3] = {UINT32_MAX, UINT32_MAX, INT32_MAX};
    for (int k = 0; k < 3; k++) {
        const char *f = csv_field(r, num_idx[k]);
        if (csv_uint(f, num_max[k], &v[k]) < 0 || (k == 2 && v[k] < 1)) {
            csv_fail(r, line, "%s \"%.40s\" is not an integer from %d to %" PRIu64,
                     csv_names[num_idx[k]], f, k == 2 ? 1 : 0, num_max[k]);
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
    return 1;
}
