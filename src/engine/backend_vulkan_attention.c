/* Attention on the Vulkan back end: each sequence's run of tokens RoPEd
 * and stored into its K and V caches, then attending over them. */
#include <math.h>

#include "engine/backend_vulkan_internal.h"

/* The batch's tokens from t0 on that belong to its sequence (the scheduler
 * puts a sequence's tokens together). */
static uint32_t run_len(const engine *e, uint32_t t0, uint32_t n_tok)
{
    uint32_t n = 1;
    while (t0 + n < n_tok && e->tok_seq[t0 + n] == e->tok_seq[t0]) n++;
    return n;
}

/* Per run of one sequence's tokens: RoPE of its q and k rows and their K
 * and V stored in its caches (fused), or (unfused: RoPE done) the stores. */
static void store_runs(backend *b, uint64_t l, uint32_t n_tok, bool fused)
{
    engine *e = b->e;
    const model_dims *d = &e->w.d;
    gpu_state *g = st_of(b);
    uint32_t kv_len = g->groups[l].kv_len, hd = (uint32_t)d->head_dim, nkv = (uint32_t)d->n_kv_heads;
    for (uint32_t t0 = 0, n; t0 < n_tok; t0 += n) {
        n = run_len(e, t0, n_tok);
        const gpu_kv_set *kv = &g->kv[e->tok_seq[t0]->gpu_kv];
        uint64_t kc = vkb_addr(kv->k[l]), vc = vkb_addr(kv->v[l]);
        uint64_t k = addr(b, ACT_K) + (uint64_t)t0 * d->kv_dim * 4, v = addr(b, ACT_V) + (uint64_t)t0 * d->kv_dim * 4;
        if (!fused) {
            vkb_kv_store(g->v, k, kc, n, nkv, hd, kv_len, e->tok_pos[t0]);
            vkb_kv_store(g->v, v, vc, n, nkv, hd, kv_len, e->tok_pos[t0]);
            continue;
        }
        vkb_rope_kv r = {.q = addr(b, ACT_Q) + (uint64_t)t0 * d->q_dim * 4, .k = k, .v = v,
                         .cs = vkb_addr(e->w.swa[l] ? g->cs_swa : g->cs) + (uint64_t)t0 * d->rope_dim * 4,
                         .k_cache = kc, .v_cache = vc, .n_tok = n, .n_heads = (uint32_t)d->n_heads,
                         .n_kv_heads = nkv, .head_dim = hd, .rope_dim = (uint32_t)d->rope_dim,
                         .q_stride = (uint32_t)d->q_dim, .kv_len = kv_len, .slot0 = e->tok_pos[t0],
                         .neox = e->w.arch->rope == ROPE_NEOX};
        vkb_rope_kv_store(g->v, &r);
    }
}

/* Attention of each run over its sequence's caches. Runs touch their own
 * rows and caches: no barrier between them. */
static void attend_runs(backend *b, uint64_t l, uint32_t n_tok)
{
    engine *e = b->e;
    const model_dims *d = &e->w.d;
    gpu_state *g = st_of(b);
    for (uint32_t t0 = 0, n; t0 < n_tok; t0 += n) {
        n = run_len(e, t0, n_tok);
        const gpu_kv_set *kv = &g->kv[e->tok_seq[t0]->gpu_kv];
        vkb_attn a = {.q = addr(b, ACT_Q) + (uint64_t)t0 * d->q_dim * 4, .k_cache = vkb_addr(kv->k[l]),
                      .v_cache = vkb_addr(kv->v[l]), .out = addr(b, ACT_ATT) + (uint64_t)t0 * d->q_dim * 4,
                      .n_tok = n, .n_heads = (uint32_t)d->n_heads, .n_kv_heads = (uint32_t)d->n_kv_heads,
                      .head_dim = (uint32_t)d->head_dim, .kv_len = g->groups[l].kv_len, .pos0 = e->tok_pos[t0],
                      .n_swa = e->w.swa[l] ? (uint32_t)d->n_swa : 0, .slot_base = 0,
                      .scale = 1.0f / sqrtf((float)d->head_dim)};
        vkb_attention(g->v, &a);
    }
}

void gpu_attention(backend *b, uint64_t l, uint32_t n_tok)
{
    engine *e = b->e;
    const model_dims *d = &e->w.d;
    gpu_state *g = st_of(b);
    gpu_record(b);
    pending *p = &g->p;
    bool swa = e->w.swa[l];
    bool fused = !p->norm && !p->n_mm && p->n_rope == 2 && p->rope[0].x == ACT_Q && p->rope[1].x == ACT_K &&
                 p->rope[0].n_heads == d->n_heads && p->rope[0].row_stride == d->q_dim &&
                 p->rope[1].n_heads == d->n_kv_heads && p->rope[1].row_stride == d->kv_dim &&
                 p->rope[0].swa == swa && p->rope[1].swa == swa && p->rope[0].n_tok == n_tok &&
                 p->rope[1].n_tok == n_tok;
    if (fused) {
        *p = (pending){0};
        gpu_hazard(g, RES(ACT_Q) | RES(ACT_K) | RES(ACT_V), RES(ACT_Q) | RES(ACT_K) | RES_KV);
    } else {
        gpu_flush_pending(b);
        gpu_hazard(g, RES(ACT_K) | RES(ACT_V), RES_KV);
    }
    store_runs(b, l, n_tok, fused);
    gpu_hazard(g, RES(ACT_Q) | RES_KV, RES(ACT_ATT));
    attend_runs(b, l, n_tok);
}
