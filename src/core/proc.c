/* Process liveness from /proc: existence, zombie state, start time. Owns no state. */
#include "core/proc.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
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

bool proc_is_gone(int pid, int64_t started_by)
{
    if (pid <= 0)
        return false;
    if (kill(pid, 0) < 0)
        return errno == ESRCH;
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* "pid (comm) state ppid ... starttime(22nd)": comm may hold spaces and ')'. */
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ')
        return false;
    char state = p[2];
    if (state == 'Z' || state == 'X')
        return true;
    if (started_by <= 0)
        return false;
    unsigned long long start_ticks = 0;
    p += 3;
    for (int field = 3; field < 22 && p; field++) {
        p = strchr(p, ' ');
        if (p)
            p++;
    }
    if (!p || sscanf(p, "%llu", &start_ticks) != 1)
        return false;
    long hz = sysconf(_SC_CLK_TCK);
    int64_t boot = proc_boot_time();
    if (hz <= 0 || boot < 0)
        return false;
    int64_t started = boot + (int64_t)(start_ticks / (unsigned long long)hz);
    return started > started_by + PROC_START_SLACK_S;
}
