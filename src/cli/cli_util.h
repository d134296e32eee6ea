/* Helpers shared by the hardware subcommands (detect, doctor). */
#ifndef STRATA_CLI_CLI_UTIL_H
#define STRATA_CLI_CLI_UTIL_H

#include <stdbool.h>
#include <stddef.h>

/* "12.3 GB/s" (decimal units, as bandwidths are quoted). Returns buf. */
const char *cli_fmt_rate(double bytes_per_s, char *buf, size_t cap);

/* The saved profile's path: `flag` (the --profile value) when non-NULL,
 * else the default cache path. Prints a one-line error and returns false
 * when there is none. */
bool cli_profile_path(const char *cmd, const char *flag, char *buf, size_t cap);

/* The value of an option taking one argument ("--path DIR" or
 * "--path=DIR"); advances *i. NULL when argv[*i] is not `name`; prints an
 * error and sets *bad when the value is missing. */
const char *cli_opt_value(const char *cmd, int argc, char **argv, int *i, const char *name, bool *bad);

#endif
