/* Glue between ingest and the HTTP API: turns the registry into the API's catalog, and
 * each committed checkpoint into a published snapshot and metrics. tallyd-only. */
#ifndef TALLYD_PUBLISH_H
#define TALLYD_PUBLISH_H

#include <stdint.h>

#include "store/store.h"

struct event_base;
struct ingest;
struct publish;
struct ssl_ctx_st;

/* Starts the HTTP server on host:port before anything else, so /healthz answers and
 * /readyz says why tallyd is not ready while it waits for PostgreSQL, the writer lock or
 * recovery. Returns NULL (logged) when the port cannot be bound. */
struct publish *publish_new(struct event_base *base, const char *host, uint16_t port);

/* Serves HTTPS with tls (an SSL_CTX; p keeps its own reference). Right after publish_new.
 * Returns 0, or -1 (logged). */
int publish_use_tls(struct publish *p, struct ssl_ctx_st *tls) __attribute__((warn_unused_result));

/* Readiness and metrics are asked of in from now on (borrowed; outlives p's use of it). */
void publish_follow(struct publish *p, struct ingest *in);

/* Start-up finished: takes ownership of cat (ordered by project id like the tally), gives
 * the API its catalog and publishes the recovered state. Returns -1 (logged) when the
 * catalog does not match the tally. */
int publish_attach(struct publish *p, struct store_catalog *cat);

/* GET /v1/receipts/{collector}/{seq} is answered by r (borrowed: free it before p, since
 * freeing it answers the requests still waiting; NULL: those paths answer 503). */
struct receipts;
void publish_serve_receipts(struct publish *p, struct receipts *r);

void publish_free(struct publish *p); /* NULL is a no-op */

#endif
