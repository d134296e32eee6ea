/* Many sequences decoding together (`strata batch`, `serve -np N`): one
 * forward pass holds the next token of each of N sequences, so every weight
 * read (from RAM, disk or over the link) serves N tokens, while compute and
 * the KV cache reads grow with N. The model reserves KV room for N contexts
 * next to the weights, so the placement is planned with N sequences' KV:
 *   step time      = max(N x compute, weights + N sequences' KV from RAM,
 *                        disk, link, VRAM)          (docs/cost-model.md)
 *   aggregate tok/s = N / step time
 * A pure function of the planner's inputs, like plan_compute. */
#ifndef STRATA_PLAN_PLAN_BATCH_H
#define STRATA_PLAN_PLAN_BATCH_H

#include <stdint.h>

#include "plan/plan.h"

#define PLAN_BATCH_MAX 256u         /* sequences at most: tokens one forward pass holds (the engine's batch) */
#define PLAN_BATCH_DEFAULT_CTX 512u /* each sequence's context when none is asked (or the model's, if smaller) */

typedef struct plan_batch {
    uint32_t n_seq, n_ctx;  /* sequences, and each one's context (tokens) */
    plan_result r;          /* placement with the KV of n_seq contexts (r.chosen.ram.kv + gpu kv) */
    bool feasible;
    double step_s;          /* one forward pass over n_seq tokens */
    double decode_tps;      /* aggregate: n_seq / step_s */
    double seq_tps;         /* per sequence: 1 / step_s */
    const char *bottleneck; /* the largest term of a step */
} plan_batch;

/* The model as seen by N sequences: m with the KV bytes per token (every
 * type) times n_seq. A shallow copy: it shares m's groups and experts. */
plan_model plan_batch_model(const plan_model *m, uint32_t n_seq);

/* The context each sequence gets: req->n_ctx, else PLAN_BATCH_DEFAULT_CTX
 * or the model's context when smaller. */
uint32_t plan_batch_ctx(const plan_model *m, const plan_request *req);

/* Plans N = n_seq sequences; free with plan_batch_free. */
void plan_batch_compute(const plan_model *m, const plan_machine *hw, const plan_request *req, uint32_t n_seq,
                        plan_batch *out);
/* The largest N in [1, max_seq] whose KV caches fit next to the weights
 * (the placement shrinks as N grows, down to streaming every layer), with
 * its prediction in *out; 0 (and *out the infeasible plan of one sequence)
 * when not even one fits. */
uint32_t plan_batch_recommend(const plan_model *m, const plan_machine *hw, const plan_request *req,
                              uint32_t max_seq, plan_batch *out);
void plan_batch_free(plan_batch *b);

#endif
