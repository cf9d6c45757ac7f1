/* Integration-test support: runs the real binaries (tallyd, tallyctl, tally-push, tally-gen)
 * against the throw-away PostgreSQL that tests/pg.sh runs for the CTest fixture `pg`.
 * Nothing here asserts: every call returns 0 / a value or -1 after printing why on stderr,
 * and the cmocka tests decide. Every wait is bounded; every child process is killed when the
 * test process ends (PR_SET_PDEATHSIG and ts_cleanup). */
#ifndef TESTS_SUPPORT_H
#define TESTS_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- environment (set by tests/integration/CMakeLists.txt) ------------------------- */

/* TALLY_BIN_DIR, TALLY_SRC_DIR, TALLY_PG_DIR; abort with a message when unset. */
const char *ts_bin_dir(void);
const char *ts_src_dir(void);
const char *ts_pg_dir(void);
/* Path of a program: "tallyd", "tallyctl", "tally-push", "tally-gen". Taken from the
 * environment (TALLYD, TALLYCTL, TALLY_PUSH, TALLY_GEN) or found in the build tree. */
const char *ts_prog(const char *name);
/* A fresh, empty scratch directory for one test: $TALLY_BIN_DIR/itest/<name>. */
const char *ts_workdir(const char *name);
/* Milliseconds on a monotonic clock. */
int64_t ts_now_ms(void);
void ts_sleep_ms(int ms);
/* Multiplier for time limits (TALLY_TEST_TIME_SCALE, default 1; sanitizer builds set more). */
int ts_scale(int ms);

/* ---- processes ------------------------------------------------------------------------ */

struct ts_proc {
    pid_t pid; /* 0 when not running */
    char name[64];
    char out[512]; /* stdout file ("" = /dev/null) */
    char err[512]; /* stderr file */
    bool exited;
    int status; /* raw wait status once exited */
};

/* Starts argv[0] (a path) with stdin from /dev/null, stdout and stderr appended to the named
 * files (NULL: /dev/null). Returns 0 or -1. */
int ts_spawn(struct ts_proc *p, const char *name, char *const argv[], const char *out_path,
             const char *err_path);
/* True once the process has exited (reaps it). */
bool ts_proc_done(struct ts_proc *p);
/* Waits up to timeout_ms; returns 0 when it exited, -1 on timeout. */
int ts_proc_wait(struct ts_proc *p, int timeout_ms);
/* Sends sig (no-op when exited). */
void ts_proc_signal(struct ts_proc *p, int sig);
/* SIGKILL and reap. */
void ts_proc_kill(struct ts_proc *p);
/* Exit code, or 128 + signal number, or -1 while running. */
int ts_proc_code(const struct ts_proc *p);
/* Prints the last `lines` lines of a file to stderr, headed by a label. */
void ts_dump_tail(const char *label, const char *path, int lines);
/* Kills every process started with ts_spawn that still runs. Safe to call twice. */
void ts_cleanup(void);

/* Runs argv to completion (at most timeout_ms; killed after), capturing stdout into a
 * malloc'd string *out (may be NULL) and stderr into err_path (NULL: inherited).
 * Returns the exit code, 128 + signal, or -1 on timeout or spawn failure. */
int ts_run(char *const argv[], char **out, const char *err_path, int timeout_ms);

/* ---- files ---------------------------------------------------------------------------- */

/* Whole file as a NUL-terminated malloc'd string, or NULL. */
char *ts_read_file(const char *path);
int ts_write_file(const char *path, const char *text);
/* cp -a src dst (dst must not exist). */
int ts_copy_dir(const char *src, const char *dst);
int ts_rm_rf(const char *path);
/* Compares a results CSV text with the truth file line by line; prints the first
 * differences and the count of differing lines. Returns 0 when identical. */
int ts_csv_compare(const char *got, const char *truth_path);

/* ---- network -------------------------------------------------------------------------- */

/* A TCP port on 127.0.0.1 that was free a moment ago. */
uint16_t ts_free_port(void);
/* Connects to 127.0.0.1:port; returns the fd or -1. */
int ts_connect(uint16_t port, int timeout_ms);
/* GET http://127.0.0.1:port/path; returns the status code or -1. Body (may be NULL) gets
 * up to len - 1 bytes. */
int ts_http_get(uint16_t port, const char *path, char *body, size_t len, int timeout_ms);

/* In a Prometheus text body, the value text of the sample line `series value` (series
 * exactly as written, labels included), or NULL; and that value as a number, or NAN. */
const char *ts_metric_sample(const char *text, const char *series);
double ts_metric(const char *text, const char *series);

/* ---- PostgreSQL (the fixture server) -------------------------------------------------- */

/* Conninfo of the fixture server's `postgres` database (from $TALLY_PG_DIR/conninfo). */
const char *ts_pg_conninfo(void);
/* tests/pg.sh start|stop on the fixture; returns its exit code. */
int ts_pg(const char *action);
/* Drops (forcing out sessions) and creates database `name` on the fixture server; writes
 * its conninfo into out. Returns 0 or -1. */
int ts_db_create(const char *name, char *out, size_t len);
int ts_db_drop(const char *name);
/* Runs one query returning a single value (first row, first column) as uint64.
 * Returns 0, or -1 (error, no row, or NULL). */
int ts_sql_u64(const char *conninfo, const char *sql, uint64_t *out);
/* Runs a statement; returns 0 or -1. */
int ts_sql_exec(const char *conninfo, const char *sql);
/* A session kept open (e.g. to hold locks). NULL on failure. */
struct ts_db;
struct ts_db *ts_db_open(const char *conninfo);
int ts_db_exec(struct ts_db *db, const char *sql);
int ts_db_u64(struct ts_db *db, const char *sql, uint64_t *out);
void ts_db_close(struct ts_db *db); /* NULL is a no-op */

/* ---- the consultation: data, tallyctl, tallyd, tally-push ----------------------------- */

struct ts_truth {
    uint64_t votes, accepted, duplicate, rejected, malformed;
};

/* tally-gen registry + votes into dir/registry.csv and dir/votes/ (collector-<i>.csv,
 * truth.csv, truth-summary.txt). */
int ts_gen(const char *dir, uint32_t projects, uint32_t circuits, uint32_t collectors,
           uint64_t votes, const char *repeat_rate, const char *unknown_rate, uint64_t malformed,
           uint64_t seed, struct ts_truth *truth);
int ts_truth_read(const char *path, struct ts_truth *t);

/* tallyctl --db conninfo ARGS...; stdout into *out (may be NULL). Returns its exit code. */
int ts_ctl(const char *conninfo, char **out, const char *arg1, const char *arg2, const char *arg3);
/* migrate + load-registry + add-collector c0..c<n-1>. Returns 0 or -1. */
int ts_db_prepare(const char *conninfo, const char *registry, uint32_t collectors);
/* tallyctl results --format csv; malloc'd or NULL. */
char *ts_results_csv(const char *conninfo);

struct ts_tallyd {
    struct ts_proc proc;
    char conninfo[512];
    char dir[1024];
    uint16_t port, http_port;
    int checkpoint_ms;
    int starts;
    char extra[2048]; /* extra arguments, space separated ("" none) */
};

/* First call picks the ports; later calls reuse them. Starts tallyd (log in
 * dir/tallyd-<n>.log) and waits up to timeout_ms for GET /readyz = 200. Returns 0 or -1
 * (the log's tail printed). */
int ts_tallyd_start(struct ts_tallyd *d, int timeout_ms);
/* Waits for /healthz 200 only (e.g. while PostgreSQL is down). */
int ts_tallyd_wait_http(struct ts_tallyd *d, const char *path, int want, int timeout_ms);
/* SIGTERM and wait: returns its exit code (0 expected) or -1 on timeout (then killed). */
int ts_tallyd_stop(struct ts_tallyd *d, int timeout_ms);
/* SIGKILL and reap. */
void ts_tallyd_kill(struct ts_tallyd *d);

/* What tally-push prints on success: "batches B votes V accepted A duplicate D rejected R". */
struct ts_push_result {
    uint64_t batches, votes, accepted, duplicate, rejected;
};

/* Starts tally-push --server 127.0.0.1:port --collector id --spool spool [--batch n] file;
 * stdout in out_path, stderr in err_path. */
int ts_push_spawn(struct ts_proc *p, const struct ts_tallyd *d, const char *collector,
                  const char *spool, const char *file, uint32_t batch, const char *out_path,
                  const char *err_path);
/* ts_push_spawn over TLS: with --tls-cert cert --tls-key key --tls-ca ca. */
int ts_push_spawn_tls(struct ts_proc *p, const struct ts_tallyd *d, const char *collector,
                      const char *spool, const char *file, uint32_t batch, const char *cert,
                      const char *key, const char *ca, const char *out_path, const char *err_path);
/* Parses the result line out of a tally-push stdout file. Returns 0 or -1. */
int ts_push_result_read(const char *out_path, struct ts_push_result *r);
/* The same, added into *sum (several collectors' lines). Returns 0 or -1. */
int ts_push_result_add(const char *out_path, struct ts_push_result *sum);

/* ---- one test's world: scratch dir, generated data, its own database, a tallyd --------- */

struct ts_case {
    char name[64];
    char dir[1024];      /* $TALLY_BIN_DIR/itest/<name> */
    char registry[1100]; /* dir/registry.csv */
    char votes[1100];    /* dir/votes (collector-<i>.csv, truth.csv, truth-summary.txt) */
    char truth_csv[1200];
    char conninfo[512];  /* database <name> on the fixture server */
    uint32_t collectors; /* registered as c0..c<n-1> */
    struct ts_truth truth;
    struct ts_tallyd d; /* not started by setup */
};

/* Makes the scratch dir and data, creates and prepares the database. 0 or -1. */
int ts_case_setup(struct ts_case *c, const char *name, uint32_t projects, uint32_t circuits,
                  uint32_t collectors, uint64_t votes, const char *repeat_rate,
                  const char *unknown_rate, uint64_t malformed, uint64_t seed);
/* Only the scratch dir and the data (no database, conninfo empty): for a test that runs
 * its own PostgreSQL servers. 0 or -1. */
int ts_case_data(struct ts_case *c, const char *name, uint32_t projects, uint32_t circuits,
                 uint32_t collectors, uint64_t votes, const char *repeat_rate,
                 const char *unknown_rate, uint64_t malformed, uint64_t seed);
/* Kills what still runs; drops the database unless the test failed (keep = true). */
void ts_case_teardown(struct ts_case *c, bool keep);
/* Paths for collector i: its input file, spool dir, stdout and stderr files. */
void ts_case_paths(const struct ts_case *c, uint32_t i, char *file, char *spool, char *out,
                   char *err, size_t len);
/* Starts tally-push for collector i (id c<i>, its own file and spool). */
int ts_case_push(struct ts_case *c, struct ts_proc *p, uint32_t i, uint32_t batch);
/* The same over TLS with the certificate of a `tallyctl ca` directory: ca_dir/c<i>.crt,
 * ca_dir/c<i>.key and ca_dir/ca.crt. */
int ts_case_push_tls(struct ts_case *c, struct ts_proc *p, uint32_t i, uint32_t batch,
                     const char *ca_dir);
/* tallyctl results --format csv equals votes/truth.csv (differences printed). 0 or -1. */
int ts_case_results_match(struct ts_case *c);
/* The truth CSV text with `add` more votes for project_id (malloc'd), and the first
 * project id of the truth file. */
char *ts_truth_with(const char *truth_path, uint32_t project_id, uint64_t add);
uint32_t ts_truth_first_project(const char *truth_path);
/* Sum of collectors' durable figures in the database (collector_progress). 0 or -1. */
int ts_db_collector_sums(const char *conninfo, struct ts_push_result *sum);
/* The end of every exactly-once test: the results equal votes/truth.csv, and both the
 * database's collector sums and what the pushes printed (pushed) equal the truth's totals.
 * Prints the first difference. 0 or -1. */
int ts_case_totals_match(struct ts_case *c, const struct ts_push_result *pushed);

/* ---- raw protocol (for malformed input and retransmission tests) ---------------------- */

struct ts_frame {
    int kind; /* Tally__Frame__MsgCase */
    uint64_t seq, durable_seq, expected_seq;
    uint32_t accepted, duplicate, rejected;
    bool retransmit;
    int error_code;
    char message[256];
};

/* Sends one frame: Hello{collector, "", version}. */
int ts_wire_hello(int fd, const char *collector, uint32_t version);
/* Sends Batch{seq, ballots, projects}. */
int ts_wire_batch(int fd, uint64_t seq, const uint64_t *ballots, const uint32_t *projects,
                  size_t n);
/* ---- the live event stream (/v1/events) ---------------------------------------------- */

struct ts_sse {
    int fd;
    char *raw, *body; /* as received; the chunked body decoded */
    size_t raw_len, consumed, body_len, read;
};

struct ts_sse_event {
    uint64_t id; /* the id's leading number (the checkpoint) */
    char kind[32];
    char *data; /* malloc'd: the caller frees it */
};

/* Connects to /v1/events on 127.0.0.1:port (resuming after last_event_id, or NULL). 0 or
 * -1; ts_sse_close in both cases. */
int ts_sse_open(struct ts_sse *s, uint16_t port, const char *last_event_id);
/* The next event within ms (comments and retry lines skipped); false when none came, the
 * stream ended or did not answer 200 (said on stderr). */
bool ts_sse_next(struct ts_sse *s, struct ts_sse_event *e, int ms);
void ts_sse_close(struct ts_sse *s);

/* Sends any frame; 0 or -1. */
struct Tally__Frame;
int ts_wire_send_frame(int fd, const struct Tally__Frame *f);
/* Receives one whole protobuf-c frame within timeout_ms (NULL on timeout, close or
 * undecodable bytes); free it with tally__frame__free_unpacked(f, NULL). */
struct Tally__Frame *ts_wire_recv_frame(int fd, int timeout_ms);
/* The next frame about seq: its Ack or an Error (other acks skipped; every durable_seq seen
 * raises *durable, which may be NULL); NULL after timeout_ms or on close. */
struct Tally__Frame *ts_wire_answer(int fd, uint64_t seq, uint64_t *durable, int timeout_ms);
/* Reads frames until *durable (raised by every Ack's durable_seq) reaches seq: 0, or -1
 * after timeout_ms. */
int ts_wire_wait_durable(int fd, uint64_t seq, uint64_t *durable, int timeout_ms);
/* Receives one frame within timeout_ms. Returns 1 with *f filled, 0 on orderly close or
 * connection reset, -1 on timeout or undecodable data. */
int ts_wire_recv(int fd, struct ts_frame *f, int timeout_ms);
/* Sends raw bytes. */
int ts_send_all(int fd, const void *buf, size_t len);
/* The bytes of one frame (4-byte big-endian length, then the body): Hello{collector, "",
 * version} or Batch{seq, ballots, projects}, into a malloc'd *buf (the caller frees it).
 * Return the length. */
size_t ts_wire_hello_bytes(uint8_t **buf, const char *collector, uint32_t version);
size_t ts_wire_batch_bytes(uint8_t **buf, uint64_t seq, const uint64_t *ballots,
                           const uint32_t *projects, size_t n);
/* Decodes one frame body (without its length) into *f. Returns 1, or -1 when undecodable
 * (said on stderr). */
int ts_wire_decode(const uint8_t *body, size_t len, struct ts_frame *f);

/* ---- raw protocol over TLS (tls.c: OpenSSL, every wait bounded) ----------------------- */

struct ssl_ctx_st; /* OpenSSL's SSL_CTX */
struct ssl_st;     /* OpenSSL's SSL */

/* One TLS session to the collector port, on a non-blocking socket. */
struct ts_tls {
    int fd; /* -1 when closed */
    struct ssl_ctx_st *ctx;
    struct ssl_st *ssl;
    uint8_t *in; /* what ts_tls_recv has read of the next frame: kept across its timeouts */
    size_t in_len, in_cap;
};

/* Connects to 127.0.0.1:port and completes a TLS handshake within 10 s (scaled),
 * presenting cert/key (both NULL: no client certificate) and verifying the server's
 * certificate against the CA file ca and the name 127.0.0.1. Returns 0, or -1 with *t
 * closed and OpenSSL's errors on stderr. In TLS 1.3 the server judges the client's
 * certificate after the client's handshake is done: a refusal shows at the first read. */
int ts_tls_open(struct ts_tls *t, uint16_t port, const char *cert, const char *key, const char *ca);
/* Sends len bytes within 10 s (scaled). Returns 0 or -1. Each call's bytes go out in
 * records of their own: one byte per call is one record per byte. */
int ts_tls_send_all(struct ts_tls *t, const void *buf, size_t len);
/* One write attempt that does not wait: the count of bytes taken (> 0), 0 when the socket
 * is full (then write nothing else on t but the same bytes again), -1 on error. */
long ts_tls_send_some(struct ts_tls *t, const void *buf, size_t len);
/* ts_wire_hello / ts_wire_batch over TLS. Return 0 or -1. */
int ts_tls_hello(struct ts_tls *t, const char *collector, uint32_t version);
int ts_tls_batch(struct ts_tls *t, uint64_t seq, const uint64_t *ballots, const uint32_t *projects,
                 size_t n);
/* Receives one frame within timeout_ms, as ts_wire_recv: 1 with *f filled; 0 when the
 * session ended (close_notify, EOF, reset, or a fatal alert such as the server refusing
 * our certificate: said on stderr); -1 on timeout (nothing lost: the next call goes on
 * with the bytes already read) or undecodable data. */
int ts_tls_recv(struct ts_tls *t, struct ts_frame *f, int timeout_ms);
/* Frees the session and closes the socket (no close_notify). Safe on a closed *t. */
void ts_tls_close(struct ts_tls *t);

/* ---- the record: old databases, copies, tallyctl migrate / verify ---------------------- */

/* Runs one query; its first row's first column as a malloc'd string, or NULL (error, no
 * row, or NULL). */
char *ts_sql_text(const char *conninfo, const char *sql);
/* Drops database `name` and creates it as a copy of database `template_name` (which no
 * session may be using); writes its conninfo into out. Returns 0 or -1. */
int ts_db_clone(const char *template_name, const char *name, char *out, size_t len);
/* A registry CSV of `projects` projects (ids 1000, 1001, ...), 8 per circuit, over three
 * states, written to path. Returns 0 or -1. */
int ts_registry_write(const char *path, uint32_t projects);
/* tallyctl --db conninfo ARGS... with stdout in *out and stderr in *err (both malloc'd,
 * either may be NULL). Returns the exit code (-1 on timeout). */
int ts_ctl_capture(const char *conninfo, char **out, char **err, const char *arg1, const char *arg2,
                   const char *arg3);

#define TS_V3_SAMPLE 16

/* What ts_v3_record_write wrote. */
struct ts_v3_summary {
    uint64_t checkpoints, batches, votes, accepted, duplicate, rejected;
    uint64_t one_vote_batches;
    uint64_t collectors_used; /* collectors with at least one batch */
    /* Tokens of one-vote batches: the old record linked each to its choice. */
    uint64_t one_vote_tokens[TS_V3_SAMPLE];
    size_t n_one_vote_tokens;
};

/* Writes by SQL, into a database at schema version 3 with a registry loaded and
 * collectors c0..c<collectors-1> registered, a record as the version-3 tallyd wrote it:
 * `checkpoints` checkpoints (ids 1, 2, ...) of batches from the collectors (seqs 1, 2, ...
 * each; some batches of one vote), each batch row with its accepted tokens (sorted, 8
 * bytes little-endian) and its per-project counts, duplicates and votes for an unknown
 * project among the votes; tallies incremented and collectors' watermarks and totals
 * moved per checkpoint. About `votes` votes; the same seed writes the same record.
 * Returns 0 or -1. */
int ts_v3_record_write(const char *conninfo, uint32_t collectors, uint32_t checkpoints,
                       uint64_t votes, uint64_t seed, struct ts_v3_summary *sum);

#endif
