/* The Vulkan back end: layers resident in VRAM, run by the shaders of
 * src/backend/vulkan. Ops are recorded into one command buffer and run
 * when the host needs a result (the residual stream back, or logits); the
 * token's inputs (RoPE tables, the residual stream from the CPU) and its
 * logits are copied inside that command buffer, so a decoded token costs
 * one submission and one host wait.
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
 *   weights   per GPU group, one buffer: matrices as in the file, vectors
 *             (norms, biases) converted to f32
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

typedef struct gpu_group {
    vkb_buf *buf;                 /* the group's tensors; NULL: the group is not on the GPU */
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

/* Position slots of layer l's GPU cache: the CPU's (a window layer's ring
 * holds the window and a batch or two). */
static uint32_t gpu_kv_len(const model_weights *w, uint64_t l, uint32_t n_ctx, uint32_t n_batch)
{
    return engine_kv_len(w, l, n_ctx, n_batch);
}

uint64_t backend_vulkan_group_bytes(const model_weights *w, uint32_t g, uint32_t n_ctx, uint32_t n_batch,
                                    uint32_t n_seq)
{
    uint64_t off[LS_COUNT], bytes = layout(w, g, off);
    if (g < w->d.n_layers) bytes += (uint64_t)n_seq * 2 * gpu_kv_len(w, g, n_ctx, n_batch) * w->d.kv_dim * 2;
    return bytes;
}

uint64_t backend_vulkan_fixed_bytes(const model_weights *w, uint32_t n_batch)
{
    const model_dims *d = &w->d;
    uint64_t per_tok = 2 * d->n_embd + 2 * d->q_dim + 2 * d->kv_dim + 2 * d->n_ff + d->n_vocab + 2 * d->rope_dim;
    return per_tok * n_batch * 4 + ACT_COUNT * ALIGN;
}

/* ---- allocation (at placement) and loading ---- */

static strata_status alloc_group(engine *e, uint32_t g, strata_error *err)
{
    gpu_state *gs = st_of(e->gpu);
    gpu_group *gg = &gs->groups[g];
    uint64_t bytes = layout(&e->w, g, gg->off);
    strata_status st = vkb_alloc(gs->v, bytes, false, &gg->buf, err);
    if (!st && g < e->w.d.n_layers) {
        gg->kv_len = gpu_kv_len(&e->w, g, e->n_ctx, e->n_batch);
        uint64_t cache = (uint64_t)gg->kv_len * e->w.d.kv_dim * 2;
        for (uint32_t i = 0; i < gs->n_kv && !st; i++) {
            st = vkb_alloc(gs->v, cache, false, &gs->kv[i].k[g], err);
            if (!st) st = vkb_alloc(gs->v, cache, false, &gs->kv[i].v[g], err);
        }
    }
    if (st) { /* all or nothing */
        vkb_free(gs->v, gg->buf);
        for (uint32_t i = 0; i < gs->n_kv; i++) {
            vkb_free(gs->v, gs->kv[i].k[g]);
            vkb_free(gs->v, gs->kv[i].v[g]);
            gs->kv[i].k[g] = gs->kv[i].v[g] = NULL;
        }
        *gg = (gpu_group){0};
    }
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
        if (e->site[g] == e->gpu) st = load_group(e, g, tmp, err);
    free(tmp);
    gpu_state *gs = st_of(e->gpu);
    if (!st && !vkb_get_info(gs->v)->is_cpu) { /* a GPU driver's pipeline compiles at load, not in the first tokens */
        uint32_t types[GGML_TYPE_COUNT];
        int n = 0;
        bool seen[GGML_TYPE_COUNT] = {false};
        for (uint32_t g = 0; g <= e->w.d.n_layers; g++) {
            uint32_t nt;
            const gguf_tensor *const *t = group_tensors(&e->w, g, &nt);
            for (uint32_t s = 0; e->site[g] == e->gpu && s < nt; s++)
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
    if (!g->recording) return STRATA_OK;
    flush_pending(b);
    g->recording = false;
    return vkb_run(g->v, err);
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

static strata_status gpu_from_host(backend *b, const float *x, uint32_t n_tok, strata_error *err)
{
    flush_pending(b);
    return put(b, st_of(b)->act[ACT_X], x, (uint64_t)n_tok * b->e->w.d.n_embd * 4, err);
}

static strata_status gpu_to_host(backend *b, float *x, uint32_t n_tok, strata_error *err)
{
    return get(b, st_of(b)->act[ACT_X], x, (uint64_t)n_tok * b->e->w.d.n_embd * 4, err);
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

/* Layers from the first on, while they fit in the budget, the shaders run
 * their types and the driver gives their memory (allocated here: a failure
 * ends the placement there, with the reason in the note); the output too
 * when every layer is on the GPU. */
static uint32_t place(engine *e, uint64_t budget, uint32_t max_layers)
{
    const model_weights *w = &e->w;
    gpu_state *gs = st_of(e->gpu);
    uint64_t fixed = backend_vulkan_fixed_bytes(w, e->n_batch), used = fixed;
    uint32_t n = 0;
    strata_error err = {0};
    if (fixed >= budget) return 0;
    if (alloc_activations(e, &err)) {
        snprintf(gs->note, sizeof gs->note, "%s", err.message);
        return 0;
    }
    for (uint32_t g = 0; g <= w->d.n_layers; g++) {
        uint64_t b = backend_vulkan_group_bytes(w, g, e->n_ctx, e->n_batch, gs->n_kv);
        bool allowed = max_layers == 0 || g < max_layers || (g == w->d.n_layers && max_layers >= g);
        if (!allowed || !group_supported(w, g) || used + b > budget) break;
        if (alloc_group(e, g, &err)) {
            snprintf(gs->note, sizeof gs->note, "%s", err.message);
            break;
        }
        used += b;
        e->site[g] = e->gpu;
        n++;
    }
    return n;
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
    if (st) return st;
    uint64_t budget = vkb_get_info(g->v)->budget_bytes;
    if (p->mem_cap && p->mem_cap < budget) budget = p->mem_cap;
    *n_placed = place(e, budget, p->max_layers);
    if (g->note[0]) snprintf(e->gpu_note, sizeof e->gpu_note, "%s", g->note);
    return STRATA_OK;
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
    const char *stats = getenv("STRATA_VK_STATS");
    if (g->v && stats && stats[0] && stats[0] != '0') {
        end_chunk(g);
        if (g->decode.tokens) print_counts("decode", &g->decode, g->decode.tokens);
        if (g->prompt.chunks) print_counts("prompt", &g->prompt, g->prompt.chunks);
    }
    for (uint32_t i = 0; g->v && i <= b->e->w.d.n_layers; i++) {
        vkb_free(g->v, g->groups[i].buf);
        for (uint32_t k = 0; k < g->n_kv; k++) {
            vkb_free(g->v, g->kv[k].k[i]);
            vkb_free(g->v, g->kv[k].v[i]);
        }
    }
    for (uint32_t k = 0; k < g->n_kv; k++) {
        free(g->kv[k].k);
        free(g->kv[k].v);
    }
    free(g->kv);
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
