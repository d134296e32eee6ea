/* The planner: a pure function of (model, machine, request) that decides
 * where every group of tensors lives — GPU VRAM, RAM, or streamed from disk
 * — and predicts the speed from the measured bandwidths with the cost
 * formula of docs/cost-model.md:
 *   time per step >= max(compute, W_ram / RAM_bw, W_disk / disk_bw, W_link / link_bw, W_vram / VRAM_bw)
 * No I/O and no global state: tests run it on random models and machines. */
#ifndef STRATA_PLAN_PLAN_H
#define STRATA_PLAN_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#define PLAN_MAX_GPUS 8
#define PLAN_MAX_WARNINGS 8
#define PLAN_MAX_ALTS 16
#define PLAN_TEXT 200
#define PLAN_DECODE_POS 128 /* decode speed is predicted at this context position */

/* The weight types the CPU cost model prices apart (hw_engine_type's
 * order); every other type is priced as Q4_K. */
typedef enum plan_wtype {
    PLAN_WT_Q4_K = 0,
    PLAN_WT_Q6_K,
    PLAN_WT_Q8_0,
    PLAN_WT_F16,
    PLAN_WT_F32,
    PLAN_WT_COUNT
} plan_wtype;

/* One group of tensors as the engine runs and the store moves them: a
 * layer, or the output group (final norm + output projection). */
typedef struct plan_group {
    char name[24];          /* "blk.7", "output" */
    uint64_t bytes;         /* memory it occupies (read layout, aligned for direct I/O) */
    uint64_t weight_bytes;  /* tensor data compute reads per decoded token */
    uint64_t type_bytes[PLAN_WT_COUNT]; /* weight_bytes by the type that prices them; what they do not
                                           cover is priced as Q4_K */
    uint64_t elems;         /* weights (compute cost) */
    bool no_gpu;            /* the GPU's shaders do not run its weights (types, row lengths): it stays on
                               the CPU */
} plan_group;

/* A layer's routed experts (mixture of experts): not part of its group.
 * Unit x, the x-th slice of each stacked expert tensor (gate, up, down),
 * is what the store's expert cache holds and reads on a miss. */
typedef struct plan_expert_set {
    uint32_t n_expert;          /* units; 0: the layer has no experts */
    uint32_t n_used;            /* experts a token is routed to */
    uint64_t unit_bytes;        /* one unit's cache slot (store_expert_unit_bytes): what a miss reads */
    uint64_t unit_weight_bytes; /* one unit's tensor data: what compute reads */
    uint64_t unit_elems;        /* one unit's weights */
    /* measured routing (routing.c): the units grouped by their chance of
     * being routed to by one token, most likely first; n_chances 0 (NULL):
     * none measured, every unit's chance is n_used / n_expert */
    uint32_t n_chances;
    struct plan_unit_chance {
        double chance;          /* 0..1 */
        uint32_t units;
    } *chances;                 /* [n_chances] */
} plan_expert_set;

/* What the planner knows of a model: derived from the engine's own
 * description (engine_describe), or made up by tests. */
typedef struct plan_model {
    char name[128];
    uint32_t n_groups;
    plan_group *groups;
    uint32_t context_length;    /* the model's */
    uint64_t kv_bytes_per_token; /* f16 KV, all layers (engine) */
    uint64_t kv_bytes_per_token_q8, kv_bytes_per_token_q4; /* model geometry, for the alternatives */
    bool kv_quant_refused;      /* head dim not a multiple of 32: the engine has no q8_0 / q4_0 cache for it */
    /* engine scratch (KV excluded) = buffer_fixed + buffer_per_ctx * n_ctx
     *                               + buffer_per_batch * min(batch, n_ctx) */
    uint64_t buffer_fixed, buffer_per_ctx, buffer_per_batch;
    uint32_t batch;             /* the engine's tokens per forward pass */
    uint64_t store_fixed;       /* store row buffer */
    uint64_t process_reserve;   /* code, stacks, header, tokenizer */
    uint64_t embd_row_bytes;    /* gathered per token from disk */
    /* experts: set l belongs to layer group l (n_expert_sets <= n_groups - 1;
     * 0 without experts) */
    uint32_t n_expert_sets;
    plan_expert_set *experts;
    uint32_t routing_tokens;    /* tokens the routing calibration routed (0: routing not measured) */
} plan_model;

typedef struct plan_gpu {
    char name[64];
    uint64_t vram;              /* bytes available to strata */
    double vram_bw;             /* bytes/s; 0: unknown (an estimate is used, with a warning) */
    double link_bw;             /* host->device bytes/s */
    double mm_flops;            /* FLOP/s of the tiled matrix-matrix shaders on a prompt batch; 0: unknown
                                   (estimated as PLAN_GPU_FLOP_PER_BYTE x vram_bw, with a warning) */
    int link_pcie_gen, link_pcie_width; /* link_bw estimated from this PCIe link (not measured); 0: not */
    double round_trip_s;        /* a small read back, submitted and waited for: each layer whose experts it
                                   computes waits this long once per pass for the host's routing; 0: unknown
                                   (not priced) */
} plan_gpu;

/* Where a group computes, in one phase (decode: one token; prefill: a
 * batch of at least PLAN_PREFILL_MIN_BATCH tokens). */
typedef enum plan_site {
    PLAN_SITE_CPU = 0, /* on the CPU, its weights in RAM or streamed from disk */
    PLAN_SITE_GPU,     /* on GPU tier[g], its weights resident in VRAM */
    PLAN_SITE_LINK,    /* on GPU 0, its weights (in RAM, or streamed from disk) copied over the link every pass
                          through the ring of PLAN_GPU_STREAM_DEPTH entries */
} plan_site;

/* What GPU plans the engine runs (gpu_runnable), for the verdicts on
 * those it does not. */
#define PLAN_ENGINE_GPU_RULE "one GPU, a GPU layer's KV cache on the GPU, a layer's experts with it"

/* A step of at least this many tokens runs on the prefill sites (the
 * engine's ENGINE_PREFILL_MIN_TOKENS). */
#define PLAN_PREFILL_MIN_BATCH 32u
/* Entries of the RAM->VRAM ring a plan's run uses (the engine's default
 * --gpu-stream with a plan): one copy overlaps the previous group's compute. */
#define PLAN_GPU_STREAM_DEPTH 2u
/* Without a measured matrix-matrix rate, a GPU's prompt-batch FLOP/s are
 * estimated as this many per byte/s of its memory bandwidth (a stated
 * estimate: shaders without matrix cores reach ~20-40 TFLOP/s on GPUs of
 * ~1 TB/s). */
#define PLAN_GPU_FLOP_PER_BYTE 20.0

typedef struct plan_machine {
    uint64_t ram_budget;        /* bytes strata may use */
    double ram_bw;              /* bytes/s, all threads */
    double disk_bw;             /* O_DIRECT sequential bytes/s */
    double cpu_rate;            /* weights/s the CPU kernels process, all threads, data in cache */
    double kernel_ram_bw;       /* weight bytes/s the CPU kernels process streaming from RAM */
    /* the engine's calibration at the thread count the plan runs with
     * (plan_machine_from_profile: measured there, or scaled from another) */
    double engine_bw;           /* Q4_K weight bytes/s the engine decodes resident weights at (0: unknown) */
    double engine_type_bw[PLAN_WT_COUNT]; /* with engine_bw: per type (0: engine_bw) */
    double engine_layer_s;      /* with engine_bw: seconds per group beyond reading its weights */
    double engine_token_s;      /* with engine_bw: seconds per token beyond its groups */
    double engine_width_s;      /* with engine_bw: seconds per layer group and sqrt(its elems) */
    double engine_tile_bw[PLAN_WT_COUNT]; /* weight bytes/s per token of a many-token step, per type
                                             (the tile kernels; 0: not calibrated, priced as before) */
    int threads;                /* the thread count these rates are for (0: unknown) */
    bool threads_scaled;        /* the rates are scaled from a calibration at another thread count */
    uint64_t disk_free;         /* bytes free where models live (0: unknown) */
    uint64_t cache_bytes;       /* the CPU's last-level cache (0: unknown): a model whose weights fit
                                   in half of it is priced at the in-cache compute rate */
    int n_gpus;
    plan_gpu gpus[PLAN_MAX_GPUS];
    bool swap_on, no_odirect, cgroup_limited, measured;
} plan_machine;

typedef enum plan_kv { PLAN_KV_F16 = 0, PLAN_KV_Q8_0 = 1, PLAN_KV_Q4_0 = 2 } plan_kv;

typedef struct plan_request {
    uint32_t n_ctx;             /* 0: the model's, reduced to fit */
    uint32_t n_batch;           /* tokens per step for the prefill prediction and the prompt-batch sites
                                   (0: 256); 32 or more ranks the plans by prefill speed, unless
                                   rank_by_decode */
    bool rank_by_decode;        /* rank by decode speed whatever n_batch (a run's: its batch sets only
                                   the prompt-batch sites and the prefill prediction) */
    plan_kv kv;
    int prefetch_depth;         /* 0: 2 */
    bool cpu_only;              /* the engine runs on the CPU today */
    bool moe_hit_rate_set;      /* the expert cache's hit rate is stated (--moe-hit-rate) */
    bool moe_lru;               /* the cache evicts by recency only (default: LFU, keeping a stable set) */
    double moe_hit_rate;        /* with moe_hit_rate_set: 0..1 */
} plan_request;

/* The expert cache never holds fewer units than this (the store's
 * STORE_EXPERT_MIN_SLOTS), unless the model has fewer. */
#define PLAN_EXPERT_MIN_SLOTS 2u
/* The least context the automatic search goes down to (tokens), and its step. */
#define PLAN_MIN_AUTO_CTX 32u

enum { TIER_DISK = -2, TIER_RAM = -1 }; /* a group's tier; >= 0 is a GPU index */

typedef struct plan_tier_bytes {
    uint64_t weights, kv, buffers, overhead;
} plan_tier_bytes;

typedef struct plan {
    bool feasible;
    char reason[PLAN_TEXT];     /* why not, when infeasible */
    char label[64];             /* "partial residency", "all resident", ... */
    uint32_t n_ctx;
    plan_kv kv;
    uint32_t n_groups;
    int8_t *tier;               /* per group; with site and prefill_site, one allocation (plan_alloc_groups) */
    uint8_t *site;              /* per group: plan_site of a decoded token */
    uint8_t *prefill_site;      /* per group: plan_site of a prompt batch; differs from site only where a
                                   group computed on the CPU when decoding is streamed over the link */
    bool phase_sites;           /* prefill_site differs from site somewhere */
    plan_tier_bytes ram, gpu[PLAN_MAX_GPUS];
    uint64_t slot_bytes;        /* one ring slot (RAM) */
    uint32_t n_slots;
    uint64_t disk_bytes_per_token, ram_bytes_per_token, link_bytes_per_token, vram_bytes_per_token;
    double t_compute, t_ram, t_disk, t_link, t_vram; /* seconds per decoded token */
    double decode_tps, prefill_tps;
    const char *bottleneck;     /* "disk", "RAM bandwidth", "GPU link", "VRAM bandwidth", "compute" */
    /* a step of n_batch tokens (prefill, or n_batch sequences decoding: plan_batch.h):
     * seconds per step of each resource, and the largest */
    double tb_compute, tb_ram, tb_disk, tb_link, tb_vram;
    const char *step_bottleneck;
    bool runnable;              /* the engine can execute it today */
    bool over_link;             /* weights live in RAM / on disk and cross the link to GPU 0 every token */
    /* experts (all 0 without): the expert cache in RAM holds expert_slots of
     * the expert_units of the layers whose experts the CPU computes (all of
     * them when they are resident), in slots of expert_slot_bytes */
    uint32_t expert_units, expert_slots;
    uint64_t expert_slot_bytes;
    uint32_t n_cpu_moe;         /* llama.cpp --n-cpu-moe split: the experts of layers [0, n) on the CPU, the
                                   rest of the model on the GPUs (0: other plans) */
    bool moe_split;             /* this is the --n-cpu-moe split (experts on the CPU are resident, not cached) */
    double expert_hit_rate;     /* of the expert cache, as the prediction assumes */
    const char *expert_hit_source; /* "stated", "measured routing, LFU" (or LRU; plan_model.routing_tokens),
                                      "uniform routing, LFU" (or LRU), "all resident" (NULL without experts) */
    uint64_t expert_disk_bytes_per_token; /* expected: used experts x unit bytes x miss rate, summed (in disk_bytes) */
    double gpu_wait_s;          /* per pass: the GPUs' round trips (round_trip_s) while the host routes the
                                   layers whose experts they compute (in t_vram) */
    char rejected[PLAN_TEXT];   /* for alternatives: why not chosen */
} plan;

typedef struct plan_result {
    plan chosen;
    int n_alts;
    plan alts[PLAN_MAX_ALTS];
    int n_warnings;
    char warnings[PLAN_MAX_WARNINGS][PLAN_TEXT];
} plan_result;

/* tier, site and prefill_site for n groups (one allocation, freed by
 * plan_free): every group in RAM on the CPU. False when out of memory. */
bool plan_alloc_groups(plan *p, uint32_t n);
/* A copy of src's per-group arrays into dst (dst's pointers replaced). */
bool plan_copy_groups(plan *dst, const plan *src);
/* Whether the plan computes any group on a GPU, in either phase. */
bool plan_uses_gpu(const plan *p);

/* Plans; never fails: an impossible request gives chosen.feasible = false
 * with the reason. Free with plan_result_free. */
void plan_compute(const plan_model *m, const plan_machine *hw, const plan_request *req, plan_result *out);
void plan_result_free(plan_result *r);
void plan_free(plan *p);

const char *plan_kv_name(plan_kv kv); /* "f16", "q8_0", "q4_0" */

/* Exit status of `plan --can-run`: 0 in memory, 1 with streaming (layers
 * or expert misses), 2 cannot run. */
int plan_can_run(const plan *p);

#endif
