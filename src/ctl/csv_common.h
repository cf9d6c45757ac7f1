/* What tallyctl's CSV readers (registry_csv.c, tables_csv.c) share: core/csv.h's syntax
 * errors in tallyctl's words, and the plain unsigned integers their fields hold. Pure. */
#ifndef CTL_CSV_COMMON_H
#define CTL_CSV_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "core/csv.h"

/* Writes the reason for e (without "line N: ") into buf, always NUL-terminated (len > 0);
 * max_record is the reader's limit, named when a record is too long. */
void ctl_csv_syntax_reason(const struct csv_error *e, size_t max_record, char *buf, size_t len);

/* Parses s, digits only (no sign, no space; leading zeros allowed), no greater than max.
 * Returns 0 with *out set, or -1. */
int ctl_csv_uint(const char *s, uint64_t max, uint64_t *out);

#endif
