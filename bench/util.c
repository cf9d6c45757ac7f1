/* Shared utilities of tally-bench: clocks, latency percentiles, progress lines, a small
 * JSON string builder, child processes, scratch files and loopback ports. Knows nothing
 * of the peers or the workload. */
#include "bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

volatile sig_atomic_t bench_stop;

/* ---- clock --------------------------------------------------------------------------- */

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !bench_stop)
        ;
}

/* ---- latency figures ------------------------------------------------------------------- */

void lat_add(struct lat *l, double ms)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 1024;
        l->v = realloc(l->v, l->cap * sizeof(*l->v));
        if (!l->v)
            abort();
    }
    l->v[l->n++] = ms;
}

void lat_merge(struct lat *into, const struct lat *from)
{
    for (size_t i = 0; i < from->n; i++)
        lat_add(into, from->v[i]);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double lat_pct(struct lat *l, double q)
{
    if (l->n == 0)
        return 0;
    qsort(l->v, l->n, sizeof(*l->v), cmp_double);
    /* Nearest rank: the smallest sample with at least q of the samples at or below it. */
    size_t rank = (size_t)((double)l->n * q + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > l->n)
        rank = l->n;
    return l->v[rank - 1];
}

double lat_max(struct lat *l)
{
    return lat_pct(l, 1.0);
}

void lat_free(struct lat *l)
{
    free(l->v);
    memset(l, 0, sizeof(*l));
}

/* ---- output ----------------------------------------------------------------------------- */

void progress(const char *peer, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "tally-bench [%s] %s\n", peer, msg);
}

void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        b->s = realloc(b->s, cap);
        if (!b->s)
            abort();
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void sb_json_str(struct sbuf *b, const char *s)
{
    sb_printf(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            sb_printf(b, "\\%c", *p);
        else if (*p < 0x20)
            sb_printf(b, "\\u%04x", *p);
        else
            sb_printf(b, "%c", *p);
    }
    sb_printf(b, "\"");
}

void sb_lat(struct sbuf *b, const char *key, struct lat *l)
{
    sb_printf(b,
              ", \"%s\": {\"p50\": %.3f, \"p99\": %.3f, \"p999\": %.3f, \"max\": %.3f, "
              "\"n\": %zu}",
              key, lat_pct(l, 0.50), lat_pct(l, 0.99), lat_pct(l, 0.999), lat_max(l), l->n);
}

void sb_free(struct sbuf *b)
{
    free(b->s);
    memset(b, 0, sizeof(*b));
}

void peer_fail(struct peer_result *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->note, sizeof(r->note), fmt, ap);
    va_end(ap);
    r->failed = true;
    r->exact = false;
    progress(r->name, "FAILED: %s", r->note);
}

/* ---- child processes ---------------------------------------------------------------------- */

pid_t proc_spawn(char *const argv[], const char *log_path)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        /* Whatever happens to tally-bench, nothing it started outlives it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        /* Its own process group: a Ctrl-C reaches tally-bench, which stops it in order. */
        setpgid(0, 0);
        int in = open("/dev/null", O_RDONLY);
        int out = log_path ? open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644)
                           : open("/dev/null", O_WRONLY);
        if (in < 0 || out < 0)
            _exit(127);
        dup2(in, 0);
        dup2(out, 1);
        dup2(out, 2);
        close(in);
        close(out);
        execv(argv[0], argv);
        dprintf(2, "tally-bench: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

static int decode_status(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

bool proc_alive(pid_t pid, int *code)
{
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == 0)
        return true;
    if (r == pid && code)
        *code = decode_status(st);
    return false;
}

int proc_wait(pid_t pid, int timeout_ms)
{
    double deadline = now_s() + timeout_ms / 1000.0;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return decode_status(st);
        if (r < 0)
            return -1;
        if (now_s() >= deadline)
            return -1;
        sleep_ms(20);
    }
}

int proc_stop(pid_t pid, int sig, int timeout_ms)
{
    if (pid <= 0)
        return -1;
    kill(pid, sig);
    int code = proc_wait(pid, timeout_ms);
    if (code >= 0)
        return code;
    kill(pid, SIGKILL);
    proc_wait(pid, 5000);
    return -1;
}

int proc_run(char *const argv[], const char *log_path, int timeout_ms)
{
    pid_t pid = proc_spawn(argv, log_path);
    if (pid < 0)
        return -1;
    int code = proc_wait(pid, timeout_ms);
    if (code < 0) {
        kill(pid, SIGKILL);
        proc_wait(pid, 5000);
    }
    return code;
}

void file_tail(const char *path, int lines)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    /* Small logs: read it all, print the end. */
    char *buf = NULL;
    size_t cap = 0, len = 0;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            buf = realloc(buf, cap);
            if (!buf)
                abort();
        }
        memcpy(buf + len, chunk, n);
        len += n;
    }
    fclose(f);
    if (!buf)
        return;
    buf[len] = 0;
    size_t i = len;
    int seen = 0;
    while (i > 0 && seen <= lines) {
        i--;
        if (buf[i] == '\n' && i + 1 < len)
            seen++;
    }
    if (seen > lines)
        i++;
    fprintf(stderr, "---- last lines of %s ----\n%s", path, buf + i);
    if (len && buf[len - 1] != '\n')
        fputc('\n', stderr);
    fprintf(stderr, "----\n");
    free(buf);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0 && errno != ENOENT)
        return 0; /* keep going; the caller sees what is left */
    return 0;
}

int rm_rf(const char *path)
{
    return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof(a);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

char *http_get(int port, const char *path, int timeout_ms)
{
    int fd = tcp_connect(port);
    if (fd < 0)
        return NULL;
    char req[512];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    bool ok = send(fd, req, (size_t)n, MSG_NOSIGNAL) == n;
    double until = now_s() + timeout_ms / 1000.0;
    while (ok) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 65536;
            buf = realloc(buf, cap);
            if (!buf)
                abort();
        }
        struct pollfd p = {fd, POLLIN, 0};
        if (now_s() > until || bench_stop) {
            ok = false;
            break;
        }
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t k = recv(fd, buf + len, cap - len - 1, 0);
        if (k == 0)
            break;
        if (k < 0) {
            if (errno != EINTR && errno != EAGAIN)
                ok = false;
            continue;
        }
        len += (size_t)k;
    }
    close(fd);
    char *body = NULL;
    if (ok && buf) {
        buf[len] = 0;
        char *sep = strstr(buf, "\r\n\r\n");
        if (sep && strncmp(buf, "HTTP/1.", 7) == 0 && strncmp(buf + 8, " 200", 4) == 0) {
            body = strdup(sep + 4);
            if (!body)
                abort();
        }
    }
    free(buf);
    return body;
}

int proc_mem_kb(pid_t pid, uint64_t *hwm_kb, uint64_t *rss_kb)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[256];
    int found = 0;
    while (fgets(line, sizeof(line), f)) {
        unsigned long long v;
        if (sscanf(line, "VmHWM: %llu kB", &v) == 1) {
            *hwm_kb = v;
            found |= 1;
        } else if (sscanf(line, "VmRSS: %llu kB", &v) == 1) {
            *rss_kb = v;
            found |= 2;
        }
    }
    fclose(f);
    return found == 3 ? 0 : -1;
}

double proc_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    /* After the command name in parentheses (which may hold spaces): state, then fields
     * 4..13, then utime and stime (fields 14, 15) in clock ticks. */
    const char *p = strrchr(buf, ')');
    unsigned long long ut, st;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    return (double)(ut + st) / (double)(hz > 0 ? hz : 100);
}

void self_dir(char *out, size_t len)
{
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    if (n <= 0) {
        snprintf(out, len, ".");
        return;
    }
    buf[n] = 0;
    char *slash = strrchr(buf, '/');
    if (slash)
        *slash = 0;
    snprintf(out, len, "%s", buf);
}

const char *find_prog(const char *explicit_path, const char *const *candidates, char *buf,
                      size_t len)
{
    if (explicit_path) {
        if (access(explicit_path, X_OK) != 0)
            return NULL;
        snprintf(buf, len, "%s", explicit_path);
        return buf;
    }
    for (size_t i = 0; candidates[i]; i++) {
        if (candidates[i][0] && access(candidates[i], X_OK) == 0) {
            snprintf(buf, len, "%s", candidates[i]);
            return buf;
        }
    }
    return NULL;
}
