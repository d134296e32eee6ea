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

float engine_f16_table[65536];
static pthread_once_t f16_once = PTHREAD_ONCE_INIT;
static void f16_table_init(void)
{
    for (uint32_t i = 0; i < 65536; i++) engine_f16_table[i] = fp16_to_f32((uint16_t)i);
}

/* ---- memory ---- */

static void *scratch(engine *e, uint64_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    e->scratch_bytes += bytes;
    return p;
}

static uint64_t max_act_bytes(const engine *e)
{
    const llama_dims *d = &e->w.d;
    uint64_t m = 0;
    for (uint64_t l = 0; l < d->n_layers; l++)
        for (int s = SLOT_WQ; s < SLOT_COUNT; s++) {
            const kernel_desc *k = e->w.kern[l][s];
            if (!k) continue;
            uint64_t b = matmul_act_bytes(k, e->w.layer[l][s]->ne[0], e->n_batch);
            if (b > m) m = b;
        }
    uint64_t b = matmul_act_bytes(e->w.kern_output, d->n_embd, e->n_batch);
    return b > m ? b : m;
}

static strata_status alloc_buffers(engine *e, strata_error *err)
{
    const llama_dims *d = &e->w.d;
    uint64_t B = e->n_batch;
    e->kv_row_bytes = d->kv_dim * (e->kv_type == GGML_TYPE_F32 ? 4 : 2);
    uint64_t cache = d->n_layers * e->n_ctx * e->kv_row_bytes;
    e->k_cache = scratch(e, cache);
    e->v_cache = scratch(e, cache);
    e->x = scratch(e, B * d->n_embd * 4);
    e->xn = scratch(e, B * d->n_embd * 4);
    e->q = scratch(e, B * d->q_dim * 4);
    e->k = scratch(e, B * d->kv_dim * 4);
    e->v = scratch(e, B * d->kv_dim * 4);
    e->att = scratch(e, B * d->q_dim * 4);
    e->gate = scratch(e, B * d->n_ff * 4);
    e->up = scratch(e, B * d->n_ff * 4);
    e->norm_w = scratch(e, d->n_embd * 4);
    e->rope_cs = scratch(e, B * d->rope_dim * 4);
    e->scores = scratch(e, (uint64_t)pool_size(e->pool) * e->n_ctx * 4);
    e->act = scratch(e, max_act_bytes(e));
    if (!e->k_cache || !e->v_cache || !e->x || !e->xn || !e->q || !e->k || !e->v || !e->att || !e->gate ||
        !e->up || !e->norm_w || !e->rope_cs || !e->scores || !e->act)
        return err_set(err, STRATA_E_NOMEM, "out of memory for a %" PRIu32 "-token context (KV cache %" PRIu64
                       " bytes)", e->n_ctx, 2 * cache);
    return STRATA_OK;
}

static strata_status configure(engine *e, const model_spec *spec, const engine_params *p, strata_error *err)
{
    uint64_t ctx = p->n_ctx ? p->n_ctx : spec->hp.context_length;
    if (ctx == 0) ctx = 2048;
    if (ctx > (1u << 24)) return err_set(err, STRATA_E_INVALID, "context of %" PRIu64 " tokens is too large", ctx);
    e->n_ctx = (uint32_t)ctx;
    e->n_batch = p->n_batch ? p->n_batch : 256;
    if (e->n_batch > e->n_ctx) e->n_batch = e->n_ctx;
    e->kv_type = p->kv_type == GGML_TYPE_F32 ? GGML_TYPE_F32 : GGML_TYPE_F16;
    if (p->kv_type != GGML_TYPE_F32 && p->kv_type != GGML_TYPE_F16 && p->kv_type != 0)
        return err_set(err, STRATA_E_UNSUPPORTED, "KV cache type %s is not supported (f16, f32)",
                       ggml_type_name(p->kv_type));
    if (!(e->pool = pool_new(p->n_threads > 0 ? p->n_threads : 1)))
        return err_set(err, STRATA_E_NOMEM, "cannot start %d threads", p->n_threads);
    return STRATA_OK;
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
    pthread_once(&f16_once, f16_table_init);
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
