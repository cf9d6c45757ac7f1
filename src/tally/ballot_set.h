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
 * 3 cap / 4). Pure, single-threaded.
 *
 * Home slots come from a keyed hash (tally_set_hash; the reasoning is in ballot_set.c): the
 * caller passes a random key, so nobody who lacks it can choose tokens that pile into one
 * place. Nothing outside this process may depend on where a token lands. */
#ifndef TALLY_BALLOT_SET_H
#define TALLY_BALLOT_SET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TALLY_SET_MOVE_PER_INSERT 8
/* The hash key: a 128-bit multiplier and a 128-bit addend (see tally_set_hash). */
#define TALLY_HASH_KEY_BYTES 32

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
    /* The hash key: multiplier a = a_hi:a_lo (odd), addend b = b_hi:b_lo. */
    uint64_t a_lo, a_hi, b_lo, b_hi;
};

/* Sizes the table for expected tokens so that it need not grow before then. key (copied)
 * keys the hash: it must be random and secret (getrandom), and fresh for each process. */
void tally_set_init(struct tally_set *s, size_t expected, const uint8_t key[TALLY_HASH_KEY_BYTES]);
void tally_set_cleanup(struct tally_set *s);

/* Adds token; returns true if it was new, false if it was already there. Starting to grow
 * the table is the only allocation (amortised, and avoided by a good initial size). */
bool tally_set_insert(struct tally_set *s, uint64_t token);
/* The same with hash = tally_set_hash(s, token) already at hand: a caller that prefetches
 * hashes each token once, for the prefetch and the insert. */
bool tally_set_insert_hashed(struct tally_set *s, uint64_t token, uint64_t hash);
bool tally_set_contains(const struct tally_set *s, uint64_t token);

/* The keyed hash of a token: multiply-add-shift, h = ((a x + b) mod 2^128) >> 64, which is
 * strongly universal over the key, then the murmur3 finaliser, a bijection that keeps that
 * and breaks up the arithmetic structure linear probing would suffer from (ballot_set.c
 * says why both). Tokens are keyed hashes of voter ids already, but a collector could send
 * chosen values. */
static inline uint64_t tally_set_hash(const struct tally_set *s, uint64_t token)
{
    unsigned __int128 v = (unsigned __int128)s->a_lo * token;
    v += ((unsigned __int128)s->b_hi << 64 | s->b_lo);
    uint64_t h = (uint64_t)(v >> 64) + s->a_hi * token;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

/* Maps a hash onto [0, cap) by its top bits (a multiply-shift instead of a modulo). */
static inline size_t tally_set_slot(uint64_t hash, size_t cap)
{
    return (size_t)(((unsigned __int128)hash * cap) >> 64);
}

/* Asks the CPU to fetch the home slot of a token of this hash (in both tables while
 * growing); call it some tokens ahead of insert. Always inlined: GCC 12 does not inline it
 * on its own, and then finds a function of prefetches alone free of side effects and drops
 * every call. */
static inline __attribute__((always_inline)) void tally_set_prefetch_hash(const struct tally_set *s,
                                                                          uint64_t hash)
{
    __builtin_prefetch(&s->slots[tally_set_slot(hash, s->cap)], 1, 3);
    if (s->old)
        __builtin_prefetch(&s->old[tally_set_slot(hash, s->old_cap)], 0, 3);
}

static inline __attribute__((always_inline)) void tally_set_prefetch(const struct tally_set *s,
                                                                     uint64_t token)
{
    tally_set_prefetch_hash(s, tally_set_hash(s, token));
}

/* Bytes the table holds: both tables while growing, and the pages of the next one faulted
 * in so far. */
size_t tally_set_bytes(const struct tally_set *s);

/* Probe statistics of the tokens in the current table (not an old one being moved): how
 * far each sits past its home slot, summed into *total and the largest into *max. A scan of
 * the whole table, for tests and diagnostics; the insert path keeps no counters. */
void tally_set_probe_stats(const struct tally_set *s, uint64_t *total, size_t *max);

/* True while an old table is still being moved. */
static inline bool tally_set_growing(const struct tally_set *s)
{
    return s->old != NULL;
}

#endif
