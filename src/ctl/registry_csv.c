/* Registry CSV reader: an RFC 4180 record splitter (quotes, "" escapes, embedded commas
 * and newlines, CRLF or LF) over a FILE * or a buffer, plus the registry's own checks
 * (exact header, six fields, uint32 ids, seats >= 1, UTF-8 names). Reports errors with
 * the line they happen on. Knows nothing of the database. */
#include "ctl/registry_csv.h"
#include "ctl/text.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define CSV_IO_SIZE 65536
#define CSV_EOF (-1)
#define CSV_FAIL (-2)

struct ctl_registry {
    FILE *f; /* NULL when reading a buffer */
    const unsigned char *buf;
    size_t len, pos;
    unsigned char *io; /* file mode: read buffer */

    uint64_t line;     /* line of the next unread byte */
    uint64_t rec_line; /* line the current record started on */
    bool header_done;
    bool failed;

    char *rec; /* the current record's fields, each NUL-terminated */
    size_t rec_len, rec_cap;
    size_t field_off[CTL_REGISTRY_FIELDS + 1];
    size_t n_fields;
    bool any_quoted;

    uint64_t err_line;
    char err[320];
    size_t err_reason; /* offset of the reason in err, past "line N: " */
};

static struct ctl_registry *csv_new(void)
{
    struct ctl_registry *r = calloc(1, sizeof(*r));
    if (!r)
        abort();
    r->line = 1;
    r->rec_cap = 256;
    r->rec = malloc(r->rec_cap);
    if (!r->rec)
        abort();
    return r;
}

struct ctl_registry *ctl_registry_new_file(FILE *f)
{
    struct ctl_registry *r = csv_new();
    r->f = f;
    r->io = malloc(CSV_IO_SIZE);
    if (!r->io)
        abort();
    r->buf = r->io;
    return r;
}

struct ctl_registry *ctl_registry_new_buffer(const char *buf, size_t len)
{
    struct ctl_registry *r = csv_new();
    r->buf = (const unsigned char *)buf;
    r->len = len;
    return r;
}

void ctl_registry_free(struct ctl_registry *r)
{
    if (!r)
        return;
    free(r->io);
    free(r->rec);
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

/* Returns the next byte without consuming it, CSV_EOF, or CSV_FAIL on a read error. */
static int csv_peek(struct ctl_registry *r)
{
    if (r->pos < r->len)
        return r->buf[r->pos];
    if (!r->f)
        return CSV_EOF;
    r->len = fread(r->io, 1, CSV_IO_SIZE, r->f);
    r->pos = 0;
    if (r->len == 0) {
        if (ferror(r->f))
            return csv_fail(r, r->line, "read error: %s", strerror(errno));
        return CSV_EOF;
    }
    return r->buf[0];
}

static int csv_get(struct ctl_registry *r)
{
    int c = csv_peek(r);
    if (c >= 0)
        r->pos++;
    return c;
}

static int csv_put(struct ctl_registry *r, int c, uint64_t quote_line)
{
    if (r->rec_len + 1 >= CTL_REGISTRY_MAX_RECORD) {
        if (quote_line)
            return csv_fail(r, quote_line,
                            "record longer than %u bytes (unterminated quote on this line?)",
                            CTL_REGISTRY_MAX_RECORD);
        return csv_fail(r, r->rec_line, "record longer than %u bytes", CTL_REGISTRY_MAX_RECORD);
    }
    if (c == 0)
        return csv_fail(r, r->line, "NUL byte in field %zu", r->n_fields + 1);
    if (r->rec_len + 1 >= r->rec_cap) {
        r->rec_cap *= 2;
        char *p = realloc(r->rec, r->rec_cap);
        if (!p)
            abort();
        r->rec = p;
    }
    r->rec[r->rec_len++] = (char)c;
    return 0;
}

static void csv_field_begin(struct ctl_registry *r)
{
    if (r->n_fields < CTL_REGISTRY_FIELDS + 1)
        r->field_off[r->n_fields] = r->rec_len;
}

static int csv_field_end(struct ctl_registry *r)
{
    /* The terminating NUL does not count against the limit check in csv_put. */
    if (r->rec_len + 1 >= r->rec_cap) {
        r->rec_cap *= 2;
        char *p = realloc(r->rec, r->rec_cap);
        if (!p)
            abort();
        r->rec = p;
    }
    r->rec[r->rec_len++] = '\0';
    r->n_fields++;
    return 0;
}

/* After a field, c is its terminator: ',' (more fields), '\n', "\r\n" or EOF (end of
 * record). Returns 1 for more fields, 0 for the end of the record, CSV_FAIL otherwise. */
static int csv_after_field(struct ctl_registry *r, int c)
{
    if (c == ',')
        return 1;
    if (c == '\r') {
        if (csv_peek(r) != '\n')
            return csv_fail(r, r->line, "carriage return not followed by a line feed");
        csv_get(r);
        c = '\n';
    }
    if (c == '\n') {
        r->line++;
        return 0;
    }
    if (c == CSV_EOF)
        return 0;
    return CSV_FAIL;
}

/* Splits the next record into fields. Returns 1, 0 at end of input, or CSV_FAIL. */
static int csv_record(struct ctl_registry *r)
{
    r->rec_len = 0;
    r->n_fields = 0;
    r->any_quoted = false;
    r->rec_line = r->line;
    int c = csv_peek(r);
    if (c == CSV_EOF)
        return 0;
    if (c == CSV_FAIL)
        return CSV_FAIL;
    for (;;) {
        csv_field_begin(r);
        c = csv_get(r);
        if (c == CSV_FAIL)
            return CSV_FAIL;
        if (c == '"') {
            uint64_t qline = r->line;
            r->any_quoted = true;
            for (;;) {
                c = csv_get(r);
                if (c == CSV_FAIL)
                    return CSV_FAIL;
                if (c == CSV_EOF)
                    return csv_fail(r, qline, "unterminated quoted field (quote opened here)");
                if (c == '"') {
                    if (csv_peek(r) != '"')
                        break;
                    csv_get(r);
                }
                if (c == '\n')
                    r->line++;
                if (csv_put(r, c, qline) < 0)
                    return CSV_FAIL;
            }
            c = csv_get(r);
            if (c == CSV_FAIL)
                return CSV_FAIL;
            if (c != ',' && c != '\r' && c != '\n' && c != CSV_EOF)
                return csv_fail(r, r->line, "unexpected character after closing quote in field %zu",
                                r->n_fields + 1);
        } else {
            while (c != ',' && c != '\r' && c != '\n' && c != CSV_EOF) {
                if (c == CSV_FAIL)
                    return CSV_FAIL;
                if (c == '"')
                    return csv_fail(r, r->line,
                                    "quote inside unquoted field %zu (quote the whole field "
                                    "and double the quote)",
                                    r->n_fields + 1);
                if (csv_put(r, c, 0) < 0)
                    return CSV_FAIL;
                c = csv_get(r);
            }
        }
        csv_field_end(r);
        int more = csv_after_field(r, c);
        if (more < 0)
            return CSV_FAIL;
        if (!more)
            return 1;
    }
}

static const char *csv_field(const struct ctl_registry *r, size_t i)
{
    return r->rec + r->field_off[i];
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
    bool ok = r->n_fields == CTL_REGISTRY_FIELDS;
    for (size_t i = 0; ok && i < CTL_REGISTRY_FIELDS; i++) {
        const char *f = csv_field(r, i);
        if (i == 0 && memcmp(f, "\xef\xbb\xbf", 3) == 0)
            f += 3; /* byte order mark written by some spreadsheets */
        ok = strcmp(f, csv_names[i]) == 0;
    }
    if (!ok)
        return csv_fail(r, r->rec_line, "the header must be exactly " CTL_REGISTRY_HEADER);
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
    } while (got == 1 && r->n_fields == 1 && !r->any_quoted && r->rec[0] == '\0');
    if (got == CSV_FAIL)
        return -1;
    if (got == 0)
        return 0;

    uint64_t line = r->rec_line;
    if (r->n_fields != CTL_REGISTRY_FIELDS) {
        csv_fail(r, line, "expected %d fields, found %zu", CTL_REGISTRY_FIELDS, r->n_fields);
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
