/* Integration-test support, part one: environment, child processes, files, sockets and
 * HTTP. Knows nothing about tallyd's protocol or database (see consult.c). */
#include "support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- environment ------------------------------------------------------------------- */

static const char *must_env(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v) {
        fprintf(stderr, "support: environment variable %s is not set (run through ctest)\n", name);
        abort();
    }
    return v;
}

const char *ts_bin_dir(void)
{
    return must_env("TALLY_BIN_DIR");
}

const char *ts_src_dir(void)
{
    return must_env("TALLY_SRC_DIR");
}

const char *ts_pg_dir(void)
{
    return must_env("TALLY_PG_DIR");
}

const char *ts_prog(const char *name)
{
    static char paths[4][PATH_MAX];
    static const char *const names[4] = {"tallyd", "tallyctl", "tally-push", "tally-gen"};
    static const char *const envs[4] = {"TALLYD", "TALLYCTL", "TALLY_PUSH", "TALLY_GEN"};
    static const char *const subdirs[4] = {"", "src/ctl/", "src/push/", "src/gen/"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, names[i]) != 0)
            continue;
        if (paths[i][0])
            return paths[i];
        const char *e = getenv(envs[i]);
        if (e && *e) {
            snprintf(paths[i], sizeof paths[i], "%s", e);
        } else {
            snprintf(paths[i], sizeof paths[i], "%s/%s%s", ts_bin_dir(), subdirs[i], name);
            if (access(paths[i], X_OK) != 0)
                snprintf(paths[i], sizeof paths[i], "%s/%s", ts_bin_dir(), name);
        }
        if (access(paths[i], X_OK) != 0)
            fprintf(stderr, "support: %s not found at %s (not built yet?)\n", name, paths[i]);
        return paths[i];
    }
    fprintf(stderr, "support: unknown program %s\n", name);
    abort();
}

const char *ts_workdir(const char *name)
{
    static char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/itest/%s", ts_bin_dir(), name);
    ts_rm_rf(path);
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s/itest", ts_bin_dir());
    mkdir(parent, 0755);
    if (mkdir(path, 0755) != 0) {
        fprintf(stderr, "support: mkdir %s: %s\n", path, strerror(errno));
        abort();
    }
    return path;
}

int64_t ts_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ts_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int ts_scale(int ms)
{
    const char *s = getenv("TALLY_TEST_TIME_SCALE");
    int k = s ? atoi(s) : 1;
    return ms * (k > 0 ? k : 1);
}

/* ---- processes ------------------------------------------------------------------------ */

#define MAX_CHILDREN 64
static pid_t children[MAX_CHILDREN];
static bool cleanup_registered;

static void child_add(pid_t pid)
{
    if (!cleanup_registered) {
        atexit(ts_cleanup);
        cleanup_registered = true;
    }
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (!children[i]) {
            children[i] = pid;
            return;
        }
    }
    fprintf(stderr, "support: too many children\n");
}

static void child_remove(pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] == pid)
            children[i] = 0;
}

void ts_cleanup(void)
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (children[i] > 0) {
            kill(children[i], SIGKILL);
            waitpid(children[i], NULL, 0);
            children[i] = 0;
        }
    }
}

static int open_out(const char *path)
{
    /* O_CLOEXEC everywhere: only the dup2'ed copies may reach the child, or a daemon it
     * starts (pg_ctl's postmaster) would hold our pipe open. */
    if (!path || !*path)
        return open("/dev/null", O_WRONLY | O_CLOEXEC);
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

/* In the child after fork: die with the test, then exec. Never returns. */
static void child_exec(pid_t parent, char *const argv[], int in_fd, int out_fd, int err_fd)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    /* The test may have ignored or blocked signals; the child starts clean. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    if (in_fd >= 0)
        dup2(in_fd, 0);
    if (out_fd >= 0)
        dup2(out_fd, 1);
    if (err_fd >= 0)
        dup2(err_fd, 2);
    execv(argv[0], argv);
    fprintf(stderr, "support: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

int ts_spawn(struct ts_proc *p, const char *name, char *const argv[], const char *out_path,
             const char *err_path)
{
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    snprintf(p->out, sizeof p->out, "%s", out_path ? out_path : "");
    snprintf(p->err, sizeof p->err, "%s", err_path ? err_path : "");
    int in_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int out_fd = open_out(out_path);
    int err_fd = open_out(err_path);
    if (in_fd < 0 || out_fd < 0 || err_fd < 0) {
        fprintf(stderr, "support: %s: cannot open its output files: %s\n", name, strerror(errno));
        goto fail;
    }
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "support: fork: %s\n", strerror(errno));
        goto fail;
    }
    if (pid == 0)
        child_exec(parent, argv, in_fd, out_fd, err_fd);
    close(in_fd);
    close(out_fd);
    close(err_fd);
    p->pid = pid;
    child_add(pid);
    return 0;
fail:
    if (in_fd >= 0)
        close(in_fd);
    if (out_fd >= 0)
        close(out_fd);
    if (err_fd >= 0)
        close(err_fd);
    return -1;
}

bool ts_proc_done(struct ts_proc *p)
{
    if (p->exited || p->pid <= 0)
        return true;
    int st;
    pid_t r = waitpid(p->pid, &st, WNOHANG);
    if (r == p->pid) {
        p->exited = true;
        p->status = st;
        child_remove(p->pid);
        return true;
    }
    return false;
}

int ts_proc_wait(struct ts_proc *p, int timeout_ms)
{
    int64_t deadline = ts_now_ms() + timeout_ms;
    for (;;) {
        if (ts_proc_done(p))
            return 0;
        if (ts_now_ms() >= deadline)
            return -1;
        ts_sleep_ms(10);
    }
}

void ts_proc_signal(struct ts_proc *p, int sig)
{
    if (!ts_proc_done(p))
        kill(p->pid, sig);
}

void ts_proc_kill(struct ts_proc *p)
{
    if (ts_proc_done(p))
        return;
    kill(p->pid, SIGKILL);
    int st;
    if (waitpid(p->pid, &st, 0) == p->pid) {
        p->exited = true;
        p->status = st;
    }
    child_remove(p->pid);
}

int ts_proc_code(const struct ts_proc *p)
{
    if (!p->exited)
        return -1;
    if (WIFEXITED(p->status))
        return WEXITSTATUS(p->status);
    if (WIFSIGNALED(p->status))
        return 128 + WTERMSIG(p->status);
    return -1;
}

void ts_dump_tail(const char *label, const char *path, int lines)
{
    char *text = ts_read_file(path);
    if (!text) {
        fprintf(stderr, "---- %s (%s): unreadable\n", label, path);
        return;
    }
    size_t len = strlen(text);
    const char *start = text + len;
    int seen = 0;
    while (start > text) {
        if (start[-1] == '\n' && start != text + len && ++seen >= lines)
            break;
        start--;
    }
    fprintf(stderr, "---- %s (%s), last %d lines:\n%s", label, path, lines, start);
    if (len && text[len - 1] != '\n')
        fputc('\n', stderr);
    fprintf(stderr, "---- end of %s\n", label);
    free(text);
}

int ts_run(char *const argv[], char **out, const char *err_path, int timeout_ms)
{
    int pipefd[2] = {-1, -1};
    int err_fd = -1, in_fd = -1;
    if (out)
        *out = NULL;
    if (pipe2(pipefd, O_CLOEXEC) != 0)
        return -1;
    in_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (err_path)
        err_fd = open_out(err_path);
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        close(in_fd);
        if (err_fd >= 0)
            close(err_fd);
        return -1;
    }
    if (pid == 0)
        child_exec(parent, argv, in_fd, pipefd[1], err_fd);
    child_add(pid);
    close(pipefd[1]);
    close(in_fd);
    if (err_fd >= 0)
        close(err_fd);

    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    if (!buf)
        abort();
    int64_t deadline = ts_now_ms() + timeout_ms;
    bool timed_out = false;
    for (;;) {
        int left = (int)(deadline - ts_now_ms());
        if (left <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd pfd = {pipefd[0], POLLIN, 0};
        int r = poll(&pfd, 1, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            continue;
        if (len + 4096 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            if (!buf)
                abort();
        }
        ssize_t n = read(pipefd[0], buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(pipefd[0]);
    buf[len] = '\0';
    struct ts_proc p = {.pid = pid};
    snprintf(p.name, sizeof p.name, "%s", argv[0]);
    if (timed_out || ts_proc_wait(&p, timed_out ? 0 : (int)(deadline - ts_now_ms()) + 100)) {
        fprintf(stderr, "support: %s did not finish within %d ms; killed\n", argv[0], timeout_ms);
        ts_proc_kill(&p);
        free(buf);
        return -1;
    }
    if (out)
        *out = buf;
    else
        free(buf);
    return ts_proc_code(&p);
}

/* ---- files ---------------------------------------------------------------------------- */

char *ts_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    if (!buf)
        abort();
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
            if (!buf)
                abort();
        }
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

int ts_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    size_t n = strlen(text);
    int rc = fwrite(text, 1, n, f) == n ? 0 : -1;
    if (fclose(f) != 0)
        rc = -1;
    return rc;
}

int ts_copy_dir(const char *src, const char *dst)
{
    char *argv[] = {"/bin/cp", "-a", (char *)src, (char *)dst, NULL};
    return ts_run(argv, NULL, NULL, 60000) == 0 ? 0 : -1;
}

int ts_rm_rf(const char *path)
{
    char *argv[] = {"/bin/rm", "-rf", "--", (char *)path, NULL};
    return ts_run(argv, NULL, NULL, 60000) == 0 ? 0 : -1;
}

/* Next line of text into [*line, *len); advances *pos. Returns false at the end. */
static bool next_line(const char **pos, const char **line, size_t *len)
{
    if (!**pos)
        return false;
    const char *nl = strchr(*pos, '\n');
    *line = *pos;
    *len = nl ? (size_t)(nl - *pos) : strlen(*pos);
    *pos = nl ? nl + 1 : *pos + *len;
    return true;
}

int ts_csv_compare(const char *got, const char *truth_path)
{
    char *want = ts_read_file(truth_path);
    if (!want) {
        fprintf(stderr, "support: cannot read %s\n", truth_path);
        return -1;
    }
    const char *g = got ? got : "", *w = want;
    const char *gl, *wl;
    size_t gn, wn;
    unsigned long lineno = 0, diffs = 0, got_lines = 0, want_lines = 0;
    for (;;) {
        bool has_g = next_line(&g, &gl, &gn);
        bool has_w = next_line(&w, &wl, &wn);
        if (!has_g && !has_w)
            break;
        lineno++;
        got_lines += has_g;
        want_lines += has_w;
        if (has_g && has_w && gn == wn && memcmp(gl, wl, gn) == 0)
            continue;
        if (++diffs <= 10)
            fprintf(stderr, "results line %lu: got '%.*s', truth '%.*s'\n", lineno,
                    has_g ? (int)gn : 5, has_g ? gl : "(end)", has_w ? (int)wn : 5,
                    has_w ? wl : "(end)");
    }
    if (diffs)
        fprintf(stderr, "results differ from %s on %lu lines (%lu lines vs %lu expected)\n",
                truth_path, diffs, got_lines, want_lines);
    free(want);
    return diffs ? -1 : 0;
}

/* ---- network -------------------------------------------------------------------------- */

/* Ports are drawn below Linux's ephemeral range (ip_local_port_range, 32768-60999 by
 * default): a port the kernel handed out for bind(0) and that we closed again is the
 * kernel's to give the next outgoing connection (tallyd to PostgreSQL, a client to tallyd),
 * and one did take a standby's port before it bound it. Here only another test drawing the
 * same random port can collide, and this process never hands one out twice. */
#define TS_PORT_LO 20000
#define TS_PORT_HI 32767

uint16_t ts_free_port(void)
{
    static uint16_t given[256];
    static size_t n_given;
    static uint64_t x;
    if (!x)
        x = ((uint64_t)getpid() << 32) ^ (uint64_t)ts_now_ms() ^ 0x9e3779b97f4a7c15ULL;
    for (int attempt = 0; attempt < 1000; attempt++) {
        x ^= x << 13; /* xorshift64 */
        x ^= x >> 7;
        x ^= x << 17;
        uint16_t port = (uint16_t)(TS_PORT_LO + x % (TS_PORT_HI - TS_PORT_LO + 1));
        bool seen = false;
        for (size_t i = 0; i < n_given && i < 256; i++)
            seen |= given[i] == port;
        if (seen)
            continue;
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) {
            fprintf(stderr, "support: cannot find a free port: %s\n", strerror(errno));
            abort();
        }
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
        close(fd);
        if (ok) {
            given[n_given++ % 256] = port;
            return port;
        }
    }
    fprintf(stderr, "support: no free port in %d-%d after 1000 tries\n", TS_PORT_LO, TS_PORT_HI);
    abort();
}

int ts_connect(uint16_t port, int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (errno != EINPROGRESS)
            goto fail;
        struct pollfd pfd = {fd, POLLOUT, 0};
        if (poll(&pfd, 1, timeout_ms) != 1)
            goto fail;
        int err = 0;
        socklen_t elen = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0)
            goto fail;
    }
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    return fd;
fail:
    close(fd);
    return -1;
}

int ts_send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int ts_http_get(uint16_t port, const char *path, char *body, size_t len, int timeout_ms)
{
    int64_t deadline = ts_now_ms() + timeout_ms;
    int fd = ts_connect(port, timeout_ms);
    if (fd < 0)
        return -1;
    char req[512];
    snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1:%u\r\nConnection: close\r\n\r\n",
             path, port);
    int status = -1;
    size_t got = 0, cap = 65536;
    char *buf = malloc(cap);
    if (!buf)
        abort();
    if (ts_send_all(fd, req, strlen(req)))
        goto done;
    for (;;) {
        int left = (int)(deadline - ts_now_ms());
        if (left <= 0)
            goto done;
        struct pollfd pfd = {fd, POLLIN, 0};
        int r = poll(&pfd, 1, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            goto done;
        if (got + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            if (!buf)
                abort();
        }
        ssize_t n = recv(fd, buf + got, cap - got - 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && got == 0)
            goto done;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    int code;
    if (sscanf(buf, "HTTP/1.%*d %d", &code) == 1)
        status = code;
    if (body && len) {
        const char *b = strstr(buf, "\r\n\r\n");
        snprintf(body, len, "%s", b ? b + 4 : "");
    }
done:
    free(buf);
    close(fd);
    return status;
}

const char *ts_metric_sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
        if (strncmp(l, series, n) == 0 && l[n] == ' ')
            return l + n + 1;
    return NULL;
}

double ts_metric(const char *text, const char *series)
{
    const char *v = ts_metric_sample(text, series);
    return v ? strtod(v, NULL) : NAN;
}
