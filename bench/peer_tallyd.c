/* The tallyd and tallyd_tls peers: a fresh database each round (tallyctl migrate,
 * load-registry, add-collector; tallyd_tls: each collector's certificate pinned), the tallyd
 * binary started with checkpoints on and --expected-ballots set to the electorate
 * (tallyd_tls: and --tls-cert/--tls-key/--tls-ca), K collector threads (peer_tallyd_col.c)
 * sending the workload, the counts read back from PostgreSQL after tallyd stops on SIGTERM
 * (peer_tallyd_db.c). Three rounds by default, the two peers' rounds taking turns; the
 * figures are each peer's median round's, with the spread. Owns the tallyd process and its
 * database for the run. */
#include "peer_tallyd.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "tally/protocol.h"

#define TD_DB_NAME "tallybench_tallyd"
#define TD_TLS_DB_NAME "tallybench_tallyd_tls"

/* ---- one round ---------------------------------------------------------------------- */

/* tallyctl --db CONNINFO a1 [a2 [a3 a4]] (a NULL ends the list). */
static int ctl(const char *tallyctl, const char *conninfo, const char *log, const char *a1,
               const char *a2, const char *a3, const char *a4)
{
    char *argv[] = {(char *)tallyctl, "--db",     (char *)conninfo, (char *)a1,
                    (char *)a2,       (char *)a3, (char *)a4,       NULL};
    int rc = proc_run(argv, log, 300000);
    if (rc != 0) {
        fprintf(stderr, "tally-bench: tallyctl %s %s%s%s failed (exit %d)\n", a1, a2 ? a2 : "",
                a2 && a3 ? " " : "", a2 && a3 ? a3 : "", rc);
        file_tail(log, 20);
    }
    return rc == 0 ? 0 : -1;
}

/* Everything the run holds, so that every exit path can release it. */
struct td_state {
    const struct td_tls *tls; /* tallyd_tls; NULL: plain TCP */
    char conninfo[2048], log_ctl[1200], log_td[1200], registry[1200];
    pid_t pid;
    bool up;
    int code;
    int http_port;
    uint64_t hwm0, rss0, hwm1, rss1;
    struct td_run run;
    double t0, t_end, t_prov;
    double td_cpu0, td_cpu1, bench_cpu0, bench_cpu1; /* CPU seconds at t0 and at the end */
    struct lat prov, dur;
    uint64_t acc, dup, rej, retx;
    /* once a second while running: seconds since start, votes durable by then */
    double *ser_t;
    uint64_t *ser_durable;
    uint64_t *ser_rss_kb; /* tallyd's VmRSS then */
    size_t n_ser, cap_ser;
    double loop_max_ms;       /* tally_loop_iteration_max_seconds at the end; NAN: absent */
    double set_bytes;         /* tally_ballot_set_bytes at the end; NAN: absent */
    double recovery_s;        /* --recovery: SIGKILL, restart, listening again */
    double recovery_logged_s; /* what tallyd's own log line says (-1: not found) */
    bool recovery_cold;       /* the page cache was dropped before the restart */
    char argv_text[32][2100]; /* tallyd's command line, for the restart */
    int argc;
};

static void series_add(struct td_state *s, double t, uint64_t durable, uint64_t rss_kb)
{
    if (s->n_ser == s->cap_ser) {
        s->cap_ser = s->cap_ser ? s->cap_ser * 2 : 64;
        s->ser_t = realloc(s->ser_t, s->cap_ser * sizeof(*s->ser_t));
        s->ser_durable = realloc(s->ser_durable, s->cap_ser * sizeof(*s->ser_durable));
        s->ser_rss_kb = realloc(s->ser_rss_kb, s->cap_ser * sizeof(*s->ser_rss_kb));
        if (!s->ser_t || !s->ser_durable || !s->ser_rss_kb)
            abort();
    }
    s->ser_t[s->n_ser] = t;
    s->ser_durable[s->n_ser] = durable;
    s->ser_rss_kb[s->n_ser] = rss_kb;
    s->n_ser++;
}

static int td_prepare(struct bench_ctx *c, struct td_state *s, const char *tallyctl,
                      struct peer_result *r)
{
    const struct workload *w = c->w;
    progress(r->name,
             "database %s: migrate, load %zu projects in %zu circuits, add %zu collectors%s",
             s->tls ? TD_TLS_DB_NAME : TD_DB_NAME, w->n_projects, w->n_circuits, w->n_collectors,
             s->tls ? " with --cert (their certificates pinned)" : "");
    if (wl_write_registry(w, s->registry) != 0 ||
        ctl(tallyctl, s->conninfo, s->log_ctl, "migrate", NULL, NULL, NULL) ||
        ctl(tallyctl, s->conninfo, s->log_ctl, "load-registry", s->registry, NULL, NULL)) {
        peer_fail(r, "preparing the database failed (see above)");
        return -1;
    }
    for (size_t k = 0; k < w->n_collectors; k++) {
        /* tallyd_tls: the collector's certificate pinned to its id, as an operator does */
        char crt[1300];
        snprintf(crt, sizeof(crt), "%s/%s.crt", s->tls ? s->tls->dir : "", w->collectors[k].id);
        if (ctl(tallyctl, s->conninfo, s->log_ctl, "add-collector", w->collectors[k].id,
                s->tls ? "--cert" : NULL, s->tls ? crt : NULL)) {
            peer_fail(r, "add-collector failed");
            return -1;
        }
    }
    char err[600];
    if (s->tls && td_tls_check_pins(s->tls, w, s->conninfo, err, sizeof(err)) != 0) {
        peer_fail(r, "%s", err);
        return -1;
    }
    return 0;
}

/* Starts tallyd with the command line in s and waits until it listens (it listens only
 * after recovery). Returns 0, or -1 after saying why. */
static int td_launch(struct td_state *s, const char *log, struct peer_result *r)
{
    char *argv[33];
    for (int i = 0; i < s->argc; i++)
        argv[i] = s->argv_text[i];
    argv[s->argc] = NULL;
    s->up = false;
    s->pid = proc_spawn(argv, log);
    if (s->pid < 0) {
        s->pid = 0;
        peer_fail(r, "cannot start tallyd");
        return -1;
    }
    double start = now_s(), until = start + 600, shown = start;
    while (!bench_stop && now_s() < until) {
        if (!proc_alive(s->pid, &s->code)) {
            s->pid = 0;
            break;
        }
        if (now_s() - shown >= 5) { /* a large recovery takes a while: say how it goes */
            uint64_t hwm = 0, rss = 0;
            proc_mem_kb(s->pid, &hwm, &rss);
            shown = now_s();
            progress(r->name, "%.0f s: tallyd not listening yet (recovering), RSS %.2f GiB",
                     shown - start, (double)rss / 1048576.0);
        }
        int fd = tcp_connect(s->run.port);
        if (fd >= 0) {
            close(fd);
            s->up = true;
            break;
        }
        sleep_ms(10);
    }
    if (!s->up) {
        if (s->pid)
            peer_fail(r, "tallyd did not listen within 600 s");
        else
            peer_fail(r, "tallyd exited (code %d) at start", s->code);
        file_tail(log, 30);
        return -1;
    }
    return 0;
}

static void td_arg(struct td_state *s, const char *a)
{
    char *dst = s->argv_text[s->argc++];
    size_t n = strlen(a);
    if (n >= sizeof(s->argv_text[0]))
        n = sizeof(s->argv_text[0]) - 1;
    memmove(dst, a, n); /* a may be a field of s itself (the conninfo) */
    dst[n] = 0;
}

static int td_start(struct bench_ctx *c, struct td_state *s, const char *tallyd,
                    struct peer_result *r)
{
    const struct bench_opts *o = c->o;
    const struct workload *w = c->w;
    int port = free_port(), http = free_port();
    s->run.port = port;
    s->http_port = http;
    char buf[64];
    td_arg(s, tallyd);
    td_arg(s, "--db");
    td_arg(s, s->conninfo);
    snprintf(buf, sizeof(buf), "127.0.0.1:%d", port);
    td_arg(s, "--listen");
    td_arg(s, buf);
    snprintf(buf, sizeof(buf), "127.0.0.1:%d", http);
    td_arg(s, "--http");
    td_arg(s, buf);
    snprintf(buf, sizeof(buf), "%u", o->checkpoint_ms);
    td_arg(s, "--checkpoint-ms");
    td_arg(s, buf);
    uint64_t e = bench_expected_ballots(o, w);
    if (e) {
        snprintf(buf, sizeof(buf), "%llu", (unsigned long long)e);
        td_arg(s, "--expected-ballots");
        td_arg(s, buf);
    }
    if (o->batch > TALLY_DEFAULT_MAX_BATCH_VOTES) {
        snprintf(buf, sizeof(buf), "%u", o->batch);
        td_arg(s, "--max-batch-votes");
        td_arg(s, buf);
        snprintf(buf, sizeof(buf), "%u", o->batch * 16u + 4096u);
        td_arg(s, "--max-frame-bytes");
        td_arg(s, buf);
    }
    if (s->tls) {
        td_arg(s, "--tls-cert");
        td_arg(s, s->tls->cert);
        td_arg(s, "--tls-key");
        td_arg(s, s->tls->key);
        td_arg(s, "--tls-ca");
        td_arg(s, s->tls->ca);
    }
    for (int i = 0; i < o->n_tallyd_args; i++)
        td_arg(s, o->tallyd_args[i]);
    char shown[512] = "";
    for (int i = 3; i < s->argc; i++) {
        size_t n = strlen(shown);
        snprintf(shown + n, sizeof(shown) - n, " %s", s->argv_text[i]);
    }
    progress(r->name, "starting %s --db ...%s", tallyd, shown);
    if (td_launch(s, s->log_td, r) != 0)
        return -1;
    proc_mem_kb(s->pid, &s->hwm0, &s->rss0);
    return 0;
}

/* A cold restart reads its files from the disk: write back what is dirty, then drop the
 * page cache (root, and a /proc/sys the container lets us write). PostgreSQL's own
 * shared_buffers stay warm either way. Returns whether it was dropped. */
static bool drop_page_cache(struct peer_result *r)
{
    sync();
    int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
    bool ok = fd >= 0 && write(fd, "3\n", 2) == 2;
    int err = errno;
    if (fd >= 0)
        close(fd);
    if (ok)
        progress(r->name, "page cache dropped (echo 3 > /proc/sys/vm/drop_caches): a cold "
                          "restart");
    else
        progress(r->name,
                 "cannot drop the page cache (/proc/sys/vm/drop_caches: %s): the restart reads "
                 "warm files; recovery_cold is false",
                 strerror(err));
    return ok;
}

/* --recovery: SIGKILL with everything durable, start again, time until it listens. */
static void td_recovery(struct bench_ctx *c, struct td_state *s, struct peer_result *r)
{
    char log[1300];
    snprintf(log, sizeof(log), "%s/tallyd-recovery.log", c->workdir);
    progress(r->name, "SIGKILL to tallyd with %llu ballots durable; restarting it",
             (unsigned long long)c->w->n_distinct);
    proc_stop(s->pid, SIGKILL, 30000);
    s->pid = 0;
    s->recovery_cold = drop_page_cache(r);
    double t0 = now_s();
    if (td_launch(s, log, r) != 0)
        return;
    s->recovery_s = now_s() - t0;
    s->recovery_logged_s = -1;
    FILE *f = fopen(log, "r");
    char line[1024];
    while (f && fgets(line, sizeof(line), f)) {
        const char *p = strstr(line, "recovered consultation");
        const char *q = p ? strstr(p, "' in ") : NULL;
        if (q)
            s->recovery_logged_s = strtod(q + 5, NULL);
    }
    if (f)
        fclose(f);
    if (s->recovery_logged_s >= 0)
        progress(r->name, "recovered and listening after %.2f s (tallyd's log says %.2f s)",
                 s->recovery_s, s->recovery_logged_s);
    else
        progress(r->name, "recovered and listening after %.2f s", s->recovery_s);
}

/* CPU seconds this process has used, all threads. */
static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

static void td_drive(struct bench_ctx *c, struct td_state *s, struct peer_result *r)
{
    const struct bench_opts *o = c->o;
    const struct workload *w = c->w;
    struct td_run *run = &s->run;
    run->c = c;
    run->deadline = now_s() + o->timeout_s;
    run->cols = calloc(w->n_collectors, sizeof(*run->cols));
    if (!run->cols)
        abort();
    for (size_t k = 0; k < w->n_collectors; k++) {
        struct td_col *t = &run->cols[k];
        t->run = run;
        t->k = k;
        t->ok = true;
        if (w->stream) {
            t->truth = calloc(w->n_projects, sizeof(uint64_t));
            if (!t->truth)
                abort();
        }
        if (pthread_create(&t->thread, NULL, td_col_main, t) == 0) {
            t->started = true;
        } else {
            t->ok = false;
            snprintf(t->err, sizeof(t->err), "pthread_create failed");
            atomic_fetch_add(&run->ready, 1);
        }
    }
    while (atomic_load(&run->ready) < (int)w->n_collectors && !bench_stop)
        sleep_ms(1);
    s->td_cpu0 = proc_cpu_s(s->pid);
    s->bench_cpu0 = self_cpu_s();
    s->t0 = now_s();
    atomic_store(&run->go, 1);
    progress(r->name,
             "%zu collectors connected; sending %llu votes in %llu batches (+%llu resent), "
             "window %u",
             w->n_collectors, (unsigned long long)w->n_votes, (unsigned long long)w->n_batches,
             (unsigned long long)w->n_retransmits, o->window);

    /* Watch: progress once a second; stop everything if tallyd dies. */
    double last = s->t0;
    for (;;) {
        bool all_done = true;
        for (size_t k = 0; k < w->n_collectors; k++)
            if (run->cols[k].started && !atomic_load(&run->cols[k].finished))
                all_done = false;
        if (all_done)
            break;
        if (!proc_alive(s->pid, &s->code)) {
            s->pid = 0;
            atomic_store(&run->abort, 1);
            peer_fail(r, "tallyd exited (code %d) during the run", s->code);
            file_tail(s->log_td, 30);
            break;
        }
        if (bench_stop) {
            atomic_store(&run->abort, 1);
            break;
        }
        sleep_ms(20);
        double now = now_s();
        if (now - last >= 1.0) {
            uint64_t sent = 0, dur = 0;
            for (size_t k = 0; k < w->n_collectors; k++) {
                sent += atomic_load(&run->cols[k].votes_sent);
                dur += atomic_load(&run->cols[k].votes_durable);
            }
            double prev_t = s->n_ser ? s->ser_t[s->n_ser - 1] : 0;
            uint64_t prev_d = s->n_ser ? s->ser_durable[s->n_ser - 1] : 0;
            uint64_t hwm = 0, rss = 0;
            proc_mem_kb(s->pid, &hwm, &rss);
            series_add(s, now - s->t0, dur, rss);
            progress(r->name,
                     "%5.1f s: %llu votes sent, %llu durable (%.0f durable votes/s; last second "
                     "%.0f); tallyd RSS %.2f GiB",
                     now - s->t0, (unsigned long long)sent, (unsigned long long)dur,
                     (double)dur / (now - s->t0), (double)(dur - prev_d) / (now - s->t0 - prev_t),
                     (double)rss / 1048576.0);
            last = now;
        }
    }
    for (size_t k = 0; k < w->n_collectors; k++)
        if (run->cols[k].started)
            pthread_join(run->cols[k].thread, NULL);
    s->bench_cpu1 = self_cpu_s();
    s->td_cpu1 = s->pid > 0 ? proc_cpu_s(s->pid) : -1;

    s->t_end = s->t_prov = s->t0;
    for (size_t k = 0; k < w->n_collectors; k++) {
        struct td_col *t = &run->cols[k];
        if (!t->ok && !r->failed)
            peer_fail(r, "collector %s: %s", w->collectors[k].id, t->err);
        if (t->end_s > s->t_end)
            s->t_end = t->end_s;
        if (t->prov_end_s > s->t_prov)
            s->t_prov = t->prov_end_s;
        lat_merge(&s->prov, &t->prov);
        lat_merge(&s->dur, &t->dur);
        s->acc += t->accepted;
        s->dup += t->duplicate;
        s->rej += t->rejected;
        s->retx += t->retransmit_acks;
    }
    if (s->pid > 0) {
        proc_mem_kb(s->pid, &s->hwm1, &s->rss1);
        s->loop_max_ms = td_metrics_gauge(s->http_port, "tally_loop_iteration_max_seconds") * 1e3;
        s->set_bytes = td_metrics_gauge(s->http_port, "tally_ballot_set_bytes");
    }
}

static void sb_num_or_null(struct sbuf *b, int decimals, double v)
{
    if (isnan(v))
        sb_printf(b, "null");
    else
        sb_printf(b, "%.*f", decimals, v);
}

/* Streamed: what making the batches cost the collector threads, into r's JSON; and whether
 * the first occurrences they made while sending add up to the count pass's truth (the
 * recipe is deterministic: they must). Writes r->note when not and note is true. */
static bool td_generator(struct bench_ctx *c, struct td_state *s, struct peer_result *r,
                         double wall, bool note)
{
    const struct workload *w = c->w;
    uint64_t *sum = calloc(w->n_projects, sizeof(uint64_t));
    if (!sum)
        abort();
    double cpu = 0;
    uint64_t votes = 0, batches = 0;
    for (size_t k = 0; k < w->n_collectors; k++) {
        const struct td_col *t = &s->run.cols[k];
        cpu += t->gen_cpu_s;
        votes += t->gen_votes;
        batches += t->gen_batches;
        for (size_t p = 0; p < w->n_projects && t->truth; p++)
            sum[p] += t->truth[p];
    }
    size_t differ = 0;
    for (size_t p = 0; p < w->n_projects; p++)
        differ += sum[p] != w->truth[p];
    free(sum);
    bool ok = differ == 0 && votes == w->n_votes && batches == w->n_batches;
    if (!ok && note)
        snprintf(r->note, sizeof(r->note),
                 "the batches made while sending (%llu votes) do not match the count pass "
                 "(%llu votes; %zu projects differ)",
                 (unsigned long long)votes, (unsigned long long)w->n_votes, differ);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    sb_printf(&r->json,
              ", \"generator\": {\"streamed\": true, \"cpu_s\": %.3f, \"votes_made\": %llu, "
              "\"batches_made\": %llu, \"votes_per_cpu_s\": %.0f, \"share_of_machine_cpu\": "
              "%.4f, \"truth_while_sending_matches\": %s, \"what\": \"the collector threads' "
              "CPU time making and encoding batches (CLOCK_THREAD_CPUTIME_ID), over the run; "
              "share_of_machine_cpu is it over wall_s x nproc\"}",
              cpu, (unsigned long long)votes, (unsigned long long)batches,
              cpu > 0 ? (double)votes / cpu : 0, cpu / (wall * (double)(ncpu > 0 ? ncpu : 1)),
              ok ? "true" : "false");
    progress(r->name,
             "generator: %.1f CPU s for %llu votes (%.1f M votes per CPU second, %.1f %% of the "
             "machine's CPU over the run)%s",
             cpu, (unsigned long long)votes, cpu > 0 ? (double)votes / cpu / 1e6 : 0,
             100 * cpu / (wall * (double)(ncpu > 0 ? ncpu : 1)),
             ok ? "" : "; DOES NOT MATCH THE COUNT PASS");
    return ok;
}

/* What the rounds are compared and summed up by. */
struct td_sum {
    double votes_per_s, applied_votes_per_s, wall_s, durable_p99_ms, bytes_per_ballot;
    double loop_max_ms; /* NAN: the gauge was not there */
};

static void td_report(struct bench_ctx *c, struct td_state *s, struct peer_result *r,
                      struct td_sum *sum)
{
    const struct bench_opts *o = c->o;
    const struct workload *w = c->w;
    double wall = s->t_end - s->t0;
    r->ran = true;
    r->wall_s = wall;
    r->votes = w->n_votes;
    r->votes_per_s = (double)w->n_votes / wall;
    PGconn *db = PQconnectdb(s->conninfo);
    bool exact = PQstatus(db) == CONNECTION_OK;
    if (!exact)
        snprintf(r->note, sizeof(r->note), "cannot read results: %s", PQerrorMessage(db));
    exact = exact && td_check_counts(c, db, r) && td_check_collectors(c, db, r);
    if (exact && (s->acc != w->n_distinct || s->dup != w->n_duplicate || s->rej != 0 ||
                  s->retx != w->n_retransmits)) {
        snprintf(r->note, sizeof(r->note),
                 "acks: accepted %llu duplicate %llu rejected %llu retransmits %llu; expected "
                 "%llu %llu 0 %llu",
                 (unsigned long long)s->acc, (unsigned long long)s->dup, (unsigned long long)s->rej,
                 (unsigned long long)s->retx, (unsigned long long)w->n_distinct,
                 (unsigned long long)w->n_duplicate, (unsigned long long)w->n_retransmits);
        exact = false;
    }
    if (w->stream && !td_generator(c, s, r, wall, exact))
        exact = false;
    r->exact = exact;
    if (!exact)
        progress(r->name, "NOT EXACT: %s", r->note);
    sb_printf(&r->json, ", \"cpu_s\": {\"tallyd\": ");
    sb_num_or_null(&r->json, 2, s->td_cpu0 >= 0 && s->td_cpu1 >= 0 ? s->td_cpu1 - s->td_cpu0 : NAN);
    sb_printf(&r->json, ", \"tally_bench\": %.2f, \"wall_x_nproc\": %.2f}",
              s->bench_cpu1 - s->bench_cpu0, wall * (double)sysconf(_SC_NPROCESSORS_ONLN));

    uint64_t distinct = w->n_distinct ? w->n_distinct : 1;
    /* The ballot set's own size as tallyd reports it; where it does not, the growth of its
     * peak memory (which misses a set tallyd faulted in before it listened). */
    double per_ballot = !isnan(s->set_bytes) ? s->set_bytes / (double)distinct
                        : s->hwm1 > s->hwm0
                            ? (double)(s->hwm1 - s->hwm0) * 1024.0 / (double)distinct
                            : 0;
    double target = 2.0 * o->checkpoint_ms + 50;
    double dur_p99 = lat_pct(&s->dur, 0.99);
    double applied = (double)w->n_votes / (s->t_prov - s->t0 > 0 ? s->t_prov - s->t0 : wall);
    r->durable_p99_ms = dur_p99;
    r->bytes_per_ballot = per_ballot;
    *sum = (struct td_sum){r->votes_per_s, applied, wall, dur_p99, per_ballot, s->loop_max_ms};
    sb_printf(&r->json,
              ", \"what\": \"tallyd binary, %zu collector threads over %s on loopback, "
              "checkpoints to PostgreSQL every %u ms; votes_per_s counts votes until all are "
              "durable\"",
              w->n_collectors,
              s->tls ? "mutual TLS 1.3 (client certificates pinned to the collectors)" : "TCP",
              o->checkpoint_ms);
    sb_printf(&r->json, ", \"transport\": ");
    sb_json_str(&r->json, s->run.cols && w->n_collectors ? s->run.cols[0].transport : "");
    sb_printf(&r->json, ", \"applied_votes_per_s\": %.0f", applied);
    sb_lat(&r->json, "provisional_ack_ms", &s->prov);
    sb_lat(&r->json, "durable_ack_ms", &s->dur);
    sb_printf(&r->json, ", \"durable_p99_target_ms\": %.0f, \"durable_p99_within_target\": %s",
              target, dur_p99 <= target ? "true" : "false");
    double cp_p99 = 0;
    if (PQstatus(db) == CONNECTION_OK)
        td_checkpoint_figures(c, db, s->run.cols, &r->json, &cp_p99);
    PQfinish(db);
    sb_printf(&r->json,
              ", \"memory\": {\"vmhwm_baseline_kb\": %llu, \"vmhwm_peak_kb\": %llu, "
              "\"vmrss_end_kb\": %llu, \"distinct_ballots\": %llu, \"bytes_per_ballot\": %.2f}",
              (unsigned long long)s->hwm0, (unsigned long long)s->hwm1, (unsigned long long)s->rss1,
              (unsigned long long)w->n_distinct, per_ballot);
    sb_printf(&r->json,
              ", \"collectors\": %zu, \"window\": %u, \"max_undurable\": %u, \"batches\": %llu, "
              "\"retransmitted_batches\": %llu, \"accepted\": %llu, \"duplicate\": %llu, "
              "\"rejected\": %llu",
              w->n_collectors, o->window, o->max_undurable, (unsigned long long)w->n_batches,
              (unsigned long long)s->retx, (unsigned long long)s->acc, (unsigned long long)s->dup,
              (unsigned long long)s->rej);
    sb_printf(&r->json, ", \"series\": [");
    for (size_t i = 0; i < s->n_ser; i++) {
        double pt = i ? s->ser_t[i - 1] : 0;
        uint64_t pd = i ? s->ser_durable[i - 1] : 0;
        sb_printf(&r->json,
                  "%s{\"t_s\": %.2f, \"durable\": %llu, \"votes_per_s\": %.0f, \"tallyd_rss_kb\": "
                  "%llu}",
                  i ? ", " : "", s->ser_t[i], (unsigned long long)s->ser_durable[i],
                  (double)(s->ser_durable[i] - pd) / (s->ser_t[i] - pt),
                  (unsigned long long)s->ser_rss_kb[i]);
    }
    sb_printf(&r->json, "]");
    snprintf(r->table, sizeof(r->table),
             "ack ms p50/p99/p999: provisional %.1f/%.1f/%.1f, durable %.0f/%.0f/%.0f; "
             "checkpoint p99 %.0f ms; %.1f B/ballot",
             lat_pct(&s->prov, 0.5), lat_pct(&s->prov, 0.99), lat_pct(&s->prov, 0.999),
             lat_pct(&s->dur, 0.5), dur_p99, lat_pct(&s->dur, 0.999), cp_p99, per_ballot);
    progress(r->name, "%.0f votes/s to durable, %s; durable ack p99 %.0f ms, %.1f bytes/ballot",
             r->votes_per_s, r->exact ? "exact" : "NOT EXACT", dur_p99, per_ballot);
}

/* What --recovery measured (after the last round). */
struct td_recovery {
    bool ran, cold;
    double s, logged_s;
};

/* One round on a fresh database: r gets its figures, sum the ones rounds are compared by.
 * tls: the tallyd_tls peer's certificates (NULL: plain TCP). */
static void td_round(struct bench_ctx *c, struct peer_result *r, const struct td_tls *tls,
                     const char *tallyd, const char *tallyctl, bool recovery, struct td_sum *sum,
                     struct td_recovery *rec)
{
    const struct bench_opts *o = c->o;
    const struct workload *w = c->w;
    const char *db_name = tls ? TD_TLS_DB_NAME : TD_DB_NAME;
    struct td_state *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    s->tls = tls;
    s->run.tls = tls;
    s->loop_max_ms = NAN;
    s->set_bytes = NAN;
    snprintf(s->log_ctl, sizeof(s->log_ctl), "%s/tallyctl.log", c->workdir);
    snprintf(s->log_td, sizeof(s->log_td), "%s/%s.log", c->workdir, r->name);
    snprintf(s->registry, sizeof(s->registry), "%s/registry.csv", c->workdir);
    if (pg_db_create(c->pg, db_name, s->conninfo, sizeof(s->conninfo)) != 0) {
        peer_fail(r, "cannot create database %s", db_name);
        free(s);
        return;
    }
    if (td_prepare(c, s, tallyctl, r) == 0 && td_start(c, s, tallyd, r) == 0) {
        td_drive(c, s, r);
        if (recovery && !r->failed && !bench_stop && s->pid > 0) {
            td_recovery(c, s, r);
            *rec = (struct td_recovery){!r->failed, s->recovery_cold, s->recovery_s,
                                        s->recovery_logged_s};
        }
    }
    if (s->pid > 0) {
        progress(r->name, "SIGTERM to tallyd (final checkpoint, exit)");
        s->code = proc_stop(s->pid, SIGTERM, 60000);
        if (s->code != 0 && !r->failed) {
            peer_fail(r, "tallyd exited with %d on SIGTERM", s->code);
            file_tail(s->log_td, 30);
        }
    }
    if (!r->failed && !bench_stop)
        td_report(c, s, r, sum);

    lat_free(&s->prov);
    lat_free(&s->dur);
    free(s->ser_t);
    free(s->ser_durable);
    free(s->ser_rss_kb);
    if (s->run.cols) {
        for (size_t k = 0; k < w->n_collectors; k++) {
            lat_free(&s->run.cols[k].prov);
            lat_free(&s->run.cols[k].dur);
            free(s->run.cols[k].marks);
            free(s->run.cols[k].truth);
        }
        free(s->run.cols);
    }
    free(s);
    if (!o->keep)
        pg_db_drop(c->pg, db_name);
}

/* r from the rounds: the median round's figures and details, the spread, the largest loop
 * iteration, the recovery. */
static void td_rounds_report(struct bench_ctx *c, struct peer_result *r, struct peer_result *rr,
                             const struct td_sum *sums, int n, const struct td_recovery *rec)
{
    int order[9];
    for (int i = 0; i < n; i++)
        order[i] = i;
    for (int i = 1; i < n; i++) /* by votes/s: a handful of rounds */
        for (int j = i; j > 0 && sums[order[j]].votes_per_s < sums[order[j - 1]].votes_per_s; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    int med = order[(n - 1) / 2];
    double vmed = n % 2 ? sums[med].votes_per_s
                        : (sums[order[n / 2 - 1]].votes_per_s + sums[order[n / 2]].votes_per_s) / 2;
    struct peer_result *m = &rr[med];
    r->ran = true;
    r->exact = true;
    for (int i = 0; i < n; i++) {
        if (!rr[i].exact && r->exact) {
            r->exact = false;
            snprintf(r->note, sizeof(r->note), "round %d: %.480s", i + 1, rr[i].note);
        }
    }
    r->votes = m->votes;
    r->votes_per_s = vmed;
    r->wall_s = (double)m->votes / vmed;
    r->durable_p99_ms = m->durable_p99_ms;
    r->bytes_per_ballot = m->bytes_per_ballot;
    r->json = m->json;
    m->json = (struct sbuf){0};
    double loop_max = NAN;
    for (int i = 0; i < n; i++)
        if (!isnan(sums[i].loop_max_ms) && (isnan(loop_max) || sums[i].loop_max_ms > loop_max))
            loop_max = sums[i].loop_max_ms;
    uint64_t expected = bench_expected_ballots(c->o, c->w);
    sb_printf(&r->json, ", \"expected_ballots\": ");
    sb_num_or_null(&r->json, 0, expected ? (double)expected : NAN);
    sb_printf(&r->json, ", \"electors_factor\": ");
    sb_num_or_null(&r->json, 3,
                   c->o->expected_ballots == EXPECTED_ELECTORS ? c->o->electors_factor : NAN);
    sb_printf(&r->json, ", \"bytes_per_ballot\": %.2f, \"loop_max_ms\": ", m->bytes_per_ballot);
    sb_num_or_null(&r->json, 3, loop_max);
    sb_printf(&r->json,
              ", \"rounds\": {\"n\": %d, \"figures_of_round\": %d, \"votes_per_s\": {\"min\": "
              "%.0f, \"median\": %.0f, \"max\": %.0f}, \"each\": [",
              n, med + 1, sums[order[0]].votes_per_s, vmed, sums[order[n - 1]].votes_per_s);
    for (int i = 0; i < n; i++) {
        sb_printf(&r->json,
                  "%s{\"round\": %d, \"exact\": %s, \"votes_per_s\": %.0f, "
                  "\"applied_votes_per_s\": %.0f, \"wall_s\": %.3f, \"durable_ack_p99_ms\": "
                  "%.1f, \"bytes_per_ballot\": %.2f, \"loop_max_ms\": ",
                  i ? ", " : "", i + 1, rr[i].exact ? "true" : "false", sums[i].votes_per_s,
                  sums[i].applied_votes_per_s, sums[i].wall_s, sums[i].durable_p99_ms,
                  sums[i].bytes_per_ballot);
        sb_num_or_null(&r->json, 3, sums[i].loop_max_ms);
        sb_printf(&r->json, "}");
    }
    sb_printf(&r->json, "]}");
    if (rec->ran) {
        sb_printf(&r->json,
                  ", \"recovery_s\": %.3f, \"recovery_cold\": %s, \"recovery\": {\"ballots\": "
                  "%llu, \"restart_to_listening_s\": %.3f, \"page_cache_dropped\": %s, "
                  "\"tallyd_logged_s\": ",
                  rec->s, rec->cold ? "true" : "false", (unsigned long long)c->w->n_distinct,
                  rec->s, rec->cold ? "true" : "false");
        sb_num_or_null(&r->json, 3, rec->logged_s >= 0 ? rec->logged_s : NAN);
        sb_printf(&r->json, "}");
    }
    char lm[32] = "absent";
    if (!isnan(loop_max))
        snprintf(lm, sizeof(lm), "%.1f ms", loop_max);
    snprintf(r->table, sizeof(r->table),
             "median of %d rounds (%.2f-%.2f M votes/s); loop max %s; %.300s", n,
             sums[order[0]].votes_per_s / 1e6, sums[order[n - 1]].votes_per_s / 1e6, lm, m->table);
}

/* One of the two peers over its rounds. */
struct td_peer {
    struct peer_result *r;
    const struct td_tls *tls; /* NULL: plain TCP */
    struct peer_result rr[9];
    struct td_sum sums[9];
    struct td_recovery rec;
    int done;
    bool stopped; /* a round failed or was interrupted */
};

void peer_tallyd_run(struct bench_ctx *c, struct peer_result *plain, struct peer_result *tls)
{
    const struct bench_opts *o = c->o;
    char dir[1024], b_tallyd[1200], b_ctl[1200];
    self_dir(dir, sizeof(dir));
    char cand1[1200], cand2[1200], cand3[1200], cand4[1200];
    snprintf(cand1, sizeof(cand1), "%s/../tallyd", dir);
    snprintf(cand2, sizeof(cand2), "%s/tallyd", dir);
    snprintf(cand3, sizeof(cand3), "%s/../src/ctl/tallyctl", dir);
    snprintf(cand4, sizeof(cand4), "%s/tallyctl", dir);
    const char *const td_cands[] = {cand1, cand2, TALLY_BENCH_TALLYD, NULL};
    const char *const ctl_cands[] = {cand3, cand4, TALLY_BENCH_TALLYCTL, NULL};
    const char *tallyd = find_prog(o->tallyd_path, td_cands, b_tallyd, sizeof(b_tallyd));
    const char *tallyctl = find_prog(o->tallyctl_path, ctl_cands, b_ctl, sizeof(b_ctl));
    struct peer_result *both[2] = {plain, tls};
    if (!tallyd || !tallyctl) {
        for (int p = 0; p < 2; p++)
            if (both[p])
                peer_fail(both[p], "%s not found (build it, or give --%s PATH)",
                          tallyd ? "tallyctl" : "tallyd", tallyd ? "tallyctl" : "tallyd");
        return;
    }
    struct td_tls certs;
    bool have_certs = false;
    if (tls) {
        char err[800];
        progress(tls->name,
                 "making a CA, tallyd's certificate and %zu collector certificates "
                 "in %s/tls (tls_ca_init, tls_ca_issue)",
                 c->w->n_collectors, c->workdir);
        if (td_tls_setup(&certs, c, err, sizeof(err)) == 0)
            have_certs = true;
        else
            peer_fail(tls, "%s", err);
    }
    struct td_peer *peers = calloc(2, sizeof(*peers));
    if (!peers)
        abort();
    peers[0] = (struct td_peer){.r = plain, .stopped = !plain};
    peers[1] = (struct td_peer){.r = tls, .tls = &certs, .stopped = !tls || !have_certs};
    int n = (int)o->rounds;
    /* The two peers' rounds take turns, so that a machine's noise falls on both alike. */
    for (int i = 0; i < n && !bench_stop; i++) {
        for (int p = 0; p < 2 && !bench_stop; p++) {
            struct td_peer *tp = &peers[p];
            if (tp->stopped)
                continue;
            tp->rr[i].name = tp->r->name;
            progress(tp->r->name, "round %d of %d", i + 1, n);
            td_round(c, &tp->rr[i], p ? tp->tls : NULL, tallyd, tallyctl,
                     !p && o->recovery && i == n - 1, &tp->sums[i], &tp->rec);
            if (tp->rr[i].failed)
                peer_fail(tp->r, "round %d: %s", i + 1, tp->rr[i].note);
            if (tp->rr[i].failed || !tp->rr[i].ran)
                tp->stopped = true;
            else
                tp->done++;
        }
    }
    for (int p = 0; p < 2; p++) {
        struct td_peer *tp = &peers[p];
        if (tp->r && tp->done == n && !tp->r->failed)
            td_rounds_report(c, tp->r, tp->rr, tp->sums, n, &tp->rec);
        for (int i = 0; i < n; i++)
            sb_free(&tp->rr[i].json);
    }
    free(peers);
    if (have_certs)
        td_tls_free(&certs);
}
