/* Calibrating the planner on the engine itself: a small resident Q4_K
 * model is written to a temporary file and decoded for a few tokens; the
 * weight bytes read per token over the time per token is the rate the
 * engine really reaches for resident weights (kernels, synchronization,
 * attention and the rest of a layer included). */
#ifndef STRATA_PLAN_CALIBRATE_H
#define STRATA_PLAN_CALIBRATE_H

#include "strata.h"

/* Bytes/s; 0 with err set when it could not be measured. dir: where to put
 * the temporary model (NULL: $TMPDIR or /tmp). */
double plan_calibrate_engine(int threads, const char *dir, strata_error *err);

#endif
