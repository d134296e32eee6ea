/* AVX2 dot products of the K-quants with sixteen sub-blocks of 16 — Q6_K,
 * Q3_K and Q2_K — with Q8_K activations.
 *
 * All three store element e = 128h + 32k + l (half h < 2, group k < 4,
 * l < 32) in byte l of a 32-byte group of half h, at a bit position set by
 * k, so each (h, k) yields 32 unsigned quants u in element order with one
 * load / shift / mask. Their values are x = d*s_j*(u - off) - dmin*m_j
 * (j = e/16) and, against activations d_a*a,
 *   Σ x*a_x = d_a * (d * (Σ_j s_j Σ u*a  -  off * Σ_j s_j Σ a) - dmin * Σ_j m_j Σ a)
 * where Σ a over sub-block j is bsums[j] of the Q8_K block. Q6_K: off = 32,
 * signed 8-bit s, no mins; Q3_K: off = 4, s = 6-bit scale - 32, no mins;
 * Q2_K: off = 0, 4-bit s and m. The integer sums are exact: at most
 * 256*128*63*127 + 32*256*128*2032 for Q6_K. */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/act_quant.h"
#include "kernels/cpu/avx2_util.h"
#include "kernels/cpu/k16_util.h"

/* Group k covers sub-blocks 2k (lane 0) and 2k+1 (lane 1) of its half:
 * broadcast int16 element 2k in lane 0 and 2k+1 in lane 1. */
INLINE __m256i pair_scale(__m256i s_half, int k)
{
    short lo = (short)(4 * k | (4 * k + 1) << 8), hi = (short)((4 * k + 2) | (4 * k + 3) << 8);
    return _mm256_shuffle_epi8(s_half, _mm256_set_m128i(_mm_set1_epi16(hi), _mm_set1_epi16(lo)));
}

/* Σ_j s_j Σ u*a over one half: u[k] the 32 quants of group k, qa the half's
 * 128 activations, s16 all sixteen int16 scales. */
INLINE __m256i half_sum(const __m256i u[4], const uint8_t *qa, __m256i s16, int h)
{
    __m256i s_half = half_scales(s16, h), sum = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        __m256i p = _mm256_maddubs_epi16(u[k], ld256(qa + 32 * k));
        sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, pair_scale(s_half, k)));
    }
    return sum;
}

/* ---- Q6_K (210 bytes: ql[128], qh[64], i8 scales[16], f16 d) ----
 * Group k of half h: low four bits from nibble k/2 of ql[64h + 32(k%2) + l],
 * top two from bits 2k of qh[32h + l], moved to bits 4..5 with a 16-bit
 * shift (the bits used never cross a byte boundary). */
INLINE __m256i q6_k_group(const uint8_t *w, int h, int k)
{
    const __m256i low4 = _mm256_set1_epi8(0x0F), top2 = _mm256_set1_epi8(0x30);
    __m256i l = ld256(w + 64 * h + 32 * (k & 1)), qh = ld256(w + 128 + 32 * h);
    __m256i top = 2 * k < 4 ? _mm256_slli_epi16(qh, 4 - 2 * k) : 2 * k > 4 ? _mm256_srli_epi16(qh, 2 * k - 4) : qh;
    return _mm256_or_si256(_mm256_and_si256(k < 2 ? l : _mm256_srli_epi16(l, 4), low4), _mm256_and_si256(top, top2));
}

/* ---- the Q6_K driver ----
 * q6_k_rows runs R (1 or 2) rows (a rows_driver_fn, see avx2_util.h):
 * block b of each row against activation block b, one row after the other
 * (the state of both at once would not fit in the registers). Little work
 * on the activations is left to share; the two-row kernel gains from RAM,
 * where it reads two weight streams at once (ROWS_KERNELS). Each row has
 * its own accumulator, summed in the order of the single-row kernel
 * (R = 1): a row's result does not depend on R. */
#define Q6K_ROWS 2

/* Block b of one row at w against the T tokens' activation blocks a[t]:
 * each group of quants is unpacked and its scales picked once for all T
 * (the single-row kernels run T = 1). */
INLINE void q6_k_tile_block(const uint8_t *w, const uint8_t *const a[], int T, __m256 acc[])
{
    __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 192))), sum[TILE_TOK];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) /* off = 32 */
        sum[t] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(bsum_dot(s16, a[t]), 5));
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m256i s_half = half_scales(s16, h);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            __m256i u = q6_k_group(w, h, k), sc = pair_scale(s_half, k);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                __m256i p = _mm256_maddubs_epi16(u, ld256(a[t] + Q8K_OFF_QS + 128 * h + 32 * k));
                sum[t] = _mm256_add_epi32(sum[t], _mm256_madd_epi16(p, sc));
            }
        }
    }
    float d = ld_f16(w + 208);
#pragma GCC unroll 4
    for (int t = 0; t < T; t++)
        acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * da_of(a[t])), _mm256_cvtepi32_ps(sum[t]), acc[t]);
}

/* Block b of the R rows at w[r] against activation block a. */
INLINE void q6_k_block(const uint8_t *const w[], int R, const uint8_t *a, __m256 acc[])
{
    const uint8_t *a1[1] = {a};
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) q6_k_tile_block(w[r], a1, 1, &acc[r]);
}

/* *out[r] for the R rows starting at w[r], n elements each. */
INLINE void q6_k_rows(const uint8_t *const w[], float *const out[], int R, const uint8_t *a, uint64_t n)
{
    __m256 acc[Q6K_ROWS];
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    for (uint64_t b = 0; b < n / 256; b++) {
        const uint8_t *wr[Q6K_ROWS];
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            wr[r] = w[r] + 210 * b;
            kernel_prefetch(wr[r], 210);
        }
        q6_k_block(wr, R, a + Q8K_BYTES * b, acc);
    }
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) *out[r] = hsum_ps(acc[r]);
}

ROWS_KERNELS(kernel_dot_q6_k_avx2, kernel_dot_rows_q6_k_avx2, q6_k_rows)

/* The tile driver (see avx2_util.h): one row at w against T tokens, the
 * weights from cache (no prefetch hints). */
INLINE void q6_k_tile(const uint8_t *w, const uint8_t *a, uint64_t as, int T, float *out, uint64_t os, uint64_t n)
{
    __m256 acc[TILE_TOK];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    for (uint64_t b = 0; b < n / 256; b++) {
        const uint8_t *at[TILE_TOK];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) at[t] = a + t * as + Q8K_BYTES * b;
        q6_k_tile_block(w + 210 * b, at, T, acc);
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) out[t * os] = hsum_ps(acc[t]);
}

TILE_KERNEL(kernel_dot_tile_q6_k_avx2, q6_k_tile)

/* The two-bit fields of group k (bits 2k..2k+1 of each byte of q). */
INLINE __m256i crumbs(__m256i q, int k)
{
    return _mm256_and_si256(k ? _mm256_srli_epi16(q, 2 * k) : q, _mm256_set1_epi8(3));
}

/* ---- Q3_K (110 bytes: hmask[32], qs[64], scales[12], f16 d) ----
 * Low two bits of group (h, k) are crumb k of qs[32h + l]; the third is bit
 * 4h + k of hmask[l], and u = low | third << 2 = q + 4 with q in [-4, 3].
 * The scales: q3_k_scales (k16_util.h). */

/* Bit b of every byte of hm moved to bit 2 (b is a constant once unrolled). */
INLINE __m256i bit_to_2(__m256i hm, int b)
{
    __m256i v = b > 2 ? _mm256_srli_epi16(hm, b - 2) : b < 2 ? _mm256_slli_epi16(hm, 2 - b) : hm;
    return _mm256_and_si256(v, _mm256_set1_epi8(4));
}

/* Block b of one Q3_K row at w against activation block a, into acc. */
INLINE __m256 q3_k_block(const uint8_t *w, const uint8_t *a, __m256 acc)
{
    __m256i s16 = q3_k_scales(w + 96);
    __m256i hm = ld256(w), sum = _mm256_setzero_si256();
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m256i qs = ld256(w + 32 + 32 * h), u[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) u[k] = _mm256_or_si256(crumbs(qs, k), bit_to_2(hm, 4 * h + k));
        sum = _mm256_add_epi32(sum, half_sum(u, a + Q8K_OFF_QS + 128 * h, s16, h));
    }
    sum = _mm256_sub_epi32(sum, _mm256_slli_epi32(bsum_dot(s16, a), 2)); /* off = 4 */
    return _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(w + 108) * da_of(a)), _mm256_cvtepi32_ps(sum), acc);
}

K16_ROWS_DRIVER(q3_k_rows, q3_k_block, 110)

ROWS_KERNELS(kernel_dot_q3_k_avx2, kernel_dot_rows_q3_k_avx2, q3_k_rows)

/* ---- Q2_K (84 bytes: scales[16], qs[64], f16 d, f16 dmin) ----
 * Group (h, k) is crumb k of qs[32h + l]; byte j of scales holds sub-block
 * j's scale (low nibble) and min (high nibble). q2_k_block adds block b of
 * one row at w against activation block a into acc (scales) and acc_m
 * (mins). */
INLINE void q2_k_block(const uint8_t *w, const uint8_t *a, __m256 *acc, __m256 *acc_m)
{
    __m256i s16, m16;
    q2_k_scales_mins(w, &s16, &m16);
    __m256i sum = _mm256_setzero_si256();
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m256i qs = ld256(w + 16 + 32 * h), u[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) u[k] = crumbs(qs, k);
        sum = _mm256_add_epi32(sum, half_sum(u, a + Q8K_OFF_QS + 128 * h, s16, h));
    }
    q2_k_accumulate(w, a, sum, m16, acc, acc_m);
}

K16_ROWS_DRIVER_MINS(q2_k_rows, q2_k_block, 84)

ROWS_KERNELS(kernel_dot_q2_k_avx2, kernel_dot_rows_q2_k_avx2, q2_k_rows)
