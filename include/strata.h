/* strata — public C API.
 *
 * strata runs large language models on machines whose memory is smaller
 * than the model. This header is the library's whole public surface; the
 * `strata` command uses nothing else.
 *
 * Conventions: every fallible call takes a `strata_error *` (may be NULL)
 * and returns a strata_status; on failure the error's message is one line
 * naming the file, flag or tensor and the problem. Sizes are uint64_t bytes.
 */
#ifndef STRATA_H
#define STRATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define STRATA_VERSION_MAJOR 0
#define STRATA_VERSION_MINOR 1
#define STRATA_VERSION_PATCH 0
#define STRATA_VERSION_STRING "0.1.0"

typedef enum strata_status {
    STRATA_OK = 0,
    STRATA_E_INVALID = 1,     /* bad argument or flag */
    STRATA_E_IO = 2,          /* open/read/write failed */
    STRATA_E_FORMAT = 3,      /* malformed input file */
    STRATA_E_UNSUPPORTED = 4, /* valid input strata cannot handle */
    STRATA_E_NOMEM = 5,       /* allocation failed or budget exceeded */
} strata_status;

#define STRATA_ERROR_MAX 512

typedef struct strata_error {
    strata_status status;
    char message[STRATA_ERROR_MAX];
} strata_error;

/* Library version string, e.g. "0.1.0". */
const char *strata_version(void);

/* A short name for a status code ("format error", ...). */
const char *strata_status_name(strata_status status);

/* ---- Model inspection (header only: no tensor data is read) ---- */

typedef struct strata_model_info strata_model_info;

/* Opens a GGUF model (or the first file of a split model) and reads its
 * header and tensor table. Memory use is proportional to the header. */
strata_status strata_model_info_open(const char *path, strata_model_info **out,
                                     strata_error *err);
void strata_model_info_free(strata_model_info *info);

/* The inspection report as one JSON document (schema: docs/inspect-json.md).
 * The returned string is owned by the caller (free()). */
char *strata_model_info_json(const strata_model_info *info, bool with_tensors);

#ifdef __cplusplus
}
#endif
#endif
