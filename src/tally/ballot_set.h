/* The set of accepted ballot tokens: an open-addressing hash set of 64-bit tokens
 * (linear probing, at most 3/4 full). The capacity is whatever the expected count needs,
 * not a power of two: a table sized for 3.8 M voters takes 40 MiB instead of 64 MiB, and
 * the home slot costs one multiply either way. Pure, single-threaded. */
#ifndef TALLY_BALLOT_SET_H
#define TALLY_BALLOT_SET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tally_set {
    uint64_t *slots; /* 0 marks an empty slot; token 0 is tracked by has_zero */
    size_t cap;      /* slots */
    size_t count;
    bool has_zero;
};

/* Sizes the table for expected tokens so that it need not grow before then. */
void tally_set_init(struct tally_set *s, size_t expected);
void tally_set_cleanup(struct tally_set *s);

/* Adds token; returns true if it was new, false if it was already there. Growing the
 * table is the only allocation (amortised, and avoided by a good initial size). */
bool tally_set_insert(struct tally_set *s, uint64_t token);
bool tally_set_contains(const struct tally_set *s, uint64_t token);

/* Home slot of a token. Tokens are keyed hashes already, but a collector could send
 * chosen values, so mix them anyway (the murmur3 finaliser) to keep probes short; then
 * map the 64-bit hash onto [0, cap) with a multiply-shift instead of a modulo. */
static inline size_t tally_set_home(const struct tally_set *s, uint64_t token)
{
    token ^= token >> 33;
    token *= 0xff51afd7ed558ccdULL;
    token ^= token >> 33;
    token *= 0xc4ceb9fe1a85ec53ULL;
    token ^= token >> 33;
    return (size_t)(((unsigned __int128)token * s->cap) >> 64);
}

/* Asks the CPU to fetch a token's home slot; call it some tokens ahead of insert. */
static inline void tally_set_prefetch(const struct tally_set *s, uint64_t token)
{
    __builtin_prefetch(&s->slots[tally_set_home(s, token)], 1, 3);
}

/* Bytes held by the table. */
size_t tally_set_bytes(const struct tally_set *s);

#endif
