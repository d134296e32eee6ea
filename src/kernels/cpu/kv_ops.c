#include "kernels/cpu/kv_ops.h"

#include "kernels/cpu/cpu_features.h"
#include "util/fp16.h"

static float dot_f16(const float *q, const void *k, uint64_t n)
{
    const uint16_t *h = k;
    float s = 0.0f;
    for (uint64_t i = 0; i < n; i++) s += q[i] * fp16_to_f32(h[i]);
    return s;
}

static void axpy_f16(float *out, float p, const void *v, uint64_t n)
{
    const uint16_t *h = v;
    for (uint64_t i = 0; i < n; i++) out[i] += p * fp16_to_f32(h[i]);
}

static float dot_f32(const float *q, const void *k, uint64_t n)
{
    const float *f = k;
    float s = 0.0f;
    for (uint64_t i = 0; i < n; i++) s += q[i] * f[i];
    return s;
}

static void axpy_f32(float *out, float p, const void *v, uint64_t n)
{
    const float *f = v;
    for (uint64_t i = 0; i < n; i++) out[i] += p * f[i];
}

kv_ops kv_ops_get(bool f32, bool fast)
{
    if (fast && kernel_cpu_features_get()->avx2_fma_f16c)
        return f32 ? (kv_ops){kv_dot_f32_avx2, kv_axpy_f32_avx2} : (kv_ops){kv_dot_f16_avx2, kv_axpy_f16_avx2};
    return f32 ? (kv_ops){dot_f32, axpy_f32} : (kv_ops){dot_f16, axpy_f16};
}
