/* The HTTP side of tallyd (libevent's evhttp on the same loop): /healthz and /readyz
 * for now; the results API builds on this. Read-only; never touches ingest state
 * except through the callbacks it is given. */
#ifndef HTTP_HTTP_H
#define HTTP_HTTP_H

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct http_server;

/* True once tallyd has recovered and PostgreSQL is reachable. */
typedef bool (*http_ready_cb)(void *arg);

struct http_server *http_server_new(struct event_base *base, const char *host, uint16_t port,
                                    http_ready_cb ready, void *arg);
void http_server_free(struct http_server *h); /* NULL is a no-op */

#endif
