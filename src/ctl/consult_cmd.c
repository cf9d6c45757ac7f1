/* tallyctl's organiser commands (docs/consultation.md part B): the command line of
 * retract, close, set tie-rule, embargo, certify and export, and the first four run here:
 * each request is left in the requests table for the running tallyd and waited for; the
 * embargo is set directly and waited for tallyd to apply. certify.c and export.c run the
 * other two. Owns no SQL (store/consultation.c does). */
#include "core/log.h"
#include "ctl/cmds.h"
#include "ctl/consult.h"
#include "ctl/text.h"

#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CONSULT_WAIT_DEFAULT_MS 30000
#define CONSULT_WAIT_MAX_MS 86400000
#define EMBARGO_WAIT_MS 5000

static const char *const consult_commands[] = {"retract", "close",   "set",
                                               "embargo", "certify", "export"};

int ctl_consult_command(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *w = argv[i];
        if (strcmp(w, "--db") == 0) {
            i++;
            continue;
        }
        if (strncmp(w, "--db=", 5) == 0 || strcmp(w, "-h") == 0 || strcmp(w, "--help") == 0 ||
            strcmp(w, "--version") == 0)
            continue;
        for (size_t k = 0; k < sizeof(consult_commands) / sizeof(consult_commands[0]); k++)
            if (strcmp(w, consult_commands[k]) == 0)
                return i;
        return 0;
    }
    return 0;
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tallyctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see tallyctl --help)\n", stderr);
    va_end(ap);
    return EXIT_USAGE;
}

/* ---- arguments ------------------------------------------------------------------------ */

/* Which options each command takes. */
struct consult_opt {
    const char *name;
    const char *cmds; /* space-separated commands, with spaces around */
};

static const struct consult_opt consult_opts[] = {
    {"collector", " retract "},
    {"seq", " retract "},
    {"reason", " retract "},
    {"actor", " retract close set embargo certify "},
    {"wait-ms", " retract close set "},
    {"seed", " set "},
    {"out", " certify export "},
    {"force", " certify "},
    {"format", " export "},
    {"country", " export "},
};

static bool takes(const char *cmd, const char *opt)
{
    char key[32];
    snprintf(key, sizeof(key), " %s ", cmd);
    for (size_t i = 0; i < sizeof(consult_opts) / sizeof(consult_opts[0]); i++)
        if (strcmp(consult_opts[i].name, opt) == 0)
            return strstr(consult_opts[i].cmds, key) != NULL;
    return false;
}

static int parse_u64(const char *text, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!text[0] || text[0] == '-' || text[0] == '+')
        return -1;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

static int hex_nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* One option's value into a. Returns 0 or a usage error's exit status. */
static int consult_value(struct ctl_consult_args *a, const char *opt, const char *val)
{
    const char *c = a->cmd;
    if (strcmp(opt, "collector") == 0) {
        if (!ctl_collector_id_is_valid(val))
            return usage_error("%s: invalid collector id '%s': use 1 to 63 of A-Z a-z 0-9 . _ -", c,
                               val);
        a->collector = val;
    } else if (strcmp(opt, "seq") == 0) {
        if (parse_u64(val, INT64_MAX, &a->seq) < 0 || a->seq == 0)
            return usage_error("%s: --seq: '%s' is not a batch seq (1 to %" PRId64 ")", c, val,
                               INT64_MAX);
        a->seq_given = true;
    } else if (strcmp(opt, "reason") == 0) {
        if (!val[0] || strlen(val) > STORE_REASON_MAX)
            return usage_error("%s: --reason must be 1 to %d characters", c, STORE_REASON_MAX);
        a->reason = val;
    } else if (strcmp(opt, "actor") == 0) {
        if (!val[0] || strlen(val) > STORE_ACTOR_MAX)
            return usage_error("%s: --actor must be 1 to %d characters", c, STORE_ACTOR_MAX);
        a->actor = val;
    } else if (strcmp(opt, "wait-ms") == 0) {
        uint64_t v;
        if (parse_u64(val, CONSULT_WAIT_MAX_MS, &v) < 0)
            return usage_error("%s: --wait-ms: '%s' is not 0 to %d milliseconds", c, val,
                               CONSULT_WAIT_MAX_MS);
        a->wait_ms = (int)v;
    } else if (strcmp(opt, "seed") == 0) {
        size_t n = strlen(val);
        bool ok = n >= 2 * STORE_SEED_MIN && n <= 2 * STORE_SEED_MAX && n % 2 == 0;
        for (size_t i = 0; ok && i < n; i++)
            ok = hex_nibble(val[i]) >= 0;
        if (!ok)
            return usage_error("set tie-rule: --seed must be %d to %d hex digits (an even "
                               "number: %d to %d bytes)",
                               2 * STORE_SEED_MIN, 2 * STORE_SEED_MAX, STORE_SEED_MIN,
                               STORE_SEED_MAX);
        for (size_t i = 0; i < n / 2; i++)
            a->seed[i] = (uint8_t)(hex_nibble(val[2 * i]) << 4 | hex_nibble(val[2 * i + 1]));
        a->seed_len = n / 2;
    } else if (strcmp(opt, "out") == 0) {
        if (!val[0])
            return usage_error("%s: --out needs a directory", c);
        a->out = val;
    } else if (strcmp(opt, "format") == 0) {
        if (strcmp(val, "csv") != 0 && strcmp(val, "json") != 0 && strcmp(val, "pabulib") != 0)
            return usage_error("export: unknown format '%s' (csv, json or pabulib)", val);
        a->format = val;
    } else if (strcmp(opt, "country") == 0) {
        if (!val[0])
            return usage_error("export: --country needs a name");
        a->country = val;
    }
    return 0;
}

/* A word after the command. */
static int consult_word(struct ctl_consult_args *a, const char *w)
{
    if (strcmp(a->cmd, "set") == 0 && a->words == 0) {
        if (strcmp(w, "tie-rule") != 0)
            return usage_error("set: unknown setting '%s' (tie-rule)", w);
    } else if (strcmp(a->cmd, "set") == 0 && a->words == 1) {
        if (strcmp(w, "lot") != 0)
            return usage_error("set tie-rule: unknown rule '%s' (lot is the only one)", w);
    } else if (strcmp(a->cmd, "embargo") == 0 && a->words == 0) {
        if (strcmp(w, "on") != 0 && strcmp(w, "off") != 0)
            return usage_error("embargo: '%s': on or off", w);
        a->embargo_given = true;
        a->embargo_on = strcmp(w, "on") == 0;
    } else {
        return usage_error("%s: unexpected argument '%s'", a->cmd, w);
    }
    a->words++;
    return 0;
}

/* What each command still lacks once every element is seen. */
static int consult_finish(struct ctl_consult_args *a)
{
    const char *c = a->cmd;
    if (strcmp(c, "retract") == 0) {
        if (!a->collector)
            return usage_error("retract needs --collector ID");
        if (!a->seq_given)
            return usage_error("retract needs --seq N");
        if (!a->reason)
            return usage_error("retract needs --reason TEXT");
    }
    if (strcmp(c, "set") == 0) {
        if (a->words == 0)
            return usage_error("set needs a setting: set tie-rule lot --seed HEX --actor NAME");
        if (a->words == 1)
            return usage_error("set tie-rule needs a rule: lot");
        if (!a->seed_len)
            return usage_error("set tie-rule lot needs --seed HEX");
    }
    if ((strcmp(c, "retract") == 0 || strcmp(c, "close") == 0 || strcmp(c, "set") == 0) &&
        !a->actor)
        return usage_error("%s needs --actor NAME (who asks, recorded)", c);
    if ((strcmp(c, "certify") == 0 || strcmp(c, "export") == 0) && !a->out)
        return usage_error("%s needs --out DIR", c);
    if (strcmp(c, "export") == 0 && !a->format)
        return usage_error("export needs --format csv|json|pabulib");
    return 0;
}

static int consult_parse(int argc, char **argv, int at, struct ctl_consult_args *a)
{
    memset(a, 0, sizeof(*a));
    a->cmd = argv[at];
    a->wait_ms = CONSULT_WAIT_DEFAULT_MS;
    bool seen[sizeof(consult_opts) / sizeof(consult_opts[0])] = {false};
    for (int i = 1; i < argc; i++) {
        if (i == at)
            continue;
        const char *e = argv[i];
        if (strncmp(e, "--", 2) != 0 || e[2] == '\0') {
            if (i < at || e[0] == '-')
                return usage_error(i < at ? "unknown option '%s'"
                                          : "%s: unexpected argument "
                                            "'%s'",
                                   i < at ? e : a->cmd, e);
            int rc = consult_word(a, e);
            if (rc)
                return rc;
            continue;
        }
        char name[32];
        const char *eq = strchr(e + 2, '=');
        size_t len = eq ? (size_t)(eq - e - 2) : strlen(e + 2);
        snprintf(name, sizeof(name), "%.*s", (int)(len < 31 ? len : 31), e + 2);
        const char *val = eq ? eq + 1 : NULL;
        if (strcmp(name, "db") == 0) {
            if (!val && i + 1 >= argc)
                return usage_error("--db needs a connection string");
            a->db = val ? val : argv[++i];
            continue;
        }
        if (i < at || !takes(a->cmd, name))
            return usage_error(i < at ? "unknown option '%s'" : "%s: unexpected argument '%s'",
                               i < at ? e : a->cmd, e);
        size_t k = 0;
        while (strcmp(consult_opts[k].name, name) != 0)
            k++;
        if (seen[k])
            return usage_error("%s: --%s given twice", a->cmd, name);
        seen[k] = true;
        if (strcmp(name, "force") == 0) {
            if (val)
                return usage_error("%s: --force takes no value", a->cmd);
            a->force = true;
            continue;
        }
        if (!val) {
            if (i + 1 >= argc || i + 1 == at)
                return usage_error("%s: --%s needs a value", a->cmd, name);
            val = argv[++i];
        }
        int rc = consult_value(a, name, val);
        if (rc)
            return rc;
    }
    return consult_finish(a);
}

/* ---- requests ------------------------------------------------------------------------- */

static void say_pending(const struct ctl_consult_args *a, uint64_t id, const char *what)
{
    char holder[512];
    store_writer_holder(a->db, holder, sizeof(holder));
    ctl_err("%s: request %" PRIu64 " not applied within %d ms (%s); it stays pending and "
            "tallyd applies it when it runs",
            what, id, a->wait_ms,
            holder[0] ? "tallyd is running but has not got to it" : "no tallyd is running");
}

/* Inserts rq and waits. Returns EXIT_OK with *st applied, or the exit status said. */
static int request_run(struct store *s, const struct ctl_consult_args *a,
                       const struct store_request_spec *rq, const char *what,
                       struct store_request_status *st)
{
    uint64_t id;
    if (store_request_insert(s, rq, &id) < 0) {
        ctl_err("%s: %s", what, store_last_error(s));
        return EXIT_RUNTIME;
    }
    int got = store_request_wait(s, id, a->wait_ms, st);
    if (got < 0) {
        ctl_err("%s: %s", what, store_last_error(s));
        return EXIT_RUNTIME;
    }
    if (got == 0) {
        say_pending(a, id, what);
        return EXIT_NOT_APPLIED;
    }
    if (!st->applied) {
        ctl_err("%s: %s", what, st->outcome[0] ? st->outcome : "refused");
        return EXIT_RUNTIME;
    }
    return EXIT_OK;
}

static int cmd_retract(struct store *s, const struct ctl_consult_args *a)
{
    char what[128];
    snprintf(what, sizeof(what), "retract %s/%" PRIu64, a->collector, a->seq);
    struct store_request_spec rq = {.kind = STORE_SPEC_RETRACT,
                                    .actor = a->actor,
                                    .reason = a->reason,
                                    .collector_id = a->collector,
                                    .seq = a->seq};
    struct store_request_status st;
    int rc = request_run(s, a, &rq, what, &st);
    if (rc != EXIT_OK)
        return rc;
    struct store_correction_row x;
    int got = store_retract_correction_get(s, a->collector, a->seq, &x);
    if (got < 0) {
        ctl_err("%s: applied, but reading its correction: %s", what, store_last_error(s));
        return EXIT_RUNTIME;
    }
    if (got == 0) {
        printf("retracted %s/%" PRIu64 " in checkpoint %" PRIu64 " (no correction found)\n",
               a->collector, a->seq, st.checkpoint_id);
        return EXIT_OK;
    }
    printf("retracted %s/%" PRIu64 " in checkpoint %" PRIu64 " (correction %" PRIu64 "):",
           a->collector, a->seq, x.checkpoint_id ? x.checkpoint_id : st.checkpoint_id, x.id);
    for (size_t i = 0; i < x.n_deltas; i++)
        printf("%s %" PRIu32 " %+" PRId64, i ? "," : "", x.project_ids[i], x.deltas[i]);
    if (x.n_deltas == 0)
        printf(" no votes");
    printf("; ballots %+" PRId64 "\n", x.ballots_delta);
    free(x.actor); /* x's fields are ours (store_retract_correction_get) */
    free(x.reason);
    free(x.table_id);
    free(x.collector_id);
    free(x.project_ids);
    free(x.deltas);
    return EXIT_OK;
}

static int cmd_close(struct store *s, const struct ctl_consult_args *a)
{
    struct store_request_spec rq = {.kind = STORE_SPEC_CLOSE, .actor = a->actor};
    struct store_request_status st;
    int rc = request_run(s, a, &rq, "close", &st);
    if (rc != EXIT_OK)
        return rc;
    uint8_t hash[32];
    char hex[65] = "";
    int got = st.checkpoint_id ? store_checkpoint_hash_get(s, st.checkpoint_id, hash) : 0;
    if (got < 0) {
        ctl_err("close: applied, but reading its checkpoint: %s", store_last_error(s));
        return EXIT_RUNTIME;
    }
    if (got == 1)
        ctl_hex(hash, 32, hex);
    printf("closed at checkpoint %" PRIu64 "; head %s\n", st.checkpoint_id, got ? hex : "unknown");
    return EXIT_OK;
}

static int cmd_tie_rule(struct store *s, const struct ctl_consult_args *a)
{
    uint8_t hash[32];
    char hex[65];
    crypto_generichash(hash, sizeof(hash), a->seed, a->seed_len, NULL, 0);
    ctl_hex(hash, 32, hex);
    struct store_request_spec rq = {
        .kind = STORE_SPEC_TIE_RULE, .actor = a->actor, .seed = a->seed, .seed_len = a->seed_len};
    struct store_request_status st;
    int rc = request_run(s, a, &rq, "set tie-rule", &st);
    if (rc == EXIT_NOT_APPLIED)
        fprintf(stderr, "tallyctl: set tie-rule: once applied, the published seed hash is %s\n",
                hex);
    if (rc != EXIT_OK)
        return rc;
    printf("tie rule lot set at checkpoint %" PRIu64 "; seed hash (BLAKE2b-256, published) %s\n",
           st.checkpoint_id, hex);
    return EXIT_OK;
}

/* ---- embargo -------------------------------------------------------------------------- */

static void time_text(int64_t us, char out[40])
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    if (!us || !gmtime_r(&t, &tm) || !strftime(out, 40, "%Y-%m-%d %H:%M:%S UTC", &tm))
        snprintf(out, 40, "unknown");
}

/* How long a cache in front of tallyd may keep a snapshot document: its max-age of 1 s,
 * which nginx (counting whole seconds) stretches to up to 2 s. */
#define CACHE_MAX_AGE_MS 2000

static int cmd_embargo(struct store *s, const struct ctl_consult_args *a)
{
    struct store_consultation_state st;
    if (!a->embargo_given) {
        if (store_consultation_read(s, &st) < 0) {
            ctl_err("embargo: %s", store_last_error(s));
            return EXIT_RUNTIME;
        }
        char when[40];
        time_text(st.embargo_changed_us, when);
        printf("embargo %s", st.embargo ? "on" : "off");
        if (st.embargo_changed_us)
            printf(" (since %s%s%s)", when, st.embargo_actor[0] ? ", by " : "", st.embargo_actor);
        printf("; tallyd applies: %s\n", !st.embargo_applied_known ? "not confirmed"
                                         : st.embargo_applied      ? "on"
                                                                   : "off");
        return EXIT_OK;
    }
    const char *word = a->embargo_on ? "on" : "off";
    int changed = store_embargo_set(s, a->embargo_on, a->actor ? a->actor : ctl_default_actor());
    if (changed < 0) {
        ctl_err("embargo %s: %s", word, store_last_error(s));
        return EXIT_RUNTIME;
    }
    char holder[512];
    store_writer_holder(a->db, holder, sizeof(holder));
    if (!holder[0]) {
        printf("embargo %s%s: no tallyd is running: SQL readers see it now, tallyd from its "
               "start\n",
               word, changed ? "" : " (already)");
        return EXIT_OK;
    }
    for (int waited = 0;; waited += 100) {
        if (store_consultation_read(s, &st) < 0) {
            ctl_err("embargo %s: %s", word, store_last_error(s));
            return EXIT_RUNTIME;
        }
        if (st.embargo_applied_known && st.embargo_applied == a->embargo_on &&
            st.embargo == a->embargo_on)
            break;
        if (st.embargo != a->embargo_on) {
            ctl_err("embargo %s: changed again meanwhile (it is %s now)", word,
                    st.embargo ? "on" : "off");
            return EXIT_RUNTIME;
        }
        if (waited >= EMBARGO_WAIT_MS) {
            ctl_err("embargo %s: set in the database (SQL readers see it now), but tallyd "
                    "did not apply it within %d s (%s)",
                    word, EMBARGO_WAIT_MS / 1000, holder);
            return EXIT_NOT_APPLIED;
        }
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (a->embargo_on && changed) {
        /* tallyd's snapshot documents say Cache-Control: max-age=1 (docs/api.md), so a cache
         * in front of it (deploy/nginx/tallyd.conf, a browser) may serve one with counts a
         * little longer: the embargo is in force there too once that time has passed. */
        struct timespec ts = {CACHE_MAX_AGE_MS / 1000, (CACHE_MAX_AGE_MS % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    printf("embargo %s%s: applied by tallyd and in the SQL views%s\n", word,
           changed ? "" : " (already)",
           a->embargo_on && changed ? "; answers cached before it have expired" : "");
    return EXIT_OK;
}

/* ---- entry ---------------------------------------------------------------------------- */

int cmd_consult(int argc, char **argv, int at)
{
    struct ctl_consult_args a;
    int rc = consult_parse(argc, argv, at, &a);
    if (rc)
        return rc;
    if (sodium_init() < 0) {
        ctl_err("%s: libsodium failed to initialise", a.cmd);
        return EXIT_RUNTIME;
    }
    log_set_level(LOG_WARN);
    char err[512] = "";
    struct store *s = store_open(a.db, err, sizeof(err));
    if (!s) {
        ctl_err("cannot connect to PostgreSQL: %s", err);
        return EXIT_RUNTIME;
    }
    if (strcmp(a.cmd, "retract") == 0)
        rc = cmd_retract(s, &a);
    else if (strcmp(a.cmd, "close") == 0)
        rc = cmd_close(s, &a);
    else if (strcmp(a.cmd, "set") == 0)
        rc = cmd_tie_rule(s, &a);
    else if (strcmp(a.cmd, "embargo") == 0)
        rc = cmd_embargo(s, &a);
    else if (strcmp(a.cmd, "certify") == 0)
        rc = cmd_certify(s, &a);
    else
        rc = cmd_export(s, &a);
    store_close(s);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        ctl_err("%s: writing output: %s", a.cmd, strerror(errno));
        rc = EXIT_RUNTIME;
    }
    return rc;
}
