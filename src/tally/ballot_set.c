/* Ballot token set. Owns its slot arrays; knows nothing of batches or projects. */
#include "tally/ballot_set.h"

#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/xalloc.h"

/* The moved part of the old table goes back to the kernel in steps of this many bytes. */
#define RELEASE_STEP (2u << 20)

static uint64_t *slots_new(size_t capacity)
{
    return xcalloc(capacity, sizeof(uint64_t));
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
    *s = (struct tally_set){.slots = slots_new(cap), .cap = cap};
}

void tally_set_cleanup(struct tally_set *s)
{
    free(s->slots);
    free(s->old);
    *s = (struct tally_set){0};
}

static inline size_t next_slot(size_t i, size_t cap)
{
    return ++i == cap ? 0 : i;
}

/* Puts a token known to be absent into the current table. */
static void place(struct tally_set *s, uint64_t token, uint64_t mixed)
{
    size_t i = tally_set_slot(mixed, s->cap);
    while (s->slots[i])
        i = next_slot(i, s->cap);
    s->slots[i] = token;
}

/* Whether the old table still holds token. Its slots [0, moved) are gone (moved, maybe
 * released), so a probe skips them: every chain that ran through them still reaches its
 * unmoved members, which kept their places. */
static bool old_contains(const struct tally_set *s, uint64_t mixed, uint64_t token)
{
    size_t i = tally_set_slot(mixed, s->old_cap);
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
    for (size_t k = s->moved; k < end; k++) {
        uint64_t v = s->old[k];
        if (v)
            place(s, v, tally_set_mix(v));
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

static void start_growing(struct tally_set *s)
{
    s->old = s->slots;
    s->old_cap = s->cap;
    s->moved = s->released = 0;
    s->cap = s->old_cap * 2;
    s->slots = slots_new(s->cap);
}

bool tally_set_insert(struct tally_set *s, uint64_t token)
{
    if (token == 0) {
        bool added = !s->has_zero;
        s->has_zero = true;
        s->count += added;
        return added;
    }
    uint64_t m = tally_set_mix(token);
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
    if (s->old)
        move_some(s, TALLY_SET_MOVE_PER_INSERT);
    else if (s->count > max_load(s->cap))
        start_growing(s);
    return true;
}

bool tally_set_contains(const struct tally_set *s, uint64_t token)
{
    if (token == 0)
        return s->has_zero;
    uint64_t m = tally_set_mix(token);
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
    return (s->cap + s->old_cap) * sizeof(uint64_t);
}
