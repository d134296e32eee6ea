/* The Vulkan back end: layers resident in VRAM, or streamed from RAM each
 * pass (backend_vulkan_stream.h), run by the shaders of
 * src/backend/vulkan. Ops are recorded into one command buffer and run
 * when the host needs a result (the residual stream back, or logits); the
 * token's inputs (RoPE tables, the residual stream from the CPU) and its
 * logits are copied inside that command buffer, so a decoded token on
 * resident layers costs one submission and one host wait (a streamed
 * layer's ops are submitted at its release, without a wait).
 *
 * The files: backend_vulkan.c (open, the KV sets, free), _place.c (which
 * groups go to the GPU), _layout.c (their tensors' layout and device
 * bytes), _load.c (allocation and upload), _record.c (recording and
 * barriers), _ops.c (the op table, fusing neighbouring ops), _acquire.c
 * (a group's weights: resident, or streamed through the ring),
 * _attention.c, _stream.c (the ring), _moe.c (experts), _mem.c (charged
 * allocations); backend_vulkan_internal.h is what they share.
 *
 * Device memory, all of it allocated when the layers are placed (so a
 * driver that runs out of memory means fewer layers, not a failed load)
 * and counted against the GPU budget:
 *   weights   per resident group, one buffer: matrices as in the file,
 *             vectors (norms, biases) converted to f32; streamed groups
 *             share the ring's slots (the same layout, but a layer's
 *             stacked experts: its chosen ones come apart,
 *             backend_vulkan_moe.c)
 *   KV cache  per GPU layer and sequence (n_seq sets, one per context that
 *             can be open: a context takes a set), K and V:
 *             [n_kv_heads][kv_len][head_dim] f16, kv_len = n_ctx, or for
 *             window layers the CPU's window length (engine_kv_len) used as
 *             a ring: position p at slot p mod kv_len
 *   act[]     [n_batch][width] f32 as in backend.h, logits [n_batch][n_vocab],
 *             RoPE tables [n_batch][rope_dim] (global and window)
 *
 * STRATA_VK_STATS=1: at the end, the per-token counts of decode (and per
 * chunk of prompt) on stderr. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/backend_vulkan.h"
#include "engine/backend_vulkan_mem.h"
#include "engine/backend_vulkan_internal.h"
#include "util/error.h"

/* The sets' tables (their buffers come with each layer placed). */
static strata_status alloc_kv_sets(gpu_state *g, uint32_t n, uint32_t n_groups, strata_error *err)
{
    if (!(g->kv = calloc(n, sizeof *g->kv))) return err_set(err, STRATA_E_NOMEM, "out of memory");
    g->n_kv = n;
    for (uint32_t i = 0; i < n; i++) {
        g->kv[i].k = calloc(n_groups, sizeof *g->kv[i].k);
        g->kv[i].v = calloc(n_groups, sizeof *g->kv[i].v);
        if (!g->kv[i].k || !g->kv[i].v) return err_set(err, STRATA_E_NOMEM, "out of memory");
    }
    return STRATA_OK;
}

int backend_vulkan_kv_take(backend *b)
{
    gpu_state *g = st_of(b);
    for (uint32_t i = 0; i < g->n_kv; i++)
        if (!g->kv[i].used) {
            g->kv[i].used = true;
            return (int)i;
        }
    return -1;
}

void backend_vulkan_kv_give(backend *b, int set)
{
    if (set >= 0) st_of(b)->kv[set].used = false;
}

/* The back end and its state, as e->gpu. */
static strata_status new_backend(engine *e, strata_error *err)
{
    backend *b = calloc(1, sizeof *b);
    gpu_state *g = calloc(1, sizeof *g);
    if (g) g->groups = calloc(e->w.d.n_layers + 1, sizeof *g->groups);
    if (!b || !g || !g->groups) {
        free(b);
        if (g) free(g->groups);
        free(g);
        return err_set(err, STRATA_E_NOMEM, "out of memory");
    }
    *b = (backend){.ops = &gpu_vulkan_ops, .e = e, .state = g};
    e->gpu = b;
    const char *fuse = getenv("STRATA_VK_FUSE");
    g->fuse = !(fuse && fuse[0] == '0');
    return STRATA_OK;
}

/* The loader's device p asks for: its index, or -1 (auto: the best GPU,
 * no software device). */
static int device_index(const engine_gpu *p) { return p->mode == ENGINE_GPU_INDEX ? p->index : -1; }

/* The budget placements are held to: the device's, capped by p->mem_cap. */
static uint64_t placement_budget(const vkb_info *info, const engine_gpu *p)
{
    return p->mem_cap && p->mem_cap < info->budget_bytes ? p->mem_cap : info->budget_bytes;
}

strata_status engine_gpu_device_of(const engine_gpu *p, engine_gpu_device *out, strata_error *err)
{
    vkb_info info;
    int index = device_index(p);
    strata_status st = vkb_peek(index, index >= 0, &info, &out->index, err);
    if (st) return st;
    snprintf(out->name, sizeof out->name, "%s", info.name);
    out->is_cpu = info.is_cpu;
    out->budget = placement_budget(&info, p);
    return STRATA_OK;
}

bool engine_gpu_runs_group(const engine_desc *d, uint32_t g) { return gpu_group_supported(d->weights, g); }

/* The device p asks for (vkb's own staging charged to RAM), and the budget
 * placements are held to. */
static strata_status open_device(engine *e, const engine_gpu *p, uint64_t *budget, strata_error *err)
{
    gpu_state *g = st_of(e->gpu);
    int index = device_index(p);
    strata_status st = vkb_open(index, index >= 0, &g->v, err);
    if (!st && !(st = acct_take(e->acct, ACCT_RAM, ACCT_SCRATCH, vkb_own_host_bytes(g->v), err)))
        g->own_host = vkb_own_host_bytes(g->v);
    if (st) return st;
    *budget = placement_budget(vkb_get_info(g->v), p);
    vkb_set_cap(g->v, *budget); /* what the placement computes, the device layer enforces */
    return STRATA_OK;
}

strata_status backend_vulkan_open(engine *e, const engine_gpu *p, uint32_t *n_placed, strata_error *err)
{
    *n_placed = 0;
    strata_status st = new_backend(e, err);
    if (st) return st;
    gpu_state *g = st_of(e->gpu);
    uint64_t budget = 0;
    st = alloc_kv_sets(g, e->n_seq, (uint32_t)e->w.d.n_layers + 1, err);
    if (!st) st = open_device(e, p, &budget, err);
    if (st) return st;
    uint32_t depth = p->stream_depth ? p->stream_depth : p->sites ? ENGINE_PLAN_STREAM_DEPTH : 0;
    if (depth > GPU_STREAM_MAX_DEPTH)
        return err_set(err, STRATA_E_INVALID, "GPU stream depth %u: expected 1 to %u", depth, GPU_STREAM_MAX_DEPTH);
    st = gpu_place(e, p, budget, depth, n_placed, err);
    if (g->note[0]) snprintf(e->gpu_note, sizeof e->gpu_note, "%s", g->note);
    return st;
}

static void print_counts(const char *what, const chunk_stats *c, uint64_t per)
{
    double n = (double)per;
    fprintf(stderr,
            "strata: Vulkan %s: %" PRIu64 " %s; per %s: %.1f dispatches, %.1f barriers, %.1f push-constant updates, "
            "%.1f staged copies, %.1f submissions, %.1f host waits\n",
            what, per, per == c->tokens ? "tokens" : "chunks", per == c->tokens ? "token" : "chunk",
            (double)c->sum.dispatches / n, (double)c->sum.barriers / n, (double)c->sum.push_consts / n,
            (double)c->sum.staged / n, (double)c->sum.submits / n, (double)c->sum.waits / n);
}

/* STRATA_VK_STATS: the per-token (per-chunk) counts on stderr. */
static void print_stats(gpu_state *g)
{
    const char *stats = getenv("STRATA_VK_STATS");
    if (!g->v || !stats || !stats[0] || stats[0] == '0') return;
    gpu_end_chunk(g);
    if (g->decode.tokens) print_counts("decode", &g->decode, g->decode.tokens);
    if (g->prompt.chunks) print_counts("prompt", &g->prompt, g->prompt.chunks);
}

/* The groups' weights and KV caches, and the KV sets' tables. */
static void free_groups(backend *b)
{
    gpu_state *g = b->state;
    mem_account *a = b->e->acct;
    for (uint32_t i = 0; g->v && i <= b->e->w.d.n_layers; i++) {
        gpu_mem_free(g->v, a, ACCT_WEIGHTS, g->groups[i].buf);
        for (uint32_t k = 0; k < g->n_kv; k++) {
            gpu_mem_free(g->v, a, ACCT_KV, g->kv[k].k[i]);
            gpu_mem_free(g->v, a, ACCT_KV, g->kv[k].v[i]);
        }
    }
    for (uint32_t k = 0; k < g->n_kv; k++) {
        free(g->kv[k].k);
        free(g->kv[k].v);
    }
    free(g->kv);
}

/* The ring, the MoE buffers, the activations, logits and RoPE tables, and
 * the device. */
static void free_device(backend *b)
{
    gpu_state *g = b->state;
    mem_account *a = b->e->acct;
    gpu_stream_free(g->stream);
    if (!g->v) return;
    gpu_moe_free(g->v, a, g->moe);
    for (int i = 0; i < ACT_COUNT; i++) gpu_mem_free(g->v, a, ACCT_SCRATCH, g->act[i]);
    gpu_mem_free(g->v, a, ACCT_SCRATCH, g->logits);
    gpu_mem_free(g->v, a, ACCT_SCRATCH, g->cs);
    gpu_mem_free(g->v, a, ACCT_SCRATCH, g->cs_swa);
    acct_give(a, ACCT_RAM, ACCT_SCRATCH, g->own_host);
    vkb_close(g->v);
}

void backend_vulkan_free(backend *b)
{
    if (!b) return;
    gpu_state *g = b->state;
    print_stats(g);
    free_groups(b);
    free_device(b);
    free(g->groups);
    free(g);
    free(b);
}

const char *backend_vulkan_device_name(const backend *b) { return vkb_get_info(((gpu_state *)b->state)->v)->name; }
uint64_t backend_vulkan_device_bytes(const backend *b) { return vkb_device_bytes(((gpu_state *)b->state)->v); }
uint64_t backend_vulkan_device_peak(const backend *b) { return vkb_device_peak(((gpu_state *)b->state)->v); }

uint32_t backend_vulkan_n_streamed(const backend *b, uint32_t *depth)
{
    const gpu_state *g = b->state;
    *depth = g->stream ? gpu_stream_depth(g->stream) : 0;
    return g->n_streamed;
}

uint64_t backend_vulkan_stream_copies(const backend *b) { return ((const gpu_state *)b->state)->stream_copies; }

bool backend_vulkan_streamed(const backend *b, uint32_t g) { return ((const gpu_state *)b->state)->groups[g].streamed; }
