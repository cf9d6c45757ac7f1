/* Integration-test support, part two: the fixture PostgreSQL (libpq), test data
 * (tally-gen), tallyctl, tallyd, tally-push, and a raw protocol client (protobuf-c) for the
 * tests that must send what tally-push never would. */
#include "support.h"

#include "tally.pb-c.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libpq-fe.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- PostgreSQL ----------------------------------------------------------------------- */

const char *ts_pg_conninfo(void)
{
    static char conninfo[512];
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/conninfo", ts_pg_dir());
    char *text = ts_read_file(path);
    if (!text) {
        fprintf(stderr, "support: %s missing: did the pg_start fixture run?\n", path);
        return NULL;
    }
    text[strcspn(text, "\r\n")] = '\0';
    snprintf(conninfo, sizeof conninfo, "%s", text);
    free(text);
    return conninfo;
}

int ts_pg(const char *action)
{
    char script[PATH_MAX];
    snprintf(script, sizeof script, "%s/tests/pg.sh", ts_src_dir());
    char *argv[] = {"/bin/bash", script, (char *)action, (char *)ts_pg_dir(), NULL};
    int rc = ts_run(argv, NULL, NULL, 120000);
    if (rc != 0)
        fprintf(stderr, "support: tests/pg.sh %s failed (%d)\n", action, rc);
    return rc;
}

static void quiet_notices(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static PGconn *pg_connect(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "support: connect '%s': %s", conninfo, PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, quiet_notices, NULL);
    return c;
}

static int pg_exec(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "support: '%s': %s", sql, PQerrorMessage(c));
        rc = -1;
    }
    PQclear(r);
    return rc;
}

static int pg_u64(PGconn *c, const char *sql, uint64_t *out)
{
    PGresult *r = PQexec(c, sql);
    int rc = -1;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "support: '%s': %s", sql, PQerrorMessage(c));
    } else if (PQntuples(r) < 1 || PQgetisnull(r, 0, 0)) {
        fprintf(stderr, "support: '%s': no value\n", sql);
    } else {
        *out = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
        rc = 0;
    }
    PQclear(r);
    return rc;
}

struct ts_db *ts_db_open(const char *conninfo)
{
    return (struct ts_db *)pg_connect(conninfo);
}

int ts_db_exec(struct ts_db *db, const char *sql)
{
    return pg_exec((PGconn *)db, sql);
}

int ts_db_u64(struct ts_db *db, const char *sql, uint64_t *out)
{
    return pg_u64((PGconn *)db, sql, out);
}

void ts_db_close(struct ts_db *db)
{
    if (db)
        PQfinish((PGconn *)db);
}

int ts_sql_exec(const char *conninfo, const char *sql)
{
    PGconn *c = pg_connect(conninfo);
    if (!c)
        return -1;
    int rc = pg_exec(c, sql);
    PQfinish(c);
    return rc;
}

int ts_sql_u64(const char *conninfo, const char *sql, uint64_t *out)
{
    PGconn *c = pg_connect(conninfo);
    if (!c)
        return -1;
    int rc = pg_u64(c, sql, out);
    PQfinish(c);
    return rc;
}

int ts_db_drop(const char *name)
{
    const char *base = ts_pg_conninfo();
    if (!base)
        return -1;
    char sql[256];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", name);
    return ts_sql_exec(base, sql);
}

int ts_db_create(const char *name, char *out, size_t len)
{
    const char *base = ts_pg_conninfo();
    if (!base || ts_db_drop(name))
        return -1;
    char sql[256];
    snprintf(sql, sizeof sql, "CREATE DATABASE \"%s\"", name);
    if (ts_sql_exec(base, sql))
        return -1;
    /* The same server and user, another database. */
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(base, &err);
    if (!opts) {
        fprintf(stderr, "support: bad conninfo '%s': %s\n", base, err ? err : "?");
        PQfreemem(err);
        return -1;
    }
    size_t used = 0;
    out[0] = '\0';
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !*o->val || !strcmp(o->keyword, "dbname"))
            continue;
        used +=
            (size_t)snprintf(out + used, used < len ? len - used : 0, "%s=%s ", o->keyword, o->val);
    }
    used += (size_t)snprintf(out + used, used < len ? len - used : 0, "dbname=%s", name);
    PQconninfoFree(opts);
    return used < len ? 0 : -1;
}

/* ---- test data ------------------------------------------------------------------------ */

int ts_truth_read(const char *path, struct ts_truth *t)
{
    char *text = ts_read_file(path);
    if (!text) {
        fprintf(stderr, "support: cannot read %s\n", path);
        return -1;
    }
    memset(t, 0, sizeof *t);
    int found = 0;
    const char *names[] = {"votes", "accepted", "duplicate", "rejected", "malformed"};
    uint64_t *fields[] = {&t->votes, &t->accepted, &t->duplicate, &t->rejected, &t->malformed};
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char key[64];
        unsigned long long v;
        if (sscanf(line, "%63s %llu", key, &v) != 2)
            continue;
        for (int i = 0; i < 5; i++) {
            if (!strcmp(key, names[i])) {
                *fields[i] = v;
                found++;
            }
        }
    }
    free(text);
    return found == 5 ? 0 : -1;
}

int ts_gen(const char *dir, uint32_t projects, uint32_t circuits, uint32_t collectors,
           uint64_t votes, const char *repeat_rate, const char *unknown_rate, uint64_t malformed,
           uint64_t seed, struct ts_truth *truth)
{
    char reg[PATH_MAX], out_dir[PATH_MAX], p[16], c[16], s[16], k[16], v[24], m[24], sd[24];
    snprintf(reg, sizeof reg, "%s/registry.csv", dir);
    snprintf(out_dir, sizeof out_dir, "%s/votes", dir);
    snprintf(p, sizeof p, "%u", projects);
    snprintf(c, sizeof c, "%u", circuits);
    snprintf(s, sizeof s, "%u", circuits < 25 ? circuits : 25);
    snprintf(k, sizeof k, "%u", collectors);
    snprintf(v, sizeof v, "%llu", (unsigned long long)votes);
    snprintf(m, sizeof m, "%llu", (unsigned long long)malformed);
    snprintf(sd, sizeof sd, "%llu", (unsigned long long)seed);
    const char *gen = ts_prog("tally-gen");
    char *a1[] = {(char *)gen, "registry", "--out", reg,      "--projects", p,   "--circuits",
                  c,           "--states", s,       "--seed", sd,           NULL};
    if (ts_run(a1, NULL, NULL, 60000) != 0) {
        fprintf(stderr, "support: tally-gen registry failed\n");
        return -1;
    }
    char *a2[] = {(char *)gen,      "votes",
                  "--registry",     reg,
                  "--collectors",   k,
                  "--votes",        v,
                  "--out-dir",      out_dir,
                  "--repeat-rate",  (char *)repeat_rate,
                  "--unknown-rate", (char *)unknown_rate,
                  "--malformed",    m,
                  "--seed",         sd,
                  "--quiet",        NULL};
    if (ts_run(a2, NULL, NULL, 120000) != 0) {
        fprintf(stderr, "support: tally-gen votes failed\n");
        return -1;
    }
    char sum[PATH_MAX + 32];
    snprintf(sum, sizeof sum, "%s/truth-summary.txt", out_dir);
    return ts_truth_read(sum, truth);
}

/* ---- tallyctl ------------------------------------------------------------------------- */

/* tallyctl --db conninfo arg1 [arg2 [arg3]], stderr into err_path (NULL: inherited). */
static int ctl_run(const char *conninfo, char **out, const char *err_path, const char *arg1,
                   const char *arg2, const char *arg3)
{
    char *argv[] = {(char *)ts_prog("tallyctl"),
                    "--db",
                    (char *)conninfo,
                    (char *)arg1,
                    (char *)arg2,
                    (char *)arg3,
                    NULL};
    return ts_run(argv, out, err_path, ts_scale(120000));
}

int ts_ctl(const char *conninfo, char **out, const char *arg1, const char *arg2, const char *arg3)
{
    int rc = ctl_run(conninfo, out, NULL, arg1, arg2, arg3);
    if (rc != 0)
        fprintf(stderr, "support: tallyctl %s %s %s exited %d\n", arg1, arg2 ? arg2 : "",
                arg3 ? arg3 : "", rc);
    return rc;
}

int ts_db_prepare(const char *conninfo, const char *registry, uint32_t collectors)
{
    if (ts_ctl(conninfo, NULL, "migrate", NULL, NULL) != 0 ||
        ts_ctl(conninfo, NULL, "load-registry", registry, NULL) != 0)
        return -1;
    for (uint32_t i = 0; i < collectors; i++) {
        char id[16];
        snprintf(id, sizeof id, "c%u", i);
        if (ts_ctl(conninfo, NULL, "add-collector", id, NULL) != 0)
            return -1;
    }
    return 0;
}

char *ts_results_csv(const char *conninfo)
{
    char *out = NULL;
    if (ts_ctl(conninfo, &out, "results", "--format", "csv") != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* ---- tallyd --------------------------------------------------------------------------- */

int ts_tallyd_wait_http(struct ts_tallyd *d, const char *path, int want, int timeout_ms)
{
    int64_t deadline = ts_now_ms() + timeout_ms;
    int last = -1;
    while (ts_now_ms() < deadline) {
        if (ts_proc_done(&d->proc)) {
            fprintf(stderr, "support: tallyd exited (%d) while waiting for %s\n",
                    ts_proc_code(&d->proc), path);
            ts_dump_tail("tallyd log", d->proc.err, 40);
            return -1;
        }
        last = ts_http_get(d->http_port, path, NULL, 0, 1000);
        if (last == want)
            return 0;
        ts_sleep_ms(50);
    }
    fprintf(stderr, "support: GET %s did not answer %d within %d ms (last: %d)\n", path, want,
            timeout_ms, last);
    ts_dump_tail("tallyd log", d->proc.err, 40);
    return -1;
}

int ts_tallyd_start(struct ts_tallyd *d, int timeout_ms)
{
    if (!d->port) {
        d->port = ts_free_port();
        do
            d->http_port = ts_free_port();
        while (d->http_port == d->port);
    }
    if (!d->checkpoint_ms)
        d->checkpoint_ms = 100;
    char listen[32], http[32], cp[16], log[PATH_MAX];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", d->port);
    snprintf(http, sizeof http, "127.0.0.1:%u", d->http_port);
    snprintf(cp, sizeof cp, "%d", d->checkpoint_ms);
    snprintf(log, sizeof log, "%s/tallyd-%d.log", d->dir, ++d->starts);
    char *argv[64] = {
        (char *)ts_prog("tallyd"), "--db", d->conninfo,   "--listen", listen, "--http", http,
        "--checkpoint-ms",         cp,     "--log-level", "info"};
    int argc = 11;
    char extra[sizeof d->extra];
    snprintf(extra, sizeof extra, "%s", d->extra);
    for (char *tok = strtok(extra, " "); tok && argc < 63; tok = strtok(NULL, " "))
        argv[argc++] = tok;
    argv[argc] = NULL;
    if (ts_spawn(&d->proc, "tallyd", argv, NULL, log))
        return -1;
    return ts_tallyd_wait_http(d, "/readyz", 200, timeout_ms);
}

int ts_tallyd_stop(struct ts_tallyd *d, int timeout_ms)
{
    if (ts_proc_done(&d->proc))
        return ts_proc_code(&d->proc);
    ts_proc_signal(&d->proc, SIGTERM);
    if (ts_proc_wait(&d->proc, timeout_ms) != 0) {
        fprintf(stderr, "support: tallyd did not exit within %d ms of SIGTERM; killed\n",
                timeout_ms);
        ts_dump_tail("tallyd log", d->proc.err, 40);
        ts_proc_kill(&d->proc);
        return -1;
    }
    int code = ts_proc_code(&d->proc);
    if (code != 0)
        ts_dump_tail("tallyd log", d->proc.err, 40);
    return code;
}

void ts_tallyd_kill(struct ts_tallyd *d)
{
    ts_proc_kill(&d->proc);
}

/* ---- tally-push ----------------------------------------------------------------------- */

/* tally-push's argv for both: the TLS triple when cert is not NULL. */
static int push_spawn(struct ts_proc *p, const struct ts_tallyd *d, const char *collector,
                      const char *spool, const char *file, uint32_t batch, const char *cert,
                      const char *key, const char *ca, const char *out_path, const char *err_path)
{
    char server[32], b[16];
    snprintf(server, sizeof server, "127.0.0.1:%u", d->port);
    snprintf(b, sizeof b, "%u", batch);
    char *argv[20] = {(char *)ts_prog("tally-push"),
                      "--server",
                      server,
                      "--collector",
                      (char *)collector,
                      "--spool",
                      (char *)spool};
    int n = 7;
    if (batch) {
        argv[n++] = "--batch";
        argv[n++] = b;
    }
    if (cert) {
        argv[n++] = "--tls-cert";
        argv[n++] = (char *)cert;
        argv[n++] = "--tls-key";
        argv[n++] = (char *)key;
        argv[n++] = "--tls-ca";
        argv[n++] = (char *)ca;
    }
    argv[n++] = (char *)file;
    argv[n] = NULL;
    return ts_spawn(p, collector, argv, out_path, err_path);
}

int ts_push_spawn(struct ts_proc *p, const struct ts_tallyd *d, const char *collector,
                  const char *spool, const char *file, uint32_t batch, const char *out_path,
                  const char *err_path)
{
    return push_spawn(p, d, collector, spool, file, batch, NULL, NULL, NULL, out_path, err_path);
}

int ts_push_spawn_tls(struct ts_proc *p, const struct ts_tallyd *d, const char *collector,
                      const char *spool, const char *file, uint32_t batch, const char *cert,
                      const char *key, const char *ca, const char *out_path, const char *err_path)
{
    return push_spawn(p, d, collector, spool, file, batch, cert, key, ca, out_path, err_path);
}

int ts_push_result_read(const char *out_path, struct ts_push_result *r)
{
    char *text = ts_read_file(out_path);
    if (!text)
        return -1;
    int rc = -1;
    const char *line = text;
    while (line && *line) {
        unsigned long long b, v, a, dup, rej;
        if (sscanf(line, "batches %llu votes %llu accepted %llu duplicate %llu rejected %llu", &b,
                   &v, &a, &dup, &rej) == 5) {
            *r = (struct ts_push_result){b, v, a, dup, rej};
            rc = 0; /* keep the last one: the file is appended to across restarts */
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    free(text);
    return rc;
}

/* ---- raw protocol ----------------------------------------------------------------------- */

static size_t frame_bytes(uint8_t **buf, const Tally__Frame *f)
{
    size_t n = tally__frame__get_packed_size(f);
    *buf = malloc(n + 4);
    if (!*buf)
        abort();
    uint32_t be = htonl((uint32_t)n);
    memcpy(*buf, &be, 4);
    tally__frame__pack(f, *buf + 4);
    return n + 4;
}

size_t ts_wire_hello_bytes(uint8_t **buf, const char *collector, uint32_t version)
{
    Tally__Hello h = TALLY__HELLO__INIT;
    h.collector_id = (char *)collector;
    h.protocol_version = version;
    Tally__Frame f = TALLY__FRAME__INIT;
    f.msg_case = TALLY__FRAME__MSG_HELLO;
    f.hello = &h;
    return frame_bytes(buf, &f);
}

size_t ts_wire_batch_bytes(uint8_t **buf, uint64_t seq, const uint64_t *ballots,
                           const uint32_t *projects, size_t n)
{
    Tally__Batch b = TALLY__BATCH__INIT;
    b.seq = seq;
    b.n_ballots = n;
    b.ballots = (uint64_t *)ballots;
    b.n_projects = n;
    b.projects = (uint32_t *)projects;
    Tally__Frame f = TALLY__FRAME__INIT;
    f.msg_case = TALLY__FRAME__MSG_BATCH;
    f.batch = &b;
    return frame_bytes(buf, &f);
}

int ts_wire_hello(int fd, const char *collector, uint32_t version)
{
    uint8_t *buf;
    size_t n = ts_wire_hello_bytes(&buf, collector, version);
    int rc = ts_send_all(fd, buf, n);
    free(buf);
    return rc;
}

int ts_wire_batch(int fd, uint64_t seq, const uint64_t *ballots, const uint32_t *projects, size_t n)
{
    uint8_t *buf;
    size_t len = ts_wire_batch_bytes(&buf, seq, ballots, projects, n);
    int rc = ts_send_all(fd, buf, len);
    free(buf);
    return rc;
}

/* Reads exactly len bytes before the deadline: 1 done, 0 closed, -1 timeout/error. */
static int recv_exact(int fd, uint8_t *buf, size_t len, int64_t deadline)
{
    size_t got = 0;
    while (got < len) {
        int left = (int)(deadline - ts_now_ms());
        if (left <= 0)
            return -1;
        struct pollfd pfd = {fd, POLLIN, 0};
        int r = poll(&pfd, 1, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        ssize_t n = recv(fd, buf + got, len - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE)))
            return 0;
        if (n < 0)
            return -1;
        got += (size_t)n;
    }
    return 1;
}

int ts_wire_send_frame(int fd, const Tally__Frame *f)
{
    uint8_t *buf;
    size_t n = frame_bytes(&buf, f);
    int rc = ts_send_all(fd, buf, n);
    free(buf);
    return rc;
}

Tally__Frame *ts_wire_recv_frame(int fd, int timeout_ms)
{
    int64_t deadline = ts_now_ms() + timeout_ms;
    uint8_t hdr[4];
    if (recv_exact(fd, hdr, 4, deadline) <= 0)
        return NULL;
    uint32_t len;
    memcpy(&len, hdr, 4);
    len = ntohl(len);
    if (len > 64u * 1024 * 1024)
        return NULL;
    uint8_t *body = malloc(len ? len : 1);
    if (!body)
        abort();
    Tally__Frame *f = NULL;
    if (recv_exact(fd, body, len, deadline) > 0)
        f = tally__frame__unpack(NULL, len, body);
    free(body);
    return f;
}

Tally__Frame *ts_wire_answer(int fd, uint64_t seq, uint64_t *durable, int timeout_ms)
{
    int64_t deadline = ts_now_ms() + timeout_ms;
    while (ts_now_ms() < deadline) {
        Tally__Frame *f = ts_wire_recv_frame(fd, (int)(deadline - ts_now_ms()));
        if (!f)
            return NULL;
        if (f->msg_case == TALLY__FRAME__MSG_ACK && durable && f->ack->durable_seq > *durable)
            *durable = f->ack->durable_seq;
        if (f->msg_case == TALLY__FRAME__MSG_ERROR ||
            (f->msg_case == TALLY__FRAME__MSG_ACK && f->ack->seq == seq))
            return f;
        tally__frame__free_unpacked(f, NULL);
    }
    return NULL;
}

int ts_wire_wait_durable(int fd, uint64_t seq, uint64_t *durable, int timeout_ms)
{
    int64_t deadline = ts_now_ms() + timeout_ms;
    while (*durable < seq && ts_now_ms() < deadline) {
        Tally__Frame *f = ts_wire_recv_frame(fd, (int)(deadline - ts_now_ms()));
        if (!f)
            break;
        if (f->msg_case == TALLY__FRAME__MSG_ACK && f->ack->durable_seq > *durable)
            *durable = f->ack->durable_seq;
        tally__frame__free_unpacked(f, NULL);
    }
    return *durable >= seq ? 0 : -1;
}

int ts_wire_recv(int fd, struct ts_frame *out, int timeout_ms)
{
    int64_t deadline = ts_now_ms() + timeout_ms;
    uint8_t hdr[4];
    int r = recv_exact(fd, hdr, 4, deadline);
    if (r <= 0)
        return r;
    uint32_t len;
    memcpy(&len, hdr, 4);
    len = ntohl(len);
    if (len > 64u * 1024 * 1024) {
        fprintf(stderr, "support: server sent a frame of %u bytes\n", len);
        return -1;
    }
    uint8_t *body = malloc(len ? len : 1);
    if (!body)
        abort();
    r = recv_exact(fd, body, len, deadline);
    if (r <= 0) {
        free(body);
        return r < 0 ? -1 : 0;
    }
    r = ts_wire_decode(body, len, out);
    free(body);
    return r;
}

int ts_wire_decode(const uint8_t *body, size_t len, struct ts_frame *out)
{
    Tally__Frame *f = tally__frame__unpack(NULL, len, body);
    if (!f) {
        fprintf(stderr, "support: server sent an undecodable frame\n");
        return -1;
    }
    memset(out, 0, sizeof *out);
    out->kind = (int)f->msg_case;
    switch (f->msg_case) {
    case TALLY__FRAME__MSG_WELCOME:
        out->durable_seq = f->welcome->durable_seq;
        break;
    case TALLY__FRAME__MSG_ACK:
        out->seq = f->ack->seq;
        out->durable_seq = f->ack->durable_seq;
        out->accepted = f->ack->accepted;
        out->duplicate = f->ack->duplicate_ballots;
        out->rejected = f->ack->rejected;
        out->retransmit = f->ack->retransmit;
        break;
    case TALLY__FRAME__MSG_ERROR:
        out->error_code = (int)f->error->code;
        out->expected_seq = f->error->expected_seq;
        snprintf(out->message, sizeof out->message, "%s",
                 f->error->message ? f->error->message : "");
        break;
    default:
        break;
    }
    tally__frame__free_unpacked(f, NULL);
    return 1;
}

/* ---- one test's world ------------------------------------------------------------------- */

int ts_case_data(struct ts_case *c, const char *name, uint32_t projects, uint32_t circuits,
                 uint32_t collectors, uint64_t votes, const char *repeat_rate,
                 const char *unknown_rate, uint64_t malformed, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(c->dir, sizeof c->dir, "%s", ts_workdir(name));
    snprintf(c->registry, sizeof c->registry, "%s/registry.csv", c->dir);
    snprintf(c->votes, sizeof c->votes, "%s/votes", c->dir);
    snprintf(c->truth_csv, sizeof c->truth_csv, "%s/truth.csv", c->votes);
    c->collectors = collectors;
    if (ts_gen(c->dir, projects, circuits, collectors, votes, repeat_rate, unknown_rate, malformed,
               seed, &c->truth))
        return -1;
    return 0;
}

int ts_case_setup(struct ts_case *c, const char *name, uint32_t projects, uint32_t circuits,
                  uint32_t collectors, uint64_t votes, const char *repeat_rate,
                  const char *unknown_rate, uint64_t malformed, uint64_t seed)
{
    if (ts_case_data(c, name, projects, circuits, collectors, votes, repeat_rate, unknown_rate,
                     malformed, seed))
        return -1;
    char db[80];
    snprintf(db, sizeof db, "it_%s", name);
    if (ts_db_create(db, c->conninfo, sizeof c->conninfo))
        return -1;
    if (ts_db_prepare(c->conninfo, c->registry, collectors))
        return -1;
    snprintf(c->d.conninfo, sizeof c->d.conninfo, "%s", c->conninfo);
    snprintf(c->d.dir, sizeof c->d.dir, "%s", c->dir);
    return 0;
}

void ts_case_teardown(struct ts_case *c, bool keep)
{
    ts_tallyd_kill(&c->d);
    ts_cleanup();
    if (!keep && c->name[0]) {
        char db[80];
        snprintf(db, sizeof db, "it_%s", c->name);
        ts_db_drop(db);
    }
}

void ts_case_paths(const struct ts_case *c, uint32_t i, char *file, char *spool, char *out,
                   char *err, size_t len)
{
    if (file)
        snprintf(file, len, "%s/collector-%u.csv", c->votes, i);
    if (spool)
        snprintf(spool, len, "%s/spool-c%u", c->dir, i);
    if (out)
        snprintf(out, len, "%s/push-c%u.out", c->dir, i);
    if (err)
        snprintf(err, len, "%s/push-c%u.err", c->dir, i);
}

int ts_case_push(struct ts_case *c, struct ts_proc *p, uint32_t i, uint32_t batch)
{
    char file[1200], spool[1200], out[1200], err[1200], id[16];
    ts_case_paths(c, i, file, spool, out, err, sizeof file);
    snprintf(id, sizeof id, "c%u", i);
    return ts_push_spawn(p, &c->d, id, spool, file, batch, out, err);
}

int ts_case_push_tls(struct ts_case *c, struct ts_proc *p, uint32_t i, uint32_t batch,
                     const char *ca_dir)
{
    char file[1200], spool[1200], out[1200], err[1200], id[16];
    char cert[1200], key[1200], ca[1200];
    ts_case_paths(c, i, file, spool, out, err, sizeof file);
    snprintf(id, sizeof id, "c%u", i);
    snprintf(cert, sizeof cert, "%.1100s/c%u.crt", ca_dir, i);
    snprintf(key, sizeof key, "%.1100s/c%u.key", ca_dir, i);
    snprintf(ca, sizeof ca, "%.1100s/ca.crt", ca_dir);
    return ts_push_spawn_tls(p, &c->d, id, spool, file, batch, cert, key, ca, out, err);
}

int ts_case_results_match(struct ts_case *c)
{
    char *got = ts_results_csv(c->conninfo);
    if (!got)
        return -1;
    int rc = ts_csv_compare(got, c->truth_csv);
    free(got);
    return rc;
}

char *ts_truth_with(const char *truth_path, uint32_t project_id, uint64_t add)
{
    char *text = ts_read_file(truth_path);
    if (!text)
        return NULL;
    size_t cap = strlen(text) + 64;
    char *out = malloc(cap);
    if (!out)
        abort();
    size_t used = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        unsigned long long id, votes;
        if (sscanf(line, "%llu,%llu", &id, &votes) == 2 && id == project_id)
            used += (size_t)snprintf(out + used, cap - used, "%llu,%llu\n", id, votes + add);
        else
            used += (size_t)snprintf(out + used, cap - used, "%s\n", line);
    }
    free(text);
    return out;
}

uint32_t ts_truth_first_project(const char *truth_path)
{
    char *text = ts_read_file(truth_path);
    unsigned id = 0;
    if (text) {
        const char *second = strchr(text, '\n');
        if (!second || sscanf(second + 1, "%u,", &id) != 1)
            id = 0;
    }
    free(text);
    return id;
}

int ts_db_collector_sums(const char *conninfo, struct ts_push_result *sum)
{
    struct ts_db *db = ts_db_open(conninfo);
    if (!db)
        return -1;
    int rc = 0;
    rc |= ts_db_u64(db, "SELECT coalesce(sum(batches), 0) FROM collectors", &sum->batches);
    rc |= ts_db_u64(db, "SELECT coalesce(sum(votes), 0) FROM collectors", &sum->votes);
    rc |= ts_db_u64(db, "SELECT coalesce(sum(accepted), 0) FROM collectors", &sum->accepted);
    rc |= ts_db_u64(db, "SELECT coalesce(sum(duplicate), 0) FROM collectors", &sum->duplicate);
    rc |= ts_db_u64(db, "SELECT coalesce(sum(rejected), 0) FROM collectors", &sum->rejected);
    ts_db_close(db);
    return rc ? -1 : 0;
}

/* ---- the record: old databases, copies, tallyctl migrate / verify ---------------------- */

char *ts_sql_text(const char *conninfo, const char *sql)
{
    PGconn *c = pg_connect(conninfo);
    if (!c)
        return NULL;
    char *out = NULL;
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "support: '%.200s': %s", sql, PQerrorMessage(c));
    else if (PQntuples(r) < 1 || PQgetisnull(r, 0, 0))
        fprintf(stderr, "support: '%.200s': no value\n", sql);
    else if (!(out = strdup(PQgetvalue(r, 0, 0))))
        abort();
    PQclear(r);
    PQfinish(c);
    return out;
}

int ts_db_clone(const char *template_name, const char *name, char *out, size_t len)
{
    /* ts_db_create gives the conninfo; the empty database it made is replaced at once. */
    if (ts_db_create(name, out, len) || ts_db_drop(name))
        return -1;
    char sql[256];
    snprintf(sql, sizeof sql, "CREATE DATABASE \"%s\" TEMPLATE \"%s\"", name, template_name);
    return ts_sql_exec(ts_pg_conninfo(), sql);
}

int ts_registry_write(const char *path, uint32_t projects)
{
    static const char *const states[3] = {"Zulia", "Lara", "Miranda"};
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "support: %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(f, "project_id,project_name,circuit_id,circuit_name,state,seats\n");
    for (uint32_t i = 0; i < projects; i++) {
        uint32_t circuit = i / 8 + 1;
        fprintf(f, "%u,Proyecto %u,%u,Circuito %u,%s,2\n", 1000 + i, i, circuit, circuit,
                states[circuit % 3]);
    }
    return fclose(f) == 0 ? 0 : -1;
}

int ts_ctl_capture(const char *conninfo, char **out, char **err, const char *arg1, const char *arg2,
                   const char *arg3)
{
    char path[] = "/tmp/tallyctl-err-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    close(fd);
    int rc = ctl_run(conninfo, out, path, arg1, arg2, arg3);
    if (err)
        *err = ts_read_file(path);
    unlink(path);
    return rc;
}

/* A growable SQL text. */
struct v3_sql {
    char *p;
    size_t len, cap;
};

static void v3_printf(struct v3_sql *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void v3_printf(struct v3_sql *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->cap = 2 * b->cap + (n > 0 ? (size_t)n : 0) + 1024;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            abort();
    }
}

static uint64_t v3_rng(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* splitmix64's finaliser is a bijection: distinct counters give distinct tokens. */
static uint64_t v3_token(uint64_t seed, uint64_t i)
{
    uint64_t s = (seed << 32) + i - 0x9e3779b97f4a7c15ull;
    return v3_rng(&s);
}

static int v3_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int v3_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

struct v3_collector {
    uint64_t seq, batches, votes, accepted, duplicate, rejected;
    bool moved;
};

int ts_v3_record_write(const char *conninfo, uint32_t collectors, uint32_t checkpoints,
                       uint64_t votes, uint64_t seed, struct ts_v3_summary *sum)
{
    memset(sum, 0, sizeof(*sum));
    PGconn *c = pg_connect(conninfo);
    if (!c)
        return -1;
    int rc = -1;
    PGresult *r = PQexec(c, "SELECT id FROM projects ORDER BY id");
    size_t n_projects = PQresultStatus(r) == PGRES_TUPLES_OK ? (size_t)PQntuples(r) : 0;
    uint32_t *projects = calloc(n_projects + 1, sizeof(*projects));
    uint64_t *issued = NULL; /* accepted tokens so far, for duplicates */
    uint64_t *tok = NULL;
    uint32_t *chosen = NULL;
    uint64_t *tally = calloc(n_projects + 1, sizeof(*tally));
    struct v3_collector *col = calloc(collectors + 1, sizeof(*col));
    struct v3_sql sql = {NULL, 0, 0}, bat = {NULL, 0, 0};
    if (!projects || !tally || !col)
        abort();
    for (size_t i = 0; i < n_projects; i++)
        projects[i] = (uint32_t)strtoul(PQgetvalue(r, (int)i, 0), NULL, 10);
    PQclear(r);
    if (n_projects == 0 || collectors == 0 || checkpoints == 0) {
        fprintf(stderr, "support: ts_v3_record_write needs projects, collectors, checkpoints\n");
        goto done;
    }
    uint64_t rng = seed * 2654435761u + 1;
    uint64_t avg = votes / ((uint64_t)checkpoints * collectors);
    if (avg < 1)
        avg = 1;
    size_t n_issued = 0, cap_issued = 0;
    tok = malloc((2 * avg + 2) * sizeof(*tok));
    chosen = malloc((2 * avg + 2) * sizeof(*chosen));
    if (!tok || !chosen)
        abort();
    for (uint32_t k = 1; k <= checkpoints; k++) {
        uint64_t cp_batches = 0, cp_votes = 0, cp_accepted = 0;
        bat.len = 0;
        memset(tally, 0, (n_projects + 1) * sizeof(*tally));
        for (uint32_t j = 0; j < collectors; j++)
            col[j].moved = false;
        for (uint32_t j = 0; j < collectors; j++) {
            /* 0, 1 or 2 batches, but at least one batch per checkpoint. */
            uint32_t nb = (uint32_t)(v3_rng(&rng) % 3);
            if (j == k % collectors && nb == 0)
                nb = 1;
            for (uint32_t b = 0; b < nb; b++) {
                bool one = b == 0 && (k * collectors + j) % 4 == 1;
                uint64_t n = one ? 1 : 1 + v3_rng(&rng) % (2 * avg);
                uint64_t acc = 0, dup = 0, rej = 0;
                for (uint64_t v = 0; v < n; v++) {
                    uint64_t u = v3_rng(&rng) % 100;
                    if (!one && u < 4 && n_issued > 0) {
                        dup++; /* a ballot that already voted, here or elsewhere */
                    } else if (!one && u < 6) {
                        rej++; /* a project unknown to the registry */
                    } else {
                        if (n_issued == cap_issued) {
                            cap_issued = cap_issued ? 2 * cap_issued : 4096;
                            issued = realloc(issued, cap_issued * sizeof(*issued));
                            if (!issued)
                                abort();
                        }
                        tok[acc] = issued[n_issued] = v3_token(seed, n_issued);
                        n_issued++;
                        chosen[acc] = projects[v3_rng(&rng) % n_projects];
                        acc++;
                    }
                }
                if (one && sum->n_one_vote_tokens < TS_V3_SAMPLE)
                    sum->one_vote_tokens[sum->n_one_vote_tokens++] = tok[0];
                sum->one_vote_batches += one;
                qsort(tok, acc, sizeof(*tok), v3_cmp_u64);
                qsort(chosen, acc, sizeof(*chosen), v3_cmp_u32);
                struct v3_collector *cc = &col[j];
                cc->seq++;
                v3_printf(&bat, "%s('c%u', %llu, %u, %llu, %llu, %llu, %llu, '\\x",
                          bat.len ? ",\n" : "", j, (unsigned long long)cc->seq, k,
                          (unsigned long long)n, (unsigned long long)acc, (unsigned long long)dup,
                          (unsigned long long)rej);
                for (uint64_t t = 0; t < acc; t++)
                    for (int byte = 0; byte < 8; byte++)
                        v3_printf(&bat, "%02x", (unsigned)(tok[t] >> (8 * byte)) & 0xff);
                /* Per-project counts, ascending by project. */
                v3_printf(&bat, "', '{");
                for (uint64_t t = 0; t < acc;) {
                    uint64_t e = t;
                    while (e < acc && chosen[e] == chosen[t])
                        e++;
                    v3_printf(&bat, "%s%u", t ? "," : "", chosen[t]);
                    t = e;
                }
                v3_printf(&bat, "}', '{");
                for (uint64_t t = 0; t < acc;) {
                    uint64_t e = t;
                    while (e < acc && chosen[e] == chosen[t])
                        e++;
                    v3_printf(&bat, "%s%llu", t ? "," : "", (unsigned long long)(e - t));
                    const uint32_t *at =
                        bsearch(&chosen[t], projects, n_projects, sizeof(*projects), v3_cmp_u32);
                    tally[at - projects] += e - t;
                    t = e;
                }
                v3_printf(&bat, "}')");
                cc->batches++;
                cc->votes += n;
                cc->accepted += acc;
                cc->duplicate += dup;
                cc->rejected += rej;
                cc->moved = true;
                cp_batches++;
                cp_votes += n;
                cp_accepted += acc;
                sum->duplicate += dup;
                sum->rejected += rej;
            }
        }
        /* As the version-3 writer did it, in one transaction per checkpoint. */
        sql.len = 0;
        v3_printf(&sql,
                  "BEGIN;\nINSERT INTO checkpoints (id, batches, votes, accepted)"
                  " VALUES (%u, %llu, %llu, %llu);\n"
                  "INSERT INTO batches (collector_id, seq, checkpoint_id, votes, accepted,"
                  " duplicate, rejected_unknown, tokens, project_ids, counts) VALUES\n%s;\n",
                  k, (unsigned long long)cp_batches, (unsigned long long)cp_votes,
                  (unsigned long long)cp_accepted, bat.p);
        v3_printf(&sql, "UPDATE tallies t SET votes = t.votes + d.n FROM (VALUES ");
        bool first = true;
        for (size_t p = 0; p < n_projects; p++) {
            if (!tally[p])
                continue;
            v3_printf(&sql, "%s(%u, %llu)", first ? "" : ", ", projects[p],
                      (unsigned long long)tally[p]);
            first = false;
        }
        if (first)
            v3_printf(&sql, "(0, 0)");
        v3_printf(&sql, ") AS d(id, n) WHERE t.project_id = d.id;\n");
        for (uint32_t j = 0; j < collectors; j++) {
            const struct v3_collector *cc = &col[j];
            if (!cc->moved)
                continue;
            v3_printf(&sql,
                      "UPDATE collectors SET durable_seq = %llu, batches = %llu, votes = %llu,"
                      " accepted = %llu, duplicate = %llu, rejected = %llu,"
                      " last_checkpoint_id = %u WHERE id = 'c%u';\n",
                      (unsigned long long)cc->seq, (unsigned long long)cc->batches,
                      (unsigned long long)cc->votes, (unsigned long long)cc->accepted,
                      (unsigned long long)cc->duplicate, (unsigned long long)cc->rejected, k, j);
        }
        v3_printf(&sql, "COMMIT;\n");
        r = PQexec(c, sql.p);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "support: writing old checkpoint %u: %s", k, PQerrorMessage(c));
            PQclear(r);
            PQclear(PQexec(c, "ROLLBACK"));
            goto done;
        }
        PQclear(r);
        sum->checkpoints++;
        sum->batches += cp_batches;
        sum->votes += cp_votes;
        sum->accepted += cp_accepted;
    }
    for (uint32_t j = 0; j < collectors; j++)
        sum->collectors_used += col[j].batches > 0;
    rc = 0;
done:
    free(bat.p);
    free(sql.p);
    free(col);
    free(tally);
    free(chosen);
    free(tok);
    free(issued);
    free(projects);
    PQfinish(c);
    return rc;
}

static int totals_equal(const char *what, const struct ts_push_result *got,
                        const struct ts_truth *want)
{
    if (got->votes == want->votes && got->accepted == want->accepted &&
        got->duplicate == want->duplicate && got->rejected == want->rejected)
        return 0;
    fprintf(stderr,
            "support: %s: votes %llu accepted %llu duplicate %llu rejected %llu; the truth: "
            "%llu %llu %llu %llu\n",
            what, (unsigned long long)got->votes, (unsigned long long)got->accepted,
            (unsigned long long)got->duplicate, (unsigned long long)got->rejected,
            (unsigned long long)want->votes, (unsigned long long)want->accepted,
            (unsigned long long)want->duplicate, (unsigned long long)want->rejected);
    return -1;
}

int ts_case_totals_match(struct ts_case *c, const struct ts_push_result *pushed)
{
    if (ts_case_results_match(c) != 0)
        return -1;
    struct ts_push_result db;
    if (ts_db_collector_sums(c->conninfo, &db) != 0)
        return -1;
    if (totals_equal("the database's collector sums", &db, &c->truth) != 0)
        return -1;
    return totals_equal("what the pushes printed", pushed, &c->truth);
}

int ts_push_result_add(const char *out_path, struct ts_push_result *sum)
{
    struct ts_push_result r;
    if (ts_push_result_read(out_path, &r) != 0)
        return -1;
    sum->batches += r.batches;
    sum->votes += r.votes;
    sum->accepted += r.accepted;
    sum->duplicate += r.duplicate;
    sum->rejected += r.rejected;
    return 0;
}
