/* The forward pass over a batch of tokens, for every architecture of the
 * table (model/arch.h):
 *
 *   x = embed(tokens)                          (Gemma: x sqrt(n_embd))
 *   per layer:
 *     q, k, v = Wq n(x) (+bq), Wk n(x) (+bk), Wv n(x) (+bv)   (Phi-3: one fused Wqkv)
 *     q, k = norm per head (Qwen3, Gemma 3); rope(q), rope(k)
 *     a = Wo attention(q, k, v)               (window layers: the last n_swa keys)
 *     x += a                                  (Gemma 3: x += n(a))
 *     f = Wdown (act(Wgate n(x)) * Wup n(x))   (Phi-3: gate and up fused in Wup)
 *     x += f                                  (Gemma 3: x += n(f))
 *   logits = Wout n(x)
 *
 * with n() the RMS norm of that place. Each layer's weights are acquired
 * from the store just before it runs and released after. */
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "engine/engine_internal.h"
#include "engine/matmul.h"
#include "kernels/cpu/dequant.h"
#include "util/error.h"

static matmul_args mm_args(engine *e, const kernel_desc *k, const void *w, uint64_t n_in, uint64_t n_out,
                           const float *x, uint32_t n_tok, float *y)
{
    return (matmul_args){.k = k, .w = w, .n_in = n_in, .n_out = n_out, .x = x, .n_tok = n_tok, .y = y, .act = e->act};
}

/* Rows [row0, row0 + n_out) of a fused matrix as a product of their own. */
static matmul_args mm_rows(engine *e, const kernel_desc *k, const gguf_tensor *t, const void *w, uint64_t row0,
                           uint64_t n_out, const float *x, uint32_t n_tok, float *y)
{
    const uint8_t *rows = (const uint8_t *)w + row0 * ggml_row_bytes(t->type, t->ne[0]);
    return mm_args(e, k, rows, t->ne[0], n_out, x, n_tok, y);
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

/* A vector tensor (norm weight, bias) as floats in e->vec. */
static strata_status vec(engine *e, const gguf_tensor *t, const void *data, const float **out, strata_error *err)
{
    *out = e->vec;
    return dequant_row(t->type, data, e->vec, t->ne[0], err);
}

/* y[i] = rmsnorm(x[i]) * norm weights, for n_rows rows of n floats. */
static strata_status norm_rows(engine *e, const gguf_tensor *t, const void *w, float *y, const float *x,
                               uint64_t n, uint64_t n_rows, strata_error *err)
{
    const float *nw;
    strata_status st = vec(e, t, w, &nw, err);
    if (st) return st;
    for (uint64_t i = 0; i < n_rows; i++) op_rmsnorm(y + i * n, x + i * n, nw, n, e->w.d.rms_eps);
    return STRATA_OK;
}

/* y[t] += bias, when the layer has one in this slot. */
static strata_status add_bias(engine *e, uint64_t l, layer_slot s, const void *const *w, float *y, uint64_t n,
                              uint32_t n_tok, strata_error *err)
{
    const gguf_tensor *t = e->w.layer[l][s];
    if (!t) return STRATA_OK;
    const float *b;
    strata_status st = vec(e, t, w[s], &b, err);
    if (!st) op_add_rows(y, b, n, n_tok);
    return st;
}

static void rope_tables(engine *e, uint32_t n_tok)
{
    const model_dims *d = &e->w.d;
    for (uint32_t t = 0; t < n_tok; t++) {
        op_rope_table(e->rope_cs + t * d->rope_dim, &e->rope, e->n_past + t);
        if (d->n_swa) op_rope_table(e->rope_cs_swa + t * d->rope_dim, &e->rope_swa, e->n_past + t);
    }
}

static void rope_batch(engine *e, uint64_t l, uint32_t n_tok)
{
    const model_dims *d = &e->w.d;
    bool neox = e->w.arch->rope == ROPE_NEOX;
    const float *table = e->w.swa[l] ? e->rope_cs_swa : e->rope_cs;
    for (uint32_t t = 0; t < n_tok; t++) {
        const float *cs = table + t * d->rope_dim;
        for (uint64_t h = 0; h < d->n_heads; h++) op_rope(e->q + t * d->q_dim + h * d->head_dim, cs, d->rope_dim, neox);
        for (uint64_t h = 0; h < d->n_kv_heads; h++)
            op_rope(e->k + t * d->kv_dim + h * d->head_dim, cs, d->rope_dim, neox);
    }
}

/* q, k, v of the batch from xn: separate or fused projections, biases. */
static strata_status qkv_projection(engine *e, uint64_t l, const void *const *w, uint32_t n_tok, strata_error *err)
{
    const model_dims *d = &e->w.d;
    const gguf_tensor *const *t = e->w.layer[l];
    const kernel_desc *const *k = e->w.kern[l];
    matmul_args qkv[3];
    if (e->w.arch->fused_qkv) { /* [q_dim + 2 kv_dim][n_embd]: Q rows, then K, then V */
        qkv[0] = mm_rows(e, k[LS_QKV], t[LS_QKV], w[LS_QKV], 0, d->q_dim, e->xn, n_tok, e->q);
        qkv[1] = mm_rows(e, k[LS_QKV], t[LS_QKV], w[LS_QKV], d->q_dim, d->kv_dim, e->xn, n_tok, e->k);
        qkv[2] = mm_rows(e, k[LS_QKV], t[LS_QKV], w[LS_QKV], d->q_dim + d->kv_dim, d->kv_dim, e->xn, n_tok, e->v);
    } else {
        qkv[0] = mm_args(e, k[LS_Q], w[LS_Q], d->n_embd, d->q_dim, e->xn, n_tok, e->q);
        qkv[1] = mm_args(e, k[LS_K], w[LS_K], d->n_embd, d->kv_dim, e->xn, n_tok, e->k);
        qkv[2] = mm_args(e, k[LS_V], w[LS_V], d->n_embd, d->kv_dim, e->xn, n_tok, e->v);
    }
    mm_shared(e, qkv, 3);
    strata_status st = add_bias(e, l, LS_Q_BIAS, w, e->q, d->q_dim, n_tok, err);
    if (!st) st = add_bias(e, l, LS_K_BIAS, w, e->k, d->kv_dim, n_tok, err);
    if (!st) st = add_bias(e, l, LS_V_BIAS, w, e->v, d->kv_dim, n_tok, err);
    return st;
}

static strata_status attention_block(engine *e, uint64_t l, const void *const *w, uint32_t n_tok, strata_error *err)
{
    const model_dims *d = &e->w.d;
    const arch_desc *a = e->w.arch;
    const gguf_tensor *const *t = e->w.layer[l];
    strata_status st = norm_rows(e, t[LS_ATTN_NORM], w[LS_ATTN_NORM], e->xn, e->x, d->n_embd, n_tok, err);
    if (!st) st = qkv_projection(e, l, w, n_tok, err);
    if (!st && a->qk_norm) { /* each head of q and k: [head_dim] rows */
        st = norm_rows(e, t[LS_Q_NORM], w[LS_Q_NORM], e->q, e->q, d->head_dim, n_tok * d->n_heads, err);
        if (!st) st = norm_rows(e, t[LS_K_NORM], w[LS_K_NORM], e->k, e->k, d->head_dim, n_tok * d->n_kv_heads, err);
    }
    if (st) return st;
    rope_batch(e, l, n_tok);
    engine_store_kv(e, l, n_tok);
    engine_attention(e, l, n_tok);
    mm(e, e->w.kern[l][LS_OUT], w[LS_OUT], d->q_dim, d->n_embd, e->att, n_tok, e->xn);
    if (a->post_norms)
        st = norm_rows(e, t[LS_POST_ATTN_NORM], w[LS_POST_ATTN_NORM], e->xn, e->xn, d->n_embd, n_tok, err);
    if (!st) op_add(e->x, e->xn, (uint64_t)n_tok * d->n_embd);
    return st;
}

static strata_status ffn_block(engine *e, uint64_t l, const void *const *w, uint32_t n_tok, strata_error *err)
{
    const model_dims *d = &e->w.d;
    const arch_desc *a = e->w.arch;
    const gguf_tensor *const *t = e->w.layer[l];
    const kernel_desc *const *k = e->w.kern[l];
    strata_status st = norm_rows(e, t[LS_FFN_NORM], w[LS_FFN_NORM], e->xn, e->x, d->n_embd, n_tok, err);
    if (st) return st;
    matmul_args gate_up[2];
    if (a->fused_gate_up) { /* [2 n_ff][n_embd]: the gate rows, then the up rows */
        gate_up[0] = mm_rows(e, k[LS_UP], t[LS_UP], w[LS_UP], 0, d->n_ff, e->xn, n_tok, e->gate);
        gate_up[1] = mm_rows(e, k[LS_UP], t[LS_UP], w[LS_UP], d->n_ff, d->n_ff, e->xn, n_tok, e->up);
    } else {
        gate_up[0] = mm_args(e, k[LS_GATE], w[LS_GATE], d->n_embd, d->n_ff, e->xn, n_tok, e->gate);
        gate_up[1] = mm_args(e, k[LS_UP], w[LS_UP], d->n_embd, d->n_ff, e->xn, n_tok, e->up);
    }
    mm_shared(e, gate_up, 2);
    e->glu(e->gate, e->up, (uint64_t)n_tok * d->n_ff);
    mm(e, k[LS_DOWN], w[LS_DOWN], d->n_ff, d->n_embd, e->gate, n_tok, e->xn);
    if (a->post_norms)
        st = norm_rows(e, t[LS_POST_FFN_NORM], w[LS_POST_FFN_NORM], e->xn, e->xn, d->n_embd, n_tok, err);
    if (!st) op_add(e->x, e->xn, (uint64_t)n_tok * d->n_embd);
    return st;
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
    const model_dims *d = &e->w.d;
    uint32_t g = (uint32_t)d->n_layers;
    const void *const *w;
    strata_status st = store_acquire(e->store, g, &w, err);
    if (st) return st;
    uint32_t n = n_tok - first;
    memmove(e->x, e->x + (uint64_t)first * d->n_embd, (uint64_t)n * d->n_embd * sizeof(float));
    st = norm_rows(e, e->w.output[OS_NORM], w[OS_NORM], e->xn, e->x, d->n_embd, n, err);
    if (!st) mm(e, e->w.kern_output, w[OS_PROJ], d->n_embd, d->n_vocab, e->xn, n, logits);
    store_release(e->store, g);
    return st;
}

static strata_status eval_chunk(engine *e, const int32_t *tokens, uint32_t n, float *logits, bool all_logits,
                                strata_error *err)
{
    const model_dims *d = &e->w.d;
    strata_status st = store_gather_rows(e->store, e->w.global[GS_EMBD], tokens, n, e->x, err);
    if (!st && e->w.arch->embd_scale) op_scale(e->x, sqrtf((float)d->n_embd), (uint64_t)n * d->n_embd);
    rope_tables(e, n);
    engine_slide_window(e, n);
    for (uint64_t l = 0; l < d->n_layers && !st; l++) st = run_layer(e, l, n, err);
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

void engine_reset(engine *e)
{
    e->n_past = 0;
    e->swa_base = 0;
}

uint32_t engine_n_past(const engine *e) { return e->n_past; }
uint32_t engine_n_ctx(const engine *e) { return e->n_ctx; }
uint32_t engine_n_vocab(const engine *e) { return (uint32_t)e->w.d.n_vocab; }
uint64_t engine_memory_bytes(const engine *e) { return e->scratch_bytes + store_get_stats(e->store).accounted_bytes; }
uint64_t engine_buffer_bytes(const engine *e) { return e->scratch_bytes; }
store_stats engine_store_stats(const engine *e) { return store_get_stats(e->store); }
