/* Causal grouped-query attention over the KV cache. Query head h reads KV
 * head h / (n_heads / n_kv_heads); token t of the batch (position
 * n_past + t) sees positions 0..n_past + t. */
#include <math.h>
#include <string.h>

#include "engine/engine_internal.h"
#include "engine/ops.h"
#include "util/fp16.h"

static const uint8_t *kv_row(const engine *e, const uint8_t *cache, uint64_t l, uint64_t pos)
{
    return cache + (l * e->n_ctx + pos) * e->kv_row_bytes;
}


void engine_store_kv(engine *e, uint64_t l, uint32_t n_tok)
{
    uint64_t kv = e->w.d.kv_dim;
    for (uint32_t t = 0; t < n_tok; t++) {
        uint8_t *kr = (uint8_t *)kv_row(e, e->k_cache, l, e->n_past + t);
        uint8_t *vr = (uint8_t *)kv_row(e, e->v_cache, l, e->n_past + t);
        const float *k = e->k + t * kv, *v = e->v + t * kv;
        if (e->kv_type == GGML_TYPE_F32) {
            memcpy(kr, k, kv * 4);
            memcpy(vr, v, kv * 4);
            continue;
        }
        for (uint64_t i = 0; i < kv; i++) {
            ((uint16_t *)kr)[i] = f32_to_fp16(k[i]);
            ((uint16_t *)vr)[i] = f32_to_fp16(v[i]);
        }
    }
}

typedef struct attn_job {
    engine *e;
    uint64_t l;
    uint32_t n_tok;
} attn_job;

static void attend_one(engine *e, uint64_t l, uint32_t t, uint64_t h, float *scores)
{
    const llama_dims *d = &e->w.d;
    uint64_t hd = d->head_dim, g = h / (d->n_heads / d->n_kv_heads);
    uint64_t n_keys = e->n_past + t + 1;
    const float *q = e->q + t * d->q_dim + h * hd;
    float scale = 1.0f / sqrtf((float)hd);
    uint64_t head_off = g * hd * (e->kv_type == GGML_TYPE_F32 ? 4 : 2);
    for (uint64_t j = 0; j < n_keys; j++) scores[j] = e->kv.dot(q, kv_row(e, e->k_cache, l, j) + head_off, hd) * scale;
    op_softmax(scores, n_keys);
    float *out = e->att + t * d->q_dim + h * hd;
    memset(out, 0, hd * sizeof(float));
    for (uint64_t j = 0; j < n_keys; j++) e->kv.axpy(out, scores[j], kv_row(e, e->v_cache, l, j) + head_off, hd);
}

static void attn_worker(void *ctx, int ith, int nth)
{
    attn_job *j = ctx;
    engine *e = j->e;
    float *scores = e->scores + (uint64_t)ith * e->n_ctx;
    long b, end;
    pool_share((long)(j->n_tok * e->w.d.n_heads), ith, nth, &b, &end);
    for (long i = b; i < end; i++)
        attend_one(e, j->l, (uint32_t)(i / (long)e->w.d.n_heads), (uint64_t)i % e->w.d.n_heads, scores);
}

void engine_attention(engine *e, uint64_t l, uint32_t n_tok)
{
    attn_job j = {e, l, n_tok};
    pool_run(e->pool, attn_worker, &j);
}
