/* The placement of an engine opened without one: the planner's rule
 * (plan/placement.h) applied to the budget the account leaves for the
 * weights, so the store only executes. A caller that planned (the API's
 * `run`) gives the residency per group; the expert cache's size is then
 * what the budget leaves next to it, by the same rule. */
#include <stdlib.h>

#include "engine/engine_internal.h"
#include "plan/placement.h"
#include "store/store.h"
#include "util/account.h"
#include "util/error.h"
#include "util/fmt.h"

/* The bytes the weights may take after the row buffer the store keeps
 * (0: no budget; 1: nothing fits, as the rule reads 0 as unlimited). */
static uint64_t weight_budget(const engine *e)
{
    uint64_t room = acct_room(e->acct, ACCT_RAM), row = store_row_buffer_bytes(e->file);
    if (room == UINT64_MAX) return 0;
    return room > row ? room - row : 1;
}

/* The dense groups under the weight budget W less the least expert cache,
 * then the expert cache in what is left. */
static strata_status place(engine *e, store_config *sc, const uint64_t *bytes, placement *pl, uint64_t *min_weights,
                           strata_error *err)
{
    uint32_t n = (uint32_t)e->w.d.n_layers + 1, units;
    uint64_t unit_bytes, W = weight_budget(e);
    int depth = sc->prefetch_depth > 0 ? sc->prefetch_depth : STORE_DEFAULT_DEPTH;
    strata_status st = store_expert_geometry(sc->n_expert_sets, sc->expert_sets, &unit_bytes, &units, err);
    if (st) return st;
    uint32_t least = sc->expert_slots ? sc->expert_slots : STORE_EXPERT_MIN_SLOTS;
    uint64_t min_experts = (uint64_t)(least < units ? least : units) * unit_bytes;
    uint64_t dense_budget = !W ? 0 : W > min_experts ? W - min_experts : 1;
    uint64_t used;
    if (sc->resident && !sc->stream_all) {
        store_ring r = store_ring_for(n, bytes, sc->resident, false, depth);
        used = r.resident_bytes + (uint64_t)r.n_slots * r.slot_bytes;
    } else {
        if (!placement_choose(n, bytes, dense_budget, depth, sc->stream_all, pl)) {
            char a[32], b[32];
            uint64_t row = store_row_buffer_bytes(e->file);
            *min_weights = pl->min_bytes + min_experts + row;
            return err_set(err, STRATA_E_NOMEM, "weights need at least %s with prefetch depth %d; %s is available "
                           "for them", fmt_bytes(*min_weights, a, 32), depth, fmt_bytes(W ? W + row : 0, b, 32));
        }
        sc->resident = pl->resident;
        used = pl->resident_bytes + (uint64_t)pl->n_slots * pl->slot_bytes;
    }
    if (!sc->expert_slots && units) {
        uint32_t min_units = units < STORE_EXPERT_MIN_SLOTS ? units : STORE_EXPERT_MIN_SLOTS;
        sc->expert_slots = sc->stream_all && !W ? min_units
                                               : placement_expert_slots(W, used, unit_bytes, units, min_units);
    }
    return STRATA_OK;
}

strata_status engine_place_weights(engine *e, store_config *sc, bool **resident, uint64_t *min_weights,
                                   strata_error *err)
{
    uint32_t n = (uint32_t)e->w.d.n_layers + 1;
    uint64_t *bytes = calloc(n, sizeof *bytes);
    placement pl = {0};
    *resident = NULL;
    if (!bytes) return err_set(err, STRATA_E_NOMEM, "out of memory");
    strata_status st = STRATA_OK;
    for (uint32_t g = 0; g < n && !st; g++) st = store_group_bytes(e->file, &e->w.groups[g], &bytes[g], err);
    if (!st) st = place(e, sc, bytes, &pl, min_weights, err);
    if (!st && sc->resident == pl.resident) *resident = pl.resident; /* the caller frees it after store_open */
    else free(pl.resident);
    free(bytes);
    return st;
}
