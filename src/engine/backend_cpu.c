/* The CPU back end: the engine's host buffers and today's kernels (matmul
 * over the thread pool, attention over the head-major KV cache, scalar
 * norms and RoPE) behind the back-end table. */
#include <string.h>

#include "engine/backend_cpu.h"
#include "engine/engine_internal.h"
#include "engine/matmul.h"
#include "kernels/cpu/dequant.h"
#include "util/error.h"

static float *buf(backend *b, act_buf a) { return b->e->act[a]; }

/* Weights come from the store: resident, or streamed into its ring. A
 * layer's stacked experts are not in its group (their host is NULL: the
 * moe op gets them from the expert cache), but their tensor and kernel are
 * given. */
static strata_status cpu_acquire(backend *b, uint32_t g, be_weight *w, strata_error *err)
{
    const model_weights *mw = &b->e->w;
    bool layer = g < mw->d.n_layers;
    const gguf_tensor *const *t = layer ? mw->layer[g] : mw->groups[g].tensors;
    const void *const *data;
    strata_status st = store_acquire(b->e->store, g, &data, err);
    for (uint32_t s = 0; s < mw->groups[g].n && !st; s++) {
        const kernel_desc *k = layer ? mw->kern[g][s] : s == OS_PROJ ? mw->kern_output : NULL;
        w[s] = (be_weight){.t = t[s], .host = data[s], .k = k};
    }
    return st;
}

static void cpu_release(backend *b, uint32_t g) { store_release(b->e->store, g); }

static strata_status cpu_begin_chunk(backend *b, uint32_t n_tok, strata_error *err) { return STRATA_OK; }

static strata_status cpu_from_host(backend *b, act_buf a, const float *x, uint64_t n, strata_error *err)
{
    if (x != buf(b, a)) memcpy(buf(b, a), x, n * sizeof(float));
    return STRATA_OK;
}

static strata_status cpu_to_host(backend *b, act_buf a, float *x, uint64_t n, strata_error *err)
{
    if (x != buf(b, a)) memcpy(x, buf(b, a), n * sizeof(float));
    return STRATA_OK;
}

/* A vector weight as floats in e->vec (its type was checked at binding). */
static const float *vec(backend *b, const be_weight *w)
{
    dequant_row(w->t->type, w->host, b->e->vec, w->t->ne[0], NULL);
    return b->e->vec;
}

static void cpu_norm(backend *b, act_buf dst, act_buf src, const be_weight *w, uint64_t n, uint64_t rows)
{
    const float *nw = vec(b, w);
    float *y = buf(b, dst), *x = buf(b, src);
    for (uint64_t i = 0; i < rows; i++) op_rmsnorm(y + i * n, x + i * n, nw, n, b->e->w.d.rms_eps);
}

static matmul_args job_args(backend *b, const mm_job *j, uint32_t n_tok)
{
    const gguf_tensor *t = j->w->t;
    const uint8_t *rows = (const uint8_t *)j->w->host + j->row0 * ggml_row_bytes(t->type, t->ne[0]);
    return (matmul_args){.k = j->w->k, .w = rows, .n_in = t->ne[0], .n_out = j->n_out, .x = buf(b, j->src),
                         .n_tok = n_tok, .y = buf(b, j->dst), .act = b->e->act_scratch};
}

#define MAX_JOBS 4

/* Products of one input run as one pass over their rows when their
 * activation formats agree (Q, K, V; gate, up). */
static void cpu_matmul(backend *b, const mm_job *jobs, int n_jobs, uint32_t n_tok)
{
    matmul_args a[MAX_JOBS];
    for (int i = 0; i < n_jobs; i++) a[i] = job_args(b, &jobs[i], n_tok);
    if (n_jobs > 1 && matmul_can_share(a, n_jobs)) {
        matmul_multi(b->e->pool, a, n_jobs);
        return;
    }
    for (int i = 0; i < n_jobs; i++) matmul(b->e->pool, &a[i]);
}

static void cpu_add_bias(backend *b, act_buf y, const be_weight *bias, uint64_t n, uint32_t n_tok)
{
    op_add_rows(buf(b, y), vec(b, bias), n, n_tok);
}

static void cpu_rope(backend *b, act_buf x, uint64_t n_heads, uint64_t row_stride, bool swa, uint32_t n_tok)
{
    engine *e = b->e;
    const model_dims *d = &e->w.d;
    bool neox = e->w.arch->rope == ROPE_NEOX;
    const float *table = swa ? e->rope_cs_swa : e->rope_cs;
    float *p = buf(b, x);
    for (uint32_t t = 0; t < n_tok; t++)
        for (uint64_t h = 0; h < n_heads; h++)
            op_rope(p + t * row_stride + h * d->head_dim, table + t * d->rope_dim, d->rope_dim, neox);
}

static void cpu_attention(backend *b, uint64_t l, uint32_t n_tok)
{
    engine_store_kv(b->e, l, n_tok);
    engine_attention(b->e, l, n_tok);
}

static void cpu_glu(backend *b, uint64_t n) { b->e->glu(buf(b, ACT_GATE), buf(b, ACT_UP), n); }

static void cpu_add(backend *b, act_buf y, act_buf x, uint64_t n) { op_add(buf(b, y), buf(b, x), n); }

static strata_status cpu_logits(backend *b, const be_weight *norm, const be_weight *out, uint32_t first,
                                uint32_t n_tok, float *dst, strata_error *err)
{
    uint64_t n_embd = b->e->w.d.n_embd, rows = n_tok - first;
    float *x = buf(b, ACT_X);
    memmove(x, x + first * n_embd, rows * n_embd * sizeof(float));
    cpu_norm(b, ACT_XN, ACT_X, norm, n_embd, rows);
    matmul_args a = {.k = out->k, .w = out->host, .n_in = n_embd, .n_out = b->e->w.d.n_vocab, .x = buf(b, ACT_XN),
                     .n_tok = rows, .y = dst, .act = b->e->act_scratch};
    matmul(b->e->pool, &a);
    return STRATA_OK;
}

static const backend_ops CPU_OPS = {
    .name = "cpu",
    .acquire = cpu_acquire,
    .release = cpu_release,
    .begin_chunk = cpu_begin_chunk,
    .from_host = cpu_from_host,
    .to_host = cpu_to_host,
    .norm = cpu_norm,
    .matmul = cpu_matmul,
    .add_bias = cpu_add_bias,
    .rope = cpu_rope,
    .attention = cpu_attention,
    .glu = cpu_glu,
    .moe = backend_cpu_moe,
    .add = cpu_add,
    .logits = cpu_logits,
};

static strata_status kernel_for(const gguf_tensor *t, kernel_mode mode, const kernel_desc **k, strata_error *err)
{
    *k = kernel_select(t->type, mode);
    if (!*k)
        return err_set(err, STRATA_E_UNSUPPORTED, "tensor '%s' has type %s, which the CPU cannot run", t->name,
                       ggml_type_name(t->type));
    /* quantized activations come in whole blocks; rows that are not fall back */
    const ggml_type_info *a = ggml_type_get((*k)->act_type);
    if ((*k)->act_type != GGML_TYPE_F32 && t->ne[0] % a->block_elems) *k = kernel_reference(t->type);
    return STRATA_OK;
}

strata_status backend_cpu_select_kernels(model_weights *w, kernel_mode mode, strata_error *err)
{
    strata_status st = kernel_for(w->output[OS_PROJ], mode, &w->kern_output, err);
    for (uint64_t l = 0; l < w->d.n_layers && !st; l++)
        for (int s = 0; s < LS_COUNT && !st; s++)
            if (w->layer[l][s] && !arch_layer_slot_is_vector((layer_slot)s))
                st = kernel_for(w->layer[l][s], mode, &w->kern[l][s], err);
    return st;
}

void backend_cpu_init(backend *b, struct engine *e) { *b = (backend){.ops = &CPU_OPS, .e = e}; }
