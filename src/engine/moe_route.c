/* Gating as llama.cpp's (and the fixtures' README): softmax of the router
 * logits over all experts, the k most probable, their probabilities
 * renormalized to sum to 1 (unless the family or the file's
 * expert_weights_norm says not), then multiplied by the file's
 * expert_weights_scale if it states one. */
#include "engine/moe_route.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>

#include "engine/engine_internal.h"

void moe_top_k(const float *logits, uint64_t n, uint64_t k, int32_t *sel, float *wt, bool renorm, float scale)
{
    for (uint64_t i = 0; i < k; i++) {
        int32_t best = -1;
        for (uint64_t x = 0; x < n; x++) {
            bool taken = false;
            for (uint64_t j = 0; j < i; j++) taken = taken || sel[j] == (int32_t)x;
            if (!taken && (best < 0 || logits[x] > logits[best])) best = (int32_t)x;
        }
        sel[i] = best;
    }
    if (!wt) return;
    float max = logits[sel[0]];
    double sum = 0, picked = 0;
    for (uint64_t x = 0; x < n; x++) sum += exp((double)logits[x] - max);
    for (uint64_t i = 0; i < k; i++) picked += wt[i] = (float)(exp((double)logits[sel[i]] - max) / sum);
    for (uint64_t i = 0; renorm && i < k; i++) wt[i] = (float)(wt[i] / picked);
    for (uint64_t i = 0; scale != 1.0f && i < k; i++) wt[i] *= scale;
}

static void trace(const engine *e, uint64_t l, uint32_t n_tok)
{
    uint64_t k = e->w.d.n_expert_used;
    for (uint32_t t = 0; t < n_tok; t++) {
        fprintf(e->moe.trace, "%" PRIu64, l);
        for (uint64_t i = 0; i < k; i++) fprintf(e->moe.trace, " %d", e->moe.sel[t * k + i]);
        fputc('\n', e->moe.trace);
    }
}

void moe_route(engine *e, uint64_t l, const float *logits, uint32_t n_tok)
{
    const model_dims *d = &e->w.d;
    moe_state *m = &e->moe;
    uint64_t k = d->n_expert_used;
    for (uint32_t t = 0; t < n_tok; t++)
        moe_top_k(logits + t * d->n_expert, d->n_expert, k, m->sel + t * k, m->wt + t * k, d->expert_norm,
                  d->expert_scale);
    for (uint64_t i = 0; i < n_tok * k; i++) m->picks[l * d->n_expert + (uint64_t)m->sel[i]]++;
    if (m->trace) trace(e, l, n_tok);
}
