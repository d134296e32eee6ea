/* A byte-string -> int32 hash map with open addressing and linear probing,
 * used for piece -> token id and merge pair -> rank. Keys are not copied. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

static uint32_t hash_bytes(const char *key, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a, then a final mix */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 29;
    return (uint32_t)h;
}

bool tok_strmap_init(tok_strmap *m, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n + 1) {
        if (cap > SIZE_MAX / 4) return false;
        cap *= 2;
    }
    m->slots = calloc(cap, sizeof *m->slots);
    m->cap = m->slots ? cap : 0;
    m->n = 0;
    return m->slots != NULL;
}

void tok_strmap_free(tok_strmap *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->n = 0;
}

/* The slot holding key, or the empty slot where it would go. */
static tok_strmap_slot *find_slot(const tok_strmap *m, const char *key, size_t len,
                                  uint32_t hash)
{
    size_t mask = m->cap - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        tok_strmap_slot *s = &m->slots[i];
        if (!s->key) return s;
        if (s->hash == hash && s->len == len && memcmp(s->key, key, len) == 0) return s;
    }
}

static bool grow(tok_strmap *m)
{
    tok_strmap bigger;
    if (!tok_strmap_init(&bigger, m->cap)) return false;
    for (size_t i = 0; i < m->cap; i++) {
        const tok_strmap_slot *s = &m->slots[i];
        if (s->key) *find_slot(&bigger, s->key, s->len, s->hash) = *s;
    }
    bigger.n = m->n;
    free(m->slots);
    *m = bigger;
    return true;
}

bool tok_strmap_put(tok_strmap *m, const char *key, size_t len, int32_t val, bool replace)
{
    if (len > UINT32_MAX) return false;
    if (2 * (m->n + 1) > m->cap && !grow(m)) return false;
    uint32_t hash = hash_bytes(key, len);
    tok_strmap_slot *s = find_slot(m, key, len, hash);
    if (s->key) {
        if (replace) s->val = val;
        return true;
    }
    *s = (tok_strmap_slot){key, (uint32_t)len, hash, val};
    m->n++;
    return true;
}

int32_t tok_strmap_get(const tok_strmap *m, const char *key, size_t len)
{
    if (!m->cap || len > UINT32_MAX) return TOK_NONE;
    const tok_strmap_slot *s = find_slot(m, key, len, hash_bytes(key, len));
    return s->key ? s->val : TOK_NONE;
}
