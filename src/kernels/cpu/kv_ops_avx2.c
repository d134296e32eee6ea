/* AVX2 attention loops: 8 lanes at a time, F16C conversion of cached halves. */
#include "kernels/cpu/avx2_util.h"
#include "kernels/cpu/kv_ops.h"

float kv_dot_f16_avx2(const float *q, const void *k, uint64_t n)
{
    const uint16_t *h = k;
    __m256 acc = _mm256_setzero_ps();
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 kv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i)));
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), kv, acc);
    }
    float s = hsum_ps(acc);
    for (; i < n; i++) s += q[i] * _cvtsh_ss(h[i]);
    return s;
}

void kv_axpy_f16_avx2(float *out, float p, const void *v, uint64_t n)
{
    const uint16_t *h = v;
    __m256 pv = _mm256_set1_ps(p);
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 vv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i)));
        _mm256_storeu_ps(out + i, _mm256_fmadd_ps(pv, vv, _mm256_loadu_ps(out + i)));
    }
    for (; i < n; i++) out[i] += p * _cvtsh_ss(h[i]);
}

float kv_dot_f32_avx2(const float *q, const void *k, uint64_t n)
{
    const float *f = k;
    __m256 acc = _mm256_setzero_ps();
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(f + i), acc);
    float s = hsum_ps(acc);
    for (; i < n; i++) s += q[i] * f[i];
    return s;
}

void kv_axpy_f32_avx2(float *out, float p, const void *v, uint64_t n)
{
    const float *f = v;
    __m256 pv = _mm256_set1_ps(p);
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_fmadd_ps(pv, _mm256_loadu_ps(f + i), _mm256_loadu_ps(out + i)));
    for (; i < n; i++) out[i] += p * f[i];
}
