/* Fuzz harness: tallyctl's registry CSV reader (ctl/registry_csv.c over core/csv.c in its
 * strict, multi-line mode). The input is read twice, from a buffer and from a FILE *
 * (fmemopen: the reader's fread path, refilled in pieces), and the two must agree record for
 * record and error for error; every record keeps the documented promises (UTF-8 strings
 * without NUL, seats 1..INT32_MAX, min_votes 0..INT32_MAX and 0 under the six-column
 * header, line numbers that never go back). */
#include "fuzz.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/registry_csv.h"
#include "ctl/text.h"

static void check_text(const char *s)
{
    FUZZ_ASSERT(s);
    FUZZ_ASSERT(ctl_utf8_is_valid(s, strlen(s)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* fmemopen needs a non-empty buffer; an empty file is read from the buffer alone. */
    FILE *f = size ? fmemopen((void *)data, size, "rb") : NULL;
    struct ctl_registry *a = ctl_registry_new_buffer((const char *)data, size);
    struct ctl_registry *b = f ? ctl_registry_new_file(f) : NULL;
    uint64_t last_line = 0;
    size_t records = 0;
    /* Whether the header may name min_votes: a valid six-column header line (quoted or
     * not, after a byte order mark or not) cannot hold the word, so without it no record
     * may carry a min_votes. */
    const void *nl = size ? memchr(data, '\n', size) : NULL;
    size_t first = nl ? (size_t)((const uint8_t *)nl - data) : size;
    bool seven = first && memmem(data, first, "min_votes", 9) != NULL;
    int ra, rb;
    for (;;) {
        struct ctl_registry_record x, y;
        ra = ctl_registry_next(a, &x);
        if (b) {
            rb = ctl_registry_next(b, &y);
            FUZZ_ASSERT(ra == rb);
        }
        if (ra <= 0)
            break;
        records++;
        FUZZ_ASSERT(x.line > 1 && x.line >= last_line);
        last_line = x.line;
        check_text(x.project_name);
        check_text(x.circuit_name);
        check_text(x.state);
        FUZZ_ASSERT(x.seats >= 1 && x.seats <= 0x7fffffffu);
        FUZZ_ASSERT(x.min_votes <= 0x7fffffffu);
        if (!seven)
            FUZZ_ASSERT(x.min_votes == 0);
        if (b) {
            FUZZ_ASSERT(x.line == y.line && x.project_id == y.project_id &&
                        x.circuit_id == y.circuit_id && x.seats == y.seats &&
                        x.min_votes == y.min_votes);
            FUZZ_ASSERT(strcmp(x.project_name, y.project_name) == 0);
            FUZZ_ASSERT(strcmp(x.circuit_name, y.circuit_name) == 0);
            FUZZ_ASSERT(strcmp(x.state, y.state) == 0);
        }
    }
    if (ra < 0) {
        FUZZ_ASSERT(strncmp(ctl_registry_error(a), "line ", 5) == 0);
        FUZZ_ASSERT(ctl_registry_error_line(a) >= 1);
        struct ctl_registry_record z;
        FUZZ_ASSERT(ctl_registry_next(a, &z) == -1); /* every later call fails too */
        if (b) {
            FUZZ_ASSERT(strcmp(ctl_registry_error(a), ctl_registry_error(b)) == 0);
            FUZZ_ASSERT(ctl_registry_error_line(a) == ctl_registry_error_line(b));
        }
    }
    fuzz_verdict = ra < 0 ? FUZZ_REFUSED : FUZZ_ACCEPTED;
    (void)records;
    ctl_registry_free(a);
    ctl_registry_free(b);
    if (f)
        fclose(f);
    return 0;
}
