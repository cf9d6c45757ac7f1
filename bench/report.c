/* tally-bench's report: the table on stdout and the JSON record, both under the same names
 * (tallyd, tallyd_tls, redis_always, redis_everysec, postgres, postgres_per_batch, limit;
 * ratios.*; targets). The peers fill their own members; this file only lays them out and takes the
 * ratios. */
#include "bench.h"

#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static bool usable(const struct peer_result *r)
{
    return r->ran && r->exact && r->votes_per_s > 0;
}

/* One durable votes/s over another figure; < 0 when either side is not usable. */
static double ratio(const struct peer_result *num, const struct peer_result *d, double dv)
{
    if (!usable(num) || !usable(d) || dv <= 0)
        return -1;
    return num->votes_per_s / dv;
}

/* The ratios, by their JSON names: whose durable votes/s over which result's figure. */
struct ratio_def {
    const char *key;
    int num;  /* R_TALLYD, or R_TALLYD_TLS */
    int peer; /* the denominator */
    bool alt; /* the limit's decode+apply figure */
};
static const struct ratio_def ratio_defs[] = {
    {"tallyd_over_redis_always", R_TALLYD, R_REDIS_ALWAYS, false},
    {"tallyd_over_redis_everysec", R_TALLYD, R_REDIS_EVERYSEC, false},
    {"tallyd_over_postgres", R_TALLYD, R_POSTGRES, false},
    {"tallyd_over_postgres_per_batch", R_TALLYD, R_POSTGRES_PER_BATCH, false},
    {"tallyd_over_limit", R_TALLYD, R_LIMIT, false},
    {"tallyd_over_limit_decode_apply", R_TALLYD, R_LIMIT, true},
    /* issue 8: what mutual TLS keeps of the plaintext durable throughput, same workload,
     * same run, rounds taking turns */
    {"tls_vs_plain_durable", R_TALLYD_TLS, R_TALLYD, false},
};
#define N_RATIOS (sizeof(ratio_defs) / sizeof(ratio_defs[0]))
#define RATIO_DECODE_APPLY 5
#define RATIO_TLS 6

static double ratio_of(struct peer_result *res, const struct ratio_def *d)
{
    const struct peer_result *p = &res[d->peer];
    return ratio(&res[d->num], p, d->alt ? p->alt_votes_per_s : p->votes_per_s);
}

/* The targets of issues 12 and 8, by the name of the figure they read. */
struct target {
    const char *name;
    double value; /* < 0: not available */
    double bound;
    bool at_least;
};

static size_t targets_make(const struct bench_ctx *c, struct peer_result *res, struct target *t)
{
    struct peer_result *td = &res[R_TALLYD];
    bool ok = usable(td);
    size_t n = 0;
    t[n++] =
        (struct target){"ratios.tallyd_over_redis_always", ratio_of(res, &ratio_defs[0]), 25, true};
    t[n++] =
        (struct target){"ratios.tallyd_over_postgres", ratio_of(res, &ratio_defs[2]), 10, true};
    t[n++] = (struct target){"ratios.tallyd_over_limit", ratio_of(res, &ratio_defs[4]), 0.5, true};
    t[n++] = (struct target){"tallyd.durable_ack_ms.p99", ok ? td->durable_p99_ms : -1,
                             2.0 * c->o->checkpoint_ms + 50, false};
    t[n++] = (struct target){"tallyd.bytes_per_ballot", ok ? td->bytes_per_ballot : -1, 16, false};
    t[n++] = (struct target){"ratios.tls_vs_plain_durable", ratio_of(res, &ratio_defs[RATIO_TLS]),
                             0.8, true};
    return n;
}

static bool target_met(const struct target *t)
{
    return t->at_least ? t->value >= t->bound : t->value <= t->bound;
}

/* ---- the table ---------------------------------------------------------------------------- */

static void fmt_num(char *out, size_t len, double v)
{
    char raw[64];
    snprintf(raw, sizeof(raw), "%.0f", v);
    size_t n = strlen(raw), o = 0;
    for (size_t i = 0; i < n && o + 2 < len; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            out[o++] = ',';
        out[o++] = raw[i];
    }
    out[o] = 0;
}

static void fmt_ratio(char *out, size_t len, double x)
{
    if (x < 0)
        snprintf(out, len, "n/a");
    else if (x < 10)
        snprintf(out, len, "%.2f x", x);
    else
        snprintf(out, len, "%.1f x", x);
}

static void table_row(const char *name, const struct peer_result *r, double vps, double x,
                      const char *notes)
{
    char num[64] = "-", votes[64] = "-", wall[32] = "-", rx[32] = "-";
    if (r->ran) {
        fmt_num(num, sizeof(num), vps);
        fmt_num(votes, sizeof(votes), (double)r->votes);
        /* wall_s of the row's own figure (the limit's two kinds of pass differ) */
        snprintf(wall, sizeof(wall), "%.2f",
                 vps > 0 && vps != r->votes_per_s ? (double)r->votes / vps : r->wall_s);
    }
    if (x != 0)
        fmt_ratio(rx, sizeof(rx), x);
    const char *exact = r->skipped ? "skip" : r->failed ? "FAIL" : r->exact ? "yes" : "NO";
    printf("%-19s %12s  %-5s %7s %13s %9s   %s\n", name, num, exact, wall, votes, rx, notes);
}

void report_table(const struct bench_ctx *c, struct peer_result *res, int status)
{
    const struct bench_opts *o = c->o;
    const struct workload *w = c->w;
    char n1[32], n2[32], n3[32];
    fmt_num(n1, sizeof(n1), (double)w->n_votes);
    fmt_num(n2, sizeof(n2), (double)w->n_distinct);
    fmt_num(n3, sizeof(n3), (double)w->n_duplicate);
    printf("\ntally-bench: %s votes (%s distinct ballots, %s repeated voters), %zu projects in "
           "%zu circuits,\n             %zu collectors, batches of %u (%llu batches, %llu sent "
           "twice), window %u, checkpoint every %u ms%s\n\n",
           n1, n2, n3, w->n_projects, w->n_circuits, w->n_collectors, o->batch,
           (unsigned long long)w->n_batches, (unsigned long long)w->n_retransmits, o->window,
           o->checkpoint_ms,
           w->stream ? ",\n             streamed (batches made as they are sent)" : "");
    uint64_t hwm = 0, rss = 0;
    if (proc_mem_kb(getpid(), &hwm, &rss) == 0)
        printf("tally-bench's own peak RSS: %.2f GiB\n\n", (double)hwm / 1048576.0);
    printf("%-19s %12s  %-5s %7s %13s %9s   %s\n", "system", "votes_per_s", "exact", "wall_s",
           "votes", "tallyd x", "notes");
    for (int i = 0; i < R_COUNT; i++) {
        const struct peer_result *r = &res[i];
        const char *notes = r->skipped || r->failed || (r->ran && !r->exact) ? r->note : r->table;
        double x = 0;
        for (size_t k = 0; k < N_RATIOS; k++)
            if (ratio_defs[k].num == R_TALLYD && ratio_defs[k].peer == i && !ratio_defs[k].alt)
                x = ratio_of(res, &ratio_defs[k]);
        if (i == R_TALLYD_TLS && !r->skipped) { /* tallyd over tallyd_tls, as the column says */
            double tls = ratio_of(res, &ratio_defs[RATIO_TLS]);
            x = tls > 0 ? 1 / tls : -1;
        }
        table_row(r->name, r, r->votes_per_s, x, notes);
        if (i == R_LIMIT && r->ran)
            table_row("limit.decode_apply", r, r->alt_votes_per_s,
                      ratio_of(res, &ratio_defs[RATIO_DECODE_APPLY]),
                      "decode_apply_votes_per_s: wire_frame_decode, then the same apply");
    }
    printf("\n(tallyd x: ratios.tallyd_over_<system>, tallyd's durable votes/s over the "
           "system's)\n");
    if (!res[R_TALLYD_TLS].skipped) {
        char tx[32];
        fmt_ratio(tx, sizeof(tx), ratio_of(res, &ratio_defs[RATIO_TLS]));
        printf("ratios.tls_vs_plain_durable: %s (tallyd_tls's durable votes/s over tallyd's, "
               "same workload, rounds taking turns)\n",
               tx);
    }
    printf("\ntargets:\n");
    struct target t[8];
    size_t n = targets_make(c, res, t);
    for (size_t i = 0; i < n; i++) {
        if (t[i].value < 0)
            printf("  %-34s %10s   %s %g\n", t[i].name, "n/a",
                   t[i].at_least ? ">=" : "<=", t[i].bound);
        else
            printf("  %-34s %10.2f   %s %-6g %s\n", t[i].name, t[i].value,
                   t[i].at_least ? ">=" : "<=", t[i].bound, target_met(&t[i]) ? "met" : "NOT met");
    }
    printf("\n%s\n", status == 0 ? "all systems that ran counted exactly"
                                 : "FAILED: a system miscounted or could not run (see above)");
    fflush(stdout);
}

/* ---- the JSON record ---------------------------------------------------------------------- */

static void machine_json(struct sbuf *b)
{
    char cpu[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    if (f) {
        while (fgets(line, sizeof(line), f)) {
            if (strncmp(line, "model name", 10) == 0) {
                char *colon = strchr(line, ':');
                if (colon) {
                    snprintf(cpu, sizeof(cpu), "%s", colon + 2);
                    cpu[strcspn(cpu, "\n")] = 0;
                }
                break;
            }
        }
        fclose(f);
    }
    unsigned long long mem = 0;
    f = fopen("/proc/meminfo", "r");
    if (f) {
        while (fgets(line, sizeof(line), f))
            if (sscanf(line, "MemTotal: %llu kB", &mem) == 1)
                break;
        fclose(f);
    }
    double load[3] = {0, 0, 0};
    f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3)
            load[0] = load[1] = load[2] = 0;
        fclose(f);
    }
    struct utsname u;
    uname(&u);
    sb_printf(b, "\"machine\": {\"nproc\": %ld, \"cpu\": ", sysconf(_SC_NPROCESSORS_ONLN));
    sb_json_str(b, cpu);
    sb_printf(b,
              ", \"mem_total_kb\": %llu, \"loadavg_at_end\": [%.2f, %.2f, %.2f], \"kernel\": ", mem,
              load[0], load[1], load[2]);
    sb_json_str(b, u.release);
    sb_printf(b, "}");
}

static void peer_json(struct sbuf *b, struct peer_result *r)
{
    sb_printf(b, ",\n  \"%s\": {", r->name);
    if (r->ran)
        sb_printf(b, "\"votes_per_s\": %.0f", r->votes_per_s);
    else
        sb_printf(b, "\"votes_per_s\": null");
    sb_printf(b, ", \"exact\": %s", r->ran && r->exact ? "true" : "false");
    if (r->skipped) {
        sb_printf(b, ", \"skipped\": true, \"reason\": ");
        sb_json_str(b, r->note);
    } else if (r->failed) {
        sb_printf(b, ", \"failed\": true, \"reason\": ");
        sb_json_str(b, r->note);
    } else if (r->ran) {
        sb_printf(b, ", \"wall_s\": %.3f, \"votes\": %llu", r->wall_s,
                  (unsigned long long)r->votes);
        if (!r->exact) {
            sb_printf(b, ", \"miscount\": ");
            sb_json_str(b, r->note);
        }
        if (r->json.s)
            sb_printf(b, "%s", r->json.s);
    }
    sb_printf(b, "}");
}

int report_json(const struct bench_ctx *c, struct peer_result *res, int status)
{
    const struct bench_opts *o = c->o;
    const struct workload *w = c->w;
    struct sbuf b = {0};
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", &tm);
    sb_printf(&b, "{\n  \"tool\": \"tally-bench\", \"date\": \"%s\", \"command\": ", date);
    sb_json_str(&b, o->command);
    sb_printf(&b, ",\n  ");
    machine_json(&b);
    uint64_t expected = bench_expected_ballots(o, w);
    sb_printf(&b,
              ",\n  \"workload\": {\"votes\": %llu, \"distinct_ballots\": %llu, "
              "\"repeated_votes\": %llu, \"projects\": %zu, \"circuits\": %zu, "
              "\"collectors\": %zu, \"batch\": %u, \"batches\": %llu, "
              "\"retransmitted_batches\": %llu, \"dup_rate\": %g, \"retransmit_rate\": %g, "
              "\"zipf\": %g, \"seed\": %llu, \"window\": %u, \"checkpoint_ms\": %u, "
              "\"electors_factor\": %g, \"expected_ballots\": ",
              (unsigned long long)w->n_votes, (unsigned long long)w->n_distinct,
              (unsigned long long)w->n_duplicate, w->n_projects, w->n_circuits, w->n_collectors,
              o->batch, (unsigned long long)w->n_batches, (unsigned long long)w->n_retransmits,
              o->dup_rate, o->retransmit_rate, o->zipf, (unsigned long long)o->seed, o->window,
              o->checkpoint_ms, o->electors_factor);
    if (expected)
        sb_printf(&b, "%llu", (unsigned long long)expected);
    else
        sb_printf(&b, "null");
    sb_printf(&b,
              ", \"tallyd_rounds\": %u, \"peer_seconds\": %g, \"peer_votes\": %llu, "
              "\"streamed\": %s, \"setup_s\": %.2f}",
              o->rounds, o->peer_seconds, (unsigned long long)o->peer_votes,
              w->stream ? "true" : "false", c->setup_s);
    uint64_t hwm = 0, rss = 0;
    proc_mem_kb(getpid(), &hwm, &rss);
    sb_printf(&b, ",\n  \"tally_bench\": {\"vmhwm_kb\": %llu, \"vmrss_end_kb\": %llu}",
              (unsigned long long)hwm, (unsigned long long)rss);
    for (int i = 0; i < R_COUNT; i++)
        peer_json(&b, &res[i]);
    sb_printf(&b, ",\n  \"ratios\": {");
    for (size_t i = 0; i < N_RATIOS; i++) {
        double x = ratio_of(res, &ratio_defs[i]);
        if (x < 0)
            sb_printf(&b, "%s\"%s\": null", i ? ", " : "", ratio_defs[i].key);
        else
            sb_printf(&b, "%s\"%s\": %.4f", i ? ", " : "", ratio_defs[i].key, x);
    }
    sb_printf(&b, "}");
    struct target t[8];
    size_t n = targets_make(c, res, t);
    sb_printf(&b, ",\n  \"targets\": {");
    for (size_t i = 0; i < n; i++) {
        sb_printf(&b, "%s\"%s\": {\"%s\": %g, \"value\": ", i ? ", " : "", t[i].name,
                  t[i].at_least ? "at_least" : "at_most", t[i].bound);
        if (t[i].value < 0)
            sb_printf(&b, "null, \"met\": null}");
        else
            sb_printf(&b, "%.4f, \"met\": %s}", t[i].value, target_met(&t[i]) ? "true" : "false");
    }
    sb_printf(&b, "},\n  \"exit_status\": %d\n}\n", status);
    FILE *f = fopen(o->json_path, "w");
    int rc = 0;
    if (!f || fwrite(b.s, 1, b.len, f) != b.len || fclose(f) != 0) {
        fprintf(stderr, "tally-bench: cannot write %s\n", o->json_path);
        rc = -1;
    } else {
        progress("done", "figures written to %s", o->json_path);
    }
    sb_free(&b);
    return rc;
}
