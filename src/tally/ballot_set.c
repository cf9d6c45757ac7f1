/* Ballot token set. Owns its slot arrays and its hash key; knows nothing of batches or
 * projects, and draws no randomness of its own (the key is the caller's). */
#include "tally/ballot_set.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/xalloc.h"

/* Why this hash (tally_set_hash in ballot_set.h).
 *
 * The set used the murmur3 finaliser alone: public and invertible, so anyone could compute
 * 40,000 tokens with one home slot, and inserting them took 461 ms against 1.2 ms for random
 * ones (linear probing: n^2 / 2 probes). Keying it takes a secret the caller draws per process.
 *
 * - SipHash-1-3 (a PRF: no input is worse than random without the key) costs too much here:
 *   the in-process limit (tally-bench --peers limit, 20 M votes, 3 rounds alternating) fell
 *   from 27.3 to 19.8 M votes/s (-28 %), even with each token hashed once.
 * - Multiply-add-shift, h = ((a x + b) mod 2^128) >> 64 with a random 128-bit a (odd) and b
 *   (Dietzfelbinger 1996; Thorup, "High speed hashing for integers and strings"), is strongly
 *   universal: for any two fixed tokens the pair (h(x), h(y)) is uniform over the key, so
 *   they share a home slot with probability ~1 / cap. One 64 x 128 multiply. But pairwise
 *   independence says nothing of runs, and linear probing lives on runs: for an arithmetic
 *   progression of tokens, h is a Kronecker sequence (i a + b), and a key whose a has a large
 *   continued-fraction quotient folds it into a few dense clusters. Measured: progressions
 *   of 100,000 tokens (steps 1, 4096, 2^32 + 1, 2^40) at 3/4 load, 300 keys: 2-3 % of the keys
 *   gave a mean probe over 10 (worst 403) against 1.5. An attacker needs no key to send many
 *   progressions and so hit a bad case for one of them.
 * - So: multiply-add-shift, then the murmur3 finaliser. The finaliser is a fixed bijection,
 *   so the pair stays uniform (the guarantee above holds exactly), and it scrambles the
 *   lattice (the same runs: mean 1.50, worst key 1.58; and tests/unit/test_tally.c). The
 *   slot is taken from the top bits of h (tally_set_slot multiplies by cap and keeps the
 *   high word), for the current table, the old one while growing, the prefetch and the move
 *   alike; there are no fingerprint bits. Each token is hashed once per insert (tally.c
 *   keeps the hashes of the prefetched tokens in a ring), which pays for the multiply: the
 *   limit went from 27.3 to 27.7 M votes/s at 20 M votes and stayed at 25.8 M at 100 M
 *   (6 rounds; 1 GiB set, DRAM-bound); decode+apply 24.4 -> 24.6 and 22.9 -> 23.3.
 *
 * Limits. The guarantee is against an attacker who does not know the key and does not
 * learn it. One who can time inserts (Ack latency) can detect which of its tokens collide;
 * multiply-shift is linear, so a few detected collisions leak key bits, and the finaliser,
 * being unkeyed and invertible, is no cryptographic barrier. Such timing is noisy (a probe
 * is nanoseconds inside a batch of milliseconds, over TLS), the attacker must hold a
 * collector's certificate, every token it places is a ballot counted under that collector's
 * name (repeats show as duplicates), and the key is new at every start; a PRF would close
 * the gap at the cost measured above. Nothing may depend on where a token lands across processes:
 * the store keeps tokens sorted by value (token pages), recovery reinserts them under the new key.
 */

/* The moved part of the old table goes back to the kernel in steps of this many bytes. */
#define RELEASE_STEP (2u << 20)
#define PAGE_BYTES 4096u
/* Slots moved at once, their new homes fetched ahead (see move_some). */
#define MOVE_CHUNK 64

/* A zeroed table. A large one asks for transparent huge pages: a first touch then costs one
 * fault per 2 MiB instead of one per 4 KiB (~13 us each on a VM), and probes miss the TLB
 * less. calloc's pages are the kernel's zero pages until written, so a table nobody
 * touches costs nothing yet. */
static uint64_t *slots_new(size_t capacity)
{
    uint64_t *p = xcalloc(capacity, sizeof(uint64_t));
    size_t bytes = capacity * sizeof(uint64_t);
    if (bytes >= (4u << 20)) {
        uintptr_t from = ((uintptr_t)p + PAGE_BYTES - 1) & ~(uintptr_t)(PAGE_BYTES - 1);
        uintptr_t to = ((uintptr_t)p + bytes) & ~(uintptr_t)(PAGE_BYTES - 1);
        (void)madvise((void *)from, to - from, MADV_HUGEPAGE); /* advice: failing is harmless */
    }
    return p;
}

/* Writes one word of every page from byte offset `from` on, `pages` pages: the kernel
 * gives them now rather than inside some later insert. */
static void touch_pages(uint64_t *slots, size_t cap, size_t from, size_t pages)
{
    volatile uint64_t *v = slots;
    size_t per = PAGE_BYTES / sizeof(uint64_t);
    for (size_t k = from / PAGE_BYTES * per, n = 0; k < cap && n < pages; k += per, n++)
        v[k] = 0;
}

/* Most tokens a table of cap slots holds before it grows. */
static size_t max_load(size_t cap)
{
    return cap / 4 * 3;
}

/* Past this many the next table is made ready: 70 % full, and never before the count the
 * table was sized for (a table sized for the electorate never allocates a second one). */
static size_t prepare_load(size_t cap)
{
    return cap / 20 * 14;
}

static uint64_t key_word(const uint8_t *key, size_t i)
{
    uint64_t w;
    memcpy(&w, key + 8 * i, sizeof(w)); /* any byte order: the key is random */
    return w;
}

void tally_set_init(struct tally_set *s, size_t expected, const uint8_t key[TALLY_HASH_KEY_BYTES])
{
    size_t cap = expected / 3 * 4 + 4;
    if (cap < 1024)
        cap = 1024;
    *s = (struct tally_set){.slots = slots_new(cap), .cap = cap, .sized_for = expected};
    /* An odd multiplier: an even one would drop the token's top bits. */
    s->a_lo = key_word(key, 0) | 1;
    s->a_hi = key_word(key, 1);
    s->b_lo = key_word(key, 2);
    s->b_hi = key_word(key, 3);
    /* Sized up front (for the electorate): take its memory now, at start-up, not a page at a
     * time inside the first applies (8.5 GiB for 642 M ballots was 20 s of slow start). */
    touch_pages(s->slots, cap, 0, SIZE_MAX);
}

void tally_set_cleanup(struct tally_set *s)
{
    free(s->slots);
    free(s->old);
    free(s->next);
    *s = (struct tally_set){0};
}

static inline size_t next_slot(size_t i, size_t cap)
{
    return ++i == cap ? 0 : i;
}

/* Puts a token known to be absent into the current table. */
static void place(struct tally_set *s, uint64_t token, uint64_t hash)
{
    size_t i = tally_set_slot(hash, s->cap);
    while (s->slots[i])
        i = next_slot(i, s->cap);
    s->slots[i] = token;
}

/* Whether the old table still holds token. Its slots [0, moved) are gone (moved, maybe
 * released), so a probe skips them: every chain that ran through them still reaches its
 * unmoved members, which kept their places. */
static bool old_contains(const struct tally_set *s, uint64_t hash, uint64_t token)
{
    size_t i = tally_set_slot(hash, s->old_cap);
    if (i < s->moved)
        i = s->moved;
    for (size_t left = s->old_cap - s->moved; left; left--) {
        uint64_t v = s->old[i];
        if (v == token)
            return true;
        if (v == 0)
            return false;
        if (++i == s->old_cap)
            i = s->moved;
    }
    return false;
}

/* Gives whole pages of the moved part of the old table back to the kernel. */
static void release_moved(struct tally_set *s)
{
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t base = (uintptr_t)s->old;
    uintptr_t from =
        (base + s->released * sizeof(uint64_t) + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    uintptr_t to = (base + s->moved * sizeof(uint64_t)) & ~((uintptr_t)page - 1);
    if (to > from)
        (void)madvise((void *)from, to - from, MADV_DONTNEED); /* advice: failing is harmless */
    s->released = s->moved;
}

/* Moves the next n slots of the old table; frees it once empty. */
static void move_some(struct tally_set *s, size_t n)
{
    size_t end = s->moved + n < s->old_cap ? s->moved + n : s->old_cap;
    /* Every token lands in a random slot of the new table: fetch them all first, so the
     * cache misses overlap instead of queueing one after another. */
    uint64_t hash[MOVE_CHUNK];
    for (size_t from = s->moved; from < end; from += MOVE_CHUNK) {
        size_t m = end - from < MOVE_CHUNK ? end - from : MOVE_CHUNK;
        for (size_t k = 0; k < m; k++) {
            hash[k] = tally_set_hash(s, s->old[from + k]);
            __builtin_prefetch(&s->slots[tally_set_slot(hash[k], s->cap)], 1, 3);
        }
        for (size_t k = 0; k < m; k++)
            if (s->old[from + k])
                place(s, s->old[from + k], hash[k]);
    }
    s->moved = end;
    if (s->moved == s->old_cap) {
        free(s->old);
        s->old = NULL;
        s->old_cap = s->moved = s->released = 0;
    } else if ((s->moved - s->released) * sizeof(uint64_t) >= RELEASE_STEP) {
        release_moved(s);
    }
}

/* 70 % full: the next table is allocated now and its pages are touched one every `stride`
 * inserts, so that they are all in by the time it is needed and no insert pays more than
 * one page fault. */
static void prepare_growing(struct tally_set *s)
{
    size_t next_cap = s->cap * 2;
    s->next = slots_new(next_cap);
    size_t pages = next_cap * sizeof(uint64_t) / PAGE_BYTES + 1;
    size_t left = max_load(s->cap) > s->count ? max_load(s->cap) - s->count : 1;
    s->next_stride = left / pages ? left / pages : 1;
    s->next_touched = 0;
    s->next_wait = s->next_stride;
}

static void prepare_some(struct tally_set *s)
{
    if (--s->next_wait)
        return;
    s->next_wait = s->next_stride;
    size_t next_cap = s->cap * 2;
    if (s->next_touched < next_cap * sizeof(uint64_t)) {
        touch_pages(s->next, next_cap, s->next_touched, 1);
        s->next_touched += PAGE_BYTES;
    }
}

static void start_growing(struct tally_set *s)
{
    if (!s->next)
        prepare_growing(s);
    s->old = s->slots;
    s->old_cap = s->cap;
    s->moved = s->released = 0;
    s->cap = s->old_cap * 2;
    s->slots = s->next;
    s->next = NULL;
}

bool tally_set_insert(struct tally_set *s, uint64_t token)
{
    return tally_set_insert_hashed(s, token, tally_set_hash(s, token));
}

bool tally_set_insert_hashed(struct tally_set *s, uint64_t token, uint64_t m)
{
    if (token == 0) {
        bool added = !s->has_zero;
        s->has_zero = true;
        s->count += added;
        return added;
    }
    if (s->old && old_contains(s, m, token))
        return false;
    size_t i = tally_set_slot(m, s->cap);
    for (;;) {
        uint64_t v = s->slots[i];
        if (v == token)
            return false;
        if (v == 0)
            break;
        i = next_slot(i, s->cap);
    }
    s->slots[i] = token;
    s->count++;
    if (s->old) {
        if (++s->move_wait == MOVE_CHUNK / TALLY_SET_MOVE_PER_INSERT) {
            s->move_wait = 0;
            move_some(s, MOVE_CHUNK);
        }
    } else if (s->count > max_load(s->cap)) {
        start_growing(s);
    } else if (s->next) {
        prepare_some(s);
    } else if (s->count > prepare_load(s->cap) && s->count > s->sized_for) {
        prepare_growing(s);
    }
    return true;
}

bool tally_set_contains(const struct tally_set *s, uint64_t token)
{
    if (token == 0)
        return s->has_zero;
    uint64_t m = tally_set_hash(s, token);
    size_t i = tally_set_slot(m, s->cap);
    for (;;) {
        uint64_t v = s->slots[i];
        if (v == token)
            return true;
        if (v == 0)
            break;
        i = next_slot(i, s->cap);
    }
    return s->old && old_contains(s, m, token);
}

size_t tally_set_bytes(const struct tally_set *s)
{
    return (s->cap + s->old_cap) * sizeof(uint64_t) + (s->next ? s->next_touched : 0);
}

void tally_set_probe_stats(const struct tally_set *s, uint64_t *total, size_t *max)
{
    uint64_t sum = 0;
    size_t worst = 0;
    for (size_t i = 0; i < s->cap; i++) {
        if (!s->slots[i])
            continue;
        size_t home = tally_set_slot(tally_set_hash(s, s->slots[i]), s->cap);
        size_t d = i >= home ? i - home : i + s->cap - home;
        sum += d;
        if (d > worst)
            worst = d;
    }
    *total = sum;
    *max = worst;
}
