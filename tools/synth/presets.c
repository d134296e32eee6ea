/* Shape presets and the tensor-type rules of the generator. */
#include <string.h>

#include "kernels/cpu/quantize.h"
#include "synth.h"
#include "util/error.h"

static const struct {
    const char *name;
    synth_shape shape;
} presets[] = {
    /*          embd   ff     layers heads kv  vocab  ctx */
    {"tiny", {256, 768, 4, 4, 2, 512, 512}},
    {"1b", {2048, 8192, 16, 32, 8, 32000, 4096}},    /* Llama-3.2-1B-shaped */
    {"7b", {4096, 11008, 32, 32, 32, 32000, 4096}},  /* Llama-2-7B */
    {"13b", {5120, 13824, 40, 40, 40, 32000, 4096}}, /* Llama-2-13B */
    {"70b", {8192, 28672, 80, 64, 8, 32000, 4096}},  /* Llama-2/3-70B */
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

uint32_t synth_tensor_type(const synth_options *o, const char *role, int layer, uint64_t row_len)
{
    uint32_t t = o->type;
    if (strstr(role, "norm")) return GGML_TYPE_F32;
    if (o->mix == MIX_Q4_K_M) {
        t = GGML_TYPE_Q4_K;
        if (!strcmp(role, "output")) t = GGML_TYPE_Q6_K;
        else if ((!strcmp(role, "attn_v") || !strcmp(role, "ffn_down")) && use_more_bits(layer, o->shape.n_layers))
            t = GGML_TYPE_Q6_K;
    }
    if (ggml_row_bytes(t, row_len)) return t;
    return ggml_row_bytes(GGML_TYPE_Q8_0, row_len) && t != GGML_TYPE_F32 && t != GGML_TYPE_F16 &&
                   t != GGML_TYPE_BF16
               ? GGML_TYPE_Q8_0
               : GGML_TYPE_F16;
}

strata_status synth_check_shape(const synth_shape *s, strata_error *err)
{
    if (!s->n_embd || !s->n_ff || !s->n_layers || !s->n_heads || !s->n_kv_heads || !s->ctx)
        return err_set(err, STRATA_E_INVALID, "strata-synth: every dimension must be at least 1");
    if (s->n_embd % s->n_heads || (s->n_embd / s->n_heads) % 2)
        return err_set(err, STRATA_E_INVALID, "strata-synth: --n-embd must be a multiple of --n-heads with an even "
                       "head dimension (rotary embeddings rotate pairs)");
    if (s->n_heads % s->n_kv_heads)
        return err_set(err, STRATA_E_INVALID, "strata-synth: --n-heads must be a multiple of --n-kv-heads");
    if (s->n_layers > 4096 || s->n_embd > (1u << 20) || s->n_ff > (1u << 22) || s->vocab > (1u << 24) ||
        s->ctx > (1u << 24))
        return err_set(err, STRATA_E_INVALID, "strata-synth: a dimension is beyond the generator's limits "
                       "(layers 4096, embd 2^20, ffn 2^22, vocab and context 2^24)");
    return STRATA_OK;
}
