/* Helpers shared by the GGUF tests: building small files with the writer
 * and reading whole files. */
#ifndef STRATA_TESTS_GGUF_HELPERS_H
#define STRATA_TESTS_GGUF_HELPERS_H

#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"

/* Reads a whole file into a malloc'd buffer; NULL on failure. */
uint8_t *read_whole_file(const char *path, size_t *size);

/* Writes a small valid model with metadata of every value type (nested and
 * string arrays included) and three F32/Q8_0 tensors to path. */
strata_status write_sample_gguf(const char *path, uint32_t version, strata_error *err);

/* Rewrites the model at src as a split model of `parts` files,
 * PREFIX-0000K-of-0000N.gguf: the first holds every metadata key, each a
 * consecutive share of the tensors (data copied byte for byte). */
strata_status write_split_copy(const char *src, const char *prefix, uint32_t parts, strata_error *err);

#endif
