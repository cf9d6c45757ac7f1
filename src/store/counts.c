/* A batch's own counts as stored in batches.counts (store/counts.h): the LEB128 pair
 * encoding, written on the store thread for every ballot batch and read back by tallyctl
 * verify. Encoding sorts with an LSD radix sort in scratch space borrowed from the output
 * buffer, which the caller reuses from batch to batch: no allocation in the steady state. */
#include "store/counts.h"

#include <stdbool.h>
#include <string.h>

static size_t counts_put_varint(uint8_t *p, uint32_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* Sorts n keys (id << 32 | votes) by id, using tmp (n keys) as the other buffer; returns
 * whichever of the two holds the result. */
static uint64_t *counts_radix(uint64_t *a, uint64_t *tmp, size_t n)
{
    for (unsigned shift = 32; shift < 64; shift += 8) {
        size_t count[256] = {0};
        for (size_t i = 0; i < n; i++)
            count[(a[i] >> shift) & 0xff]++;
        if (count[(a[0] >> shift) & 0xff] == n)
            continue; /* every id has this digit */
        size_t pos = 0;
        for (unsigned d = 0; d < 256; d++) {
            size_t c = count[d];
            count[d] = pos;
            pos += c;
        }
        for (size_t i = 0; i < n; i++)
            tmp[count[(a[i] >> shift) & 0xff]++] = a[i];
        uint64_t *t = a;
        a = tmp;
        tmp = t;
    }
    return a;
}

void store_counts_encode(const uint32_t *pairs, size_t n, struct store_bin *out)
{
    if (n == 0)
        return;
    bool sorted = true;
    for (size_t i = 1; i < n && sorted; i++)
        sorted = pairs[2 * i] > pairs[2 * i - 2];
    if (sorted) {
        uint8_t *p = store_bin_reserve(out, STORE_COUNTS_PAIR_MAX * n), *q = p;
        uint32_t prev = 0;
        for (size_t i = 0; i < n; i++) {
            q += counts_put_varint(q, pairs[2 * i] - prev);
            q += counts_put_varint(q, pairs[2 * i + 1]);
            prev = pairs[2 * i];
        }
        out->len += (size_t)(q - p);
        return;
    }
    /* Layout past out->len: [output, 10n][pad to 8][keys, 8n][tmp, 8n]. Pair i is written
     * at or before byte 10(i + 1) and the keys start at byte 10n or later, with pair i at
     * 10n + 8i: the output never reaches a key not yet read. */
    size_t room = STORE_COUNTS_PAIR_MAX * n + 8 + 16 * n;
    uint8_t *p = store_bin_reserve(out, room);
    uint8_t *k0 = p + STORE_COUNTS_PAIR_MAX * n;
    k0 += (8 - (uintptr_t)k0 % 8) % 8;
    uint64_t *keys = (uint64_t *)(void *)k0, *tmp = keys + n;
    for (size_t i = 0; i < n; i++)
        keys[i] = (uint64_t)pairs[2 * i] << 32 | pairs[2 * i + 1];
    const uint64_t *s = counts_radix(keys, tmp, n);
    /* The sorted keys may sit in tmp, further right: still past every output byte. */
    uint8_t *q = p;
    uint32_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t key = s[i];
        uint32_t id = (uint32_t)(key >> 32);
        q += counts_put_varint(q, id - prev);
        q += counts_put_varint(q, (uint32_t)key);
        prev = id;
    }
    out->len += (size_t)(q - p);
}

/* One varint at *pos; -1 when truncated, over 32 bits or not in its shortest form. */
static int counts_get_varint(const uint8_t *buf, size_t len, size_t *pos, uint32_t *out)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < 5; i++) {
        if (*pos >= len)
            return -1;
        uint8_t b = buf[(*pos)++];
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            if (i > 0 && b == 0)
                return -1; /* a redundant high byte: not the shortest form */
            if (v > UINT32_MAX)
                return -1;
            *out = (uint32_t)v;
            return 0;
        }
    }
    return -1; /* a sixth byte would be needed */
}

int store_counts_decode(const uint8_t *buf, size_t len,
                        int (*cb)(void *arg, uint32_t id, uint32_t votes), void *arg)
{
    size_t pos = 0;
    uint64_t id = 0;
    bool first = true;
    while (pos < len) {
        uint32_t step, votes;
        if (counts_get_varint(buf, len, &pos, &step) < 0 ||
            counts_get_varint(buf, len, &pos, &votes) < 0)
            return -1;
        if ((!first && step == 0) || votes == 0)
            return -1;
        id += step;
        if (id > UINT32_MAX)
            return -1;
        first = false;
        int rc = cb(arg, (uint32_t)id, votes);
        if (rc)
            return rc;
    }
    return 0;
}
