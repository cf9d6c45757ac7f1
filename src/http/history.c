/* The consultation's progress over time for GET /v1/history: one point per published
 * checkpoint (national, cumulative), bounded at HTTP_HISTORY_MAX points by keeping the first
 * and then every stride-th checkpoint, the stride doubling each time the list fills up. Pure
 * bookkeeping: no libevent, no clock; the points come from the snapshots and from the
 * record at recovery (http.c), the JSON from render.c. */
#include "http/internal.h"

#include <stdlib.h>
#include <string.h>

#include "core/xalloc.h"

void http_history_init(struct http_history *hist)
{
    memset(hist, 0, sizeof(*hist));
    hist->points = xcalloc(HTTP_HISTORY_MAX, sizeof(*hist->points));
    hist->stride = 1;
}

void http_history_cleanup(struct http_history *hist)
{
    free(hist->points);
    memset(hist, 0, sizeof(*hist));
}

static bool on_stride(const struct http_history *hist, uint64_t id)
{
    return (id - hist->points[0].checkpoint) % hist->stride == 0;
}

/* Doubles the stride and keeps the first point and the points on it, until there is room.
 * With consecutive ids that drops every other point; ids with gaps may need more than one
 * doubling, and a stride of 2^63 leaves at most two points, so this ends. */
static void downsample(struct http_history *hist)
{
    while (hist->n >= HTTP_HISTORY_MAX) {
        hist->stride *= 2;
        size_t k = 1;
        for (size_t i = 1; i < hist->n; i++)
            if (on_stride(hist, hist->points[i].checkpoint))
                hist->points[k++] = hist->points[i];
        hist->n = k;
    }
}

void http_history_set_stride(struct http_history *hist, uint64_t stride)
{
    if (hist->n == 0 || stride <= hist->stride)
        return;
    hist->stride = stride;
    hist->last_kept = on_stride(hist, hist->points[hist->n - 1].checkpoint);
}

void http_history_add(struct http_history *hist, const struct http_history_point *p)
{
    /* The record went back (a restored database): what came after is not its history. Only
     * the last point can be off the stride, so what stays is all kept. */
    while (hist->n > 0 && hist->points[hist->n - 1].checkpoint > p->checkpoint) {
        hist->n--;
        hist->last_kept = true;
    }
    if (hist->n == 0) {
        hist->stride = 1;
        hist->points[0] = *p;
        hist->n = 1;
        hist->last_kept = true;
        return;
    }
    struct http_history_point *last = &hist->points[hist->n - 1];
    if (last->checkpoint == p->checkpoint) {
        *last = *p; /* the same checkpoint again */
        return;
    }
    if (!hist->last_kept)
        hist->n--; /* shown only while it was the newest */
    if (hist->n >= HTTP_HISTORY_MAX)
        downsample(hist);
    hist->points[hist->n++] = *p;
    hist->last_kept = on_stride(hist, p->checkpoint);
}
