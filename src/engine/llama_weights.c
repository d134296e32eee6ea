/* Binding the llama tensor set: every tensor the forward pass needs, with
 * its shape checked against the hyper-parameters, before any data is read. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/llama_weights.h"
#include "util/error.h"

static const char *const slot_names[SLOT_COUNT] = {"attn_norm", "attn_q",   "attn_k",  "attn_v",  "attn_output",
                                                   "ffn_norm",  "ffn_gate", "ffn_up", "ffn_down"};

static strata_status expect(const gguf_tensor *t, const char *name, uint64_t ne0, uint64_t ne1, strata_error *err)
{
    if (!t) return err_set(err, STRATA_E_FORMAT, "model has no tensor '%s'", name);
    bool ok = t->ne[0] == ne0 && t->ne[1] == ne1 && t->ne[2] == 1 && t->ne[3] == 1;
    if (!ok)
        return err_set(err, STRATA_E_FORMAT, "tensor '%s' has shape %" PRIu64 " x %" PRIu64 ", expected %" PRIu64
                       " x %" PRIu64, name, t->ne[0], t->ne[1], ne0, ne1);
    return STRATA_OK;
}

static strata_status kernel_for(const gguf_tensor *t, kernel_mode mode, const kernel_desc **k, strata_error *err)
{
    *k = kernel_select(t->type, mode);
    if (!*k)
        return err_set(err, STRATA_E_UNSUPPORTED, "tensor '%s' has type %s, which the engine cannot run", t->name,
                       ggml_type_name(t->type));
    /* quantized activations come in whole blocks; rows that are not fall back */
    const ggml_type_info *a = ggml_type_get((*k)->act_type);
    if ((*k)->act_type != GGML_TYPE_F32 && t->ne[0] % a->block_elems) *k = kernel_reference(t->type);
    return STRATA_OK;
}

static strata_status dims_from_spec(const model_spec *s, llama_dims *d, strata_error *err)
{
    const model_hparams *hp = &s->hp;
    if (strcmp(hp->arch, "llama"))
        return err_set(err, STRATA_E_UNSUPPORTED, "architecture '%s' is not supported (strata runs: llama)", hp->arch);
    if (!hp->n_embd || !hp->n_layers || !hp->n_heads || !hp->n_kv_heads || !hp->n_ff || !hp->head_dim_k ||
        hp->head_dim_k != hp->head_dim_v)
        return err_set(err, STRATA_E_FORMAT, "llama model lacks embedding/block/head/feed-forward sizes");
    for (uint64_t l = 0; l < hp->n_layers; l++)
        if (s->kv_heads[l] != hp->n_kv_heads)
            return err_set(err, STRATA_E_UNSUPPORTED, "per-layer KV head counts are not supported for llama");
    *d = (llama_dims){.n_embd = hp->n_embd, .n_layers = hp->n_layers, .n_heads = hp->n_heads,
                      .n_kv_heads = hp->n_kv_heads, .head_dim = hp->head_dim_k, .n_ff = hp->n_ff,
                      .n_vocab = hp->vocab_size};
    d->q_dim = d->n_heads * d->head_dim;
    d->kv_dim = d->n_kv_heads * d->head_dim;
    d->rope_dim = hp->rope_dim ? hp->rope_dim : d->head_dim;
    if (d->rope_dim > d->head_dim || d->rope_dim % 2)
        return err_set(err, STRATA_E_FORMAT, "rope.dimension_count %" PRIu64 " does not fit head dimension %" PRIu64,
                       d->rope_dim, d->head_dim);
    d->rope_base = (float)hp->rope_freq_base;
    d->rms_eps = hp->rms_eps > 0 ? (float)hp->rms_eps : 1e-5f;
    d->rope_freq_scale = 1.0f;
    if (!strcmp(hp->rope_scaling, "linear") && hp->rope_scaling_factor > 0)
        d->rope_freq_scale = (float)(1.0 / hp->rope_scaling_factor);
    else if (strcmp(hp->rope_scaling, "none") && hp->rope_scaling_factor != 1.0)
        return err_set(err, STRATA_E_UNSUPPORTED, "rope scaling '%s' is not supported (none, linear)", hp->rope_scaling);
    return STRATA_OK;
}

static strata_status bind_layer(const gguf_file *f, llama_weights *w, uint64_t l, kernel_mode mode,
                                strata_error *err)
{
    const llama_dims *d = &w->d;
    const uint64_t shapes[SLOT_COUNT][2] = {
        {d->n_embd, 1},       {d->n_embd, d->q_dim}, {d->n_embd, d->kv_dim}, {d->n_embd, d->kv_dim},
        {d->q_dim, d->n_embd}, {d->n_embd, 1},       {d->n_embd, d->n_ff},   {d->n_embd, d->n_ff},
        {d->n_ff, d->n_embd},
    };
    for (int s = 0; s < SLOT_COUNT; s++) {
        char name[GGUF_MAX_NAME + 16];
        snprintf(name, sizeof name, "blk.%" PRIu64 ".%s.weight", l, slot_names[s]);
        const gguf_tensor *t = gguf_find_tensor(f, name);
        strata_status st = expect(t, name, shapes[s][0], shapes[s][1], err);
        if (!st && s != SLOT_ATTN_NORM && s != SLOT_FFN_NORM) st = kernel_for(t, mode, &w->kern[l][s], err);
        if (st) return st;
        w->layer[l][s] = t;
    }
    w->groups[l] = (store_group){SLOT_COUNT, w->layer[l]};
    return STRATA_OK;
}

static strata_status bind_globals(const gguf_file *f, llama_weights *w, kernel_mode mode, strata_error *err)
{
    const llama_dims *d = &w->d;
    w->embd = gguf_find_tensor(f, "token_embd.weight");
    strata_status st = expect(w->embd, "token_embd.weight", d->n_embd, d->n_vocab, err);
    if (st) return st;
    w->global[GSLOT_OUTPUT_NORM] = gguf_find_tensor(f, "output_norm.weight");
    if ((st = expect(w->global[GSLOT_OUTPUT_NORM], "output_norm.weight", d->n_embd, 1, err))) return st;
    const gguf_tensor *out = gguf_find_tensor(f, "output.weight");
    if (!out) out = w->embd; /* tied output: the embedding matrix projects back to the vocabulary */
    if ((st = expect(out, out->name, d->n_embd, d->n_vocab, err))) return st;
    w->global[GSLOT_OUTPUT] = out;
    w->groups[d->n_layers] = (store_group){GSLOT_COUNT, w->global};
    return kernel_for(out, mode, &w->kern_output, err);
}

strata_status llama_weights_bind(const gguf_file *f, const model_spec *spec, kernel_mode mode, llama_weights *w,
                                  strata_error *err)
{
    memset(w, 0, sizeof *w);
    strata_status st = dims_from_spec(spec, &w->d, err);
    if (st) return st;
    w->layer = calloc(w->d.n_layers, sizeof *w->layer);
    w->kern = calloc(w->d.n_layers, sizeof *w->kern);
    w->groups = calloc(w->d.n_layers + 1, sizeof *w->groups);
    if (!w->layer || !w->kern || !w->groups) return err_set(err, STRATA_E_NOMEM, "out of memory");
    for (uint64_t l = 0; l < w->d.n_layers; l++)
        if ((st = bind_layer(f, w, l, mode, err))) return st;
    return bind_globals(f, w, mode, err);
}

void llama_weights_free(llama_weights *w)
{
    free(w->layer);
    free(w->kern);
    free(w->groups);
    memset(w, 0, sizeof *w);
}
