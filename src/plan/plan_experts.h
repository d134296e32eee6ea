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
    /* Each unit group's chance of being cached, worked out once per plan
     * (the Poisson walk that finds LFU's count threshold) and read by the hit-rate
     * functions below; NULL when the cache holds every unit, or when
     * memory ran out (every request then counts as a miss). Set g's
     * groups (chances_of order) are first[g] .. first[g + 1] - 1; a set
     * the CPU does not compute has none. */
    uint32_t n_sets;    /* the model's expert sets */
    uint32_t *first;    /* [n_sets + 1] */
    double *lru_kept;   /* [first[n_sets]] LRU: 1 - (1 - chance)^tokens */
    double *lfu_kept;   /* [first[n_sets]] LFU's stable slots: P(count > c) + f P(count = c), at the count c
                           and share f where the expected units kept fill them */
    bool *lfu_loses;    /* [n_sets] LFU's transient slots (an LRU) hold more of the set's requests than its
                           stable ones: its hits are LRU's */
} expert_estimate;

/* Whether layer g's experts live on its GPU (a layer on a GPU takes its
 * experts, but for the first n_cpu_moe layers of llama.cpp's split). */
bool plan_experts_on_gpu(const plan *p, uint32_t g);

/* The estimate for plan p (its expert_slots and expert_units set); free
 * it with plan_experts_estimate_free. */
expert_estimate plan_experts_estimate(const plan_model *m, const plan *p);
void plan_experts_estimate_free(expert_estimate *x);

/* The hit rate of the requests of set g (one the CPU computes): 1 when the cache holds every unit,
 * else the stated one (--moe-hit-rate), else LRU's (req->moe_lru) or, for
 * LFU (the store's default), the better of its stable set's and LRU's
 * (its transient slots act as a small LRU). */
double plan_experts_hit_rate(const plan_model *m, uint32_t g, const plan *p, const plan_request *req,
                             const expert_estimate *x);

/* The distinct units of a set a batch of B tokens is routed to (at least
 * the n_used of one token). */
double plan_experts_in_batch(const plan_expert_set *e, double B);

/* Of those, the ones not cached (each read once per batch: at least one
 * token's misses): the units a batch adds beyond one token's are the less
 * likely ones, which a cache holds less often than the ones a token
 * mostly asks for. */
double plan_experts_batch_misses(const plan_model *m, uint32_t g, const plan *p, const plan_request *req,
                                 const expert_estimate *x, double B);

#endif
