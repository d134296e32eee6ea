/* The engine calibrations a profile keeps, one per thread count (the
 * figures come from src/plan/calibrate.c; the profile only stores them). */
#include <string.h>

#include "hw/hw.h"

const char *hw_engine_type_name(hw_engine_type t)
{
    static const char *const names[HW_ENGINE_TYPES] = {"q4_k", "q6_k", "q8_0", "f16", "f32"};
    return t < HW_ENGINE_TYPES ? names[t] : "?";
}

const hw_engine_calib *hw_engine_calib_at(const hw_measured *m, int threads)
{
    for (int i = 0; i < m->n_engine && i < HW_MAX_ENGINE_CALIB; i++)
        if (m->engine[i].threads == threads) return &m->engine[i];
    return NULL;
}

void hw_engine_calib_put(hw_measured *m, const hw_engine_calib *c)
{
    int i = 0;
    while (i < m->n_engine && m->engine[i].threads != c->threads) i++;
    if (i == HW_MAX_ENGINE_CALIB) { /* full: the oldest (first) goes */
        memmove(&m->engine[0], &m->engine[1], (HW_MAX_ENGINE_CALIB - 1) * sizeof m->engine[0]);
        i = HW_MAX_ENGINE_CALIB - 1;
    }
    m->engine[i] = *c;
    if (i == m->n_engine) m->n_engine++;
}
