/* tally-push: reads `voter,project_id[,table_id]` CSV lines, turns each voter id into a ballot
 * token and pushes the votes to tallyd in spooled batches through libtally, resuming after a
 * crash from the input cursor stored with the newest spooled batch; or, with --sheets, tally
 * sheets (sheets_run.c); or, with --verify-receipts, checks receipts (receipts_run.c). Owns
 * the vote input and what is printed; the options are options.c's, the spool and the session
 * libtally's, lines and tokens push.c's, sheets sheets.c's. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "core/csv.h"
#include "core/xalloc.h"
#include "push/options.h"
#include "push/push.h"
#include "push/receipts_run.h"
#include "push/sheets.h"
#include "push/sheets_run.h"
#include "tally/client.h"
#include "tally/protocol.h"

#define EXIT_FATAL PUSH_EXIT_FATAL
#define EXIT_USAGE PUSH_EXIT_USAGE
#define EXIT_MALFORMED PUSH_EXIT_MALFORMED
#define PROGRESS_MS 2000
/* A quiet input for this long sends the votes read so far (a pipe fed a few at a time). */
#define INPUT_QUIET_FLUSH_MS 500
/* Bytes a vote takes in a Batch frame at most (fixed64 + varint uint32 + its table index, a
 * varint below 4097), for clamping; and a full table dictionary (4096 ids of 63 bytes, each
 * with its tag and length). */
#define FRAME_BYTES_PER_VOTE 15u
#define FRAME_OVERHEAD 64u
#define FRAME_TABLES_MAX (PUSH_TABLES_PER_BATCH * (TALLY_COLLECTOR_ID_MAX + 2u))

static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig)
{
    stop_signal = sig;
}

struct push {
    struct push_options opt;
    uint8_t key[PUSH_KEY_BYTES];
    struct tally_client *client;
    int in_fd;             /* the input (0, stdin, until it is opened) */
    struct csv_reader *in; /* its lines, once input_resume has positioned it */
    const char *in_name;   /* for messages */
    uint64_t offset;       /* input bytes consumed */
    uint64_t line;         /* lines consumed */
    uint64_t malformed;
    uint8_t prefix[PUSH_PREFIX_BYTES];
    size_t prefix_len;
    uint64_t *ballots;
    uint32_t *projects;
    uint32_t *vote_tables; /* parallel: 0 or the index in tables */
    bool named;            /* a vote of the batch being gathered names a table */
    struct push_tables tables;
    size_t n, cap;
    int64_t next_progress;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_client_log(void *arg, enum tally_client_log_level level, const char *msg)
{
    const struct push *p = arg;
    /* An error is the reason of a fatal status, which client_check prints once, with what
     * it means for this run. */
    if (level == TALLY_CLIENT_LOG_DEBUG || level == TALLY_CLIENT_LOG_ERROR ||
        (level == TALLY_CLIENT_LOG_INFO && p->opt.quiet))
        return;
    fprintf(stderr, "tally-push: %s\n", msg);
}

static int key_load(struct push *p)
{
    if (!p->opt.key_file[0]) {
        memcpy(p->key, push_demo_key, PUSH_KEY_BYTES);
        fprintf(stderr, "tally-push: WARN: no --ballot-key: using the public demo key; anyone "
                        "can link its tokens to voter ids. Use a secret key in a real "
                        "consultation.\n");
        return 0;
    }
    int fd = open(p->opt.key_file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "tally-push: %s: %s\n", p->opt.key_file, strerror(errno));
        return -1;
    }
    uint8_t buf[2 * PUSH_KEY_BYTES + 3];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len == sizeof(buf))
            break; /* already too long for either form */
    }
    close(fd);
    int rc = push_key_parse(buf, len, p->key);
    sodium_memzero(buf, sizeof(buf));
    if (rc < 0) {
        fprintf(stderr, "tally-push: %s: a ballot key is 32 raw bytes or 64 hex digits\n",
                p->opt.key_file);
        return -1;
    }
    return 0;
}

static void prefix_add(struct push *p, const void *data, size_t len)
{
    size_t room = PUSH_PREFIX_BYTES - p->prefix_len;
    if (len > room)
        len = room;
    memcpy(p->prefix + p->prefix_len, data, len);
    p->prefix_len += len;
}

/* Reads exactly len bytes of the input, going on after a signal that is not a stop. Returns
 * 0, or -1 with *err the errno of a failed read, 0 when the input ended first. */
static int input_read_full(struct push *p, void *buf, size_t len, int *err)
{
    for (size_t got = 0; got < len;) {
        ssize_t n = read(p->in_fd, (char *)buf + got, len - got);
        if (n < 0 && errno == EINTR && !stop_signal)
            continue;
        if (n <= 0) {
            *err = n < 0 ? errno : 0;
            return -1;
        }
        got += (size_t)n;
    }
    return 0;
}

/* Positions the input after the bytes the spool's newest batch already covers. */
static int input_resume(struct push *p, const struct push_cursor *cur)
{
    int read_errno = 0;
    size_t want = cur->prefix_len;
    if (input_read_full(p, p->prefix, want, &read_errno) < 0)
        goto short_input;
    p->prefix_len = want;
    uint8_t h[PUSH_PREFIX_HASH_BYTES];
    push_prefix_hash(p->prefix, want, h);
    if (memcmp(h, cur->prefix_hash, sizeof(h)) != 0) {
        fprintf(stderr,
                "tally-push: %s does not start like the input this spool was reading; "
                "refusing to skip its first %" PRIu64 " bytes (use a new --spool and "
                "--collector for a new input)\n",
                p->in_name, cur->offset);
        return -1;
    }
    uint64_t left = cur->offset - want;
    struct stat st;
    if (left > 0 && fstat(p->in_fd, &st) == 0 && S_ISREG(st.st_mode)) {
        if ((uint64_t)st.st_size < cur->offset)
            goto short_input;
        if (lseek(p->in_fd, (off_t)cur->offset, SEEK_SET) >= 0)
            left = 0;
    }
    static char sink[65536];
    while (left > 0) {
        size_t chunk = left < sizeof(sink) ? (size_t)left : sizeof(sink);
        if (input_read_full(p, sink, chunk, &read_errno) < 0)
            goto short_input;
        left -= chunk;
    }
    p->offset = cur->offset;
    p->line = cur->line;
    p->malformed = cur->malformed;
    if (!p->opt.quiet)
        fprintf(stderr, "tally-push: resuming %s after line %" PRIu64 " (byte %" PRIu64 ")\n",
                p->in_name, cur->line, cur->offset);
    return 0;
short_input:
    if (stop_signal)
        return -1;
    if (read_errno)
        fprintf(stderr, "tally-push: %s: %s\n", p->in_name, strerror(read_errno));
    else
        fprintf(stderr,
                "tally-push: %s is shorter than the %" PRIu64 " bytes this spool already "
                "consumed: not the same input\n",
                p->in_name, cur->offset);
    return -1;
}

static void progress(struct push *p, bool force)
{
    int64_t now = now_ms();
    if (p->opt.quiet || (!force && now < p->next_progress))
        return;
    p->next_progress = now + PROGRESS_MS;
    struct tally_client_stats st;
    tally_client_stats(p->client, &st);
    const char *server = p->opt.servers[st.server_index].text;
    fprintf(stderr,
            "tally-push: line %" PRIu64 ", %" PRIu64 " batches spooled (%" PRIu64
            " votes), durable up to %" PRIu64 ", %s%s%s%s\n",
            p->line, st.batches_spooled, st.votes_spooled, st.durable_seq,
            st.connected ? "connected to " : "not connected", st.connected ? server : "",
            !st.connected && st.last_error[0] ? ": " : "", !st.connected ? st.last_error : "");
}

static void interrupted(struct push *p)
{
    struct tally_client_stats st;
    tally_client_stats(p->client, &st);
    fprintf(stderr,
            "tally-push: stopped by signal %d: %" PRIu64 " batches are spooled in %s (%" PRIu64
            " not yet durable); run the same command again to resume\n",
            (int)stop_signal, st.batches_spooled, p->opt.spool, st.batches_pending);
}

/* Returns 0, or EXIT_FATAL once the reason has been printed. */
static int client_check(struct push *p, int rc)
{
    if (rc == 0 || rc == TALLY_CLIENT_ERR_INTR || rc == TALLY_CLIENT_ERR_TIMEOUT)
        return stop_signal ? EXIT_FATAL : 0;
    if (rc == TALLY_CLIENT_ERR_INVALID) {
        fprintf(stderr, "tally-push: internal error: libtally refused a batch\n");
        return EXIT_FATAL;
    }
    /* A fatal status is sticky and its reason is last_error (libtally logged it at ERROR). A
     * seq conflict is no fault of this run but another process on the same collector id: it
     * gets its own word, the line names the id, the seq and the spool dir. */
    struct tally_client_stats st;
    tally_client_stats(p->client, &st);
    int code = push_exit_for_status(rc);
    fprintf(stderr, "tally-push: %s: %s\n",
            rc == TALLY_CLIENT_ERR_SEQ_CONFLICT || code != EXIT_FATAL ? "fatal" : "error",
            st.last_error[0] ? st.last_error : tally_client_strerror(rc));
    return code;
}

/* Spools the votes gathered so far with the cursor just past the last line read. */
static int batch_flush(struct push *p)
{
    if (p->n == 0)
        return 0;
    struct push_cursor cur = {
        .offset = p->offset,
        .line = p->line,
        .malformed = p->malformed,
        .prefix_len = (uint32_t)(p->offset < PUSH_PREFIX_BYTES ? p->offset : PUSH_PREFIX_BYTES),
    };
    push_prefix_hash(p->prefix, cur.prefix_len, cur.prefix_hash);
    uint8_t blob[PUSH_CURSOR_BYTES];
    push_cursor_encode(&cur, blob);
    for (;;) {
        int rc = tally_client_spool_tables(p->client, p->ballots, p->projects,
                                           p->named ? p->vote_tables : NULL, p->n,
                                           (const char *const *)p->tables.ids,
                                           p->named ? p->tables.n : 0, blob, sizeof(blob), NULL);
        if (rc == 0)
            break;
        if (rc != TALLY_CLIENT_ERR_FULL)
            return client_check(p, rc);
        /* Spool full: let the server catch up before reading more. */
        int e = client_check(p, tally_client_pump(p->client, 200));
        if (e)
            return e;
        progress(p, false);
    }
    p->n = 0;
    p->named = false;
    push_tables_reset(&p->tables);
    int e = client_check(p, tally_client_pump(p->client, 0));
    progress(p, false);
    return e;
}

/* Waits for the first Welcome: the batch size must respect the server's limits. */
static int server_wait(struct push *p)
{
    struct tally_client_stats st;
    for (;;) {
        tally_client_stats(p->client, &st);
        if (st.server_known)
            break;
        int e = client_check(p, tally_client_pump(p->client, 250));
        if (e)
            return e;
        progress(p, false);
    }
    size_t cap = p->opt.batch;
    if (st.max_batch_votes && cap > st.max_batch_votes)
        cap = st.max_batch_votes;
    if (st.max_frame_bytes > FRAME_OVERHEAD * 2) {
        /* Room for a full dictionary besides the votes; with a small frame limit, room for
         * one new table id per vote instead (a batch never names more tables than votes). */
        size_t room = st.max_frame_bytes - FRAME_OVERHEAD;
        size_t fit = room > 2 * FRAME_TABLES_MAX
                         ? (room - FRAME_TABLES_MAX) / FRAME_BYTES_PER_VOTE
                         : room / (FRAME_BYTES_PER_VOTE + TALLY_COLLECTOR_ID_MAX + 2u);
        if (cap > fit)
            cap = fit;
    }
    if (cap < p->opt.batch && !p->opt.quiet)
        fprintf(stderr, "tally-push: batches of %zu votes (the server's limit)\n", cap);
    p->cap = cap;
    p->ballots = xcalloc(cap, sizeof(*p->ballots));
    p->projects = xcalloc(cap, sizeof(*p->projects));
    p->vote_tables = xcalloc(cap, sizeof(*p->vote_tables));
    return 0;
}

/* Waits until the input has something (or ends, or fails: read(2) then says which), pumping
 * the session meanwhile: with a quiet pipe, acks, resends after a reconnect and keep-alive
 * Pings go on, and votes already read go out as a smaller batch once the input has been
 * quiet for INPUT_QUIET_FLUSH_MS rather than waiting for a full one. A regular file is
 * always ready. */
static int input_wait(struct push *p)
{
    int64_t quiet_since = now_ms();
    for (;;) {
        struct pollfd pfd = {.fd = p->in_fd, .events = POLLIN};
        int r = poll(&pfd, 1, 0);
        if (r != 0 || stop_signal)
            return 0; /* ready, hung up, or an error (EINTR included) read(2) will report */
        if (p->n && now_ms() - quiet_since >= INPUT_QUIET_FLUSH_MS) {
            int e = batch_flush(p);
            if (e)
                return e;
        }
        int e = client_check(p, tally_client_pump(p->client, 100));
        if (e)
            return e;
        progress(p, false);
    }
}

static int input_read(struct push *p)
{
    int rc = 0;
    for (;;) {
        if (stop_signal) {
            rc = EXIT_FATAL;
            break;
        }
        if (!csv_reader_has_line(p->in) && (rc = input_wait(p)) != 0)
            break;
        if (stop_signal)
            continue;
        char *line;
        size_t n;
        int got = csv_reader_line(p->in, &line, &n);
        int e = got < 0 ? csv_reader_error(p->in)->sys : 0;
        if (e == EINTR)
            continue; /* a partial line waits in the reader, uncounted; a stop is seen above */
        if (got < 0) {
            fprintf(stderr, "tally-push: %s: %s\n", p->in_name, strerror(e));
            rc = EXIT_FATAL;
            break;
        }
        if (got == 0)
            break;
        prefix_add(p, line, n);
        p->offset += (uint64_t)n;
        p->line++;
        struct push_line pl;
        switch (push_line_parse(line, n, p->line == 1, &pl)) {
        case PUSH_LINE_VOTE: {
            uint32_t t = 0;
            if (pl.table_len) {
                /* A full dictionary sends what came before: the cursor is the previous
                 * line's end, so this line is read again after a crash. */
                if ((t = push_tables_index(&p->tables, pl.table, pl.table_len)) == 0) {
                    p->offset -= (uint64_t)n;
                    p->line--;
                    rc = batch_flush(p);
                    p->offset += (uint64_t)n;
                    p->line++;
                    if (rc)
                        break;
                    t = push_tables_index(&p->tables, pl.table, pl.table_len);
                }
                p->named = true;
            }
            p->ballots[p->n] = push_token(p->key, pl.voter, pl.voter_len);
            p->projects[p->n] = pl.project;
            p->vote_tables[p->n] = t;
            p->n++;
            break;
        }
        case PUSH_LINE_MALFORMED:
            p->malformed++;
            fprintf(stderr, "tally-push: %s:%" PRIu64 ": %s\n", p->in_name, p->line, pl.reason);
            break;
        case PUSH_LINE_HEADER:
        case PUSH_LINE_BLANK:
            break;
        }
        if (rc || (p->n == p->cap && (rc = batch_flush(p)) != 0))
            break;
        if ((p->line & 4095) == 0)
            progress(p, false);
    }
    if (rc == 0)
        rc = batch_flush(p);
    return rc;
}

static int durable_wait(struct push *p)
{
    for (;;) {
        int rc = tally_client_wait_durable(p->client, PROGRESS_MS);
        if (rc == 0)
            return 0;
        int e = client_check(p, rc);
        if (e)
            return e;
        progress(p, false);
    }
}

static int check_cb(void *arg, int rc)
{
    struct push *p = arg;
    int e = client_check(p, rc);
    progress(p, false);
    return e;
}

/* The summary line, with its sheets part when sheets are involved. */
static int summary_print(struct push *p)
{
    struct tally_client_stats st;
    tally_client_stats(p->client, &st);
    char line[512];
    push_summary_format(line, sizeof(line), st.batches_spooled, st.votes_spooled,
                        st.server.accepted, st.server.duplicate, st.server.rejected,
                        st.rejected_not_allowed);
    uint64_t seen = st.sheets_accepted + st.sheets_duplicate + st.sheets_rejected;
    if (p->opt.sheets || st.server.sheets || seen) {
        /* tallyd's durable totals; a tallyd that does not report them yet: this run's acks. */
        if (st.server.sheets)
            push_summary_sheets_append(line, sizeof(line), st.server.sheets,
                                       st.server.sheets_accepted, st.server.sheets_duplicate,
                                       st.server.sheets_rejected, st.sheets_rejected_by_reason);
        else
            push_summary_sheets_append(line, sizeof(line), seen, st.sheets_accepted,
                                       st.sheets_duplicate, st.sheets_rejected,
                                       st.sheets_rejected_by_reason);
    }
    printf("%s\n", line);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "tally-push: stdout: %s\n", strerror(errno));
        return EXIT_FATAL;
    }
    return 0;
}

static int push_run(struct push *p)
{
    if (!p->opt.sheets && key_load(p) < 0)
        return EXIT_FATAL;
    if (p->opt.sheets) {
        p->in_fd = open(p->opt.sheets, O_RDONLY | O_CLOEXEC);
        p->in_name = p->opt.sheets;
        if (p->in_fd < 0) {
            fprintf(stderr, "tally-push: %s: %s\n", p->opt.sheets, strerror(errno));
            return EXIT_FATAL;
        }
    } else if (strcmp(p->opt.input, "-") == 0) {
        p->in_fd = STDIN_FILENO;
        p->in_name = "-";
    } else {
        p->in_fd = open(p->opt.input, O_RDONLY | O_CLOEXEC);
        p->in_name = p->opt.input;
        if (p->in_fd < 0) {
            fprintf(stderr, "tally-push: %s: %s\n", p->opt.input, strerror(errno));
            return EXIT_FATAL;
        }
    }
    struct tally_client_server servers[TALLY_CLIENT_SERVERS_MAX];
    for (size_t i = 0; i < p->opt.n_servers; i++)
        servers[i] = (struct tally_client_server){p->opt.servers[i].host, p->opt.servers[i].port};
    struct tally_client_config cfg = {
        .servers = servers,
        .n_servers = p->opt.n_servers,
        .collector_id = p->opt.collector,
        .spool_dir = p->opt.spool,
        .log_cb = on_client_log,
        .log_arg = p,
        .tls_cert = p->opt.tls_cert[0] ? p->opt.tls_cert : NULL,
        .tls_key = p->opt.tls_key[0] ? p->opt.tls_key : NULL,
        .tls_ca = p->opt.tls_ca[0] ? p->opt.tls_ca : NULL,
        .tls_server_name = p->opt.tls_server_name[0] ? p->opt.tls_server_name : NULL,
    };
    char err[512];
    p->client = tally_client_new(&cfg, err, sizeof(err));
    if (!p->client) {
        fprintf(stderr, "tally-push: %s\n", err);
        return EXIT_FATAL;
    }

    p->next_progress = now_ms() + PROGRESS_MS;
    if (p->opt.sheets) {
        struct push_sheets_run r = {
            .client = p->client,
            .fd = p->in_fd,
            .name = p->in_name,
            .spool = p->opt.spool,
            .quiet = p->opt.quiet,
            .stop = &stop_signal,
            .check = check_cb,
            .arg = p,
        };
        int rc = push_sheets_run(&r);
        if (rc == 0)
            rc = durable_wait(p);
        if (rc) {
            if (stop_signal)
                interrupted(p);
            return rc;
        }
        return summary_print(p);
    }

    uint8_t blob[TALLY_CLIENT_CURSOR_MAX];
    size_t blob_len;
    struct push_cursor cur = {0};
    uint64_t sheets_done;
    uint8_t sheets_hash[PUSH_FILE_HASH_BYTES];
    if (tally_client_last_cursor(p->client, blob, sizeof(blob), &blob_len) == 0 && blob_len &&
        push_sheet_cursor_decode(blob, blob_len, &sheets_done, sheets_hash) == 0) {
        fprintf(stderr,
                "tally-push: spool %s was last used for --sheets: its cursor says nothing of "
                "a vote input (use another --spool and --collector for votes)\n",
                p->opt.spool);
        return EXIT_FATAL;
    }
    if (tally_client_last_cursor(p->client, blob, sizeof(blob), &blob_len) < 0 ||
        (blob_len && push_cursor_decode(blob, blob_len, &cur) < 0)) {
        fprintf(stderr, "tally-push: spool %s holds a cursor tally-push did not write\n",
                p->opt.spool);
        return EXIT_FATAL;
    }

    if (blob_len && input_resume(p, &cur) < 0)
        return EXIT_FATAL;
    /* By read(2): a line that has come down a pipe is taken without waiting for more. */
    p->in = csv_reader_new_fd(p->in_fd, &(const struct csv_options){0});

    int rc = server_wait(p);
    if (rc == 0)
        rc = input_read(p);
    if (rc == 0)
        rc = durable_wait(p);
    if (rc) {
        if (stop_signal)
            interrupted(p);
        return rc;
    }

    if ((rc = summary_print(p)) != 0)
        return rc;
    if (p->malformed) {
        fprintf(stderr,
                "tally-push: %" PRIu64 " malformed line%s skipped in %s (each reported with "
                "its line number by the run that read it)\n",
                p->malformed, p->malformed == 1 ? " was" : "s were", p->in_name);
        return EXIT_MALFORMED;
    }
    return 0;
}

/* --check-config: the options are valid by now; the ballot key is the one setting only
 * its file can prove. Reads nothing else: no input, no spool, no connection. */
static int config_check(struct push *p)
{
    /* --verify-receipts needs no ballot key; its one file is --http-tls-ca. */
    bool verify = p->opt.verify_receipts;
    int rc = !verify && key_load(p) < 0 ? EXIT_USAGE : 0;
    const char *tls[][2] = {{"--tls-cert", verify ? "" : p->opt.tls_cert},
                            {"--tls-key", verify ? "" : p->opt.tls_key},
                            {"--tls-ca", verify ? "" : p->opt.tls_ca},
                            {"--http-tls-ca", verify ? p->opt.http_tls_ca : ""}};
    for (size_t i = 0; i < 4; i++)
        if (tls[i][1][0] && access(tls[i][1], R_OK) < 0) {
            fprintf(stderr, "tally-push: %s %s: %s\n", tls[i][0], tls[i][1], strerror(errno));
            rc = EXIT_USAGE;
        }
    sodium_memzero(p->key, sizeof(p->key));
    if (rc == 0)
        printf("tally-push: configuration OK (%s)\n",
               p->opt.config ? p->opt.config : "command line only");
    return rc;
}

int main(int argc, char **argv)
{
    struct push p;
    memset(&p, 0, sizeof(p));
    int rc = push_options_parse(argc, argv, &p.opt);
    if (rc)
        return rc == PUSH_OPTIONS_DONE ? 0 : rc;
    if (sodium_init() < 0) {
        fprintf(stderr, "tally-push: libsodium failed to initialise\n");
        return EXIT_FATAL;
    }
    if (p.opt.check_config)
        return config_check(&p);
    push_tables_init(&p.tables);
    /* No SA_RESTART: a read blocked on stdin must return so the signal is seen. */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    if (p.opt.verify_receipts) {
        struct push_receipts_run r = {
            .spool = p.opt.spool,
            .collector = p.opt.collector,
            .head = p.opt.head,
            .http_host = p.opt.http.host,
            .http_port = p.opt.http.port,
            .http_tls_ca = p.opt.http_tls_ca,
            .quiet = p.opt.quiet,
            .stop = &stop_signal,
        };
        rc = push_receipts_run(&r);
    } else {
        rc = push_run(&p);
    }

    csv_reader_free(p.in);
    if (p.in_fd > STDIN_FILENO)
        close(p.in_fd);
    tally_client_free(p.client);
    sodium_memzero(p.key, sizeof(p.key));
    free(p.ballots);
    free(p.projects);
    free(p.vote_tables);
    push_tables_cleanup(&p.tables);
    return rc;
}
