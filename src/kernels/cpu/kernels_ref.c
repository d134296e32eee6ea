/* Reference dot products: dequantize the weight row exactly (dequant.c) in
 * chunks and accumulate in float. Slow and simple on purpose: the truth. */
#include <string.h>

#include "gguf/ggml_types.h"
#include "kernels/cpu/dequant.h"
#include "kernels/cpu/kernels.h"

#define CHUNK 256 /* a multiple of every block size */

static void ref_dot(uint32_t type, const void *w_row, const float *x, uint64_t n, float *out)
{
    const ggml_type_info *t = ggml_type_get(type);
    const uint8_t *w = w_row;
    float buf[CHUNK];
    float sum = 0.0f;
    for (uint64_t i = 0; i < n; i += CHUNK) {
        uint64_t m = n - i < CHUNK ? n - i : CHUNK;
        dequant_row(type, w + i / t->block_elems * t->block_bytes, buf, m, NULL);
        for (uint64_t k = 0; k < m; k++) sum += buf[k] * x[i + k];
    }
    *out = sum;
}

#define REF(NAME, TYPE)                                                                   \
    static void ref_dot_##NAME(const void *w, const void *act, uint64_t n, float *out)    \
    {                                                                                     \
        ref_dot(TYPE, w, act, n, out);                                                    \
    }

REF(f32, GGML_TYPE_F32)
REF(f16, GGML_TYPE_F16)
REF(bf16, GGML_TYPE_BF16)
REF(q8_0, GGML_TYPE_Q8_0)
REF(q4_0, GGML_TYPE_Q4_0)
REF(q4_1, GGML_TYPE_Q4_1)
REF(q5_0, GGML_TYPE_Q5_0)
REF(q5_1, GGML_TYPE_Q5_1)
REF(q2_k, GGML_TYPE_Q2_K)
REF(q3_k, GGML_TYPE_Q3_K)
REF(q4_k, GGML_TYPE_Q4_K)
REF(q5_k, GGML_TYPE_Q5_K)
REF(q6_k, GGML_TYPE_Q6_K)
REF(iq4_nl, GGML_TYPE_IQ4_NL)
REF(iq4_xs, GGML_TYPE_IQ4_XS)

static const kernel_desc reference_kernels[] = {
    {GGML_TYPE_F32, GGML_TYPE_F32, ref_dot_f32, NULL, NULL, "scalar"},
    {GGML_TYPE_F16, GGML_TYPE_F32, ref_dot_f16, NULL, NULL, "scalar"},
    {GGML_TYPE_BF16, GGML_TYPE_F32, ref_dot_bf16, NULL, NULL, "scalar"},
    {GGML_TYPE_Q8_0, GGML_TYPE_F32, ref_dot_q8_0, NULL, NULL, "scalar"},
    {GGML_TYPE_Q4_0, GGML_TYPE_F32, ref_dot_q4_0, NULL, NULL, "scalar"},
    {GGML_TYPE_Q4_1, GGML_TYPE_F32, ref_dot_q4_1, NULL, NULL, "scalar"},
    {GGML_TYPE_Q5_0, GGML_TYPE_F32, ref_dot_q5_0, NULL, NULL, "scalar"},
    {GGML_TYPE_Q5_1, GGML_TYPE_F32, ref_dot_q5_1, NULL, NULL, "scalar"},
    {GGML_TYPE_Q2_K, GGML_TYPE_F32, ref_dot_q2_k, NULL, NULL, "scalar"},
    {GGML_TYPE_Q3_K, GGML_TYPE_F32, ref_dot_q3_k, NULL, NULL, "scalar"},
    {GGML_TYPE_Q4_K, GGML_TYPE_F32, ref_dot_q4_k, NULL, NULL, "scalar"},
    {GGML_TYPE_Q5_K, GGML_TYPE_F32, ref_dot_q5_k, NULL, NULL, "scalar"},
    {GGML_TYPE_Q6_K, GGML_TYPE_F32, ref_dot_q6_k, NULL, NULL, "scalar"},
    {GGML_TYPE_IQ4_NL, GGML_TYPE_F32, ref_dot_iq4_nl, NULL, NULL, "scalar"},
    {GGML_TYPE_IQ4_XS, GGML_TYPE_F32, ref_dot_iq4_xs, NULL, NULL, "scalar"},
};

const kernel_desc *kernel_reference(uint32_t weight_type)
{
    for (size_t i = 0; i < sizeof reference_kernels / sizeof reference_kernels[0]; i++)
        if (reference_kernels[i].weight_type == weight_type) return &reference_kernels[i];
    return NULL;
}
