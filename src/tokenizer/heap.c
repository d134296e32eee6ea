/* The merge work queue: a binary min-heap of candidate merges ordered by
 * priority, ties broken by the leftmost position. */
#include <stdlib.h>

#include "tokenizer/tok_internal.h"

static bool before(const tok_bigram *a, const tok_bigram *b)
{
    if (a->prio != b->prio) return a->prio < b->prio;
    return a->left < b->left;
}

static void swap(tok_bigram *a, tok_bigram *b)
{
    tok_bigram t = *a;
    *a = *b;
    *b = t;
}

bool tok_heap_push(tok_heap *h, tok_bigram b)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 64;
        tok_bigram *v = realloc(h->v, cap * sizeof *v);
        if (!v) return false;
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    h->v[i] = b;
    while (i > 0 && before(&h->v[i], &h->v[(i - 1) / 2])) {
        swap(&h->v[i], &h->v[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    return true;
}

bool tok_heap_pop(tok_heap *h, tok_bigram *out)
{
    if (h->n == 0) return false;
    *out = h->v[0];
    h->v[0] = h->v[--h->n];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && before(&h->v[l], &h->v[m])) m = l;
        if (r < h->n && before(&h->v[r], &h->v[m])) m = r;
        if (m == i) break;
        swap(&h->v[i], &h->v[m]);
        i = m;
    }
    return true;
}

void tok_heap_free(tok_heap *h)
{
    free(h->v);
    h->v = NULL;
    h->n = h->cap = 0;
}

bool tok_merge_all(tok_symbol *sym, size_t n_sym, tok_heap *heap, tok_pair_fn pair, void *ctx)
{
    heap->n = 0;
    for (size_t i = 1; i < n_sym; i++)
        if (!pair(ctx, (int32_t)i - 1, (int32_t)i)) return false;
    tok_bigram b;
    while (tok_heap_pop(heap, &b)) {
        tok_symbol *l = &sym[b.left], *r = &sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = b.left;
        if (!pair(ctx, l->prev, b.left) || !pair(ctx, b.left, l->next)) return false;
    }
    return true;
}
