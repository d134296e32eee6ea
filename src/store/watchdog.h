/* The watchdog's decision, a pure function of the samples (watchdog.c
 * runs it every period; tests feed it sequences). */
#ifndef STRATA_STORE_WATCHDOG_H
#define STRATA_STORE_WATCHDOG_H

#include <stdint.h>

#include "store/store.h"

/* PSI: a period where some task stalled this much is pressure. */
#define WD_STALL 0.10

typedef struct wd_policy {
    uint64_t low, high;  /* headroom water marks (bytes) */
    double grow_after_s; /* calm needed before growing */
} wd_policy;

typedef struct wd_state {
    double calm_since;   /* start of the calm stretch; < 0: not calm */
    double last_shrink;  /* < 0: never */
    uint64_t prev_headroom; /* the last sample's (0: none yet) */
} wd_state;

typedef enum wd_action { WD_NONE = 0, WD_SHRINK, WD_GROW } wd_action;

/* The water marks for a process whose memory is out of `limit` (cgroup
 * limit or MemTotal; UINT64_MAX: unknown), or the config's own. */
wd_policy wd_policy_for(const store_watchdog_config *c, uint64_t limit);
void wd_state_init(wd_state *st);
/* Shrink when headroom < low, or when tasks stall (PSI) and headroom <
 * high: *bytes brings headroom back to (low + high) / 2 (at least low / 2
 * on a stall). Grow when headroom > high through grow_after_s with no
 * stall, no limit event and no shrink: *bytes = headroom - high. */
wd_action wd_decide(const wd_policy *p, wd_state *st, const store_pressure *x, double now, uint64_t *bytes);

#endif
