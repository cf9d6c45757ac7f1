/* Receipts served off the event loop (docs/consultation.md, part C): a worker thread with
 * its own store connection reads GET /v1/receipts/{collector}/{seq}'s answer from the
 * record and renders its JSON; the answer comes back on the loop through a callback. The
 * loop never waits for PostgreSQL: a bounded queue, and beyond it the caller says 503.
 *
 * Threading: receipts_new, receipts_submit and receipts_free on the loop thread; callbacks
 * run there too (libevent must have thread support on: evthread_use_pthreads). */
#ifndef RECEIPTS_RECEIPTS_H
#define RECEIPTS_RECEIPTS_H

#include <stddef.h>
#include <stdint.h>

#include "store/receipts.h"

struct event_base;
struct receipts;

#define RECEIPTS_QUEUE_DEFAULT 64 /* requests waiting or being read, at most */

/* The answer to one request: an HTTP status (200 found, 404 not durable or unknown, 409 in
 * a checkpoint older than format 3, 503 PostgreSQL unreachable, the record unreadable or
 * tallyd shutting down) and its JSON body (malloc'd, taken by the callee: free it; never
 * NULL), len bytes. Runs on the loop. */
typedef void (*receipts_done_cb)(void *arg, int status, char *body, size_t len);

/* Starts the worker; it connects with conninfo (copied; NULL or "": the PG* environment)
 * at the first request and again after a failure. max_queued 0 means
 * RECEIPTS_QUEUE_DEFAULT. NULL when the thread or its event cannot be made. */
struct receipts *receipts_new(struct event_base *base, const char *conninfo, size_t max_queued);

/* Queues one request (collector copied: [A-Za-z0-9._-]{1,63}, checked by the caller).
 * Returns 0, and later done(arg, ...) runs exactly once on the loop; or -1 when
 * max_queued requests are outstanding already (done is then never called). */
int receipts_submit(struct receipts *r, const char *collector, uint64_t seq, receipts_done_cb done,
                    void *arg) __attribute__((warn_unused_result));

/* Stops the worker (waiting for the read under way), then answers every request not yet
 * answered with 503 through its callback, and frees r. NULL is a no-op. */
void receipts_free(struct receipts *r);

/* The receipt's JSON (docs/consultation.md) into a malloc'd NUL-terminated string of *len
 * bytes. Pure. */
char *receipts_render(const char *collector, uint64_t seq, const struct store_receipt *rc,
                      size_t *len);

#endif
