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

void tally_set_init(struct tally_set *s, size_t expected)
{
    size_t cap = 1024;
    while (cap / 4 * 3 < expected)
        cap *= 2;
    s->slots = slots_new(cap);
    s->mask = cap - 1;
    s->count = 0;
    s->has_zero = false;
}

void tally_set_cleanup(struct tally_set *s)
{
    free(s->slots);
    s->slots = NULL;
    s->mask = 0;
    s->count = 0;
}

static void place(uint64_t *slots, size_t mask, const struct tally_set *shape, uint64_t token)
{
    size_t i = tally_set_home(shape, token);
    while (slots[i])
        i = (i + 1) & mask;
    slots[i] = token;
}

static void grow(struct tally_set *s)
{
    size_t old_cap = s->mask + 1;
    uint64_t *old = s->slots;
    s->slots = slots_new(old_cap * 2);
    s->mask = old_cap * 2 - 1;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i])
            place(s->slots, s->mask, s, old[i]);
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
        i = (i + 1) & s->mask;
    }
    s->slots[i] = token;
    s->count++;
    if (s->count > (s->mask + 1) / 4 * 3)
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
        i = (i + 1) & s->mask;
    }
}

size_t tally_set_bytes(const struct tally_set *s)
{
    return (s->mask + 1) * sizeof(uint64_t);
}
