/* The consultation's winner rules for one circuit, pure: no I/O, no clock, no allocation.
 * Ranking, seats, ties, min_votes, the tie rule by lot and the "decided" flag, as
 * docs/consultation.md and docs/api.md describe them for every output.
 *
 * The rules, for a circuit of `seats` seats and projects (id, votes v, min_votes):
 *  - Order: votes descending, equal votes by project id ascending (order only). Rank is
 *    the competition rank by votes over every project (1, 2, 2, 4).
 *  - Eligible: v >= min_votes. An ineligible project never wins and takes no seat.
 *  - Seats go to eligible projects in order, a block of equal votes at a time: a block
 *    whose eligible members all fit in the seats left wins them (if its votes are > 0:
 *    zero votes never win); a block whose eligible members do not all fit while seats are
 *    left is a tie: its eligible members are flagged `tie` and nobody in it is chosen, so
 *    a seat may stay empty. Ineligible members of a block are never part of a tie.
 *  - Lot (only with a seed, only for a tie among projects with votes > 0): the tied
 *    eligible projects are ordered by BLAKE2b-256(seed || LE32 id) ascending (bytewise) and
 *    the seats left are filled in that order, each chosen one flagged `winner` and
 *    `by_lot`; the others keep only `tie`. The circuit's `tie` stays true (it was a tie).
 *  - margin: votes of the seats-th eligible project minus those of the (seats+1)-th, when
 *    seats > 0 and there are more eligible projects than seats.
 *  - decided (remaining R = the most votes the circuit may still receive, each remaining
 *    ballot giving at most one vote to one project): the winner set cannot change,
 *    whatever those R votes are. Precisely, decided is true iff R is known and
 *      (a) there is no tie among projects with votes > 0 (a tie on the last seat is never
 *          decided, R = 0 and lot included), and
 *      (b) seats == 0, or for every non-winner j: v_j + R < threshold_j, where
 *          threshold_j = max(min_votes_j, 1, m) when every seat is filled (m: the fewest
 *          votes of a winner), else max(min_votes_j, 1).
 *    The 1 is "zero votes never win": with R = 0 a circuit nobody voted in is decided (its
 *    zero-vote "tie" is no contest); with R > 0 it is decided only when no project can reach
 *    its min_votes. (b) is exact: giving all R votes to one non-winner j is the best chance
 *    of any change, and j changes the set iff it reaches threshold_j (then it wins, or it
 *    ties the weakest winner and that winner loses its seat). tests/unit/test_rules.c
 *    checks it against every way to add up to R votes on small circuits. The lot plays no
 *    part in decided. */
#ifndef RULES_RULES_H
#define RULES_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* remaining when the votes still possible are not known: decided is then false. */
#define RULES_REMAINING_UNKNOWN UINT64_MAX

struct rules_project {
    uint32_t id; /* external project id; distinct within a circuit */
    uint64_t votes;
    uint32_t min_votes; /* 0: none */
};

struct rules_outcome {
    uint32_t rank; /* competition rank by votes, from 1 */
    bool winner;   /* holds a seat */
    bool tie;      /* eligible, in the block that straddles the last seat */
    bool by_lot;   /* a winner chosen by lot among the tie */
    bool eligible; /* votes >= min_votes */
};

struct rules_circuit {
    uint32_t winners;
    bool tie;        /* some block straddles the last seat (zero-vote blocks included) */
    bool decided;    /* see the top of this file */
    bool has_margin; /* seats > 0 and more eligible projects than seats */
    uint64_t margin;
};

/* Optional tie rule by lot: seed bytes (borrowed for the call); NULL or len ignored when
 * seed is NULL (no lot: ties stay flagged). */
struct rules_lot {
    const uint8_t *seed;
    size_t len;
};

/* Ranks one circuit of n projects (in any order, borrowed). Writes out[i] for projects[i],
 * order[0..n) (caller's scratch, n entries) with the indices of projects[] in listing order
 * (votes descending, then id; a tie resolved by lot lists its tied eligible projects in lot
 * order, ahead of the block's ineligible ones), and *res. lot may be NULL. Allocates
 * nothing; O(n log n). */
void rules_circuit_rank(const struct rules_project *projects, size_t n, uint32_t seats,
                        uint64_t remaining, const struct rules_lot *lot, uint32_t *order,
                        struct rules_outcome *out, struct rules_circuit *res);

/* The lot key of a project: BLAKE2b-256(seed || LE32 id) into key. */
void rules_lot_key(const struct rules_lot *lot, uint32_t id, uint8_t key[32]);

#endif
