/* Process facts from /proc: another process's liveness (existence, zombie state, start
 * time) and this process's own figures for metrics. Owns no state. */
#include "core/proc.h"

#include <errno.h>
#include <stdlib.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

/* A pid reused within this many seconds of the holder's start is not told apart. */
#define PROC_START_SLACK_S 2

/* Boot time (unix seconds) from /proc/stat, or -1. */
static int64_t proc_boot_time(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return -1;
    char line[256];
    long long bt = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "btime %lld", &bt) == 1)
            break;
    fclose(f);
    return bt;
}

/* Fields 14 (utime), 15 (stime), 22 (starttime) and 24 (rss, pages) of /proc/PID/stat. */
static int proc_stat_fields(const char *path, unsigned long long *utime, unsigned long long *stime,
                            unsigned long long *start, long long *rss, char *state)
{
    char buf[1024];
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* "pid (comm) state ...": comm may hold spaces and ')'. */
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ')
        return -1;
    *state = p[2];
    unsigned long long v[22] = {0};
    p += 3; /* field 3 is the state; values from field 4 on */
    for (int field = 4; field <= 24 && p; field++) {
        p = strchr(p, ' ');
        if (!p)
            return -1;
        p++;
        v[field - 4 < 22 ? field - 4 : 21] = strtoull(p, NULL, 10);
        if (field == 24)
            *rss = (long long)strtoll(p, NULL, 10);
    }
    *utime = v[14 - 4];
    *stime = v[15 - 4];
    *start = v[22 - 4];
    return 0;
}

bool proc_is_gone(int pid, int64_t started_by)
{
    if (pid <= 0)
        return false;
    if (kill(pid, 0) < 0)
        return errno == ESRCH;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    unsigned long long ut, st, start;
    long long rss;
    char state;
    if (proc_stat_fields(path, &ut, &st, &start, &rss, &state) < 0)
        return false;
    if (state == 'Z' || state == 'X')
        return true;
    long hz = sysconf(_SC_CLK_TCK);
    int64_t boot = proc_boot_time();
    if (started_by <= 0 || hz <= 0 || boot < 0)
        return false;
    int64_t started = boot + (int64_t)(start / (unsigned long long)hz);
    return started > started_by + PROC_START_SLACK_S;
}

void proc_self_read(struct proc_self *out)
{
    memset(out, 0, sizeof(*out));
    unsigned long long ut, st, start;
    long long rss;
    char state;
    long hz = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    if (proc_stat_fields("/proc/self/stat", &ut, &st, &start, &rss, &state) == 0 && hz > 0) {
        out->cpu_seconds = (double)(ut + st) / (double)hz;
        out->resident_bytes = rss > 0 && page > 0 ? (uint64_t)rss * (uint64_t)page : 0;
        int64_t boot = proc_boot_time();
        if (boot >= 0)
            out->start_time = (double)boot + (double)start / (double)hz;
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            out->open_fds += e->d_name[0] != '.';
        closedir(d);
        out->open_fds--; /* the directory stream's own */
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        out->max_fds = (uint64_t)rl.rlim_cur;
}
