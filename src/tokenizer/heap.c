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
