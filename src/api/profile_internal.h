/* The public machine profile's insides, for the files of src/api that
 * implement it. */
#ifndef STRATA_API_PROFILE_INTERNAL_H
#define STRATA_API_PROFILE_INTERNAL_H

#include "hw/hw.h"
#include "strata.h"

struct strata_profile {
    hw_profile hw;
    hw_cache_state saved; /* the saved profile's state when probed (FRESH once measured) */
    bool measured_now;    /* strata_profile_measure ran */
    char file[1024];      /* the saved profile ("": none: a captured tree) */
};

#endif
