/* Causal grouped-query attention over the KV caches. Query head h reads KV
 * head h / (n_heads / n_kv_heads); token t of the batch (sequence
 * tok_seq[t], position p = tok_pos[t]) sees its sequence's positions 0..p,
 * or on a sliding-window layer the last n_swa of them, p - n_swa + 1..p.
 * The batch's K and V are stored before any token attends, so a prompt
 * chunk sees itself causally. */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "engine/engine_internal.h"

uint32_t engine_kv_len(const model_weights *w, uint64_t l, uint32_t n_ctx, uint32_t n_batch)
{
    if (!w->swa[l]) return n_ctx;
    /* the window plus a batch, and another batch of slack so the cache
     * slides (a memmove of one window) at most once every n_batch tokens */
    uint64_t len = w->d.n_swa + 2 * (uint64_t)n_batch;
    return len < n_ctx ? (uint32_t)len : n_ctx;
}

/* First slot of layer l that holds an absolute position. */
static uint32_t slot_base(const engine_seq *s, uint64_t l) { return s->e->w.swa[l] ? s->swa_base : 0; }

/* Head g at slot `slot` of layer l's cache of rows of row_bytes. */
static uint8_t *kv_at(const engine_seq *s, uint8_t *cache, uint64_t row_bytes, uint64_t l, uint64_t g, uint64_t slot)
{
    return cache + (s->kv_off[l] + g * s->kv_len[l] + slot) * row_bytes;
}

/* New rows are converted (F16) or quantized (Q8_0, Q4_0) as they are stored. */
void engine_store_kv(engine *e, uint64_t l, uint32_t n_tok)
{
    const model_dims *d = &e->w.d;
    for (uint32_t t = 0; t < n_tok; t++) {
        const engine_seq *s = e->tok_seq[t];
        uint64_t slot = e->tok_pos[t] - slot_base(s, l);
        for (uint64_t g = 0; g < d->n_kv_heads; g++) {
            uint64_t off = t * d->kv_dim + g * d->head_dim;
            kv_store_row(e->kv_type_k, kv_at(s, s->k_cache, e->k_head_bytes, l, g, slot), e->act[ACT_K] + off,
                         d->head_dim);
            kv_store_row(e->kv_type_v, kv_at(s, s->v_cache, e->v_head_bytes, l, g, slot), e->act[ACT_V] + off,
                         d->head_dim);
        }
    }
}

/* Rows move whole (a block type's row is whole blocks). */
void engine_slide_window(engine_seq *s, uint32_t n_tok)
{
    engine *e = s->e;
    const model_dims *d = &e->w.d;
    uint32_t len = 0;
    for (uint64_t l = 0; l < d->n_layers && !len; l++)
        if (e->w.swa[l] && s->kv_len[l] && s->kv_len[l] < s->n_ctx) len = s->kv_len[l];
    if (!len || s->n_past + n_tok - s->swa_base <= len) return;
    /* keep the positions the first new token still sees */
    uint32_t keep_from = s->n_past >= d->n_swa ? s->n_past - (uint32_t)d->n_swa + 1 : 0;
    if (keep_from < s->swa_base) keep_from = s->swa_base;
    uint64_t shift = keep_from - s->swa_base, n_keep = s->n_past - keep_from;
    uint64_t kb = e->k_head_bytes, vb = e->v_head_bytes;
    for (uint64_t l = 0; l < d->n_layers; l++) {
        if (!e->w.swa[l] || s->kv_len[l] != len) continue;
        for (uint64_t g = 0; g < d->n_kv_heads; g++) {
            memmove(kv_at(s, s->k_cache, kb, l, g, 0), kv_at(s, s->k_cache, kb, l, g, shift), n_keep * kb);
            memmove(kv_at(s, s->v_cache, vb, l, g, 0), kv_at(s, s->v_cache, vb, l, g, shift), n_keep * vb);
        }
    }
    s->swa_base = keep_from;
}

/* The work is split into units of (token, KV head, chunk of that head's
 * query heads) that threads take from a shared counter: a decode step has
 * few KV heads, so their query heads are cut into chunks until there are a
 * few units per thread. */
typedef struct attn_job {
    engine *e;
    uint64_t l;
    uint32_t n_tok;
    uint64_t n_chunks, per_chunk; /* query heads of one KV head: chunks of per_chunk */
    long n_units;
    atomic_long next;
} attn_job;

static void attend_unit(const attn_job *j, long unit, float *scores)
{
    engine *e = j->e;
    const model_dims *d = &e->w.d;
    uint64_t hd = d->head_dim, n_rep = d->n_heads / d->n_kv_heads;
    uint64_t c = (uint64_t)unit % j->n_chunks, g = (uint64_t)unit / j->n_chunks % d->n_kv_heads;
    uint32_t t = (uint32_t)((uint64_t)unit / j->n_chunks / d->n_kv_heads);
    uint64_t h0 = g * n_rep + c * j->per_chunk;
    uint64_t n_q = n_rep - c * j->per_chunk < j->per_chunk ? n_rep - c * j->per_chunk : j->per_chunk;
    const engine_seq *s = e->tok_seq[t];
    uint64_t pos = e->tok_pos[t], first = 0;
    if (e->w.swa[j->l] && pos + 1 > d->n_swa) first = pos + 1 - d->n_swa;
    uint64_t n_keys = pos - first + 1, slot = first - slot_base(s, j->l);
    const float *q = e->act[ACT_Q] + t * d->q_dim + h0 * hd;
    e->kv.scores(q, n_q, kv_at(s, s->k_cache, e->k_head_bytes, j->l, g, slot), e->k_head_bytes, n_keys, hd,
                 1.0f / sqrtf((float)hd), scores);
    for (uint64_t i = 0; i < n_q; i++) e->kv.softmax(scores + i * n_keys, n_keys);
    e->kv.mix(e->act[ACT_ATT] + t * d->q_dim + h0 * hd, n_q, scores, kv_at(s, s->v_cache, e->v_head_bytes, j->l, g, slot),
              e->v_head_bytes, n_keys, hd);
}

static void attn_worker(void *ctx, int ith, int nth)
{
    attn_job *j = ctx;
    float *scores = j->e->scores + (uint64_t)ith * engine_scores_per_thread(&j->e->w.d, j->e->n_ctx);
    for (long u; (u = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < j->n_units;)
        attend_unit(j, u, scores);
}

#define UNITS_PER_THREAD 4

void engine_attention(engine *e, uint64_t l, uint32_t n_tok)
{
    const model_dims *d = &e->w.d;
    uint64_t n_rep = d->n_heads / d->n_kv_heads, units = n_tok * d->n_kv_heads;
    uint64_t want = (uint64_t)pool_size(e->pool) * UNITS_PER_THREAD;
    uint64_t n_chunks = units >= want ? 1 : (want + units - 1) / units;
    if (n_chunks > n_rep) n_chunks = n_rep;
    uint64_t per_chunk = (n_rep + n_chunks - 1) / n_chunks;
    n_chunks = (n_rep + per_chunk - 1) / per_chunk;
    attn_job j = {e, l, n_tok, n_chunks, per_chunk, (long)(units * n_chunks), 0};
    pool_run(e->pool, attn_worker, &j);
}
