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

/* One group of tensors as the engine runs and the store moves them: a
 * layer, or the output group (final norm + output projection). */
typedef struct plan_group {
    char name[24];          /* "blk.7", "output" */
    uint64_t bytes;         /* memory it occupies (read layout, aligned for direct I/O) */
    uint64_t weight_bytes;  /* tensor data compute reads per decoded token (of stacked
                               experts, the share a token is routed to) */
    uint64_t elems;         /* weights (compute cost) */
} plan_group;

/* What the planner knows of a model: derived from the engine's own
 * description (engine_describe), or made up by tests. */
typedef struct plan_model {
    char name[128];
    uint32_t n_groups;
    plan_group *groups;
    uint32_t context_length;    /* the model's */
    uint64_t kv_bytes_per_token; /* f16 KV, all layers (engine) */
    uint64_t kv_bytes_per_token_q8, kv_bytes_per_token_q4; /* model geometry, for the alternatives */
    /* engine scratch (KV excluded) = buffer_fixed + buffer_per_ctx * n_ctx
     *                               + buffer_per_batch * min(batch, n_ctx) */
    uint64_t buffer_fixed, buffer_per_ctx, buffer_per_batch;
    uint32_t batch;             /* the engine's tokens per forward pass */
    uint64_t store_fixed;       /* store row buffer */
    uint64_t process_reserve;   /* code, stacks, header, tokenizer */
    uint64_t embd_row_bytes;    /* gathered per token from disk */
} plan_model;

typedef struct plan_gpu {
    char name[64];
    uint64_t vram;              /* bytes available to strata */
    double vram_bw;             /* bytes/s; 0: unknown (an estimate is used, with a warning) */
    double link_bw;             /* host->device bytes/s */
} plan_gpu;

typedef struct plan_machine {
    uint64_t ram_budget;        /* bytes strata may use */
    double ram_bw;              /* bytes/s, all threads */
    double disk_bw;             /* O_DIRECT sequential bytes/s */
    double cpu_rate;            /* weights/s the CPU kernels process, all threads, data in cache */
    double kernel_ram_bw;       /* weight bytes/s the CPU kernels process streaming from RAM */
    double engine_bw;           /* weight bytes/s the engine decodes resident weights at (0: unknown) */
    double engine_layer_s;      /* with engine_bw: seconds per layer beyond reading its weights */
    uint64_t disk_free;         /* bytes free where models live (0: unknown) */
    int n_gpus;
    plan_gpu gpus[PLAN_MAX_GPUS];
    bool swap_on, no_odirect, cgroup_limited, measured;
} plan_machine;

typedef enum plan_kv { PLAN_KV_F16 = 0, PLAN_KV_Q8_0 = 1, PLAN_KV_Q4_0 = 2 } plan_kv;

typedef struct plan_request {
    uint32_t n_ctx;             /* 0: the model's, reduced to fit */
    uint32_t n_batch;           /* tokens per step for the prefill prediction (0: 256) */
    plan_kv kv;
    int prefetch_depth;         /* 0: 2 */
    bool cpu_only;              /* the engine runs on the CPU today */
} plan_request;

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
    int8_t *tier;               /* per group */
    plan_tier_bytes ram, gpu[PLAN_MAX_GPUS];
    uint64_t slot_bytes;        /* one ring slot (RAM) */
    uint32_t n_slots;
    uint64_t disk_bytes_per_token, ram_bytes_per_token, link_bytes_per_token, vram_bytes_per_token;
    double t_compute, t_ram, t_disk, t_link, t_vram; /* seconds per decoded token */
    double decode_tps, prefill_tps;
    const char *bottleneck;     /* "disk", "RAM bandwidth", "GPU link", "VRAM bandwidth", "compute" */
    bool runnable;              /* the engine can execute it today */
    bool over_link;             /* weights live in RAM / on disk and cross the link to GPU 0 every token */
    char rejected[PLAN_TEXT];   /* for alternatives: why not chosen */
} plan;

typedef struct plan_result {
    plan chosen;
    int n_alts;
    plan alts[PLAN_MAX_ALTS];
    int n_warnings;
    char warnings[PLAN_MAX_WARNINGS][PLAN_TEXT];
} plan_result;

/* Plans; never fails: an impossible request gives chosen.feasible = false
 * with the reason. Free with plan_result_free. */
void plan_compute(const plan_model *m, const plan_machine *hw, const plan_request *req, plan_result *out);
void plan_result_free(plan_result *r);
void plan_free(plan *p);

const char *plan_kv_name(plan_kv kv); /* "f16", "q8_0", "q4_0" */

/* Exit status of `plan --can-run`: 0 in memory, 1 with streaming, 2 cannot run. */
int plan_can_run(const plan *p);

#endif
