/* libtally's reconnect policy: the tallyd servers a collector may use (an active one and its
 * standbys), which one to dial next and when, and the non-blocking connect to it. Internal to
 * libtally: the connection (conn.c) says how each attempt ended, this decides what follows. */
#ifndef CLIENT_DIAL_H
#define CLIENT_DIAL_H

#include <netdb.h>
#include <stdbool.h>
#include <stddef.h>

#include "tally/client.h"

#define CLIENT_DIAL_BACKOFF_MIN_MS 100
#define CLIENT_DIAL_BACKOFF_MAX_MS 5000

struct client_server {
    char *host;
    char port[8];
    char *name; /* "host:port" ("[v6]:port"), as configured: for messages */
};

struct client_dial {
    struct client_server *servers;
    size_t n;
    size_t cur;              /* the server being dialled, or whose session runs */
    struct addrinfo *ai;     /* cur's resolved addresses */
    struct addrinfo *ai_cur; /* the one being tried; NULL: resolve cur again */
    size_t round_failed;     /* servers that failed one after the other in this round */
    unsigned failures;       /* attempts failed since the last progress */
    int backoff_ms;          /* base of the last back-off; 0: none since the last progress */
    char peer[NI_MAXHOST + NI_MAXSERV + 4]; /* numeric address dialled or connected */
};

enum client_dial_status {
    CLIENT_DIAL_CONNECTED, /* *fd is connected */
    CLIENT_DIAL_PENDING,   /* *fd is connecting: wait for POLLOUT, then client_dial_finish */
    CLIENT_DIAL_FAILED,    /* no address of the current server took the connect: see why */
};

/* Copies the servers of cfg: its list, or its host and port. Returns 0, or -1 with the reason
 * in err (err_len bytes, may be 0) and nothing to clean up. */
int client_dial_init(struct client_dial *d, const struct tally_client_config *cfg, char *err,
                     size_t err_len) __attribute__((warn_unused_result));

void client_dial_cleanup(struct client_dial *d);

/* Starts a non-blocking connect to the current server, resolving its name first when needed;
 * an address that fails at once gives way to its next. CONNECTED or PENDING: *fd is the
 * socket and d->peer its address. FAILED: nothing is open and why says why. */
enum client_dial_status client_dial_start(struct client_dial *d, int *fd, char *why,
                                          size_t why_len);

/* The pending connect on *fd ended with err (0: connected; what: text for err, or NULL for
 * strerror). On failure closes *fd and goes on with the server's next address, if any: the
 * result is then client_dial_start's. */
enum client_dial_status client_dial_finish(struct client_dial *d, int err, const char *what,
                                           int *fd, char *why, size_t why_len);

/* The attempt or the session with the current server ended for a transient reason. move_on:
 * the server is away or stopping, the next one in the list is tried (once per round); false:
 * the reason concerns this collector's session only, the same server is tried again after the
 * back-off. Returns the delay in ms before the next attempt: 0 while a round goes on, else the
 * back-off (doubling from CLIENT_DIAL_BACKOFF_MIN_MS to _MAX_MS since the last progress,
 * drawn in [half, whole] so that collectors cut off together do not come back together). */
int client_dial_failed(struct client_dial *d, bool move_on);

/* The session made progress (or lived long enough): the next failure starts from scratch. */
void client_dial_progress(struct client_dial *d);

/* The current server as configured ("host:port"). */
const char *client_dial_name(const struct client_dial *d);

#endif
