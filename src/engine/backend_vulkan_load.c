/* The Vulkan back end's device memory for a placement, and the upload of
 * resident groups' weights (backend_vulkan_internal.h). */
#include <stdlib.h>

#include "engine/backend_vulkan.h"
#include "engine/backend_vulkan_mem.h"
#include "engine/backend_vulkan_internal.h"
#include "kernels/cpu/dequant.h"
#include "util/error.h"

#define UPLOAD_CHUNK (16u << 20)

/* A group's device memory: its tensors (unless streamed) and its K and V
 * caches (a streamed layer's stay on the device). */
strata_status gpu_alloc_group(engine *e, uint32_t g, bool streamed, bool kv, strata_error *err)
{
    gpu_state *gs = st_of(e->gpu);
    gpu_group *gg = &gs->groups[g];
    gg->bytes = gpu_layout(&e->w, g, streamed, gg->off);
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
strata_status gpu_alloc_activations(engine *e, bool stream_experts, strata_error *err)
{
    gpu_state *gs = st_of(e->gpu);
    const model_dims *d = &e->w.d;
    strata_status st = STRATA_OK;
    for (int a = 0; a < ACT_COUNT && !st; a++) {
        uint64_t width = gpu_act_width(d, e->w.moe, (act_buf)a);
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
    const gguf_tensor *const *t = gpu_group_tensors(&e->w, g, &n);
    strata_status st = STRATA_OK;
    for (uint32_t s = 0; s < n && !st; s++) {
        if (!t[s]) continue;
        st = gpu_is_vector(&e->w, g, s) ? upload_vector(e, gg, t[s], gg->off[s], tmp, err)
                                    : upload_matrix(e, gg, t[s], gg->off[s], tmp, err);
    }
    return st;
}

/* Bytes of the upload buffer: a chunk of a matrix, or a vector's raw
 * bytes and its floats. */
static uint64_t upload_buffer_bytes(const model_weights *w)
{
    uint64_t vec_max = 0;
    for (uint64_t l = 0; l < w->d.n_layers; l++)
        for (int s = 0; s < LS_COUNT; s++)
            if (w->layer[l][s] && arch_layer_slot_is_vector((layer_slot)s) && w->layer[l][s]->ne[0] > vec_max)
                vec_max = w->layer[l][s]->ne[0];
    if (w->d.n_embd > vec_max) vec_max = w->d.n_embd;
    return UPLOAD_CHUNK > vec_max * 8 ? UPLOAD_CHUNK : vec_max * 8;
}

/* The pipelines of the weight types the GPU runs, compiled now: a GPU
 * driver's compile at load, not in the first tokens. */
static strata_status prepare_pipelines(engine *e, strata_error *err)
{
    uint32_t types[GGML_TYPE_COUNT];
    int n = 0;
    bool seen[GGML_TYPE_COUNT] = {false};
    for (uint32_t g = 0; g <= e->w.d.n_layers; g++) {
        uint32_t nt;
        const gguf_tensor *const *t = gpu_group_tensors(&e->w, g, &nt);
        for (uint32_t s = 0; e->site_prefill[g] == e->gpu && s < nt; s++)
            if (t[s] && !gpu_is_vector(&e->w, g, s) && t[s]->type < GGML_TYPE_COUNT && !seen[t[s]->type]) {
                seen[t[s]->type] = true;
                types[n++] = t[s]->type;
            }
    }
    return vkb_prepare(st_of(e->gpu)->v, types, n, err);
}

strata_status backend_vulkan_load(engine *e, strata_error *err)
{
    uint8_t *tmp = malloc(upload_buffer_bytes(&e->w));
    if (!tmp) return err_set(err, STRATA_E_NOMEM, "out of memory for the GPU upload buffer");
    strata_status st = STRATA_OK;
    for (uint32_t g = 0; g <= e->w.d.n_layers && !st; g++)
        if (e->site[g] == e->gpu && !st_of(e->gpu)->groups[g].streamed) st = load_group(e, g, tmp, err);
    free(tmp);
    if (!st && !vkb_get_info(st_of(e->gpu)->v)->is_cpu) st = prepare_pipelines(e, err);
    return st;
}
