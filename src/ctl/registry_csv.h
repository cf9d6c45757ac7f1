/* A streaming reader for registry CSV files (RFC 4180) with the header
 * project_id,project_name,circuit_id,circuit_name,state,seats and an optional seventh column
 * min_votes. Pure: no database, no global state; reads a FILE * or a memory buffer. */
#ifndef CTL_REGISTRY_CSV_H
#define CTL_REGISTRY_CSV_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CTL_REGISTRY_HEADER "project_id,project_name,circuit_id,circuit_name,state,seats"
/* The same with the optional seventh column (a project needs at least min_votes votes to
 * win); without it every project's min_votes is 0. */
#define CTL_REGISTRY_HEADER_MIN_VOTES CTL_REGISTRY_HEADER ",min_votes"
#define CTL_REGISTRY_FIELDS 6     /* without min_votes */
#define CTL_REGISTRY_MAX_FIELDS 7 /* with it */
/* A record longer than this is refused (a runaway quote would otherwise swallow the
 * rest of the file into memory). */
#define CTL_REGISTRY_MAX_RECORD (64u * 1024u)

struct ctl_registry;

/* One data row. Strings are valid UTF-8 without NUL, borrowed until the next call. */
struct ctl_registry_record {
    uint64_t line; /* line the record starts on; the header is line 1 */
    uint32_t project_id;
    const char *project_name;
    uint32_t circuit_id;
    const char *circuit_name;
    const char *state;
    uint32_t seats;     /* 1 .. INT32_MAX */
    uint32_t min_votes; /* 0 .. INT32_MAX; 0 when the file has no min_votes column */
};

/* Reads from f (borrowed; not closed). */
struct ctl_registry *ctl_registry_new_file(FILE *f);
/* Reads len bytes at buf (borrowed until ctl_registry_free). */
struct ctl_registry *ctl_registry_new_buffer(const char *buf, size_t len);
void ctl_registry_free(struct ctl_registry *r); /* NULL is a no-op */

/* Reads the next record, checking the header first (six columns, or seven with min_votes;
 * every record then has as many fields). Returns 1 with rec filled, 0 at the end of input,
 * or -1 on malformed input (then see ctl_registry_error; every later call returns -1 too).
 * A UTF-8 byte order mark before the header and empty lines are skipped. */
int ctl_registry_next(struct ctl_registry *r, struct ctl_registry_record *rec)
    __attribute__((warn_unused_result));

/* After -1: "line N: reason" without file name, and the line alone. */
const char *ctl_registry_error(const struct ctl_registry *r);
uint64_t ctl_registry_error_line(const struct ctl_registry *r);
/* Just the reason, without the "line N: " prefix. */
const char *ctl_registry_error_reason(const struct ctl_registry *r);

#endif
