/* The Vulkan back end: layers resident in VRAM, or streamed from RAM each
 * pass (backend_vulkan_stream.h), run by the shaders of
 * src/backend/vulkan. Ops are recorded into one command buffer and run
 * when the host needs a result (the residual stream back, or logits); the
 * token's inputs (RoPE tables, the residual stream from the CPU) and its
 * logits are copied inside that command buffer, so a decoded token on
 * resident layers costs one submission and one host wait (a streamed
 * layer's ops are submitted at its release, without a wait).
 *
 * Recording is lazy by one op, so neighbouring ops can run as one
 * dispatch (a peephole over the calls forward.c makes; the fused ops write
 * every buffer the separate ones would, with the same values up to f32
 * rounding):
 *   norm, matmul of its output        -> the matmul normalizes its input
 *                                        (one token), workgroup 0 writes
 *                                        the normed input too
 *   matmul, add of its output         -> the matmul adds into the sum
 *   matmul gate and up, glu           -> one dispatch: act(gate) * up
 *   norm, add of its output           -> one dispatch (Gemma's post-norms)
 *   rope q, rope k, attention         -> RoPE and the KV stores in one
 *                                        dispatch, then attention
 * and a barrier is recorded only before an op that touches a buffer an op
 * since the last barrier wrote (or writes one it read).
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
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/vulkan/vkb.h"
#include "engine/backend_vulkan.h"
#include "engine/backend_vulkan_mem.h"
#include "engine/backend_vulkan_moe.h"
#include "engine/backend_vulkan_stream.h"
#include "engine/engine_internal.h"
#include "kernels/cpu/dequant.h"
#include "util/error.h"
#include "util/fmt.h"

#define ALIGN 256
#define UPLOAD_CHUNK (16u << 20)
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

static gpu_state *st_of(backend *b) { return b->state; }
static uint64_t addr(backend *b, act_buf a) { return vkb_addr(st_of(b)->act[a]); }

static void record(backend *b)
{
    gpu_state *g = st_of(b);
    if (!g->recording) {
        vkb_begin(g->v);
        g->written = g->read = 0; /* vkb_begin orders the earlier submissions */
    }
    g->recording = true;
}

/* A barrier before an op reading `reads` and writing `writes` when it
 * touches what an op since the last barrier wrote, or writes what one
 * read. */
static void hazard(gpu_state *g, uint32_t reads, uint32_t writes)
{
    if (((reads | writes) & g->written) || (writes & g->read)) {
        vkb_barrier(g->v);
        g->written = g->read = 0;
    }
    g->written |= writes;
    g->read |= reads;
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

/* Stacked experts: a layer's tensors of all its experts. */
static bool is_stacked(const model_weights *w, uint32_t g, uint32_t s)
{
    return g < w->d.n_layers && (s == LS_GATE_EXPS || s == LS_UP_EXPS || s == LS_DOWN_EXPS);
}

/* The group's tensors on the device, the stacked experts too unless
 * `streamed` (a streamed layer's chosen experts come apart:
 * backend_vulkan_moe.c). */
static uint64_t layout(const model_weights *w, uint32_t g, bool streamed, uint64_t off[LS_COUNT])
{
    uint32_t n;
    const gguf_tensor *const *t = group_tensors(w, g, &n);
    uint64_t total = 0;
    for (uint32_t s = 0; s < LS_COUNT; s++) off[s] = NO_OFFSET;
    for (uint32_t s = 0; s < n; s++)
        if (t[s] && !(streamed && is_stacked(w, g, s))) {
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
        if (t[s] && !is_vector(w, g, s) && !vkb_matmul_supported_rows(t[s]->type, (uint32_t)t[s]->ne[0]))
            return false;
    return true;
}

/* Position slots of layer l's GPU cache: the CPU's (a window layer's ring
 * holds the window and a batch or two). */
static uint32_t gpu_kv_len(const model_weights *w, uint64_t l, uint32_t n_ctx, uint32_t n_batch)
{
    return engine_kv_len(w, l, n_ctx, n_batch);
}

/* Device bytes of a layer's K and V caches for n_seq sequences (0 for the output). */
static uint64_t kv_bytes(const model_weights *w, uint32_t g, uint32_t n_ctx, uint32_t n_batch, uint32_t n_seq)
{
    return g < w->d.n_layers ? (uint64_t)n_seq * 2 * gpu_kv_len(w, g, n_ctx, n_batch) * w->d.kv_dim * 2 : 0;
}

/* A group's tensors as laid out on the device, resident or streamed. */
static uint64_t tensor_bytes(const model_weights *w, uint32_t g, bool streamed)
{
    uint64_t off[LS_COUNT];
    return layout(w, g, streamed, off);
}

uint64_t backend_vulkan_group_bytes(const model_weights *w, uint32_t g, uint32_t n_ctx, uint32_t n_batch,
                                    uint32_t n_seq)
{
    return tensor_bytes(w, g, false) + kv_bytes(w, g, n_ctx, n_batch, n_seq);
}

uint64_t backend_vulkan_streamed_bytes(const model_weights *w, uint32_t g, uint32_t n_ctx, uint32_t n_batch,
                                       uint32_t n_seq)
{
    return kv_bytes(w, g, n_ctx, n_batch, n_seq);
}

/* Floats per batch token of each activation on the device (0: none). */
static uint64_t act_width(const model_dims *d, bool moe, act_buf a)
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
    for (int a = 0; a < ACT_COUNT; a++) per_tok += act_width(d, w->moe, (act_buf)a);
    return per_tok * n_batch * 4 + ACT_COUNT * ALIGN + gpu_moe_device_bytes(w, n_batch);
}

/* ---- allocation (at placement) and loading ---- */

/* A group's device memory: its tensors (unless streamed) and its K and V
 * caches (a streamed layer's stay on the device). */
static strata_status alloc_group(engine *e, uint32_t g, bool streamed, bool kv, strata_error *err)
{
    gpu_state *gs = st_of(e->gpu);
    gpu_group *gg = &gs->groups[g];
    gg->bytes = layout(&e->w, g, streamed, gg->off);
    gg->streamed = streamed;
    mem_account *a = e->acct;
    strata_status st = streamed ? STRATA_OK : gpu_mem_alloc(gs->v, a, ACCT_WEIGHTS, gg->bytes, false, &gg->buf, err);
    if (!st && kv && g < e->w.d.n_layers) {
        gg->kv_len = gpu_kv_len(&e->w, g, e->n_ctx, e->n_batch);
        uint64_t cache = (uint64_t)gg->kv_len * e->w.d.kv_dim * 2;
        for (uint32_t i = 0; i < gs->n_kv && !st; i++) {
            st = gpu_mem_alloc(gs->v, a, ACCT_KV, cache, false, &gs->kv[i].k[g], err);
            if (!st) st = gpu_mem_alloc(gs->v, a, ACCT_KV, cache, false, &gs->kv[i].v[g], err);
        }
    }
    if (st) { /* all or nothing */
        gpu_mem_free(gs->v, a, ACCT_WEIGHTS, gg->buf);
        for (uint32_t i = 0; i < gs->n_kv; i++) {
            gpu_mem_free(gs->v, a, ACCT_KV, gs->kv[i].k[g]);
            gpu_mem_free(gs->v, a, ACCT_KV, gs->kv[i].v[g]);
            gs->kv[i].k[g] = gs->kv[i].v[g] = NULL;
        }
        *gg = (gpu_group){0};
    }
    return st;
}

/* The activations and the MoE buffers (with those of streamed experts when
 * stream_experts). */
static strata_status alloc_activations(engine *e, bool stream_experts, strata_error *err)
{
    gpu_state *gs = st_of(e->gpu);
    const model_dims *d = &e->w.d;
    strata_status st = STRATA_OK;
    for (int a = 0; a < ACT_COUNT && !st; a++) {
        uint64_t width = act_width(d, e->w.moe, (act_buf)a);
        if (width) st = gpu_mem_alloc(gs->v, e->acct, ACCT_SCRATCH, width * e->n_batch * 4, false, &gs->act[a], err);
    }
    if (!st) st = gpu_moe_open(gs->v, e->acct, &e->w, e->n_batch, stream_experts, &gs->moe, err);
    if (!st) st = gpu_mem_alloc(gs->v, e->acct, ACCT_SCRATCH, d->n_vocab * e->n_batch * 4, false, &gs->logits, err);
    if (!st) st = gpu_mem_alloc(gs->v, e->acct, ACCT_SCRATCH, d->rope_dim * e->n_batch * 4, false, &gs->cs, err);
    if (!st) st = gpu_mem_alloc(gs->v, e->acct, ACCT_SCRATCH, d->rope_dim * e->n_batch * 4, false, &gs->cs_swa, err);
    return st;
}

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
    gpu_group *gg = &st_of(e->gpu)->groups[g];
    uint32_t n;
    const gguf_tensor *const *t = group_tensors(&e->w, g, &n);
    strata_status st = STRATA_OK;
    for (uint32_t s = 0; s < n && !st; s++) {
        if (!t[s]) continue;
        st = is_vector(&e->w, g, s) ? upload_vector(e, gg, t[s], gg->off[s], tmp, err)
                                    : upload_matrix(e, gg, t[s], gg->off[s], tmp, err);
    }
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
    strata_status st = STRATA_OK;
    for (uint32_t g = 0; g <= e->w.d.n_layers && !st; g++)
        if (e->site[g] == e->gpu && !st_of(e->gpu)->groups[g].streamed) st = load_group(e, g, tmp, err);
    free(tmp);
    gpu_state *gs = st_of(e->gpu);
    if (!st && !vkb_get_info(gs->v)->is_cpu) { /* a GPU driver's pipeline compiles at load, not in the first tokens */
        uint32_t types[GGML_TYPE_COUNT];
        int n = 0;
        bool seen[GGML_TYPE_COUNT] = {false};
        for (uint32_t g = 0; g <= e->w.d.n_layers; g++) {
            uint32_t nt;
            const gguf_tensor *const *t = group_tensors(&e->w, g, &nt);
            for (uint32_t s = 0; e->site_prefill[g] == e->gpu && s < nt; s++)
                if (t[s] && !is_vector(&e->w, g, s) && t[s]->type < GGML_TYPE_COUNT && !seen[t[s]->type]) {
                    seen[t[s]->type] = true;
                    types[n++] = t[s]->type;
                }
        }
        st = vkb_prepare(gs->v, types, n, err);
    }
    return st;
}

/* ---- emitting ops (after fusion) ---- */

static uint64_t row_bytes(const gguf_tensor *t) { return ggml_row_bytes(t->type, t->ne[0]); }

static void emit_norm(backend *b, act_buf dst, act_buf src, uint64_t w, uint64_t n, uint64_t rows, act_buf acc,
                      bool add)
{
    gpu_state *g = st_of(b);
    hazard(g, RES(src) | (add ? RES(acc) : 0), RES(dst) | (add ? RES(acc) : 0));
    vkb_rmsnorm_add(g->v, addr(b, src), w, addr(b, dst), add ? addr(b, acc) : 0, (uint32_t)n, (uint32_t)rows,
                    b->e->w.d.rms_eps);
}

static void emit_matmul(backend *b, const pend_mm *m, uint32_t n_tok)
{
    gpu_state *g = st_of(b);
    hazard(g, RES(m->src), RES(m->dst));
    vkb_matmul(g->v, m->t->type, m->w, addr(b, m->src), addr(b, m->dst), (uint32_t)m->t->ne[0],
               (uint32_t)m->n_out, n_tok);
}

/* The fused matvec of job m: input normed by the pending norm when
 * p->mm_normed (workgroup 0 writing the normed input when write_xn), out
 * added into acc (with m's own output written as aux) when acc_into >= 0,
 * or the GLU of m and up. */
static void emit_matvec(backend *b, const pend_mm *m, const pend_mm *up, bool write_xn, int acc_into)
{
    gpu_state *g = st_of(b);
    const pending *p = &g->p;
    act_buf src = p->mm_normed ? p->norm_src : m->src;
    uint32_t reads = RES(src), writes = RES(m->dst);
    if (up) writes |= RES(up->dst);
    if (write_xn) writes |= RES(p->norm_dst);
    if (acc_into >= 0) reads |= RES(acc_into), writes |= RES(acc_into);
    hazard(g, reads, writes);
    vkb_mv mv = {.type = m->t->type, .w = m->w, .up = up ? up->w : 0, .x = addr(b, src),
                 .n_in = (uint32_t)m->t->ne[0], .n_out = (uint32_t)m->n_out, .eps = b->e->w.d.rms_eps,
                 .gelu = b->e->w.arch->act == ACT_GELU};
    if (p->mm_normed) mv.norm_w = p->norm_w;
    if (write_xn) mv.xn = addr(b, p->norm_dst);
    if (up) {
        mv.y = addr(b, m->dst);
        mv.aux = addr(b, up->dst);
    } else if (acc_into >= 0) {
        mv.acc = true;
        mv.y = addr(b, (act_buf)acc_into);
        mv.aux = addr(b, m->dst);
    } else {
        mv.y = addr(b, m->dst);
    }
    vkb_matvec(g->v, &mv);
}

static void emit_rope(backend *b, const pend_rope *r)
{
    const model_dims *d = &b->e->w.d;
    gpu_state *g = st_of(b);
    hazard(g, RES(r->x), RES(r->x));
    vkb_rope(g->v, addr(b, r->x), vkb_addr(r->swa ? g->cs_swa : g->cs), r->n_tok, (uint32_t)r->n_heads,
             (uint32_t)d->head_dim, (uint32_t)d->rope_dim, (uint32_t)r->row_stride, b->e->w.arch->rope == ROPE_NEOX);
}

/* Records what is held back, unfused. */
static void flush_pending(backend *b)
{
    pending *p = &st_of(b)->p;
    if (p->n_mm) {
        if (p->mm_normed) { /* the norm fused into the first job, which writes its output */
            emit_matvec(b, &p->mm[0], NULL, true, -1);
            for (int i = 1; i < p->n_mm; i++) emit_matvec(b, &p->mm[i], NULL, false, -1);
        } else {
            if (p->norm) emit_norm(b, p->norm_dst, p->norm_src, p->norm_w, p->norm_n, p->norm_rows, ACT_X, false);
            for (int i = 0; i < p->n_mm; i++) emit_matmul(b, &p->mm[i], 1);
        }
    } else if (p->norm) {
        emit_norm(b, p->norm_dst, p->norm_src, p->norm_w, p->norm_n, p->norm_rows, ACT_X, false);
    }
    for (int i = 0; i < p->n_rope; i++) emit_rope(b, &p->rope[i]);
    *p = (pending){0};
}

/* Runs what was recorded (the host is about to read a result). */
static strata_status flush(backend *b, strata_error *err)
{
    gpu_state *g = st_of(b);
    if (g->async_err.status) { /* a streamed group's submission failed */
        *err = g->async_err;
        return err->status;
    }
    if (!g->recording) return STRATA_OK;
    flush_pending(b);
    g->recording = false;
    strata_status st = vkb_run(g->v, err);
    if (!st && g->stream) gpu_stream_submitted(g->stream, 0); /* everything finished */
    return st;
}

/* ---- ops ---- */

/* Streamed group g into its ring entry's staging from the store (matrices
 * as in the file, vectors as f32), and the copy into the entry's slot
 * recorded; nothing when the slot holds it already. */
static strata_status fetch(backend *b, uint32_t g, strata_error *err)
{
    engine *e = b->e;
    gpu_state *gs = st_of(b);
    const gpu_group *gg = &gs->groups[g];
    uint32_t k = gg->stream_k[e->prefill];
    if (gpu_stream_holds(gs->stream, k, g)) return STRATA_OK;
    void *staging;
    strata_status st = gpu_stream_claim(gs->stream, k, &staging, err);
    if (st == STRATA_E_INVALID) { /* its last copy is in this recording: run it first */
        st = flush(b, err);
        if (!st) st = gpu_stream_claim(gs->stream, k, &staging, err);
    }
    const void *const *data;
    if (!st) st = store_acquire(e->store, g, &data, err);
    if (st) return st;
    uint32_t n;
    const gguf_tensor *const *t = group_tensors(&e->w, g, &n);
    for (uint32_t s = 0; s < n && !st; s++) {
        if (!t[s] || gg->off[s] == NO_OFFSET) continue; /* a streamed layer's experts come apart */
        gpu_stream_delay(gs->stream);
        uint8_t *dst = (uint8_t *)staging + gg->off[s];
        if (is_vector(&e->w, g, s)) st = dequant_row(t[s]->type, data[s], (float *)dst, t[s]->ne[0], err);
        else memcpy(dst, data[s], t[s]->n_bytes);
    }
    store_release(e->store, g);
    if (st) return st;
    record(b);
    gpu_stream_send(gs->stream, k, g, gg->bytes);
    gs->stream_copies++;
    return STRATA_OK;
}

/* A streamed group's weights in its slot before its ops, and the next
 * group's copy (when it is streamed too and the ring has room) recorded
 * now, so that it runs while this group computes. */
static strata_status stream_in(backend *b, uint32_t g, strata_error *err)
{
    gpu_state *gs = st_of(b);
    record(b);
    flush_pending(b); /* the ops before the copies, which may overwrite what they read */
    strata_status st = fetch(b, g, err);
    if (st) return st;
    record(b);
    vkb_copy_barrier(gs->v);
    uint32_t next = g + 1;
    if (next <= b->e->w.d.n_layers && b->e->pass_site[next] == b && gs->groups[next].streamed &&
        gpu_stream_depth(gs->stream) > 1)
        st = fetch(b, next, err);
    return st;
}

static strata_status gpu_acquire(backend *b, uint32_t g, be_weight *w, strata_error *err)
{
    gpu_state *gs = st_of(b);
    const gpu_group *gg = &gs->groups[g];
    if (gs->async_err.status) {
        *err = gs->async_err;
        return err->status;
    }
    strata_status st = gg->streamed ? stream_in(b, g, err) : STRATA_OK;
    if (st) return st;
    uint64_t base = gg->streamed ? gpu_stream_addr(gs->stream, gg->stream_k[b->e->prefill]) : vkb_addr(gg->buf);
    uint32_t n;
    const gguf_tensor *const *t = group_tensors(&b->e->w, g, &n);
    for (uint32_t s = 0; s < n; s++)
        w[s] = (be_weight){.t = t[s], .dev = t[s] && gg->off[s] != NO_OFFSET ? base + gg->off[s] : 0};
    return STRATA_OK;
}

/* A streamed group's ops go to the device now, without waiting: the host
 * fills the next entries meanwhile. */
static void gpu_release(backend *b, uint32_t g)
{
    gpu_state *gs = st_of(b);
    if (!gs->groups[g].streamed || !gs->recording) return;
    flush_pending(b);
    gs->recording = false;
    uint64_t ticket = 0;
    strata_error err = {0};
    if (vkb_run_async(gs->v, &ticket, &err) && !gs->async_err.status) gs->async_err = err;
    gpu_stream_submitted(gs->stream, ticket);
    gpu_stream_delay(gs->stream);
}

/* The counts of the chunk that just ended, into its class. */
static void end_chunk(gpu_state *g)
{
    if (!g->chunk_tok) return;
    vkb_stats now;
    vkb_get_stats(g->v, &now);
    chunk_stats *c = g->chunk_tok == 1 ? &g->decode : &g->prompt;
    c->chunks++;
    c->tokens += g->chunk_tok;
    c->sum.dispatches += now.dispatches - g->chunk_start.dispatches;
    c->sum.barriers += now.barriers - g->chunk_start.barriers;
    c->sum.push_consts += now.push_consts - g->chunk_start.push_consts;
    c->sum.staged += now.staged - g->chunk_start.staged;
    c->sum.submits += now.submits - g->chunk_start.submits;
    c->sum.waits += now.waits - g->chunk_start.waits;
    c->sum.runs += now.runs - g->chunk_start.runs;
    g->chunk_tok = 0;
}

/* Host data into a device buffer: inside the command buffer when it fits
 * the staging, else (or to_device false) before it. */
static strata_status put(backend *b, vkb_buf *dst, const void *src, uint64_t n, strata_error *err)
{
    gpu_state *g = st_of(b);
    record(b);
    if (vkb_stage_upload(g->v, dst, 0, src, n)) return STRATA_OK;
    strata_status st = flush(b, err);
    return st ? st : vkb_upload(g->v, dst, 0, src, n, err);
}

/* Device data to host memory: the command buffer runs with the copy. */
static strata_status get(backend *b, vkb_buf *src, void *dst, uint64_t n, strata_error *err)
{
    gpu_state *g = st_of(b);
    record(b);
    flush_pending(b);
    if (vkb_stage_download(g->v, src, 0, dst, n)) return flush(b, err);
    strata_status st = flush(b, err);
    return st ? st : vkb_download(g->v, src, 0, dst, n, err);
}

static strata_status gpu_begin_chunk(backend *b, uint32_t n_tok, strata_error *err)
{
    engine *e = b->e;
    gpu_state *g = st_of(b);
    uint64_t bytes = (uint64_t)n_tok * e->w.d.rope_dim * 4;
    strata_status st = flush(b, err);
    end_chunk(g);
    vkb_get_stats(g->v, &g->chunk_start);
    g->chunk_tok = n_tok;
    if (!st && bytes) st = put(b, g->cs, e->rope_cs, bytes, err);
    if (!st && bytes && e->w.d.n_swa) st = put(b, g->cs_swa, e->rope_cs_swa, bytes, err);
    return st;
}

static strata_status gpu_from_host(backend *b, act_buf a, const float *x, uint64_t n, strata_error *err)
{
    flush_pending(b);
    return put(b, st_of(b)->act[a], x, n * 4, err);
}

static strata_status gpu_to_host(backend *b, act_buf a, float *x, uint64_t n, strata_error *err)
{
    return get(b, st_of(b)->act[a], x, n * 4, err);
}

static void gpu_norm(backend *b, act_buf dst, act_buf src, const be_weight *w, uint64_t n, uint64_t rows)
{
    gpu_state *g = st_of(b);
    record(b);
    flush_pending(b);
    if (!g->fuse) {
        emit_norm(b, dst, src, w->dev, n, rows, ACT_X, false);
        return;
    }
    g->p = (pending){.norm = true, .norm_dst = dst, .norm_src = src, .norm_w = w->dev, .norm_n = n, .norm_rows = rows};
}

/* True when job j (one token) can take the pending norm as its input. */
static bool norm_fits(const pending *p, const mm_job *j)
{
    return p->norm && p->norm_rows == 1 && p->norm_dst != p->norm_src && j->src == p->norm_dst &&
           (uint64_t)j->w->t->ne[0] == p->norm_n;
}

static void gpu_matmul(backend *b, const mm_job *jobs, int n_jobs, uint32_t n_tok)
{
    gpu_state *g = st_of(b);
    record(b);
    pending *p = &g->p;
    if (p->n_mm || p->n_rope || !g->fuse || n_tok != 1 || n_jobs > 3) {
        flush_pending(b);
        for (int i = 0; i < n_jobs; i++) { /* products of one input, into different outputs */
            pend_mm m = {jobs[i].w->t, jobs[i].w->dev + jobs[i].row0 * row_bytes(jobs[i].w->t), jobs[i].n_out,
                         jobs[i].src, jobs[i].dst};
            emit_matmul(b, &m, n_tok);
        }
        return;
    }
    bool normed = true;
    for (int i = 0; i < n_jobs; i++) normed = normed && norm_fits(p, &jobs[i]);
    if (p->norm && !normed) {
        flush_pending(b);
    }
    p->mm_normed = normed && p->norm;
    p->n_mm = 0;
    pend_mm m[3];
    for (int i = 0; i < n_jobs; i++)
        m[i] = (pend_mm){jobs[i].w->t, jobs[i].w->dev + jobs[i].row0 * row_bytes(jobs[i].w->t), jobs[i].n_out,
                         jobs[i].src, jobs[i].dst};
    if (n_jobs <= 2) { /* kept: an add or glu may follow */
        memcpy(p->mm, m, (size_t)n_jobs * sizeof m[0]);
        p->n_mm = n_jobs;
        return;
    }
    for (int i = 0; i < n_jobs; i++) { /* q, k, v: nothing fuses after them */
        if (p->mm_normed) emit_matvec(b, &m[i], NULL, i == 0, -1);
        else emit_matmul(b, &m[i], 1);
    }
    *p = (pending){0};
}

static void gpu_add_bias(backend *b, act_buf y, const be_weight *bias, uint64_t n, uint32_t n_tok)
{
    gpu_state *g = st_of(b);
    record(b);
    flush_pending(b);
    hazard(g, RES(y), RES(y));
    vkb_add_rows(g->v, addr(b, y), bias->dev, (uint32_t)n, n_tok);
}

static void gpu_rope(backend *b, act_buf x, uint64_t n_heads, uint64_t row_stride, bool swa, uint32_t n_tok)
{
    gpu_state *g = st_of(b);
    record(b);
    pending *p = &g->p;
    if (p->norm || p->n_mm || p->n_rope == 2) flush_pending(b);
    pend_rope r = {x, n_heads, row_stride, swa, n_tok};
    if (!g->fuse) {
        emit_rope(b, &r);
        return;
    }
    p->rope[p->n_rope++] = r;
}

/* The batch's tokens from t0 on that belong to its sequence (the scheduler
 * puts a sequence's tokens together). */
static uint32_t run_len(const engine *e, uint32_t t0, uint32_t n_tok)
{
    uint32_t n = 1;
    while (t0 + n < n_tok && e->tok_seq[t0 + n] == e->tok_seq[t0]) n++;
    return n;
}

/* Per run of one sequence's tokens: RoPE of its q and k rows and their K
 * and V stored in its caches (fused), or (unfused: RoPE done) the stores. */
static void store_runs(backend *b, uint64_t l, uint32_t n_tok, bool fused)
{
    engine *e = b->e;
    const model_dims *d = &e->w.d;
    gpu_state *g = st_of(b);
    uint32_t kv_len = g->groups[l].kv_len, hd = (uint32_t)d->head_dim, nkv = (uint32_t)d->n_kv_heads;
    for (uint32_t t0 = 0, n; t0 < n_tok; t0 += n) {
        n = run_len(e, t0, n_tok);
        const gpu_kv_set *kv = &g->kv[e->tok_seq[t0]->gpu_kv];
        uint64_t kc = vkb_addr(kv->k[l]), vc = vkb_addr(kv->v[l]);
        uint64_t k = addr(b, ACT_K) + (uint64_t)t0 * d->kv_dim * 4, v = addr(b, ACT_V) + (uint64_t)t0 * d->kv_dim * 4;
        if (!fused) {
            vkb_kv_store(g->v, k, kc, n, nkv, hd, kv_len, e->tok_pos[t0]);
            vkb_kv_store(g->v, v, vc, n, nkv, hd, kv_len, e->tok_pos[t0]);
            continue;
        }
        vkb_rope_kv r = {.q = addr(b, ACT_Q) + (uint64_t)t0 * d->q_dim * 4, .k = k, .v = v,
                         .cs = vkb_addr(e->w.swa[l] ? g->cs_swa : g->cs) + (uint64_t)t0 * d->rope_dim * 4,
                         .k_cache = kc, .v_cache = vc, .n_tok = n, .n_heads = (uint32_t)d->n_heads,
                         .n_kv_heads = nkv, .head_dim = hd, .rope_dim = (uint32_t)d->rope_dim,
                         .q_stride = (uint32_t)d->q_dim, .kv_len = kv_len, .slot0 = e->tok_pos[t0],
                         .neox = e->w.arch->rope == ROPE_NEOX};
        vkb_rope_kv_store(g->v, &r);
    }
}

/* Attention of each run over its sequence's caches. Runs touch their own
 * rows and caches: no barrier between them. */
static void attend_runs(backend *b, uint64_t l, uint32_t n_tok)
{
    engine *e = b->e;
    const model_dims *d = &e->w.d;
    gpu_state *g = st_of(b);
    for (uint32_t t0 = 0, n; t0 < n_tok; t0 += n) {
        n = run_len(e, t0, n_tok);
        const gpu_kv_set *kv = &g->kv[e->tok_seq[t0]->gpu_kv];
        vkb_attn a = {.q = addr(b, ACT_Q) + (uint64_t)t0 * d->q_dim * 4, .k_cache = vkb_addr(kv->k[l]),
                      .v_cache = vkb_addr(kv->v[l]), .out = addr(b, ACT_ATT) + (uint64_t)t0 * d->q_dim * 4,
                      .n_tok = n, .n_heads = (uint32_t)d->n_heads, .n_kv_heads = (uint32_t)d->n_kv_heads,
                      .head_dim = (uint32_t)d->head_dim, .kv_len = g->groups[l].kv_len, .pos0 = e->tok_pos[t0],
                      .n_swa = e->w.swa[l] ? (uint32_t)d->n_swa : 0, .slot_base = 0,
                      .scale = 1.0f / sqrtf((float)d->head_dim)};
        vkb_attention(g->v, &a);
    }
}

static void gpu_attention(backend *b, uint64_t l, uint32_t n_tok)
{
    engine *e = b->e;
    const model_dims *d = &e->w.d;
    gpu_state *g = st_of(b);
    record(b);
    pending *p = &g->p;
    bool swa = e->w.swa[l];
    bool fused = !p->norm && !p->n_mm && p->n_rope == 2 && p->rope[0].x == ACT_Q && p->rope[1].x == ACT_K &&
                 p->rope[0].n_heads == d->n_heads && p->rope[0].row_stride == d->q_dim &&
                 p->rope[1].n_heads == d->n_kv_heads && p->rope[1].row_stride == d->kv_dim &&
                 p->rope[0].swa == swa && p->rope[1].swa == swa && p->rope[0].n_tok == n_tok &&
                 p->rope[1].n_tok == n_tok;
    if (fused) {
        *p = (pending){0};
        hazard(g, RES(ACT_Q) | RES(ACT_K) | RES(ACT_V), RES(ACT_Q) | RES(ACT_K) | RES_KV);
    } else {
        flush_pending(b);
        hazard(g, RES(ACT_K) | RES(ACT_V), RES_KV);
    }
    store_runs(b, l, n_tok, fused);
    hazard(g, RES(ACT_Q) | RES_KV, RES(ACT_ATT));
    attend_runs(b, l, n_tok);
}

static void gpu_glu(backend *b, uint64_t n)
{
    gpu_state *g = st_of(b);
    record(b);
    pending *p = &g->p;
    if (p->n_mm == 2 && p->mm[0].dst == ACT_GATE && p->mm[1].dst == ACT_UP && p->mm[0].src == p->mm[1].src &&
        p->mm[0].t->type == p->mm[1].t->type && p->mm[0].t->ne[0] == p->mm[1].t->ne[0] &&
        p->mm[0].n_out == n && p->mm[1].n_out == n) {
        emit_matvec(b, &p->mm[0], &p->mm[1], p->mm_normed, -1);
        *p = (pending){0};
        return;
    }
    flush_pending(b);
    hazard(g, RES(ACT_GATE) | RES(ACT_UP), RES(ACT_GATE));
    vkb_glu(g->v, addr(b, ACT_GATE), addr(b, ACT_UP), (uint32_t)n, b->e->w.arch->act == ACT_GELU);
}

static void gpu_add(backend *b, act_buf y, act_buf x, uint64_t n)
{
    gpu_state *g = st_of(b);
    record(b);
    pending *p = &g->p;
    if (p->n_mm == 1 && p->mm[0].dst == x && p->mm[0].n_out == n && y != x && y != p->mm[0].src &&
        !(p->mm_normed && (y == p->norm_src || y == p->norm_dst))) {
        emit_matvec(b, &p->mm[0], NULL, p->mm_normed, (int)y);
        *p = (pending){0};
        return;
    }
    if (!p->n_mm && !p->n_rope && p->norm && p->norm_dst == x && p->norm_n * p->norm_rows == n && y != x &&
        y != p->norm_src) { /* Gemma's post-norm, then the residual add */
        emit_norm(b, p->norm_dst, p->norm_src, p->norm_w, p->norm_n, p->norm_rows, y, true);
        *p = (pending){0};
        return;
    }
    flush_pending(b);
    hazard(g, RES(y) | RES(x), RES(y));
    vkb_add(g->v, addr(b, y), addr(b, x), (uint32_t)n);
}

static strata_status gpu_logits(backend *b, const be_weight *norm, const be_weight *out, uint32_t first,
                                uint32_t n_tok, float *dst, strata_error *err)
{
    const model_dims *d = &b->e->w.d;
    gpu_state *g = st_of(b);
    uint32_t rows = n_tok - first;
    record(b);
    flush_pending(b);
    if (rows == 1 && g->fuse && (uint64_t)first * d->n_embd % 4 == 0) { /* the final norm fused in */
        hazard(g, RES(ACT_X), RES_LOGITS);
        vkb_mv mv = {.type = out->t->type, .w = out->dev, .x = addr(b, ACT_X) + (uint64_t)first * d->n_embd * 4,
                     .y = vkb_addr(g->logits), .norm_w = norm->dev, .n_in = (uint32_t)d->n_embd,
                     .n_out = (uint32_t)d->n_vocab, .eps = d->rms_eps};
        vkb_matvec(g->v, &mv);
    } else {
        hazard(g, RES(ACT_X), RES(ACT_XN));
        vkb_rmsnorm(g->v, addr(b, ACT_X) + (uint64_t)first * d->n_embd * 4, norm->dev, addr(b, ACT_XN),
                    (uint32_t)d->n_embd, rows, d->rms_eps);
        hazard(g, RES(ACT_XN), RES_LOGITS);
        vkb_matmul(g->v, out->t->type, out->dev, addr(b, ACT_XN), vkb_addr(g->logits), (uint32_t)d->n_embd,
                   (uint32_t)d->n_vocab, rows);
    }
    return get(b, g->logits, dst, (uint64_t)rows * d->n_vocab * 4, err);
}

/* ---- for backend_vulkan_moe.c ---- */

vkb *backend_vulkan_vkb(backend *b) { return st_of(b)->v; }
gpu_moe *backend_vulkan_moe_state(backend *b) { return st_of(b)->moe; }
uint64_t backend_vulkan_act(backend *b, act_buf a) { return addr(b, a); }

void backend_vulkan_op(backend *b, uint32_t reads, uint32_t writes)
{
    record(b);
    flush_pending(b);
    hazard(st_of(b), reads, writes);
}

strata_status backend_vulkan_put(backend *b, vkb_buf *dst, const void *src, uint64_t n, strata_error *err)
{
    return put(b, dst, src, n, err);
}

strata_status backend_vulkan_get(backend *b, act_buf a, void *dst, uint64_t n, strata_error *err)
{
    return get(b, st_of(b)->act[a], dst, n, err);
}

strata_status backend_vulkan_flush(backend *b, strata_error *err) { return flush(b, err); }

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
    .moe = backend_vulkan_moe,
    .add = gpu_add,
    .logits = gpu_logits,
};

/* ---- placement and lifetime ---- */

/* Whether -ngl lets group g on the GPU: the first max_layers layers, the
 * output when every layer is allowed (0: all). */
static bool allowed(const model_weights *w, uint32_t g, uint32_t max_layers)
{
    return max_layers == 0 || g < max_layers || (g == w->d.n_layers && max_layers >= g);
}

/* The stream ring's slot: the largest group streamed (0: none). */
static uint64_t slot_bytes(const model_weights *w, const uint8_t *site)
{
    uint64_t slot = 0;
    for (uint32_t g = 0; g <= w->d.n_layers; g++)
        if ((site[g] == ENGINE_SITE_STREAMED || site[g] == SITE_PREFILL_ONLY) && tensor_bytes(w, g, true) > slot)
            slot = tensor_bytes(w, g, true);
    return slot;
}

/* Whether a streamed layer (for every pass, or prompt batches only) has
 * experts (they come through their own slots). */
static bool streams_experts(const model_weights *w, const uint8_t *site)
{
    for (uint32_t g = 0; w->moe && g < w->d.n_layers; g++)
        if (site[g] == ENGINE_SITE_STREAMED || site[g] == SITE_PREFILL_ONLY) return true;
    return false;
}

/* Device bytes a placement takes: activations, resident groups with their
 * KV caches, streamed layers' KV caches (not those streamed for prompt
 * batches only) and the ring. */
static uint64_t placement_bytes(const engine *e, const uint8_t *site, uint32_t depth, uint32_t n_kv)
{
    const model_weights *w = &e->w;
    uint64_t bytes = backend_vulkan_fixed_bytes(w, e->n_batch) + (streams_experts(w, site) ? gpu_moe_stream_bytes(w) : 0);
    for (uint32_t g = 0; g <= w->d.n_layers; g++)
        if (site[g] == ENGINE_SITE_VRAM) bytes += backend_vulkan_group_bytes(w, g, e->n_ctx, e->n_batch, n_kv);
        else if (site[g] == ENGINE_SITE_STREAMED) bytes += kv_bytes(w, g, e->n_ctx, e->n_batch, n_kv);
    return bytes + gpu_stream_device_bytes(depth, slot_bytes(w, site));
}

/* The default placement: groups resident from the first on while they fit
 * (the shaders running their types, -ngl allowing); with streaming, the
 * longest resident prefix that leaves room for the rest streamed (their KV
 * caches and the ring). */
static void choose_sites(const engine *e, uint64_t budget, const engine_gpu *p, uint32_t n_kv, uint8_t *site)
{
    const model_weights *w = &e->w;
    uint32_t groups = (uint32_t)w->d.n_layers + 1, resident = 0;
    memset(site, ENGINE_SITE_CPU, groups);
    for (uint32_t g = 0; g < groups; g++) {
        if (!allowed(w, g, p->max_layers) || !group_supported(w, g)) break;
        site[g] = ENGINE_SITE_VRAM;
        if (placement_bytes(e, site, 0, n_kv) > budget) {
            site[g] = ENGINE_SITE_CPU;
            break;
        }
        resident++;
    }
    if (!p->stream_depth || resident == groups) return;
    uint8_t *t = calloc(groups, 1);
    if (!t) return; /* the resident prefix alone */
    for (uint32_t k = resident + 1; k-- > 0;) {
        memcpy(t, site, groups); /* groups before k resident, the GPU's from k on streamed */
        for (uint32_t g = k; g < groups; g++)
            t[g] = allowed(w, g, p->max_layers) && group_supported(w, g) ? ENGINE_SITE_STREAMED : ENGINE_SITE_CPU;
        if (placement_bytes(e, t, p->stream_depth, n_kv) <= budget) {
            memcpy(site, t, groups);
            break;
        }
    }
    free(t);
}

/* Allocates what the placement needs, the ring first. With `exact` (a
 * plan's placement) any failure is the error; else a refused allocation
 * ends the placement there (that group and the ones after it run on the
 * CPU, the reason in the note). Sets e->site[] and the groups' stream
 * order; *n_placed counts the groups on the GPU. */
static strata_status allocate_sites(engine *e, const uint8_t *site, uint32_t depth, bool exact, uint32_t *n_placed,
                                    strata_error *err)
{
    const model_weights *w = &e->w;
    gpu_state *gs = st_of(e->gpu);
    strata_error aerr = {0};
    uint64_t slot = slot_bytes(w, site);
    bool any = false;
    for (uint32_t g = 0; g <= w->d.n_layers; g++) any = any || site[g] != ENGINE_SITE_CPU;
    if (!any) return STRATA_OK; /* nothing fits: no device memory at all */
    strata_status st = alloc_activations(e, streams_experts(w, site), &aerr);
    if (!st && slot) st = gpu_stream_open(gs->v, e->acct, depth, slot, &gs->stream, &aerr);
    uint32_t n_prefill = 0; /* groups streamed for a prompt batch, so far */
    for (uint32_t g = 0; g <= w->d.n_layers && !st; g++) {
        if (site[g] == ENGINE_SITE_CPU) continue;
        bool streamed = site[g] == ENGINE_SITE_STREAMED || site[g] == SITE_PREFILL_ONLY;
        st = alloc_group(e, g, streamed, site[g] != SITE_PREFILL_ONLY, &aerr);
        if (st) break;
        if (streamed) gs->groups[g].stream_k[1] = n_prefill++;
        if (site[g] == ENGINE_SITE_STREAMED) gs->groups[g].stream_k[0] = gs->n_streamed++;
        if (site[g] != SITE_PREFILL_ONLY) e->site[g] = e->gpu;
        e->site_prefill[g] = e->gpu;
        (*n_placed)++;
    }
    if (!st) return STRATA_OK;
    if (exact) {
        *err = aerr;
        return st;
    }
    snprintf(gs->note, sizeof gs->note, "%s", aerr.message);
    return STRATA_OK;
}

/* A plan puts group g on the GPU, whose shaders do not run its weight types. */
static strata_status unsupported_group(const model_weights *w, uint32_t g, strata_error *err)
{
    return err_set(err, STRATA_E_UNSUPPORTED, "GPU placement: the GPU cannot run %s %u (its weight types)",
                   g < w->d.n_layers ? "layer" : "the output group", g);
}

/* A plan's placement: every GPU group must be one the shaders run, and
 * the whole must fit in the budget. */
static strata_status check_sites(const engine *e, const uint8_t *site, uint32_t depth, uint32_t n_kv, uint64_t budget,
                                  strata_error *err)
{
    const model_weights *w = &e->w;
    for (uint32_t g = 0; g <= w->d.n_layers; g++) {
        if (site[g] > ENGINE_SITE_STREAMED)
            return err_set(err, STRATA_E_INVALID, "GPU placement: group %u has no site %u", g, site[g]);
        if (site[g] != ENGINE_SITE_CPU && !group_supported(w, g)) return unsupported_group(w, g, err);
    }
    uint64_t need = placement_bytes(e, site, depth, n_kv);
    if (need > budget) {
        char a[32], b[32];
        return err_set(err, STRATA_E_NOMEM, "GPU placement: it needs %s of device memory, more than the %s "
                       "available", fmt_bytes(need, a, sizeof a), fmt_bytes(budget, b, sizeof b));
    }
    return STRATA_OK;
}

/* A plan's prompt-batch sites merged into its decoding sites: a group
 * either runs on the same site in both phases, or decodes on the CPU and
 * is streamed for prompt batches (SITE_PREFILL_ONLY: it widens the ring's
 * slot, its KV cache stays on the CPU); the whole must fit the budget. */
static strata_status merge_prefill_sites(const engine *e, uint8_t *site, const uint8_t *prefill, uint32_t depth,
                                         uint32_t n_kv, uint64_t budget, strata_error *err)
{
    const model_weights *w = &e->w;
    for (uint32_t g = 0; g <= w->d.n_layers; g++) {
        if (prefill[g] == site[g]) continue;
        if (site[g] != ENGINE_SITE_CPU || prefill[g] != ENGINE_SITE_STREAMED)
            return err_set(err, STRATA_E_INVALID, "GPU placement: group %u runs on site %u for prompt batches and %u "
                           "when decoding: only a group on the CPU may differ, streamed for prompt batches", g,
                           prefill[g], site[g]);
        if (!group_supported(w, g)) return unsupported_group(w, g, err);
        site[g] = SITE_PREFILL_ONLY;
    }
    uint64_t need = placement_bytes(e, site, depth, n_kv);
    if (need > budget) {
        char a[32], b[32];
        return err_set(err, STRATA_E_NOMEM, "GPU placement: with the groups streamed for prompt batches it needs %s "
                       "of device memory, more than the %s available", fmt_bytes(need, a, sizeof a),
                       fmt_bytes(budget, b, sizeof b));
    }
    return STRATA_OK;
}

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
    const char *fuse = getenv("STRATA_VK_FUSE");
    g->fuse = !(fuse && fuse[0] == '0');
    strata_status st = alloc_kv_sets(g, e->n_seq, (uint32_t)e->w.d.n_layers + 1, err);
    if (!st) st = vkb_open(p->index, p->index >= 0, &g->v, err);
    if (!st && !(st = acct_take(e->acct, ACCT_RAM, ACCT_SCRATCH, vkb_own_host_bytes(g->v), err)))
        g->own_host = vkb_own_host_bytes(g->v);
    if (st) return st;
    uint64_t budget = vkb_get_info(g->v)->budget_bytes;
    if (p->mem_cap && p->mem_cap < budget) budget = p->mem_cap;
    vkb_set_cap(g->v, budget); /* what the placement computes, the device layer enforces */
    uint32_t depth = p->stream_depth ? p->stream_depth : p->sites ? ENGINE_PLAN_STREAM_DEPTH : 0;
    if (depth > GPU_STREAM_MAX_DEPTH)
        return err_set(err, STRATA_E_INVALID, "GPU stream depth %u: expected 1 to %u", depth, GPU_STREAM_MAX_DEPTH);
    uint8_t *site = calloc(e->w.d.n_layers + 1, 1);
    if (!site) return err_set(err, STRATA_E_NOMEM, "out of memory");
    bool exact = p->sites != NULL;
    if (exact) {
        memcpy(site, p->sites, e->w.d.n_layers + 1);
        strata_error cerr = {0};
        st = check_sites(e, site, depth, g->n_kv, budget, &cerr);
        if (!st && p->prefill_sites) st = merge_prefill_sites(e, site, p->prefill_sites, depth, g->n_kv, budget, &cerr);
        if (st && p->mode == ENGINE_GPU_AUTO) { /* the device found is not the one planned for */
            snprintf(g->note, sizeof g->note, "%.400s; placed from the first layer instead", cerr.message);
            exact = false;
            st = STRATA_OK;
        } else if (st) {
            *err = cerr;
        }
    }
    if (!exact) {
        engine_gpu q = *p;
        q.stream_depth = p->stream_depth;
        choose_sites(e, budget, &q, g->n_kv, site);
    }
    if (!st) st = allocate_sites(e, site, depth, exact, n_placed, err);
    free(site);
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

void backend_vulkan_free(backend *b)
{
    if (!b) return;
    gpu_state *g = b->state;
    mem_account *a = b->e->acct;
    const char *stats = getenv("STRATA_VK_STATS");
    if (g->v && stats && stats[0] && stats[0] != '0') {
        end_chunk(g);
        if (g->decode.tokens) print_counts("decode", &g->decode, g->decode.tokens);
        if (g->prompt.chunks) print_counts("prompt", &g->prompt, g->prompt.chunks);
    }
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
    gpu_stream_free(g->stream);
    if (g->v) gpu_moe_free(g->v, a, g->moe);
    for (int i = 0; g->v && i < ACT_COUNT; i++) gpu_mem_free(g->v, a, ACCT_SCRATCH, g->act[i]);
    if (g->v) {
        gpu_mem_free(g->v, a, ACCT_SCRATCH, g->logits);
        gpu_mem_free(g->v, a, ACCT_SCRATCH, g->cs);
        gpu_mem_free(g->v, a, ACCT_SCRATCH, g->cs_swa);
        acct_give(a, ACCT_RAM, ACCT_SCRATCH, g->own_host);
        vkb_close(g->v);
    }
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
