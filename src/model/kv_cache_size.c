/* KV-cache geometry: K and V rows per layer from the KV head count (GQA)
 * and head dimensions, in the cache's element type. */
#include "model/model_spec.h"

/* Bytes for n cache elements of a type; block types round up per row. */
static uint64_t cache_row_bytes(uint32_t type, uint64_t n)
{
    const ggml_type_info *t = ggml_type_get(type);
    if (!t) return 0;
    uint64_t blocks = (n + t->block_elems - 1) / t->block_elems;
    return blocks * t->block_bytes;
}

static uint64_t layer_kv_row(const model_spec *s, uint64_t l, uint32_t type)
{
    uint64_t h = s->kv_heads[l];
    return cache_row_bytes(type, h * s->hp.head_dim_k) + cache_row_bytes(type, h * s->hp.head_dim_v);
}

uint64_t model_kv_bytes_per_token(const model_spec *s, uint32_t cache_type)
{
    uint64_t total = 0;
    for (uint64_t l = 0; l < s->hp.n_layers; l++) total += layer_kv_row(s, l, cache_type);
    return total;
}

uint64_t model_kv_bytes(const model_spec *s, uint32_t cache_type, uint64_t ctx)
{
    uint64_t total = 0;
    for (uint64_t l = 0; l < s->hp.n_layers; l++) {
        uint64_t tokens = s->layer_swa[l] && s->hp.sliding_window < ctx ? s->hp.sliding_window : ctx;
        total += layer_kv_row(s, l, cache_type) * tokens;
    }
    return total;
}
