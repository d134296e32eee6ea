/* Mixture of experts on the CPU back end. Gating as llama.cpp's (and the
 * fixtures' README): softmax of the router logits over all experts, the k
 * most probable, their probabilities renormalized to sum to 1. Tokens are
 * grouped by expert, so each expert's weights are read once per batch, and
 * an expert no token chose is not touched. Experts are visited in id order,
 * so the sum does not depend on where the weights are held. */
#include <math.h>
#include <string.h>

#include "engine/backend_cpu.h"
#include "engine/engine_internal.h"
#include "engine/matmul.h"

static float *buf(backend *b, act_buf a) { return b->e->act[a]; }

/* Token t's k experts (sel[t * k + i]) and weights (wt[t * k + i]). */
static void route(const float *logits, uint64_t n_expert, uint64_t k, int32_t *sel, float *wt)
{
    float max = logits[0];
    for (uint64_t x = 1; x < n_expert; x++) max = logits[x] > max ? logits[x] : max;
    double sum = 0;
    for (uint64_t x = 0; x < n_expert; x++) sum += exp((double)logits[x] - max);
    double picked = 0;
    for (uint64_t i = 0; i < k; i++) { /* selection of the i-th largest; ties go to the lower id */
        int32_t best = -1;
        for (uint64_t x = 0; x < n_expert; x++) {
            bool taken = false;
            for (uint64_t j = 0; j < i; j++) taken = taken || sel[j] == (int32_t)x;
            if (!taken && (best < 0 || logits[x] > logits[best])) best = (int32_t)x;
        }
        sel[i] = best;
        wt[i] = (float)(exp((double)logits[best] - max) / sum);
        picked += wt[i];
    }
    for (uint64_t i = 0; i < k; i++) wt[i] = (float)(wt[i] / picked);
}

/* One expert's slice of a stacked [n_expert][rows][n_in] tensor. */
static be_weight expert_slice(const be_weight *w, uint64_t expert, uint64_t rows)
{
    be_weight s = *w;
    s.host = (const uint8_t *)w->host + expert * rows * ggml_row_bytes(w->t->type, w->t->ne[0]);
    return s;
}

static matmul_args rows_args(backend *b, const be_weight *w, uint64_t n_out, act_buf src, act_buf dst, uint32_t n)
{
    return (matmul_args){.k = w->k, .w = w->host, .n_in = w->t->ne[0], .n_out = n_out, .x = buf(b, src),
                         .n_tok = n, .y = buf(b, dst), .act = b->e->act_scratch};
}

/* The expert's SwiGLU FFN over the n rows gathered in ACT_XE, output there. */
static void run_expert(backend *b, const be_weight *w, uint64_t x, uint32_t n)
{
    const model_dims *d = &b->e->w.d;
    be_weight gate = expert_slice(&w[LS_GATE_EXPS], x, d->n_ff_exp), up = expert_slice(&w[LS_UP_EXPS], x, d->n_ff_exp);
    be_weight down = expert_slice(&w[LS_DOWN_EXPS], x, d->n_embd);
    matmul_args gu[2] = {rows_args(b, &gate, d->n_ff_exp, ACT_XE, ACT_GATE, n),
                         rows_args(b, &up, d->n_ff_exp, ACT_XE, ACT_UP, n)};
    if (matmul_can_share(gu, 2)) matmul_multi(b->e->pool, gu, 2);
    else for (int i = 0; i < 2; i++) matmul(b->e->pool, &gu[i]);
    b->e->glu(buf(b, ACT_GATE), buf(b, ACT_UP), (uint64_t)n * d->n_ff_exp);
    matmul_args dn = rows_args(b, &down, d->n_embd, ACT_GATE, ACT_XE, n);
    matmul(b->e->pool, &dn);
}

void backend_cpu_moe(backend *b, const be_weight *w, uint32_t n_tok)
{
    engine *e = b->e;
    const model_dims *d = &e->w.d;
    uint64_t k = d->n_expert_used, E = d->n_embd;
    matmul_args r = rows_args(b, &w[LS_ROUTER], d->n_expert, ACT_XN, ACT_ROUTER, n_tok);
    matmul(e->pool, &r);
    for (uint32_t t = 0; t < n_tok; t++)
        route(buf(b, ACT_ROUTER) + t * d->n_expert, d->n_expert, k, e->moe_sel + t * k, e->moe_wt + t * k);
    float *xn = buf(b, ACT_XN), *xe = buf(b, ACT_XE), *out = buf(b, ACT_MOE);
    memset(out, 0, (uint64_t)n_tok * E * sizeof(float));
    for (uint64_t x = 0; x < d->n_expert; x++) {
        uint32_t n = 0; /* tokens routed to expert x: e->moe_tok[i], weight e->moe_tw[i] */
        for (uint32_t t = 0; t < n_tok; t++)
            for (uint64_t i = 0; i < k; i++)
                if (e->moe_sel[t * k + i] == (int32_t)x) {
                    e->moe_tok[n] = t;
                    e->moe_tw[n] = e->moe_wt[t * k + i];
                    memcpy(xe + (uint64_t)n++ * E, xn + (uint64_t)t * E, E * sizeof(float));
                }
        if (!n) continue;
        run_expert(b, w, x, n);
        for (uint32_t i = 0; i < n; i++) {
            float *o = out + (uint64_t)e->moe_tok[i] * E, *y = xe + (uint64_t)i * E;
            for (uint64_t j = 0; j < E; j++) o[j] += e->moe_tw[i] * y[j];
        }
    }
    memcpy(xn, out, (uint64_t)n_tok * E * sizeof(float));
}
