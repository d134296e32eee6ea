/* Binding tensors to architecture slots (see weights.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/weights.h"
#include "kernels/cpu/dequant.h"
#include "util/error.h"

static strata_status expect(const gguf_tensor *t, const char *path, const char *name, const uint64_t ne[3],
                            strata_error *err)
{
    if (!t) return err_set(err, STRATA_E_FORMAT, "%s: model has no tensor '%s'", path, name);
    bool ok = t->ne[3] == 1;
    for (int i = 0; i < 3; i++) ok = ok && (ne[i] == 0 || t->ne[i] == ne[i]);
    if (!ok)
        return err_set(err, STRATA_E_FORMAT, "%s: tensor '%s' has shape %" PRIu64 " x %" PRIu64 " x %" PRIu64
                       ", expected %" PRIu64 " x %" PRIu64 " x %" PRIu64, path, name, t->ne[0], t->ne[1], t->ne[2],
                       ne[0], ne[1], ne[2]);
    return STRATA_OK;
}

/* Norm weights and biases are converted to floats as they are used. */
static strata_status vector_type(const gguf_tensor *t, const char *path, strata_error *err)
{
    if (dequant_supported(t->type)) return STRATA_OK;
    return err_set(err, STRATA_E_UNSUPPORTED, "%s: tensor '%s' has type %s, which strata cannot read", path, t->name,
                   ggml_type_name(t->type));
}

/* The shared expert's gate, up and down come together (placed with the
 * dense weights: they run for every token). Files without
 * expert_shared_feed_forward_length give its width by their shapes: the
 * first layer's sets it for the others. */
static strata_status bind_shared_expert(const char *path, model_weights *w, uint64_t l, strata_error *err)
{
    const gguf_tensor *const *t = w->layer[l];
    int n = !!t[LS_GATE_SHEXP] + !!t[LS_UP_SHEXP] + !!t[LS_DOWN_SHEXP];
    if (n != 0 && n != 3)
        return err_set(err, STRATA_E_FORMAT, "%s: layer %" PRIu64 " has only some of ffn_gate_shexp, ffn_up_shexp "
                       "and ffn_down_shexp (a shared expert needs all three)", path, l);
    if (!n && w->n_expert_shared)
        return err_set(err, STRATA_E_FORMAT, "%s: layer %" PRIu64 " has no shared expert (ffn_*_shexp) but the "
                       "metadata declares one", path, l);
    if (!n || w->d.n_ff_shexp) return STRATA_OK;
    w->d.n_ff_shexp = t[LS_GATE_SHEXP]->ne[1];
    if (t[LS_UP_SHEXP]->ne[1] != w->d.n_ff_shexp || t[LS_DOWN_SHEXP]->ne[0] != w->d.n_ff_shexp)
        return err_set(err, STRATA_E_FORMAT, "%s: layer %" PRIu64 ": the shared expert's gate, up and down "
                       "tensors disagree on its width", path, l);
    return STRATA_OK;
}

static strata_status bind_layer(const gguf_file *f, const char *path, model_weights *w, uint64_t l,
                                strata_error *err)
{
    for (int s = 0; s < LS_COUNT; s++) {
        slot_need need = arch_layer_need(w->arch, w->moe, (layer_slot)s);
        if (need == NEED_NONE) continue;
        char name[GGUF_MAX_NAME + 16];
        arch_layer_tensor_name((layer_slot)s, l, name, sizeof name);
        const gguf_tensor *t = gguf_find_tensor(f, name);
        if (!t && need == NEED_OPTIONAL) continue;
        uint64_t ne[3];
        arch_layer_shape(&w->d, w->arch, (layer_slot)s, ne);
        strata_status st = expect(t, path, name, ne, err);
        if (!st && arch_layer_slot_is_vector((layer_slot)s)) st = vector_type(t, path, err);
        if (st) return st;
        w->layer[l][s] = t;
    }
    strata_status st = w->moe ? bind_shared_expert(path, w, l, err) : STRATA_OK;
    if (st) return st;
    memcpy(w->dense[l], w->layer[l], sizeof w->dense[l]);
    if (w->moe) {
        const layer_slot exps[3] = {LS_GATE_EXPS, LS_UP_EXPS, LS_DOWN_EXPS};
        for (int j = 0; j < 3; j++) {
            w->exps[l][j] = w->layer[l][exps[j]];
            w->dense[l][exps[j]] = NULL;
        }
        w->expert_sets[l] = (store_expert_set){3, w->exps[l], (uint32_t)w->d.n_expert};
    }
    w->groups[l] = (store_group){LS_COUNT, w->dense[l]};
    return STRATA_OK;
}

static strata_status bind_globals(const gguf_file *f, const char *path, model_weights *w, strata_error *err)
{
    for (int s = 0; s < GS_COUNT; s++) {
        slot_need need = arch_global_need(w->arch, (global_slot)s);
        const char *name = arch_global_tensor_name((global_slot)s);
        const gguf_tensor *t = need == NEED_NONE ? NULL : gguf_find_tensor(f, name);
        if (!t && need != NEED_REQUIRED) continue;
        uint64_t ne[3];
        arch_global_shape(&w->d, (global_slot)s, ne);
        strata_status st = expect(t, path, name, ne, err);
        if (!st && s != GS_EMBD && s != GS_OUTPUT) st = vector_type(t, path, err);
        if (st) return st;
        w->global[s] = t;
    }
    /* tied output: the embedding matrix projects back to the vocabulary */
    if (!w->global[GS_OUTPUT]) w->global[GS_OUTPUT] = w->global[GS_EMBD];
    w->output[OS_NORM] = w->global[GS_OUTPUT_NORM];
    w->output[OS_PROJ] = w->global[GS_OUTPUT];
    w->groups[w->d.n_layers] = (store_group){OS_COUNT, w->output};
    return STRATA_OK;
}

strata_status weights_bind(const gguf_file *f, const model_spec *spec, const char *path, model_weights *w,
                           strata_error *err)
{
    memset(w, 0, sizeof *w);
    if (!(w->arch = arch_find(spec->hp.arch)))
        return err_set(err, STRATA_E_UNSUPPORTED, "%s: architecture '%s' is not supported (strata runs: %s)", path,
                       spec->hp.arch, arch_names());
    strata_status st = arch_dims(w->arch, spec, path, &w->d, err);
    if (st) return st;
    w->moe = arch_is_moe(w->arch, &w->d);
    w->n_expert_shared = spec->hp.n_expert_shared;
    uint64_t nl = w->d.n_layers;
    w->layer = calloc(nl, sizeof *w->layer);
    w->kern = calloc(nl, sizeof *w->kern);
    w->swa = calloc(nl, sizeof *w->swa);
    w->groups = calloc(nl + 1, sizeof *w->groups);
    w->dense = calloc(nl, sizeof *w->dense);
    if (w->moe) {
        w->expert_sets = calloc(nl, sizeof *w->expert_sets);
        w->exps = calloc(nl, sizeof *w->exps);
    }
    if (!w->layer || !w->kern || !w->swa || !w->groups || !w->dense || (w->moe && (!w->expert_sets || !w->exps)))
        return err_set(err, STRATA_E_NOMEM, "out of memory");
    for (uint64_t l = 0; l < nl; l++) {
        w->swa[l] = spec->layer_swa[l] && w->d.n_swa > 0;
        if ((st = bind_layer(f, path, w, l, err))) return st;
    }
    return bind_globals(f, path, w, err);
}

void weights_free(model_weights *w)
{
    free(w->layer);
    free(w->kern);
    free(w->swa);
    free(w->groups);
    free(w->dense);
    free(w->expert_sets);
    free(w->exps);
    memset(w, 0, sizeof *w);
}
