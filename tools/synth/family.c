/* What differs between the families strata-synth writes, beyond the tensor
 * slots the architecture table (model/arch.h) already knows: the defaults
 * real files of each family carry (RoPE base, norm epsilon, head dimension,
 * sliding window, experts), which hyper-parameter keys llama.cpp's converter
 * writes for it, and the checks on a requested shape. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "model/arch.h"
#include "synth.h"
#include "util/error.h"

typedef struct family {
    const char *name;
    float rope_base, rms_eps;
    uint64_t head_dim;  /* default head dimension; 0: n_embd / n_heads */
    uint64_t swa;       /* default sliding window; 0: none */
    bool no_rope_dim;   /* no rope.dimension_count key (gemma3's converter writes none) */
    bool head_dim_keys; /* always attention.key_length / value_length */
    bool tied;          /* never an output.weight */
    bool experts;       /* may have experts */
    bool expert_ff_key; /* experts' width is expert_feed_forward_length (llama's: feed_forward_length) */
} family;

/* Defaults follow the released models: Qwen 2/3 use RoPE base 1e6 and
 * epsilon 1e-6; every Gemma 3 size but 27B has head dimension 256, and the
 * 1B model a 512-token window (larger ones 1024). */
static const family FAMILIES[] = {
    {.name = "llama", .rope_base = 10000.0f, .rms_eps = 1e-5f, .experts = true},
    {.name = "qwen2", .rope_base = 1e6f, .rms_eps = 1e-6f},
    {.name = "qwen3", .rope_base = 1e6f, .rms_eps = 1e-6f},
    {.name = "qwen2moe", .rope_base = 1e6f, .rms_eps = 1e-6f, .experts = true, .expert_ff_key = true},
    {.name = "qwen3moe", .rope_base = 1e6f, .rms_eps = 1e-6f, .experts = true, .expert_ff_key = true},
    {.name = "phi3", .rope_base = 10000.0f, .rms_eps = 1e-5f},
    {.name = "gemma3", .rope_base = 1e6f, .rms_eps = 1e-6f, .head_dim = 256, .swa = 512, .no_rope_dim = true,
     .head_dim_keys = true, .tied = true},
};
#define N_FAMILIES (sizeof FAMILIES / sizeof FAMILIES[0])

#define QWEN3MOE_EXPERTS 8 /* Qwen3-30B-A3B has 128, 8 used: scaled down for test-sized files */
#define DEFAULT_EXPERTS_USED 2

static const family *find(const char *name)
{
    for (size_t i = 0; i < N_FAMILIES; i++)
        if (!strcmp(FAMILIES[i].name, name)) return &FAMILIES[i];
    return NULL;
}

bool synth_arch_known(const char *name) { return find(name) && arch_find(name); }
const char *synth_arch_names(void) { return "llama, qwen2, qwen2moe, qwen3, qwen3moe, phi3, gemma3"; }

static const char *arch_of(const synth_options *o) { return o->arch ? o->arch : "llama"; }

/* ---- resolving and checking a shape ---- */

static strata_status check_dims(const synth_shape *s, strata_error *err)
{
    if (!s->n_embd || !s->n_ff || !s->n_layers || !s->n_heads || !s->n_kv_heads || !s->ctx)
        return err_set(err, STRATA_E_INVALID, "strata-synth: every dimension must be at least 1");
    if (s->n_heads % s->n_kv_heads)
        return err_set(err, STRATA_E_INVALID, "strata-synth: --n-heads must be a multiple of --n-kv-heads");
    if (s->n_layers > 4096 || s->n_embd > (1u << 20) || s->n_ff > (1u << 22) || s->vocab > (1u << 24) ||
        s->ctx > (1u << 24))
        return err_set(err, STRATA_E_INVALID, "strata-synth: a dimension is beyond the generator's limits "
                       "(layers 4096, embd 2^20, ffn 2^22, vocab and context 2^24)");
    return STRATA_OK;
}

static strata_status resolve_head_dim(const family *f, synth_options *o, strata_error *err)
{
    const synth_shape *s = &o->shape;
    if (o->head_dim) {
        if (o->head_dim % 2 || o->head_dim > (1u << 16))
            return err_set(err, STRATA_E_INVALID, "strata-synth: --head-dim %" PRIu64 " must be even (rotary "
                           "embeddings rotate pairs) and at most 65536", o->head_dim);
        return STRATA_OK;
    }
    if (f->head_dim) {
        o->head_dim = f->head_dim;
        return STRATA_OK;
    }
    if (s->n_embd % s->n_heads || (s->n_embd / s->n_heads) % 2)
        return err_set(err, STRATA_E_INVALID, "strata-synth: --n-embd must be a multiple of --n-heads with an even "
                       "head dimension (rotary embeddings rotate pairs), or give --head-dim");
    o->head_dim = s->n_embd / s->n_heads;
    return STRATA_OK;
}

/* Default expert width: a third of the dense FFN (the qwen3moe fixture's
 * 768 -> 256), rounded down to whole K-quant blocks where it can be. */
static uint64_t default_expert_ff(uint64_t n_ff)
{
    uint64_t w = n_ff / 3, block = w >= 256 ? 256 : 32;
    w -= w % block;
    return w ? w : 32;
}

static strata_status resolve_experts(const family *f, synth_options *o, strata_error *err)
{
    const char *arch = f->name;
    if (!f->experts && (o->n_expert || o->n_expert_used || o->n_ff_exp || o->n_ff_shexp))
        return err_set(err, STRATA_E_INVALID, "strata-synth: --%s: %s has no experts (llama, qwen2moe and "
                       "qwen3moe do)", o->n_expert ? "n-expert" : o->n_expert_used ? "n-expert-used"
                       : o->n_ff_exp ? "expert-ff" : "shared-ff", arch);
    if (o->n_ff_exp && !f->expert_ff_key)
        return err_set(err, STRATA_E_INVALID, "strata-synth: --expert-ff: %s experts are --n-ff wide (its files "
                       "have no expert_feed_forward_length)", arch);
    if (!o->n_expert && f->expert_ff_key) o->n_expert = QWEN3MOE_EXPERTS;
    if (!o->n_expert) {
        if (o->n_expert_used || o->n_ff_shexp)
            return err_set(err, STRATA_E_INVALID, "strata-synth: --%s needs --n-expert",
                           o->n_expert_used ? "n-expert-used" : "shared-ff");
        if (o->routing)
            return err_set(err, STRATA_E_INVALID, "strata-synth: --routing-skew needs experts (qwen3moe, or llama "
                           "with --n-expert)");
        return STRATA_OK;
    }
    if (o->n_expert < 2 || o->n_expert > 1024)
        return err_set(err, STRATA_E_INVALID, "strata-synth: --n-expert %" PRIu64 " must be 2..1024", o->n_expert);
    if (!o->n_expert_used) o->n_expert_used = DEFAULT_EXPERTS_USED;
    if (o->n_expert_used > o->n_expert)
        return err_set(err, STRATA_E_INVALID, "strata-synth: --n-expert-used %" PRIu64 " exceeds the %" PRIu64
                       " experts", o->n_expert_used, o->n_expert);
    /* llama's experts stay n_ff_exp 0: as wide as the dense FFN */
    if (f->expert_ff_key && !o->n_ff_exp) o->n_ff_exp = default_expert_ff(o->shape.n_ff);
    /* qwen2moe always has its shared expert (Qwen1.5-MoE: 4 experts wide) */
    if (arch_find(arch)->shared_experts && !o->n_ff_shexp) o->n_ff_shexp = o->shape.n_ff;
    if (o->n_ff_exp > (1u << 22) || o->n_ff_shexp > (1u << 22))
        return err_set(err, STRATA_E_INVALID, "strata-synth: --%s is beyond the generator's limit (2^22)",
                       o->n_ff_exp > (1u << 22) ? "expert-ff" : "shared-ff");
    if (o->routing && !(o->routing_skew >= 0 && o->routing_skew <= 16)) /* also NaN */
        return err_set(err, STRATA_E_INVALID, "strata-synth: --routing-skew %g must be 0..16", o->routing_skew);
    uint64_t carriers = synth_routing_dims(o->n_expert);
    if (o->routing && o->shape.n_embd < 2 * carriers)
        return err_set(err, STRATA_E_INVALID, "strata-synth: --routing-skew with %" PRIu64 " experts needs --n-embd "
                       "%" PRIu64 " or more (the routing takes 32 + experts dimensions, at most half)",
                       o->n_expert, 2 * carriers);
    return STRATA_OK;
}

strata_status synth_resolve(const synth_options *o, synth_options *out, strata_error *err)
{
    *out = *o;
    out->arch = arch_of(o);
    const family *f = find(out->arch);
    if (!f || !arch_find(out->arch))
        return err_set(err, STRATA_E_INVALID, "strata-synth: --arch '%s': unknown architecture (known: %s)", out->arch,
                       synth_arch_names());
    strata_status st = check_dims(&out->shape, err);
    if (!st) st = resolve_head_dim(f, out, err);
    if (!st) st = resolve_experts(f, out, err);
    if (st) return st;
    if (out->n_swa == SYNTH_SWA_NONE) out->n_swa = 0;
    else if (!out->n_swa) out->n_swa = f->swa;
    if (out->n_swa > (1u << 24))
        return err_set(err, STRATA_E_INVALID, "strata-synth: --sliding-window is beyond the generator's limit (2^24)");
    out->tied_output = o->tied_output || f->tied;
    return STRATA_OK;
}

/* ---- hyper-parameters ---- */

static strata_status put_u32(gguf_writer *w, const char *arch, const char *key, uint64_t v, strata_error *err)
{
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    return gguf_writer_set_u32(w, k, (uint32_t)v, err);
}

static strata_status put_f32(gguf_writer *w, const char *arch, const char *key, float v, strata_error *err)
{
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    return gguf_writer_set_f32(w, k, v, err);
}

static strata_status put_bool(gguf_writer *w, const char *arch, const char *key, bool v, strata_error *err)
{
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    return gguf_writer_set_bool(w, k, v, err);
}

/* Keys in llama's order (the order the generator has always written);
 * the families' extra keys go next to their kin. */
static strata_status attention_keys(gguf_writer *w, const family *f, const synth_options *o, strata_error *err)
{
    const char *a = f->name;
    const synth_shape *s = &o->shape;
    strata_status st;
    if ((st = put_u32(w, a, "attention.head_count", s->n_heads, err)) ||
        (st = put_u32(w, a, "attention.head_count_kv", s->n_kv_heads, err)))
        return st;
    /* Without the keys readers take n_embd / n_heads: write them when that is wrong. */
    bool implied = s->n_embd % s->n_heads == 0 && s->n_embd / s->n_heads == o->head_dim;
    if ((f->head_dim_keys || !implied) && ((st = put_u32(w, a, "attention.key_length", o->head_dim, err)) ||
                                           (st = put_u32(w, a, "attention.value_length", o->head_dim, err))))
        return st;
    if (!f->no_rope_dim && (st = put_u32(w, a, "rope.dimension_count", o->head_dim, err))) return st;
    if ((st = put_f32(w, a, "rope.freq_base", f->rope_base, err))) return st;
    float swa_base = arch_find(a)->swa_rope_base;
    if (swa_base > 0 && (st = put_f32(w, a, "rope.freq_base_swa", swa_base, err))) return st;
    if ((st = put_f32(w, a, "attention.layer_norm_rms_epsilon", f->rms_eps, err))) return st;
    if (o->n_swa && (st = put_u32(w, a, "attention.sliding_window", o->n_swa, err))) return st;
    return STRATA_OK;
}

static strata_status expert_keys(gguf_writer *w, const family *f, const synth_options *o, strata_error *err)
{
    if (!o->n_expert) return STRATA_OK;
    strata_status st;
    if ((st = put_u32(w, f->name, "expert_count", o->n_expert, err)) ||
        (st = put_u32(w, f->name, "expert_used_count", o->n_expert_used, err)))
        return st;
    if (f->expert_ff_key && (st = put_u32(w, f->name, "expert_feed_forward_length", o->n_ff_exp, err))) return st;
    if (o->expert_weights_scale > 0 &&
        (st = put_f32(w, f->name, "expert_weights_scale", (float)o->expert_weights_scale, err)))
        return st;
    if (o->expert_weights_norm && (st = put_bool(w, f->name, "expert_weights_norm", o->expert_weights_norm > 0, err)))
        return st;
    if (!o->n_ff_shexp) return STRATA_OK;
    /* qwen2moe's converter writes the width only; DeepSeek-style files the count too */
    if (!arch_find(f->name)->shared_experts && (st = put_u32(w, f->name, "expert_shared_count", 1, err))) return st;
    return put_u32(w, f->name, "expert_shared_feed_forward_length", o->n_ff_shexp, err);
}

strata_status synth_hparams(gguf_writer *w, const synth_options *o, strata_error *err)
{
    const family *f = find(arch_of(o));
    const synth_shape *s = &o->shape;
    char name[128];
    snprintf(name, sizeof name, "strata-synth %" PRIu64 "x%" PRIu64 " seed %" PRIu64, s->n_layers, s->n_embd, o->seed);
    strata_status st;
    if ((st = gguf_writer_set_str(w, "general.architecture", f->name, err)) ||
        (st = gguf_writer_set_str(w, "general.name", name, err)) ||
        (st = put_u32(w, f->name, "context_length", s->ctx, err)) ||
        (st = put_u32(w, f->name, "embedding_length", s->n_embd, err)) ||
        (st = put_u32(w, f->name, "block_count", s->n_layers, err)) ||
        (st = put_u32(w, f->name, "feed_forward_length", s->n_ff, err)) || (st = attention_keys(w, f, o, err)))
        return st;
    return expert_keys(w, f, o, err);
}
