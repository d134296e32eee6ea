/* AVX-512 dot product of IQ4_XS weight rows with Q8_K activations, one row
 * at a time (a two-row form measured half this rate from RAM on this VM).
 * The scheme of dot_iq4_xs_avx2.c on 64-byte vectors: a
 * vector holds two sub-blocks of 32, nibbles looked up in the value table
 * per 128-bit lane, the values' signs moved onto the activations, byte
 * pairs summed (maddubs) and multiplied by the sub-block's scale (madd).
 * Lanes 0-7 of a vector then hold what the AVX2 kernel's 8 lanes hold for
 * the first sub-block, lanes 8-15 for the second; adding the halves gives
 * the AVX2 kernel's integer sums exactly, and the float steps after it are
 * the AVX2 kernel's: the results are its results bit for bit. */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/act_quant.h"
#include "kernels/cpu/avx512_util.h"
#include "kernels/cpu/dequant.h"

#define IQ4_XS_BYTES 136 /* f16 d, u16 scales_h, u8 scales_l[4], qs[128] */

/* The eight 6-bit scales of a block, one per byte (see dot_iq4_xs_avx2.c's
 * iq4_xs_scales: the same bits, spread the same way). */
INLINE uint64_t iq4_xs_scales512(const uint8_t *w)
{
    uint64_t h = rd16(w + 2), l = ld32(w + 4);
    h = (h & 0xFF) | (h & 0xFF00) << 24;
    h = (h & 0x0000000F0000000Full) | (h & 0x000000F0000000F0ull) << 12;
    h = (h & 0x0003000300030003ull) | (h & 0x000C000C000C000Cull) << 6;
    l = (l & 0xFFFF) | (l & 0xFFFF0000) << 16;
    l = (l & 0x000000FF000000FFull) | (l & 0x0000FF000000FF00ull) << 8;
    l = (l & 0x000F000F000F000Full) | ((l >> 4) & 0x000F000F000F000Full) << 8;
    return l | h << 4;
}

/* The 64 values of sub-blocks 2p and 2p+1 (32 bytes of nibbles at q), in
 * element order: lanes [low q[0:16], high q[0:16], low q[16:32], high
 * q[16:32]]. */
INLINE __m512i values2(const uint8_t *q, __m512i tab)
{
    __m512i v = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3),
                                         _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)q)));
    v = _mm512_srlv_epi64(v, _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4));
    return _mm512_shuffle_epi8(tab, _mm512_and_si512(v, _mm512_set1_epi8(0x0F)));
}

/* 16 int32: Σ over 4-byte groups of v*a times the group's sub-block scale
 * (s: 32 int16, the first sub-block's scale in 0-15, the second's in
 * 16-31). |pair| <= 2*127*127: maddubs never saturates (a is never -128). */
INLINE __m512i scaled_sums(__m512i v, __m512i a, __m512i s)
{
    __m512i sa = _mm512_mask_sub_epi8(a, _mm512_movepi8_mask(v), _mm512_setzero_si512(), a);
    return _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_abs_epi8(v), sa), s);
}

/* One row of nb blocks at w. */
void kernel_dot_iq4_xs_avx512(const void *w_row, const void *act, uint64_t n, float *out)
{
    const uint8_t *w = w_row, *a = act;
    const __m512i tab = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)dequant_iq4nl_values));
    __m256 acc = _mm256_setzero_ps();
    for (uint64_t b = 0; b < n / 256; b++) {
        const uint8_t *wb = w + IQ4_XS_BYTES * b, *ab = a + Q8K_BYTES * b;
        kernel_prefetch(wb, IQ4_XS_BYTES);
        __m128i ls = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)iq4_xs_scales512(wb)));
        __m512i s16 = _mm512_castsi128_si512(_mm_sub_epi16(ls, _mm_set1_epi16(32))), sum = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++) {
            const __m512i pick = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16((short)(2 * p))),
                                                    _mm256_set1_epi16((short)(2 * p + 1)), 1);
            __m512i v = values2(wb + 8 + 32 * p, tab);
            __m512i av = _mm512_loadu_si512((const void *)(ab + Q8K_OFF_QS + 64 * p));
            sum = _mm512_add_epi32(sum, scaled_sums(v, av, _mm512_permutexvar_epi16(pick, s16)));
        }
        __m256i s8 = _mm256_add_epi32(_mm512_castsi512_si256(sum), _mm512_extracti64x4_epi64(sum, 1));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(wb) * ldf32_512(ab)), _mm256_cvtepi32_ps(s8), acc);
    }
    *out = hsum_ps(acc);
}
