/* Engine lifecycle: binding the weights, sizing the KV cache and scratch
 * buffers, opening the store. The forward pass is in forward.c. */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend_cpu.h"
#include "engine/backend_vulkan.h"
#include "engine/engine.h"
#include "engine/engine_internal.h"
#include "engine/matmul.h"
#include "engine/ops.h"
#include "engine/threadpool.h"
#include "kernels/cpu/dequant.h"
#include "kernels/cpu/geglu.h"
#include "store/store.h"
#include "util/error.h"
#include "util/fmt.h"
#include "util/fp16.h"


/* ---- memory ---- */

/* Buffers are faulted in at once: a budget the machine cannot honour then
 * fails at load rather than mid-generation, and the process's real memory
 * is what the accounting says from the first token on. */
static void *alloc_zeroed(uint64_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    memset(p, 0, bytes);
    return p;
}

/* A scratch buffer through the account (taken before it is touched). */
static void *scratch(engine *e, uint64_t bytes)
{
    void *p = acct_alloc(e->acct, ACCT_SCRATCH, bytes, NULL);
    if (p) e->scratch_bytes += bytes;
    return p;
}

static uint64_t max_act_bytes(const model_weights *w, uint64_t n_batch)
{
    uint64_t m = matmul_act_bytes(w->kern_output, w->d.n_embd, n_batch);
    for (uint64_t l = 0; l < w->d.n_layers; l++)
        for (int s = 0; s < LS_COUNT; s++) {
            if (!w->kern[l][s]) continue; /* vectors and absent slots have no matrix kernel */
            uint64_t b = matmul_act_bytes(w->kern[l][s], w->layer[l][s]->ne[0], n_batch);
            if (b > m) m = b;
        }
    return m;
}

uint64_t engine_scores_per_thread(const model_dims *d, uint64_t n_ctx)
{
    return d->n_heads / d->n_kv_heads * n_ctx;
}

/* Longest vector (norm weight, bias) the forward pass converts to floats. */
static uint64_t max_vec_len(const model_dims *d)
{
    uint64_t n = d->n_embd > d->q_dim ? d->n_embd : d->q_dim;
    return n > d->kv_dim ? n : d->kv_dim;
}

/* Every buffer the engine allocates, in one place: alloc_buffers uses it,
 * and so does engine_describe (the planner asks the engine, it does not
 * duplicate the formulas). */
typedef struct buffer_sizes {
    uint64_t cache_k, cache_v; /* the K and V caches (the reserve of every sequence) */
    uint64_t act[ACT_COUNT];
    uint64_t vec, rope_cs, rope_factors, scores, act_scratch;
    uint64_t moe; /* moe_state's buffers */
    uint64_t batch; /* the batch's tokens, sequences, positions, entries, output rows */
} buffer_sizes;

/* Width of the FFN's gate and up rows: dense, one expert's or the shared expert's. */
static uint64_t ffn_width(const model_dims *d)
{
    uint64_t w = d->n_ff > d->n_ff_exp ? d->n_ff : d->n_ff_exp;
    return w > d->n_ff_shexp ? w : d->n_ff_shexp;
}

/* One cache (K or V) of n_seq sequences of n_ctx, every layer on the CPU:
 * rows of head_dim values in the type's bytes (f32 4, f16 2, q8_0 34/32,
 * q4_0 18/32 per value). */
static uint64_t kv_cache_bytes(const model_weights *w, uint32_t n_seq, uint32_t n_ctx, uint32_t n_batch,
                               uint32_t kv_type)
{
    uint64_t slots = 0;
    for (uint64_t l = 0; l < w->d.n_layers; l++) slots += engine_kv_len(w, l, n_ctx, n_batch);
    return n_seq * slots * w->d.n_kv_heads * kv_row_bytes(kv_type, w->d.head_dim);
}

/* moe_state's buffers, in its order (engine_internal.h). */
#define MOE_BUFS 11
static void moe_sizes(const model_dims *d, uint64_t B, uint64_t z[MOE_BUFS])
{
    uint64_t k = d->n_expert_used;
    uint64_t s[MOE_BUFS] = {B * k * 4, B * k * 4, B * 4, B * k * d->n_embd * 4, d->n_expert * 4, d->n_expert,
                            d->n_layers * k * 4, d->n_expert * 4, d->n_embd * 4,
                            d->n_ff_shexp ? B * d->n_embd * 4 : 0, d->n_layers * d->n_expert * 4};
    memcpy(z, s, sizeof s);
}

static uint64_t moe_bytes(const model_dims *d, uint64_t B)
{
    uint64_t z[MOE_BUFS], sum = 0;
    moe_sizes(d, B, z);
    for (int i = 0; i < MOE_BUFS; i++) sum += z[i];
    return sum;
}

static buffer_sizes sizes_for(const model_weights *w, uint32_t n_seq, uint32_t n_ctx, uint32_t B, uint32_t k_type,
                              uint32_t v_type, int n_threads)
{
    const model_dims *d = &w->d;
    return (buffer_sizes){
        .cache_k = kv_cache_bytes(w, n_seq, n_ctx, B, k_type), .cache_v = kv_cache_bytes(w, n_seq, n_ctx, B, v_type),
        .act = {[ACT_X] = B * d->n_embd * 4, [ACT_XN] = B * d->n_embd * 4, [ACT_Q] = B * d->q_dim * 4,
                [ACT_K] = B * d->kv_dim * 4, [ACT_V] = B * d->kv_dim * 4, [ACT_ATT] = B * d->q_dim * 4,
                [ACT_GATE] = B * ffn_width(d) * 4, [ACT_UP] = B * ffn_width(d) * 4,
                [ACT_ROUTER] = B * d->n_expert * 4, [ACT_XE] = w->moe ? B * d->n_embd * 4 : 0},
        .moe = w->moe ? moe_bytes(d, B) : 0,
        .batch = B * (sizeof(int32_t) + sizeof(engine_seq *) + sizeof(uint32_t) + sizeof(engine_entry) +
                      sizeof(uint32_t)),
        .vec = max_vec_len(d) * 4, .rope_cs = 2 * B * d->rope_dim * 4, .rope_factors = d->rope_dim / 2 * 4,
        .scores = (uint64_t)n_threads * engine_scores_per_thread(d, n_ctx) * 4, .act_scratch = max_act_bytes(w, B),
    };
}

static uint64_t sizes_total(const buffer_sizes *z)
{
    uint64_t sum = z->cache_k + z->cache_v + z->vec + z->rope_cs + z->rope_factors + z->scores + z->act_scratch + z->moe +
                   z->batch;
    for (int a = 0; a < ACT_COUNT; a++) sum += z->act[a];
    return sum;
}

/* A sequence's CPU KV cache: layers that run elsewhere keep theirs there.
 * Returns the cached rows (KV heads x slots) of all layers, in K and again
 * in V. */
static uint64_t seq_layout(const engine *e, uint32_t n_ctx, uint64_t *kv_off, uint32_t *kv_len)
{
    const model_dims *d = &e->w.d;
    uint64_t off = 0;
    for (uint64_t l = 0; l < d->n_layers; l++) {
        uint32_t len = e->site[l] == &e->cpu ? engine_kv_len(&e->w, l, n_ctx, e->n_batch) : 0;
        if (kv_len) kv_len[l] = len;
        if (kv_off) kv_off[l] = off;
        off += d->n_kv_heads * len;
    }
    return off;
}

uint64_t engine_seq_bytes(const engine *e, uint32_t n_ctx)
{
    return seq_layout(e, n_ctx ? n_ctx : e->n_ctx, NULL, NULL) * (e->k_head_bytes + e->v_head_bytes);
}

uint64_t engine_kv_free(const engine *e) { return e->kv_reserve - e->kv_used; }

static strata_status seq_check(const engine *e, uint32_t n_ctx, uint64_t bytes, strata_error *err)
{
    char a[32], b[32], c[32];
    if (n_ctx > e->n_ctx)
        return err_set(err, STRATA_E_INVALID, "a context of %" PRIu32 " tokens exceeds the model's %" PRIu32 " (-c)",
                       n_ctx, e->n_ctx);
    if (bytes > e->kv_reserve - e->kv_used)
        return err_set(err, STRATA_E_NOMEM, "a context of %" PRIu32 " tokens needs %s of KV cache; the reserve (%s) "
                       "has %s free (raise -np, or free a context)", n_ctx, fmt_bytes(bytes, a, 32),
                       fmt_bytes(e->kv_reserve, b, 32), fmt_bytes(e->kv_reserve - e->kv_used, c, 32));
    return STRATA_OK;
}

strata_status engine_seq_new(engine *e, uint32_t n_ctx, engine_seq **out, strata_error *err)
{
    *out = NULL;
    if (!n_ctx) n_ctx = e->n_ctx;
    uint64_t bytes = engine_seq_bytes(e, n_ctx), n_layers = e->w.d.n_layers;
    strata_status st = seq_check(e, n_ctx, bytes, err);
    if (st) return st;
    int gpu_kv = e->gpu ? backend_vulkan_kv_take(e->gpu) : -1;
    if (e->gpu && gpu_kv < 0)
        return err_set(err, STRATA_E_NOMEM, "the GPU holds the KV caches of %" PRIu32 " contexts, all in use "
                       "(raise -np, or free a context)", e->n_seq);
    engine_seq *s = calloc(1, sizeof *s);
    if (s) *s = (engine_seq){.e = e, .n_ctx = n_ctx, .kv_off = calloc(n_layers, sizeof *s->kv_off),
                             .kv_len = calloc(n_layers, sizeof *s->kv_len), .gpu_kv = gpu_kv};
    else if (e->gpu) backend_vulkan_kv_give(e->gpu, gpu_kv);
    if (s && s->kv_off && s->kv_len) {
        uint64_t rows = seq_layout(e, n_ctx, s->kv_off, s->kv_len);
        s->k_cache = alloc_zeroed(rows * e->k_head_bytes);
        s->v_cache = alloc_zeroed(rows * e->v_head_bytes);
    }
    if (!s || !s->kv_off || !s->kv_len || !s->k_cache || !s->v_cache) {
        if (s && e->gpu) backend_vulkan_kv_give(e->gpu, gpu_kv);
        if (s) s->e = NULL; /* nothing taken from the reserve yet */
        engine_seq_free(s);
        return err_set(err, STRATA_E_NOMEM, "out of memory for a %" PRIu32 "-token context", n_ctx);
    }
    s->bytes = bytes;
    e->kv_used += bytes;
    acct_move(e->acct, ACCT_RAM, ACCT_KV_RESERVE, ACCT_KV, bytes); /* seq_check: the reserve holds them */
    e->n_seqs++;
    *out = s;
    return STRATA_OK;
}

void engine_seq_free(engine_seq *s)
{
    if (!s) return;
    if (s->e) {
        s->e->kv_used -= s->bytes;
        acct_move(s->e->acct, ACCT_RAM, ACCT_KV, ACCT_KV_RESERVE, s->bytes);
        s->e->n_seqs--;
        if (s->e->own == s) s->e->own = NULL;
        if (s->e->gpu) backend_vulkan_kv_give(s->e->gpu, s->gpu_kv);
    }
    free(s->k_cache);
    free(s->v_cache);
    free(s->kv_off);
    free(s->kv_len);
    free(s);
}

void engine_seq_reset(engine_seq *s)
{
    s->n_past = 0;
    s->swa_base = 0;
}

uint32_t engine_seq_n_past(const engine_seq *s) { return s->n_past; }
uint32_t engine_seq_n_ctx(const engine_seq *s) { return s->n_ctx; }

static bool alloc_moe(engine *e)
{
    moe_state *m = &e->moe;
    uint64_t z[MOE_BUFS];
    moe_sizes(&e->w.d, e->n_batch, z);
    void **p[MOE_BUFS] = {(void **)&m->sel, (void **)&m->wt, (void **)&m->rows, (void **)&m->out,
                          (void **)&m->ids, (void **)&m->done, (void **)&m->prev, (void **)&m->pred,
                          (void **)&m->pred_x, (void **)&m->shared, (void **)&m->picks};
    bool ok = true;
    for (int i = 0; i < MOE_BUFS; i++) ok = (!z[i] || (*p[i] = scratch(e, z[i]))) && ok;
    for (uint64_t i = 0; ok && i < e->w.d.n_layers * e->w.d.n_expert_used; i++) m->prev[i] = -1;
    if (ok && m->picks) memset(m->picks, 0, e->w.d.n_layers * e->w.d.n_expert * sizeof *m->picks);
    return ok;
}

/* Before anything is allocated: the account's room must hold the KV
 * reserve and every buffer (`need`), else the message says what holds it. */
static strata_status budget_check(engine *e, uint64_t need, strata_error *err)
{
    uint64_t room = acct_room(e->acct, ACCT_RAM), budget = acct_budget(e->acct, ACCT_RAM);
    if (room == UINT64_MAX || need < room) return STRATA_OK;
    char a[32], b[32], r[32];
    return err_set(err, STRATA_E_NOMEM, "a budget of %s cannot hold the process (%s) and the KV cache and buffers "
                   "(%s) of a %" PRIu32 "-token context", fmt_bytes(budget, a, 32),
                   fmt_bytes(budget - room, r, 32), fmt_bytes(need, b, 32), e->n_ctx);
}

/* Scratch buffers, and the KV reserve of n_seq sequences of n_ctx (the
 * sequences allocate their caches when they open). */
static strata_status alloc_buffers(engine *e, uint32_t n_seq, strata_error *err)
{
    const model_dims *d = &e->w.d;
    buffer_sizes z = sizes_for(&e->w, n_seq, e->n_ctx, e->n_batch, e->kv_type_k, e->kv_type_v, pool_size(e->pool));
    e->k_head_bytes = kv_row_bytes(e->kv_type_k, d->head_dim);
    e->v_head_bytes = kv_row_bytes(e->kv_type_v, d->head_dim);
    e->kv = kv_ops_for(e->kv_type_k, e->kv_type_v, e->kernels == KERNEL_FAST);
    e->glu = e->w.arch->act == ACT_GELU ? geglu_f16 : swiglu_get(e->kernels == KERNEL_FAST);
    e->kv_reserve = n_seq * engine_seq_bytes(e, e->n_ctx);
    strata_status st = budget_check(e, sizes_total(&z), err);
    if (st) return st;
    /* the contexts' KV caches are taken from the reserve as they open */
    if ((st = acct_take(e->acct, ACCT_RAM, ACCT_KV_RESERVE, e->kv_reserve, err))) return st;
    e->kv_reserve_taken = true;
    bool ok = true;
    for (int a = 0; a < ACT_COUNT; a++) ok = (e->act[a] = scratch(e, z.act[a])) && ok;
    e->vec = scratch(e, z.vec);
    e->rope_cs = scratch(e, z.rope_cs);
    e->rope_factors = scratch(e, z.rope_factors);
    e->scores = scratch(e, z.scores);
    e->act_scratch = scratch(e, z.act_scratch);
    e->tok_id = scratch(e, e->n_batch * sizeof *e->tok_id);
    e->tok_seq = scratch(e, e->n_batch * sizeof *e->tok_seq);
    e->tok_pos = scratch(e, e->n_batch * sizeof *e->tok_pos);
    e->entries = scratch(e, e->n_batch * sizeof *e->entries);
    e->out_rows = scratch(e, e->n_batch * sizeof *e->out_rows);
    if (e->w.moe) ok = alloc_moe(e) && ok;
    if (!ok || !e->vec || !e->rope_cs || !e->rope_factors || !e->scores || !e->act_scratch || !e->tok_id ||
        !e->tok_seq || !e->tok_pos || !e->entries || !e->out_rows)
        return err_set(err, STRATA_E_NOMEM, "%s: the buffers of a %" PRIu32 "-token batch",
                       acct_refusals(e->acct) ? "over the memory budget" : "out of memory", e->n_batch);
    e->rope_cs_swa = e->rope_cs + (uint64_t)e->n_batch * d->rope_dim;
    return STRATA_OK;
}

/* A KV cache type as a ggml type id; UINT32_MAX for an unknown value. */
static uint32_t kv_ggml_type(strata_kv_type t, bool f32)
{
    switch (t) {
    case STRATA_KV_DEFAULT: return f32 ? GGML_TYPE_F32 : GGML_TYPE_F16;
    case STRATA_KV_F16: return GGML_TYPE_F16;
    case STRATA_KV_F32: return GGML_TYPE_F32;
    case STRATA_KV_Q8_0: return GGML_TYPE_Q8_0;
    case STRATA_KV_Q4_0: return GGML_TYPE_Q4_0;
    }
    return UINT32_MAX;
}

/* The K (which = "K") or V cache type, checked against the head size. */
static strata_status kv_type_of(strata_kv_type t, bool f32, const char *which, const model_dims *d, uint32_t *out,
                                strata_error *err)
{
    *out = kv_ggml_type(t, f32);
    if (*out == UINT32_MAX || !kv_type_supported(*out))
        return err_set(err, STRATA_E_INVALID, "%s cache type %d: expected f32, f16, q8_0 or q4_0", which, (int)t);
    if (kv_type_blocked(*out) && d->head_dim % 32)
        return err_set(err, STRATA_E_UNSUPPORTED, "a %s %s cache needs a head dimension that is a multiple of 32; "
                       "this model's is %" PRIu64 " (use f16 or f32)", kv_type_name(*out), which, d->head_dim);
    return STRATA_OK;
}

/* Context, batch and KV types after defaults, validated. */
static strata_status resolve(const model_spec *spec, const model_dims *d, const engine_params *p, uint32_t *n_ctx,
                             uint32_t *n_batch, uint32_t *k_type, uint32_t *v_type, strata_error *err)
{
    uint64_t ctx = p->n_ctx ? p->n_ctx : spec->hp.context_length;
    if (ctx == 0) ctx = 2048;
    if (ctx > (1u << 24)) return err_set(err, STRATA_E_INVALID, "context of %" PRIu64 " tokens is too large", ctx);
    *n_ctx = (uint32_t)ctx;
    *n_batch = p->n_batch ? p->n_batch : 256;
    if (*n_batch > *n_ctx) *n_batch = *n_ctx;
    strata_status st = kv_type_of(p->kv_type_k, p->kv_f32, "K", d, k_type, err);
    return st ? st : kv_type_of(p->kv_type_v, p->kv_f32, "V", d, v_type, err);
}

/* The prefetch predictor, and the routing trace when STRATA_MOE_TRACE
 * names a file (for studying routing and cache policies offline). */
static strata_status moe_settings(engine *e, const engine_params *p, strata_error *err)
{
    e->moe.prefetch = p->moe_prefetch;
    const char *path = getenv("STRATA_MOE_TRACE");
    if (!path || !path[0]) return STRATA_OK;
    if (!(e->moe.trace = fopen(path, "w")))
        return err_set(err, STRATA_E_IO, "STRATA_MOE_TRACE: cannot write '%s'", path);
    return STRATA_OK;
}

static strata_status configure(engine *e, const model_spec *spec, const engine_params *p, strata_error *err)
{
    e->kernels = p->kernels;
    strata_status st = resolve(spec, &e->w.d, p, &e->n_ctx, &e->n_batch, &e->kv_type_k, &e->kv_type_v, err);
    if (st) return st;
    e->n_seq = p->n_seq ? p->n_seq : 1;
    if (!(e->pool = pool_new(p->n_threads > 0 ? p->n_threads : 1)))
        return err_set(err, STRATA_E_NOMEM, "cannot start %d threads", p->n_threads);
    backend_cpu_init(&e->cpu, e);
    e->site = calloc(e->w.d.n_layers + 1, sizeof *e->site);
    e->site_prefill = calloc(e->w.d.n_layers + 1, sizeof *e->site_prefill);
    if (!e->site || !e->site_prefill) return err_set(err, STRATA_E_NOMEM, "out of memory");
    for (uint64_t g = 0; g <= e->w.d.n_layers; g++) e->site[g] = e->site_prefill[g] = &e->cpu;
    e->pass_site = e->site;
    return STRATA_OK;
}

/* The Vulkan back end keeps its layers' KV caches in f16 (its shaders read
 * no other type): another requested type applies to the CPU's layers only,
 * and the placement note says so (`run` prints it once on stderr). */
static void gpu_kv_note(engine *e)
{
    if (e->kv_type_k == GGML_TYPE_F16 && e->kv_type_v == GGML_TYPE_F16) return;
    size_t len = strlen(e->gpu_note);
    char types[48];
    if (e->kv_type_k == e->kv_type_v) snprintf(types, sizeof types, "%s", kv_type_name(e->kv_type_k));
    else snprintf(types, sizeof types, "K %s, V %s", kv_type_name(e->kv_type_k), kv_type_name(e->kv_type_v));
    snprintf(e->gpu_note + len, sizeof e->gpu_note - len, "%sthe GPU layers' KV cache is f16 (the GPU runs f16 KV "
             "caches only; %s applies to the CPU's layers)", len ? "; " : "", types);
}

/* Layers on the GPU (when one is asked for and usable); their store groups
 * (and expert sets) are emptied, so the store neither holds nor streams them. Without a
 * usable device in auto mode the run stays on the CPU, and says why. */
static strata_status open_gpu(engine *e, const engine_params *p, strata_error *err)
{
    if (p->gpu.mode == ENGINE_GPU_OFF) return STRATA_OK;
    uint32_t n = 0, groups = (uint32_t)e->w.d.n_layers + 1;
    strata_error gerr = {0};
    strata_status st = backend_vulkan_open(e, &p->gpu, &n, &gerr);
    if (st && p->gpu.mode == ENGINE_GPU_INDEX) {
        if (err) *err = gerr;
        return st;
    }
    if (st || n == 0) {
        if (st || !e->gpu_note[0]) /* else the back end said why (a refused allocation) */
            snprintf(e->gpu_note, sizeof e->gpu_note, "%s", st ? gerr.message : "no layer fits in the GPU's memory");
        for (uint32_t g = 0; g < groups; g++) e->site[g] = e->site_prefill[g] = &e->cpu;
        backend_vulkan_free(e->gpu);
        e->gpu = NULL;
        return STRATA_OK;
    }
    for (uint32_t g = 0; g < groups; g++) /* a streamed group stays in the store, which feeds the ring */
        if (e->site[g] == e->gpu && !backend_vulkan_streamed(e->gpu, g)) {
            e->w.groups[g].n = 0;
            if (e->w.moe && g < e->w.d.n_layers) e->w.expert_sets[g].n = 0; /* its experts are in VRAM too */
        }
    if (n < groups && !p->gpu.sites) { /* the count, then the back end's reason if it gave one */
        char why[sizeof e->gpu_note];
        snprintf(why, sizeof why, "%s", e->gpu_note);
        bool output = e->site[groups - 1] == e->gpu; /* placed (streamed when the layers before it are not) */
        snprintf(e->gpu_note, sizeof e->gpu_note, "%u of %u layers fit in the GPU's memory%s%s%.300s",
                 n - output, groups - 1, output ? "" : " (the output stays on the CPU)", why[0] ? ": " : "", why);
    }
    gpu_kv_note(e);
    return STRATA_OK;
}

/* Measured here: 3.3-3.9 MiB for code, libraries, stacks, header and a small
 * vocabulary; the header term covers larger vocabularies. */
uint64_t engine_process_reserve(const gguf_file *f) { return (5ull << 20) + 2 * f->bytes_read; }

/* Scratch bytes (KV caches excluded) at n_ctx and batch B. */
static uint64_t scratch_at(const model_weights *w, uint32_t n_ctx, uint32_t B, int n_threads)
{
    buffer_sizes z = sizes_for(w, 1, n_ctx, B, GGML_TYPE_F16, GGML_TYPE_F16, n_threads);
    return sizes_total(&z) - z.cache_k - z.cache_v;
}

/* The coefficients of the memory model: every term of sizes_for is linear
 * in n_ctx and in the batch (the KV cache too, at one token: every layer
 * full length), so three points give them exactly. */
static void memory_model(const model_weights *w, int n_threads, engine_desc *out)
{
    uint64_t s11 = scratch_at(w, 1, 1, n_threads), s21 = scratch_at(w, 2, 1, n_threads);
    uint64_t s12 = scratch_at(w, 1, 2, n_threads);
    out->per_ctx = s21 - s11;
    out->per_batch = s12 - s11;
    out->fixed = s11 - out->per_ctx - out->per_batch;
    static const uint32_t kv_types[ENGINE_KV_KINDS] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0};
    for (int k = 0; k < ENGINE_KV_KINDS; k++) out->kv_per_token[k] = 2 * kv_cache_bytes(w, 1, 1, 1, kv_types[k]);
}

strata_status engine_describe(const gguf_file *f, const model_spec *spec, const engine_params *p, engine_desc *out,
                              strata_error *err)
{
    memset(out, 0, sizeof *out);
    model_weights *w = calloc(1, sizeof *w);
    if (!w) return err_set(err, STRATA_E_NOMEM, "out of memory");
    out->weights = w;
    strata_status st = weights_bind(f, spec, f->splits[0].path, w, err);
    if (!st) st = backend_cpu_select_kernels(w, p->kernels, err);
    if (!st) st = resolve(spec, &w->d, p, &out->n_ctx, &out->n_batch, &out->kv_type_k, &out->kv_type_v, err);
    if (st) return st;
    int threads = p->n_threads > 0 ? p->n_threads : 1;
    buffer_sizes z = sizes_for(w, p->n_seq ? p->n_seq : 1, out->n_ctx, out->n_batch, out->kv_type_k, out->kv_type_v,
                               threads);
    out->kv_bytes = z.cache_k + z.cache_v;
    out->buffer_bytes = sizes_total(&z);
    memory_model(w, threads, out);
    out->n_groups = (uint32_t)w->d.n_layers + 1;
    out->groups = w->groups;
    out->n_expert_sets = w->moe ? (uint32_t)w->d.n_layers : 0;
    out->expert_sets = w->expert_sets;
    return STRATA_OK;
}

void engine_desc_free(engine_desc *d)
{
    if (d->weights) weights_free(d->weights);
    free(d->weights);
    memset(d, 0, sizeof *d);
}

/* The weights go in what the account has left after the process, the KV
 * reserve and the buffers: placed by the caller's plan or here
 * (engine_place_weights), executed by the store. */
static strata_status open_store(engine *e, const engine_params *p, strata_error *err)
{
    store_config sc = p->store;
    char a[32], b[32], c[32], d[32], r[32];
    uint64_t fixed = acct_used(e->acct, ACCT_RAM), budget = acct_budget(e->acct, ACCT_RAM);
    uint64_t process = fixed - e->scratch_bytes - e->kv_reserve; /* the caller's part: process, prompt */
    sc.account = e->acct;
    sc.later_bytes = e->kv_reserve - e->kv_used; /* contexts take their KV cache at first use */
    sc.n_expert_sets = e->w.moe ? (uint32_t)e->w.d.n_layers : 0;
    sc.expert_sets = e->w.expert_sets;
    uint64_t min_weights = 0;
    bool *resident; /* the placement made here, when the caller gave none */
    strata_status st = engine_place_weights(e, &sc, &resident, &min_weights, err);
    if (!st) st = store_open(e->file, (uint32_t)e->w.d.n_layers + 1, e->w.groups, &sc, &e->store, &min_weights, err);
    free(resident);
    if (st == STRATA_E_NOMEM && budget && min_weights && fixed + min_weights > budget) /* else the store's reason */
        err_set(err, st, "a budget of %s is below the minimum working set of %s: process %s, KV cache and buffers %s, "
                "weights streamed through %d+1 slots %s", fmt_bytes(budget, a, 32),
                fmt_bytes(fixed + min_weights, b, 32), fmt_bytes(process, r, 32),
                fmt_bytes(e->scratch_bytes + e->kv_reserve, c, 32), sc.prefetch_depth ? sc.prefetch_depth : 2,
                fmt_bytes(min_weights, d, 32));
    return st;
}

/* The caller's account, or one of the engine's own with mem_budget. */
static strata_status open_account(engine *e, const engine_params *p, strata_error *err)
{
    if ((e->acct = p->account)) return STRATA_OK;
    if (!(e->acct = acct_new(p->mem_budget))) return err_set(err, STRATA_E_NOMEM, "out of memory");
    e->own_acct = true;
    return STRATA_OK;
}

/* RoPE of global and window layers; frequency factors read once (Phi-3:
 * the short factors within the original context, the long ones beyond). */
static strata_status load_rope(engine *e, strata_error *err)
{
    const model_dims *d = &e->w.d;
    e->rope = (rope_cfg){.dim = d->rope_dim, .base = d->rope_base, .freq_scale = d->rope_freq_scale,
                         .ext_factor = d->yarn_ext_factor, .attn_factor = d->yarn_attn_factor,
                         .corr_low = d->yarn_corr_low, .corr_high = d->yarn_corr_high};
    const gguf_tensor *const *g = e->w.global;
    const gguf_tensor *f = g[GS_ROPE_FREQS];
    if (!f && g[GS_ROPE_LONG] && g[GS_ROPE_SHORT])
        f = e->n_ctx > d->rope_orig_ctx ? g[GS_ROPE_LONG] : g[GS_ROPE_SHORT];
    if (f) {
        int32_t row0 = 0;
        strata_status st = store_gather_rows(e->store, f, &row0, 1, e->rope_factors, err);
        if (st) return st;
        for (uint64_t i = 0; i < d->rope_dim / 2; i++)
            if (!(e->rope_factors[i] > 0))
                return err_set(err, STRATA_E_FORMAT, "%s: tensor '%s' holds a non-positive frequency factor",
                               e->file->splits[0].path, f->name);
        e->rope.factors = e->rope_factors;
    }
    /* window layers use their own base, unscaled (Gemma 3) */
    e->rope_swa = e->rope;
    e->rope_swa.base = d->rope_base_swa;
    if (d->rope_base_swa != d->rope_base) e->rope_swa.freq_scale = 1.0f;
    return STRATA_OK;
}

strata_status engine_open(const gguf_file *f, const model_spec *spec, const engine_params *p, engine **out,
                          strata_error *err)
{
    *out = NULL;
    engine *e = calloc(1, sizeof *e);
    if (!e) return err_set(err, STRATA_E_NOMEM, "out of memory");
    e->file = f;
    strata_status st = weights_bind(f, spec, f->splits[0].path, &e->w, err);
    if (!st) st = backend_cpu_select_kernels(&e->w, p->kernels, err);
    if (!st) st = open_account(e, p, err);
    if (!st) st = configure(e, spec, p, err);
    if (!st && e->w.moe) st = moe_settings(e, p, err);
    if (!st) st = open_gpu(e, p, err);
    if (!st) st = alloc_buffers(e, e->n_seq, err);
    if (!st) st = open_store(e, p, err);
    if (!st) st = load_rope(e, err);
    if (!st && e->gpu) st = backend_vulkan_load(e, err);
    if (st) {
        engine_free(e);
        return st;
    }
    *out = e;
    return STRATA_OK;
}

void engine_free(engine *e)
{
    if (!e) return;
    engine_seq_free(e->own);
    backend_vulkan_free(e->gpu);
    store_close(e->store);
    if (e->pool) pool_free(e->pool);
    void *bufs[] = {e->vec, e->rope_cs, e->rope_factors, e->scores, e->act_scratch, e->tok_id, e->tok_seq,
                    e->tok_pos, e->entries, e->out_rows, e->site, e->site_prefill, e->moe.sel, e->moe.wt, e->moe.rows,
                    e->moe.out, e->moe.ids, e->moe.done, e->moe.prev, e->moe.pred, e->moe.pred_x, e->moe.shared,
                    e->moe.picks};
    if (e->moe.trace) fclose(e->moe.trace);
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    for (int a = 0; a < ACT_COUNT; a++) free(e->act[a]);
    if (e->acct) { /* the scratch buffers (freed above) and the reserve go back */
        acct_give(e->acct, ACCT_RAM, ACCT_SCRATCH, e->scratch_bytes);
        if (e->kv_reserve_taken) acct_give(e->acct, ACCT_RAM, ACCT_KV_RESERVE, e->kv_reserve);
        if (e->own_acct) acct_free(e->acct);
    }
    weights_free(&e->w);
    free(e);
}
