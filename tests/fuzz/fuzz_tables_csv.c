/* Fuzz harness: tallyctl's voting-table CSV reader (ctl/tables_csv.c over core/csv.c in its
 * strict, multi-line mode). The input is read twice, from a buffer and from a FILE *
 * (fmemopen: the reader's fread path), and the two must agree record for record and error
 * for error; every record keeps the documented promises (table id of the collector id
 * syntax, electors 0..INT32_MAX, line numbers that only go forward) and every error names a
 * line and stays. */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/tables_csv.h"
#include "ctl/text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* fmemopen needs a non-empty buffer; an empty file is read from the buffer alone. */
    FILE *f = size ? fmemopen((void *)data, size, "rb") : NULL;
    struct ctl_tables *a = ctl_tables_new_buffer((const char *)data, size);
    struct ctl_tables *b = f ? ctl_tables_new_file(f) : NULL;
    uint64_t last_line = 1;
    int ra, rb;
    for (;;) {
        struct ctl_tables_record x, y;
        ra = ctl_tables_next(a, &x);
        if (b) {
            rb = ctl_tables_next(b, &y);
            FUZZ_ASSERT(ra == rb);
        }
        if (ra <= 0)
            break;
        FUZZ_ASSERT(x.line > last_line);
        last_line = x.line;
        FUZZ_ASSERT(x.table_id && ctl_collector_id_is_valid(x.table_id));
        FUZZ_ASSERT(x.electors <= 0x7fffffffu);
        if (b) {
            FUZZ_ASSERT(x.line == y.line && x.circuit_id == y.circuit_id &&
                        x.electors == y.electors);
            FUZZ_ASSERT(strcmp(x.table_id, y.table_id) == 0);
        }
    }
    if (ra < 0) {
        FUZZ_ASSERT(strncmp(ctl_tables_error(a), "line ", 5) == 0);
        FUZZ_ASSERT(ctl_tables_error_line(a) >= 1);
        FUZZ_ASSERT(strstr(ctl_tables_error(a), ctl_tables_error_reason(a)));
        struct ctl_tables_record z;
        FUZZ_ASSERT(ctl_tables_next(a, &z) == -1); /* every later call fails too */
        if (b) {
            FUZZ_ASSERT(strcmp(ctl_tables_error(a), ctl_tables_error(b)) == 0);
            FUZZ_ASSERT(ctl_tables_error_line(a) == ctl_tables_error_line(b));
        }
    }
    fuzz_verdict = ra < 0 ? FUZZ_REFUSED : FUZZ_ACCEPTED;
    ctl_tables_free(a);
    ctl_tables_free(b);
    if (f)
        fclose(f);
    return 0;
}
