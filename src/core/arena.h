/* A bump allocator: many small allocations, freed all at once by arena_reset().
 * Used to decode one frame at a time without touching malloc on the hot path. */
#ifndef CORE_ARENA_H
#define CORE_ARENA_H

#include <stddef.h>

struct arena_chunk;

struct arena {
    struct arena_chunk *head; /* current chunk; older chunks follow */
    size_t chunk_size;        /* size of the next chunk to allocate */
    size_t first_size;        /* chunk_size given to arena_init */
};

/* chunk_size: first chunk's size; later chunks grow to fit. */
void arena_init(struct arena *a, size_t chunk_size);
void arena_cleanup(struct arena *a);

/* Returns 16-byte aligned memory valid until the next arena_reset or arena_cleanup.
 * Aborts when memory is exhausted. */
void *arena_alloc(struct arena *a, size_t size);

/* Frees everything allocated so far. Keeps one chunk big enough for what was used,
 * so a steady stream of similar frames allocates nothing after the first. */
void arena_reset(struct arena *a);

/* arena_reset, but when the chunks hold more than keep bytes in all (one unusually large
 * frame), frees them instead of keeping one chunk that size: the next allocation starts
 * again at the size given to arena_init. Bounds what an idle user of the arena holds. */
void arena_trim(struct arena *a, size_t keep);

/* Chunks currently held (1 in the steady state). */
size_t arena_chunk_count(const struct arena *a);
/* Bytes of chunk memory currently held (headers excluded). */
size_t arena_bytes(const struct arena *a);

#endif
