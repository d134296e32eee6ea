/* The architecture table, the tensor slot table and the dimensions every
 * family derives from its hyper-parameters. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/arch.h"
#include "util/error.h"

static const arch_desc ARCHS[] = {
    {.name = "llama", .rope = ROPE_ADJACENT, .act = ACT_SILU},
    {.name = "qwen2", .rope = ROPE_NEOX, .act = ACT_SILU, .qkv_bias = true},
    {.name = "qwen3", .rope = ROPE_NEOX, .act = ACT_SILU, .qk_norm = true},
    /* Qwen1.5/Qwen2-MoE: qwen2 attention, a sigmoid-gated shared expert
     * beside the routed ones, whose probabilities are not renormalized */
    {.name = "qwen2moe", .rope = ROPE_NEOX, .act = ACT_SILU, .qkv_bias = true, .always_moe = true,
     .shared_experts = true, .shared_gate = true, .gating = GATING_SOFTMAX_TOPK},
    {.name = "qwen3moe", .rope = ROPE_NEOX, .act = ACT_SILU, .qk_norm = true, .always_moe = true},
    {.name = "phi3", .rope = ROPE_NEOX, .act = ACT_SILU, .fused_qkv = true, .fused_gate_up = true},
    {.name = "gemma3", .rope = ROPE_NEOX, .act = ACT_GELU, .qk_norm = true, .post_norms = true, .embd_scale = true,
     .swa_rope_base = 10000.0f},
};
#define N_ARCHS (sizeof ARCHS / sizeof ARCHS[0])

const arch_desc *arch_find(const char *name)
{
    for (size_t i = 0; i < N_ARCHS; i++)
        if (!strcmp(ARCHS[i].name, name)) return &ARCHS[i];
    return NULL;
}

const char *arch_names(void) { return "llama, qwen2, qwen2moe, qwen3, qwen3moe, phi3, gemma3"; }

/* ---- slots ---- */

/* Symbolic sizes of a slot's dimensions, resolved against model_dims. */
typedef enum dim_sym { D_1, D_EMBD, D_Q, D_KV, D_QKV, D_HEAD, D_FF, D_FF_UP, D_FF_EXP, D_FF_SH, D_EXP, D_VOCAB,
                       D_ROPE_HALF } dim_sym;

typedef struct slot_info {
    const char *name; /* after "blk.N." */
    uint8_t ne[3];    /* dim_sym of ne0 (row length), ne1 (rows), ne2 (experts) */
    bool vector;
} slot_info;

static const slot_info LAYER_SLOTS[LS_COUNT] = {
    [LS_ATTN_NORM] = {"attn_norm.weight", {D_EMBD, D_1, D_1}, true},
    [LS_Q] = {"attn_q.weight", {D_EMBD, D_Q, D_1}, false},
    [LS_K] = {"attn_k.weight", {D_EMBD, D_KV, D_1}, false},
    [LS_V] = {"attn_v.weight", {D_EMBD, D_KV, D_1}, false},
    [LS_QKV] = {"attn_qkv.weight", {D_EMBD, D_QKV, D_1}, false},
    [LS_Q_BIAS] = {"attn_q.bias", {D_Q, D_1, D_1}, true},
    [LS_K_BIAS] = {"attn_k.bias", {D_KV, D_1, D_1}, true},
    [LS_V_BIAS] = {"attn_v.bias", {D_KV, D_1, D_1}, true},
    [LS_Q_NORM] = {"attn_q_norm.weight", {D_HEAD, D_1, D_1}, true},
    [LS_K_NORM] = {"attn_k_norm.weight", {D_HEAD, D_1, D_1}, true},
    [LS_OUT] = {"attn_output.weight", {D_Q, D_EMBD, D_1}, false},
    [LS_POST_ATTN_NORM] = {"post_attention_norm.weight", {D_EMBD, D_1, D_1}, true},
    [LS_FFN_NORM] = {"ffn_norm.weight", {D_EMBD, D_1, D_1}, true},
    [LS_GATE] = {"ffn_gate.weight", {D_EMBD, D_FF, D_1}, false},
    [LS_UP] = {"ffn_up.weight", {D_EMBD, D_FF_UP, D_1}, false},
    [LS_DOWN] = {"ffn_down.weight", {D_FF, D_EMBD, D_1}, false},
    [LS_POST_FFN_NORM] = {"post_ffw_norm.weight", {D_EMBD, D_1, D_1}, true},
    [LS_ROUTER] = {"ffn_gate_inp.weight", {D_EMBD, D_EXP, D_1}, false},
    [LS_GATE_EXPS] = {"ffn_gate_exps.weight", {D_EMBD, D_FF_EXP, D_EXP}, false},
    [LS_UP_EXPS] = {"ffn_up_exps.weight", {D_EMBD, D_FF_EXP, D_EXP}, false},
    [LS_DOWN_EXPS] = {"ffn_down_exps.weight", {D_FF_EXP, D_EMBD, D_EXP}, false},
    [LS_GATE_SHEXP] = {"ffn_gate_shexp.weight", {D_EMBD, D_FF_SH, D_1}, false},
    [LS_UP_SHEXP] = {"ffn_up_shexp.weight", {D_EMBD, D_FF_SH, D_1}, false},
    [LS_DOWN_SHEXP] = {"ffn_down_shexp.weight", {D_FF_SH, D_EMBD, D_1}, false},
    [LS_GATE_INP_SHEXP] = {"ffn_gate_inp_shexp.weight", {D_EMBD, D_1, D_1}, true},
};

static const slot_info GLOBAL_SLOTS[GS_COUNT] = {
    [GS_EMBD] = {"token_embd.weight", {D_EMBD, D_VOCAB, D_1}, false},
    [GS_OUTPUT_NORM] = {"output_norm.weight", {D_EMBD, D_1, D_1}, true},
    [GS_OUTPUT] = {"output.weight", {D_EMBD, D_VOCAB, D_1}, false},
    [GS_ROPE_FREQS] = {"rope_freqs.weight", {D_ROPE_HALF, D_1, D_1}, true},
    [GS_ROPE_LONG] = {"rope_factors_long.weight", {D_ROPE_HALF, D_1, D_1}, true},
    [GS_ROPE_SHORT] = {"rope_factors_short.weight", {D_ROPE_HALF, D_1, D_1}, true},
};

static slot_need need_if(bool cond) { return cond ? NEED_REQUIRED : NEED_NONE; }

slot_need arch_layer_need(const arch_desc *a, bool moe, layer_slot s)
{
    switch (s) {
    case LS_ATTN_NORM:
    case LS_OUT:
    case LS_FFN_NORM: return NEED_REQUIRED;
    case LS_Q:
    case LS_K:
    case LS_V: return need_if(!a->fused_qkv);
    case LS_QKV: return need_if(a->fused_qkv);
    case LS_Q_BIAS:
    case LS_K_BIAS:
    case LS_V_BIAS: return a->qkv_bias ? NEED_REQUIRED : a->fused_qkv ? NEED_NONE : NEED_OPTIONAL;
    case LS_Q_NORM:
    case LS_K_NORM: return need_if(a->qk_norm);
    case LS_POST_ATTN_NORM:
    case LS_POST_FFN_NORM: return need_if(a->post_norms);
    case LS_GATE: return need_if(!moe && !a->fused_gate_up);
    case LS_UP:
    case LS_DOWN: return need_if(!moe);
    case LS_ROUTER:
    case LS_GATE_EXPS:
    case LS_UP_EXPS:
    case LS_DOWN_EXPS: return need_if(moe);
    case LS_GATE_SHEXP:
    case LS_UP_SHEXP:
    case LS_DOWN_SHEXP: return !moe ? NEED_NONE : a->shared_experts ? NEED_REQUIRED : NEED_OPTIONAL;
    case LS_GATE_INP_SHEXP: return need_if(moe && a->shared_gate);
    default: return NEED_NONE;
    }
}

slot_need arch_global_need(const arch_desc *a, global_slot s)
{
    switch (s) {
    case GS_EMBD:
    case GS_OUTPUT_NORM: return NEED_REQUIRED;
    case GS_OUTPUT:
    case GS_ROPE_FREQS: return NEED_OPTIONAL;
    case GS_ROPE_LONG:
    case GS_ROPE_SHORT: return a->fused_qkv ? NEED_OPTIONAL : NEED_NONE; /* phi3 */
    default: return NEED_NONE;
    }
}

void arch_layer_tensor_name(layer_slot s, uint64_t layer, char *buf, size_t cap)
{
    snprintf(buf, cap, "blk.%" PRIu64 ".%s", layer, LAYER_SLOTS[s].name);
}

const char *arch_global_tensor_name(global_slot s) { return GLOBAL_SLOTS[s].name; }
bool arch_layer_slot_is_vector(layer_slot s) { return LAYER_SLOTS[s].vector; }

static uint64_t dim_value(const model_dims *d, const arch_desc *a, dim_sym s)
{
    switch (s) {
    case D_1: return 1;
    case D_EMBD: return d->n_embd;
    case D_Q: return d->q_dim;
    case D_KV: return d->kv_dim;
    case D_QKV: return d->q_dim + 2 * d->kv_dim;
    case D_HEAD: return d->head_dim;
    case D_FF: return d->n_ff;
    case D_FF_UP: return a && a->fused_gate_up ? 2 * d->n_ff : d->n_ff;
    case D_FF_EXP: return d->n_ff_exp;
    case D_FF_SH: return d->n_ff_shexp; /* 0: any */
    case D_EXP: return d->n_expert;
    case D_VOCAB: return d->n_vocab;
    case D_ROPE_HALF: return d->rope_dim / 2;
    }
    return 0;
}

static void shape_of(const slot_info *si, const model_dims *d, const arch_desc *a, uint64_t ne[3])
{
    for (int i = 0; i < 3; i++) ne[i] = dim_value(d, a, (dim_sym)si->ne[i]);
}

void arch_layer_shape(const model_dims *d, const arch_desc *a, layer_slot s, uint64_t ne[3])
{
    shape_of(&LAYER_SLOTS[s], d, a, ne);
}

void arch_global_shape(const model_dims *d, global_slot s, uint64_t ne[3]) { shape_of(&GLOBAL_SLOTS[s], d, NULL, ne); }

bool arch_is_moe(const arch_desc *a, const model_dims *d) { return a->always_moe || d->n_expert > 0; }

/* ---- dimensions ---- */

/* YaRN's correction range: the dimensions whose wavelength lies between
 * beta_fast and beta_slow rotations over the original context are blended
 * between interpolation and extrapolation (Peng et al., 2023). */
static float yarn_corr_dim(uint64_t n_dims, uint64_t n_ctx_orig, float n_rot, float base)
{
    return (float)n_dims * logf((float)n_ctx_orig / (n_rot * 2.0f * (float)M_PI)) / (2.0f * logf(base));
}

static strata_status rope_scaling(const model_hparams *hp, const char *path, model_dims *d, strata_error *err)
{
    d->rope_freq_scale = 1.0f;
    d->rope_orig_ctx = hp->rope_orig_ctx ? hp->rope_orig_ctx : hp->context_length;
    bool has_factor = hp->rope_scaling_factor > 0 && hp->rope_scaling_factor != 1.0;
    if (!strcmp(hp->rope_scaling, "none") || (!has_factor && strcmp(hp->rope_scaling, "yarn"))) return STRATA_OK;
    if (has_factor) d->rope_freq_scale = (float)(1.0 / hp->rope_scaling_factor);
    if (!strcmp(hp->rope_scaling, "linear")) return STRATA_OK;
    if (strcmp(hp->rope_scaling, "yarn"))
        return err_set(err, STRATA_E_UNSUPPORTED, "%s: %s.rope.scaling.type '%s' is not supported (none, linear, yarn)",
                       path, hp->arch, hp->rope_scaling);
    d->yarn_ext_factor = 1.0f;
    d->yarn_attn_factor = hp->rope_attn_factor > 0 ? (float)hp->rope_attn_factor : 1.0f;
    float lo = floorf(yarn_corr_dim(d->rope_dim, d->rope_orig_ctx, 32.0f, d->rope_base));
    float hi = ceilf(yarn_corr_dim(d->rope_dim, d->rope_orig_ctx, 1.0f, d->rope_base));
    d->yarn_corr_low = lo > 0 ? lo : 0;
    d->yarn_corr_high = hi < (float)d->rope_dim - 1 ? hi : (float)d->rope_dim - 1;
    return STRATA_OK;
}

static strata_status missing(const char *path, const char *arch, const char *key, strata_error *err)
{
    return err_set(err, STRATA_E_FORMAT, "%s: %s model lacks %s.%s", path, arch, arch, key);
}

/* Above zero and finite once narrowed to float (NaN fails too). */
static bool positive_float(double v) { return v > 0 && isfinite((float)v); }

static strata_status check_sizes(const model_hparams *hp, const char *path, strata_error *err)
{
    if (!hp->n_embd) return missing(path, hp->arch, "embedding_length", err);
    if (!hp->n_layers) return missing(path, hp->arch, "block_count", err);
    if (!hp->n_heads) return missing(path, hp->arch, "attention.head_count", err);
    if (!hp->n_ff && !hp->n_ff_exp) return missing(path, hp->arch, "feed_forward_length", err);
    if (!hp->head_dim_k) return missing(path, hp->arch, "attention.key_length", err);
    if (hp->head_dim_k != hp->head_dim_v)
        return err_set(err, STRATA_E_UNSUPPORTED, "%s: key length %" PRIu64 " differs from value length %" PRIu64
                       " (not supported)", path, hp->head_dim_k, hp->head_dim_v);
    if (!positive_float(hp->rope_freq_base))
        return err_set(err, STRATA_E_FORMAT, "%s: %s.rope.freq_base must be positive", path, hp->arch);
    if (hp->rope_freq_base_swa != 0 && !positive_float(hp->rope_freq_base_swa))
        return err_set(err, STRATA_E_FORMAT, "%s: %s.rope.freq_base_swa must be positive", path, hp->arch);
    if (hp->rms_eps != 0 && !positive_float(hp->rms_eps))
        return err_set(err, STRATA_E_FORMAT, "%s: %s.attention.layer_norm_rms_epsilon must be positive", path,
                       hp->arch);
    return STRATA_OK;
}

static strata_status check_experts(const model_dims *d, const char *path, const char *arch, strata_error *err)
{
    if (d->n_expert == 0) return STRATA_OK;
    if (d->n_expert_used == 0 || d->n_expert_used > d->n_expert)
        return err_set(err, STRATA_E_FORMAT, "%s: %s.expert_used_count %" PRIu64 " must be 1..expert_count (%" PRIu64
                       ")", path, arch, d->n_expert_used, d->n_expert);
    if (d->n_ff_exp == 0) return missing(path, arch, "expert_feed_forward_length", err);
    return STRATA_OK;
}

strata_status arch_dims(const arch_desc *a, const model_spec *spec, const char *path, model_dims *d,
                        strata_error *err)
{
    const model_hparams *hp = &spec->hp;
    memset(d, 0, sizeof *d);
    strata_status st = check_sizes(hp, path, err);
    if (st) return st;
    for (uint64_t l = 0; l < hp->n_layers; l++)
        if (spec->kv_heads[l] != hp->n_kv_heads)
            return err_set(err, STRATA_E_UNSUPPORTED, "%s: per-layer KV head counts are not supported", path);
    *d = (model_dims){.n_embd = hp->n_embd, .n_layers = hp->n_layers, .n_heads = hp->n_heads,
                      .n_kv_heads = hp->n_kv_heads, .head_dim = hp->head_dim_k, .n_ff = hp->n_ff,
                      .n_vocab = hp->vocab_size, .n_expert = hp->n_expert, .n_expert_used = hp->n_expert_used,
                      .n_ff_exp = hp->n_ff_exp ? hp->n_ff_exp : hp->n_ff, .n_ff_shexp = hp->n_ff_shexp,
                      .n_swa = hp->sliding_window};
    d->q_dim = d->n_heads * d->head_dim;
    d->kv_dim = d->n_kv_heads * d->head_dim;
    d->rope_dim = hp->rope_dim ? hp->rope_dim : d->head_dim;
    if (d->rope_dim > d->head_dim || d->rope_dim % 2)
        return err_set(err, STRATA_E_FORMAT, "%s: rope.dimension_count %" PRIu64 " does not fit head dimension %" PRIu64,
                       path, d->rope_dim, d->head_dim);
    d->rope_base = (float)hp->rope_freq_base;
    d->rope_base_swa = hp->rope_freq_base_swa > 0 ? (float)hp->rope_freq_base_swa
                       : a->swa_rope_base > 0     ? a->swa_rope_base
                                                  : d->rope_base;
    d->rms_eps = hp->rms_eps > 0 ? (float)hp->rms_eps : 1e-5f;
    d->expert_norm = hp->has_expert_weights_norm ? hp->expert_weights_norm : a->gating == GATING_SOFTMAX_TOPK_NORM;
    d->expert_scale = hp->expert_weights_scale > 0 ? (float)hp->expert_weights_scale : 1.0f; /* 0: no scaling, as llama.cpp */
    if ((st = check_experts(d, path, hp->arch, err))) return st;
    if (a->always_moe && d->n_expert == 0) return missing(path, hp->arch, "expert_count", err);
    return rope_scaling(hp, path, d, err);
}
