#include "cli/args.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

bool arg_u64(const char *cmd, const char *flag, const char *value, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(value, &end, 10);
    if (errno || end == value || *end || value[0] == '-' || v < min || v > max) {
        fprintf(stderr, "strata %s: %s '%s': expected an integer from %" PRIu64 " to %" PRIu64 "\n", cmd, flag, value,
                min, max);
        return false;
    }
    *out = v;
    return true;
}

bool arg_float(const char *cmd, const char *flag, const char *value, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    if (errno || end == value || *end || !isfinite(v) || v < min || v > max) {
        fprintf(stderr, "strata %s: %s '%s': expected a number from %g to %g\n", cmd, flag, value, min, max);
        return false;
    }
    *out = v;
    return true;
}
