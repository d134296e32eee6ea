/* Calibrating the planner on the engine itself: small resident models
 * (three Q4_K shapes, and one model per other priced type) are written to
 * temporary files and decoded for a few tokens, alternating; their times
 * per token give the rate the engine really reaches per weight type, the
 * per-group cost that does not grow with the layer (kernels,
 * synchronization, attention and the rest of a layer included) and the
 * per-token cost, at one thread count. */
#ifndef STRATA_PLAN_CALIBRATE_H
#define STRATA_PLAN_CALIBRATE_H

#include "hw/hw.h"
#include "strata.h"

/* Fills *out for `threads` threads. dir: where to put the temporary models
 * (NULL: $TMPDIR or /tmp). */
strata_status plan_calibrate_engine(int threads, const char *dir, hw_engine_calib *out, strata_error *err);

#endif
