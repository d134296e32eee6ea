/* Which groups stay resident and how big the streaming ring is, under a
 * byte budget. Interim rule until the planner (issue 6) decides: every
 * resident byte saves one streamed byte per pass, so keep as many bytes
 * resident as fit next to a ring of (depth + 1) slots sized for the largest
 * streamed group, trying each possible slot size. */
#ifndef STRATA_STORE_PLACEMENT_H
#define STRATA_STORE_PLACEMENT_H

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

/* The placement the planner chose (resident[g] per group), checked against
 * the budget. */
bool placement_given(uint32_t n_groups, const uint64_t *group_bytes, const bool *resident, uint64_t budget,
                     int depth, placement *p);

/* Of an LFU expert cache of n_slots, the transient slots (the last ones):
 * an eighth, at least one, none below 4 slots; the others keep the most
 * frequently used experts (expert_cache.c; the planner's hit estimate). */
uint32_t placement_lfu_transient(uint32_t n_slots);

#endif
