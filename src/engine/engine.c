/* Engine lifecycle: binding the weights, sizing the KV cache and scratch
 * buffers, opening the store. The forward pass is in forward.c. */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/engine_internal.h"
#include "engine/matmul.h"
#include "engine/ops.h"
#include "engine/threadpool.h"
#include "kernels/cpu/dequant.h"
#include "store/store.h"
#include "util/error.h"
#include "util/fmt.h"
#include "util/fp16.h"


/* ---- memory ---- */

/* Buffers are faulted in at once: a budget the machine cannot honour then
 * fails at load rather than mid-generation, and the process's real memory
 * is what the accounting says from the first token on. */
static void *scratch(engine *e, uint64_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    memset(p, 0, bytes);
    e->scratch_bytes += bytes;
    return p;
}

static uint64_t max_act_bytes(const llama_weights *w, uint64_t n_batch)
{
    uint64_t m = matmul_act_bytes(w->kern_output, w->d.n_embd, n_batch);
    for (uint64_t l = 0; l < w->d.n_layers; l++)
        for (int s = SLOT_WQ; s < SLOT_COUNT; s++) {
            if (!w->kern[l][s]) continue; /* norms have no matrix kernel */
            uint64_t b = matmul_act_bytes(w->kern[l][s], w->layer[l][s]->ne[0], n_batch);
            if (b > m) m = b;
        }
    return m;
}

uint64_t engine_scores_per_thread(const llama_dims *d, uint64_t n_ctx)
{
    return d->n_heads / d->n_kv_heads * n_ctx;
}

/* Every buffer the engine allocates, in one place: alloc_buffers uses it,
 * and so does engine_describe (the planner asks the engine, it does not
 * duplicate the formulas). */
typedef struct buffer_sizes {
    uint64_t cache; /* K (and again V) */
    uint64_t x, xn, q, k, v, att, gate, up, norm_w, rope_cs, scores, act;
} buffer_sizes;

static buffer_sizes sizes_for(const llama_weights *w, uint64_t n_ctx, uint64_t B, uint32_t kv_type, int n_threads)
{
    const llama_dims *d = &w->d;
    return (buffer_sizes){
        .cache = d->n_layers * n_ctx * d->kv_dim * (kv_type == GGML_TYPE_F32 ? 4 : 2),
        .x = B * d->n_embd * 4, .xn = B * d->n_embd * 4, .q = B * d->q_dim * 4, .k = B * d->kv_dim * 4,
        .v = B * d->kv_dim * 4, .att = B * d->q_dim * 4, .gate = B * d->n_ff * 4, .up = B * d->n_ff * 4,
        .norm_w = d->n_embd * 4, .rope_cs = B * d->rope_dim * 4, .scores = (uint64_t)n_threads * engine_scores_per_thread(d, n_ctx) * 4,
        .act = max_act_bytes(w, B),
    };
}

static uint64_t sizes_total(const buffer_sizes *z)
{
    return 2 * z->cache + z->x + z->xn + z->q + z->k + z->v + z->att + z->gate + z->up + z->norm_w + z->rope_cs +
           z->scores + z->act;
}

static strata_status alloc_buffers(engine *e, strata_error *err)
{
    const llama_dims *d = &e->w.d;
    buffer_sizes z = sizes_for(&e->w, e->n_ctx, e->n_batch, e->kv_type, pool_size(e->pool));
    e->kv_head_bytes = d->head_dim * (e->kv_type == GGML_TYPE_F32 ? 4 : 2);
    e->kv = kv_ops_get(e->kv_type == GGML_TYPE_F32, e->kernels == KERNEL_FAST);
    e->swiglu = swiglu_get(e->kernels == KERNEL_FAST);
    e->k_cache = scratch(e, z.cache);
    e->v_cache = scratch(e, z.cache);
    e->x = scratch(e, z.x);
    e->xn = scratch(e, z.xn);
    e->q = scratch(e, z.q);
    e->k = scratch(e, z.k);
    e->v = scratch(e, z.v);
    e->att = scratch(e, z.att);
    e->gate = scratch(e, z.gate);
    e->up = scratch(e, z.up);
    e->norm_w = scratch(e, z.norm_w);
    e->rope_cs = scratch(e, z.rope_cs);
    e->scores = scratch(e, z.scores);
    e->act = scratch(e, z.act);
    if (!e->k_cache || !e->v_cache || !e->x || !e->xn || !e->q || !e->k || !e->v || !e->att || !e->gate ||
        !e->up || !e->norm_w || !e->rope_cs || !e->scores || !e->act)
        return err_set(err, STRATA_E_NOMEM, "out of memory for a %" PRIu32 "-token context (KV cache %" PRIu64
                       " bytes)", e->n_ctx, 2 * z.cache);
    return STRATA_OK;
}

/* Context, batch and KV type after defaults, validated. */
static strata_status resolve(const model_spec *spec, const engine_params *p, uint32_t *n_ctx, uint32_t *n_batch,
                             uint32_t *kv_type, strata_error *err)
{
    uint64_t ctx = p->n_ctx ? p->n_ctx : spec->hp.context_length;
    if (ctx == 0) ctx = 2048;
    if (ctx > (1u << 24)) return err_set(err, STRATA_E_INVALID, "context of %" PRIu64 " tokens is too large", ctx);
    *n_ctx = (uint32_t)ctx;
    *n_batch = p->n_batch ? p->n_batch : 256;
    if (*n_batch > *n_ctx) *n_batch = *n_ctx;
    *kv_type = p->kv_f32 ? GGML_TYPE_F32 : GGML_TYPE_F16;
    return STRATA_OK;
}

static strata_status configure(engine *e, const model_spec *spec, const engine_params *p, strata_error *err)
{
    e->kernels = p->kernels;
    strata_status st = resolve(spec, p, &e->n_ctx, &e->n_batch, &e->kv_type, err);
    if (st) return st;
    if (!(e->pool = pool_new(p->n_threads > 0 ? p->n_threads : 1)))
        return err_set(err, STRATA_E_NOMEM, "cannot start %d threads", p->n_threads);
    return STRATA_OK;
}

/* Measured here: 3.3-3.9 MiB for code, libraries, stacks, header and a small
 * vocabulary; the header term covers larger vocabularies. */
uint64_t engine_process_reserve(const gguf_file *f) { return (5ull << 20) + 2 * f->bytes_read; }

strata_status engine_describe(const gguf_file *f, const model_spec *spec, const engine_params *p, engine_desc *out,
                              strata_error *err)
{
    memset(out, 0, sizeof *out);
    llama_weights *w = calloc(1, sizeof *w);
    if (!w) return err_set(err, STRATA_E_NOMEM, "out of memory");
    out->weights = w;
    strata_status st = llama_weights_bind(f, spec, p->kernels, w, err);
    if (!st) st = resolve(spec, p, &out->n_ctx, &out->n_batch, &out->kv_type, err);
    if (st) return st;
    buffer_sizes z = sizes_for(w, out->n_ctx, out->n_batch, out->kv_type, p->n_threads > 0 ? p->n_threads : 1);
    out->kv_bytes = 2 * z.cache;
    out->buffer_bytes = sizes_total(&z);
    out->n_groups = (uint32_t)w->d.n_layers + 1;
    out->groups = w->groups;
    return STRATA_OK;
}

void engine_desc_free(engine_desc *d)
{
    if (d->weights) llama_weights_free(d->weights);
    free(d->weights);
    memset(d, 0, sizeof *d);
}

static strata_status open_store(engine *e, const engine_params *p, strata_error *err)
{
    store_config sc = p->store;
    char a[32], b[32], c[32], d[32], r[32];
    uint64_t fixed = e->scratch_bytes + p->mem_reserved; /* everything but the weights */
    if (p->mem_budget && p->mem_budget <= fixed)
        return err_set(err, STRATA_E_NOMEM, "a budget of %s cannot hold the process (%s) and the KV cache and buffers "
                       "(%s) of a %" PRIu32 "-token context", fmt_bytes(p->mem_budget, a, 32),
                       fmt_bytes(p->mem_reserved, r, 32), fmt_bytes(e->scratch_bytes, b, 32), e->n_ctx);
    sc.budget = p->mem_budget ? p->mem_budget - fixed : 0;
    uint64_t min_weights = 0;
    strata_status st = store_open(e->file, (uint32_t)e->w.d.n_layers + 1, e->w.groups, &sc, &e->store, &min_weights, err);
    if (st == STRATA_E_NOMEM && p->mem_budget)
        err_set(err, st, "a budget of %s is below the minimum working set of %s: process %s, KV cache and buffers %s, "
                "weights streamed through %d+1 slots %s", fmt_bytes(p->mem_budget, a, 32),
                fmt_bytes(fixed + min_weights, b, 32), fmt_bytes(p->mem_reserved, r, 32),
                fmt_bytes(e->scratch_bytes, c, 32), sc.prefetch_depth ? sc.prefetch_depth : 2,
                fmt_bytes(min_weights, d, 32));
    return st;
}

strata_status engine_open(const gguf_file *f, const model_spec *spec, const engine_params *p, engine **out,
                          strata_error *err)
{
    *out = NULL;
    engine *e = calloc(1, sizeof *e);
    if (!e) return err_set(err, STRATA_E_NOMEM, "out of memory");
    e->file = f;
    strata_status st = llama_weights_bind(f, spec, p->kernels, &e->w, err);
    if (!st) st = configure(e, spec, p, err);
    if (!st) st = alloc_buffers(e, err);
    if (!st) st = open_store(e, p, err);
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
    store_close(e->store);
    if (e->pool) pool_free(e->pool);
    void *bufs[] = {e->k_cache, e->v_cache, e->x, e->xn, e->q, e->k, e->v, e->att, e->gate, e->up, e->norm_w, e->rope_cs,
                    e->scores, e->act};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    llama_weights_free(&e->w);
    free(e);
}
