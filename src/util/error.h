/* One error convention for the whole library: a status code plus a one-line
 * message naming the file, flag or tensor and the problem. */
#ifndef STRATA_UTIL_ERROR_H
#define STRATA_UTIL_ERROR_H

#include "strata.h"

/* Records the error (if err is non-NULL) and returns status, so callers can
 * write `return err_set(err, STRATA_E_FORMAT, "%s: ...", path);`. */
strata_status err_set(strata_error *err, strata_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Clears err to STRATA_OK with an empty message. */
void err_clear(strata_error *err);

/* Puts "path: " in front of the message (errors from deeper layers name a
 * key or tensor, not the file); left as is when it would not fit. */
void err_prefix_path(strata_error *err, const char *path);

#endif
