/* tally-bench internals: the workload (registry, votes, batches, ground truth), the peers
 * that count it (tallyd, Redis, PostgreSQL-direct, the in-process limit), and the small
 * utilities they share (clock, latency figures, child processes, scratch PostgreSQL,
 * JSON). Everything the clock measures is generated before the clock starts, but for a
 * streamed workload (stream.c), which the tallyd peer's collectors and the limit make batch
 * by batch. */
#ifndef BENCH_BENCH_H
#define BENCH_BENCH_H

#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define BENCH_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* ---- options ------------------------------------------------------------------------ */

/* The systems, by the names the table and the JSON use. */
enum bench_peer {
    PEER_TALLYD = 1 << 0,
    PEER_REDIS_ALWAYS = 1 << 1,   /* AOF, appendfsync always: durable per reply */
    PEER_REDIS_EVERYSEC = 1 << 2, /* AOF, appendfsync everysec */
    PEER_POSTGRES = 1 << 3,       /* PostgreSQL-direct, several batches per transaction */
    PEER_POSTGRES_PER_BATCH = 1 << 4,
    PEER_LIMIT = 1 << 5,
    PEER_TALLYD_TLS = 1 << 6, /* tallyd with mutual TLS 1.3 on the collector port */
};
#define PEER_REDIS (PEER_REDIS_ALWAYS | PEER_REDIS_EVERYSEC)
/* 'all' leaves tallyd_tls out: its three rounds would lengthen the default run by a third;
 * --peers all,tallyd_tls or tallyd,tallyd_tls asks for it. */
#define PEER_ALL (PEER_TALLYD | PEER_REDIS | PEER_POSTGRES | PEER_POSTGRES_PER_BATCH | PEER_LIMIT)

/* --expected-ballots, when not a number. */
#define EXPECTED_ELECTORS (-1) /* the default: --electors-factor x the distinct ballots */
#define EXPECTED_AUTO (-2)     /* exactly the distinct ballots */
#define EXPECTED_NONE 0        /* tallyd's own default */

struct bench_opts {
    unsigned peers;         /* bit set of enum bench_peer */
    uint64_t votes;         /* votes in the workload (retransmitted copies not included) */
    uint32_t collectors;    /* K */
    uint32_t batch;         /* votes per batch */
    double dup_rate;        /* share of votes cast by a voter who already voted */
    double retransmit_rate; /* share of batches sent a second time after being sent */
    uint32_t projects;      /* registry size */
    double zipf;            /* exponent of project popularity inside a circuit */
    uint64_t seed;
    uint32_t window;          /* batches sent and not yet acknowledged, per collector */
    uint32_t max_undurable;   /* batches sent and not yet durable, per collector */
    uint32_t checkpoint_ms;   /* tallyd --checkpoint-ms */
    int64_t expected_ballots; /* N, or EXPECTED_ELECTORS / EXPECTED_AUTO / EXPECTED_NONE */
    double electors_factor;   /* electors = this x the distinct ballots */
    uint32_t rounds;          /* tallyd runs, each on a fresh database */
    double peer_seconds;      /* time budget of the slow peers; the limit repeats this long */
    uint64_t peer_votes;      /* the prefix of the workload prepared for the slow peers */
    uint32_t pg_conns;        /* PostgreSQL-direct connections; 0: one per collector */
    uint32_t pg_group;        /* postgres: batches per transaction; 0: --window */
    uint32_t timeout_s;       /* limit for each peer's run */
    const char *db;           /* --db CONNINFO, or NULL for a scratch cluster */
    const char *json_path;
    const char *tallyd_path;
    const char *tallyctl_path;
    const char *pg_sh_path;
    const char *redis_path;
    bool keep;                  /* keep the scratch directory */
    bool recovery;              /* tallyd: SIGKILL after the run, time the restart */
    int stream;                 /* --stream 1, --no-stream -1, else 0: by size */
    bool streamed;              /* the decision: votes made on the fly (stream.c) */
    const char *tallyd_args[8]; /* --tallyd-arg: extra arguments for tallyd */
    int n_tallyd_args;
    char command[2048]; /* the command line, for the record */
};

/* Parses the command line into o (options.c). Returns 0, 1 after printing --help, or 2 after
 * reporting a usage error. */
int bench_parse_args(struct bench_opts *o, int argc, char **argv);

/* Above this many votes the workload is streamed unless --no-stream says otherwise: in
 * memory it would take ~25 bytes a vote (the votes, and tallyd's frames), 4 GB here. */
#define WL_STREAM_AUTO_VOTES UINT64_C(160000000)

/* Set by SIGINT/SIGTERM; every loop checks it and unwinds. */
extern volatile sig_atomic_t bench_stop;

/* ---- workload ----------------------------------------------------------------------- */

struct wl_project {
    uint32_t id;         /* sparse external id */
    uint32_t circuit_id; /* sparse */
    uint8_t state;       /* index into wl_state_names */
    uint8_t seats;
};

struct wl_batch {
    uint64_t seq; /* 1, 2, 3... within its collector */
    const uint64_t *ballots;
    const uint32_t *projects;
    uint32_t n;
};

/* What a collector sends, in order: each batch once, and some batches a second time
 * (a retransmission: a seq already sent, which must not count again). */
struct wl_op {
    uint32_t batch; /* index into the collector's batches */
    bool retransmit;
};

/* A retransmission resends one of the last this many batches. */
#define WL_RESEND_BACK 8

struct wl_collector {
    char id[32];
    uint64_t *ballots; /* this collector's votes, in sending order (streamed: the prefix
                        * wl_stream_materialize made, or NULL) */
    uint32_t *projects;
    size_t n_votes;
    struct wl_batch *batches;
    size_t n_batches;
    struct wl_op *ops;
    size_t n_ops;
};

struct workload {
    struct wl_project *projects;
    size_t n_projects, n_circuits;
    uint64_t *truth;    /* accepted votes per project, by index: the ground truth */
    uint32_t *map_keys; /* external id -> index (open addressing) */
    int32_t *map_vals;
    size_t map_mask;
    uint64_t n_votes, n_distinct, n_duplicate, n_retransmits, n_batches;
    struct wl_collector *collectors;
    size_t n_collectors;
    struct wl_stream *stream; /* streamed: the recipe of the votes; NULL in memory */
};

extern const char *const wl_state_names[24];

/* Builds everything in memory; deterministic in opts->seed. Returns 0 or -1. When
 * opts->streamed, builds the registry, the batches' sizes and sends, and the ground truth
 * (a count pass over the recipe), but no vote: see wl_stream_fill. */
int wl_generate(struct workload *w, const struct bench_opts *o);
void wl_free(struct workload *w);
/* ---- streamed workload (stream.c) ---- */
struct wl_stream;
/* The recipe from the registry's popularity weight[] (by project index); runs the count
 * pass. Called by wl_generate. Returns 0 or -1. */
int wl_stream_setup(struct workload *w, const struct bench_opts *o, const double *weight);
void wl_stream_free(struct wl_stream *s);
/* Writes batch b (0-based) of collector k: its batches[b].n votes into ballots[] and
 * projects[] (external ids). When truth is not NULL, adds the batch's first occurrences to
 * it (by project index). Thread-safe: it only reads the recipe. */
void wl_stream_fill(const struct workload *w, size_t k, size_t b, uint64_t *ballots,
                    uint32_t *projects, uint64_t *truth);
/* Makes each collector's first batches_limit[k] batches in memory (the slow peers' prefix),
 * so that batches[b].ballots and .projects are there for them. */
void wl_stream_materialize(struct workload *w, const size_t *batches_limit);

/* Index of an external project id, or -1. */
int32_t wl_project_index(const struct workload *w, uint32_t id);
/* Writes the registry CSV tallyctl load-registry reads. Returns 0 or -1. */
int wl_write_registry(const struct workload *w, const char *path);

/* Compares counts reported by a system with a ground truth (w->truth, or a part's). Pairs
 * (ids[i], votes[i]) may come in any order; projects not listed count as 0. Returns true
 * when identical; else writes the first difference and the number of differing projects
 * into why. */
bool wl_check(const struct workload *w, const uint64_t *truth, const uint32_t *ids,
              const uint64_t *votes, size_t n, char *why, size_t why_len);

/* The part of the workload a peer counted: each collector's first ops_done[k] sends (all of
 * them for a peer that got through), and that part's own ground truth. */
struct wl_part {
    bool whole;            /* every send of every collector */
    const uint64_t *truth; /* accepted votes per project index (w->truth when whole) */
    uint64_t *own;         /* the truth of a partial run, owned */
    uint64_t n_votes, n_distinct, n_duplicate, n_retransmits, n_batches;
};
/* Works out what the first ops_done[k] sends of each collector k hold: votes (resent copies
 * not included), distinct ballots, repeated votes, resent batches, counts per project. */
void wl_part_make(const struct workload *w, const size_t *ops_done, struct wl_part *p);
void wl_part_free(struct wl_part *p);
/* The prefix of about max_votes votes (each collector in proportion to its share, in whole
 * batches): ops_limit[k] sends of collector k, which need its first batches_limit[k]
 * batches. Everything when max_votes >= the workload's votes. */
void wl_prefix(const struct workload *w, uint64_t max_votes, size_t *ops_limit,
               size_t *batches_limit);

/* ---- clock and figures -------------------------------------------------------------- */

double now_s(void);  /* CLOCK_MONOTONIC, seconds */
double wall_s(void); /* CLOCK_REALTIME, seconds since the epoch */
void sleep_ms(int ms);

struct lat {
    double *v; /* milliseconds */
    size_t n, cap;
};
void lat_add(struct lat *l, double ms);
void lat_merge(struct lat *into, const struct lat *from);
/* Nearest-rank percentile (q in 0..1) of the samples; sorts them. 0 when empty. */
double lat_pct(struct lat *l, double q);
double lat_max(struct lat *l);
void lat_free(struct lat *l);

/* ---- output --------------------------------------------------------------------------- */

void progress(const char *peer, const char *fmt, ...) BENCH_PRINTF(2, 3);

/* A growable string for JSON members. */
struct sbuf {
    char *s;
    size_t len, cap;
};
void sb_printf(struct sbuf *b, const char *fmt, ...) BENCH_PRINTF(2, 3);
void sb_json_str(struct sbuf *b, const char *s);
/* ", \"key\": {\"p50\": .., \"p99\": .., \"p999\": .., \"max\": .., \"n\": ..}" */
void sb_lat(struct sbuf *b, const char *key, struct lat *l);
void sb_free(struct sbuf *b);

/* What one peer reports. */
struct peer_result {
    const char *name; /* its key in the JSON and its name in the table */
    bool ran;         /* it ran to the end (exact or not) */
    bool skipped;     /* not asked for */
    bool failed;      /* it could not run to the end */
    bool exact;
    double votes_per_s;
    double wall_s;
    uint64_t votes;        /* votes counted: the workload's, or the part a slow peer got through */
    bool part;             /* a slow peer stopped by its time budget or --peer-votes */
    double durable_p99_ms; /* tallyd: durable ack p99 */
    double bytes_per_ballot; /* tallyd: peak memory growth per distinct ballot */
    double alt_votes_per_s;  /* limit: decode+apply */
    char note[512];          /* skip reason, failure reason, or what a miscount was */
    char table[400];         /* extra text for the summary table */
    struct sbuf json;        /* extra members: ", \"k\": v" ... */
};
void peer_fail(struct peer_result *r, const char *fmt, ...) BENCH_PRINTF(2, 3);

/* The results, in the order of the table and the JSON. */
enum {
    R_TALLYD,
    R_TALLYD_TLS,
    R_REDIS_ALWAYS,
    R_REDIS_EVERYSEC,
    R_POSTGRES,
    R_POSTGRES_PER_BATCH,
    R_LIMIT,
    R_COUNT
};

/* ---- child processes and files ----------------------------------------------------------- */

/* Starts argv[0] (a path) with stdin /dev/null and stdout+stderr appended to log_path
 * (NULL: /dev/null); the child gets SIGKILL if tally-bench dies. Returns the pid or -1. */
pid_t proc_spawn(char *const argv[], const char *log_path);
/* Waits up to timeout_ms for pid; returns its exit code, 128+signal, or -1 on timeout. */
int proc_wait(pid_t pid, int timeout_ms);
/* True while pid runs (reaps it if it exited; *code gets the exit code then). */
bool proc_alive(pid_t pid, int *code);
/* SIGTERM, wait up to timeout_ms, then SIGKILL. Returns the exit code or -1. */
int proc_stop(pid_t pid, int sig, int timeout_ms);
/* Runs argv to completion within timeout_ms, output appended to log_path. Returns the
 * exit code, or -1 (spawn failure or timeout, then killed). */
int proc_run(char *const argv[], const char *log_path, int timeout_ms);
/* Prints the last lines of a file to stderr. */
void file_tail(const char *path, int lines);
int rm_rf(const char *path);
/* A TCP port on 127.0.0.1 that was free a moment ago. */
int free_port(void);
/* Connects to 127.0.0.1:port (blocking, TCP_NODELAY); fd or -1. */
int tcp_connect(int port);
/* GET path from 127.0.0.1:port (HTTP/1.0) within timeout_ms: the body of a 200 answer,
 * malloc'd and NUL-terminated, or NULL. */
char *http_get(int port, const char *path, int timeout_ms);
/* User + system CPU seconds pid has used (/proc/PID/stat), or -1. */
double proc_cpu_s(pid_t pid);
/* Peak and current resident set of pid from /proc/PID/status, in KiB; 0 or -1. */
int proc_mem_kb(pid_t pid, uint64_t *hwm_kb, uint64_t *rss_kb);
/* Directory holding this executable. */
void self_dir(char *out, size_t len);
/* Finds a program: explicit path, else one of the candidates that exists. NULL if none. */
const char *find_prog(const char *explicit_path, const char *const *candidates, char *buf,
                      size_t len);

/* ---- PostgreSQL ------------------------------------------------------------------------ */

struct pg_env {
    char dir[1024];            /* scratch cluster dir ("" when --db was given) */
    char admin_conninfo[1024]; /* the server's maintenance database */
    const char *pg_sh;
    char log[1100];
};

/* Starts a scratch cluster under workdir with tests/pg.sh (or takes --db). 0 or -1. */
int pg_env_start(struct pg_env *e, const struct bench_opts *o, const char *workdir);
void pg_env_stop(struct pg_env *e);
/* Creates database name (dropping one of that name first) and writes its conninfo. 0/-1. */
int pg_db_create(struct pg_env *e, const char *name, char *conninfo, size_t len);
void pg_db_drop(struct pg_env *e, const char *name);
/* Checks a successful result of (project_id, votes) rows against a truth (w->truth or a
 * part's) with wl_check; res stays the caller's. false with the reason in why. */
struct pg_result;
bool pg_check_counts(const struct workload *w, const uint64_t *truth, const struct pg_result *res,
                     char *why, size_t why_len);

/* ---- peers ------------------------------------------------------------------------------ */

struct bench_ctx {
    const struct bench_opts *o;
    const struct workload *w;
    struct pg_env *pg; /* NULL until started */
    char workdir[1024];
    /* Pre-encoded wire frames (header included), one per batch, by collector. */
    uint8_t ***frames;
    size_t **frame_len;
    /* What the slow peers (Redis, PostgreSQL-direct) are given (--peer-votes): each
     * collector's first ops_limit[k] sends, needing its first batches_limit[k] batches. */
    size_t *ops_limit, *batches_limit;
    double setup_s; /* generating the workload (streamed: the recipe and the count pass) */
};

/* Encodes one Batch as a tallyd wire frame (header included) into *buf, growing it (its
 * capacity *cap); returns the frame's length. */
size_t frame_batch_encode(uint64_t seq, const uint64_t *ballots, const uint32_t *projects,
                          uint32_t n, uint8_t **buf, size_t *cap);
/* Encodes every batch as a tallyd wire frame (for tallyd and the decode+apply limit). */
void frames_encode(struct bench_ctx *c);
void frames_free(struct bench_ctx *c);

/* The --expected-ballots tallyd is given, and the limit sizes its ballot set with; 0 when
 * none is given (tallyd's own default). */
uint64_t bench_expected_ballots(const struct bench_opts *o, const struct workload *w);

/* A slow peer's end: it measured from t0 to t_end over the sends in ops_done; works out that
 * part (p, the caller frees it) and fills r's votes, rate and part figures. */
void peer_part_done(struct bench_ctx *c, struct peer_result *r, const size_t *ops_done, double t0,
                    double t_end, struct wl_part *p);
/* ", \"workload_part\": {...}" for the JSON: what a slow peer got through. */
void sb_part(struct sbuf *b, const struct bench_ctx *c, const struct wl_part *p,
             const size_t *ops_done);

void peer_limit_run(struct bench_ctx *c, struct peer_result *r);
/* The tallyd peer (plain TCP) and the tallyd_tls peer (mutual TLS 1.3, certificates made in
 * the scratch directory), either NULL when not asked for; their rounds take turns. */
void peer_tallyd_run(struct bench_ctx *c, struct peer_result *plain, struct peer_result *tls);
/* per_batch: one transaction per batch (postgres_per_batch) instead of several. */
void peer_postgres_run(struct bench_ctx *c, struct peer_result *r, bool per_batch);
/* fsync_always: appendfsync always (redis_always) instead of everysec. */
void peer_redis_run(struct bench_ctx *c, struct peer_result *r, bool fsync_always);
/* The redis-server binary, or NULL. */
const char *redis_find(const struct bench_opts *o, char *buf, size_t len);

/* ---- the report (report.c) -------------------------------------------------------------- */

/* The table on stdout. */
void report_table(const struct bench_ctx *c, struct peer_result *res, int status);
/* The JSON file (--json). Returns 0 or -1. */
int report_json(const struct bench_ctx *c, struct peer_result *res, int status);

#endif
