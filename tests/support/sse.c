/* A client of tallyd's live event stream (/v1/events) for the integration tests: one
 * connection, the chunked body reassembled, events split out. Asserts nothing: failures are
 * said on stderr and returned. */
#include "support.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SSE_MAX (8u << 20) /* stream bytes kept, raw and decoded */

int ts_sse_open(struct ts_sse *s, uint16_t port, const char *last_event_id)
{
    memset(s, 0, sizeof(*s));
    s->fd = -1;
    s->raw = calloc(1, SSE_MAX);
    s->body = calloc(1, SSE_MAX);
    if (!s->raw || !s->body)
        abort();
    s->fd = ts_connect(port, ts_scale(5000));
    if (s->fd < 0)
        return -1;
    char req[512];
    snprintf(req, sizeof(req), "GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%s\r\n",
             last_event_id ? "Last-Event-ID: " : "", last_event_id ? last_event_id : "",
             last_event_id ? "\r\n" : "");
    return ts_send_all(s->fd, req, strlen(req));
}

void ts_sse_close(struct ts_sse *s)
{
    if (s->fd >= 0)
        close(s->fd);
    free(s->raw);
    free(s->body);
    memset(s, 0, sizeof(*s));
    s->fd = -1;
}

/* Reads for up to ms; false on EOF, error or an answer other than 200. */
static bool sse_read(struct ts_sse *s, int ms)
{
    struct pollfd p = {s->fd, POLLIN, 0};
    if (poll(&p, 1, ms) <= 0)
        return true;
    ssize_t n = recv(s->fd, s->raw + s->raw_len, SSE_MAX - 1 - s->raw_len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return true;
    if (n <= 0)
        return false;
    s->raw_len += (size_t)n;
    s->raw[s->raw_len] = '\0';
    if (s->consumed == 0) {
        const char *end = strstr(s->raw, "\r\n\r\n");
        if (!end)
            return true;
        if (strncmp(s->raw, "HTTP/1.1 200", 12) != 0) {
            fprintf(stderr, "support: /v1/events answered: %.80s\n", s->raw);
            return false;
        }
        s->consumed = (size_t)(end + 4 - s->raw);
    }
    for (;;) { /* chunked transfer coding */
        const char *c = s->raw + s->consumed;
        const char *crlf = strstr(c, "\r\n");
        if (!crlf)
            break;
        size_t len = strtoul(c, NULL, 16);
        size_t need = (size_t)(crlf - c) + 2 + len + 2;
        if (s->raw_len - s->consumed < need)
            break;
        if (s->body_len + len >= SSE_MAX) {
            fprintf(stderr, "support: the event stream passed %u bytes\n", SSE_MAX);
            return false;
        }
        memcpy(s->body + s->body_len, crlf + 2, len);
        s->body_len += len;
        s->body[s->body_len] = '\0';
        s->consumed += need;
    }
    return true;
}

bool ts_sse_next(struct ts_sse *s, struct ts_sse_event *e, int ms)
{
    int64_t deadline = ts_now_ms() + ms;
    for (;;) {
        char *start = s->body + s->read;
        char *end = strstr(start, "\n\n");
        if (end) {
            s->read += (size_t)(end + 2 - start);
            memset(e, 0, sizeof(*e));
            bool any = false;
            for (char *l = start; l <= end;) {
                char *eol = strchr(l, '\n');
                if (strncmp(l, "id: ", 4) == 0) {
                    e->id = strtoull(l + 4, NULL, 10);
                    any = true;
                } else if (strncmp(l, "event: ", 7) == 0) {
                    snprintf(e->kind, sizeof(e->kind), "%.*s", (int)(eol - l - 7), l + 7);
                } else if (strncmp(l, "data: ", 6) == 0) {
                    e->data = strndup(l + 6, (size_t)(eol - l - 6));
                }
                l = eol + 1;
            }
            if (any)
                return true;
            free(e->data);
            continue;
        }
        int left = (int)(deadline - ts_now_ms());
        if (left <= 0 || !sse_read(s, left < 200 ? left : 200))
            return false;
    }
}
