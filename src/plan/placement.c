/* The placement rule (placement.h). */
#include <stdlib.h>
#include <string.h>

#include "plan/placement.h"
#include "store/store.h"

/* The best placement whose largest streamed group is at most `cap` bytes:
 * groups above cap must be resident; then more groups are made resident,
 * in execution order, while they fit. Returns the resident bytes, or -1
 * when even the forced part does not fit. */
static int64_t try_cap(uint32_t n, const uint64_t *bytes, uint64_t budget, int depth, uint64_t cap, bool *res,
                       uint64_t *need)
{
    uint64_t resident = 0;
    uint32_t streamed = 0;
    for (uint32_t g = 0; g < n; g++) {
        res[g] = bytes[g] > cap;
        if (res[g]) resident += bytes[g];
        else streamed++;
    }
    uint64_t slots = store_ring_slots(streamed, depth);
    *need = resident + slots * cap;
    if (streamed == 0 || *need > budget) return -1;
    for (uint32_t g = 0; g < n && streamed > 1; g++)
        if (!res[g] && resident + bytes[g] + slots * cap <= budget) {
            res[g] = true;
            resident += bytes[g];
            streamed--;
        }
    return (int64_t)resident;
}

static void all_resident(uint32_t n, const uint64_t *bytes, placement *p)
{
    for (uint32_t g = 0; g < n; g++) {
        p->resident[g] = true;
        p->resident_bytes += bytes[g];
    }
    p->min_bytes = p->resident_bytes;
}

/* Every group streamed through a ring sized for the largest (tests). */
static bool stream_everything(uint32_t n, uint64_t largest, uint64_t budget, int depth, placement *p)
{
    p->slot_bytes = largest;
    p->n_slots = store_ring_slots(n, depth);
    p->min_bytes = p->n_slots * largest;
    return budget == 0 || p->min_bytes <= budget;
}

bool placement_choose(uint32_t n, const uint64_t *bytes, uint64_t budget, int depth, bool stream_all, placement *p)
{
    memset(p, 0, sizeof *p);
    p->resident = calloc(n ? n : 1, sizeof *p->resident);
    bool *tmp = calloc(n ? n : 1, sizeof *tmp);
    if (!p->resident || !tmp) {
        free(tmp);
        return false;
    }
    uint64_t total = 0, largest = 0;
    for (uint32_t g = 0; g < n; g++) {
        total += bytes[g];
        if (bytes[g] > largest) largest = bytes[g];
    }
    bool ok = true;
    if (stream_all) {
        ok = stream_everything(n, largest, budget, depth, p);
    } else if (budget == 0 || total <= budget) {
        all_resident(n, bytes, p);
    } else {
        int64_t best = -1;
        p->min_bytes = UINT64_MAX;
        for (uint32_t c = 0; c < n; c++) {
            uint64_t need;
            int64_t r = try_cap(n, bytes, budget, depth, bytes[c], tmp, &need);
            if (need < p->min_bytes) p->min_bytes = need;
            if (r > best || (r == best && r >= 0 && bytes[c] < p->slot_bytes)) {
                best = r;
                memcpy(p->resident, tmp, n * sizeof *tmp);
                p->slot_bytes = bytes[c];
            }
        }
        ok = best >= 0;
        uint32_t streamed = 0;
        for (uint32_t g = 0; g < n && ok; g++) {
            if (p->resident[g]) p->resident_bytes += bytes[g];
            else streamed++;
        }
        p->n_slots = store_ring_slots(streamed, depth);
    }
    free(tmp);
    return ok;
}

uint32_t placement_expert_slots(uint64_t weight_budget, uint64_t used, uint64_t unit_bytes, uint32_t units,
                                uint32_t min_units)
{
    if (!weight_budget) return units;
    uint64_t fit = weight_budget > used && unit_bytes ? (weight_budget - used) / unit_bytes : 0;
    return fit < min_units ? min_units : fit > units ? units : (uint32_t)fit;
}
