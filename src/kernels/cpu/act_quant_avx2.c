/* AVX2 activation quantization, byte-identical to the portable versions
 * (the rounding steps below mirror theirs exactly). */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/cpu/act_quant.h"
#include "util/fp16.h"
#include "kernels/cpu/avx2_util.h"


INLINE float hmax_ps(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* max |x[i]| over n (a multiple of 32) floats */
INLINE float absmax(const float *x, int n)
{
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 m0 = _mm256_setzero_ps(), m1 = m0;
    for (int i = 0; i < n; i += 16) {
        m0 = _mm256_max_ps(m0, _mm256_and_ps(abs_mask, _mm256_loadu_ps(x + i)));
        m1 = _mm256_max_ps(m1, _mm256_and_ps(abs_mask, _mm256_loadu_ps(x + i + 8)));
    }
    return hmax_ps(_mm256_max_ps(m0, m1));
}

/* Four vectors of eight int32 (each within int8 range) -> 32 int8 in order.
 * packs works within 128-bit lanes, so the dwords come out as a0 b0 c0 d0 |
 * a1 b1 c1 d1 (x0 = first four of x) and one permute restores the order. */
INLINE __m256i pack_i32x32_to_i8(__m256i a, __m256i b, __m256i c, __m256i d)
{
    __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    __m256i p = _mm256_packs_epi16(ab, cd);
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* roundf (half away from zero), exactly: t = trunc(v) and v - t are exact
 * in float, so the tie test is exact too. */
INLINE __m256i round_away(__m256 v)
{
    const __m256 sign = _mm256_set1_ps(-0.0f), half = _mm256_set1_ps(0.5f);
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
    __m256 up = _mm256_and_ps(_mm256_cmp_ps(frac, half, _CMP_GE_OQ),
                              _mm256_or_ps(_mm256_and_ps(sign, v), _mm256_set1_ps(1.0f)));
    return _mm256_cvttps_epi32(_mm256_add_ps(t, up));
}

void act_quant_q8_0_avx2(const float *x, void *dst, uint64_t n)
{
    uint8_t *y = dst;
    for (uint64_t b = 0; b < n / 32; b++, x += 32, y += 34) {
        float d = absmax(x, 32) / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t h = f32_to_fp16(d);
        memcpy(y, &h, 2);
        __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int k = 0; k < 4; k++) q[k] = round_away(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), vid));
        _mm256_storeu_si256((__m256i *)(y + 2), pack_i32x32_to_i8(q[0], q[1], q[2], q[3]));
    }
}

/* Sums of each 16 int8 of q0..q3 (128 values) as 8 int32 in order. Each
 * dword of s after madd sums 4 bytes; two rounds of hadd gather 16-byte
 * groups, interleaved by lane, and a permute restores the order. */
INLINE __m256i bsums8(__m256i q0, __m256i q1, __m256i q2, __m256i q3)
{
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    __m256i s0 = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, q0), ones16);
    __m256i s1 = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, q1), ones16);
    __m256i s2 = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, q2), ones16);
    __m256i s3 = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, q3), ones16);
    __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(s0, s1), _mm256_hadd_epi32(s2, s3));
    return _mm256_permutevar8x32_epi32(h, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

INLINE void q8k_block_avx2(const float *x, uint8_t *y)
{
    float amax = absmax(x, Q8K_BLOCK);
    float d = amax / 127.0f, id = amax > 0.0f ? 127.0f / amax : 0.0f;
    __m256 vid = _mm256_set1_ps(id);
    __m256i q[8];
    for (int g = 0; g < 8; g++) {
        const float *xg = x + 32 * g;
        /* cvtps rounds to nearest even, as nearbyintf does in the default mode */
        __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xg), vid));
        __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xg + 8), vid));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xg + 16), vid));
        __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xg + 24), vid));
        q[g] = pack_i32x32_to_i8(i0, i1, i2, i3);
        _mm256_storeu_si256((__m256i *)(y + Q8K_OFF_QS + 32 * g), q[g]);
    }
    __m256i lo = bsums8(q[0], q[1], q[2], q[3]), hi = bsums8(q[4], q[5], q[6], q[7]);
    /* packs interleaves by lane again: 64-bit permute back into order */
    __m256i b16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(lo, hi), 0xd8);
    memcpy(y, &d, sizeof d);
    _mm256_storeu_si256((__m256i *)(y + Q8K_OFF_BSUMS), b16);
}

void act_quant_q8_k_avx2(const float *x, void *dst, uint64_t n)
{
    uint8_t *y = dst;
    for (uint64_t b = 0; b < n / Q8K_BLOCK; b++) q8k_block_avx2(x + b * Q8K_BLOCK, y + b * Q8K_BYTES);
}
