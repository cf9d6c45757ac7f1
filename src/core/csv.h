/* CSV input shared by every reader of CSV files (tallyctl's registry, tally-push's vote lines,
 * tally-gen's registry): physical lines from a FILE *, a file descriptor or a buffer, and
 * their split into RFC 4180 fields, unquoted in place, with line numbers. What a field must
 * hold, and the wording of every message, stay with the callers. */
#ifndef CORE_CSV_H
#define CORE_CSV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The grammar, for every mode: a field that starts with '"' is quoted, ends at the next
 * single '"' and holds "" as one '"'; a closing quote is followed by ',' or the end of the
 * line. Any other field runs to the next ','. A record ends at its line's end, "\n" or
 * "\r\n" (and, without CSV_STRICT, a lone "\r" at the very end). */
enum {
    /* RFC 4180 to the letter: a '"' inside an unquoted field, a '\r' outside quotes that is
     * not part of "\r\n", and a NUL byte anywhere are errors (without it they are data). */
    CSV_STRICT = 1u << 0,
    /* A quoted field may hold line breaks, so a record may span several lines (without it a
     * quote still open at the end of the line is unterminated). */
    CSV_MULTILINE = 1u << 1,
};

enum csv_error_code {
    CSV_ERR_NONE = 0,
    CSV_ERR_UNTERMINATED, /* a quoted field that never closes */
    CSV_ERR_AFTER_QUOTE,  /* something other than ',' or the line end after a closing quote */
    CSV_ERR_BARE_QUOTE,   /* CSV_STRICT: '"' inside an unquoted field */
    CSV_ERR_LONE_CR,      /* CSV_STRICT: '\r' outside quotes not followed by '\n' */
    CSV_ERR_NUL,          /* CSV_STRICT: a NUL byte */
    CSV_ERR_TOO_LONG,     /* the record passed max_record */
    CSV_ERR_READ,         /* the source failed; sys is its errno */
};

struct csv_error {
    enum csv_error_code code;
    /* The line it is on; an unterminated quote, and a record too long inside a quoted
     * field, name the line the quote opened on; a record too long outside quotes, the
     * line it started on. csv_split_line counts its line as line 1. */
    uint64_t line;
    size_t field;  /* 1-based field the error is in */
    bool in_quote; /* CSV_ERR_TOO_LONG: the record ran on inside a quoted field */
    int sys;       /* CSV_ERR_READ: errno */
};

struct csv_field {
    char *s; /* unquoted text, in the line's (or the reader's) own bytes */
    size_t len;
    bool quoted;
};

/* Splits one line of len bytes, with or without its line ending, into fields, unquoting
 * them in place (line is modified; nothing is NUL-terminated and no byte past len is
 * touched). The first cap fields go to fields[]; later ones are still checked, and all are
 * counted in *n. An empty line is one empty unquoted field. flags: CSV_STRICT (not
 * CSV_MULTILINE, a line has no next line here). Allocates nothing. Returns 0, or -1 with
 * *err filled. */
int csv_split_line(char *line, size_t len, unsigned flags, struct csv_field *fields, size_t cap,
                   size_t *n, struct csv_error *err) __attribute__((warn_unused_result));

/* ---- reader ---- */

struct csv_options {
    unsigned flags;    /* CSV_STRICT, CSV_MULTILINE: for csv_reader_next */
    size_t max_record; /* 0: none; else a record whose fields, copied with a NUL between
                        * each two, would take this many bytes is CSV_ERR_TOO_LONG (and
                        * the reader's memory stays within a few times it) */
    size_t max_fields; /* fields csv_reader_next keeps per record (the rest are counted) */
};

struct csv_record {
    const struct csv_field *fields; /* the first min(n_fields, max_fields), NUL-terminated */
    size_t n_fields;
    uint64_t line; /* the line it starts on, 1-based */
};

struct csv_reader;

/* Sources, borrowed (never closed). A FILE * is read with fread, so a pipe is read in
 * whole buffers; a file descriptor with read(2), so a line is handed over as soon as it
 * arrives. A buffer is borrowed until csv_reader_free. */
struct csv_reader *csv_reader_new_file(FILE *f, const struct csv_options *opt);
struct csv_reader *csv_reader_new_fd(int fd, const struct csv_options *opt);
struct csv_reader *csv_reader_new_buffer(const char *buf, size_t len,
                                         const struct csv_options *opt);
void csv_reader_free(struct csv_reader *r); /* NULL is a no-op */

/* The next physical line, raw: *line points at its len bytes, its "\n" included when it has
 * one, writable and valid until the next call. Allocates only to make room for a line longer
 * than any before. Returns 1, 0 at the end, or -1 when reading failed (see csv_reader_error;
 * after EINTR the same call may be repeated and loses nothing). */
int csv_reader_line(struct csv_reader *r, char **line, size_t *len)
    __attribute__((warn_unused_result));

/* False only when the next csv_reader_line would have to read(2) the reader's file
 * descriptor for more, and so may wait (a pipe fed slowly): a caller with other work can
 * poll the descriptor first. True for every other source. */
bool csv_reader_has_line(const struct csv_reader *r);

/* The next record, split by opt->flags; its fields are valid until the next call. Returns
 * 1, 0 at the end, or -1 on malformed input or a read error (see csv_reader_error; every
 * later call returns -1 too). */
int csv_reader_next(struct csv_reader *r, struct csv_record *rec)
    __attribute__((warn_unused_result));

const struct csv_error *csv_reader_error(const struct csv_reader *r);

#endif
