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

bool arg_size(const char *cmd, const char *flag, const char *value, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    double mult = 1;
    switch (*end) {
    case 'k': case 'K': mult = 1024.0; end++; break;
    case 'm': case 'M': mult = 1024.0 * 1024; end++; break;
    case 'g': case 'G': mult = 1024.0 * 1024 * 1024; end++; break;
    case 't': case 'T': mult = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (mult > 1 && (*end == 'i' || *end == 'I')) end++;
    if (mult > 1 && (*end == 'b' || *end == 'B')) end++;
    if (errno || end == value || *end || !isfinite(v) || v <= 0 || v * mult >= 1.8e19) {
        fprintf(stderr, "strata %s: %s '%s': expected a size such as 1.5G, 512M or 2048K (binary units)\n", cmd, flag,
                value);
        return false;
    }
    *out = (uint64_t)(v * mult);
    return true;
}
