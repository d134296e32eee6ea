/* Internal to src/gguf: split models (name-00001-of-00003.gguf with split.*
 * keys) and the pieces of the reader that other files reuse. */
#ifndef STRATA_GGUF_INTERNAL_H
#define STRATA_GGUF_INTERNAL_H

#include "gguf/gguf.h"
#include "util/error.h"

/* Parses exactly one file (no split following). */
strata_status gguf_open_one(const char *path, gguf_file **out, strata_error *err);

/* Validates a file's own split.* keys (count >= 1, no < count). */
strata_status gguf_split_check_self(const gguf_file *f, const char *name, strata_error *err);

/* Opens splits 2..count of the model whose first file is already parsed
 * into f and appends their tensors to it. */
strata_status gguf_split_open_rest(gguf_file *f, const char *path, strata_error *err);

/* Decodes a little-endian scalar of a GGUF value type from raw bytes. */
void gguf_value_from_raw(uint32_t type, const void *raw, gguf_value *v);

/* ---- hash indexes of metadata keys and tensor names (index.c) ---- */
#define GGUF_INDEX_NONE UINT64_MAX

/* The key of entry i of an array (gguf_kv or gguf_tensor) and its length. */
typedef const char *(*gguf_key_fn)(const void *base, uint64_t i, size_t *len);
const char *gguf_kv_key(const void *base, uint64_t i, size_t *len);
const char *gguf_tensor_key(const void *base, uint64_t i, size_t *len);

/* Adds entry i (creating the index on first use): 0 added, 1 a same-keyed
 * entry exists (its number in *dup; nothing added), -1 out of memory. */
int gguf_index_add(gguf_index **ix, const void *base, gguf_key_fn key_of, uint64_t i, uint64_t *dup);
/* The entry with this key, or GGUF_INDEX_NONE (also when ix is NULL). */
uint64_t gguf_index_find(const gguf_index *ix, const void *base, gguf_key_fn key_of, const char *key,
                         size_t len);
void gguf_index_free(gguf_index *ix);

/* (Re)builds f->tensor_index over all of f's tensors; fails on a duplicate
 * tensor name. */
strata_status gguf_index_tensors(gguf_file *f, const char *name, strata_error *err);

#endif
