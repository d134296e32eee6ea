/* The expert cache of the store: fixed-size slots, each holding one expert
 * unit (the gate, up and down slices of one expert of one layer), filled
 * by the store's I/O threads when a step pins a unit that is not there,
 * evicted by a policy (LRU, or LFU with aging) among units nobody pins.
 * Internal to src/store; the API is store.h's store_experts_*. */
#ifndef STRATA_STORE_EXPERT_CACHE_H
#define STRATA_STORE_EXPERT_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "store/io.h"
#include "store/store.h"

typedef struct expert_cache expert_cache;

/* Largest unit slot over the sets (0 without experts) and the units in all. */
strata_status expert_cache_geometry(uint32_t n_sets, const store_expert_set *sets, uint64_t *slot_bytes,
                                    uint32_t *units, strata_error *err);

/* n_slots >= 1 slots of slot_bytes from one allocation (mem, accounted by
 * the caller); when n_slots covers every unit, all are read now. */
strata_status expert_cache_open(io_engine *io, uint32_t n_sets, const store_expert_set *sets, uint8_t *mem,
                                uint64_t slot_bytes, uint32_t n_slots, store_expert_policy policy,
                                expert_cache **out, strata_error *err);
/* Resizes the cache to n slots (1 <= n <= the slots at open), for memory
 * pressure: units in the slots dropped are evicted (their reads waited
 * for: the caller then releases that memory), slots added start empty and
 * fill on demand. Only while no unit is pinned (false, nothing changed,
 * otherwise). The units cached decide speed, never the results. */
bool expert_cache_resize(expert_cache *c, uint32_t n);
/* Waits for reads in flight (none may land in freed memory), frees. */
void expert_cache_close(expert_cache *c);

strata_status expert_cache_pin(expert_cache *c, uint32_t set, const int32_t *ids, uint32_t n, uint32_t *taken,
                               strata_error *err);
bool expert_cache_ready(expert_cache *c, uint32_t set, int32_t id);
strata_status expert_cache_data(expert_cache *c, uint32_t set, int32_t id, const void *const **data, double *wait_s,
                                strata_error *err);
void expert_cache_unpin(expert_cache *c, uint32_t set, const int32_t *ids, uint32_t n);
void expert_cache_prefetch(expert_cache *c, uint32_t set, const int32_t *ids, uint32_t n);

store_expert_stats expert_cache_set_stats(const expert_cache *c, uint32_t set);
store_expert_stats expert_cache_totals(const expert_cache *c);

#endif
