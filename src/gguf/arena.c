#include "gguf/arena.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#define ARENA_CHUNK (64 * 1024)

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
} arena_chunk;

struct gguf_arena {
    arena_chunk *head;
    size_t total;
};

static atomic_size_t all_arenas_bytes;

size_t arena_total_allocated(void) { return atomic_load(&all_arenas_bytes); }

gguf_arena *arena_new(void) { return calloc(1, sizeof(gguf_arena)); }

void arena_free(gguf_arena *a)
{
    if (!a) return;
    for (arena_chunk *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(a);
}

void *arena_alloc(gguf_arena *a, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    if (size == 0) size = 16;
    arena_chunk *c = a->head;
    if (!c || c->size - c->used < size) {
        /* Large requests get a chunk of their own so small ones keep packing. */
        size_t cap = size > ARENA_CHUNK / 4 ? size : ARENA_CHUNK;
        if (cap > SIZE_MAX - sizeof(arena_chunk)) return NULL;
        arena_chunk *n = malloc(sizeof(arena_chunk) + cap);
        if (!n) return NULL;
        n->size = cap;
        n->used = 0;
        if (c && cap == size) { /* keep the partly used chunk at the head */
            n->next = c->next;
            c->next = n;
        } else {
            n->next = c;
            a->head = n;
        }
        c = n;
    }
    void *p = c->data + c->used;
    c->used += size;
    a->total += size;
    atomic_fetch_add(&all_arenas_bytes, size);
    return p;
}

size_t arena_used(const gguf_arena *a) { return a->total; }
