/* AVX-512 decode kernels (dot and two-row dot_rows) of Q3_K and Q2_K with
 * Q8_K activations: AVX2's results bit for bit at fewer instructions per
 * block.
 *
 * The AVX2 kernels (dot_q6_k_avx2.c) work on one group of 32 quants at a
 * time: maddubs against the activations, madd with the group's two
 * sub-block scales, added into eight int32 lanes. These take two groups
 * (k, k + 1) in one 512-bit vector, whose activations are adjacent, with
 * the same instructions twice as wide; Q3_K's third bits come from a byte
 * test into a mask. Group k's products land in the low 256 bits and
 * k + 1's in the high ones, and the two halves are added at the end of the
 * block: integer sums are exact, so each block's eight int32 lanes are
 * AVX2's, and the float steps after them are AVX2's. */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/act_quant.h"
#include "kernels/cpu/avx2_util.h"
#include "kernels/cpu/k16_util.h"

/* The 32 bytes at p in both halves. */
INLINE __m512i ld256x2(const uint8_t *p)
{
    __m256i v = ld256(p);
    return _mm512_inserti64x4(_mm512_castsi256_si512(v), v, 1);
}

/* The two-bit fields of groups k (low half) and k + 1 (high half) of the
 * 32 bytes q holds in both halves (bits 2k..2k+1, 2k+2..2k+3). */
INLINE __m512i crumbs2(__m512i q, int k)
{
    __m512i shift = _mm512_inserti64x4(_mm512_set1_epi16((short)(2 * k)), _mm256_set1_epi16((short)(2 * k + 2)), 1);
    return _mm512_and_si512(_mm512_srlv_epi16(q, shift), _mm512_set1_epi8(3));
}

/* 4 in the bytes of hm (in both halves) with bit b set (low half) or bit
 * b + 1 (high half): Q3_K's third bits of two groups. */
INLINE __m512i third_bits2(__m512i hm, int b)
{
    __m512i bit = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << b)), _mm256_set1_epi8((char)(1 << (b + 1))), 1);
    return _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(hm, bit), _mm512_set1_epi8(4));
}

/* Groups k and k + 1 of a half cover its sub-blocks 2k .. 2k+3, one per
 * 128-bit lane: int16 scale 2k + L of s_half (the half's eight scales in
 * every lane) broadcast in lane L. */
INLINE __m512i pair_scales2(__m512i s_half, int k)
{
    int32_t idx[4]; /* [lane]: the two bytes of scale 2k + lane, twice */
    for (int l = 0; l < 4; l++) {
        int b = 2 * (2 * k + l);
        idx[l] = (b | (b + 1) << 8) * 0x10001;
    }
    __m512i sel = _mm512_setr_epi32(idx[0], idx[0], idx[0], idx[0], idx[1], idx[1], idx[1], idx[1], idx[2], idx[2],
                                    idx[2], idx[2], idx[3], idx[3], idx[3], idx[3]);
    return _mm512_shuffle_epi8(s_half, sel);
}

/* Σ_j s_j Σ u*a over one half: u2[i] groups 2i and 2i+1 (as above), qa the
 * half's 128 activations, s16 all sixteen int16 scales; 16 int32 lanes,
 * whose halves sum to half_sum's 8. */
INLINE __m512i half_sum2(const __m512i u2[2], const uint8_t *qa, __m256i s16, int h)
{
    __m512i s_half = _mm512_broadcast_i32x4(h ? _mm256_extracti128_si256(s16, 1) : _mm256_castsi256_si128(s16));
    __m512i sum = _mm512_setzero_si512();
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++) {
        __m512i p = _mm512_maddubs_epi16(u2[i], _mm512_loadu_si512((const void *)(qa + 64 * i)));
        sum = _mm512_add_epi32(sum, _mm512_madd_epi16(p, pair_scales2(s_half, 2 * i)));
    }
    return sum;
}

INLINE __m256i fold(__m512i v) { return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1)); }

/* ---- Q3_K (110 bytes: hmask[32], qs[64], scales[12], f16 d): see dot_q6_k_avx2.c ---- */

INLINE __m256 q3_k_block(const uint8_t *w, const uint8_t *a, __m256 acc)
{
    __m256i s16 = q3_k_scales(w + 96);
    __m512i hm = ld256x2(w), sum = _mm512_setzero_si512();
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m512i qs = ld256x2(w + 32 + 32 * h), u2[2];
#pragma GCC unroll 2
        for (int i = 0; i < 2; i++) u2[i] = _mm512_or_si512(crumbs2(qs, 2 * i), third_bits2(hm, 4 * h + 2 * i));
        sum = _mm512_add_epi32(sum, half_sum2(u2, a + Q8K_OFF_QS + 128 * h, s16, h));
    }
    __m256i total = _mm256_sub_epi32(fold(sum), _mm256_slli_epi32(bsum_dot(s16, a), 2)); /* off = 4 */
    return _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(w + 108) * da_of(a)), _mm256_cvtepi32_ps(total), acc);
}

K16_ROWS_DRIVER(q3_k_rows, q3_k_block, 110)

ROWS_KERNELS(kernel_dot_q3_k_avx512, kernel_dot_rows_q3_k_avx512, q3_k_rows)

/* ---- Q2_K (84 bytes: scales[16], qs[64], f16 d, f16 dmin): see dot_q6_k_avx2.c ---- */

INLINE void q2_k_block(const uint8_t *w, const uint8_t *a, __m256 *acc, __m256 *acc_m)
{
    __m256i s16, m16;
    q2_k_scales_mins(w, &s16, &m16);
    __m512i sum = _mm512_setzero_si512();
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m512i qs = ld256x2(w + 16 + 32 * h), u2[2];
#pragma GCC unroll 2
        for (int i = 0; i < 2; i++) u2[i] = crumbs2(qs, 2 * i);
        sum = _mm512_add_epi32(sum, half_sum2(u2, a + Q8K_OFF_QS + 128 * h, s16, h));
    }
    q2_k_accumulate(w, a, fold(sum), m16, acc, acc_m);
}

K16_ROWS_DRIVER_MINS(q2_k_rows, q2_k_block, 84)

ROWS_KERNELS(kernel_dot_q2_k_avx512, kernel_dot_rows_q2_k_avx512, q2_k_rows)
