/* Circuit lists for tallyctl add-collector and tallyctl collectors: parsing what an
 * operator types and formatting what is stored. Pure; the database side is
 * store_collector_add. */
#include "ctl/collectors.h"

#include "core/xalloc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t';
}

int ctl_circuits_parse(const char *list, uint32_t **out, size_t *n, char *err, size_t err_len)
{
    *out = NULL;
    *n = 0;
    const char *p = list;
    while (is_space(*p))
        p++;
    size_t len = strlen(p);
    while (len > 0 && is_space(p[len - 1]))
        len--;
    if (len == 3 && strncmp(p, "all", 3) == 0)
        return 1;
    if (len == 0) {
        snprintf(err, err_len, "no circuit ids given (a comma-separated list, or all)");
        return -1;
    }
    size_t cap = 1;
    for (const char *q = list; *q; q++)
        cap += *q == ',';
    uint32_t *ids = xcalloc(cap, sizeof(*ids));
    size_t k = 0, item = 0;
    p = list;
    for (;;) {
        item++;
        const char *start = p, *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        while (start < end && is_space(*start))
            start++;
        const char *stop = end;
        while (stop > start && is_space(stop[-1]))
            stop--;
        size_t w = (size_t)(stop - start);
        if (w == 0) {
            snprintf(err, err_len, "item %zu of the circuit list is empty", item);
            goto fail;
        }
        bool ok = w <= 10;
        uint64_t v = 0;
        for (size_t i = 0; ok && i < w; i++) {
            ok = start[i] >= '0' && start[i] <= '9';
            v = v * 10 + (uint64_t)(start[i] - '0');
        }
        /* Canonical decimal, as the registry writes circuit ids: no sign, no leading 0. */
        if (!ok || v > UINT32_MAX || (w > 1 && start[0] == '0')) {
            snprintf(err, err_len, "'%.*s' is not a circuit id (0 to 4294967295)",
                     (int)(w > 40 ? 40 : w), start);
            goto fail;
        }
        ids[k++] = (uint32_t)v;
        if (!*end)
            break;
        p = end + 1;
    }
    qsort(ids, k, sizeof(*ids), cmp_u32);
    size_t o = 0;
    for (size_t i = 0; i < k; i++)
        if (o == 0 || ids[o - 1] != ids[i])
            ids[o++] = ids[i];
    *out = ids;
    *n = o;
    return 0;
fail:
    free(ids);
    return -1;
}

void ctl_circuits_format(int restricted, const uint32_t *ids, size_t n, size_t max_shown, char *buf,
                         size_t len)
{
    if (!restricted) {
        snprintf(buf, len, "every");
        return;
    }
    if (n == 0) {
        snprintf(buf, len, "none");
        return;
    }
    size_t o = 0;
    buf[0] = '\0';
    size_t shown = n < max_shown ? n : max_shown;
    for (size_t i = 0; i < shown && o < len; i++) {
        int w = snprintf(buf + o, len - o, "%s%" PRIu32, i ? "," : "", ids[i]);
        if (w < 0)
            break;
        o += (size_t)w;
    }
    if (shown < n && o < len)
        snprintf(buf + o, len - o, ",... (%zu more)", n - shown);
}
