/* The weight store: owns every byte of weight memory and is the only code
 * that reads tensor data from model files. The engine sees one narrow
 * interface: tensors are registered in groups (one group a layer, one for
 * the tensors outside the layers); the engine acquires a group before it
 * runs it and releases it after, and gathers embedding rows by token.
 *
 * This version keeps every tensor resident (read once at open with large
 * reads); the tiered store (issue 5) streams groups behind the same calls. */
#ifndef STRATA_STORE_STORE_H
#define STRATA_STORE_STORE_H

#include <stdint.h>

#include "gguf/gguf.h"
#include "strata.h"

typedef struct store store;

typedef struct store_group {
    uint32_t n;
    const gguf_tensor *const *tensors; /* NULL entries are allowed (optional tensors) */
} store_group;

strata_status store_open(const gguf_file *f, uint32_t n_groups, const store_group *groups, store **out,
                         strata_error *err);
void store_close(store *s);

/* The data of the group's tensors, in registration order (NULL for NULL
 * entries), valid until store_release of that group. */
strata_status store_acquire(store *s, uint32_t group, const void *const **data, strata_error *err);
void store_release(store *s, uint32_t group);

/* Dequantizes rows[i] of a 2-D tensor (one of the registered ones, or the
 * token embedding) into out[i * ne0 ...]; only those rows are read. */
strata_status store_gather_rows(store *s, const gguf_tensor *t, const int32_t *rows, uint32_t n, float *out,
                                strata_error *err);

/* Bytes of weight memory the store holds. */
uint64_t store_resident_bytes(const store *s);

#endif
