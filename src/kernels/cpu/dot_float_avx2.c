/* AVX2/FMA dot products of float-type weight rows (F32, F16, BF16) with
 * float activations. Four independent accumulators hide the FMA latency;
 * a scalar loop finishes rows whose length is not a multiple of 32. */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/act_quant.h"
#include "util/fp16.h"
#include "kernels/cpu/avx2_util.h"


INLINE float sum4(__m256 a, __m256 b, __m256 c, __m256 d)
{
    return hsum_ps(_mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d)));
}

void kernel_dot_f32_avx2(const void *w_row, const void *act, uint64_t n, float *out)
{
    const float *w = w_row, *x = act;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    uint64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        kernel_prefetch(w + i, 128);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    float sum = sum4(a0, a1, a2, a3);
    for (; i < n; i++) sum += w[i] * x[i];
    *out = sum;
}

/* 8 halves at p -> 8 floats (F16C) */
INLINE __m256 load_f16x8(const uint8_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

/* 8 bfloat16 at p -> 8 floats: the upper halves of the float bit patterns */
INLINE __m256 load_bf16x8(const uint8_t *p)
{
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

INLINE float half_to_f32(uint16_t h) { return _cvtsh_ss(h); }
INLINE float bfloat_to_f32(uint16_t h) { return bf16_to_f32(h); }

/* A row of 16-bit floats against float activations; load and one convert
 * 8 and 1 values (inlined: they are constants at every call). */
INLINE float dot_16bit(const uint8_t *w, const float *x, uint64_t n, __m256 (*load)(const uint8_t *),
                       float (*one)(uint16_t))
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    uint64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        kernel_prefetch(w + 2 * i, 64);
        a0 = _mm256_fmadd_ps(load(w + 2 * i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(load(w + 2 * i + 16), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(load(w + 2 * i + 32), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(load(w + 2 * i + 48), _mm256_loadu_ps(x + i + 24), a3);
    }
    float sum = sum4(a0, a1, a2, a3);
    for (; i < n; i++) sum += one(rd16(w + 2 * i)) * x[i];
    return sum;
}

void kernel_dot_f16_avx2(const void *w_row, const void *act, uint64_t n, float *out)
{
    *out = dot_16bit(w_row, act, n, load_f16x8, half_to_f32);
}

void kernel_dot_bf16_avx2(const void *w_row, const void *act, uint64_t n, float *out)
{
    *out = dot_16bit(w_row, act, n, load_bf16x8, bfloat_to_f32);
}
