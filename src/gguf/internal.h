/* Internal to src/gguf: split models (name-00001-of-00003.gguf with split.*
 * keys) and the pieces of the reader that other files reuse. */
#ifndef STRATA_GGUF_INTERNAL_H
#define STRATA_GGUF_INTERNAL_H

#include "gguf/gguf.h"

/* Parses exactly one file (no split following). */
strata_status gguf_open_one(const char *path, gguf_file **out, strata_error *err);

/* Validates a file's own split.* keys (count >= 1, no < count). */
strata_status gguf_split_check_self(const gguf_file *f, const char *name, strata_error *err);

/* Opens splits 2..count of the model whose first file is already parsed
 * into f and appends their tensors to it. */
strata_status gguf_split_open_rest(gguf_file *f, const char *path, strata_error *err);

/* Decodes a little-endian scalar of a GGUF value type from raw bytes. */
void gguf_value_from_raw(uint32_t type, const void *raw, gguf_value *v);

strata_status gguf_check_unique_names(const gguf_tensor *ts, uint64_t n, const char *name, strata_error *err);

#endif
