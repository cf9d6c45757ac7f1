/* The chaos harness's I/O thread, shared by chaos.c and io.c: userspace fault proxies (between
 * tallyd and PostgreSQL, and between collectors and tallyd) and the feeders that write each
 * collector's generated votes into its tally-push's stdin at a steady rate. Every call here
 * takes the thread's mutex and returns at once; the thread does the I/O. */
#ifndef TESTS_CHAOS_H
#define TESTS_CHAOS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- fault proxies ---- */

enum px_mode {
    PX_PASS = 0,   /* forward (with latency_ms and slice if set) */
    PX_CUT,        /* reset both sides after budget more bytes (either direction) */
    PX_CUT_COMMIT, /* reset at a byte inside the next COMMIT or inside its reply */
    PX_BLACKHOLE,  /* accept, neither forward nor close; heal resets those connections */
};

struct px_fault {
    enum px_mode mode;
    int latency_ms;   /* each chunk held this long before it is forwarded */
    bool slice;       /* forward one byte per write */
    uint64_t budget;  /* PX_CUT: bytes forwarded (per connection) before the reset */
    int commit_phase; /* PX_CUT_COMMIT: 0 inside the COMMIT message, 1 inside its reply */
    uint64_t rnd;     /* PX_CUT_COMMIT: picks the byte */
};

struct px_stats {
    uint64_t accepted, cuts, bytes;
    uint64_t commit_cuts; /* cuts that landed in a COMMIT or its reply */
};

/* Starts the I/O thread. 0 or -1. */
int io_start(void);
/* Stops it (joins); closes every proxied connection. */
void io_stop(void);
/* A proxy listening on 127.0.0.1:listen_port, forwarding to 127.0.0.1:target_port. Returns
 * its index or -1. */
int px_add(const char *name, uint16_t listen_port, uint16_t target_port);
/* Applies to the connections open now and those accepted later (PX_CUT: a fresh budget for
 * each connection). */
void px_set(int px, const struct px_fault *f);
/* Back to PX_PASS without latency or slicing; blackholed connections are reset. */
void px_heal(int px);
void px_get_stats(int px, struct px_stats *out);

/* ---- feeders: collector i's votes into its tally-push's stdin ---- */

/* Appends collector i's next vote (one whole `voter,project` line) to *buf / *len / *cap
 * (realloc'd). Called on the I/O thread with its mutex held. */
typedef void (*feed_more_cb)(uint32_t i, char **buf, size_t *len, size_t *cap);

/* n collectors, rate votes/s each. 0 or -1. */
int feed_init(uint32_t n, double rate, feed_more_cb more);
/* A new pipe for collector i (its tally-push was restarted): writing restarts at byte 0 of
 * the same data (tally-push skips what its spool already covers). Takes ownership of fd;
 * -1 detaches (the old fd is closed). */
void feed_attach(uint32_t i, int fd);
/* No more new votes: write what was generated, then close the pipe (EOF). */
void feed_finish(void);
/* The bytes generated for collector i (the truth is computed from them). Valid after every
 * pipe was closed and tally-push exited; borrowed. */
const char *feed_data(uint32_t i, size_t *len);
/* Votes generated so far over every collector. */
uint64_t feed_generated(void);

#endif
