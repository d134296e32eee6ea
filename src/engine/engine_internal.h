/* Internal to src/engine: the engine's state, shared by its files. */
#ifndef STRATA_ENGINE_ENGINE_INTERNAL_H
#define STRATA_ENGINE_ENGINE_INTERNAL_H

#include "engine/engine.h"
#include "engine/llama_weights.h"
#include "kernels/cpu/kv_ops.h"
#include "kernels/cpu/swiglu.h"
#include "engine/threadpool.h"
#include "store/store.h"

struct engine {
    const gguf_file *file;
    llama_weights w;
    store *store;
    pool *pool;
    uint32_t n_ctx, n_batch, n_past, kv_type;
    /* [layer][KV head][position][head_dim] of kv_type: one head's positions
     * are contiguous, so attention streams them (prefetchers follow) */
    uint8_t *k_cache, *v_cache;
    uint64_t kv_head_bytes;     /* bytes of one head's K (or V) at one position */
    kv_ops kv;                  /* attention loops for this cache type */
    swiglu_fn swiglu;
    kernel_mode kernels;
    float *x, *xn, *q, *k, *v, *att, *gate, *up, *norm_w;
    float *rope_cs;             /* n_batch x rope_dim: (cos, sin) per pair and position */
    float *scores;              /* n_threads x engine_scores_per_thread */
    void *act;
    uint64_t scratch_bytes;
};


/* Attention of the batch's tokens (queries in e->q, K and V of the batch
 * already in the cache) for layer l; writes e->att. */
void engine_attention(engine *e, uint64_t l, uint32_t n_tok);
/* Floats of attention scores one thread needs: a KV head's query heads
 * against every position. */
uint64_t engine_scores_per_thread(const llama_dims *d, uint64_t n_ctx);
/* Stores the batch's K and V rows (e->k, e->v) at their positions. */
void engine_store_kv(engine *e, uint64_t l, uint32_t n_tok);

#endif
