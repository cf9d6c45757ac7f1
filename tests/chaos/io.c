/* The chaos harness's I/O thread: the userspace fault proxies (latency, 1-byte slicing, a
 * reset at a chosen byte, a reset inside a COMMIT or its reply, blackholes) and the feeders
 * that write generated votes into each tally-push's stdin at a steady rate. One poll loop,
 * one mutex; the main thread only sets modes and reads counters (chaos.h). What the votes are
 * is chaos.c's business (the more callback). */
#include "chaos.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROXIES 8
#define MAX_CONNS 64
#define MAX_FEEDERS 16
#define CHUNK 65536
#define QUEUE_MAX (1u << 20) /* bytes queued one way before the proxy stops reading */
#define FEED_AHEAD 262144    /* bytes generated beyond what the pipe took */

struct chunk {
    struct chunk *next;
    int64_t release_ms;
    size_t len, off;
    char data[];
};

struct queue {
    struct chunk *head, *tail;
    size_t bytes;
    uint64_t enq, fwd; /* totals: bytes queued, bytes written */
    uint64_t mark;     /* reset once fwd reaches it (UINT64_MAX: none) */
};

struct pconn {
    bool used;
    int fd[2];         /* 0: the accepted side, 1: the upstream side (-1: none) */
    struct queue q[2]; /* q[0]: from fd[0] to fd[1]; q[1]: back */
    unsigned gen;      /* the proxy's fault generation it was armed for */
    bool blackholed;
    bool eof[2];     /* fd[i] sent its FIN */
    bool shut[2];    /* ... and it was passed on */
    uint64_t budget; /* PX_CUT: bytes left before the reset (UINT64_MAX: none) */
    int commit_wait; /* PX_CUT_COMMIT: 1 looking for COMMIT, 2 looking for its reply */
};

struct proxy {
    char name[32];
    int lfd;
    uint16_t target;
    struct px_fault f;
    unsigned gen;
    bool heal;
    struct px_stats st;
    struct pconn c[MAX_CONNS];
};

struct feeder {
    int fd, old_fd;
    char *buf;
    size_t len, cap, pos;
    uint64_t votes;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_t thread;
static bool running, quit;
static struct proxy px[MAX_PROXIES];
static int n_px;
static struct feeder fd_[MAX_FEEDERS];
static uint32_t n_feed;
static double feed_rate;
static feed_more_cb feed_more;
static bool feed_done;
static int64_t feed_t0;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        (void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Close with an RST rather than a FIN: the peer sees ECONNRESET, as after a cut cable's
 * router gives up, or a middlebox resets. */
static void close_rst(int fd)
{
    if (fd < 0)
        return;
    struct linger l = {1, 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}

static void queue_clear(struct queue *q)
{
    while (q->head) {
        struct chunk *c = q->head;
        q->head = c->next;
        free(c);
    }
    q->tail = NULL;
    q->bytes = 0;
}

static void conn_close(struct proxy *p, struct pconn *c, bool cut)
{
    close_rst(c->fd[0]);
    close_rst(c->fd[1]);
    queue_clear(&c->q[0]);
    queue_clear(&c->q[1]);
    if (cut)
        p->st.cuts++;
    memset(c, 0, sizeof *c);
}

static void conn_arm(struct proxy *p, struct pconn *c)
{
    c->gen = p->gen;
    c->budget = p->f.mode == PX_CUT ? p->f.budget : UINT64_MAX;
    c->commit_wait = p->f.mode == PX_CUT_COMMIT ? 1 : 0;
    c->q[0].mark = c->q[1].mark = UINT64_MAX;
    if (p->f.mode == PX_BLACKHOLE)
        c->blackholed = true;
}

static const char *find_commit(const char *data, size_t len)
{
    return memmem(data, len, "COMMIT", 6);
}

/* A chunk read from fd[dir]: where a COMMIT is being hunted, place the reset mark. A simple
 * query is 'Q', int32 length, "COMMIT\0" (12 bytes); its reply CommandComplete 'C', int32,
 * "COMMIT\0" (12 bytes) and ReadyForQuery 'Z', int32, status (6 bytes). */
static void commit_hunt(struct proxy *p, struct pconn *c, int dir, const char *data, size_t len)
{
    if (!c->commit_wait || (c->commit_wait == 1 && dir != 0) || (c->commit_wait == 2 && dir != 1))
        return;
    const char *hit = find_commit(data, len);
    if (!hit || hit - data < 5)
        return;
    uint64_t start = c->q[dir].enq + (uint64_t)(hit - 5 - data);
    if (c->commit_wait == 1 && p->f.commit_phase == 0) {
        c->q[0].mark = start + p->f.rnd % 12;
        c->commit_wait = 0;
    } else if (c->commit_wait == 1) {
        c->commit_wait = 2; /* let the COMMIT through; cut inside the answer */
    } else {
        c->q[1].mark = start + p->f.rnd % 18;
        c->commit_wait = 0;
    }
}

static void conn_read(struct proxy *p, struct pconn *c, int dir, int64_t now)
{
    struct queue *q = &c->q[dir];
    struct chunk *ch = malloc(sizeof *ch + CHUNK);
    if (!ch)
        abort();
    ssize_t n = read(c->fd[dir], ch->data, CHUNK);
    if (n <= 0) {
        free(ch);
        if (n == 0)
            c->eof[dir] = true; /* passed on as a FIN once what it sent is out */
        else if (errno != EAGAIN && errno != EINTR)
            conn_close(p, c, false); /* a reset: passed on as a reset */
        return;
    }
    commit_hunt(p, c, dir, ch->data, (size_t)n);
    ch->next = NULL;
    ch->len = (size_t)n;
    ch->off = 0;
    ch->release_ms = now + p->f.latency_ms;
    if (q->tail)
        q->tail->next = ch;
    else
        q->head = ch;
    q->tail = ch;
    q->bytes += (size_t)n;
    q->enq += (uint64_t)n;
}

/* Writes what is due from q[dir] to the other side. Returns false when the connection was
 * closed. */
static bool conn_write(struct proxy *p, struct pconn *c, int dir, int64_t now)
{
    struct queue *q = &c->q[dir];
    int out = c->fd[1 - dir];
    int writes = 0;
    while (q->head && out >= 0 && q->head->release_ms <= now) {
        struct chunk *ch = q->head;
        size_t want = ch->len - ch->off;
        if (p->f.slice)
            want = 1;
        if (q->mark != UINT64_MAX && q->fwd + want > q->mark)
            want = (size_t)(q->mark - q->fwd);
        if (c->budget != UINT64_MAX && want > c->budget)
            want = (size_t)c->budget;
        if (want > 0) {
            ssize_t n = send(out, ch->data + ch->off, want, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                    return true;
                conn_close(p, c, false);
                return false;
            }
            ch->off += (size_t)n;
            q->fwd += (uint64_t)n;
            q->bytes -= (size_t)n;
            p->st.bytes += (uint64_t)n;
            if (c->budget != UINT64_MAX)
                c->budget -= (uint64_t)n;
        }
        if ((q->mark != UINT64_MAX && q->fwd >= q->mark) || c->budget == 0) {
            if (q->mark != UINT64_MAX)
                p->st.commit_cuts++;
            conn_close(p, c, true);
            return false;
        }
        if (ch->off == ch->len) {
            q->head = ch->next;
            if (!q->head)
                q->tail = NULL;
            free(ch);
        }
        if (p->f.slice && ++writes >= 16)
            break;
    }
    /* The reading side ended (FIN) and everything it sent is out: pass the FIN on; once
     * both ways ended, close. */
    if (!q->head && c->eof[dir] && !c->shut[dir] && out >= 0) {
        shutdown(out, SHUT_WR);
        c->shut[dir] = true;
    }
    if (c->shut[0] && c->shut[1]) {
        close(c->fd[0]);
        close(c->fd[1]);
        c->fd[0] = c->fd[1] = -1;
        conn_close(p, c, false);
        return false;
    }
    return true;
}

static void proxy_accept(struct proxy *p)
{
    int fd = accept4(p->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    struct pconn *c = NULL;
    for (int i = 0; i < MAX_CONNS; i++) {
        if (!p->c[i].used) {
            c = &p->c[i];
            break;
        }
    }
    if (!c) {
        close_rst(fd);
        return;
    }
    memset(c, 0, sizeof *c);
    c->used = true;
    c->fd[0] = fd;
    c->fd[1] = -1;
    p->st.accepted++;
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conn_arm(p, c);
    if (c->blackholed)
        return; /* no upstream: nothing forwarded, nothing closed */
    int up = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(p->target)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* Loopback: a blocking connect is answered at once (accepted or refused). */
    if (up < 0 || connect(up, (struct sockaddr *)&a, sizeof a) != 0) {
        if (up >= 0)
            close(up);
        conn_close(p, c, false);
        return;
    }
    (void)setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    set_nonblock(up);
    c->fd[1] = up;
}

static void feed_step(int64_t now)
{
    for (uint32_t i = 0; i < n_feed; i++) {
        struct feeder *f = &fd_[i];
        if (f->old_fd >= 0) {
            close(f->old_fd);
            f->old_fd = -1;
        }
        if (!feed_done) {
            uint64_t target = (uint64_t)(feed_rate * (double)(now - feed_t0) / 1000.0);
            while (f->votes < target && f->len - f->pos < FEED_AHEAD) {
                feed_more(i, &f->buf, &f->len, &f->cap);
                f->votes++;
            }
        }
        if (f->fd < 0)
            continue;
        while (f->pos < f->len) {
            ssize_t n = write(f->fd, f->buf + f->pos, f->len - f->pos);
            if (n < 0) {
                if (errno != EAGAIN && errno != EINTR) {
                    close(f->fd); /* EPIPE: tally-push died; chaos.c attaches a new pipe */
                    f->fd = -1;
                }
                break;
            }
            f->pos += (size_t)n;
        }
        if (feed_done && f->fd >= 0 && f->pos == f->len) {
            close(f->fd);
            f->fd = -1;
        }
    }
}

static void *io_main(void *arg)
{
    (void)arg;
    struct pollfd pfd[MAX_PROXIES * (1 + 2 * MAX_CONNS) + MAX_FEEDERS];
    /* What each pollfd stands for: proxy, connection (-1: the listener), side. */
    int who_p[sizeof pfd / sizeof pfd[0]], who_c[sizeof pfd / sizeof pfd[0]],
        who_s[sizeof pfd / sizeof pfd[0]];
    pthread_mutex_lock(&mu);
    while (!quit) {
        int64_t now = now_ms();
        int n = 0;
        int timeout = 5;
        for (int i = 0; i < n_px; i++) {
            struct proxy *p = &px[i];
            if (p->heal) {
                p->heal = false;
                for (int k = 0; k < MAX_CONNS; k++)
                    if (p->c[k].used && p->c[k].blackholed)
                        conn_close(p, &p->c[k], false);
            }
            pfd[n] = (struct pollfd){.fd = p->lfd, .events = POLLIN};
            who_p[n] = i, who_c[n] = -1, who_s[n] = 0, n++;
            for (int k = 0; k < MAX_CONNS; k++) {
                struct pconn *c = &p->c[k];
                if (!c->used)
                    continue;
                if (c->gen != p->gen)
                    conn_arm(p, c);
                if (c->blackholed)
                    continue;
                for (int s = 0; s < 2; s++) {
                    if (!conn_write(p, c, s, now))
                        break;
                }
                if (!c->used)
                    continue;
                for (int s = 0; s < 2; s++) {
                    short ev = 0;
                    if (c->fd[s] < 0)
                        continue;
                    if (c->q[s].bytes < QUEUE_MAX && !c->eof[s])
                        ev |= POLLIN;
                    struct queue *in = &c->q[1 - s]; /* what goes out on this side */
                    if (in->head) {
                        if (in->head->release_ms <= now)
                            ev |= POLLOUT;
                        else if (in->head->release_ms - now < timeout)
                            timeout = (int)(in->head->release_ms - now);
                    }
                    if (!ev)
                        continue;
                    pfd[n] = (struct pollfd){.fd = c->fd[s], .events = ev};
                    who_p[n] = i, who_c[n] = k, who_s[n] = s, n++;
                }
            }
        }
        feed_step(now);
        int feed0 = n;
        for (uint32_t i = 0; i < n_feed; i++) {
            if (fd_[i].fd >= 0 && fd_[i].pos < fd_[i].len) {
                pfd[n] = (struct pollfd){.fd = fd_[i].fd, .events = POLLOUT};
                who_p[n] = -1, who_c[n] = (int)i, who_s[n] = 0, n++;
            }
        }
        pthread_mutex_unlock(&mu);
        int r = poll(pfd, (nfds_t)n, timeout < 0 ? 0 : timeout);
        pthread_mutex_lock(&mu);
        if (r <= 0)
            continue;
        now = now_ms();
        for (int j = 0; j < feed0; j++) {
            if (!pfd[j].revents)
                continue;
            struct proxy *p = &px[who_p[j]];
            if (who_c[j] < 0) {
                proxy_accept(p);
                continue;
            }
            struct pconn *c = &p->c[who_c[j]];
            int s = who_s[j];
            if (!c->used || c->fd[s] != pfd[j].fd || c->blackholed || c->eof[s])
                continue;
            if (pfd[j].revents & (POLLIN | POLLHUP | POLLERR))
                conn_read(p, c, s, now);
        }
    }
    for (int i = 0; i < n_px; i++) {
        for (int k = 0; k < MAX_CONNS; k++)
            if (px[i].c[k].used)
                conn_close(&px[i], &px[i].c[k], false);
        close(px[i].lfd);
    }
    pthread_mutex_unlock(&mu);
    return NULL;
}

int io_start(void)
{
    quit = false;
    if (pthread_create(&thread, NULL, io_main, NULL) != 0)
        return -1;
    running = true;
    return 0;
}

void io_stop(void)
{
    if (!running)
        return;
    pthread_mutex_lock(&mu);
    quit = true;
    pthread_mutex_unlock(&mu);
    pthread_join(thread, NULL);
    running = false;
}

int px_add(const char *name, uint16_t listen_port, uint16_t target_port)
{
    if (n_px == MAX_PROXIES)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(listen_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 64) != 0) {
        fprintf(stderr, "chaos: proxy %s: cannot listen on 127.0.0.1:%u: %s\n", name, listen_port,
                strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    pthread_mutex_lock(&mu);
    int i = n_px++;
    memset(&px[i], 0, sizeof px[i]);
    snprintf(px[i].name, sizeof px[i].name, "%s", name);
    px[i].lfd = fd;
    px[i].target = target_port;
    pthread_mutex_unlock(&mu);
    return i;
}

void px_set(int i, const struct px_fault *f)
{
    pthread_mutex_lock(&mu);
    px[i].f = *f;
    px[i].gen++;
    pthread_mutex_unlock(&mu);
}

void px_heal(int i)
{
    pthread_mutex_lock(&mu);
    px[i].f = (struct px_fault){.mode = PX_PASS};
    px[i].gen++;
    px[i].heal = true;
    for (int k = 0; k < MAX_CONNS; k++)
        px[i].c[k].budget = UINT64_MAX;
    pthread_mutex_unlock(&mu);
}

void px_get_stats(int i, struct px_stats *out)
{
    pthread_mutex_lock(&mu);
    *out = px[i].st;
    pthread_mutex_unlock(&mu);
}

int feed_init(uint32_t n, double rate, feed_more_cb more)
{
    if (n > MAX_FEEDERS)
        return -1;
    pthread_mutex_lock(&mu);
    n_feed = n;
    feed_rate = rate;
    feed_more = more;
    feed_t0 = now_ms();
    for (uint32_t i = 0; i < n; i++)
        fd_[i] = (struct feeder){.fd = -1, .old_fd = -1};
    pthread_mutex_unlock(&mu);
    return 0;
}

void feed_attach(uint32_t i, int fd)
{
    pthread_mutex_lock(&mu);
    struct feeder *f = &fd_[i];
    if (f->fd >= 0) {
        if (f->old_fd >= 0)
            close(f->old_fd);
        f->old_fd = f->fd;
    }
    f->fd = fd;
    if (fd >= 0)
        set_nonblock(fd);
    f->pos = 0;
    pthread_mutex_unlock(&mu);
}

void feed_finish(void)
{
    pthread_mutex_lock(&mu);
    feed_done = true;
    pthread_mutex_unlock(&mu);
}

const char *feed_data(uint32_t i, size_t *len)
{
    pthread_mutex_lock(&mu);
    const char *b = fd_[i].buf;
    *len = fd_[i].len;
    pthread_mutex_unlock(&mu);
    return b;
}

uint64_t feed_generated(void)
{
    pthread_mutex_lock(&mu);
    uint64_t v = 0;
    for (uint32_t i = 0; i < n_feed; i++)
        v += fd_[i].votes;
    pthread_mutex_unlock(&mu);
    return v;
}
