/* Internal to the store module: streaming rows into a table with COPY ... FROM STDIN (FORMAT
 * binary), in chunks, with the COPY aborted on the first row that fails. One loop for the
 * checkpoint writer's batches, sheets and corrections and for tallyctl's registry and tables
 * loads. */
#ifndef STORE_COPY_H
#define STORE_COPY_H

#include "store/bin.h"
#include "store/internal.h"

/* Appends the next row's tuple to b (store_bin_copy_tuple and its fields). Returns 1 when it
 * appended one, 0 when there are no more, -1 when the input failed (store_set_error says
 * why; *abort_msg, if set, is what the server is told when the COPY is aborted). */
typedef int (*store_copy_row_cb)(void *arg, struct store_bin *b, const char **abort_msg);

/* Runs sql (a COPY ... FROM STDIN (FORMAT binary)) with the rows of row(arg, ...). what
 * names the work in messages ("writing batch rows"). Returns STORE_OK, or the failure as
 * store_classify sees it (STORE_RETRY when the connection failed), with the error set. */
enum store_result store_copy_in(struct store *s, const char *sql, const char *what,
                                store_copy_row_cb row, void *arg)
    __attribute__((warn_unused_result));

#endif
