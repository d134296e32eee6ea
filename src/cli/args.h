/* Validated parsing of command-line values: on a bad value each prints one
 * line "strata CMD: FLAG 'VALUE': problem" to stderr and returns false.
 * Numbers are decimal only: no sign, hex, exponent, inf or nan. */
#ifndef STRATA_CLI_ARGS_H
#define STRATA_CLI_ARGS_H

#include <stdbool.h>
#include <stdint.h>

#define ARG_SIZE_MIN (1u << 20) /* the smallest size arg_size accepts: 1 MiB */

bool arg_u64(const char *cmd, const char *flag, const char *value, uint64_t min, uint64_t max, uint64_t *out);
/* "1.5G", "512M", "2048K", "4GiB", "1048576" (bytes); units are powers of
 * 1024; at least ARG_SIZE_MIN (a smaller size is an error, never 0). */
bool arg_size(const char *cmd, const char *flag, const char *value, uint64_t *out);
bool arg_float(const char *cmd, const char *flag, const char *value, double min, double max, double *out);

/* Options are known from a command's --help text, `help` a NULL-terminated
 * list of its parts: each line that starts (after spaces) with
 * "-x, --long ARG" names the options -x and --long. */
bool arg_is_option(const char *const *help, const char *opt);
/* "strata CMD: unknown option 'OPT'; did you mean 'NEAREST'? (see ...)",
 * NEAREST the closest option of `help` by edit distance, when one is close. */
void arg_unknown(const char *cmd, const char *const *help, const char *opt);
/* OPT is the last argument and a value was expected: "missing value" when
 * it is a known option, else unknown option (or unexpected argument). */
void arg_no_value(const char *cmd, const char *const *help, const char *opt);

#endif
