/* A streaming reader for voting-table CSV files (RFC 4180) with the header
 * table_id,circuit_id,electors (docs/consultation.md). Pure: no database, no global state;
 * reads a FILE * or a memory buffer. */
#ifndef CTL_TABLES_CSV_H
#define CTL_TABLES_CSV_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CTL_TABLES_HEADER "table_id,circuit_id,electors"
#define CTL_TABLES_FIELDS 3
/* A record longer than this is refused: a valid one is under 100 bytes, and a runaway
 * quote would otherwise swallow the rest of the file into memory. */
#define CTL_TABLES_MAX_RECORD 4096u

struct ctl_tables;

/* One data row; table_id is borrowed until the next call. */
struct ctl_tables_record {
    uint64_t line;        /* line the record starts on; the header is line 1 */
    const char *table_id; /* [A-Za-z0-9._-]{1,63} */
    uint32_t circuit_id;  /* 0 .. UINT32_MAX (whether the registry has it is the store's
                           * question) */
    uint32_t electors;    /* 0 .. INT32_MAX */
};

/* Reads from f (borrowed; not closed). */
struct ctl_tables *ctl_tables_new_file(FILE *f);
/* Reads len bytes at buf (borrowed until ctl_tables_free). */
struct ctl_tables *ctl_tables_new_buffer(const char *buf, size_t len);
void ctl_tables_free(struct ctl_tables *t); /* NULL is a no-op */

/* Reads the next record, checking the header first. Returns 1 with rec filled, 0 at the
 * end of input, or -1 on malformed input (then see ctl_tables_error; every later call
 * returns -1 too). A UTF-8 byte order mark before the header and empty lines are skipped,
 * as the registry reader does. */
int ctl_tables_next(struct ctl_tables *t, struct ctl_tables_record *rec)
    __attribute__((warn_unused_result));

/* After -1: "line N: reason", the line alone, and the reason alone. */
const char *ctl_tables_error(const struct ctl_tables *t);
uint64_t ctl_tables_error_line(const struct ctl_tables *t);
const char *ctl_tables_error_reason(const struct ctl_tables *t);

#endif
