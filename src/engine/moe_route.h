/* Expert selection of a mixture-of-experts layer, from its router logits:
 * one function for every back end (the CPU computes the logits on the
 * host; a GPU reads them back), so both pick the same experts with the
 * same weights. */
#ifndef STRATA_ENGINE_MOE_ROUTE_H
#define STRATA_ENGINE_MOE_ROUTE_H

#include <stdbool.h>
#include <stdint.h>

struct engine;

/* The k largest of n logits into sel (ties to the lower id), most
 * probable first; wt (if not NULL): their softmax probabilities over all
 * n, renormalized over the k when `renorm`, times `scale`. */
void moe_top_k(const float *logits, uint64_t n, uint64_t k, int32_t *sel, float *wt, bool renorm, float scale);

/* Each of n_tok tokens' experts and weights into e->moe.sel / .wt
 * ([n_tok][n_expert_used]) from logits ([n_tok][n_expert]) by the
 * model's gating (expert_norm, expert_scale), and layer l's line per token into the trace
 * (STRATA_MOE_TRACE) when one is open. */
void moe_route(struct engine *e, uint64_t l, const float *logits, uint32_t n_tok);

#endif
