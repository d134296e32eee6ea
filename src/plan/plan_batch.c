/* Aggregate decode throughput of N sequences and the largest N a budget
 * holds (plan_batch.h). A step of N decoding sequences costs what a prompt
 * step of N tokens costs (plan_compute's prefill terms: weights read once,
 * compute N times, the experts N tokens are routed to), plus the KV reads
 * of N sequences, which the N-fold KV bytes per token put in its RAM term. */
#include <string.h>

#include "plan/plan_batch.h"

plan_model plan_batch_model(const plan_model *m, uint32_t n_seq)
{
    plan_model b = *m;
    b.kv_bytes_per_token *= n_seq;
    b.kv_bytes_per_token_q8 *= n_seq;
    b.kv_bytes_per_token_q4 *= n_seq;
    return b;
}

uint32_t plan_batch_ctx(const plan_model *m, const plan_request *req)
{
    if (req->n_ctx) return req->n_ctx;
    return m->context_length && m->context_length < PLAN_BATCH_DEFAULT_CTX ? m->context_length
                                                                            : PLAN_BATCH_DEFAULT_CTX;
}

void plan_batch_compute(const plan_model *m, const plan_machine *hw, const plan_request *req, uint32_t n_seq,
                        plan_batch *out)
{
    memset(out, 0, sizeof *out);
    out->n_seq = n_seq ? n_seq : 1;
    out->n_ctx = plan_batch_ctx(m, req);
    plan_model bm = plan_batch_model(m, out->n_seq);
    plan_request q = *req;
    q.n_ctx = out->n_ctx;
    q.n_batch = out->n_seq; /* the step's tokens: one per sequence */
    plan_compute(&bm, hw, &q, &out->r);
    const plan *p = &out->r.chosen;
    out->feasible = p->feasible;
    if (!p->feasible || p->prefill_tps <= 0) return;
    out->decode_tps = p->prefill_tps;
    out->step_s = out->n_seq / p->prefill_tps;
    out->seq_tps = 1 / out->step_s;
    out->bottleneck = p->step_bottleneck;
}

/* Whether N sequences fit: the plan's memory grows with N (KV), so the
 * answer is monotone and a binary search finds the largest N. */
static bool fits(const plan_model *m, const plan_machine *hw, const plan_request *req, uint32_t n)
{
    plan_batch b;
    plan_batch_compute(m, hw, req, n, &b);
    bool ok = b.feasible;
    plan_batch_free(&b);
    return ok;
}

uint32_t plan_batch_recommend(const plan_model *m, const plan_machine *hw, const plan_request *req,
                              uint32_t max_seq, plan_batch *out)
{
    if (max_seq == 0) max_seq = 1;
    uint32_t lo = 0, hi = max_seq; /* lo fits (0: nothing known), answer in [lo, hi] */
    if (fits(m, hw, req, hi)) lo = hi;
    else hi--;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo + 1) / 2;
        if (fits(m, hw, req, mid)) lo = mid;
        else hi = mid - 1;
    }
    plan_batch_compute(m, hw, req, lo ? lo : 1, out);
    return lo;
}

void plan_batch_free(plan_batch *b)
{
    plan_result_free(&b->r);
    memset(b, 0, sizeof *b);
}
