/* tally-push --verify-receipts: reads the digests of the spool's durable batches through
 * libtally, fetches each batch's receipt from tallyd's HTTP port (http_get.c) and checks it
 * (receipts.c), saying which batch fails and why. Owns that run and its messages; the
 * options are options.c's. */
#include "push/receipts_run.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/xalloc.h"
#include "push/http_get.h"
#include "push/push.h"
#include "push/receipts.h"
#include "tally/client.h"

#define PROGRESS_MS 1000
/* The spool's state file (src/client/spool.c): "TLYS", version, three u64, then u32 id_len
 * at byte 32 and the id at byte 40. Read here only to default --collector: libtally checks
 * the whole file when it opens the spool. */
#define STATE_ID_LEN_AT 32u
#define STATE_ID_AT 40u
#define STATE_READ_MAX 4096u

struct durable {
    uint64_t seq;
    uint8_t digest[32];
};

struct durable_list {
    struct durable *v;
    size_t n, cap;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_digest(void *arg, uint64_t seq, const uint8_t digest[32])
{
    struct durable_list *l = arg;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->v = xreallocarray(l->v, l->cap, sizeof(*l->v));
    }
    l->v[l->n].seq = seq;
    memcpy(l->v[l->n].digest, digest, 32);
    l->n++;
}

static void on_client_log(void *arg, enum tally_client_log_level level, const char *msg)
{
    const struct push_receipts_run *r = arg;
    if (level == TALLY_CLIENT_LOG_DEBUG || (level == TALLY_CLIENT_LOG_INFO && r->quiet))
        return;
    fprintf(stderr, "tally-push: %s\n", msg);
}

/* The collector id the spool's state file names into id. Returns 0, -1 when there is no
 * state file (errno ENOENT) or it cannot be read, 1 when it names no valid id. */
static int spool_collector(const char *spool, char id[TALLY_COLLECTOR_ID_MAX + 1])
{
    char path[PATH_MAX + 8];
    snprintf(path, sizeof(path), "%s/state", spool);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    uint8_t buf[STATE_READ_MAX];
    size_t n = 0;
    for (;;) {
        ssize_t got = read(fd, buf + n, sizeof(buf) - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        n += (size_t)got;
        if (n == sizeof(buf))
            break;
    }
    close(fd);
    if (n < STATE_ID_AT || memcmp(buf, "TLYS", 4) != 0)
        return 1;
    size_t len = (size_t)buf[STATE_ID_LEN_AT] | (size_t)buf[STATE_ID_LEN_AT + 1] << 8 |
                 (size_t)buf[STATE_ID_LEN_AT + 2] << 16 | (size_t)buf[STATE_ID_LEN_AT + 3] << 24;
    if (len == 0 || len > TALLY_COLLECTOR_ID_MAX || STATE_ID_AT + len > n)
        return 1;
    memcpy(id, buf + STATE_ID_AT, len);
    id[len] = '\0';
    return tally_client_id_is_valid(id) ? 0 : 1;
}

/* The spool's durable digests into l, the collector id settled into id. Returns 0 or an
 * exit status once the reason is printed. */
static int digests_read(const struct push_receipts_run *r, char id[TALLY_COLLECTOR_ID_MAX + 1],
                        struct durable_list *l, uint64_t *durable_seq)
{
    char state_id[TALLY_COLLECTOR_ID_MAX + 1];
    int s = spool_collector(r->spool, state_id);
    if (s < 0 && errno == ENOENT) {
        /* tally_client_new would make a fresh spool: nothing a verification should do. */
        fprintf(stderr, "tally-push: %s is not a spool (no state file): nothing to verify\n",
                r->spool);
        return PUSH_EXIT_FATAL;
    }
    if (r->collector && r->collector[0]) {
        snprintf(id, TALLY_COLLECTOR_ID_MAX + 1, "%s", r->collector);
    } else if (s == 0) {
        memcpy(id, state_id, sizeof(state_id));
    } else {
        fprintf(stderr, "tally-push: spool %s does not say whose it is: give --collector\n",
                r->spool);
        return PUSH_EXIT_USAGE;
    }
    /* libtally opens the spool without connecting: the address is never dialled. */
    struct tally_client_config cfg = {
        .host = r->http_host,
        .port = r->http_port,
        .collector_id = id,
        .spool_dir = r->spool,
        .log_cb = on_client_log,
        .log_arg = (void *)r,
    };
    char err[512];
    struct tally_client *c = tally_client_new(&cfg, err, sizeof(err));
    if (!c) {
        fprintf(stderr, "tally-push: %s\n", err);
        return PUSH_EXIT_FATAL;
    }
    struct tally_client_stats st;
    tally_client_stats(c, &st);
    *durable_seq = st.durable_seq;
    int rc = tally_client_durable_digests(c, on_digest, l);
    tally_client_free(c);
    if (rc < 0) {
        fprintf(stderr, "tally-push: spool %s: its digests cannot be read whole (%s)\n", r->spool,
                tally_client_strerror(rc));
        return PUSH_EXIT_FATAL;
    }
    return 0;
}

/* Fetches and checks one receipt. Returns 0, or PUSH_EXIT_FATAL once the reason is printed. */
static int receipt_check(const struct push_receipts_run *r, const struct push_http *h,
                         const char *id, const struct durable *b)
{
    char path[128], err[512], why[768];
    snprintf(path, sizeof(path), "/v1/receipts/%s/%" PRIu64, id, b->seq);
    char url[300]; /* scheme and authority, for messages */
    bool v6 = strchr(r->http_host, ':') != NULL;
    snprintf(url, sizeof(url), "%s%s%s%s:%u", h->tls ? "https://" : "http://", v6 ? "[" : "",
             r->http_host, v6 ? "]" : "", (unsigned)r->http_port);
    struct push_http_response res;
    if (push_http_get(h, path, PUSH_RECEIPT_BODY_MAX, &res, err, sizeof(err)) < 0) {
        if (*r->stop)
            return PUSH_EXIT_FATAL; /* said by the caller */
        fprintf(stderr, "tally-push: receipt for %s/%" PRIu64 ": GET %s%s: %s\n", id, b->seq, url,
                path, err);
        return PUSH_EXIT_FATAL;
    }
    int rc = PUSH_EXIT_FATAL;
    struct push_receipt rec;
    memset(&rec, 0, sizeof(rec));
    if (res.status == 404 || res.status == 409) {
        fprintf(stderr,
                "tally-push: receipt for %s/%" PRIu64 ": tallyd answers %d %s, but the spool "
                "holds the batch as durable: it must be in the record%s\n",
                id, b->seq, res.status, res.reason,
                res.status == 409 ? " (409: in a checkpoint older than format 3)" : "");
        goto out;
    }
    if (res.status != 200) {
        fprintf(stderr, "tally-push: receipt for %s/%" PRIu64 ": GET %s%s: HTTP %d %s\n", id,
                b->seq, url, path, res.status, res.reason);
        goto out;
    }
    if (push_receipt_parse(res.body, res.len, &rec, err, sizeof(err)) < 0) {
        fprintf(stderr, "tally-push: receipt for %s/%" PRIu64 ": %s\n", id, b->seq, err);
        goto out;
    }
    if (push_receipt_verify(&rec, id, b->seq, b->digest, r->head, why, sizeof(why)) < 0) {
        fprintf(stderr, "tally-push: receipt for %s/%" PRIu64 ": %s\n", id, b->seq, why);
        goto out;
    }
    rc = 0;
out:
    push_receipt_cleanup(&rec);
    free(res.body);
    return rc;
}

int push_receipts_run(const struct push_receipts_run *r)
{
    char id[TALLY_COLLECTOR_ID_MAX + 1], head[65], err[512];
    struct durable_list l = {0};
    uint64_t durable_seq = 0;
    struct push_http h;
    push_hex32_format(r->head, head);
    int rc = push_http_init(&h, r->http_host, r->http_port,
                            r->http_tls_ca && r->http_tls_ca[0] ? r->http_tls_ca : NULL, err,
                            sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "tally-push: %s\n", err);
        rc = PUSH_EXIT_FATAL;
        goto out;
    }
    if ((rc = digests_read(r, id, &l, &durable_seq)) != 0)
        goto out;
    if (!r->quiet && l.n < durable_seq)
        fprintf(stderr,
                "tally-push: %" PRIu64 " of the spool's %" PRIu64 " durable batches have no "
                "digest kept (released by a libtally older than libtally.so.2): not verified\n",
                durable_seq - l.n, durable_seq);
    if (!r->quiet && l.n == 0)
        fprintf(stderr,
                "tally-push: WARN: spool %s kept no durable batch's digest: no receipt "
                "to check\n",
                r->spool);
    int64_t next = mono_ms() + PROGRESS_MS;
    for (size_t i = 0; i < l.n; i++) {
        if (!*r->stop)
            rc = receipt_check(r, &h, id, &l.v[i]);
        if (*r->stop) {
            fprintf(stderr,
                    "tally-push: stopped by signal %d: %zu of %zu receipts verified so far\n",
                    (int)*r->stop, i, l.n);
            rc = PUSH_EXIT_FATAL;
        }
        if (rc)
            goto out;
        if (!r->quiet && mono_ms() >= next) {
            next = mono_ms() + PROGRESS_MS;
            fprintf(stderr, "tally-push: receipts: %zu of %zu verified (up to %s/%" PRIu64 ")\n",
                    i + 1, l.n, id, l.v[i].seq);
        }
    }
    printf("receipts: %zu verified against head %s\n", l.n, head);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "tally-push: stdout: %s\n", strerror(errno));
        rc = PUSH_EXIT_FATAL;
    }
out:
    push_http_cleanup(&h);
    free(l.v);
    return rc;
}
