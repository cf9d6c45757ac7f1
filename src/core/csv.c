/* CSV input: a buffered line reader over a FILE *, a descriptor or memory, and one field
 * splitter (quoting, line endings, CSV_STRICT's checks, the record limit) that single lines
 * and multi-line records share. Owns no wording: errors are codes with a line and a field. */
#include "core/csv.h"

#include "core/xalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CSV_IO_SIZE 65536

/* ---- the splitter ---------------------------------------------------------------------- */

enum { SPLIT_FAIL = -1, SPLIT_DONE = 0, SPLIT_MORE = 1 };

/* One record being split. Offsets are from buf, the record's first byte; the reader may
 * move the record between lines (fields[] are then moved with it), never within one. */
struct split {
    char *buf;
    size_t rd;          /* next byte to read */
    size_t content_end; /* the current line without its line ending */
    size_t line_end;    /* and with it */
    bool truncated;     /* the line goes on past line_end: the reader's limit was reached */
    unsigned flags;
    size_t max;   /* max_record, 0 for none */
    size_t total; /* unquoted bytes + one per finished field, as max counts them */
    struct csv_field *fields;
    size_t cap;
    size_t n;  /* finished fields */
    bool open; /* a quoted field runs on into the next line */
    size_t w;  /* where the open field's unquoted text goes on */
    size_t start;
    uint64_t line; /* of the current line */
    uint64_t rec_line, quote_line;
    struct csv_error *err;
};

static int split_fail(struct split *s, enum csv_error_code code, uint64_t line)
{
    *s->err = (struct csv_error){.code = code, .line = line, .field = s->n + 1};
    return SPLIT_FAIL;
}

static int split_too_long(struct split *s, bool in_quote)
{
    split_fail(s, CSV_ERR_TOO_LONG, in_quote ? s->quote_line : s->rec_line);
    s->err->in_quote = in_quote;
    return SPLIT_FAIL;
}

/* Sets the line that runs from s->rd to line_end, and where its content ends: before "\n"
 * or "\r\n", and without CSV_STRICT also before a lone "\r" at the very end. */
static void split_line_set(struct split *s, size_t line_end)
{
    size_t e = line_end;
    bool lf = e > s->rd && s->buf[e - 1] == '\n';
    if (lf)
        e--;
    if (e > s->rd && s->buf[e - 1] == '\r' && (lf || !(s->flags & CSV_STRICT)))
        e--;
    s->line_end = line_end;
    s->content_end = e;
}

/* One content byte, checked as CSV_STRICT and max require (the limit first, as it would
 * have been hit before the byte was looked at). */
static int split_put(struct split *s, char c, size_t *w, bool in_quote)
{
    if (s->max && s->total + 1 >= s->max)
        return split_too_long(s, in_quote);
    if (c == '\0' && (s->flags & CSV_STRICT))
        return split_fail(s, CSV_ERR_NUL, s->line);
    s->total++;
    s->buf[(*w)++] = c;
    return 0;
}

/* The end of a field counts against max too: else a record of empty fields (",,,,") would
 * have no bound. Only a total that has already reached max fails here, so every record
 * whose last content byte fitted still fits. */
static int split_field_done(struct split *s, size_t start, size_t len, bool quoted)
{
    if (s->max && s->total >= s->max)
        return split_too_long(s, false);
    if (s->n < s->cap)
        s->fields[s->n] = (struct csv_field){s->buf + start, len, quoted};
    s->n++;
    s->total++;
    return 0;
}

/* An unquoted field from s->rd to the next ',' (or '\r' under CSV_STRICT, which ends it
 * for the caller to judge) or the content end. */
static int split_unquoted(struct split *s)
{
    size_t start = s->rd;
    if (!s->max && !(s->flags & CSV_STRICT)) {
        /* tally-push's hot path: nothing to check but where the field ends. */
        char *comma = memchr(s->buf + s->rd, ',', s->content_end - s->rd);
        s->rd = comma ? (size_t)(comma - s->buf) : s->content_end;
        s->total += s->rd - start;
    } else {
        size_t w = s->rd;
        for (; s->rd < s->content_end; s->rd++) {
            char c = s->buf[s->rd];
            if (c == ',')
                break;
            if (s->flags & CSV_STRICT) {
                if (c == '"')
                    return split_fail(s, CSV_ERR_BARE_QUOTE, s->line);
                if (c == '\r')
                    break;
            }
            if (split_put(s, c, &w, false) < 0)
                return SPLIT_FAIL;
        }
    }
    return split_field_done(s, start, s->rd - start, false);
}

/* The rest of a quoted field, its opening quote already read: to the closing quote
 * (SPLIT_DONE, s->rd past it), to the end of the line with CSV_MULTILINE (SPLIT_MORE, the
 * field stays open), or a failure. */
static int split_quoted(struct split *s)
{
    bool multi = s->flags & CSV_MULTILINE;
    size_t end = multi ? s->line_end : s->content_end;
    bool checked = s->max || (s->flags & CSV_STRICT);
    for (;;) {
        if (!checked) {
            /* Copy the run up to the next quote in one go. */
            char *q = memchr(s->buf + s->rd, '"', end - s->rd);
            size_t stop = q ? (size_t)(q - s->buf) : end;
            memmove(s->buf + s->w, s->buf + s->rd, stop - s->rd);
            s->w += stop - s->rd;
            s->total += stop - s->rd;
            s->rd = stop;
        }
        if (s->rd == end) {
            if (s->truncated)
                return split_too_long(s, true);
            if (multi) {
                s->open = true;
                return SPLIT_MORE;
            }
            return split_fail(s, CSV_ERR_UNTERMINATED, s->quote_line);
        }
        char c = s->buf[s->rd];
        if (c == '"') {
            if (s->rd + 1 == end && s->truncated)
                return split_too_long(s, true); /* "" or the end: cannot tell yet */
            if (s->rd + 1 == end || s->buf[s->rd + 1] != '"') {
                s->rd++;
                return split_field_done(s, s->start, s->w - s->start, true);
            }
            s->rd++; /* the first of "" */
        }
        s->rd++;
        if (!checked) {
            s->buf[s->w++] = c;
            s->total++;
        } else if (split_put(s, c, &s->w, true) < 0) {
            return SPLIT_FAIL;
        }
    }
}

/* Splits from s->rd (or from inside the open quoted field) to the end of the record or of
 * the current line. */
static int split_run(struct split *s)
{
    for (;;) {
        bool quoted = s->open;
        if (s->open) {
            s->open = false;
        } else if (s->rd < s->content_end && s->buf[s->rd] == '"') {
            quoted = true;
            s->start = s->w = s->rd;
            s->quote_line = s->line;
            s->rd++;
        }
        int rc = quoted ? split_quoted(s) : split_unquoted(s);
        if (rc != SPLIT_DONE)
            return rc;
        if (s->rd == s->content_end) {
            if (s->truncated)
                return split_too_long(s, false);
            return SPLIT_DONE;
        }
        char c = s->buf[s->rd];
        if (c == ',') {
            s->rd++;
            continue;
        }
        /* Only a '\r' under CSV_STRICT or text after a closing quote stop a field early. */
        s->n--; /* the error is in the field just finished */
        if (c == '\r' && (s->flags & CSV_STRICT))
            return split_fail(s, CSV_ERR_LONE_CR, s->line);
        return split_fail(s, CSV_ERR_AFTER_QUOTE, s->line);
    }
}

int csv_split_line(char *line, size_t len, unsigned flags, struct csv_field *fields, size_t cap,
                   size_t *n, struct csv_error *err)
{
    struct split s = {
        .buf = line,
        .flags = flags & ~(unsigned)CSV_MULTILINE,
        .fields = fields,
        .cap = cap,
        .line = 1,
        .rec_line = 1,
        .err = err,
    };
    *err = (struct csv_error){0};
    split_line_set(&s, len);
    int rc = split_run(&s);
    *n = s.n;
    return rc == SPLIT_DONE ? 0 : -1;
}

/* ---- the reader ------------------------------------------------------------------------ */

enum csv_source { SRC_FILE, SRC_FD, SRC_BUFFER };

struct csv_reader {
    enum csv_source src;
    FILE *f;
    int fd;
    const char *mem;
    size_t mem_len, mem_pos;
    struct csv_options opt;

    char *buf;
    size_t cap, max_cap; /* max_cap 0: grows as far as a line needs */
    size_t mark;         /* first byte kept on a refill: the current record's start */
    size_t pos, end;     /* unread bytes */
    size_t scan;         /* [pos, scan) holds no '\n' */
    bool eof;
    uint64_t line; /* lines handed out */

    struct csv_field *fields;
    struct split split; /* the record being split, its fields in fields[] */
    bool in_record;
    bool failed;
    struct csv_error err;
};

static struct csv_reader *reader_new(enum csv_source src, const struct csv_options *opt)
{
    struct csv_reader *r = xcalloc(1, sizeof(*r));
    r->src = src;
    r->opt = *opt;
    r->cap = CSV_IO_SIZE;
    /* A record stays under max_record unquoted bytes and field ends, so under three raw
     * bytes for each of them (the worst is "",""...): room for that is room enough. */
    if (opt->max_record)
        r->max_cap = 3 * opt->max_record + 64;
    if (r->max_cap && r->cap > r->max_cap)
        r->cap = r->max_cap;
    r->buf = xmalloc(r->cap);
    r->fields = xcalloc(opt->max_fields, sizeof(*r->fields));
    return r;
}

struct csv_reader *csv_reader_new_file(FILE *f, const struct csv_options *opt)
{
    struct csv_reader *r = reader_new(SRC_FILE, opt);
    r->f = f;
    return r;
}

struct csv_reader *csv_reader_new_fd(int fd, const struct csv_options *opt)
{
    struct csv_reader *r = reader_new(SRC_FD, opt);
    r->fd = fd;
    return r;
}

struct csv_reader *csv_reader_new_buffer(const char *buf, size_t len, const struct csv_options *opt)
{
    struct csv_reader *r = reader_new(SRC_BUFFER, opt);
    r->mem = buf;
    r->mem_len = len;
    return r;
}

void csv_reader_free(struct csv_reader *r)
{
    if (!r)
        return;
    free(r->fields);
    free(r->buf);
    free(r);
}

const struct csv_error *csv_reader_error(const struct csv_reader *r)
{
    return &r->err;
}

/* Moves the kept bytes [mark, end) to dst (the front of buf, or a bigger buffer), with the
 * fields of a record being split. */
static void reader_move(struct csv_reader *r, char *dst)
{
    size_t shift = r->mark;
    if (r->in_record) {
        size_t kept = r->split.n < r->opt.max_fields ? r->split.n : r->opt.max_fields;
        for (size_t i = 0; i < kept; i++)
            r->fields[i].s = dst + (r->fields[i].s - (r->buf + shift));
    }
    memmove(dst, r->buf + shift, r->end - shift);
    r->end -= shift;
    r->pos -= shift;
    r->scan -= shift;
    r->mark = 0;
}

/* Reads more bytes after end. Returns 1, 0 at the end of input, -1 on a read error (with
 * r->err), or 2 when the buffer is at max_cap and full. One byte always stays free, for the
 * NUL csv_reader_next puts after a last field. */
static int reader_fill(struct csv_reader *r)
{
    if (r->mark > 0)
        reader_move(r, r->buf);
    if (r->end + 1 >= r->cap) {
        if (r->max_cap && r->cap >= r->max_cap)
            return 2;
        size_t cap = r->cap * 2;
        if (r->max_cap && cap > r->max_cap)
            cap = r->max_cap;
        /* A new buffer rather than realloc: the fields are moved while both exist. */
        char *bigger = xmalloc(cap);
        reader_move(r, bigger);
        free(r->buf);
        r->buf = bigger;
        r->cap = cap;
    }
    size_t room = r->cap - 1 - r->end;
    size_t got = 0;
    switch (r->src) {
    case SRC_FILE:
        got = fread(r->buf + r->end, 1, room, r->f);
        if (got == 0 && ferror(r->f)) {
            r->err = (struct csv_error){.code = CSV_ERR_READ, .line = r->line + 1, .sys = errno};
            return -1;
        }
        break;
    case SRC_FD: {
        ssize_t n = read(r->fd, r->buf + r->end, room);
        if (n < 0) {
            r->err = (struct csv_error){.code = CSV_ERR_READ, .line = r->line + 1, .sys = errno};
            return -1;
        }
        got = (size_t)n;
        break;
    }
    case SRC_BUFFER:
        got = r->mem_len - r->mem_pos < room ? r->mem_len - r->mem_pos : room;
        memcpy(r->buf + r->end, r->mem + r->mem_pos, got);
        r->mem_pos += got;
        break;
    }
    if (got == 0) {
        r->eof = true;
        return 0;
    }
    r->end += got;
    return 1;
}

/* The next line as offsets [*from, *to) into buf; *truncated when it goes on past the
 * buffer's limit (then it is all the buffer holds). Returns 1, 0 at the end, -1. */
static int reader_next_line(struct csv_reader *r, size_t *from, size_t *to, bool *truncated)
{
    *truncated = false;
    for (;;) {
        char *nl = memchr(r->buf + r->scan, '\n', r->end - r->scan);
        if (nl) {
            *to = (size_t)(nl - r->buf) + 1;
            break;
        }
        r->scan = r->end;
        int got = r->eof ? 0 : reader_fill(r);
        if (got == 1)
            continue;
        if (got < 0)
            return -1;
        if (got == 0 && r->pos == r->end)
            return 0;
        *truncated = got == 2;
        *to = r->end;
        break;
    }
    *from = r->pos;
    r->pos = r->scan = *to;
    r->line++;
    return 1;
}

bool csv_reader_has_line(const struct csv_reader *r)
{
    if (r->src != SRC_FD || r->eof || r->failed)
        return true;
    if (memchr(r->buf + r->scan, '\n', r->end - r->scan))
        return true;
    /* A full buffer at its limit hands out what it holds without reading. */
    return r->max_cap && r->cap >= r->max_cap && r->end + 1 >= r->cap;
}

int csv_reader_line(struct csv_reader *r, char **line, size_t *len)
{
    size_t from, to;
    bool truncated;
    r->mark = r->pos;
    int got = reader_next_line(r, &from, &to, &truncated);
    if (got <= 0)
        return got;
    *line = r->buf + from;
    *len = to - from;
    return 1;
}

int csv_reader_next(struct csv_reader *r, struct csv_record *rec)
{
    if (r->failed)
        return -1;
    size_t from, to;
    bool truncated;
    r->mark = r->pos;
    int got = reader_next_line(r, &from, &to, &truncated);
    if (got <= 0) {
        r->failed = got < 0;
        return got;
    }
    struct split *s = &r->split;
    *s = (struct split){
        .flags = r->opt.flags,
        .max = r->opt.max_record,
        .fields = r->fields,
        .cap = r->opt.max_fields,
        .line = r->line,
        .rec_line = r->line,
        .err = &r->err,
    };
    r->in_record = true;
    int rc;
    for (;;) {
        /* The record starts at mark, which a refill may have moved. */
        s->buf = r->buf + r->mark;
        s->truncated = truncated;
        split_line_set(s, to - r->mark);
        rc = split_run(s);
        if (rc != SPLIT_MORE)
            break;
        got = reader_next_line(r, &from, &to, &truncated);
        if (got <= 0) {
            if (got == 0)
                split_fail(s, CSV_ERR_UNTERMINATED, s->quote_line);
            rc = SPLIT_FAIL;
            break;
        }
        s->line = r->line;
    }
    r->in_record = false;
    if (rc == SPLIT_FAIL) {
        r->failed = true;
        return -1;
    }
    size_t kept = s->n < r->opt.max_fields ? s->n : r->opt.max_fields;
    for (size_t i = 0; i < kept; i++)
        r->fields[i].s[r->fields[i].len] = '\0';
    *rec = (struct csv_record){r->fields, s->n, s->rec_line};
    return 1;
}
