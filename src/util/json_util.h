/* Small jansson helpers. */
#ifndef STRATA_UTIL_JSON_UTIL_H
#define STRATA_UTIL_JSON_UTIL_H

#include <jansson.h>

/* A JSON string of s; text from model files may not be valid UTF-8, in
 * which case bytes >= 0x80 are replaced by '?' (jansson requires UTF-8). */
json_t *json_str_lossy(const char *s);

#endif
