/* Internal to the tally module: growing and resetting a struct tally_delta. */
#ifndef TALLY_DELTA_H
#define TALLY_DELTA_H

#include "tally/tally.h"

void tally_delta_init(struct tally_delta *d, size_t n_projects);
/* Sizes the per-table arrays (once, from tally_tables_set). */
void tally_delta_init_tables(struct tally_delta *d, size_t n_tables);
void tally_delta_cleanup(struct tally_delta *d);
/* Empties the delta, keeping its buffers. */
void tally_delta_reset(struct tally_delta *d);

/* Make room for one more batch with up to n tokens. */
void tally_delta_reserve(struct tally_delta *d, size_t n);
/* Make room for n_counts more batch_counts and n_tables more batch_tables. */
void tally_delta_reserve_counts(struct tally_delta *d, size_t n_counts, size_t n_tables);
struct tally_delta_mark *tally_delta_add_mark(struct tally_delta *d);
/* Appends a sheet (zeroed, rows_off set) with room for n_rows rows at sheet_rows +
 * rows_off; the caller fills them and n_rows. */
struct tally_delta_sheet *tally_delta_add_sheet(struct tally_delta *d, size_t n_rows);
/* The same for a correction and its deltas. */
struct tally_delta_correction *tally_delta_add_correction(struct tally_delta *d, size_t n_deltas);

/* Adds v (either sign) to table k's per-ballot ballots in d, listing k once. */
void tally_delta_table_add(struct tally_delta *d, uint32_t k, int64_t v);

#endif
