/* Glue between ingest and the HTTP API: turns the registry into the API's catalog, and
 * each committed checkpoint into a published snapshot and metrics. tallyd-only. */
#ifndef TALLYD_PUBLISH_H
#define TALLYD_PUBLISH_H

#include <stdint.h>

#include "store/store.h"

struct event_base;
struct ingest;
struct publish;

/* Takes ownership of cat (read at start-up, ordered by project id like the tally).
 * Starts the HTTP server on host:port and publishes the recovered state. Returns NULL
 * (logged) when the catalog does not match the tally or the port cannot be bound. */
struct publish *publish_new(struct event_base *base, const char *host, uint16_t port,
                            struct store_catalog *cat, struct ingest *in);
void publish_free(struct publish *p); /* NULL is a no-op */

#endif
