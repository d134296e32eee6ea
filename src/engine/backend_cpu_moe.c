/* Mixture of experts on the CPU back end. Gating (softmax, top k,
 * renormalization, the file's expert_weights_scale) in moe_route.c, shared
 * with the GPU back end.
 *
 * Experts come from the store's expert cache. A step pins the distinct
 * experts its tokens chose (reads of the missing ones start at once),
 * computes those already in memory while the others arrive, and unpins
 * them; each expert runs once over all the tokens routed to it. Every
 * selection's output is kept apart and the weighted sum is taken in
 * expert-id order, so the result does not depend on what was cached or on
 * the order reads completed: it equals an all-resident run bit for bit.
 * A predictor may prefetch the next layer's experts (engine.h). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/backend_cpu.h"
#include "engine/engine_internal.h"
#include "engine/matmul.h"
#include "engine/moe_route.h"
#include "kernels/cpu/dequant.h"
#include "util/error.h"

static float *buf(backend *b, act_buf a) { return b->e->act[a]; }

static matmul_args rows_args(backend *b, const kernel_desc *k, const gguf_tensor *t, const void *w, uint64_t n_out,
                             const float *x, float *y, uint32_t n)
{
    return (matmul_args){.k = k, .w = w, .n_in = t->ne[0], .n_out = n_out, .x = x, .n_tok = n, .y = y,
                         .act = b->e->act_scratch};
}

/* A SwiGLU FFN `width` wide over n rows of x into y (y may be x); g, u, dn:
 * its gate, up and down slots, data[0..2] their weights. */
static void swiglu_rows(backend *b, const be_weight *g, const be_weight *u, const be_weight *dn,
                        const void *const *data, uint64_t width, const float *x, float *y, uint32_t n)
{
    float *gate = buf(b, ACT_GATE), *up = buf(b, ACT_UP);
    matmul_args gu[2] = {rows_args(b, g->k, g->t, data[0], width, x, gate, n),
                         rows_args(b, u->k, u->t, data[1], width, x, up, n)};
    if (matmul_can_share(gu, 2)) matmul_multi(b->e->pool, gu, 2);
    else for (int i = 0; i < 2; i++) matmul(b->e->pool, &gu[i]);
    b->e->glu(gate, up, (uint64_t)n * width);
    matmul_args down = rows_args(b, dn->k, dn->t, data[2], b->e->w.d.n_embd, gate, y, n);
    matmul(b->e->pool, &down);
}

/* The expert's FFN over the n rows gathered in ACT_XE, output there;
 * data[j]: its gate, up and down slices. */
static void run_expert(backend *b, const be_weight *w, const void *const *data, uint32_t n)
{
    float *xe = buf(b, ACT_XE);
    swiglu_rows(b, &w[LS_GATE_EXPS], &w[LS_UP_EXPS], &w[LS_DOWN_EXPS], data, b->e->w.d.n_ff_exp, xe, xe, n);
}

/* The shared expert (dense, every token) over ACT_XN into m->shared, each
 * token's row scaled by sigmoid(gate . x) where the architecture gates it
 * (qwen2moe). Its weights are in the layer's dense group. */
static void shared_expert(backend *b, const be_weight *w, uint32_t n_tok)
{
    engine *e = b->e;
    const model_dims *d = &e->w.d;
    const float *xn = buf(b, ACT_XN);
    float *out = e->moe.shared;
    const void *data[3] = {w[LS_GATE_SHEXP].host, w[LS_UP_SHEXP].host, w[LS_DOWN_SHEXP].host};
    swiglu_rows(b, &w[LS_GATE_SHEXP], &w[LS_UP_SHEXP], &w[LS_DOWN_SHEXP], data, d->n_ff_shexp, xn, out, n_tok);
    const be_weight *gi = &w[LS_GATE_INP_SHEXP];
    if (!gi->t) return;
    dequant_row(gi->t->type, gi->host, e->vec, d->n_embd, NULL); /* [n_embd] */
    for (uint32_t t = 0; t < n_tok; t++) {
        const float *x = xn + (uint64_t)t * d->n_embd;
        float dot = 0;
        for (uint64_t j = 0; j < d->n_embd; j++) dot += e->vec[j] * x[j];
        float s = 1.0f / (1.0f + expf(-dot));
        for (uint64_t j = 0; j < d->n_embd; j++) out[(uint64_t)t * d->n_embd + j] *= s;
    }
}

/* Expert x over the selections routed to it: rows gathered, run, each
 * output stored at its selection's place in m->out. */
static strata_status expert_step(backend *b, uint64_t l, const be_weight *w, int32_t x, uint32_t n_tok,
                                 strata_error *err)
{
    engine *e = b->e;
    moe_state *m = &e->moe;
    uint64_t k = e->w.d.n_expert_used, E = e->w.d.n_embd;
    const float *xn = buf(b, ACT_XN);
    float *xe = buf(b, ACT_XE);
    uint32_t n = 0;
    for (uint64_t s = 0; s < n_tok * k; s++)
        if (m->sel[s] == x) {
            m->rows[n] = (uint32_t)s;
            memcpy(xe + (uint64_t)n++ * E, xn + s / k * E, E * sizeof(float));
        }
    const void *const *data;
    strata_status st = store_expert_data(e->store, (uint32_t)l, x, &data, err);
    if (st) return st;
    run_expert(b, w, data, n);
    for (uint32_t r = 0; r < n; r++) memcpy(m->out + (uint64_t)m->rows[r] * E, xe + (uint64_t)r * E, E * sizeof(float));
    return STRATA_OK;
}

/* A decode step's experts side by side: at most this many (the k of
 * today's models is 2 to 8); more go one by one. */
#define DECODE_TOGETHER 16

/* The selection (0..k) of a decode step's token that chose expert x. */
static uint64_t selection_of(const moe_state *m, uint64_t k, int32_t x)
{
    uint64_t s = 0;
    while (s + 1 < k && m->sel[s] != x) s++;
    return s;
}

/* A decode step's experts ids[0..r), in memory, as two jobs for them all
 * (their gate and up products share the token's row; each down product
 * reads its own GLU output) instead of two each: a token's experts are
 * small products, and every job costs a dispatch and a join. The same
 * kernels on the same rows as expert_step, so the same bits. False (and
 * nothing done) when their types do not share an activation format. */
static bool decode_experts(backend *b, uint64_t l, const be_weight *w, const int32_t *ids, uint32_t r,
                           strata_status *st, strata_error *err)
{
    engine *e = b->e;
    moe_state *m = &e->moe;
    uint64_t F = e->w.d.n_ff_exp, E = e->w.d.n_embd, k = e->w.d.n_expert_used;
    const be_weight *g = &w[LS_GATE_EXPS], *u = &w[LS_UP_EXPS], *dn = &w[LS_DOWN_EXPS];
    float *gate = buf(b, ACT_GATE), *up = buf(b, ACT_UP); /* [r][F] expert i's row at i F */
    matmul_args gu[2 * DECODE_TOGETHER], down[DECODE_TOGETHER];
    uint64_t act_row = kernel_act_bytes(dn->k->act_type, F);
    for (uint32_t i = 0; i < r; i++) {
        const void *const *data;
        if ((*st = store_expert_data(e->store, (uint32_t)l, ids[i], &data, err))) return true;
        gu[2 * i] = rows_args(b, g->k, g->t, data[0], F, buf(b, ACT_XN), gate + i * F, 1);
        gu[2 * i + 1] = rows_args(b, u->k, u->t, data[1], F, buf(b, ACT_XN), up + i * F, 1);
        down[i] = rows_args(b, dn->k, dn->t, data[2], E, gate + i * F, m->out + selection_of(m, k, ids[i]) * E, 1);
        down[i].act = (char *)e->act_scratch + i * act_row; /* [r] prepared rows */
    }
    if (!matmul_can_share(gu, (int)(2 * r))) return false;
    matmul_multi(e->pool, gu, (int)(2 * r));
    e->glu(gate, up, r * F);
    matmul_each(e->pool, down, (int)r);
    return true;
}

/* The experts of ids[0..n) whose weights are in memory, marked done. A
 * decode step whose experts are all in memory (resident, or cached) runs
 * them together (decode_experts; the buffers hold n_batch rows, which
 * n <= n_batch expert rows fit); otherwise one by one, each as soon as it
 * is checked, so that those read meanwhile join this pass. */
static strata_status ready_experts(backend *b, uint64_t l, const be_weight *w, const int32_t *ids, uint32_t n,
                                   uint32_t n_tok, strata_error *err)
{
    engine *e = b->e;
    bool together = n_tok == 1 && n <= DECODE_TOGETHER && n <= e->n_batch;
    for (uint32_t i = 0; i < n && together; i++) together = store_expert_ready(e->store, (uint32_t)l, ids[i]);
    strata_status st = STRATA_OK;
    if (together && decode_experts(b, l, w, ids, n, &st, err)) {
        for (uint32_t i = 0; i < n; i++) e->moe.done[ids[i]] = 1;
        return st;
    }
    for (uint32_t i = 0; i < n && !st; i++)
        if (store_expert_ready(e->store, (uint32_t)l, ids[i])) {
            e->moe.done[ids[i]] = 1;
            st = expert_step(b, l, w, ids[i], n_tok, err);
        }
    return st;
}

/* The distinct experts the batch chose, in id order, into m->ids. */
static uint32_t chosen_experts(moe_state *m, uint64_t n_expert, uint64_t n_sel)
{
    memset(m->done, 0, n_expert);
    for (uint64_t s = 0; s < n_sel; s++) m->done[m->sel[s]] = 1;
    uint32_t n = 0;
    for (uint64_t x = 0; x < n_expert; x++)
        if (m->done[x]) m->ids[n++] = (int32_t)x;
    memset(m->done, 0, n_expert);
    return n;
}

/* ---- prediction of the next layer's experts (decode steps) ---- */

/* Layer t's router applied to the residual as it is now (normed with t's
 * FFN norm): the experts layer t would pick if the layers before it
 * changed nothing, read ahead. Needs layer t's router and norm in memory
 * (a resident group). */
static void predict_by_router(backend *b, uint64_t t)
{
    engine *e = b->e;
    const model_dims *d = &e->w.d;
    const void *const *next = store_resident_data(e->store, (uint32_t)t);
    if (t >= d->n_layers || !next || !next[LS_ROUTER] || !next[LS_FFN_NORM]) return;
    moe_state *m = &e->moe;
    const gguf_tensor *norm = e->w.layer[t][LS_FFN_NORM], *router = e->w.layer[t][LS_ROUTER];
    dequant_row(norm->type, next[LS_FFN_NORM], e->vec, d->n_embd, NULL);
    op_rmsnorm(m->pred_x, buf(b, ACT_X), e->vec, d->n_embd, d->rms_eps);
    matmul_args a = rows_args(b, e->w.kern[t][LS_ROUTER], router, next[LS_ROUTER], d->n_expert, m->pred_x,
                              m->pred, 1);
    matmul(e->pool, &a);
    int32_t guess[64];
    uint64_t k = d->n_expert_used < 64 ? d->n_expert_used : 64;
    moe_top_k(m->pred, d->n_expert, k, guess, NULL, false, 1.0f);
    store_experts_prefetch(e->store, (uint32_t)t, guess, (uint32_t)k);
}


/* Layer t's experts read ahead by the predictor in use, when they come
 * from the store (a CPU layer's, or a GPU layer's streamed from RAM; a GPU
 * layer holding them in VRAM has no expert set in the store). */
static void prefetch_layer(backend *b, uint64_t t)
{
    engine *e = b->e;
    moe_state *m = &e->moe;
    uint64_t k = e->w.d.n_expert_used;
    if (!e->w.expert_sets[t].n) return;
    if (m->prefetch == ENGINE_MOE_PREFETCH_ROUTER) predict_by_router(b, t);
    else if (m->prefetch == ENGINE_MOE_PREFETCH_PREV && m->prev[t * k] >= 0)
        store_experts_prefetch(e->store, (uint32_t)t, m->prev + t * k, (uint32_t)k);
}

void backend_cpu_moe_prefetch_next(backend *b, uint64_t l, uint32_t n_tok)
{
    engine *e = b->e;
    moe_state *m = &e->moe;
    uint64_t k = e->w.d.n_expert_used;
    if (n_tok != 1) return;
    memcpy(m->prev + l * k, m->sel, k * sizeof *m->prev);
    if (l + 1 < e->w.d.n_layers) prefetch_layer(b, l + 1);
}

/* Layer 0 has no layer before it to predict it: its prediction comes from
 * the token's embedding, the residual entering it. Without it the disk
 * would idle from the last layer's reads of the previous token (through
 * the output projection, sampling and layer 0's attention) until layer 0's
 * router asks. */
void backend_cpu_moe_prefetch_first(backend *b) { prefetch_layer(b, 0); }

/* Runs the chosen experts in waves of what the cache can pin: in each, the
 * experts in memory first, then the others as their reads complete. The
 * next layer's prefetch is queued after this layer's first reads; the
 * shared expert (if any) runs in the first wave, while those reads are in
 * flight. */
static strata_status run_experts(backend *b, uint64_t l, const be_weight *w, uint32_t n_tok, bool shared,
                                 strata_error *err)
{
    engine *e = b->e;
    moe_state *m = &e->moe;
    uint32_t n = chosen_experts(m, e->w.d.n_expert, (uint64_t)n_tok * e->w.d.n_expert_used);
    strata_status st = STRATA_OK;
    for (uint32_t done = 0; done < n && !st;) {
        uint32_t taken = 0;
        if ((st = store_experts_pin(e->store, (uint32_t)l, m->ids + done, n - done, &taken, err))) break;
        if (!taken) { /* cannot happen with nothing pinned; never loop on it */
            st = err_set(err, STRATA_E_NOMEM, "the expert cache has no slot free for layer %" PRIu64, l);
            break;
        }
        if (!done) backend_cpu_moe_prefetch_next(b, l, n_tok);
        st = ready_experts(b, l, w, m->ids + done, taken, n_tok, err);
        if (!done && shared) shared_expert(b, w, n_tok);
        for (uint32_t i = done; i < done + taken && !st; i++)
            if (!m->done[m->ids[i]]) st = expert_step(b, l, w, m->ids[i], n_tok, err);
        store_experts_unpin(e->store, (uint32_t)l, m->ids + done, taken);
        done += taken;
    }
    memset(m->done, 0, e->w.d.n_expert);
    return st;
}

/* ACT_XN = sum over each token's selections, in expert-id order, of the
 * weight times the expert's output, plus the shared expert's output. */
static void weighted_sum(backend *b, uint32_t n_tok, bool shared)
{
    const moe_state *m = &b->e->moe;
    uint64_t k = b->e->w.d.n_expert_used, E = b->e->w.d.n_embd;
    float *out = buf(b, ACT_XN);
    for (uint32_t t = 0; t < n_tok; t++) {
        float *o = out + (uint64_t)t * E;
        memset(o, 0, E * sizeof(float));
        int32_t last = -1;
        for (uint64_t r = 0; r < k; r++) { /* the next larger expert id among the token's k */
            uint64_t s = UINT64_MAX;
            for (uint64_t i = 0; i < k; i++) {
                int32_t x = m->sel[t * k + i];
                if (x > last && (s == UINT64_MAX || x < m->sel[s])) s = t * k + i;
            }
            last = m->sel[s];
            const float *y = m->out + s * E;
            for (uint64_t j = 0; j < E; j++) o[j] += m->wt[s] * y[j];
        }
        for (uint64_t j = 0; shared && j < E; j++) o[j] += m->shared[(uint64_t)t * E + j];
    }
}

strata_status backend_cpu_moe(backend *b, uint64_t l, const be_weight *w, uint32_t n_tok, strata_error *err)
{
    engine *e = b->e;
    const model_dims *d = &e->w.d;
    moe_state *m = &e->moe;
    matmul_args r = rows_args(b, w[LS_ROUTER].k, w[LS_ROUTER].t, w[LS_ROUTER].host, d->n_expert, buf(b, ACT_XN),
                              buf(b, ACT_ROUTER), n_tok);
    matmul(e->pool, &r);
    moe_route(e, l, buf(b, ACT_ROUTER), n_tok);
    bool shared = m->shared && w[LS_GATE_SHEXP].t; /* this layer has one */
    strata_status st = run_experts(b, l, w, n_tok, shared, err);
    if (!st) weighted_sum(b, n_tok, shared);
    return st;
}
