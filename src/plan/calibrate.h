/* Calibrating the planner on the engine itself: two small resident Q4_K
 * models (1024- and 2048-wide layers) are written to a temporary file in
 * turn and decoded for a few tokens; their times per token give the rate
 * the engine really reaches for resident weights and the per-layer cost
 * that does not grow with the layer (kernels, synchronization, attention
 * and the rest of a layer included). */
#ifndef STRATA_PLAN_CALIBRATE_H
#define STRATA_PLAN_CALIBRATE_H

#include "strata.h"

/* Bytes/s; 0 with err set when it could not be measured. *layer_seconds:
 * the per-layer cost (0 when the two shapes do not separate it). dir: where
 * to put the temporary model (NULL: $TMPDIR or /tmp). */
double plan_calibrate_engine(int threads, const char *dir, double *layer_seconds, strata_error *err);

#endif
