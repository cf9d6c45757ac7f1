/* The limits a connection meets: its deadlines (Hello, frame, idle, close flush) on one
 * timer per connection, the budget of input bytes buffered across authenticated
 * connections, the listener's pause on EMFILE/ENFILE, and the rate limits of log lines
 * (per kind of limit hit, per collector name for session lines). What a frame means, and
 * who may authenticate, is not decided here. */
#include "net/internal.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "core/log.h"
#include "core/loopwatch.h"

/* libevent's timers run on a coarse clock (a few ms): a deadline this close counts as
 * reached, so an early wake-up does not re-arm for the rest. */
#define NET_TIMER_SLACK_NS (5 * 1000000LL)
#define MS_NS(ms) ((int64_t)(ms)*1000000)

static const char *const kind_names[NET_LOG_KINDS] = {
    [NET_LOG_HELLO_TIMEOUT] = "hello timeouts",
    [NET_LOG_FRAME_TIMEOUT] = "frame timeouts",
    [NET_LOG_IDLE_TIMEOUT] = "idle timeouts",
    [NET_LOG_CONN_LIMIT] = "connections refused at the connection limit",
    [NET_LOG_PRE_AUTH_TOO_LARGE] = "oversized frames before Hello",
    [NET_LOG_BUFFER_PAUSE] = "input buffer pauses",
    [NET_LOG_ACCEPT_PAUSE] = "accept pauses",
    [NET_LOG_TLS_HANDSHAKE] = "TLS handshake failures",
    [NET_LOG_PRE_AUTH_REFUSED] = "peers refused before Hello",
    [NET_LOG_PRE_AUTH_EVICTED] = "connections without Hello closed to make room",
};

int64_t net_mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static struct timeval ns_to_tv(int64_t ns)
{
    if (ns < 0)
        ns = 0;
    struct timeval tv = {(time_t)(ns / 1000000000), (suseconds_t)(ns % 1000000000 / 1000)};
    return tv;
}

/* ---- rate-limited log lines --------------------------------------------------------- */

/* One timer for every summary: it fires at the earliest window end asked for. */
static void ratelim_schedule(struct net_server *s, int64_t at)
{
    if (s->ratelim_at && s->ratelim_at <= at)
        return;
    s->ratelim_at = at;
    struct timeval tv = ns_to_tv(at - net_mono_ns());
    evtimer_add(s->ratelim_ev, &tv);
}

static void ratelim_summary(struct net_server *s, enum net_log_kind k)
{
    struct net_ratelim *r = &s->ratelim[k];
    if (r->suppressed)
        log_warn("%llu more %s in the last %lld s (the first %d of each 10 s are logged)",
                 (unsigned long long)r->suppressed, kind_names[k],
                 (long long)(NET_LOG_WINDOW_NS / 1000000000), NET_LOG_BURST);
    r->suppressed = 0;
    r->logged = 0;
    r->window_start = 0;
}

bool net_ratelim_allow(struct net_server *s, enum net_log_kind k)
{
    struct net_ratelim *r = &s->ratelim[k];
    int64_t now = net_mono_ns();
    if (r->window_start && now - r->window_start >= NET_LOG_WINDOW_NS)
        ratelim_summary(s, k);
    if (!r->window_start)
        r->window_start = now;
    if (r->logged < NET_LOG_BURST) {
        r->logged++;
        return true;
    }
    r->suppressed++;
    ratelim_schedule(s, r->window_start + NET_LOG_WINDOW_NS);
    return false;
}

static void name_summary(struct net_name_log *e)
{
    if (e->suppressed)
        log_warn("collector %s: %llu more session lines in the last %lld s", e->name,
                 (unsigned long long)e->suppressed,
                 (long long)(NET_NAME_LOG_WINDOW_NS / 1000000000));
    e->suppressed = 0;
    e->logged = 0;
    e->window_start = 0;
}

bool net_name_log_allow(struct net_server *s, const char *name)
{
    int64_t now = net_mono_ns();
    struct net_name_log *e = NULL, *oldest = NULL;
    /* A linear scan of a small table: only lines about to be logged come here. */
    for (size_t i = 0; i < NET_NAME_LOG_SLOTS && !e; i++) {
        struct net_name_log *x = &s->names[i];
        if (x->window_start && strcmp(x->name, name) == 0)
            e = x;
        else if (!oldest || !x->window_start ||
                 (oldest->window_start && x->window_start < oldest->window_start))
            oldest = x;
    }
    if (e && now - e->window_start >= NET_NAME_LOG_WINDOW_NS)
        name_summary(e);
    if (!e) {
        e = oldest; /* a free slot, or the oldest window's: its summary goes out now */
        name_summary(e);
        snprintf(e->name, sizeof(e->name), "%s", name);
    }
    if (!e->window_start)
        e->window_start = now;
    if (e->logged < NET_NAME_LOG_BURST) {
        e->logged++;
        return true;
    }
    e->suppressed++;
    ratelim_schedule(s, e->window_start + NET_NAME_LOG_WINDOW_NS);
    return false;
}

/* Writes the summaries of the windows that are over (all of them when everything is),
 * and waits for the next one to end. */
static void ratelim_due(struct net_server *s, bool all)
{
    int64_t now = net_mono_ns() + NET_TIMER_SLACK_NS;
    int64_t next = 0;
    for (int k = 0; k < NET_LOG_KINDS; k++) {
        struct net_ratelim *r = &s->ratelim[k];
        if (!r->suppressed)
            continue;
        int64_t end = r->window_start + NET_LOG_WINDOW_NS;
        if (all || now >= end)
            ratelim_summary(s, (enum net_log_kind)k);
        else if (!next || end < next)
            next = end;
    }
    for (size_t i = 0; i < NET_NAME_LOG_SLOTS; i++) {
        struct net_name_log *e = &s->names[i];
        if (!e->suppressed)
            continue;
        int64_t end = e->window_start + NET_NAME_LOG_WINDOW_NS;
        if (all || now >= end)
            name_summary(e);
        else if (!next || end < next)
            next = end;
    }
    if (next)
        ratelim_schedule(s, next);
}

void net_ratelim_cb(evutil_socket_t fd, short what, void *arg)
{
    LOOPWATCH_SCOPE();
    (void)fd;
    (void)what;
    struct net_server *s = arg;
    s->ratelim_at = 0;
    ratelim_due(s, false);
}

void net_ratelim_flush(struct net_server *s)
{
    ratelim_due(s, true);
}

/* ---- per-connection deadlines ------------------------------------------------------- */

/* The idle clock runs only while we read and nothing waits in the input: a peer whose
 * bytes we are not taking is not idle. (Reading back on restarts it: update_read.) */
static bool conn_idle_counts(const struct net_conn *c)
{
    return c->authenticated && c->reading &&
           evbuffer_get_length(bufferevent_get_input(c->bev)) == 0;
}

static int64_t earliest(int64_t a, int64_t b)
{
    return !a || (b && b < a) ? b : a;
}

static int64_t conn_deadline(const struct net_conn *c)
{
    const struct net_server_config *cfg = &c->srv->cfg;
    if (c->closing)
        return c->close_ns + NET_CLOSE_FLUSH_NS;
    int64_t d = 0;
    if (!c->authenticated && cfg->hello_timeout_ms)
        d = earliest(d, c->accepted_ns + MS_NS(cfg->hello_timeout_ms));
    /* The frame clock stops while we do not read (update_read moves it on). */
    if (c->frame_start_ns && c->reading && cfg->frame_timeout_ms)
        d = earliest(d, c->frame_start_ns + MS_NS(cfg->frame_timeout_ms));
    if (cfg->idle_timeout_ms && conn_idle_counts(c))
        d = earliest(d, c->last_rx_ns + MS_NS(cfg->idle_timeout_ms));
    return d;
}

/* One timer per connection, armed for the earliest deadline. A deadline that moves later
 * (bytes arrived) does not re-arm: the timer fires early and looks again. */
void net_conn_arm(struct net_conn *c)
{
    if (c->dead)
        return;
    int64_t d = conn_deadline(c);
    if (!d) {
        if (c->timer_at) {
            evtimer_del(c->timer);
            c->timer_at = 0;
        }
        return;
    }
    if (c->timer_at && c->timer_at <= d)
        return;
    struct timeval tv = ns_to_tv(d - net_mono_ns());
    evtimer_add(c->timer, &tv);
    c->timer_at = d;
}

void net_conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    LOOPWATCH_SCOPE();
    (void)fd;
    (void)what;
    struct net_conn *c = arg;
    struct net_server *s = c->srv;
    const struct net_server_config *cfg = &s->cfg;
    c->timer_at = 0;
    if (c->dead)
        return;
    int64_t now = net_mono_ns() + NET_TIMER_SLACK_NS;
    if (c->closing) {
        if (now >= c->close_ns + NET_CLOSE_FLUSH_NS) {
            if (!c->authenticated)
                log_conn(LOG_DEBUG, c->peer, c->name, "timed out flushing the last replies");
            else if (net_conn_log_allowed(c))
                log_conn(LOG_WARN, c->peer, c->name, "timed out flushing the last replies");
            net_conn_kill(c);
            return;
        }
    } else if (!c->authenticated && cfg->hello_timeout_ms &&
               now >= c->accepted_ns + MS_NS(cfg->hello_timeout_ms)) {
        s->limits.hello_timeouts++;
        if (net_ratelim_allow(s, NET_LOG_HELLO_TIMEOUT))
            log_conn(LOG_WARN, c->peer, NULL, "no Hello within %u ms%s; closing",
                     cfg->hello_timeout_ms,
                     c->ssl && !net_tls_handshake_done(c) ? " (TLS handshake unfinished)" : "");
        net_conn_error_close(c, TALLY__ERROR_CODE__ERROR_TIMEOUT, "no Hello in time");
        return;
    } else if (c->frame_start_ns && c->reading && cfg->frame_timeout_ms &&
               now >= c->frame_start_ns + MS_NS(cfg->frame_timeout_ms)) {
        s->limits.frame_timeouts++;
        if (net_ratelim_allow(s, NET_LOG_FRAME_TIMEOUT))
            log_conn(LOG_WARN, c->peer, c->name,
                     "frame not complete within %u ms (%zu bytes of it here); closing",
                     cfg->frame_timeout_ms, evbuffer_get_length(bufferevent_get_input(c->bev)));
        net_conn_error_close(c, TALLY__ERROR_CODE__ERROR_TIMEOUT, "frame not complete in time");
        return;
    } else if (cfg->idle_timeout_ms && conn_idle_counts(c) &&
               now >= c->last_rx_ns + MS_NS(cfg->idle_timeout_ms)) {
        s->limits.idle_timeouts++;
        if (net_ratelim_allow(s, NET_LOG_IDLE_TIMEOUT))
            log_conn(LOG_WARN, c->peer, c->name, "nothing received for %u ms; closing",
                     cfg->idle_timeout_ms);
        net_conn_error_close(c, TALLY__ERROR_CODE__ERROR_TIMEOUT, "idle for too long");
        return;
    }
    net_conn_arm(c);
}

void net_conn_track_frame(struct net_conn *c)
{
    if (!c->srv->cfg.frame_timeout_ms || c->closing) {
        c->frame_start_ns = 0;
        return;
    }
    /* Only the frame at the head counts: one behind a whole frame waits for us, not for
     * the peer (the read watermark always leaves room for one whole frame). */
    if (!net_conn_head_partial(c))
        c->frame_start_ns = 0;
    else if (!c->frame_start_ns)
        c->frame_start_ns = net_mono_ns();
}

bool net_conn_head_partial(struct net_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t avail = evbuffer_get_length(in);
    if (avail < 4)
        return avail > 0;
    uint8_t h[4];
    evbuffer_copyout(in, h, sizeof(h));
    uint32_t n = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    return avail - 4 < n;
}

/* ---- the input budget across connections --------------------------------------------- */

static void buf_pause(struct net_server *s)
{
    s->buf_paused = true;
    s->limits.buffer_pauses++;
    if (net_ratelim_allow(s, NET_LOG_BUFFER_PAUSE))
        log_warn("collectors' input buffers hold %llu bytes, over the limit of %llu: not reading "
                 "new frames from any collector until they are below half",
                 (unsigned long long)s->buffered, (unsigned long long)s->cfg.max_buffered_bytes);
    struct net_conn *c;
    for (c = TAILQ_FIRST(&s->conns); c; c = TAILQ_NEXT(c, link)) {
        net_conn_update_read(c);
    }
}

void net_conn_account(struct net_conn *c)
{
    struct net_server *s = c->srv;
    size_t len = evbuffer_get_length(bufferevent_get_input(c->bev));
    if (!c->authenticated) {
        /* Bounded by input_cap each and by the pre-auth connection cap: unauthenticated
         * peers alone must not stop good collectors. */
        s->pre_auth_buffered = s->pre_auth_buffered - c->accounted + len;
        c->accounted = len;
        return;
    }
    s->buffered = s->buffered - c->accounted + len;
    c->accounted = len;
    uint64_t max = s->cfg.max_buffered_bytes;
    if (!max)
        return;
    if (!s->buf_paused && s->buffered > max)
        buf_pause(s);
    else if (s->buf_paused && s->buffered <= max / 2)
        event_active(s->buf_resume_ev, 0, 0); /* not from inside this connection's turn */
}

void net_buf_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    LOOPWATCH_SCOPE();
    (void)fd;
    (void)what;
    struct net_server *s = arg;
    if (!s->buf_paused || s->buffered > s->cfg.max_buffered_bytes / 2)
        return;
    s->buf_paused = false;
    log_debug("collectors' input buffers down to %llu bytes: reading again",
              (unsigned long long)s->buffered);
    /* Reading resumes from the next loop iteration; buffered frames go on in resume_cb.
     * update_read restarts the idle clock and re-arms each timer (it may have been
     * disarmed while nothing counted). */
    struct net_conn *c;
    for (c = TAILQ_FIRST(&s->conns); c; c = TAILQ_NEXT(c, link)) {
        net_conn_update_read(c);
    }
}

/* ---- the listener out of file descriptors ------------------------------------------- */

void net_accept_error(struct net_server *s, int err)
{
    if (!s->listener)
        return;
    /* Retrying at once would fail at once: the loop spun on this at 70 % CPU. */
    evconnlistener_disable(s->listener);
    s->accept_paused = true;
    if (s->accept_ok_since_pause || !s->accept_delay_ms)
        s->accept_delay_ms = NET_ACCEPT_PAUSE_MIN_MS;
    else if (s->accept_delay_ms < NET_ACCEPT_PAUSE_MAX_MS)
        s->accept_delay_ms = s->accept_delay_ms * 2 > NET_ACCEPT_PAUSE_MAX_MS
                                 ? NET_ACCEPT_PAUSE_MAX_MS
                                 : s->accept_delay_ms * 2;
    s->accept_ok_since_pause = false;
    s->limits.accept_pauses++;
    if (net_ratelim_allow(s, NET_LOG_ACCEPT_PAUSE))
        log_warn("accept failed on %s: %s; not accepting for %u ms (%zu connections open)", s->text,
                 strerror(err), s->accept_delay_ms, s->n_conns);
    struct timeval tv = ns_to_tv(MS_NS(s->accept_delay_ms));
    evtimer_add(s->accept_ev, &tv);
}

void net_accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    LOOPWATCH_SCOPE();
    (void)fd;
    (void)what;
    struct net_server *s = arg;
    s->accept_paused = false;
    if (s->listener && !s->accept_stopped)
        evconnlistener_enable(s->listener);
}
