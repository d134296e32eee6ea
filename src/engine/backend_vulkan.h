/* The Vulkan back end of the engine (backend_vulkan*.c; backend_vulkan.c
 * lists the files): which layers go to VRAM, loading them, and the op
 * table that runs them. */
#ifndef STRATA_ENGINE_BACKEND_VULKAN_H
#define STRATA_ENGINE_BACKEND_VULKAN_H

#include "engine/backend.h"
#include "engine/engine.h"
#include "engine/weights.h"

struct engine;

/* Opens the device p asks for and places groups on it (sets e->gpu and
 * e->site[]): p->sites exactly when given (an error when the GPU cannot
 * run a group there or the whole exceeds the budget), else layers
 * resident from the first on while they fit in the device's budget
 * (capped by p->mem_cap), the shaders run their types and there are fewer
 * than p->max_layers, then the output when every layer is there; with
 * p->stream_depth, the groups after the resident ones are streamed from
 * RAM when the ring and their KV caches fit (backend_vulkan_stream.h).
 * Device memory is allocated here, and vkb refuses any allocation beyond
 * the budget: when the driver refuses one the default placement ends
 * before that group (its message in e->gpu_note). *n_placed: groups on
 * the GPU, streamed ones included (0: none). */
strata_status backend_vulkan_open(struct engine *e, const engine_gpu *p, uint32_t *n_placed, strata_error *err);
/* Uploads the placed groups' weights (through the store's reads). */
strata_status backend_vulkan_load(struct engine *e, strata_error *err);
void backend_vulkan_free(backend *b);

/* Device bytes of group g (weights as uploaded, plus n_seq sequences' K
 * and V caches of n_ctx positions for a layer, or of the window and two
 * batches for a window layer), and of the activations for n_batch. */
uint64_t backend_vulkan_group_bytes(const model_weights *w, uint32_t g, uint32_t n_ctx, uint32_t n_batch,
                                    uint32_t n_seq);
uint64_t backend_vulkan_fixed_bytes(const model_weights *w, uint32_t n_batch);
/* Device bytes of group g when streamed: its KV caches (the ring apart). */
uint64_t backend_vulkan_streamed_bytes(const model_weights *w, uint32_t g, uint32_t n_ctx, uint32_t n_batch,
                                       uint32_t n_seq);
/* Whether group g (on the GPU) is streamed; how many are, and the ring's depth. */
bool backend_vulkan_streamed(const backend *b, uint32_t g);
uint32_t backend_vulkan_n_streamed(const backend *b, uint32_t *depth);
/* Groups copied into the staging ring since open. */
uint64_t backend_vulkan_stream_copies(const backend *b);

/* The device holds e->n_seq sets of KV caches, one per open context: a
 * free set's index (taken), or -1 when all are in use; giving one back. */
int backend_vulkan_kv_take(backend *b);
void backend_vulkan_kv_give(backend *b, int set);

const char *backend_vulkan_device_name(const backend *b);
uint64_t backend_vulkan_device_bytes(const backend *b);
uint64_t backend_vulkan_device_peak(const backend *b); /* the most since open */

#endif
