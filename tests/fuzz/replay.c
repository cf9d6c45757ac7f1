/* main() for builds without libFuzzer: runs every file named on the command line, or every
 * file of each directory named, through LLVMFuzzerTestOneInput once, in name order, and
 * holds "accept-*" and "reject-*" files to the verdict their name promises. Exits 1 on a
 * broken promise (a crash or a sanitizer report ends the process on its own). */
#include "fuzz.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_file(const char *path, const char *name, size_t *runs)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap)
            buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    if (!buf)
        abort();
    /* An exact-size copy, so that ASan sees a read past the input's end. */
    uint8_t *in = malloc(len ? len : 1);
    memcpy(in, buf, len);
    free(buf);
    fuzz_verdict = FUZZ_NONE;
    LLVMFuzzerTestOneInput(in, len);
    free(in);
    (*runs)++;
    enum fuzz_verdict want = strncmp(name, "accept-", 7) == 0   ? FUZZ_ACCEPTED
                             : strncmp(name, "reject-", 7) == 0 ? FUZZ_REFUSED
                                                                : FUZZ_NONE;
    if (want != FUZZ_NONE && fuzz_verdict != want) {
        fprintf(stderr, "%s: expected %s, the harness said %s\n", path,
                want == FUZZ_ACCEPTED ? "accepted" : "refused",
                fuzz_verdict == FUZZ_ACCEPTED  ? "accepted"
                : fuzz_verdict == FUZZ_REFUSED ? "refused"
                                               : "nothing");
        return -1;
    }
    return 0;
}

static int run_dir(const char *dir, size_t *runs)
{
    DIR *d = opendir(dir);
    if (!d) {
        perror(dir);
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            names = realloc(names, cap * sizeof(*names));
            if (!names)
                abort();
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof(*names), by_name);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (run_file(path, names[i], runs) < 0)
            rc = -1;
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    size_t runs = 0;
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) < 0) {
            perror(argv[i]);
            rc = -1;
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            if (run_dir(argv[i], &runs) < 0)
                rc = -1;
        } else {
            const char *base = strrchr(argv[i], '/');
            if (run_file(argv[i], base ? base + 1 : argv[i], &runs) < 0)
                rc = -1;
        }
    }
    if (runs == 0) {
        fprintf(stderr, "no inputs: name corpus files or directories\n");
        rc = -1;
    }
    printf("%zu inputs replayed%s\n", runs, rc ? ", some failed" : "");
    return rc ? 1 : 0;
}
