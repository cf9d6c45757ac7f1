/* Ballot token set. Owns its slot array; knows nothing of batches or projects. */
#include "tally/ballot_set.h"

#include <stdio.h>
#include <stdlib.h>

static uint64_t *slots_new(size_t capacity)
{
    uint64_t *p = calloc(capacity, sizeof(uint64_t));
    if (!p) {
        fprintf(stderr, "tally_set: out of memory (%zu slots)\n", capacity);
        abort();
    }
    return p;
}

/* Most tokens a table of cap slots holds before it grows. */
static size_t max_load(size_t cap)
{
    return cap / 4 * 3;
}

void tally_set_init(struct tally_set *s, size_t expected)
{
    size_t cap = expected / 3 * 4 + 4;
    if (cap < 1024)
        cap = 1024;
    s->slots = slots_new(cap);
    s->cap = cap;
    s->count = 0;
    s->has_zero = false;
}

void tally_set_cleanup(struct tally_set *s)
{
    free(s->slots);
    s->slots = NULL;
    s->cap = 0;
    s->count = 0;
}

static inline size_t next_slot(const struct tally_set *s, size_t i)
{
    return ++i == s->cap ? 0 : i;
}

static void grow(struct tally_set *s)
{
    size_t old_cap = s->cap;
    uint64_t *old = s->slots;
    s->slots = slots_new(old_cap * 2);
    s->cap = old_cap * 2;
    for (size_t k = 0; k < old_cap; k++) {
        if (!old[k])
            continue;
        size_t i = tally_set_home(s, old[k]);
        while (s->slots[i])
            i = next_slot(s, i);
        s->slots[i] = old[k];
    }
    free(old);
}

bool tally_set_insert(struct tally_set *s, uint64_t token)
{
    if (token == 0) {
        bool added = !s->has_zero;
        s->has_zero = true;
        s->count += added;
        return added;
    }
    size_t i = tally_set_home(s, token);
    for (;;) {
        uint64_t v = s->slots[i];
        if (v == token)
            return false;
        if (v == 0)
            break;
        i = next_slot(s, i);
    }
    s->slots[i] = token;
    s->count++;
    if (s->count > max_load(s->cap))
        grow(s);
    return true;
}

bool tally_set_contains(const struct tally_set *s, uint64_t token)
{
    if (token == 0)
        return s->has_zero;
    size_t i = tally_set_home(s, token);
    for (;;) {
        uint64_t v = s->slots[i];
        if (v == token)
            return true;
        if (v == 0)
            return false;
        i = next_slot(s, i);
    }
}

size_t tally_set_bytes(const struct tally_set *s)
{
    return s->cap * sizeof(uint64_t);
}
