/* Mixture of experts on the Vulkan back end. Per layer on the GPU (its
 * stacked experts resident in VRAM with its group; streamed: below):
 *
 *   1. the router's logits (and the shared expert, if any) on the device;
 *   2. the logits read back ([n_tok][n_expert] floats: the one host wait
 *      of the layer), the experts chosen on the host by moe_route, the
 *      CPU's selection code;
 *   3. the rows routed to each expert gathered in expert order (a batch;
 *      one token reads ACT_XN directly), each chosen expert's gate, up
 *      and down products over its rows with the weights at the expert's
 *      offset in the stacked tensors: an expert's weights are read once
 *      per batch, whatever the number of tokens routed to it;
 *   4. each token's weighted sum of its experts' outputs, in expert-id
 *      order as the CPU adds them, plus the shared expert's output,
 *      into ACT_XN.
 *
 * Steps 3-4 are recorded after the readback and run with the next ops
 * (the rest of the layer and the ones after it), in one submission.
 *
 * A streamed layer (its dense tensors through the RAM->VRAM ring) brings
 * only its chosen experts over the link: after the readback they are
 * pinned in the store's expert cache (read from disk if missing), copied
 * into host-visible staging and from there into device slots of one
 * expert each (gate, up and down slices), in waves of as many as there are
 * slots (a batch routed to more experts waits for each wave's products
 * before the next copy). The products are the resident path's, on the same
 * bytes: the logits equal a resident run's bit for bit.
 *
 * Buffers:
 *   ACT_ROUTER [n_batch][n_expert]           router logits
 *   ACT_XE     [n_batch * k][n_embd]         rows gathered, then the experts' outputs
 *   ACT_GATE, ACT_UP [n_batch][max(n_ff, k n_ff_exp, n_ff_shexp)]
 *   map        [3][n_tok * k] uint32         per selection in expert order: its token (gather),
 *                                            then per token and entry (by expert id): the
 *                                            selection's place, its weight (f32); room for
 *                                            n_batch tokens, a step's n_tok packed
 *   shared     [n_batch][n_embd]             the shared expert's output (NULL: none)
 *   gate       [n_batch]                     its gate's logit per token (NULL: ungated)
 *   xs, stage  [units][unit]                 streamed experts' slots on the device, and their
 *                                            host-visible staging (NULL: nothing streamed) */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend_cpu.h"
#include "engine/backend_vulkan.h"
#include "engine/backend_vulkan_mem.h"
#include "engine/backend_vulkan_moe.h"
#include "engine/engine_internal.h"
#include "engine/moe_route.h"
#include "util/error.h"

#define SLICE_ALIGN 256 /* each slice in a slot: the decode shaders' 16-byte loads, and more */

struct gpu_moe {
    vkb_buf *map, *shared, *gate;
    vkb_buf *xs, *stage;  /* streamed experts' slots and staging */
    uint64_t unit;        /* bytes of a slot: the largest layer's gate, up and down slices, aligned */
    uint32_t units;       /* slots */
    uint32_t *host;       /* [3][n_tok * k] the map built on the host (room for cap) */
    uint32_t *count;      /* [3][n_expert]: selections per expert, their first place, places taken */
    uint64_t cap;         /* n_batch * k */
    uint64_t host_bytes;  /* of host and count, charged as scratch */
};

static bool has_shared(const model_weights *w) { return w->d.n_ff_shexp > 0; }

static bool has_shared_gate(const model_weights *w)
{
    for (uint64_t l = 0; l < w->d.n_layers; l++)
        if (w->layer[l][LS_GATE_INP_SHEXP]) return true;
    return false;
}

static uint64_t aligned(uint64_t n) { return (n + SLICE_ALIGN - 1) / SLICE_ALIGN * SLICE_ALIGN; }

/* One expert's slice of layer l's stacked tensor j (gate, up, down). */
static uint64_t slice_bytes(const model_weights *w, uint64_t l, int j) { return w->exps[l][j]->n_bytes / w->d.n_expert; }

/* A slot: the largest layer's three slices, each aligned. */
static uint64_t unit_bytes(const model_weights *w)
{
    uint64_t unit = 0;
    for (uint64_t l = 0; l < w->d.n_layers; l++) {
        uint64_t u = aligned(slice_bytes(w, l, 0)) + aligned(slice_bytes(w, l, 1)) + aligned(slice_bytes(w, l, 2));
        unit = u > unit ? u : unit;
    }
    return unit;
}

/* Slots for streamed experts: two tokens' worth (a token's in one wave),
 * at most 256 (a run of jobs). */
static uint32_t stream_units(const model_weights *w)
{
    uint64_t n = 2 * w->d.n_expert_used;
    n = n < w->d.n_expert ? n : w->d.n_expert;
    return (uint32_t)(n < 256 ? n : 256);
}

uint64_t gpu_moe_stream_bytes(const model_weights *w) { return w->moe ? stream_units(w) * unit_bytes(w) : 0; }

uint64_t gpu_moe_device_bytes(const model_weights *w, uint32_t n_batch)
{
    if (!w->moe) return 0;
    uint64_t cap = (uint64_t)n_batch * w->d.n_expert_used;
    return 3 * cap * 4 + (has_shared(w) ? (uint64_t)n_batch * w->d.n_embd * 4 : 0) +
           (has_shared_gate(w) ? (uint64_t)n_batch * 4 : 0);
}

strata_status gpu_moe_open(vkb *v, mem_account *a, const model_weights *w, uint32_t n_batch, bool stream_experts,
                           gpu_moe **out, strata_error *err)
{
    *out = NULL;
    if (!w->moe) return STRATA_OK;
    gpu_moe *m = calloc(1, sizeof *m);
    if (!m) return err_set(err, STRATA_E_NOMEM, "out of memory");
    *out = m;
    m->cap = (uint64_t)n_batch * w->d.n_expert_used;
    m->host_bytes = (3 * m->cap + 3 * w->d.n_expert) * 4;
    if (!(m->host = acct_alloc(a, ACCT_SCRATCH, m->host_bytes, err))) return err->status;
    m->count = m->host + 3 * m->cap;
    strata_status st = gpu_mem_alloc(v, a, ACCT_SCRATCH, 3 * m->cap * 4, false, &m->map, err);
    if (!st && has_shared(w))
        st = gpu_mem_alloc(v, a, ACCT_SCRATCH, (uint64_t)n_batch * w->d.n_embd * 4, false, &m->shared, err);
    if (!st && has_shared_gate(w)) st = gpu_mem_alloc(v, a, ACCT_SCRATCH, (uint64_t)n_batch * 4, false, &m->gate, err);
    if (st || !stream_experts) return st;
    m->unit = unit_bytes(w);
    m->units = stream_units(w);
    st = gpu_mem_alloc(v, a, ACCT_SLOTS, m->units * m->unit, false, &m->xs, err);
    if (!st) st = gpu_mem_alloc(v, a, ACCT_SLOTS, m->units * m->unit, true, &m->stage, err);
    return st;
}

void gpu_moe_free(vkb *v, mem_account *a, gpu_moe *m)
{
    if (!m) return;
    gpu_mem_free(v, a, ACCT_SCRATCH, m->map);
    gpu_mem_free(v, a, ACCT_SCRATCH, m->shared);
    gpu_mem_free(v, a, ACCT_SCRATCH, m->gate);
    gpu_mem_free(v, a, ACCT_SLOTS, m->xs);
    gpu_mem_free(v, a, ACCT_SLOTS, m->stage);
    if (m->host) acct_release(a, ACCT_SCRATCH, m->host, m->host_bytes);
    free(m);
}

/* ---- the products ---- */

/* One SwiGLU FFN over `rows` rows: its weights (tensors for type and shape,
 * device addresses of the slices) and its rows' device addresses. */
typedef struct ffn_job {
    const gguf_tensor *gt, *ut, *dt;
    uint64_t gate, up, down;
    uint64_t x, g, u, y;  /* [rows][n_embd] in, [rows][width] gate and up, [rows][n_embd] out */
    uint32_t rows;
} ffn_job;

/* One token, gate and up of one type, the decode shader's alignment: one
 * dispatch for act(gate) * up. */
static bool fused(const ffn_job *j, uint64_t n_in)
{
    return j->rows == 1 && j->gt->type == j->ut->type && vkb_matvec_supported(j->gt->type, (uint32_t)n_in) &&
           (j->gate | j->up | j->x) % 16 == 0;
}

/* The jobs' FFNs, `width` wide, from rows of src_res into rows of
 * dst_res: all gate and up products, then (unfused ones) the GLUs, then
 * all down products, a barrier between the phases only. */
static void run_ffns(backend *b, const ffn_job *j, uint32_t n, uint64_t width, uint32_t src_res, uint32_t dst_res)
{
    vkb *v = backend_vulkan_vkb(b);
    uint32_t E = (uint32_t)b->e->w.d.n_embd, F = (uint32_t)width;
    bool gelu = b->e->w.arch->act == ACT_GELU, any_unfused = false;
    backend_vulkan_op(b, src_res, GPU_RES(ACT_GATE) | GPU_RES(ACT_UP));
    for (uint32_t i = 0; i < n; i++) {
        if (fused(&j[i], E)) {
            vkb_mv mv = {.type = j[i].gt->type, .w = j[i].gate, .up = j[i].up, .x = j[i].x, .y = j[i].g,
                         .n_in = E, .n_out = F, .gelu = gelu};
            vkb_matvec(v, &mv);
            continue;
        }
        any_unfused = true;
        vkb_matmul(v, j[i].gt->type, j[i].gate, j[i].x, j[i].g, E, F, j[i].rows);
        vkb_matmul(v, j[i].ut->type, j[i].up, j[i].x, j[i].u, E, F, j[i].rows);
    }
    if (any_unfused) {
        backend_vulkan_op(b, GPU_RES(ACT_GATE) | GPU_RES(ACT_UP), GPU_RES(ACT_GATE));
        for (uint32_t i = 0; i < n; i++)
            if (!fused(&j[i], E)) vkb_glu(v, j[i].g, j[i].u, F * j[i].rows, gelu);
    }
    backend_vulkan_op(b, GPU_RES(ACT_GATE), dst_res);
    for (uint32_t i = 0; i < n; i++) vkb_matmul(v, j[i].dt->type, j[i].down, j[i].g, j[i].y, F, E, j[i].rows);
}

/* The shared expert over ACT_XN into m->shared, and its gate's logit per
 * token (qwen2moe); recorded before the router's readback, so it runs in
 * the same submission. */
static void shared_expert(backend *b, gpu_moe *m, const be_weight *w, uint32_t n_tok)
{
    const model_dims *d = &b->e->w.d;
    ffn_job j = {.gt = w[LS_GATE_SHEXP].t, .ut = w[LS_UP_SHEXP].t, .dt = w[LS_DOWN_SHEXP].t,
                 .gate = w[LS_GATE_SHEXP].dev, .up = w[LS_UP_SHEXP].dev, .down = w[LS_DOWN_SHEXP].dev,
                 .x = backend_vulkan_act(b, ACT_XN), .g = backend_vulkan_act(b, ACT_GATE),
                 .u = backend_vulkan_act(b, ACT_UP), .y = vkb_addr(m->shared), .rows = n_tok};
    run_ffns(b, &j, 1, d->n_ff_shexp, GPU_RES(ACT_XN), GPU_RES_MOE);
    if (!w[LS_GATE_INP_SHEXP].t) return;
    backend_vulkan_op(b, GPU_RES(ACT_XN), GPU_RES_MOE); /* the gate, one f32 row (a vector on the device) */
    vkb_matmul(backend_vulkan_vkb(b), GGML_TYPE_F32, w[LS_GATE_INP_SHEXP].dev, backend_vulkan_act(b, ACT_XN),
               vkb_addr(m->gate), (uint32_t)d->n_embd, 1, n_tok);
}

/* ---- the host's map of the selections ---- */

/* From e->moe.sel: selections per expert and their first places (experts
 * in id order), each selection's token at its place (rows), and per token
 * its entries in expert-id order: place and weight. */
static void build_map(const engine *e, gpu_moe *m, uint32_t n_tok)
{
    const model_dims *d = &e->w.d;
    uint64_t k = d->n_expert_used, X = d->n_expert;
    uint64_t n_sel = n_tok * k; /* the parts packed for this step: only they are uploaded */
    uint32_t *rows = m->host, *pos = m->host + n_sel, *count = m->count, *first = count + X, *taken = first + X;
    float *wt = (float *)(m->host + 2 * n_sel);
    memset(count, 0, 3 * X * sizeof *count);
    for (uint64_t s = 0; s < n_tok * k; s++) count[e->moe.sel[s]]++;
    for (uint64_t x = 1; x < X; x++) first[x] = first[x - 1] + count[x - 1];
    for (uint32_t t = 0; t < n_tok; t++) {
        const int32_t *sel = e->moe.sel + t * k;
        int32_t last = -1;
        for (uint64_t r = 0; r < k; r++) { /* the next larger expert id among the token's k */
            uint64_t i = k;
            for (uint64_t c = 0; c < k; c++)
                if (sel[c] > last && (i == k || sel[c] < sel[i])) i = c;
            last = sel[i];
            uint32_t p = first[last] + taken[last]++;
            rows[p] = t;
            pos[t * k + r] = p;
            wt[t * k + r] = e->moe.wt[t * k + i];
        }
    }
}

/* The rows of expert x's selections (at place p, count rows): from
 * ACT_XN's token for one token, else gathered in ACT_XE; its gate, up and
 * down rows at the same places; its output into ACT_XE there. Weights:
 * gate, up and down device addresses of its slices. */
static ffn_job expert_job(backend *b, const be_weight *w, const uint64_t wt[3], uint64_t p, uint32_t rows,
                          uint32_t n_tok)
{
    const model_dims *d = &b->e->w.d;
    uint64_t E = d->n_embd, F = d->n_ff_exp, xe = backend_vulkan_act(b, ACT_XE);
    return (ffn_job){.gt = w[LS_GATE_EXPS].t, .ut = w[LS_UP_EXPS].t, .dt = w[LS_DOWN_EXPS].t, .gate = wt[0],
                     .up = wt[1], .down = wt[2], .x = n_tok > 1 ? xe + p * E * 4 : backend_vulkan_act(b, ACT_XN),
                     .g = backend_vulkan_act(b, ACT_GATE) + p * F * 4, .u = backend_vulkan_act(b, ACT_UP) + p * F * 4,
                     .y = xe + p * E * 4, .rows = rows};
}

static void run_jobs(backend *b, const ffn_job *j, uint32_t n, uint32_t n_tok)
{
    run_ffns(b, j, n, b->e->w.d.n_ff_exp, GPU_RES(n_tok > 1 ? ACT_XE : ACT_XN), GPU_RES(ACT_XE));
}

/* A batch's rows gathered in expert order into ACT_XE (one token reads ACT_XN). */
static void gather(backend *b, gpu_moe *m, uint32_t n_tok)
{
    const model_dims *d = &b->e->w.d;
    if (n_tok == 1) return;
    backend_vulkan_op(b, GPU_RES(ACT_XN) | GPU_RES_MOE, GPU_RES(ACT_XE));
    vkb_moe_gather(backend_vulkan_vkb(b), backend_vulkan_act(b, ACT_XE), backend_vulkan_act(b, ACT_XN),
                   vkb_addr(m->map), (uint32_t)d->n_embd, (uint32_t)(n_tok * d->n_expert_used));
}

/* The chosen experts' FFNs, their weights resident at their offsets in the
 * stacked tensors, in runs of 256 experts. */
static void run_resident_experts(backend *b, gpu_moe *m, const be_weight *w, uint32_t n_tok)
{
    uint64_t X = b->e->w.d.n_expert;
    ffn_job jobs[256];
    uint32_t n = 0;
    const uint32_t *count = m->count, *first = count + X;
    for (uint64_t x = 0; x < X; x++) {
        if (!count[x]) continue;
        uint64_t wt[3];
        for (int j = 0; j < 3; j++) wt[j] = w[LS_GATE_EXPS + j].dev + x * (w[LS_GATE_EXPS + j].t->n_bytes / X);
        jobs[n++] = expert_job(b, w, wt, first[x], count[x], n_tok);
        if (n == sizeof jobs / sizeof jobs[0]) {
            run_jobs(b, jobs, n, n_tok);
            n = 0;
        }
    }
    if (n) run_jobs(b, jobs, n, n_tok);
}

/* Experts ids[0..n) of layer l into slots 0..n through the staging (the
 * store's cache pins them, reading the missing ones), the copy recorded. */
static strata_status fill_slots(backend *b, gpu_moe *m, uint64_t l, const int32_t *ids, uint32_t n,
                                strata_error *err)
{
    const model_weights *w = &b->e->w;
    store *s = b->e->store;
    uint8_t *stage = vkb_map(m->stage);
    strata_status st = STRATA_OK;
    for (uint32_t i = 0; i < n && !st; i++) {
        const void *const *data;
        st = store_expert_data(s, (uint32_t)l, ids[i], &data, err);
        for (int j = 0, off = 0; j < 3 && !st; off += (int)aligned(slice_bytes(w, l, j)), j++)
            memcpy(stage + i * m->unit + (uint64_t)off, data[j], slice_bytes(w, l, j));
    }
    store_experts_unpin(s, (uint32_t)l, ids, n);
    if (st) return st;
    backend_vulkan_op(b, 0, 0);
    vkb_copy(backend_vulkan_vkb(b), m->stage, 0, m->xs, 0, n * m->unit);
    vkb_copy_barrier(backend_vulkan_vkb(b));
    return STRATA_OK;
}

/* A streamed layer's chosen experts (in id order) copied into the slots
 * and run, in waves of what the slots (and the store's cache) hold. */
static strata_status run_streamed_experts(backend *b, gpu_moe *m, uint64_t l, const be_weight *w, uint32_t n_tok,
                                          strata_error *err)
{
    engine *e = b->e;
    uint64_t X = e->w.d.n_expert;
    const uint32_t *count = m->count, *first = count + X;
    int32_t *ids = e->moe.ids; /* the CPU's scratch: the CPU runs no layer meanwhile */
    uint32_t n = 0;
    for (uint64_t x = 0; x < X; x++)
        if (count[x]) ids[n++] = (int32_t)x;
    strata_status st = STRATA_OK;
    for (uint32_t done = 0, taken = 0; done < n && !st; done += taken) {
        if (done && (st = backend_vulkan_flush(b, err))) break; /* the last wave's products read the slots */
        uint32_t want = n - done < m->units ? n - done : m->units;
        if ((st = store_experts_pin(e->store, (uint32_t)l, ids + done, want, &taken, err))) break;
        if (!taken) /* cannot happen with nothing pinned; never loop on it */
            return err_set(err, STRATA_E_NOMEM, "the expert cache has no slot free for layer %" PRIu64, l);
        if ((st = fill_slots(b, m, l, ids + done, taken, err))) break;
        ffn_job jobs[256];
        for (uint32_t i = 0; i < taken; i++) {
            uint64_t slot = vkb_addr(m->xs) + i * m->unit, wt[3] = {slot, slot + aligned(slice_bytes(&e->w, l, 0))};
            wt[2] = wt[1] + aligned(slice_bytes(&e->w, l, 1));
            jobs[i] = expert_job(b, w, wt, first[ids[done + i]], count[ids[done + i]], n_tok);
        }
        run_jobs(b, jobs, taken, n_tok);
    }
    return st;
}

strata_status backend_vulkan_moe(backend *b, uint64_t l, const be_weight *w, uint32_t n_tok, strata_error *err)
{
    engine *e = b->e;
    const model_dims *d = &e->w.d;
    gpu_moe *m = backend_vulkan_moe_state(b);
    vkb *v = backend_vulkan_vkb(b);
    uint64_t k = d->n_expert_used;
    bool shared = m->shared && w[LS_GATE_SHEXP].t; /* this layer has one */
    backend_vulkan_op(b, GPU_RES(ACT_XN), GPU_RES(ACT_ROUTER));
    vkb_matmul(v, w[LS_ROUTER].t->type, w[LS_ROUTER].dev, backend_vulkan_act(b, ACT_XN),
               backend_vulkan_act(b, ACT_ROUTER), (uint32_t)d->n_embd, (uint32_t)d->n_expert, n_tok);
    if (shared) shared_expert(b, m, w, n_tok);
    /* a decode step reads the next layer's experts ahead when they come from the store; the router
     * predictor needs the residual as it is now: back with the logits, in the same wait */
    bool router = e->moe.prefetch == ENGINE_MOE_PREFETCH_ROUTER;
    bool residual = n_tok == 1 && router && l + 1 < d->n_layers && e->w.expert_sets[l + 1].n &&
                    backend_vulkan_get_later(b, ACT_X, e->act[ACT_X], d->n_embd * 4);
    strata_status st = backend_vulkan_get(b, ACT_ROUTER, e->act[ACT_ROUTER], (uint64_t)n_tok * d->n_expert * 4, err);
    if (st) return st;
    moe_route(e, l, e->act[ACT_ROUTER], n_tok);
    build_map(e, m, n_tok);
    uint64_t n_sel = (uint64_t)n_tok * k, map = vkb_addr(m->map);
    if ((st = backend_vulkan_put(b, m->map, m->host, 3 * n_sel * 4, err))) return st;
    gather(b, m, n_tok);
    if (backend_vulkan_streamed(b, (uint32_t)l)) st = run_streamed_experts(b, m, l, w, n_tok, err);
    else run_resident_experts(b, m, w, n_tok);
    if (st) return st;
    /* the next layer's experts read ahead while this one's products run */
    if (n_tok == 1 && (!router || residual)) backend_cpu_moe_prefetch_next(&e->cpu, l, n_tok);
    backend_vulkan_op(b, GPU_RES(ACT_XE) | GPU_RES_MOE, GPU_RES(ACT_XN));
    vkb_moe_sum s = {.out = backend_vulkan_act(b, ACT_XN), .y = backend_vulkan_act(b, ACT_XE),
                     .pos = map + n_sel * 4, .wt = map + 2 * n_sel * 4, .shared = shared ? vkb_addr(m->shared) : 0,
                     .gate = shared && w[LS_GATE_INP_SHEXP].t ? vkb_addr(m->gate) : 0, .n = (uint32_t)d->n_embd,
                     .k = (uint32_t)k, .n_tok = n_tok};
    vkb_moe_combine(v, &s);
    return STRATA_OK;
}
