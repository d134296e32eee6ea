/* The llama forward pass over a batch of tokens:
 *   x = embed(tokens)
 *   per layer: x += Wo · attn(rope(Wq·n(x)), rope(Wk·n(x)), Wv·n(x))
 *              x += Wdown · (silu(Wgate·n(x)) * Wup·n(x))
 *   logits = Wout · n(x)
 * with n() the RMS norm of that sub-layer. Each layer's weights are
 * acquired from the store just before it runs and released after. */
#include <inttypes.h>
#include <string.h>

#include "engine/engine_internal.h"
#include "engine/matmul.h"
#include "engine/ops.h"
#include "kernels/cpu/dequant.h"
#include "util/error.h"

static matmul_args mm_args(engine *e, const kernel_desc *k, const void *w, uint64_t n_in, uint64_t n_out,
                           const float *x, uint32_t n_tok, float *y)
{
    return (matmul_args){.k = k, .w = w, .n_in = n_in, .n_out = n_out, .x = x, .n_tok = n_tok, .y = y, .act = e->act};
}

static void mm(engine *e, const kernel_desc *k, const void *w, uint64_t n_in, uint64_t n_out, const float *x,
               uint32_t n_tok, float *y)
{
    matmul_args a = mm_args(e, k, w, n_in, n_out, x, n_tok, y);
    matmul(e->pool, &a);
}

/* Products of one input, fused into one pass when their formats agree. */
static void mm_shared(engine *e, matmul_args *a, int n)
{
    if (matmul_can_share(a, n)) {
        matmul_multi(e->pool, a, n);
        return;
    }
    for (int i = 0; i < n; i++) matmul(e->pool, &a[i]);
}

/* xn[t] = rmsnorm(x[t]) * norm weights (of any float type). */
static strata_status norm_rows(engine *e, const gguf_tensor *t, const void *w, uint32_t n_tok, strata_error *err)
{
    uint64_t n = e->w.d.n_embd;
    strata_status st = dequant_row(t->type, w, e->norm_w, n, err);
    for (uint32_t i = 0; i < n_tok && !st; i++) op_rmsnorm(e->xn + i * n, e->x + i * n, e->norm_w, n, e->w.d.rms_eps);
    return st;
}

static void rope_tables(engine *e, uint32_t n_tok)
{
    const llama_dims *d = &e->w.d;
    for (uint32_t t = 0; t < n_tok; t++)
        op_rope_table(e->rope_cs + t * d->rope_dim, d->rope_dim, e->n_past + t, d->rope_base, d->rope_freq_scale);
}

static void rope_batch(engine *e, uint32_t n_tok)
{
    const llama_dims *d = &e->w.d;
    for (uint32_t t = 0; t < n_tok; t++) {
        const float *cs = e->rope_cs + t * d->rope_dim;
        for (uint64_t h = 0; h < d->n_heads; h++) op_rope(e->q + t * d->q_dim + h * d->head_dim, cs, d->rope_dim);
        for (uint64_t h = 0; h < d->n_kv_heads; h++) op_rope(e->k + t * d->kv_dim + h * d->head_dim, cs, d->rope_dim);
    }
}

static strata_status attention_block(engine *e, uint64_t l, const void *const *w, uint32_t n_tok, strata_error *err)
{
    const llama_dims *d = &e->w.d;
    const kernel_desc *const *k = e->w.kern[l];
    strata_status st = norm_rows(e, e->w.layer[l][SLOT_ATTN_NORM], w[SLOT_ATTN_NORM], n_tok, err);
    if (st) return st;
    matmul_args qkv[3] = {mm_args(e, k[SLOT_WQ], w[SLOT_WQ], d->n_embd, d->q_dim, e->xn, n_tok, e->q),
                          mm_args(e, k[SLOT_WK], w[SLOT_WK], d->n_embd, d->kv_dim, e->xn, n_tok, e->k),
                          mm_args(e, k[SLOT_WV], w[SLOT_WV], d->n_embd, d->kv_dim, e->xn, n_tok, e->v)};
    mm_shared(e, qkv, 3);
    rope_batch(e, n_tok);
    engine_store_kv(e, l, n_tok);
    engine_attention(e, l, n_tok);
    mm(e, k[SLOT_WO], w[SLOT_WO], d->q_dim, d->n_embd, e->att, n_tok, e->xn);
    op_add(e->x, e->xn, (uint64_t)n_tok * d->n_embd);
    return STRATA_OK;
}

static strata_status ffn_block(engine *e, uint64_t l, const void *const *w, uint32_t n_tok, strata_error *err)
{
    const llama_dims *d = &e->w.d;
    const kernel_desc *const *k = e->w.kern[l];
    strata_status st = norm_rows(e, e->w.layer[l][SLOT_FFN_NORM], w[SLOT_FFN_NORM], n_tok, err);
    if (st) return st;
    matmul_args gate_up[2] = {mm_args(e, k[SLOT_GATE], w[SLOT_GATE], d->n_embd, d->n_ff, e->xn, n_tok, e->gate),
                              mm_args(e, k[SLOT_UP], w[SLOT_UP], d->n_embd, d->n_ff, e->xn, n_tok, e->up)};
    mm_shared(e, gate_up, 2);
    e->swiglu(e->gate, e->up, (uint64_t)n_tok * d->n_ff);
    mm(e, k[SLOT_DOWN], w[SLOT_DOWN], d->n_ff, d->n_embd, e->gate, n_tok, e->xn);
    op_add(e->x, e->xn, (uint64_t)n_tok * d->n_embd);
    return STRATA_OK;
}

static strata_status run_layer(engine *e, uint64_t l, uint32_t n_tok, strata_error *err)
{
    const void *const *w;
    strata_status st = store_acquire(e->store, (uint32_t)l, &w, err);
    if (st) return st;
    st = attention_block(e, l, w, n_tok, err);
    if (!st) st = ffn_block(e, l, w, n_tok, err);
    store_release(e->store, (uint32_t)l);
    return st;
}

/* Final norm and output projection of rows [first, n_tok) into logits. */
static strata_status output(engine *e, uint32_t first, uint32_t n_tok, float *logits, strata_error *err)
{
    const llama_dims *d = &e->w.d;
    uint32_t g = (uint32_t)d->n_layers;
    const void *const *w;
    strata_status st = store_acquire(e->store, g, &w, err);
    if (st) return st;
    memmove(e->x, e->x + (uint64_t)first * d->n_embd, (uint64_t)(n_tok - first) * d->n_embd * sizeof(float));
    st = norm_rows(e, e->w.global[GSLOT_OUTPUT_NORM], w[GSLOT_OUTPUT_NORM], n_tok - first, err);
    if (!st) mm(e, e->w.kern_output, w[GSLOT_OUTPUT], d->n_embd, d->n_vocab, e->xn, n_tok - first, logits);
    store_release(e->store, g);
    return st;
}

static strata_status eval_chunk(engine *e, const int32_t *tokens, uint32_t n, float *logits, bool all_logits,
                                strata_error *err)
{
    strata_status st = store_gather_rows(e->store, e->w.embd, tokens, n, e->x, err);
    rope_tables(e, n);
    for (uint64_t l = 0; l < e->w.d.n_layers && !st; l++) st = run_layer(e, l, n, err);
    if (!st && logits) st = output(e, all_logits ? 0 : n - 1, n, logits, err);
    if (!st) e->n_past += n;
    return st;
}

strata_status engine_eval(engine *e, const int32_t *tokens, uint32_t n, float *logits, bool all_logits,
                          strata_error *err)
{
    if (n == 0) return err_set(err, STRATA_E_INVALID, "no tokens to evaluate");
    if ((uint64_t)e->n_past + n > e->n_ctx)
        return err_set(err, STRATA_E_INVALID, "%" PRIu32 " tokens do not fit in the context: %" PRIu32 " of %" PRIu32
                       " positions are used (raise -c)", n, e->n_past, e->n_ctx);
    for (uint32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || (uint64_t)tokens[i] >= e->w.d.n_vocab)
            return err_set(err, STRATA_E_INVALID, "token id %d is outside the vocabulary (%" PRIu64 ")", tokens[i],
                           e->w.d.n_vocab);
    for (uint32_t done = 0; done < n;) {
        uint32_t m = n - done < e->n_batch ? n - done : e->n_batch;
        bool last = done + m == n;
        float *out = NULL;
        if (logits && all_logits) out = logits + (uint64_t)done * e->w.d.n_vocab;
        else if (logits && last) out = logits;
        strata_status st = eval_chunk(e, tokens + done, m, out, all_logits, err);
        if (st) return st;
        done += m;
    }
    return STRATA_OK;
}

void engine_reset(engine *e) { e->n_past = 0; }
uint32_t engine_n_past(const engine *e) { return e->n_past; }
uint32_t engine_n_ctx(const engine *e) { return e->n_ctx; }
uint32_t engine_n_vocab(const engine *e) { return (uint32_t)e->w.d.n_vocab; }
uint64_t engine_memory_bytes(const engine *e) { return e->scratch_bytes + store_get_stats(e->store).accounted_bytes; }
uint64_t engine_buffer_bytes(const engine *e) { return e->scratch_bytes; }
store_stats engine_store_stats(const engine *e) { return store_get_stats(e->store); }
