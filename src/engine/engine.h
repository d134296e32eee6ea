/* The inference engine: the forward pass of the architectures in
 * model/arch.h on the CPU, with a KV cache. Weights come only through the store (acquire a
 * layer, run it, release it). */
#ifndef STRATA_ENGINE_ENGINE_H
#define STRATA_ENGINE_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/threadpool.h"
#include "gguf/gguf.h"
#include "kernels/cpu/kernels.h"
#include "model/model_spec.h"
#include "store/store.h"
#include "strata.h"

/* Which GPU runs layers (the Vulkan back end). */
typedef enum engine_gpu_mode {
    ENGINE_GPU_OFF = 0, /* CPU only */
    ENGINE_GPU_AUTO,    /* the first discrete or integrated GPU, if any (else the CPU, silently) */
    ENGINE_GPU_INDEX,   /* device `index` of the Vulkan loader's list (software devices too); an error if unusable */
} engine_gpu_mode;

/* Where a group (a layer, the output) runs. */
typedef enum engine_site {
    ENGINE_SITE_CPU = 0,  /* on the CPU, its weights from the store */
    ENGINE_SITE_VRAM,     /* on the GPU, its weights resident in device memory */
    ENGINE_SITE_STREAMED, /* on the GPU, its weights in host memory (the store's) and copied to the
                             device every pass through the staging ring */
} engine_site;

/* A forward pass of at least this many tokens (a prompt batch) runs on
 * engine_gpu.prefill_sites; fewer (a decoded token) on engine_gpu.sites. */
#define ENGINE_PREFILL_MIN_TOKENS 32u
/* The staging ring's entries when engine_gpu.sites is given without a
 * stream_depth (the planner prices a plan's streamed groups with it). */
#define ENGINE_PLAN_STREAM_DEPTH 2u

typedef struct engine_gpu {
    engine_gpu_mode mode;
    int index;
    uint64_t mem_cap;   /* device bytes at most (0: the device's budget) */
    uint32_t max_layers; /* layers on the GPU at most (0: as many as fit) */
    uint32_t stream_depth; /* entries of the RAM->VRAM staging ring (1..8); 0: groups that do not fit
                              in VRAM run on the CPU (with `sites`: ENGINE_PLAN_STREAM_DEPTH) */
    const uint8_t *sites; /* n_layers + 1 engine_site's to run exactly (a plan's placement); a group
                             the GPU cannot run, or a placement over the budget, is an error. NULL:
                             resident from the first layer while they fit, then streamed (with
                             stream_depth) or on the CPU */
    const uint8_t *prefill_sites; /* with sites: the sites of a step of ENGINE_PREFILL_MIN_TOKENS or more
                                     tokens (NULL: sites). They may differ from sites only as
                                     ENGINE_SITE_STREAMED for a group sites puts on the CPU: its KV cache
                                     stays on the CPU, which attends there for the GPU */
} engine_gpu;

/* The Vulkan device an engine opened with p (its mode not OFF) runs on,
 * found without opening it: its name, its index in the loader's list,
 * whether it is a software device (lavapipe), and the device bytes its
 * placement may take (the device's budget, capped by p->mem_cap). The
 * error is the one opening it would give. */
typedef struct engine_gpu_device {
    char name[256];
    int index;
    bool is_cpu;
    uint64_t budget;
} engine_gpu_device;
strata_status engine_gpu_device_of(const engine_gpu *p, engine_gpu_device *out, strata_error *err);

/* What a mixture-of-experts decode step reads ahead for the next layer,
 * while the current layer's experts compute. */
typedef enum engine_moe_prefetch {
    ENGINE_MOE_PREFETCH_NONE = 0,
    ENGINE_MOE_PREFETCH_PREV,   /* the experts the previous token chose there */
    ENGINE_MOE_PREFETCH_ROUTER, /* the next layer's router applied to the current residual */
} engine_moe_prefetch;

typedef struct engine_params {
    uint32_t n_ctx;      /* a sequence's context at most (0: the model's context length) */
    uint32_t n_seq;      /* sequences the KV reserve holds at n_ctx each (0: 1) */
    uint32_t n_batch;    /* tokens per forward pass (0: 256) */
    int n_threads;       /* >= 1 */
    bool kv_f32;         /* F32 KV cache instead of the default F16 (for a DEFAULT type below) */
    strata_kv_type kv_type_k, kv_type_v; /* K and V cache types (q8_0 / q4_0: head_dim % 32 == 0);
                                            layers on a GPU keep f16 */
    kernel_mode kernels; /* fast (default) or reference */
    uint64_t mem_budget; /* bytes for everything (weights, KV cache, buffers); 0 = no limit;
                            the budget of the engine's own account (unused with `account`) */
    mem_account *account; /* the caller's memory account (util/account.h): the KV reserve, every
                             buffer and the store's weights are taken from it; NULL: the engine's own */
    store_config store;  /* streaming settings; the store places weights in the account's room,
                            its expert sets come from the model */
    engine_moe_prefetch moe_prefetch;
    engine_gpu gpu;
} engine_params;

typedef struct engine engine;
/* One sequence (a conversation): its KV cache and position. */
typedef struct engine_seq engine_seq;

/* The KV cache types of the memory model, in this order. */
typedef enum engine_kv_kind {
    ENGINE_KV_F32 = 0,
    ENGINE_KV_F16,
    ENGINE_KV_Q8_0,
    ENGINE_KV_Q4_0,
    ENGINE_KV_KINDS
} engine_kv_kind;

/* The engine's memory model as data, and what it reads: the planner's view
 * of the engine, made from the architecture description applied to the
 * file's tensor index (no tensor data is read, nothing is allocated but
 * the description). One device today, the CPU:
 *   scratch bytes = fixed + per_ctx x n_ctx + per_batch x min(n_batch, n_ctx)
 *   KV bytes      = kv_per_token[type] x n_ctx per sequence (K and V, every
 *                   layer at full length: a window layer holds at most
 *                   window + 2 batches, so this bounds it from above)
 * and the same evaluated at the parameters given (kv_bytes, buffer_bytes:
 * exact, windows included). */
typedef struct engine_desc {
    uint32_t n_ctx, n_batch;          /* after defaults */
    uint32_t kv_type_k, kv_type_v;    /* ggml type ids of the K and V caches */
    uint64_t kv_bytes;                /* K and V caches of n_seq sequences of n_ctx */
    uint64_t buffer_bytes;            /* KV caches and every scratch buffer */
    uint64_t fixed, per_ctx, per_batch; /* scratch coefficients (per_ctx grows with the threads) */
    uint64_t kv_per_token[ENGINE_KV_KINDS];
    uint32_t n_groups;                /* store groups: one per layer, then the output group */
    const struct store_group *groups; /* their tensors, in execution order (a layer's
                                         stacked experts are not in its group: see expert_sets) */
    uint32_t n_expert_sets;           /* n_layers for a mixture of experts, else 0 */
    const store_expert_set *expert_sets; /* per layer: its stacked experts (store.h) */
    struct model_weights *weights;    /* owned */
} engine_desc;

/* Memory a process running the model needs besides what the engine and
 * store account: code and libraries, thread stacks, the parsed header and
 * the tokenizer (3.3-3.9 MiB for a small model here). Reserved inside a
 * budget so the real peak RSS stays within it. */
uint64_t engine_process_reserve(const gguf_file *f);

/* The memory model of the engine run with p (p->n_threads: the scratch
 * per context token; p->kernels: the activation scratch). */
strata_status engine_describe(const gguf_file *f, const model_spec *spec, const engine_params *p, engine_desc *out,
                              strata_error *err);
void engine_desc_free(engine_desc *d);
/* Whether the GPU back end's shaders run group g of d (its weight types
 * and row lengths): a group they do not run stays on the CPU. */
bool engine_gpu_runs_group(const engine_desc *d, uint32_t g);

strata_status engine_open(const gguf_file *f, const model_spec *spec, const engine_params *p, engine **out,
                          strata_error *err);
void engine_free(engine *e);

/* A sequence of up to n_ctx tokens (0: the engine's n_ctx), its KV cache
 * taken from the reserve (STRATA_E_NOMEM when it has no room now). With a
 * GPU, one sequence at a time (the GPU holds one KV cache). */
strata_status engine_seq_new(engine *e, uint32_t n_ctx, engine_seq **out, strata_error *err);
void engine_seq_free(engine_seq *s);
void engine_seq_reset(engine_seq *s);
uint32_t engine_seq_n_past(const engine_seq *s);
uint32_t engine_seq_n_ctx(const engine_seq *s);
/* KV bytes a sequence of n_ctx tokens takes; what the reserve has left. */
uint64_t engine_seq_bytes(const engine *e, uint32_t n_ctx);
uint64_t engine_kv_free(const engine *e);

/* One token of a batch (strata_batch_entry). */
typedef struct engine_entry {
    engine_seq *seq;
    int32_t token;
    uint32_t pos;
    bool logits;
} engine_entry;

/* One forward pass over b[0..n) (n <= n_batch), tokens of any sequences;
 * logits of the entries that ask, in order ([k][n_vocab]). */
strata_status engine_decode(engine *e, const engine_entry *b, uint32_t n, float *logits, strata_error *err);

/* Evaluates tokens[0..n) at the next positions of the engine's own
 * sequence (created on first use). Writes the logits of every position
 * (all_logits: n x n_vocab floats) or of the last one (n_vocab floats) to
 * `logits` (may be NULL). */
strata_status engine_eval(engine *e, const int32_t *tokens, uint32_t n, float *logits, bool all_logits,
                          strata_error *err);
/* engine_eval on sequence s. */
strata_status engine_seq_eval(engine_seq *s, const int32_t *tokens, uint32_t n, float *logits, bool all_logits,
                              strata_error *err);

void engine_reset(engine *e);     /* forget the own sequence's context */
uint32_t engine_n_past(const engine *e);
uint32_t engine_n_ctx(const engine *e);
uint32_t engine_n_vocab(const engine *e);
uint32_t engine_n_layers(const engine *e);
/* Bytes of KV cache, scratch and weights the engine holds (its accounting). */
uint64_t engine_memory_bytes(const engine *e);
uint32_t engine_n_batch(const engine *e);
/* Bytes of KV cache (the reserve) and scratch buffers alone. */
uint64_t engine_buffer_bytes(const engine *e);
store_stats engine_store_stats(const engine *e);
store_expert_stats engine_expert_stats(const engine *e, uint32_t layer);
/* [n_layers][n_expert]: how many tokens each layer routed to each expert
 * since the engine opened; NULL without experts. */
const uint32_t *engine_expert_picks(const engine *e);
/* Layers (and the output) running on the GPU, its name and device bytes. */
typedef struct engine_gpu_stats {
    uint32_t layers;
    bool output;
    uint32_t streamed;      /* of those groups (layers and output), streamed from RAM each pass */
    uint32_t stream_depth;  /* the staging ring's entries (0: nothing streamed) */
    uint32_t prefill_streamed; /* groups on the CPU when decoding, streamed for prompt batches */
    uint64_t stream_copies; /* groups copied into the staging ring so far */
    uint64_t device_bytes;
    uint64_t device_peak;   /* the most device memory held since the engine opened */
    const char *name; /* "" without a GPU */
    const char *note; /* why the GPU is not used, or not for every layer ("" otherwise) */
} engine_gpu_stats;
engine_gpu_stats engine_get_gpu_stats(const engine *e);
/* The CPU thread pool's statistics and (*threads) its size. */
pool_stats engine_cpu_stats(const engine *e, uint32_t *threads);

#endif
