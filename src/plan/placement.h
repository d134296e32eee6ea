/* The placement rule: which groups of weights stay resident, how big the
 * streaming ring is, and how many units the expert cache holds, under a
 * byte budget. Every resident byte saves one streamed byte per pass, so
 * keep as many bytes resident as fit next to a ring of (depth + 1) slots
 * sized for the largest streamed group, trying each possible slot size;
 * the expert cache takes what the dense placement leaves.
 *
 * The planner (plan.c) places with it, and so does an engine opened with a
 * budget but no plan (engine/place.c); the store only executes the result
 * (store_config.resident and .expert_slots). Pure: no I/O. */
#ifndef STRATA_PLAN_PLACEMENT_H
#define STRATA_PLAN_PLACEMENT_H

#include <stdbool.h>
#include <stdint.h>

typedef struct placement {
    bool *resident;       /* per group */
    uint64_t resident_bytes;
    uint64_t slot_bytes;  /* one slot */
    uint32_t n_slots;     /* 0 when everything is resident */
    uint64_t min_bytes;   /* the smallest budget that works at this depth */
} placement;

/* budget 0 = unlimited. Returns false (with p->min_bytes set) when no
 * placement fits the budget. p->resident is malloc'd (free it). */
bool placement_choose(uint32_t n_groups, const uint64_t *group_bytes, uint64_t budget, int depth, bool stream_all,
                      placement *p);

/* The units the expert cache holds: what the weight budget leaves after
 * `used` bytes of dense placement, in slots of unit_bytes, at least
 * min_units and at most units (every unit without a budget). */
uint32_t placement_expert_slots(uint64_t weight_budget, uint64_t used, uint64_t unit_bytes, uint32_t units,
                                uint32_t min_units);

#endif
