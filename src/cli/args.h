/* Validated parsing of command-line values: on a bad value each prints one
 * line "strata CMD: FLAG 'VALUE': problem" to stderr and returns false. */
#ifndef STRATA_CLI_ARGS_H
#define STRATA_CLI_ARGS_H

#include <stdbool.h>
#include <stdint.h>

bool arg_u64(const char *cmd, const char *flag, const char *value, uint64_t min, uint64_t max, uint64_t *out);
/* "1.5G", "512M", "2048K", "4GiB", "1000" (bytes); units are powers of 1024. */
bool arg_size(const char *cmd, const char *flag, const char *value, uint64_t *out);
bool arg_float(const char *cmd, const char *flag, const char *value, double min, double max, double *out);

#endif
