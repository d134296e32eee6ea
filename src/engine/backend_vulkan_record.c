/* Recording the Vulkan back end's ops: one command buffer, begun when the
 * first op is recorded and run when the host needs a result; a barrier
 * only before an op that touches a buffer an op since the last barrier
 * wrote (or writes one it read); the ops held back for fusion emitted
 * (backend_vulkan_ops.c decides what fuses). */
#include "engine/backend_vulkan_internal.h"

void gpu_record(backend *b)
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
void gpu_hazard(gpu_state *g, uint32_t reads, uint32_t writes)
{
    if (((reads | writes) & g->written) || (writes & g->read)) {
        vkb_barrier(g->v);
        g->written = g->read = 0;
    }
    g->written |= writes;
    g->read |= reads;
}

void gpu_emit_norm(backend *b, act_buf dst, act_buf src, uint64_t w, uint64_t n, uint64_t rows, act_buf acc,
                      bool add)
{
    gpu_state *g = st_of(b);
    gpu_hazard(g, RES(src) | (add ? RES(acc) : 0), RES(dst) | (add ? RES(acc) : 0));
    vkb_rmsnorm_add(g->v, addr(b, src), w, addr(b, dst), add ? addr(b, acc) : 0, (uint32_t)n, (uint32_t)rows,
                    b->e->w.d.rms_eps);
}

void gpu_emit_matmul(backend *b, const pend_mm *m, uint32_t n_tok)
{
    gpu_state *g = st_of(b);
    gpu_hazard(g, RES(m->src), RES(m->dst));
    vkb_matmul(g->v, m->t->type, m->w, addr(b, m->src), addr(b, m->dst), (uint32_t)m->t->ne[0],
               (uint32_t)m->n_out, n_tok);
}

/* The fused matvec of job m: input normed by the pending norm when
 * p->mm_normed (workgroup 0 writing the normed input when write_xn), out
 * added into acc (with m's own output written as aux) when acc_into >= 0,
 * or the GLU of m and up. */
void gpu_emit_matvec(backend *b, const pend_mm *m, const pend_mm *up, bool write_xn, int acc_into)
{
    gpu_state *g = st_of(b);
    const pending *p = &g->p;
    act_buf src = p->mm_normed ? p->norm_src : m->src;
    uint32_t reads = RES(src), writes = RES(m->dst);
    if (up) writes |= RES(up->dst);
    if (write_xn) writes |= RES(p->norm_dst);
    if (acc_into >= 0) reads |= RES(acc_into), writes |= RES(acc_into);
    gpu_hazard(g, reads, writes);
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

void gpu_emit_rope(backend *b, const pend_rope *r)
{
    const model_dims *d = &b->e->w.d;
    gpu_state *g = st_of(b);
    gpu_hazard(g, RES(r->x), RES(r->x));
    vkb_rope(g->v, addr(b, r->x), vkb_addr(r->swa ? g->cs_swa : g->cs), r->n_tok, (uint32_t)r->n_heads,
             (uint32_t)d->head_dim, (uint32_t)d->rope_dim, (uint32_t)r->row_stride, b->e->w.arch->rope == ROPE_NEOX);
}

/* Records what is held back, unfused. */
void gpu_flush_pending(backend *b)
{
    pending *p = &st_of(b)->p;
    if (p->n_mm) {
        if (p->mm_normed) { /* the norm fused into the first job, which writes its output */
            gpu_emit_matvec(b, &p->mm[0], NULL, true, -1);
            for (int i = 1; i < p->n_mm; i++) gpu_emit_matvec(b, &p->mm[i], NULL, false, -1);
        } else {
            if (p->norm) gpu_emit_norm(b, p->norm_dst, p->norm_src, p->norm_w, p->norm_n, p->norm_rows, ACT_X, false);
            for (int i = 0; i < p->n_mm; i++) gpu_emit_matmul(b, &p->mm[i], 1);
        }
    } else if (p->norm) {
        gpu_emit_norm(b, p->norm_dst, p->norm_src, p->norm_w, p->norm_n, p->norm_rows, ACT_X, false);
    }
    for (int i = 0; i < p->n_rope; i++) gpu_emit_rope(b, &p->rope[i]);
    *p = (pending){0};
}

/* Runs what was recorded (the host is about to read a result). */
strata_status gpu_flush(backend *b, strata_error *err)
{
    gpu_state *g = st_of(b);
    if (g->async_err.status) { /* a streamed group's submission failed */
        *err = g->async_err;
        return err->status;
    }
    if (!g->recording) return STRATA_OK;
    gpu_flush_pending(b);
    g->recording = false;
    strata_status st = vkb_run(g->v, err);
    if (!st && g->stream) gpu_stream_submitted(g->stream, 0); /* everything finished */
    return st;
}

/* The counts of the chunk that just ended, into its class. */
void gpu_end_chunk(gpu_state *g)
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
strata_status gpu_put(backend *b, vkb_buf *dst, const void *src, uint64_t n, strata_error *err)
{
    gpu_state *g = st_of(b);
    gpu_record(b);
    if (vkb_stage_upload(g->v, dst, 0, src, n)) return STRATA_OK;
    strata_status st = gpu_flush(b, err);
    return st ? st : vkb_upload(g->v, dst, 0, src, n, err);
}

/* Device data to host memory: the command buffer runs with the copy. */
strata_status gpu_get(backend *b, vkb_buf *src, void *dst, uint64_t n, strata_error *err)
{
    gpu_state *g = st_of(b);
    gpu_record(b);
    gpu_flush_pending(b);
    if (vkb_stage_download(g->v, src, 0, dst, n)) return gpu_flush(b, err);
    strata_status st = gpu_flush(b, err);
    return st ? st : vkb_download(g->v, src, 0, dst, n, err);
}

/* ---- for backend_vulkan_moe.c ---- */

vkb *backend_vulkan_vkb(backend *b) { return st_of(b)->v; }
gpu_moe *backend_vulkan_moe_state(backend *b) { return st_of(b)->moe; }
uint64_t backend_vulkan_act(backend *b, act_buf a) { return addr(b, a); }

void backend_vulkan_op(backend *b, uint32_t reads, uint32_t writes)
{
    gpu_record(b);
    gpu_flush_pending(b);
    gpu_hazard(st_of(b), reads, writes);
}

strata_status backend_vulkan_put(backend *b, vkb_buf *dst, const void *src, uint64_t n, strata_error *err)
{
    return gpu_put(b, dst, src, n, err);
}

strata_status backend_vulkan_get(backend *b, act_buf a, void *dst, uint64_t n, strata_error *err)
{
    return gpu_get(b, st_of(b)->act[a], dst, n, err);
}

strata_status backend_vulkan_flush(backend *b, strata_error *err) { return gpu_flush(b, err); }

bool backend_vulkan_get_later(backend *b, act_buf a, void *dst, uint64_t n)
{
    gpu_state *g = st_of(b);
    gpu_record(b);
    gpu_flush_pending(b);
    return vkb_stage_download(g->v, g->act[a], 0, dst, n);
}
