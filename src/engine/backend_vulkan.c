/* The Vulkan back end: layers resident in VRAM, run by the shaders of
 * src/backend/vulkan. Ops are recorded into one command buffer and run
 * when the host needs a result (the residual stream back, or logits), so a
 * stretch of GPU layers costs one submission per batch.
 *
 * Device memory, all of it counted against the GPU budget:
 *   weights   per GPU group, one buffer: matrices as in the file, vectors
 *             (norms, biases) converted to f32
 *   KV cache  per GPU layer, K and V: [n_kv_heads][n_ctx][head_dim] f16
 *             (window layers too: the GPU cache does not slide)
 *   act[]     [n_batch][width] f32 as in backend.h, logits [n_batch][n_vocab],
 *             RoPE tables [n_batch][rope_dim] (global and window) */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/vulkan/vkb.h"
#include "engine/backend_vulkan.h"
#include "engine/engine_internal.h"
#include "kernels/cpu/dequant.h"
#include "util/error.h"
#include "util/fmt.h"

#define ALIGN 256
#define UPLOAD_CHUNK (16u << 20)
#define NO_OFFSET UINT64_MAX

typedef struct gpu_group {
    vkb_buf *buf;                 /* the group's tensors; NULL: the group is not on the GPU */
    uint64_t off[LS_COUNT];       /* byte offset of each slot's data (NO_OFFSET: absent) */
    vkb_buf *k_cache, *v_cache;   /* layers only */
} gpu_group;

typedef struct gpu_state {
    vkb *v;
    vkb_buf *act[ACT_COUNT];
    vkb_buf *logits, *cs, *cs_swa;
    gpu_group *groups;            /* n_layers + 1 */
    bool recording;
} gpu_state;

static gpu_state *st_of(backend *b) { return b->state; }
static uint64_t addr(backend *b, act_buf a) { return vkb_addr(st_of(b)->act[a]); }

static void record(backend *b)
{
    gpu_state *g = st_of(b);
    if (!g->recording) vkb_begin(g->v);
    g->recording = true;
}

/* Runs what was recorded (the host is about to read a result). */
static strata_status flush(backend *b, strata_error *err)
{
    gpu_state *g = st_of(b);
    if (!g->recording) return STRATA_OK;
    g->recording = false;
    return vkb_run(g->v, err);
}

/* ---- the group's tensors: which go to the GPU, in which layout ---- */

static const gguf_tensor *const *group_tensors(const model_weights *w, uint32_t g, uint32_t *n)
{
    *n = g < w->d.n_layers ? LS_COUNT : OS_COUNT;
    return g < w->d.n_layers ? w->layer[g] : w->output;
}

static bool is_vector(const model_weights *w, uint32_t g, uint32_t s)
{
    return g < w->d.n_layers ? arch_layer_slot_is_vector((layer_slot)s) : s == OS_NORM;
}

/* Bytes a tensor takes on the device: vectors as f32. */
static uint64_t device_bytes(const gguf_tensor *t, bool vector)
{
    uint64_t n = vector ? t->ne[0] * 4 : t->n_bytes;
    return (n + ALIGN - 1) / ALIGN * ALIGN;
}

static uint64_t layout(const model_weights *w, uint32_t g, uint64_t off[LS_COUNT])
{
    uint32_t n;
    const gguf_tensor *const *t = group_tensors(w, g, &n);
    uint64_t total = 0;
    for (uint32_t s = 0; s < LS_COUNT; s++) off[s] = NO_OFFSET;
    for (uint32_t s = 0; s < n; s++)
        if (t[s]) {
            off[s] = total;
            total += device_bytes(t[s], is_vector(w, g, s));
        }
    return total;
}

/* True when the shaders run every matrix of the group. */
static bool group_supported(const model_weights *w, uint32_t g)
{
    uint32_t n;
    const gguf_tensor *const *t = group_tensors(w, g, &n);
    for (uint32_t s = 0; s < n; s++)
        if (t[s] && !is_vector(w, g, s) &&
            (t[s]->ne[2] > 1 || !vkb_matmul_supported_rows(t[s]->type, (uint32_t)t[s]->ne[0])))
            return false; /* stacked experts run on the CPU (routing happens there) */
    return true;
}

uint64_t backend_vulkan_group_bytes(const model_weights *w, uint32_t g, uint32_t n_ctx)
{
    uint64_t off[LS_COUNT], bytes = layout(w, g, off);
    if (g < w->d.n_layers) bytes += 2 * (uint64_t)n_ctx * w->d.kv_dim * 2;
    return bytes;
}

uint64_t backend_vulkan_fixed_bytes(const model_weights *w, uint32_t n_batch)
{
    const model_dims *d = &w->d;
    uint64_t per_tok = 2 * d->n_embd + 2 * d->q_dim + 2 * d->kv_dim + 2 * d->n_ff + d->n_vocab + 2 * d->rope_dim;
    return per_tok * n_batch * 4 + ACT_COUNT * ALIGN;
}

/* ---- loading ---- */

static strata_status upload_vector(engine *e, gpu_group *gg, const gguf_tensor *t, uint64_t off, uint8_t *tmp,
                                   strata_error *err)
{
    float *f = (float *)(tmp + t->n_bytes); /* after the raw bytes in the same buffer */
    strata_status st = store_read_tensor(e->store, t, 0, tmp, t->n_bytes, err);
    if (!st) st = dequant_row(t->type, tmp, f, t->ne[0], err);
    if (!st) st = vkb_upload(st_of(e->gpu)->v, gg->buf, off, f, t->ne[0] * 4, err);
    return st;
}

static strata_status upload_matrix(engine *e, gpu_group *gg, const gguf_tensor *t, uint64_t off, uint8_t *tmp,
                                   strata_error *err)
{
    strata_status st = STRATA_OK;
    for (uint64_t done = 0; done < t->n_bytes && !st; done += UPLOAD_CHUNK) {
        uint64_t n = t->n_bytes - done < UPLOAD_CHUNK ? t->n_bytes - done : UPLOAD_CHUNK;
        st = store_read_tensor(e->store, t, done, tmp, n, err);
        if (!st) st = vkb_upload(st_of(e->gpu)->v, gg->buf, off + done, tmp, n, err);
    }
    return st;
}

static strata_status load_group(engine *e, uint32_t g, uint8_t *tmp, strata_error *err)
{
    gpu_state *gs = st_of(e->gpu);
    gpu_group *gg = &gs->groups[g];
    uint32_t n;
    const gguf_tensor *const *t = group_tensors(&e->w, g, &n);
    uint64_t bytes = layout(&e->w, g, gg->off);
    strata_status st = vkb_alloc(gs->v, bytes, false, &gg->buf, err);
    for (uint32_t s = 0; s < n && !st; s++) {
        if (!t[s]) continue;
        st = is_vector(&e->w, g, s) ? upload_vector(e, gg, t[s], gg->off[s], tmp, err)
                                    : upload_matrix(e, gg, t[s], gg->off[s], tmp, err);
    }
    uint64_t cache = (uint64_t)e->n_ctx * e->w.d.kv_dim * 2;
    if (!st && g < e->w.d.n_layers) st = vkb_alloc(gs->v, cache, false, &gg->k_cache, err);
    if (!st && g < e->w.d.n_layers) st = vkb_alloc(gs->v, cache, false, &gg->v_cache, err);
    return st;
}

static strata_status alloc_activations(engine *e, strata_error *err)
{
    gpu_state *gs = st_of(e->gpu);
    const model_dims *d = &e->w.d;
    const uint64_t width[ACT_COUNT] = {[ACT_X] = d->n_embd, [ACT_XN] = d->n_embd, [ACT_Q] = d->q_dim,
                                       [ACT_K] = d->kv_dim,  [ACT_V] = d->kv_dim,   [ACT_ATT] = d->q_dim,
                                       [ACT_GATE] = d->n_ff, [ACT_UP] = d->n_ff};
    strata_status st = STRATA_OK;
    for (int a = 0; a < ACT_COUNT && !st; a++) /* the experts' buffers stay empty: experts run on the CPU */
        if (width[a]) st = vkb_alloc(gs->v, width[a] * e->n_batch * 4, false, &gs->act[a], err);
    if (!st) st = vkb_alloc(gs->v, d->n_vocab * e->n_batch * 4, false, &gs->logits, err);
    if (!st) st = vkb_alloc(gs->v, d->rope_dim * e->n_batch * 4, false, &gs->cs, err);
    if (!st) st = vkb_alloc(gs->v, d->rope_dim * e->n_batch * 4, false, &gs->cs_swa, err);
    return st;
}

strata_status backend_vulkan_load(engine *e, strata_error *err)
{
    uint64_t vec_max = 0; /* the staging buffer also holds a vector's raw bytes and its floats */
    for (uint64_t l = 0; l < e->w.d.n_layers; l++)
        for (int s = 0; s < LS_COUNT; s++)
            if (e->w.layer[l][s] && arch_layer_slot_is_vector((layer_slot)s) && e->w.layer[l][s]->ne[0] > vec_max)
                vec_max = e->w.layer[l][s]->ne[0];
    if (e->w.d.n_embd > vec_max) vec_max = e->w.d.n_embd;
    uint8_t *tmp = malloc(UPLOAD_CHUNK > vec_max * 8 ? UPLOAD_CHUNK : vec_max * 8);
    if (!tmp) return err_set(err, STRATA_E_NOMEM, "out of memory for the GPU upload buffer");
    strata_status st = alloc_activations(e, err);
    for (uint32_t g = 0; g <= e->w.d.n_layers && !st; g++)
        if (e->site[g] == e->gpu) st = load_group(e, g, tmp, err);
    free(tmp);
    return st;
}

/* ---- ops ---- */

static strata_status gpu_acquire(backend *b, uint32_t g, be_weight *w, strata_error *err)
{
    const gpu_group *gg = &st_of(b)->groups[g];
    uint32_t n;
    const gguf_tensor *const *t = group_tensors(&b->e->w, g, &n);
    for (uint32_t s = 0; s < n; s++)
        w[s] = (be_weight){.t = t[s], .dev = t[s] ? vkb_addr(gg->buf) + gg->off[s] : 0};
    return STRATA_OK;
}

static void gpu_release(backend *b, uint32_t g) {}

static strata_status gpu_begin_chunk(backend *b, uint32_t n_tok, strata_error *err)
{
    engine *e = b->e;
    gpu_state *g = st_of(b);
    uint64_t bytes = (uint64_t)n_tok * e->w.d.rope_dim * 4;
    strata_status st = flush(b, err);
    if (!st) st = vkb_upload(g->v, g->cs, 0, e->rope_cs, bytes, err);
    if (!st && e->w.d.n_swa) st = vkb_upload(g->v, g->cs_swa, 0, e->rope_cs_swa, bytes, err);
    return st;
}

static strata_status gpu_from_host(backend *b, const float *x, uint32_t n_tok, strata_error *err)
{
    strata_status st = flush(b, err);
    if (!st) st = vkb_upload(st_of(b)->v, st_of(b)->act[ACT_X], 0, x, (uint64_t)n_tok * b->e->w.d.n_embd * 4, err);
    return st;
}

static strata_status gpu_to_host(backend *b, float *x, uint32_t n_tok, strata_error *err)
{
    strata_status st = flush(b, err);
    if (!st) st = vkb_download(st_of(b)->v, st_of(b)->act[ACT_X], 0, x, (uint64_t)n_tok * b->e->w.d.n_embd * 4, err);
    return st;
}

static void gpu_norm(backend *b, act_buf dst, act_buf src, const be_weight *w, uint64_t n, uint64_t rows)
{
    record(b);
    vkb_rmsnorm(st_of(b)->v, addr(b, src), w->dev, addr(b, dst), (uint32_t)n, (uint32_t)rows, b->e->w.d.rms_eps);
    vkb_barrier(st_of(b)->v);
}

static void gpu_matmul(backend *b, const mm_job *jobs, int n_jobs, uint32_t n_tok)
{
    record(b);
    for (int i = 0; i < n_jobs; i++) { /* products of one input, into different outputs: no barrier between */
        const gguf_tensor *t = jobs[i].w->t;
        uint64_t w = jobs[i].w->dev + jobs[i].row0 * ggml_row_bytes(t->type, t->ne[0]);
        vkb_matmul(st_of(b)->v, t->type, w, addr(b, jobs[i].src), addr(b, jobs[i].dst), (uint32_t)t->ne[0],
                   (uint32_t)jobs[i].n_out, n_tok);
    }
    vkb_barrier(st_of(b)->v);
}

static void gpu_add_bias(backend *b, act_buf y, const be_weight *bias, uint64_t n, uint32_t n_tok)
{
    record(b);
    vkb_add_rows(st_of(b)->v, addr(b, y), bias->dev, (uint32_t)n, n_tok);
    vkb_barrier(st_of(b)->v);
}

static void gpu_rope(backend *b, act_buf x, uint64_t n_heads, uint64_t row_stride, bool swa, uint32_t n_tok)
{
    const model_dims *d = &b->e->w.d;
    gpu_state *g = st_of(b);
    record(b);
    vkb_rope(g->v, addr(b, x), vkb_addr(swa ? g->cs_swa : g->cs), n_tok, (uint32_t)n_heads, (uint32_t)d->head_dim,
             (uint32_t)d->rope_dim, (uint32_t)row_stride, b->e->w.arch->rope == ROPE_NEOX);
    vkb_barrier(g->v);
}

static void gpu_attention(backend *b, uint64_t l, uint32_t n_tok)
{
    engine *e = b->e;
    const model_dims *d = &e->w.d;
    gpu_state *g = st_of(b);
    const gpu_group *gg = &g->groups[l];
    uint64_t kc = vkb_addr(gg->k_cache), vc = vkb_addr(gg->v_cache);
    record(b);
    vkb_kv_store(g->v, addr(b, ACT_K), kc, n_tok, (uint32_t)d->n_kv_heads, (uint32_t)d->head_dim, e->n_ctx, e->n_past);
    vkb_kv_store(g->v, addr(b, ACT_V), vc, n_tok, (uint32_t)d->n_kv_heads, (uint32_t)d->head_dim, e->n_ctx, e->n_past);
    vkb_barrier(g->v);
    vkb_attn a = {.q = addr(b, ACT_Q), .k_cache = kc, .v_cache = vc, .out = addr(b, ACT_ATT), .n_tok = n_tok,
                  .n_heads = (uint32_t)d->n_heads, .n_kv_heads = (uint32_t)d->n_kv_heads,
                  .head_dim = (uint32_t)d->head_dim, .kv_len = e->n_ctx, .pos0 = e->n_past,
                  .n_swa = e->w.swa[l] ? (uint32_t)d->n_swa : 0, .slot_base = 0,
                  .scale = 1.0f / sqrtf((float)d->head_dim)};
    vkb_attention(g->v, &a);
    vkb_barrier(g->v);
}

static void gpu_glu(backend *b, uint64_t n)
{
    record(b);
    vkb_glu(st_of(b)->v, addr(b, ACT_GATE), addr(b, ACT_UP), (uint32_t)n, b->e->w.arch->act == ACT_GELU);
    vkb_barrier(st_of(b)->v);
}

static void gpu_add(backend *b, act_buf y, act_buf x, uint64_t n)
{
    record(b);
    vkb_add(st_of(b)->v, addr(b, y), addr(b, x), (uint32_t)n);
    vkb_barrier(st_of(b)->v);
}

static strata_status gpu_logits(backend *b, const be_weight *norm, const be_weight *out, uint32_t first,
                                uint32_t n_tok, float *dst, strata_error *err)
{
    const model_dims *d = &b->e->w.d;
    gpu_state *g = st_of(b);
    uint32_t rows = n_tok - first;
    record(b);
    vkb_rmsnorm(g->v, addr(b, ACT_X) + (uint64_t)first * d->n_embd * 4, norm->dev, addr(b, ACT_XN),
                (uint32_t)d->n_embd, rows, d->rms_eps);
    vkb_barrier(g->v);
    vkb_matmul(g->v, out->t->type, out->dev, addr(b, ACT_XN), vkb_addr(g->logits), (uint32_t)d->n_embd,
               (uint32_t)d->n_vocab, rows);
    strata_status st = flush(b, err);
    if (!st) st = vkb_download(g->v, g->logits, 0, dst, (uint64_t)rows * d->n_vocab * 4, err);
    return st;
}

static const backend_ops VULKAN_OPS = {
    .name = "vulkan",
    .acquire = gpu_acquire,
    .release = gpu_release,
    .begin_chunk = gpu_begin_chunk,
    .from_host = gpu_from_host,
    .to_host = gpu_to_host,
    .norm = gpu_norm,
    .matmul = gpu_matmul,
    .add_bias = gpu_add_bias,
    .rope = gpu_rope,
    .attention = gpu_attention,
    .glu = gpu_glu,
    .moe = NULL, /* expert layers are never placed on the GPU (group_supported) */
    .add = gpu_add,
    .logits = gpu_logits,
};

/* ---- placement and lifetime ---- */

/* Layers from the first on, while they fit in the budget and the shaders
 * run their types; the output too when every layer is on the GPU. */
static uint32_t place(engine *e, uint64_t budget, uint32_t max_layers)
{
    const model_weights *w = &e->w;
    uint64_t fixed = backend_vulkan_fixed_bytes(w, e->n_batch), used = fixed;
    uint32_t n = 0;
    if (fixed >= budget) return 0;
    for (uint32_t g = 0; g <= w->d.n_layers; g++) {
        uint64_t b = backend_vulkan_group_bytes(w, g, e->n_ctx);
        bool allowed = max_layers == 0 || g < max_layers || (g == w->d.n_layers && max_layers >= g);
        if (!allowed || !group_supported(w, g) || used + b > budget) break;
        used += b;
        e->site[g] = e->gpu;
        n++;
    }
    return n;
}

strata_status backend_vulkan_open(engine *e, const engine_gpu *p, uint32_t *n_placed, strata_error *err)
{
    *n_placed = 0;
    backend *b = calloc(1, sizeof *b);
    gpu_state *g = calloc(1, sizeof *g);
    if (g) g->groups = calloc(e->w.d.n_layers + 1, sizeof *g->groups);
    if (!b || !g || !g->groups) {
        free(b);
        if (g) free(g->groups);
        free(g);
        return err_set(err, STRATA_E_NOMEM, "out of memory");
    }
    *b = (backend){.ops = &VULKAN_OPS, .e = e, .state = g};
    e->gpu = b;
    strata_status st = vkb_open(p->index, p->index >= 0, &g->v, err);
    if (st) return st;
    uint64_t budget = vkb_get_info(g->v)->budget_bytes;
    if (p->mem_cap && p->mem_cap < budget) budget = p->mem_cap;
    *n_placed = place(e, budget, p->max_layers);
    return STRATA_OK;
}

void backend_vulkan_free(backend *b)
{
    if (!b) return;
    gpu_state *g = b->state;
    for (uint32_t i = 0; g->v && i <= b->e->w.d.n_layers; i++) {
        vkb_free(g->v, g->groups[i].buf);
        vkb_free(g->v, g->groups[i].k_cache);
        vkb_free(g->v, g->groups[i].v_cache);
    }
    for (int a = 0; g->v && a < ACT_COUNT; a++)
        if (g->act[a]) vkb_free(g->v, g->act[a]);
    if (g->v) {
        vkb_free(g->v, g->logits);
        vkb_free(g->v, g->cs);
        vkb_free(g->v, g->cs_swa);
        vkb_close(g->v);
    }
    free(g->groups);
    free(g);
    free(b);
}

const char *backend_vulkan_device_name(const backend *b) { return vkb_get_info(((gpu_state *)b->state)->v)->name; }
uint64_t backend_vulkan_device_bytes(const backend *b) { return vkb_device_bytes(((gpu_state *)b->state)->v); }
