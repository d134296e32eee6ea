/* Helpers shared by the subcommands. */
#ifndef STRATA_CLI_CLI_UTIL_H
#define STRATA_CLI_CLI_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The saved profile's path: `flag` (the --profile value) when non-NULL,
 * else the default cache path. Prints a one-line error and returns false
 * when there is none. */
bool cli_profile_path(const char *cmd, const char *flag, char *buf, size_t cap);

/* The value of an option taking one argument ("--path DIR" or
 * "--path=DIR"); advances *i. NULL when argv[*i] is not `name`; prints an
 * error and sets *bad when the value is missing. */
const char *cli_opt_value(const char *cmd, int argc, char **argv, int *i, const char *name, bool *bad);

/* A text file (or a pipe) of at most `max` bytes, NUL-terminated (*len
 * without it; malloc'd). Prints "strata CMD: FLAG PATH: problem" and returns
 * NULL when it cannot be read, is a directory or is larger. */
char *cli_read_text_file(const char *cmd, const char *flag, const char *path, size_t max, size_t *len);

/* What a process may use and why: usable memory, and the cgroup limit that
 * binds it with what the cgroup holds (limit 0: none binds). */
typedef struct cli_memory {
    uint64_t usable, cgroup_limit, cgroup_held;
} cli_memory;

/* --mem above what this process can use: clamped to it with a warning
 * naming the limit (*budget changed), or refused with --strict-mem (false,
 * the error printed). Unknown usable memory (0): no clamp. */
bool cli_clamp_budget(const char *cmd, const cli_memory *mem, bool strict, uint64_t *budget);

#endif
