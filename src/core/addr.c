/* Small parsers for command-line values. Pure: no I/O. */
#include "core/addr.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int parse_u64(const char *text, uint64_t max, uint64_t *out)
{
    if (!text || !*text || *text == '-' || *text == '+' || *text == ' ')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

int addr_split(const char *text, char *host, size_t host_len, uint16_t *port)
{
    const char *colon = strrchr(text, ':');
    if (!colon || colon == text)
        return -1;
    const char *h = text;
    size_t hlen = (size_t)(colon - text);
    if (h[0] == '[') {
        if (hlen < 3 || h[hlen - 1] != ']')
            return -1;
        h++;
        hlen -= 2;
    }
    uint64_t p;
    if (hlen + 1 > host_len || parse_u64(colon + 1, 65535, &p) || p == 0)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)p;
    return 0;
}
