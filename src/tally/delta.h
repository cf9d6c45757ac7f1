/* Internal to the tally module: growing and resetting a struct tally_delta. */
#ifndef TALLY_DELTA_H
#define TALLY_DELTA_H

#include "tally/tally.h"

void tally_delta_init(struct tally_delta *d, size_t n_projects);
void tally_delta_cleanup(struct tally_delta *d);
/* Empties the delta, keeping its buffers. */
void tally_delta_reset(struct tally_delta *d);

/* Make room for one more batch with up to n tokens. */
void tally_delta_reserve(struct tally_delta *d, size_t n);
struct tally_delta_mark *tally_delta_add_mark(struct tally_delta *d);

#endif
