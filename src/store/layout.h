/* How a group of tensors is laid out for reading: the file ranges to read
 * (runs of nearby tensors, widened to the direct-I/O alignment) and where
 * each tensor lands in the group's buffer. The same layout serves resident
 * groups (one buffer, filled once) and streamed ones (a ring slot, filled
 * each time the group runs). */
#ifndef STRATA_STORE_LAYOUT_H
#define STRATA_STORE_LAYOUT_H

#include <stdint.h>

#include "gguf/gguf.h"
#include "strata.h"

#define STORE_ALIGN 4096u          /* O_DIRECT offset, length and buffer alignment */
#define STORE_MERGE_GAP (64u << 10) /* tensors closer than this are read in one run */

typedef struct store_run {
    uint32_t split;        /* file */
    uint64_t file_offset;  /* aligned start */
    uint64_t length;       /* aligned length */
    uint64_t buf_offset;   /* where the run starts in the group buffer */
} store_run;

typedef struct group_layout {
    uint32_t n_tensors;
    uint64_t *tensor_offset; /* per tensor: offset of its data in the buffer (UINT64_MAX: absent) */
    uint32_t n_runs;
    store_run *runs;
    uint64_t bytes;          /* buffer size (sum of run lengths) */
    uint64_t tensor_bytes;   /* bytes of tensor data proper */
} group_layout;

strata_status layout_build(const gguf_file *f, const gguf_tensor *const *tensors, uint32_t n, group_layout *out,
                           strata_error *err);
void layout_free(group_layout *l);

#endif
