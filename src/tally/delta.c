/* Checkpoint deltas: buffers that grow geometrically and are reused. Owns the memory of
 * a delta; the rules of what goes in it are tally.c's. */
#include "tally/delta.h"

#include "core/xalloc.h"

#include <stdlib.h>
#include <string.h>

static size_t grow_to(size_t cap, size_t need)
{
    if (cap == 0)
        cap = 64;
    while (cap < need)
        cap *= 2;
    return cap;
}

void tally_delta_init(struct tally_delta *d, size_t n_projects)
{
    memset(d, 0, sizeof(*d));
    d->proj_delta = xcalloc(n_projects, sizeof(uint64_t));
    d->touched = xcalloc(n_projects, sizeof(uint32_t));
    d->out_ids = xcalloc(n_projects, sizeof(uint32_t));
    d->out_deltas = xcalloc(n_projects, sizeof(uint64_t));
}

void tally_delta_cleanup(struct tally_delta *d)
{
    free(d->batches);
    free(d->tokens);
    free(d->proj_delta);
    free(d->touched);
    free(d->out_ids);
    free(d->out_deltas);
    free(d->marks);
    memset(d, 0, sizeof(*d));
}

void tally_delta_reset(struct tally_delta *d)
{
    for (size_t i = 0; i < d->n_touched; i++)
        d->proj_delta[d->touched[i]] = 0;
    d->n_touched = 0;
    d->n_batches = 0;
    d->n_tokens = 0;
    d->n_marks = 0;
    d->votes = 0;
}

void tally_delta_reserve(struct tally_delta *d, size_t n)
{
    if (d->n_batches + 1 > d->cap_batches) {
        d->cap_batches = grow_to(d->cap_batches, d->n_batches + 1);
        d->batches = xreallocarray(d->batches, d->cap_batches, sizeof(*d->batches));
    }
    if (d->n_tokens + n > d->cap_tokens) {
        d->cap_tokens = grow_to(d->cap_tokens, d->n_tokens + n);
        d->tokens = xreallocarray(d->tokens, d->cap_tokens, sizeof(*d->tokens));
    }
}

struct tally_delta_mark *tally_delta_add_mark(struct tally_delta *d)
{
    if (d->n_marks + 1 > d->cap_marks) {
        d->cap_marks = grow_to(d->cap_marks, d->n_marks + 1);
        d->marks = xreallocarray(d->marks, d->cap_marks, sizeof(*d->marks));
    }
    struct tally_delta_mark *m = &d->marks[d->n_marks++];
    memset(m, 0, sizeof(*m));
    return m;
}
