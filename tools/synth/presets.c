/* Shape presets and the tensor-type rules of the generator. */
#include <string.h>

#include "kernels/cpu/quantize.h"
#include "synth.h"

/* Llama-family dimensions; head dimension, experts and window are each
 * family's default. */
#define DIMS(embd, ff, layers, heads, kv, vocab_, ctx_)                                                      \
    {.n_embd = embd, .n_ff = ff, .n_layers = layers, .n_heads = heads, .n_kv_heads = kv, .vocab = vocab_, \
     .ctx = ctx_}

static const struct {
    const char *name;
    synth_shape shape;
} presets[] = {
    /*            embd   ff     layers heads kv  vocab  ctx */
    {"tiny", DIMS(256, 768, 4, 4, 2, 512, 512)},
    {"1b", DIMS(2048, 8192, 16, 32, 8, 32000, 4096)},    /* Llama-3.2-1B-shaped */
    {"7b", DIMS(4096, 11008, 32, 32, 32, 32000, 4096)},  /* Llama-2-7B */
    {"13b", DIMS(5120, 13824, 40, 40, 40, 32000, 4096)}, /* Llama-2-13B */
    {"70b", DIMS(8192, 28672, 80, 64, 8, 32000, 4096)},  /* Llama-2/3-70B */
};

bool synth_preset(const char *name, synth_shape *out)
{
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(presets[i].name, name)) {
            *out = presets[i].shape;
            return true;
        }
    return false;
}

const char *synth_preset_names(void) { return "tiny, 1b, 7b, 13b, 70b"; }

bool synth_parse_type(const char *name, uint32_t *type, synth_mix *mix)
{
    if (!strcasecmp(name, "q4_k_m")) {
        *type = GGML_TYPE_Q4_K;
        *mix = MIX_Q4_K_M;
        return true;
    }
    *mix = MIX_PURE;
    return ggml_type_from_name(name, type) && quantize_supported(*type);
}

/* llama.cpp's rule for which layers get more bits in its _M mixes: the first
 * and last eighth of the layers and every third layer in between. */
static bool use_more_bits(int layer, uint64_t n_layers)
{
    int64_t i = layer, n = (int64_t)n_layers;
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/* What llama-quantize never quantizes: vectors (norms, biases) and the
 * expert router, kept in F32 whatever the requested type. */
static bool stays_f32(const char *role)
{
    return strstr(role, "norm") || strstr(role, ".bias") || !strncmp(role, "ffn_gate_inp", 12);
}

/* llama.cpp's Q4_K_M recipe. The output, and the embedding when it doubles
 * as the output (tied), get Q6_K. A fused attn_qkv holds V and is counted
 * with attn_v, as in the llama.cpp-made phi3 fixture; expert down
 * projections follow ffn_down. Eight-expert models (Mixtral-8x7B's count)
 * get Q8_0 K and V and Q5_K attn_output: small tensors next to the experts. */
static uint32_t q4_k_m_type(const synth_options *o, const char *role, int layer)
{
    bool more = layer >= 0 && use_more_bits(layer, o->shape.n_layers), eight = o->n_expert == 8;
    if (!strcmp(role, "output") || (o->tied_output && !strcmp(role, "token_embd"))) return GGML_TYPE_Q6_K;
    if (!strcmp(role, "attn_v") || !strcmp(role, "attn_qkv"))
        return eight ? GGML_TYPE_Q8_0 : more ? GGML_TYPE_Q6_K : GGML_TYPE_Q4_K;
    if (!strcmp(role, "attn_k") && eight) return GGML_TYPE_Q8_0;
    if (!strcmp(role, "attn_output") && eight) return GGML_TYPE_Q5_K;
    if (!strncmp(role, "ffn_down", 8) && more) return GGML_TYPE_Q6_K;
    return GGML_TYPE_Q4_K;
}

uint32_t synth_tensor_type(const synth_options *o, const char *role, int layer, uint64_t row_len)
{
    if (stays_f32(role)) return GGML_TYPE_F32;
    uint32_t t = o->mix == MIX_Q4_K_M ? q4_k_m_type(o, role, layer) : o->type;
    if (ggml_row_bytes(t, row_len)) return t;
    return ggml_row_bytes(GGML_TYPE_Q8_0, row_len) && t != GGML_TYPE_F32 && t != GGML_TYPE_F16 &&
                   t != GGML_TYPE_BF16
               ? GGML_TYPE_Q8_0
               : GGML_TYPE_F16;
}
