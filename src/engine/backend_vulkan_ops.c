/* The Vulkan back end's op table.
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
 * Recording and emitting: backend_vulkan_record.c. */
#include <string.h>

#include "engine/backend_vulkan_internal.h"

/* Job j as held back: its weight from row row0 on, by value. */
static pend_mm pend_of(const mm_job *j)
{
    return (pend_mm){j->w->t, j->w->dev + j->row0 * ggml_row_bytes(j->w->t->type, j->w->t->ne[0]), j->n_out, j->src,
                     j->dst};
}

static strata_status gpu_begin_chunk(backend *b, uint32_t n_tok, strata_error *err)
{
    engine *e = b->e;
    gpu_state *g = st_of(b);
    uint64_t bytes = (uint64_t)n_tok * e->w.d.rope_dim * 4;
    strata_status st = gpu_flush(b, err);
    gpu_end_chunk(g);
    vkb_get_stats(g->v, &g->chunk_start);
    g->chunk_tok = n_tok;
    if (!st && bytes) st = gpu_put(b, g->cs, e->rope_cs, bytes, err);
    if (!st && bytes && e->w.d.n_swa) st = gpu_put(b, g->cs_swa, e->rope_cs_swa, bytes, err);
    return st;
}

static strata_status gpu_from_host(backend *b, act_buf a, const float *x, uint64_t n, strata_error *err)
{
    gpu_flush_pending(b);
    return gpu_put(b, st_of(b)->act[a], x, n * 4, err);
}

static strata_status gpu_to_host(backend *b, act_buf a, float *x, uint64_t n, strata_error *err)
{
    return gpu_get(b, st_of(b)->act[a], x, n * 4, err);
}

static void gpu_norm(backend *b, act_buf dst, act_buf src, const be_weight *w, uint64_t n, uint64_t rows)
{
    gpu_state *g = st_of(b);
    gpu_record(b);
    gpu_flush_pending(b);
    if (!g->fuse) {
        gpu_emit_norm(b, dst, src, w->dev, n, rows, ACT_X, false);
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
    gpu_record(b);
    pending *p = &g->p;
    if (p->n_mm || p->n_rope || !g->fuse || n_tok != 1 || n_jobs > 3) {
        gpu_flush_pending(b);
        for (int i = 0; i < n_jobs; i++) { /* products of one input, into different outputs */
            pend_mm m = pend_of(&jobs[i]);
            gpu_emit_matmul(b, &m, n_tok);
        }
        return;
    }
    bool normed = true;
    for (int i = 0; i < n_jobs; i++) normed = normed && norm_fits(p, &jobs[i]);
    if (p->norm && !normed) {
        gpu_flush_pending(b);
    }
    p->mm_normed = normed && p->norm;
    p->n_mm = 0;
    pend_mm m[3];
    for (int i = 0; i < n_jobs; i++) m[i] = pend_of(&jobs[i]);
    if (n_jobs <= 2) { /* kept: an add or glu may follow */
        memcpy(p->mm, m, (size_t)n_jobs * sizeof m[0]);
        p->n_mm = n_jobs;
        return;
    }
    for (int i = 0; i < n_jobs; i++) { /* q, k, v: nothing fuses after them */
        if (p->mm_normed) gpu_emit_matvec(b, &m[i], NULL, i == 0, -1);
        else gpu_emit_matmul(b, &m[i], 1);
    }
    *p = (pending){0};
}

static void gpu_add_bias(backend *b, act_buf y, const be_weight *bias, uint64_t n, uint32_t n_tok)
{
    gpu_state *g = st_of(b);
    gpu_record(b);
    gpu_flush_pending(b);
    gpu_hazard(g, RES(y), RES(y));
    vkb_add_rows(g->v, addr(b, y), bias->dev, (uint32_t)n, n_tok);
}

static void gpu_rope(backend *b, act_buf x, uint64_t n_heads, uint64_t row_stride, bool swa, uint32_t n_tok)
{
    gpu_state *g = st_of(b);
    gpu_record(b);
    pending *p = &g->p;
    if (p->norm || p->n_mm || p->n_rope == 2) gpu_flush_pending(b);
    pend_rope r = {x, n_heads, row_stride, swa, n_tok};
    if (!g->fuse) {
        gpu_emit_rope(b, &r);
        return;
    }
    p->rope[p->n_rope++] = r;
}

static void gpu_glu(backend *b, uint64_t n)
{
    gpu_state *g = st_of(b);
    gpu_record(b);
    pending *p = &g->p;
    if (p->n_mm == 2 && p->mm[0].dst == ACT_GATE && p->mm[1].dst == ACT_UP && p->mm[0].src == p->mm[1].src &&
        p->mm[0].t->type == p->mm[1].t->type && p->mm[0].t->ne[0] == p->mm[1].t->ne[0] &&
        p->mm[0].n_out == n && p->mm[1].n_out == n) {
        gpu_emit_matvec(b, &p->mm[0], &p->mm[1], p->mm_normed, -1);
        *p = (pending){0};
        return;
    }
    gpu_flush_pending(b);
    gpu_hazard(g, RES(ACT_GATE) | RES(ACT_UP), RES(ACT_GATE));
    vkb_glu(g->v, addr(b, ACT_GATE), addr(b, ACT_UP), (uint32_t)n, b->e->w.arch->act == ACT_GELU);
}

static void gpu_add(backend *b, act_buf y, act_buf x, uint64_t n)
{
    gpu_state *g = st_of(b);
    gpu_record(b);
    pending *p = &g->p;
    if (p->n_mm == 1 && p->mm[0].dst == x && p->mm[0].n_out == n && y != x && y != p->mm[0].src &&
        !(p->mm_normed && (y == p->norm_src || y == p->norm_dst))) {
        gpu_emit_matvec(b, &p->mm[0], NULL, p->mm_normed, (int)y);
        *p = (pending){0};
        return;
    }
    if (!p->n_mm && !p->n_rope && p->norm && p->norm_dst == x && p->norm_n * p->norm_rows == n && y != x &&
        y != p->norm_src) { /* Gemma's post-norm, then the residual add */
        gpu_emit_norm(b, p->norm_dst, p->norm_src, p->norm_w, p->norm_n, p->norm_rows, y, true);
        *p = (pending){0};
        return;
    }
    gpu_flush_pending(b);
    gpu_hazard(g, RES(y) | RES(x), RES(y));
    vkb_add(g->v, addr(b, y), addr(b, x), (uint32_t)n);
}

static strata_status gpu_logits(backend *b, const be_weight *norm, const be_weight *out, uint32_t first,
                                uint32_t n_tok, float *dst, strata_error *err)
{
    const model_dims *d = &b->e->w.d;
    gpu_state *g = st_of(b);
    uint32_t rows = n_tok - first;
    gpu_record(b);
    gpu_flush_pending(b);
    if (rows == 1 && g->fuse && (uint64_t)first * d->n_embd % 4 == 0) { /* the final norm fused in */
        gpu_hazard(g, RES(ACT_X), RES_LOGITS);
        vkb_mv mv = {.type = out->t->type, .w = out->dev, .x = addr(b, ACT_X) + (uint64_t)first * d->n_embd * 4,
                     .y = vkb_addr(g->logits), .norm_w = norm->dev, .n_in = (uint32_t)d->n_embd,
                     .n_out = (uint32_t)d->n_vocab, .eps = d->rms_eps};
        vkb_matvec(g->v, &mv);
    } else {
        gpu_hazard(g, RES(ACT_X), RES(ACT_XN));
        vkb_rmsnorm(g->v, addr(b, ACT_X) + (uint64_t)first * d->n_embd * 4, norm->dev, addr(b, ACT_XN),
                    (uint32_t)d->n_embd, rows, d->rms_eps);
        gpu_hazard(g, RES(ACT_XN), RES_LOGITS);
        vkb_matmul(g->v, out->t->type, out->dev, addr(b, ACT_XN), vkb_addr(g->logits), (uint32_t)d->n_embd,
                   (uint32_t)d->n_vocab, rows);
    }
    return gpu_get(b, g->logits, dst, (uint64_t)rows * d->n_vocab * 4, err);
}

const backend_ops gpu_vulkan_ops = {
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
