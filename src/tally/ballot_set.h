/* The set of accepted ballot tokens: an open-addressing hash set of 64-bit tokens
 * (linear probing, at most 3/4 full). The capacity is whatever the expected count needs,
 * not a power of two: a table sized for 3.8 M voters takes 40 MiB instead of 64 MiB, and
 * the home slot costs one multiply either way.
 *
 * Growing never stops the caller for long. Past 70 % full, a table twice the size is
 * allocated and its pages are faulted in, one every few inserts (a first touch of each of
 * a table's pages inside one apply was most of a stall). Past 3/4 full every insert also
 * moves TALLY_SET_MOVE_PER_INSERT slots of the old table into it, oldest slot first. Until
 * the old table is empty both are searched; the moved part of the old one is given back to
 * the kernel as it goes (madvise), so memory does not peak at old + new for long. The
 * move is done long before the new table fills (it takes cap / 8 inserts; filling takes
 * 3 cap / 4). Pure, single-threaded. */
#ifndef TALLY_BALLOT_SET_H
#define TALLY_BALLOT_SET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TALLY_SET_MOVE_PER_INSERT 8

struct tally_set {
    uint64_t *slots;  /* 0 marks an empty slot; token 0 is tracked by has_zero */
    size_t cap;       /* slots */
    size_t count;     /* tokens in the set, both tables together */
    size_t sized_for; /* the expected count tally_set_init was given */
    bool has_zero;
    /* While growing: the previous table, of which slots [0, moved) are in slots already
     * (and are never read again); NULL otherwise. */
    uint64_t *old;
    size_t old_cap, moved, released;
    unsigned move_wait; /* inserts since the last move (MOVE_CHUNK slots every 8) */
    /* Past 70 % full: the table growing will move into (2 cap slots), being faulted in a
     * page every next_stride inserts (bytes [0, next_touched) so far); NULL otherwise. */
    uint64_t *next;
    size_t next_stride, next_wait, next_touched;
};

/* Sizes the table for expected tokens so that it need not grow before then. */
void tally_set_init(struct tally_set *s, size_t expected);
void tally_set_cleanup(struct tally_set *s);

/* Adds token; returns true if it was new, false if it was already there. Starting to grow
 * the table is the only allocation (amortised, and avoided by a good initial size). */
bool tally_set_insert(struct tally_set *s, uint64_t token);
bool tally_set_contains(const struct tally_set *s, uint64_t token);

/* Home slot of a token in a table of cap slots. Tokens are keyed hashes already, but a
 * collector could send chosen values, so mix them anyway (the murmur3 finaliser) to keep
 * probes short; then map the 64-bit hash onto [0, cap) with a multiply-shift instead of a
 * modulo. */
static inline uint64_t tally_set_mix(uint64_t token)
{
    token ^= token >> 33;
    token *= 0xff51afd7ed558ccdULL;
    token ^= token >> 33;
    token *= 0xc4ceb9fe1a85ec53ULL;
    token ^= token >> 33;
    return token;
}

static inline size_t tally_set_slot(uint64_t mixed, size_t cap)
{
    return (size_t)(((unsigned __int128)mixed * cap) >> 64);
}

/* Asks the CPU to fetch a token's home slot (in both tables while growing); call it some
 * tokens ahead of insert. Always inlined: GCC 12 does not inline it on its own, and then
 * finds a function of prefetches alone free of side effects and drops every call. */
static inline __attribute__((always_inline)) void tally_set_prefetch(const struct tally_set *s,
                                                                     uint64_t token)
{
    uint64_t m = tally_set_mix(token);
    __builtin_prefetch(&s->slots[tally_set_slot(m, s->cap)], 1, 3);
    if (s->old)
        __builtin_prefetch(&s->old[tally_set_slot(m, s->old_cap)], 0, 3);
}

/* Bytes the table holds: both tables while growing, and the pages of the next one faulted
 * in so far. */
size_t tally_set_bytes(const struct tally_set *s);
/* True while an old table is still being moved. */
static inline bool tally_set_growing(const struct tally_set *s)
{
    return s->old != NULL;
}

#endif
