/* What the files of the Vulkan back end share (internal to src/engine):
 * its state, the groups' device layout (backend_vulkan_layout.c),
 * recording with barrier tracking (backend_vulkan_record.c), allocation
 * and loading (backend_vulkan_load.c) and placement
 * (backend_vulkan_place.c). backend_vulkan.c describes the whole. */
#ifndef STRATA_ENGINE_BACKEND_VULKAN_INTERNAL_H
#define STRATA_ENGINE_BACKEND_VULKAN_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/vulkan/vkb.h"
#include "engine/backend.h"
#include "engine/backend_vulkan_moe.h"
#include "engine/backend_vulkan_stream.h"
#include "engine/engine_internal.h"

#define ALIGN 256
#define NO_OFFSET UINT64_MAX

/* Resources for barrier tracking: the activations, then these. */
#define RES_KV (1u << ACT_COUNT)
#define RES_LOGITS (2u << ACT_COUNT)
#define RES(a) (1u << (a))

/* A group streamed for prompt batches only (engine_gpu.prefill_sites): it
 * decodes on the CPU, where its KV cache stays. Internal to the placement
 * vectors here, next to the engine_site values. */
#define SITE_PREFILL_ONLY 3

typedef struct gpu_group {
    vkb_buf *buf;                 /* the group's tensors, resident; NULL: not resident */
    bool streamed;                /* its tensors come through the stream ring, entry stream_k */
    uint32_t stream_k[2];         /* its place among the streamed groups of a decoding pass [0] and of a
                                     prompt batch's [1] (engine.prefill) */
    uint64_t bytes;               /* its tensors as laid out on the device */
    uint64_t off[LS_COUNT];       /* byte offset of each slot's data (NO_OFFSET: absent) */
    uint32_t kv_len;              /* slots of a layer's K and V caches (layers only) */
} gpu_group;

/* A matmul job kept for fusion: the weight (type, shape, device address
 * of row row0) by value. */
typedef struct pend_mm {
    const gguf_tensor *t;
    uint64_t w;                   /* device address of the first row */
    uint64_t n_out;
    act_buf src, dst;
} pend_mm;

typedef struct pend_rope {
    act_buf x;
    uint64_t n_heads, row_stride;
    bool swa;
    uint32_t n_tok;
} pend_rope;

/* The op held back for fusion (at most a norm and the matmul after it, or
 * two ropes). */
typedef struct pending {
    bool norm;
    act_buf norm_dst, norm_src;
    uint64_t norm_w, norm_n, norm_rows;
    int n_mm;                     /* 0, 1 or 2 jobs, one token */
    pend_mm mm[2];
    bool mm_normed;               /* the jobs read norm_src normalized (the norm is theirs) */
    int n_rope;
    pend_rope rope[2];
} pending;

/* One sequence's K and V caches on the device. */
typedef struct gpu_kv_set {
    vkb_buf **k, **v;             /* [n_layers + 1]: a GPU layer's caches (NULL elsewhere) */
    bool used;                    /* taken by a context */
} gpu_kv_set;

typedef struct chunk_stats {
    uint64_t chunks, tokens;
    vkb_stats sum;
} chunk_stats;

typedef struct gpu_state {
    vkb *v;
    gpu_stream *stream;           /* the RAM->VRAM ring; NULL: nothing streamed */
    gpu_moe *moe;                 /* mixture-of-experts buffers (backend_vulkan_moe.c); NULL: none */
    uint32_t n_streamed;
    uint64_t stream_copies;       /* groups copied into the ring since open */
    uint64_t own_host;            /* vkb's own staging, charged to RAM (ACCT_SCRATCH) */
    strata_error async_err;       /* a submission's failure at a release, for the next flush */
    vkb_buf *act[ACT_COUNT];
    vkb_buf *logits, *cs, *cs_swa;
    gpu_group *groups;            /* n_layers + 1 */
    gpu_kv_set *kv;               /* [n_kv] */
    uint32_t n_kv;
    bool recording;
    uint32_t written, read;       /* resources touched since the last barrier */
    pending p;
    bool fuse;                    /* STRATA_VK_FUSE=0: every op its own dispatch */
    /* counts per chunk: decode (one token) and prompt chunks */
    vkb_stats chunk_start;
    uint32_t chunk_tok;           /* 0: no chunk open */
    chunk_stats decode, prompt;
    char note[STRATA_ERROR_MAX];  /* why fewer layers than the budget allowed */
} gpu_state;

static inline gpu_state *st_of(backend *b) { return b->state; }
static inline uint64_t addr(backend *b, act_buf a) { return vkb_addr(st_of(b)->act[a]); }

/* ---- the group's tensors: which go to the GPU, in which layout
 * (backend_vulkan_layout.c) ---- */

/* Group g's tensor slots (a layer's, or the output's); *n: how many. */
const gguf_tensor *const *gpu_group_tensors(const model_weights *w, uint32_t g, uint32_t *n);
/* Whether slot s of group g is a vector (norms, biases: f32 on the device). */
bool gpu_is_vector(const model_weights *w, uint32_t g, uint32_t s);
/* The group's tensors on the device: each slot's offset (NO_OFFSET:
 * absent), the stacked experts too unless `streamed`; returns the bytes. */
uint64_t gpu_layout(const model_weights *w, uint32_t g, bool streamed, uint64_t off[LS_COUNT]);
/* A group's tensors as laid out on the device, resident or streamed. */
uint64_t gpu_tensor_bytes(const model_weights *w, uint32_t g, bool streamed);
/* True when the shaders run every matrix of the group. */
bool gpu_group_supported(const model_weights *w, uint32_t g);
/* Position slots of layer l's GPU cache. */
uint32_t gpu_kv_len(const model_weights *w, uint64_t l, uint32_t n_ctx, uint32_t n_batch);
/* Device bytes of a layer's K and V caches for n_seq sequences (0 for the output). */
uint64_t gpu_kv_bytes(const model_weights *w, uint32_t g, uint32_t n_ctx, uint32_t n_batch, uint32_t n_seq);
/* Floats per batch token of each activation on the device (0: none). */
uint64_t gpu_act_width(const model_dims *d, bool moe, act_buf a);

/* ---- recording (backend_vulkan_record.c) ---- */

/* Recording on (a command buffer begun when it was off). */
void gpu_record(backend *b);
/* A barrier where an op reading `reads` and writing `writes` needs one. */
void gpu_hazard(gpu_state *g, uint32_t reads, uint32_t writes);
/* The ops after fusion: a norm (added into acc when add), a matmul, the
 * fused matvec of a held-back job, a RoPE. */
void gpu_emit_norm(backend *b, act_buf dst, act_buf src, uint64_t w, uint64_t n, uint64_t rows, act_buf acc,
                   bool add);
void gpu_emit_matmul(backend *b, const pend_mm *m, uint32_t n_tok);
void gpu_emit_matvec(backend *b, const pend_mm *m, const pend_mm *up, bool write_xn, int acc_into);
void gpu_emit_rope(backend *b, const pend_rope *r);
/* Records what is held back, unfused. */
void gpu_flush_pending(backend *b);
/* Runs what was recorded (the host is about to read a result). */
strata_status gpu_flush(backend *b, strata_error *err);
/* Host data into a device buffer; device data to host memory. */
strata_status gpu_put(backend *b, vkb_buf *dst, const void *src, uint64_t n, strata_error *err);
strata_status gpu_get(backend *b, vkb_buf *src, void *dst, uint64_t n, strata_error *err);
/* The counts of the chunk that just ended, into its class. */
void gpu_end_chunk(gpu_state *g);

/* ---- allocation (at placement) and loading (backend_vulkan_load.c) ---- */

/* A group's device memory: its tensors (unless streamed) and, with kv,
 * its K and V caches; all or nothing. */
strata_status gpu_alloc_group(engine *e, uint32_t g, bool streamed, bool kv, strata_error *err);
/* The activations and the MoE buffers (with those of streamed experts when
 * stream_experts). */
strata_status gpu_alloc_activations(engine *e, bool stream_experts, strata_error *err);

/* ---- the op table's parts ---- */

/* backend_ops.acquire and .release (backend_vulkan_acquire.c). */
strata_status gpu_acquire(backend *b, uint32_t g, be_weight *w, strata_error *err);
void gpu_release(backend *b, uint32_t g);
/* backend_ops.attention (backend_vulkan_attention.c). */
void gpu_attention(backend *b, uint64_t l, uint32_t n_tok);
/* The op table (backend_vulkan_ops.c). */
extern const backend_ops gpu_vulkan_ops;

/* ---- placement (backend_vulkan_place.c) ---- */

/* Chooses the groups' sites (p->sites exactly, else the default placement
 * within budget) and allocates them; see backend_vulkan_open. */
strata_status gpu_place(engine *e, const engine_gpu *p, uint64_t budget, uint32_t depth, uint32_t *n_placed,
                        strata_error *err);

#endif
