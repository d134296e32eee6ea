#include "kernels/cpu/kv_ops.h"

#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_features.h"
#include "util/fp16.h"

/* Element d of cached row j, as float. */
static float f16_at(const void *base, uint64_t stride, uint64_t j, uint64_t d)
{
    return fp16_to_f32(((const uint16_t *)((const uint8_t *)base + j * stride))[d]);
}

static float f32_at(const void *base, uint64_t stride, uint64_t j, uint64_t d)
{
    return ((const float *)((const uint8_t *)base + j * stride))[d];
}

typedef float (*elem_fn)(const void *base, uint64_t stride, uint64_t j, uint64_t d);

static void scores_ref(elem_fn at, const float *q, uint64_t n_q, const void *k, uint64_t stride, uint64_t n_keys,
                       uint64_t hd, float scale, float *s)
{
    for (uint64_t i = 0; i < n_q; i++)
        for (uint64_t j = 0; j < n_keys; j++) {
            float dot = 0.0f;
            for (uint64_t d = 0; d < hd; d++) dot += q[i * hd + d] * at(k, stride, j, d);
            s[i * n_keys + j] = dot * scale;
        }
}

static void mix_ref(elem_fn at, float *out, uint64_t n_q, const float *p, const void *v, uint64_t stride,
                    uint64_t n_keys, uint64_t hd)
{
    memset(out, 0, n_q * hd * sizeof *out);
    for (uint64_t i = 0; i < n_q; i++)
        for (uint64_t j = 0; j < n_keys; j++)
            for (uint64_t d = 0; d < hd; d++) out[i * hd + d] += p[i * n_keys + j] * at(v, stride, j, d);
}

void kv_scores_f16_ref(const float *q, uint64_t n_q, const void *k, uint64_t stride, uint64_t n_keys, uint64_t hd,
                       float scale, float *s)
{
    scores_ref(f16_at, q, n_q, k, stride, n_keys, hd, scale, s);
}

void kv_scores_f32_ref(const float *q, uint64_t n_q, const void *k, uint64_t stride, uint64_t n_keys, uint64_t hd,
                       float scale, float *s)
{
    scores_ref(f32_at, q, n_q, k, stride, n_keys, hd, scale, s);
}

void kv_mix_f16_ref(float *out, uint64_t n_q, const float *p, const void *v, uint64_t stride, uint64_t n_keys,
                    uint64_t hd)
{
    mix_ref(f16_at, out, n_q, p, v, stride, n_keys, hd);
}

void kv_mix_f32_ref(float *out, uint64_t n_q, const float *p, const void *v, uint64_t stride, uint64_t n_keys,
                    uint64_t hd)
{
    mix_ref(f32_at, out, n_q, p, v, stride, n_keys, hd);
}

void kv_softmax_ref(float *x, uint64_t n)
{
    float max = x[0];
    for (uint64_t i = 1; i < n; i++)
        if (x[i] > max) max = x[i];
    double sum = 0.0; /* double: thousands of terms of very different size */
    for (uint64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (uint64_t i = 0; i < n; i++) x[i] *= inv;
}

kv_ops kv_ops_get(bool f32, bool fast)
{
    if (fast && kernel_cpu_features_get()->avx2_fma_f16c)
        return f32 ? (kv_ops){kv_scores_f32_avx2, kv_softmax_avx2, kv_mix_f32_avx2}
                   : (kv_ops){kv_scores_f16_avx2, kv_softmax_avx2, kv_mix_f16_avx2};
    return f32 ? (kv_ops){kv_scores_f32_ref, kv_softmax_ref, kv_mix_f32_ref}
               : (kv_ops){kv_scores_f16_ref, kv_softmax_ref, kv_mix_f16_ref};
}
