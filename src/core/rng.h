/* xoshiro256** (Blackman & Vigna): the fast, well-tested generator behind tally-gen's
 * and tally-bench's deterministic workloads. Not for anything secret. */
#ifndef CORE_RNG_H
#define CORE_RNG_H

#include <stdint.h>

/* splitmix64: advances *x and returns a well-mixed value; a bijection of the counter,
 * so successive outputs never repeat within 2^64 calls. */
uint64_t splitmix64_next(uint64_t *x);

/* Fills the state from x through splitmix64, as the authors recommend. */
void xoshiro256ss_seed(uint64_t s[4], uint64_t x);
uint64_t xoshiro256ss_next(uint64_t s[4]);

#endif
