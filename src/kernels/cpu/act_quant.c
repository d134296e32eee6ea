/* Activation quantization to Q8_0 / Q8_K (formats in act_quant.h): the
 * portable versions and the dispatch to the AVX2 ones. */
#include "kernels/cpu/act_quant.h"

#include <math.h>
#include <string.h>

#include "gguf/ggml_types.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/quantize.h"

static void q8k_block(const float *x, uint8_t *y)
{
    float amax = 0.0f;
    for (int i = 0; i < Q8K_BLOCK; i++) {
        float a = fabsf(x[i]);
        amax = a > amax ? a : amax;
    }
    float d = amax / 127.0f, id = amax > 0.0f ? 127.0f / amax : 0.0f;
    int8_t q[Q8K_BLOCK];
    int16_t bsums[16];
    for (int i = 0; i < Q8K_BLOCK; i++) {
        /* x * id is within [-127, 127] up to one rounding, which cannot
         * push it past 127.5: no clamp needed */
        q[i] = (int8_t)nearbyintf(x[i] * id);
    }
    for (int j = 0; j < 16; j++) {
        int s = 0;
        for (int i = 0; i < 16; i++) s += q[16 * j + i];
        bsums[j] = (int16_t)s;
    }
    memcpy(y, &d, sizeof d);
    memcpy(y + Q8K_OFF_QS, q, sizeof q);
    memcpy(y + Q8K_OFF_BSUMS, bsums, sizeof bsums);
}

void act_quant_q8_k_scalar(const float *x, void *dst, uint64_t n)
{
    uint8_t *y = dst;
    for (uint64_t b = 0; b < n / Q8K_BLOCK; b++) q8k_block(x + b * Q8K_BLOCK, y + b * Q8K_BYTES);
}

void act_quant_q8_k(const float *x, void *dst, uint64_t n)
{
    if (kernel_cpu_features_get()->avx2_fma_f16c) act_quant_q8_k_avx2(x, dst, n);
    else act_quant_q8_k_scalar(x, dst, n);
}

void act_quant_q8_0(const float *x, void *dst, uint64_t n)
{
    if (kernel_cpu_features_get()->avx2_fma_f16c) act_quant_q8_0_avx2(x, dst, n);
    else quantize_row(GGML_TYPE_Q8_0, x, dst, n, NULL);
}
