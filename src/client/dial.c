/* libtally's reconnect policy: the list of servers, round robin over it, the back-off between
 * rounds that failed, and the non-blocking connect to each address a server name resolves to.
 * Nothing here knows of sessions, frames or the spool: conn.c reports how each attempt or
 * session ended (client_dial_failed, client_dial_progress) and logs what this decided. */
#include "client/dial.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "core/xalloc.h"

static int server_add(struct client_dial *d, const char *host, uint16_t port, char *err,
                      size_t err_len)
{
    if (!host || !*host || port == 0) {
        if (err_len)
            snprintf(err, err_len, "server %zu: host and port are required", d->n + 1);
        return -1;
    }
    struct client_server *s = &d->servers[d->n];
    s->host = xstrdup(host);
    snprintf(s->port, sizeof(s->port), "%u", (unsigned)port);
    bool v6 = strchr(host, ':') != NULL;
    size_t len = strlen(host) + sizeof(s->port) + 4;
    s->name = xmalloc(len);
    snprintf(s->name, len, v6 ? "[%s]:%s" : "%s:%s", host, s->port);
    d->n++;
    return 0;
}

int client_dial_init(struct client_dial *d, const struct tally_client_config *cfg, char *err,
                     size_t err_len)
{
    memset(d, 0, sizeof(*d));
    bool has_host = cfg->host || cfg->port;
    const char *why = NULL;
    if (cfg->n_servers && has_host)
        why = "give the server as host and port or as a list of servers, not both";
    else if (cfg->n_servers && !cfg->servers)
        why = "n_servers is set but servers is NULL";
    else if (cfg->n_servers > TALLY_CLIENT_SERVERS_MAX)
        why = "too many servers";
    else if (!cfg->n_servers && (!cfg->host || !*cfg->host))
        why = "server host is required";
    else if (!cfg->n_servers && cfg->port == 0)
        why = "server port is required";
    if (why) {
        if (err_len)
            snprintf(err, err_len, "%s", why);
        return -1;
    }
    size_t n = cfg->n_servers ? cfg->n_servers : 1;
    d->servers = xcalloc(n, sizeof(*d->servers));
    for (size_t i = 0; i < n; i++) {
        const char *host = cfg->n_servers ? cfg->servers[i].host : cfg->host;
        uint16_t port = cfg->n_servers ? cfg->servers[i].port : cfg->port;
        if (server_add(d, host, port, err, err_len) < 0) {
            client_dial_cleanup(d);
            return -1;
        }
    }
    return 0;
}

void client_dial_cleanup(struct client_dial *d)
{
    if (d->ai)
        freeaddrinfo(d->ai);
    for (size_t i = 0; i < d->n; i++) {
        free(d->servers[i].host);
        free(d->servers[i].name);
    }
    free(d->servers);
    memset(d, 0, sizeof(*d));
}

const char *client_dial_name(const struct client_dial *d)
{
    return d->servers[d->cur].name;
}

static void peer_name(struct client_dial *d, const struct addrinfo *ai)
{
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    if (getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof(host), serv, sizeof(serv),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        snprintf(d->peer, sizeof(d->peer), "%s", client_dial_name(d));
    else if (ai->ai_family == AF_INET6)
        snprintf(d->peer, sizeof(d->peer), "[%s]:%s", host, serv);
    else
        snprintf(d->peer, sizeof(d->peer), "%s:%s", host, serv);
}

enum client_dial_status client_dial_start(struct client_dial *d, int *fd, char *why, size_t why_len)
{
    const struct client_server *s = &d->servers[d->cur];
    *fd = -1;
    snprintf(d->peer, sizeof(d->peer), "%s", s->name);
    if (!d->ai_cur) {
        if (d->ai)
            freeaddrinfo(d->ai);
        d->ai = NULL;
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        int rc = getaddrinfo(s->host, s->port, &hints, &d->ai);
        if (rc != 0) {
            d->ai = NULL;
            snprintf(why, why_len, "cannot resolve %s: %s", s->host, gai_strerror(rc));
            return CLIENT_DIAL_FAILED;
        }
        d->ai_cur = d->ai;
    }
    int saved = 0;
    for (; d->ai_cur; d->ai_cur = d->ai_cur->ai_next) {
        struct addrinfo *ai = d->ai_cur;
        peer_name(d, ai);
        *fd =
            socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (*fd < 0) {
            saved = errno;
            continue;
        }
        if (connect(*fd, ai->ai_addr, ai->ai_addrlen) == 0)
            return CLIENT_DIAL_CONNECTED;
        if (errno == EINPROGRESS)
            return CLIENT_DIAL_PENDING;
        saved = errno;
        close(*fd);
        *fd = -1;
    }
    snprintf(why, why_len, "cannot connect to %s: %s", s->name, strerror(saved));
    return CLIENT_DIAL_FAILED;
}

enum client_dial_status client_dial_finish(struct client_dial *d, int err, const char *what,
                                           int *fd, char *why, size_t why_len)
{
    if (err == 0)
        return CLIENT_DIAL_CONNECTED;
    close(*fd);
    *fd = -1;
    if (d->ai_cur && d->ai_cur->ai_next) {
        d->ai_cur = d->ai_cur->ai_next;
        return client_dial_start(d, fd, why, why_len);
    }
    snprintf(why, why_len, "cannot connect to %s: %s", d->peer, what ? what : strerror(err));
    return CLIENT_DIAL_FAILED;
}

int client_dial_failed(struct client_dial *d, bool move_on)
{
    d->failures++;
    d->ai_cur = NULL; /* resolve again: the name may point elsewhere by now */
    if (move_on && d->n > 1) {
        d->cur = (d->cur + 1) % d->n;
        /* The others may be up (a standby that just took over): no waiting within a round. */
        if (++d->round_failed < d->n)
            return 0;
    }
    d->round_failed = 0;
    if (d->backoff_ms == 0)
        d->backoff_ms = CLIENT_DIAL_BACKOFF_MIN_MS;
    else if (d->backoff_ms < CLIENT_DIAL_BACKOFF_MAX_MS / 2)
        d->backoff_ms *= 2;
    else
        d->backoff_ms = CLIENT_DIAL_BACKOFF_MAX_MS;
    int half = d->backoff_ms / 2;
    return half + (int)randombytes_uniform((uint32_t)(d->backoff_ms - half) + 1);
}

void client_dial_progress(struct client_dial *d)
{
    d->failures = 0;
    d->backoff_ms = 0;
    d->round_failed = 0;
}
