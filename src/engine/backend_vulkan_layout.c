/* The Vulkan back end's groups on the device: which tensors go there, in
 * which layout, and the device bytes of groups, KV caches and activations
 * (backend_vulkan.h, backend_vulkan_internal.h). */
#include "engine/backend_vulkan.h"
#include "engine/backend_vulkan_internal.h"

const gguf_tensor *const *gpu_group_tensors(const model_weights *w, uint32_t g, uint32_t *n)
{
    *n = g < w->d.n_layers ? LS_COUNT : OS_COUNT;
    return g < w->d.n_layers ? w->layer[g] : w->output;
}

bool gpu_is_vector(const model_weights *w, uint32_t g, uint32_t s)
{
    return g < w->d.n_layers ? arch_layer_slot_is_vector((layer_slot)s) : s == OS_NORM;
}

/* Bytes a tensor takes on the device: vectors as f32. */
static uint64_t device_bytes(const gguf_tensor *t, bool vector)
{
    uint64_t n = vector ? t->ne[0] * 4 : t->n_bytes;
    return (n + ALIGN - 1) / ALIGN * ALIGN;
}

/* Stacked experts: a layer's tensors of all its experts. */
static bool is_stacked(const model_weights *w, uint32_t g, uint32_t s)
{
    return g < w->d.n_layers && (s == LS_GATE_EXPS || s == LS_UP_EXPS || s == LS_DOWN_EXPS);
}

/* The group's tensors on the device, the stacked experts too unless
 * `streamed` (a streamed layer's chosen experts come apart:
 * backend_vulkan_moe.c). */
uint64_t gpu_layout(const model_weights *w, uint32_t g, bool streamed, uint64_t off[LS_COUNT])
{
    uint32_t n;
    const gguf_tensor *const *t = gpu_group_tensors(w, g, &n);
    uint64_t total = 0;
    for (uint32_t s = 0; s < LS_COUNT; s++) off[s] = NO_OFFSET;
    for (uint32_t s = 0; s < n; s++)
        if (t[s] && !(streamed && is_stacked(w, g, s))) {
            off[s] = total;
            total += device_bytes(t[s], gpu_is_vector(w, g, s));
        }
    return total;
}

/* True when the shaders run every matrix of the group. */
bool gpu_group_supported(const model_weights *w, uint32_t g)
{
    uint32_t n;
    const gguf_tensor *const *t = gpu_group_tensors(w, g, &n);
    for (uint32_t s = 0; s < n; s++)
        if (t[s] && !gpu_is_vector(w, g, s) && !vkb_matmul_supported_rows(t[s]->type, (uint32_t)t[s]->ne[0]))
            return false;
    return true;
}

/* Position slots of layer l's GPU cache: the CPU's (a window layer's ring
 * holds the window and a batch or two). */
uint32_t gpu_kv_len(const model_weights *w, uint64_t l, uint32_t n_ctx, uint32_t n_batch)
{
    return engine_kv_len(w, l, n_ctx, n_batch);
}

/* Device bytes of a layer's K and V caches for n_seq sequences (0 for the output). */
uint64_t gpu_kv_bytes(const model_weights *w, uint32_t g, uint32_t n_ctx, uint32_t n_batch, uint32_t n_seq)
{
    return g < w->d.n_layers ? (uint64_t)n_seq * 2 * gpu_kv_len(w, g, n_ctx, n_batch) * w->d.kv_dim * 2 : 0;
}

/* A group's tensors as laid out on the device, resident or streamed. */
uint64_t gpu_tensor_bytes(const model_weights *w, uint32_t g, bool streamed)
{
    uint64_t off[LS_COUNT];
    return gpu_layout(w, g, streamed, off);
}

uint64_t backend_vulkan_group_bytes(const model_weights *w, uint32_t g, uint32_t n_ctx, uint32_t n_batch,
                                    uint32_t n_seq)
{
    return gpu_tensor_bytes(w, g, false) + gpu_kv_bytes(w, g, n_ctx, n_batch, n_seq);
}

uint64_t backend_vulkan_streamed_bytes(const model_weights *w, uint32_t g, uint32_t n_ctx, uint32_t n_batch,
                                       uint32_t n_seq)
{
    return gpu_kv_bytes(w, g, n_ctx, n_batch, n_seq);
}

/* Floats per batch token of each activation on the device (0: none). */
uint64_t gpu_act_width(const model_dims *d, bool moe, act_buf a)
{
    uint64_t k = d->n_expert_used, ff = d->n_ff;
    if (moe && k * d->n_ff_exp > ff) ff = k * d->n_ff_exp; /* the chosen experts side by side */
    if (moe && d->n_ff_shexp > ff) ff = d->n_ff_shexp;
    switch (a) {
    case ACT_X: case ACT_XN: return d->n_embd;
    case ACT_Q: case ACT_ATT: return d->q_dim;
    case ACT_K: case ACT_V: return d->kv_dim;
    case ACT_GATE: case ACT_UP: return ff;
    case ACT_ROUTER: return moe ? d->n_expert : 0;
    case ACT_XE: return moe ? k * d->n_embd : 0;
    default: return 0;
    }
}

uint64_t backend_vulkan_fixed_bytes(const model_weights *w, uint32_t n_batch)
{
    const model_dims *d = &w->d;
    uint64_t per_tok = d->n_vocab + 2 * d->rope_dim;
    for (int a = 0; a < ACT_COUNT; a++) per_tok += gpu_act_width(d, w->moe, (act_buf)a);
    return per_tok * n_batch * 4 + ACT_COUNT * ALIGN + gpu_moe_device_bytes(w, n_batch);
}
