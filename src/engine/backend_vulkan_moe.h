/* Mixture of experts on the Vulkan back end (backend_vulkan_moe.c), and
 * what it uses of the rest of the back end (backend_vulkan_record.c). */
#ifndef STRATA_ENGINE_BACKEND_VULKAN_MOE_H
#define STRATA_ENGINE_BACKEND_VULKAN_MOE_H

#include "backend/vulkan/vkb.h"
#include "engine/backend.h"
#include "engine/weights.h"
#include "util/account.h"

/* Resource bits of the back end's barrier tracking: an activation's,
 * and the MoE buffers' (after its own RES_KV and RES_LOGITS). */
#define GPU_RES(a) (1u << (a))
#define GPU_RES_MOE (4u << ACT_COUNT)

typedef struct gpu_moe gpu_moe;

/* Device bytes of the MoE buffers for a batch of n_batch (0 without experts). */
uint64_t gpu_moe_device_bytes(const model_weights *w, uint32_t n_batch);
/* Device bytes of the slots that streamed layers' chosen experts are
 * copied into (GPU_MOE_STREAM_UNITS experts; their host-visible staging
 * as much again, in RAM). */
uint64_t gpu_moe_stream_bytes(const model_weights *w);
/* The MoE buffers of a model with experts (*out NULL without), with the
 * streamed experts' slots and staging when stream_experts. */
strata_status gpu_moe_open(vkb *v, mem_account *a, const model_weights *w, uint32_t n_batch, bool stream_experts,
                           gpu_moe **out, strata_error *err);
void gpu_moe_free(vkb *v, mem_account *a, gpu_moe *m);

/* backend_ops.moe of the Vulkan back end: layer l's experts resident in
 * VRAM with its group (w: their device addresses), or, for a streamed
 * layer, the chosen ones copied from the store's expert cache. */
strata_status backend_vulkan_moe(backend *b, uint64_t l, const be_weight *w, uint32_t n_tok, strata_error *err);

/* ---- backend_vulkan_record.c, for the above ---- */
vkb *backend_vulkan_vkb(backend *b);
gpu_moe *backend_vulkan_moe_state(backend *b);
uint64_t backend_vulkan_act(backend *b, act_buf a); /* device address */
/* Before recording an op that reads and writes these resources: recording
 * on, held-back ops recorded, a barrier where needed. */
void backend_vulkan_op(backend *b, uint32_t reads, uint32_t writes);
/* Host data into a device buffer, in order with the ops recorded. */
strata_status backend_vulkan_put(backend *b, vkb_buf *dst, const void *src, uint64_t n, strata_error *err);
/* An activation's first n bytes to host memory: what was recorded runs, the host waits. */
strata_status backend_vulkan_get(backend *b, act_buf a, void *dst, uint64_t n, strata_error *err);
/* What was recorded runs; the host waits. */
strata_status backend_vulkan_flush(backend *b, strata_error *err);
/* An activation's first n bytes to host memory with the next get or
 * flush (no wait of its own); false, nothing recorded, when the staging
 * is full. */
bool backend_vulkan_get_later(backend *b, act_buf a, void *dst, uint64_t n);

#endif
