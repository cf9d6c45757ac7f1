/* Arena allocator. Owns its chunks; does not know who uses the memory. */
#include "core/arena.h"
#include "core/xalloc.h"

#include <stdint.h>
#include <stdlib.h>

struct arena_chunk {
    struct arena_chunk *next;
    size_t size; /* usable bytes after the header */
    size_t used;
    _Alignas(16) unsigned char data[];
};

static struct arena_chunk *chunk_new(size_t size)
{
    struct arena_chunk *c = xmalloc(sizeof(*c) + size);
    c->next = NULL;
    c->size = size;
    c->used = 0;
    return c;
}

void arena_init(struct arena *a, size_t chunk_size)
{
    a->head = NULL;
    a->chunk_size = chunk_size ? chunk_size : 4096;
    a->first_size = a->chunk_size;
}

void arena_cleanup(struct arena *a)
{
    struct arena_chunk *c = a->head;
    while (c) {
        struct arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}

void *arena_alloc(struct arena *a, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    struct arena_chunk *c = a->head;
    if (!c || c->size - c->used < size) {
        size_t want = a->chunk_size;
        while (want < size)
            want *= 2;
        c = chunk_new(want);
        c->next = a->head;
        a->head = c;
        a->chunk_size = want * 2; /* grow geometrically while a frame is being decoded */
    }
    void *p = c->data + c->used;
    c->used += size;
    return p;
}

void arena_reset(struct arena *a)
{
    if (!a->head)
        return;
    if (!a->head->next) {
        a->head->used = 0;
        return;
    }
    /* Several chunks were needed: replace them by one that holds it all next time. */
    size_t total = 0;
    struct arena_chunk *c = a->head;
    while (c) {
        struct arena_chunk *next = c->next;
        total += c->size;
        free(c);
        c = next;
    }
    a->head = chunk_new(total);
    a->chunk_size = total;
}

void arena_trim(struct arena *a, size_t keep)
{
    if (arena_bytes(a) <= keep) {
        arena_reset(a);
        return;
    }
    /* Free before allocating anything: arena_reset would first make one chunk as large
     * as all of them together. */
    arena_cleanup(a);
    a->chunk_size = a->first_size;
}

size_t arena_bytes(const struct arena *a)
{
    size_t n = 0;
    for (const struct arena_chunk *c = a->head; c; c = c->next)
        n += c->size;
    return n;
}

size_t arena_chunk_count(const struct arena *a)
{
    size_t n = 0;
    for (const struct arena_chunk *c = a->head; c; c = c->next)
        n++;
    return n;
}
