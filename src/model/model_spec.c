/* Hyper-parameters from GGUF metadata (keys prefixed by the architecture
 * name, e.g. llama.block_count) and byte accounting from the tensor table. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_spec.h"
#include "util/error.h"

typedef struct spec_ctx {
    const gguf_file *f;
    const char *path;
    const char *arch;
    strata_error *err;
} spec_ctx;

/* Reads ARCH.suffix as an unsigned integer; absent keys leave *out as 0.
 * A present key of a non-integer type, or above `max`, is an error. */
static strata_status arch_u64(const spec_ctx *c, const char *suffix, uint64_t max, uint64_t *out)
{
    char key[256];
    snprintf(key, sizeof key, "%s.%s", c->arch, suffix);
    *out = 0;
    const gguf_kv *kv = gguf_find(c->f, key);
    if (!kv) return STRATA_OK;
    if (kv->value.type == GGUF_TYPE_ARRAY) { /* per-layer values: take layer 0 */
        if (!gguf_array_u64(&kv->value.arr, 0, out) && kv->value.arr.n > 0)
            return err_set(c->err, STRATA_E_FORMAT, "%s: %s is not an array of non-negative integers", c->path, key);
    } else if (!gguf_value_to_u64(&kv->value, out)) {
        return err_set(c->err, STRATA_E_FORMAT, "%s: %s is not a non-negative integer", c->path, key);
    }
    if (*out > max)
        return err_set(c->err, STRATA_E_FORMAT, "%s: %s = %" PRIu64 " is out of range (max %" PRIu64 ")", c->path,
                       key, *out, max);
    return STRATA_OK;
}

/* A key that, when present, must be a finite number >= 0, also as the
 * float the engine uses (an F64 of 1e300 would be an infinite scale). */
static strata_status arch_f64(const spec_ctx *c, const char *suffix, double *out)
{
    char key[256];
    snprintf(key, sizeof key, "%s.%s", c->arch, suffix);
    const gguf_kv *kv = gguf_find(c->f, key);
    if (kv && (!gguf_value_to_f64(&kv->value, out) || !isfinite(*out) || *out < 0 || !isfinite((float)*out)))
        return err_set(c->err, STRATA_E_FORMAT, "%s: %s is not a finite non-negative number", c->path, key);
    return STRATA_OK;
}

/* A boolean key: *present whether the file has it, *out its value. */
static strata_status arch_bool(const spec_ctx *c, const char *suffix, bool *present, bool *out)
{
    char key[256];
    snprintf(key, sizeof key, "%s.%s", c->arch, suffix);
    *present = gguf_find(c->f, key) != NULL;
    if (*present && !gguf_get_bool(c->f, key, out))
        return err_set(c->err, STRATA_E_FORMAT, "%s: %s is not a boolean", c->path, key);
    return STRATA_OK;
}

/* A key that, when present, must be a finite number above zero (a RoPE base
 * or an epsilon of 0 gives NaN logits). */
static strata_status arch_positive(const spec_ctx *c, const char *suffix, double *out)
{
    char key[256];
    snprintf(key, sizeof key, "%s.%s", c->arch, suffix);
    const gguf_kv *kv = gguf_find(c->f, key);
    if (kv && (!gguf_value_to_f64(&kv->value, out) || !isfinite(*out) || *out <= 0 || !isfinite((float)*out)))
        return err_set(c->err, STRATA_E_FORMAT, "%s: %s must be a finite number above zero", c->path, key);
    return STRATA_OK;
}

static void copy_str(const gguf_file *f, const char *key, char *dst, size_t cap, const char *fallback)
{
    gguf_str s;
    if (gguf_get_str(f, key, &s)) snprintf(dst, cap, "%.*s", (int)(s.len < cap ? s.len : cap - 1), s.ptr);
    else snprintf(dst, cap, "%s", fallback);
    /* metadata strings go to terminals and JSON: keep them printable */
    for (char *p = dst; *p; p++)
        if ((unsigned char)*p < 0x20) *p = '?';
}

#define U32MAX 0xffffffffull

static strata_status read_hparams(const spec_ctx *c, model_hparams *hp)
{
    strata_status st;
    if ((st = arch_u64(c, "context_length", UINT64_MAX >> 20, &hp->context_length)) ||
        (st = arch_u64(c, "embedding_length", U32MAX, &hp->n_embd)) ||
        (st = arch_u64(c, "block_count", MODEL_MAX_LAYERS, &hp->n_layers)) ||
        (st = arch_u64(c, "feed_forward_length", U32MAX, &hp->n_ff)) ||
        (st = arch_u64(c, "attention.head_count", U32MAX, &hp->n_heads)) ||
        (st = arch_u64(c, "attention.head_count_kv", U32MAX, &hp->n_kv_heads)) ||
        (st = arch_u64(c, "attention.key_length", U32MAX, &hp->head_dim_k)) ||
        (st = arch_u64(c, "attention.value_length", U32MAX, &hp->head_dim_v)) ||
        (st = arch_u64(c, "expert_count", U32MAX, &hp->n_expert)) ||
        (st = arch_u64(c, "expert_used_count", U32MAX, &hp->n_expert_used)) ||
        (st = arch_u64(c, "expert_feed_forward_length", U32MAX, &hp->n_ff_exp)) ||
        (st = arch_u64(c, "expert_shared_feed_forward_length", U32MAX, &hp->n_ff_shexp)) ||
        (st = arch_u64(c, "expert_shared_count", U32MAX, &hp->n_expert_shared)) ||
        (st = arch_u64(c, "rope.scaling.original_context_length", UINT64_MAX >> 20, &hp->rope_orig_ctx)) ||
        (st = arch_u64(c, "rope.dimension_count", U32MAX, &hp->rope_dim)) ||
        (st = arch_u64(c, "attention.sliding_window", U32MAX, &hp->sliding_window)) ||
        (st = arch_u64(c, "vocab_size", U32MAX, &hp->vocab_size)))
        return st;
    hp->rope_freq_base = 10000.0;
    hp->rope_scaling_factor = 1.0;
    if ((st = arch_positive(c, "rope.freq_base", &hp->rope_freq_base)) ||
        (st = arch_positive(c, "rope.freq_base_swa", &hp->rope_freq_base_swa)) ||
        (st = arch_positive(c, "attention.layer_norm_rms_epsilon", &hp->rms_eps)) ||
        (st = arch_f64(c, "rope.scaling.factor", &hp->rope_scaling_factor)) ||
        (st = arch_f64(c, "rope.scaling.attn_factor", &hp->rope_attn_factor)) ||
        (st = arch_f64(c, "expert_weights_scale", &hp->expert_weights_scale)) ||
        (st = arch_bool(c, "expert_weights_norm", &hp->has_expert_weights_norm, &hp->expert_weights_norm)))
        return st;
    char key[256];
    snprintf(key, sizeof key, "%s.rope.scaling.type", c->arch);
    copy_str(c->f, key, hp->rope_scaling, sizeof hp->rope_scaling, "none");
    copy_str(c->f, "general.name", hp->name, sizeof hp->name, "");
    copy_str(c->f, "tokenizer.ggml.model", hp->tokenizer_model, sizeof hp->tokenizer_model, "");
    if (hp->n_kv_heads == 0) hp->n_kv_heads = hp->n_heads;
    if (hp->n_heads && hp->n_kv_heads && hp->n_heads % hp->n_kv_heads)
        return err_set(c->err, STRATA_E_FORMAT, "%s: %" PRIu64 " attention heads is not a multiple of %" PRIu64
                       " KV heads", c->path, hp->n_heads, hp->n_kv_heads);
    if (hp->head_dim_k == 0 && hp->n_heads && hp->n_embd % hp->n_heads)
        return err_set(c->err, STRATA_E_FORMAT, "%s: %s.embedding_length %" PRIu64 " is not a multiple of "
                       "attention.head_count %" PRIu64 " (and attention.key_length is absent)", c->path, c->arch,
                       hp->n_embd, hp->n_heads);
    if (hp->head_dim_k == 0 && hp->n_heads) hp->head_dim_k = hp->n_embd / hp->n_heads;
    if (hp->head_dim_v == 0) hp->head_dim_v = hp->head_dim_k;
    return STRATA_OK;
}

/* The vocabulary size, when not given explicitly, is the token list's. */
static void vocab_size(const gguf_file *f, model_hparams *hp)
{
    gguf_array a;
    if (hp->vocab_size == 0 && gguf_get_arr(f, "tokenizer.ggml.tokens", &a)) hp->vocab_size = a.n;
    const gguf_tensor *t = gguf_find_tensor(f, "token_embd.weight");
    if (hp->vocab_size == 0 && t && t->n_dims >= 2) hp->vocab_size = t->ne[1];
}

/* Per-layer KV heads: head_count_kv may be an array with one entry a layer. */
static strata_status per_layer_kv_heads(const spec_ctx *c, model_spec *s)
{
    char key[256];
    snprintf(key, sizeof key, "%s.attention.head_count_kv", c->arch);
    gguf_array a = {0};
    bool is_arr = gguf_get_arr(c->f, key, &a);
    for (uint64_t l = 0; l < s->hp.n_layers; l++) {
        uint64_t h = s->hp.n_kv_heads;
        if (is_arr && (!gguf_array_u64(&a, l, &h) || h > U32MAX))
            return err_set(c->err, STRATA_E_FORMAT, "%s: %s has no valid entry for layer %" PRIu64, c->path, key, l);
        s->kv_heads[l] = (uint32_t)h;
    }
    return STRATA_OK;
}

/* Which layers use the sliding window. Architectures interleave local and
 * global layers in fixed patterns (every Nth layer global); where no pattern
 * is known a declared window applies to every layer (Mistral style). */
static void sliding_window_layers(const spec_ctx *c, model_spec *s)
{
    uint64_t period = 0; /* every period-th layer is global; 0: all local */
    char key[256];
    snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", c->arch);
    gguf_array a = {0};
    bool per_layer = gguf_get_arr(c->f, key, &a) && a.type == GGUF_TYPE_BOOL;
    if (!per_layer && !gguf_get_u64(c->f, key, &period)) {
        if (!strcmp(c->arch, "gemma2")) period = 2;
        else if (!strcmp(c->arch, "gemma3")) period = 6;
        else if (!strcmp(c->arch, "cohere2")) period = 4;
    }
    for (uint64_t l = 0; l < s->hp.n_layers; l++) {
        bool swa = s->hp.sliding_window > 0;
        if (swa && per_layer) swa = l < a.n && ((const uint8_t *)a.data)[l];
        else if (swa && period) swa = (l + 1) % period != 0;
        s->layer_swa[l] = swa;
    }
}

static uint64_t highest_layer(const gguf_file *f)
{
    uint64_t n = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        tensor_class tc = model_classify_tensor(f->tensors[i].name);
        if (tc.layer >= 0 && (uint64_t)tc.layer + 1 > n) n = (uint64_t)tc.layer + 1;
    }
    return n;
}

static strata_status account_tensors(const spec_ctx *c, model_spec *s)
{
    for (uint32_t i = 0; i < s->file->n_splits; i++) s->file_bytes += s->file->splits[i].file_size;
    for (uint64_t i = 0; i < s->file->n_tensors; i++) {
        const gguf_tensor *t = &s->file->tensors[i];
        tensor_class tc = model_classify_tensor(t->name);
        s->classes[i] = tc;
        layer_bytes *lb = tc.layer >= 0 ? &s->layers[tc.layer] : &s->non_layer;
        if (tc.layer >= 0 && (uint64_t)tc.layer >= s->hp.n_layers)
            return err_set(c->err, STRATA_E_FORMAT, "%s: tensor '%s' belongs to layer %d but the model has %" PRIu64
                           " layers", c->path, t->name, tc.layer, s->hp.n_layers);
        lb->by_group[tc.group] += t->n_bytes;
        lb->total += t->n_bytes;
        s->n_params += t->n_elems;
        s->tensor_bytes += t->n_bytes;
        s->bytes_by_type[t->type] += t->n_bytes;
        s->elems_by_type[t->type] += t->n_elems;
    }
    return STRATA_OK;
}

static strata_status build(spec_ctx *c, model_spec *s)
{
    strata_status st = read_hparams(c, &s->hp);
    if (st) return st;
    vocab_size(c->f, &s->hp);
    uint64_t seen = highest_layer(c->f);
    if (seen > MODEL_MAX_LAYERS)
        return err_set(c->err, STRATA_E_FORMAT, "%s: tensor names use more than %d layers", c->path, MODEL_MAX_LAYERS);
    if (s->hp.n_layers == 0) s->hp.n_layers = seen; /* unknown architecture: generic view */
    uint64_t nl = s->hp.n_layers ? s->hp.n_layers : 1;
    s->classes = calloc(c->f->n_tensors ? c->f->n_tensors : 1, sizeof *s->classes);
    s->layers = calloc(nl, sizeof *s->layers);
    s->kv_heads = calloc(nl, sizeof *s->kv_heads);
    s->layer_swa = calloc(nl, sizeof *s->layer_swa);
    if (!s->classes || !s->layers || !s->kv_heads || !s->layer_swa)
        return err_set(c->err, STRATA_E_NOMEM, "%s: out of memory", c->path);
    if ((st = per_layer_kv_heads(c, s))) return st;
    sliding_window_layers(c, s);
    return account_tensors(c, s);
}

strata_status model_spec_from_gguf(const gguf_file *f, const char *path, model_spec **out, strata_error *err)
{
    *out = NULL;
    model_spec *s = calloc(1, sizeof *s);
    if (!s) return err_set(err, STRATA_E_NOMEM, "%s: out of memory", path);
    s->file = f;
    copy_str(f, "general.architecture", s->hp.arch, sizeof s->hp.arch, "unknown");
    spec_ctx c = {f, path, s->hp.arch, err};
    strata_status st = build(&c, s);
    if (st) {
        model_spec_free(s);
        return st;
    }
    *out = s;
    return STRATA_OK;
}

void model_spec_free(model_spec *s)
{
    if (!s) return;
    free(s->classes);
    free(s->layers);
    free(s->kv_heads);
    free(s->layer_swa);
    free(s);
}
