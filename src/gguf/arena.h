/* A bump allocator that owns every string and array of a parsed header, so
 * closing a file is one free of a few chunks. */
#ifndef STRATA_GGUF_ARENA_H
#define STRATA_GGUF_ARENA_H

#include <stddef.h>

typedef struct gguf_arena gguf_arena;

gguf_arena *arena_new(void);
void arena_free(gguf_arena *a);
/* Returns size bytes aligned to 16, or NULL when out of memory. */
void *arena_alloc(gguf_arena *a, size_t size);
/* Total bytes handed out so far (tests bound the header's memory with it). */
size_t arena_used(const gguf_arena *a);
/* Bytes handed out by all arenas since the process started (tests use it to
 * bound what parsing a hostile file may allocate, even when parsing fails). */
size_t arena_total_allocated(void);

#endif
