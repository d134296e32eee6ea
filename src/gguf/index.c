/* Hash indexes of a parsed header: metadata keys and tensor names, so that
 * duplicate checks and look-ups by name take constant time per name. The
 * table holds entry numbers (+1; 0 is empty) and grows to stay at most half
 * full, so its size follows the entries actually read, never a claimed
 * count. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf/internal.h"

struct gguf_index {
    uint64_t *slots;
    uint64_t mask;  /* capacity - 1 (capacity a power of two) */
    uint64_t count;
    uint64_t seed;  /* per index, so crafted files cannot rely on fixed collisions */
};

static uint64_t new_seed(const void *salt)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return ((uint64_t)t.tv_nsec * 0x9e3779b97f4a7c15ull) ^ (uint64_t)(uintptr_t)salt;
}

static uint64_t hash(const gguf_index *ix, const char *key, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull ^ ix->seed;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)key[i]) * 0x100000001b3ull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 32);
}

void gguf_index_free(gguf_index *ix)
{
    if (!ix) return;
    free(ix->slots);
    free(ix);
}

static bool same_key(const void *base, gguf_key_fn key_of, uint64_t i, const char *key, size_t len)
{
    size_t l;
    const char *k = key_of(base, i, &l);
    return l == len && !memcmp(k, key, len);
}

uint64_t gguf_index_find(const gguf_index *ix, const void *base, gguf_key_fn key_of, const char *key,
                         size_t len)
{
    if (!ix || !ix->slots) return GGUF_INDEX_NONE;
    for (uint64_t s = hash(ix, key, len) & ix->mask;; s = (s + 1) & ix->mask) {
        uint64_t v = ix->slots[s];
        if (!v) return GGUF_INDEX_NONE;
        if (same_key(base, key_of, v - 1, key, len)) return v - 1;
    }
}

/* Places entry i (known absent) in its slot. */
static void place(gguf_index *ix, const void *base, gguf_key_fn key_of, uint64_t i)
{
    size_t len;
    const char *k = key_of(base, i, &len);
    uint64_t s = hash(ix, k, len) & ix->mask;
    while (ix->slots[s]) s = (s + 1) & ix->mask;
    ix->slots[s] = i + 1;
}

static bool grow(gguf_index *ix, const void *base, gguf_key_fn key_of)
{
    uint64_t cap = ix->slots ? (ix->mask + 1) * 2 : 16;
    if (cap > SIZE_MAX / sizeof(uint64_t)) return false;
    uint64_t *old = ix->slots, old_cap = old ? ix->mask + 1 : 0;
    ix->slots = calloc(cap, sizeof(uint64_t));
    if (!ix->slots) {
        ix->slots = old;
        return false;
    }
    ix->mask = cap - 1;
    for (uint64_t s = 0; s < old_cap; s++)
        if (old[s]) place(ix, base, key_of, old[s] - 1);
    free(old);
    return true;
}

int gguf_index_add(gguf_index **ixp, const void *base, gguf_key_fn key_of, uint64_t i, uint64_t *dup)
{
    if (!*ixp && !(*ixp = calloc(1, sizeof **ixp))) return -1;
    gguf_index *ix = *ixp;
    if (!ix->seed) ix->seed = new_seed(ix);
    size_t len;
    const char *k = key_of(base, i, &len);
    *dup = gguf_index_find(ix, base, key_of, k, len);
    if (*dup != GGUF_INDEX_NONE) return 1;
    if ((ix->count + 1) * 2 > (ix->slots ? ix->mask + 1 : 0) && !grow(ix, base, key_of)) return -1;
    place(ix, base, key_of, i);
    ix->count++;
    return 0;
}

const char *gguf_kv_key(const void *base, uint64_t i, size_t *len)
{
    const gguf_kv *kv = base;
    *len = (size_t)kv[i].key.len;
    return kv[i].key.ptr;
}

const char *gguf_tensor_key(const void *base, uint64_t i, size_t *len)
{
    const gguf_tensor *t = base;
    *len = strlen(t[i].name);
    return t[i].name;
}

strata_status gguf_index_tensors(gguf_file *f, const char *name, strata_error *err)
{
    gguf_index_free(f->tensor_index);
    f->tensor_index = NULL;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        uint64_t dup;
        int r = gguf_index_add(&f->tensor_index, f->tensors, gguf_tensor_key, i, &dup);
        if (r < 0) return err_set(err, STRATA_E_NOMEM, "%s: out of memory", name);
        if (r > 0)
            return err_set(err, STRATA_E_FORMAT, "%s: offset 0: duplicate tensor name '%s'", name, f->tensors[i].name);
    }
    return STRATA_OK;
}
