/* How the HTTP side answers: the JSON error body, HEAD lengths, ETags (weak for the
 * versioned /v1 documents) and If-None-Match, Cache-Control, Accept-Encoding and the choice
 * between a plain and a gzip body (Vary: Accept-Encoding on every answer that could be
 * compressed). The compression itself is gzip.c's; what each route answers is routes.c's. */
#include "http/server.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>

/* evhttp_send_reply(), but a HEAD answer carries only the length of the body it would
 * have had: libevent 2.1 writes the body of a HEAD reply. */
void http_send_reply(struct evhttp_request *req, int code, const char *reason,
                     struct evbuffer *body)
{
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD && body) {
        char len[24];
        snprintf(len, sizeof(len), "%zu", evbuffer_get_length(body));
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Length", len);
        evbuffer_drain(body, evbuffer_get_length(body));
    }
    evhttp_send_reply(req, code, reason, body);
}

void http_reply_error(struct evhttp_request *req, int code, const char *reason, const char *message)
{
    struct evbuffer *buf = evbuffer_new();
    if (!buf)
        abort();
    evbuffer_add(buf, "{\"error\":", 9);
    http_json_string(buf, message);
    evbuffer_add(buf, "}\n", 2);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_remove_header(h, "Content-Type");
    evhttp_add_header(h, "Content-Type", HTTP_JSON_TYPE);
    evhttp_add_header(h, "Cache-Control", "no-cache");
    http_send_reply(req, code, reason, buf);
    evbuffer_free(buf);
}

/* ---- ETags ---------------------------------------------------------------------------- */

void http_version_format(struct http_version v, char *out, size_t len)
{
    if (v.republish)
        snprintf(out, len, "%" PRIu64 ".%" PRIu32, v.checkpoint, v.republish);
    else
        snprintf(out, len, "%" PRIu64, v.checkpoint);
}

/* The epoch makes a tag unique across restarts and status changes (a checkpoint id names
 * the same votes in every run, not the same registry or status); "-e" marks a body
 * without counts, so a cached body with counts never matches one without. */
void http_doc_init(struct http_server *h, struct http_doc *d, const char *type,
                   const char *cache_control, bool weak, const char *fmt, ...)
{
    d->type = type;
    d->cache_control = cache_control;
    d->weak = weak;
    d->compressible = true;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(d->tag, sizeof(d->tag), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(d->tag))
        n = (int)strlen(d->tag);
    snprintf(d->tag + n, sizeof(d->tag) - (size_t)n, "-%08" PRIx32 "%s", h->etag_epoch,
             h->snap && !http_snapshot_has_counts(h->snap) ? "-e" : "");
}

static void doc_etag(const struct http_doc *d, bool gz, char *out, size_t len)
{
    snprintf(out, len, "%s\"%s%s\"", d->weak ? "W/" : "", d->tag, gz ? "-gz" : "");
}

/* One entity-tag of an If-None-Match list against tag and tag-gz (weak comparison: the
 * opaque-tags only, W/ or not). 0: no match; 1: tag; 2: tag-gz. */
static int tag_match(const char *opaque, size_t n, const char *tag)
{
    size_t t = strlen(tag);
    if (n == t && memcmp(opaque, tag, t) == 0)
        return 1;
    if (n == t + 3 && memcmp(opaque, tag, t) == 0 && memcmp(opaque + t, "-gz", 3) == 0)
        return 2;
    return 0;
}

/* Every If-None-Match header, each a list of entity-tags or "*" (RFC 9110 13.1.2). */
static int inm_match(struct evhttp_request *req, const char *tag)
{
    const struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    for (const struct evkeyval *kv = in->tqh_first; kv; kv = kv->next.tqe_next) {
        if (evutil_ascii_strcasecmp(kv->key, "If-None-Match") != 0)
            continue;
        for (const char *p = kv->value; *p;) {
            p += strspn(p, " \t,");
            if (*p == '*')
                return 1;
            if (p[0] == 'W' && p[1] == '/')
                p += 2;
            if (*p != '"') {
                p += strcspn(p, ","); /* not an entity-tag: skip it */
                continue;
            }
            const char *end = strchr(p + 1, '"');
            if (!end)
                break;
            int m = tag_match(p + 1, (size_t)(end - p - 1), tag);
            if (m)
                return m;
            p = end + 1;
        }
    }
    return 0;
}

void http_doc_headers(struct evhttp_request *req, const struct http_doc *d, bool gz)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char etag[sizeof(d->tag) + 8];
    if (d->type)
        evhttp_add_header(h, "Content-Type", d->type);
    evhttp_add_header(h, "Cache-Control", d->cache_control);
    if (d->compressible)
        evhttp_add_header(h, "Vary", "Accept-Encoding");
    doc_etag(d, gz, etag, sizeof(etag));
    evhttp_add_header(h, "ETag", etag);
    if (gz)
        evhttp_add_header(h, "Content-Encoding", "gzip");
}

/* A cache that holds either representation may keep it: both carry the same data. */
bool http_doc_not_modified(struct evhttp_request *req, const struct http_doc *d)
{
    int m = inm_match(req, d->tag);
    if (!m)
        return false;
    struct http_doc head = *d;
    head.type = NULL;
    http_doc_headers(req, &head, false);
    if (m == 2) { /* the tag it has: the gzip one */
        struct evkeyvalq *h = evhttp_request_get_output_headers(req);
        char etag[sizeof(d->tag) + 8];
        doc_etag(d, true, etag, sizeof(etag));
        evhttp_remove_header(h, "ETag");
        evhttp_add_header(h, "ETag", etag);
    }
    http_send_reply(req, 304, "Not Modified", NULL);
    return true;
}

/* ---- Accept-Encoding (RFC 9110 12.5.3) ------------------------------------------------ */

/* A qvalue, "0" ["." 0*3DIGIT] / "1" ["." 0*3"0"], in thousandths; -1 when malformed. */
static int parse_qvalue(const char *p, size_t n)
{
    if (n == 0 || (p[0] != '0' && p[0] != '1'))
        return -1;
    int q = (p[0] - '0') * 1000, scale = 100;
    if (n == 1)
        return q;
    if (p[1] != '.' || n > 5)
        return -1;
    for (size_t i = 2; i < n; i++, scale /= 10) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        q += (p[i] - '0') * scale;
    }
    return q > 1000 ? -1 : q;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* One element "coding *( OWS ; OWS param )": its q in thousandths (1000 without one, 0 for
 * a malformed one); *coding and *coding_len name the coding. */
static int element_q(const char *p, size_t n, const char **coding, size_t *coding_len)
{
    size_t k = 0;
    while (k < n && is_ows(p[k]))
        k++;
    size_t c0 = k;
    while (k < n && p[k] != ';' && !is_ows(p[k]))
        k++;
    *coding = p + c0;
    *coding_len = k - c0;
    int q = 1000;
    while (k < n) {
        while (k < n && (is_ows(p[k]) || p[k] == ';'))
            k++;
        size_t a = k;
        while (k < n && p[k] != ';')
            k++;
        size_t b = k;
        while (b > a && is_ows(p[b - 1]))
            b--;
        if (b - a >= 2 && (p[a] == 'q' || p[a] == 'Q') && p[a + 1] == '=') {
            q = parse_qvalue(p + a + 2, b - a - 2);
            if (q < 0)
                q = 0;
        }
    }
    return q;
}

bool http_accepts_gzip(struct evhttp_request *req)
{
    const struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    int gzip_q = -1, star_q = -1;
    for (const struct evkeyval *kv = in->tqh_first; kv; kv = kv->next.tqe_next) {
        if (evutil_ascii_strcasecmp(kv->key, "Accept-Encoding") != 0)
            continue;
        for (const char *p = kv->value; *p;) {
            size_t n = strcspn(p, ",");
            const char *coding;
            size_t len;
            int q = element_q(p, n, &coding, &len);
            if ((len == 4 && evutil_ascii_strncasecmp(coding, "gzip", 4) == 0) ||
                (len == 6 && evutil_ascii_strncasecmp(coding, "x-gzip", 6) == 0))
                gzip_q = q > gzip_q ? q : gzip_q;
            else if (len == 1 && coding[0] == '*')
                star_q = q;
            p += n;
            if (*p == ',')
                p++;
        }
    }
    /* gzip;q=0 refuses it whatever * says; * stands for every coding not named. */
    return (gzip_q >= 0 ? gzip_q : star_q) > 0;
}

/* ---- the body ------------------------------------------------------------------------- */

static size_t body_len(const struct http_body *b)
{
    if (b->buf)
        return evbuffer_get_length(b->buf);
    size_t head = b->head ? b->head_len : b->cached->head_len;
    return head + b->cached->len - b->cached->head_len;
}

static void add_plain(const struct http_body *b, struct evbuffer *out)
{
    if (b->buf) {
        evbuffer_add_buffer(out, b->buf);
        return;
    }
    struct http_cached *e = b->cached;
    if (b->head)
        evbuffer_add(out, b->head, b->head_len);
    else
        http_cached_add_bytes(e, out, e->body, e->head_len);
    http_cached_add_bytes(e, out, e->body + e->head_len, e->len - e->head_len);
}

void http_doc_send(struct http_server *h, struct evhttp_request *req, const struct http_doc *d,
                   const struct http_body *b)
{
    struct evbuffer *out = evbuffer_new();
    if (!out)
        abort();
    bool gz = d->compressible && body_len(b) >= HTTP_GZIP_MIN && http_accepts_gzip(req);
    if (gz && b->cached) {
        struct http_cached *e = b->cached;
        if (!e->gz && !e->gz_failed && !http_gzip_cached_now(&h->gz, e)) {
            http_gzip_wait(h, b->snap, e, req, d, b->head, b->head_len);
            evbuffer_free(out);
            return;
        }
        if (e->gz)
            http_gzip_add_cached(e, b->head, b->head_len, out);
        else
            gz = false;
    } else if (gz) {
        /* A big body the snapshot could not keep (its cache is full) goes plain: compressing
         * it here would hold the loop. */
        size_t n = evbuffer_get_length(b->buf);
        gz = n <= HTTP_GZIP_SYNC_MAX &&
             http_gzip_compress(&h->gz, evbuffer_pullup(b->buf, -1), n, out) == 0;
    }
    if (!gz)
        add_plain(b, out);
    http_doc_headers(req, d, gz);
    http_send_reply(req, 200, "OK", out);
    evbuffer_free(out);
}
