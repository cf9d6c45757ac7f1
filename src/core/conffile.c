/* The `name = value` configuration file reader. Owns no option and no state. */
#include "core/conffile.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

int conffile_read(const char *path, conffile_set_cb set, void *arg, char *err, size_t err_len)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return -1;
    }
    char line[4096];
    unsigned no = 0;
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof(line), f)) {
        no++;
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(err, err_len, "%s:%u: line longer than %zu bytes", path, no, sizeof(line));
            rc = -1;
            break;
        }
        char *s = trim(line);
        if (!*s || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, err_len, "%s:%u: expected 'name = value'", path, no);
            rc = -1;
            break;
        }
        *eq = '\0';
        char *name = trim(s), *value = trim(eq + 1);
        size_t vn = strlen(value);
        if (vn >= 2 && value[0] == '"' && value[vn - 1] == '"') {
            value[vn - 1] = '\0';
            value++;
        }
        char why[512] = "";
        if (set(arg, name, value, why, sizeof(why)) < 0) {
            snprintf(err, err_len, "%s:%u: %s", path, no, why);
            rc = -1;
        }
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        rc = -1;
    }
    fclose(f);
    return rc;
}
