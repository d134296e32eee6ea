/* The expert cache's expected hit rate (mixture of experts), from each
 * unit's chance of being routed to by one token: measured per layer
 * (plan_expert_set.chances, routing.c) or, when nothing was measured,
 * n_used / n_expert for every unit (uniform routing). */
#ifndef STRATA_PLAN_PLAN_EXPERTS_H
#define STRATA_PLAN_PLAN_EXPERTS_H

#include "plan/plan.h"

/* What the cache keeps, for one plan (its slots and the CPU's sets). */
typedef struct expert_estimate {
    uint32_t tokens;    /* LRU: a unit stays cached while its layer routed a token to it within this many
                           tokens (0: the cache holds less than one token uses) */
    double history;     /* LFU: tokens of routing its counts hold (their aging) */
    uint32_t keep_count; /* a unit counted more often than this in that history is kept in the stable
                            slots... */
    double keep_share;  /* ...and one counted exactly this often with this chance */
} expert_estimate;

/* Whether layer g's experts live on its GPU (a layer on a GPU takes its
 * experts, but for the first n_cpu_moe layers of llama.cpp's split). */
bool plan_experts_on_gpu(const plan *p, uint32_t g);

/* The estimate for plan p (its expert_slots and expert_units set). */
expert_estimate plan_experts_estimate(const plan_model *m, const plan *p);

/* The hit rate of a set's requests: 1 when the cache holds every unit,
 * else the stated one (--moe-hit-rate), else LRU's (req->moe_lru) or, for
 * LFU (the store's default), the better of its stable set's and LRU's
 * (its transient slots act as a small LRU). */
double plan_experts_hit_rate(const plan_expert_set *e, const plan *p, const plan_request *req,
                             const expert_estimate *x);

/* The distinct units of a set a batch of B tokens is routed to (at least
 * the n_used of one token). */
double plan_experts_in_batch(const plan_expert_set *e, double B);

/* Of those, the ones not cached (each read once per batch: at least one
 * token's misses): the units a batch adds beyond one token's are the less
 * likely ones, which a cache holds less often than the ones a token
 * mostly asks for. */
double plan_experts_batch_misses(const plan_expert_set *e, const plan *p, const plan_request *req,
                                 const expert_estimate *x, double B);

#endif
