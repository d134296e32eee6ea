/* The weight store: owns every byte of weight memory and is the only code
 * that reads tensor data from model files. The engine sees one narrow
 * interface: tensors are registered in groups (one group a layer, one for
 * the tensors outside the layers); the engine acquires a group before it
 * runs it and releases it after, and gathers embedding rows by token.
 *
 * Under a byte budget, some groups stay resident (read once at open) and
 * the others are streamed: read again for every pass into a ring of slot
 * buffers by I/O threads, prefetching the next groups in execution order
 * (0, 1, ..., n-1, 0, ...) so reading overlaps compute. */
#ifndef STRATA_STORE_STORE_H
#define STRATA_STORE_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "store/io.h"
#include "strata.h"

typedef struct store store;

typedef struct store_group {
    uint32_t n;
    const gguf_tensor *const *tensors; /* NULL entries are allowed (optional tensors) */
} store_group;

typedef struct store_config {
    uint64_t budget;       /* bytes for resident groups + slots + row buffer; 0 = no limit */
    int prefetch_depth;    /* groups read ahead of the one computing (default 2) */
    int io_threads;        /* default 4 */
    uint64_t io_chunk;     /* bytes per read request (default 4 MiB, >= 1 MiB) */
    bool stream_all;       /* stream every group (tests) */
    const bool *resident;  /* per group: the planner's choice (NULL: the store's own rule) */
    bool progress;         /* progress bar on stderr while loading resident groups */
    store_fault_fn fault;  /* test hook, see io.h */
    void *fault_ctx;
} store_config;

typedef struct store_stats {
    uint64_t resident_bytes;  /* resident group buffers */
    uint64_t slot_bytes;      /* all ring slots */
    uint32_t n_slots, n_streamed_groups;
    uint64_t pass_bytes;      /* bytes streamed per pass over all groups */
    uint64_t accounted_bytes; /* everything the store allocated */
    uint64_t bytes_read;      /* streamed so far (resident loading excluded) */
    double io_busy_s;         /* time the I/O threads spent reading, summed */
    double wait_s;            /* time acquire waited for reads */
    bool direct_io;
} store_stats;

/* On a budget that cannot hold even the streaming minimum, fails with
 * STRATA_E_NOMEM and sets *min_bytes (if non-NULL) to the smallest budget
 * that works. */
strata_status store_open(const gguf_file *f, uint32_t n_groups, const store_group *groups, const store_config *cfg,
                         store **out, uint64_t *min_bytes, strata_error *err);
void store_close(store *s);

/* The data of the group's tensors, in registration order (NULL for NULL
 * entries), valid until store_release of that group. Groups should be
 * acquired in execution order; skipping groups is allowed. */
strata_status store_acquire(store *s, uint32_t group, const void *const **data, strata_error *err);
void store_release(store *s, uint32_t group);

/* Dequantizes rows[i] of a 2-D tensor into out[i * ne0 ...]; only those
 * rows are read from the file. */
strata_status store_gather_rows(store *s, const gguf_tensor *t, const int32_t *rows, uint32_t n, float *out,
                                strata_error *err);

/* Reads bytes [off, off + n) of a tensor's data into dst (weights held
 * elsewhere, e.g. uploaded to a GPU, are read through here). */
strata_status store_read_tensor(store *s, const gguf_tensor *t, uint64_t off, void *dst, uint64_t n,
                                strata_error *err);

store_stats store_get_stats(store *s);

/* For planning, without opening a store: the bytes a group occupies in
 * memory (its read layout, aligned for direct I/O), and the row buffer the
 * store keeps for embedding gathers. A ring slot is as large as the largest
 * streamed group; there are min(depth + 1, streamed groups) slots. */
strata_status store_group_bytes(const gguf_file *f, const store_group *g, uint64_t *bytes, strata_error *err);
uint64_t store_row_buffer_bytes(const gguf_file *f);

/* The rate at which this store streams these groups from disk, reading
 * whole passes in execution order for at least `seconds` (no compute):
 * what a plan that streams can expect of this disk, for this file. */
double store_measure_stream_bw(const gguf_file *f, uint32_t n_groups, const store_group *groups, double seconds,
                               strata_error *err);

#endif
