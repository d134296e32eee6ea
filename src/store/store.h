/* The weight store: owns every byte of weight memory and is the only code
 * that reads tensor data from model files. The engine sees one narrow
 * interface: tensors are registered in groups (one group a layer, one for
 * the tensors outside the layers); the engine acquires a group before it
 * runs it and releases it after, and gathers embedding rows by token.
 *
 * Placed as it is told (store_config), some groups stay resident (read
 * once at open) and the others are streamed: read again for every pass into a ring of slot
 * buffers by I/O threads, prefetching the next groups in execution order
 * (0, 1, ..., n-1, 0, ...) so reading overlaps compute. */
#ifndef STRATA_STORE_STORE_H
#define STRATA_STORE_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "store/io.h"
#include "strata.h"
#include "util/account.h"

typedef struct store store;

typedef struct store_group {
    uint32_t n;
    const gguf_tensor *const *tensors; /* NULL entries are allowed (optional tensors) */
} store_group;

/* A layer's stacked experts (mixture of experts): tensors whose outermost
 * dimension (ne[2]) is the expert. Unit x, the x-th slice of each tensor
 * (its gate, up and down matrices), is what the store caches and reads:
 * the expert cache holds units of any layer, as many as it is given. */
typedef struct store_expert_set {
    uint32_t n;                        /* tensors; NULL entries allowed; n = 0: the layer has no experts */
    const gguf_tensor *const *tensors; /* each ne[2] == n_experts */
    uint32_t n_experts;
} store_expert_set;

typedef enum store_expert_policy {
    STORE_EXPERT_LRU = 0, /* evict the unit used least recently */
    STORE_EXPERT_LFU,     /* evict the unit used least often (counts halve as they age), LRU among equals */
} store_expert_policy;

/* The expert cache never has fewer units than this (one computing while
 * the next is read), unless the model has fewer. */
#define STORE_EXPERT_MIN_SLOTS 2u

/* Groups read ahead of the one computing when the config says 0. */
#define STORE_DEFAULT_DEPTH 2

/* Of an LFU expert cache of n_slots, the transient slots (the last ones):
 * an eighth, at least one, none below 4 slots; the others keep the most
 * frequently used experts (expert_cache.c; the planner's hit estimate). */
uint32_t store_expert_lfu_transient(uint32_t n_slots);
/* An LFU cache halves every unit's count after this many pins per unit
 * (all its units' pins together): old popularity fades. */
#define STORE_EXPERT_LFU_AGING 4

/* What the memory-pressure watchdog reads each period (watchdog.c). */
typedef struct store_pressure {
    uint64_t headroom;  /* bytes the process (its cgroup, the machine) can still take */
    uint64_t cache;     /* of them, page cache the kernel would have to evict first: shrinking
                           counts it as free, growing does not (taking it can end in an OOM
                           kill of a neighbour still allocating) */
    uint64_t limit;     /* the memory that headroom is out of (cgroup limit or MemTotal) */
    double stall;       /* fraction of the last period some task stalled on memory (PSI), 0..1 */
    bool events;        /* the cgroup hit its high/max limit since the last sample */
} store_pressure;

/* One sample; false when there is nothing to read (the period is skipped). */
typedef bool (*store_pressure_fn)(void *ctx, store_pressure *out);

typedef struct store_watchdog_config {
    int period_ms;        /* between samples (0: 100) */
    uint64_t low_water;   /* shrink when headroom falls below (0: limit / 16, 16..256 MiB) */
    uint64_t high_water;  /* grow when headroom stays above, plus what growing takes (0: 2 x low) */
    int grow_after_ms;    /* calm (no shrink, no stall, above high water) before growing (0: 2000) */
    store_pressure_fn source; /* NULL: this process's cgroup and the machine (hw_pressure_read) */
    void *source_ctx;
    bool quiet;           /* no line on stderr at each change */
    const char *claims_path; /* loaders' shared claims file (load_claim.c; NULL: per user in /dev/shm, and
                                none with a `source` of the caller's) */
} store_watchdog_config;

typedef struct store_config {
    uint64_t budget;       /* bytes for resident groups + slots + row buffer; 0 = no limit (without an account) */
    mem_account *account;  /* the process's memory account: the store maps through it and places
                              the weights in its room (budget unused); NULL: one of its own */
    int prefetch_depth;    /* groups read ahead of the one computing (default 2) */
    int io_threads;        /* default 4 */
    uint64_t io_chunk;     /* bytes per read request (default 4 MiB, >= 1 MiB) */
    uint64_t load_chunk;   /* bytes per read while loading resident groups (0: 8 MiB or io_chunk if larger;
                              tests: less, rounded to 4 KiB) */
    /* The placement the store executes; it decides none (plan/placement.h
     * does, in the planner or in an engine opened without a plan). Opening
     * fails when it does not fit the budget. */
    bool stream_all;       /* stream every group (tests; resident is then ignored) */
    const bool *resident;  /* per group: resident, else streamed (NULL: every group resident) */
    bool progress;         /* progress bar on stderr while loading resident groups */
    bool map_resident;     /* resident groups as views of the file's pages in the page cache (--mmap,
                              view.c) instead of copies; ignored where the file cannot be mapped */
    /* Experts, indexed like the groups (set l belongs to layer group l);
     * n_expert_sets = 0: none. The cache holds expert_slots units, each
     * slot as large as the largest store_expert_unit_bytes of the sets
     * (store_expert_geometry). A cache that holds every unit is filled at
     * open (all experts resident). */
    uint32_t n_expert_sets;
    const store_expert_set *expert_sets;
    store_expert_policy expert_policy;
    uint32_t expert_slots; /* units the expert cache holds (0 or more than the model has: every unit) */
    store_fault_fn fault;  /* test hook, see io.h */
    void *fault_ctx;
    /* Memory-pressure watchdog: a thread that moves resident groups to
     * streaming when the process's memory runs short and back when it
     * returns (never beyond the placement made at open). */
    bool watchdog;
    const store_watchdog_config *watchdog_cfg; /* NULL: defaults */
    uint64_t later_bytes;  /* memory the caller touches after open (the KV cache of contexts not yet
                              made): with the watchdog, loading keeps room for it */
} store_config;

typedef struct store_stats {
    uint64_t resident_bytes;  /* resident group buffers */
    uint64_t slot_bytes;      /* all ring slots */
    uint32_t n_slots, n_streamed_groups;
    uint64_t pass_bytes;      /* bytes streamed per pass over all groups */
    uint64_t accounted_bytes; /* everything the store allocated */
    uint64_t bytes_read;      /* streamed so far (resident loading excluded) */
    uint64_t read_requests;   /* the requests that read them (coalesced reads count once) */
    double io_busy_s;         /* time the I/O threads spent reading, summed */
    double io_active_s;       /* wall time with at least one read in progress */
    double wait_s;            /* time acquire waited for reads */
    bool direct_io;
    /* loading the resident groups at open */
    uint64_t load_bytes;        /* read into resident buffers */
    uint64_t load_cached_bytes; /* of them, copied from the page cache (the rest read with O_DIRECT) */
    bool load_views;            /* loaded as views of the page cache (--mmap): nothing copied */
    double load_s;              /* wall time, watchdog checks included */
    /* the expert cache (zero without experts) */
    uint32_t expert_units;      /* units in the model */
    uint32_t expert_slots;      /* units the cache holds */
    uint64_t expert_cache_bytes;
    uint64_t expert_hits, expert_misses;   /* units pinned that were cached (or in flight), read */
    uint64_t prefetch_issued, prefetch_used, prefetch_wasted; /* wasted: evicted unused */
    /* memory pressure (store_shrink / store_grow, the watchdog) */
    bool watchdog;              /* running */
    uint32_t shrinks, grows;    /* changes applied */
    uint64_t bytes_demoted, bytes_promoted; /* group bytes moved to streaming / back, summed */
    uint64_t bytes_freed;       /* net bytes returned to the system by shrinks (demoted less new slots) */
    uint32_t demoted_groups;    /* groups resident at open that are streamed now */
    double reaction_last_s, reaction_max_s; /* pressure seen -> memory unmapped, for the watchdog's shrinks */
    uint32_t expert_shrinks, expert_grows; /* expert cache resizes (expert_slots is the size now) */
    bool psi_trigger;           /* the watchdog is woken by a PSI trigger (else it samples alone) */
    uint64_t psi_wakeups;       /* PSI events that woke it */
} store_stats;

/* Counts of one expert set (layer): hits, misses, prefetches. */
typedef struct store_expert_stats {
    uint64_t hits, misses, prefetch_issued, prefetch_used, prefetch_wasted;
} store_expert_stats;

/* On a budget that cannot hold the placement given, fails with
 * STRATA_E_NOMEM; *min_bytes (if non-NULL) is the budget it needs. */
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

/* Reads a set of tensors (of no group: weights held elsewhere, e.g.
 * uploaded to a GPU) the way resident groups load: large reads, several
 * in flight on the I/O threads, from the page cache when all of a read is
 * there, else O_DIRECT. buf: 4 KiB-aligned, at least store_group_bytes(g)
 * (the tensors' file ranges widened to 4 KiB); data[i]: tensor i in buf
 * (NULL for NULL entries). Blocks until done; one line naming the file on
 * a read error. */
strata_status store_read_tensors(store *s, const store_group *g, void *buf, uint64_t buf_bytes, const void **data,
                                 strata_error *err);

store_stats store_get_stats(store *s);
store_expert_stats store_get_expert_stats(store *s, uint32_t set);

/* ---- experts ----
 * A step (one layer of one batch) pins the units it needs, computes with
 * them, and unpins them. Pinned units are never evicted; reads of missing
 * ones start at pin time, so the caller computes the ready ones first. */

/* Pins units ids[0..n) (distinct) of a set, starting reads of the missing
 * ones; *taken is how many it pinned: a prefix of ids, all of them unless
 * the cache has too few slots free of pins (then run those, unpin them,
 * and pin the rest). At least one when nothing is pinned. */
strata_status store_experts_pin(store *s, uint32_t set, const int32_t *ids, uint32_t n, uint32_t *taken,
                                strata_error *err);
/* Whether a pinned unit's data is in memory now. */
bool store_expert_ready(store *s, uint32_t set, int32_t id);
/* Waits for a pinned unit; data[j] is its slice of the set's tensor j
 * (NULL for NULL tensors), valid until unpinned. */
strata_status store_expert_data(store *s, uint32_t set, int32_t id, const void *const **data, strata_error *err);
void store_experts_unpin(store *s, uint32_t set, const int32_t *ids, uint32_t n);
/* A hint: units likely needed soon are read into slots free of pins (the
 * policy's victims); never waits, never evicts a pinned unit. */
void store_experts_prefetch(store *s, uint32_t set, const int32_t *ids, uint32_t n);

/* ---- memory pressure (reshape.c) ----
 * Placement changes only at a safe point: when no group is acquired. Done
 * at once when the caller finds one, else at the next store_acquire. Call
 * these from one thread at a time (the watchdog's), any thread but that. */

/* Moves resident groups to streaming until at least `bytes` are returned
 * to the system (net of the ring's slots, allocated on the first demotion
 * of a fully resident store), or as much as streaming everything frees.
 * The last layers go first, the output group last. headroom and seen_at
 * (clock_seconds of the sample) are for the log line and the reaction
 * time (0: none). Returns the net bytes planned (0: nothing to do). */
uint64_t store_shrink(store *s, uint64_t bytes, uint64_t headroom, double seen_at);
/* Reads streamed groups that were resident at open back into memory,
 * first ones first, while the memory that takes (net of slots freed) is at
 * most `bytes`; the reads run in the caller, the switch at a safe point.
 * Returns the net bytes it takes (0: nothing to do). */
uint64_t store_grow(store *s, uint64_t bytes, uint64_t headroom);

/* The data of a resident group without acquiring it (NULL if streamed). */
const void *const *store_resident_data(store *s, uint32_t group);

/* For planning, without opening a store: the bytes a group occupies in
 * memory (its read layout, aligned for direct I/O), and the row buffer the
 * store keeps for embedding gathers. A ring slot is as large as the largest
 * streamed group; there are min(depth + 1, streamed groups) slots
 * (store_ring_for). */
strata_status store_group_bytes(const gguf_file *f, const store_group *g, uint64_t *bytes, strata_error *err);
uint64_t store_row_buffer_bytes(const gguf_file *f);
/* What a placement of the n groups (bytes[g] each) takes: the resident
 * groups and the ring of the streamed ones. resident and stream_all as in
 * store_config (NULL: every group resident, or streamed with stream_all). */
typedef struct store_ring {
    uint64_t resident_bytes, slot_bytes;
    uint32_t n_slots;
} store_ring;
store_ring store_ring_for(uint32_t n, const uint64_t *bytes, const bool *resident, bool stream_all, int depth);
/* The slots of a ring for `streamed` groups: min(depth + 1, streamed). */
uint32_t store_ring_slots(uint32_t streamed, int depth);
/* Bytes of one cache slot for a unit of this set: each tensor's slice
 * widened to the direct-I/O alignment (an upper bound over the experts). */
strata_status store_expert_unit_bytes(const store_expert_set *set, uint64_t *bytes, strata_error *err);
/* The expert cache's slot (the largest unit of the sets, 0 without
 * experts) and the units of all the sets. */
strata_status store_expert_geometry(uint32_t n_sets, const store_expert_set *sets, uint64_t *slot_bytes,
                                    uint32_t *units, strata_error *err);

#endif
