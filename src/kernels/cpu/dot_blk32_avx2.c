/* AVX2 dot products of the 32-value block types — Q8_0, Q4_0, Q4_1, Q5_0,
 * Q5_1, IQ4_NL — with Q8_0 activations.
 *
 * One driver (dot32) runs them all: per block, a type-specific function
 * returns the integer sum Σ q*a of the block's 32 quants against the
 * activation block's, and the driver scales it by d_w*d_a. These loops are
 * bound by instruction throughput (~15 per block remain), so four blocks
 * go together: their f16 scales are gathered into one vector, converted
 * with one F16C instruction and multiplied as a vector, far fewer
 * instructions than converting eight scalars. Each type has a single-row
 * kernel and, where it is faster, a two-row one on the same driver; Q8_0
 * also a tile kernel for prompt batches (several tokens per weight block).
 *
 * maddubs multiplies unsigned by signed bytes. Quants with an offset
 * (x = d*(q - c), q unsigned) take Σ q*a - c*Σ a, both from maddubs, in
 * int16 before widening; signed quants move their sign onto the
 * activations instead: |q| * (a * sign(q)). |q| may be 128
 * (q = -128 in a valid Q8_0 block); activations are never -128 (see
 * act_quant.h), so the int16 pair sums stay within 2*128*127. */
#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

#include "kernels/cpu/act_quant.h"
#include "kernels/cpu/dequant.h"
#include "kernels/cpu/avx2_util.h"
#include "kernels/cpu/blk32_util.h"

/* 16 bytes at p: elements 0..15 in the low nibbles, 16..31 in the high
 * ones -> 32 values 0..15 in element order (upper lane shifted by 4). */
INLINE __m256i nibbles(const uint8_t *p)
{
    __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    v = _mm256_srlv_epi64(v, _mm256_setr_epi64x(0, 0, 4, 4));
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

/* 0xFF in byte j where bit j of the little-endian u32 at p is set, else 0:
 * shuffle byte j/8 of the word into byte j, set every bit but j%8, compare
 * with all ones. */
INLINE __m256i bits32(const uint8_t *p)
{
    uint32_t qh;
    memcpy(&qh, p, 4);
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, /* lane 0 */
                                            2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), spread);
    v = _mm256_or_si256(v, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfeLL));
    return _mm256_cmpeq_epi8(v, _mm256_set1_epi8(-1));
}

/* Σ u*a for unsigned u (pair sums within int16) as 8 int32 */
INLINE __m256i sum_u8i8(__m256i u, __m256i a)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), _mm256_set1_epi16(1));
}

/* Σ (u - c)*a for unsigned u, |u - c| <= 32: the int16 pair sums of u*a
 * and c*a cannot overflow, nor their difference */
INLINE __m256i sum_off_u8i8(__m256i u, int c, __m256i a)
{
    __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(u, a), _mm256_maddubs_epi16(_mm256_set1_epi8((char)c), a));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* Σ q*a for signed q */
INLINE __m256i sum_i8i8(__m256i q, __m256i a)
{
    return sum_u8i8(_mm256_sign_epi8(q, q), _mm256_sign_epi8(a, q));
}

/* ---- the quants of each type (w: weight block, qa: activation quants) ---- */

/* Q8_0 (34 bytes: f16 d, i8 q[32]); x = d*q */
INLINE __m256i q8_0_sum(const uint8_t *w, __m256i qa)
{
    return sum_i8i8(_mm256_loadu_si256((const __m256i *)(w + 2)), qa);
}

/* Q4_0 (18 bytes: f16 d, nibbles); x = d*(q-8) */
INLINE __m256i q4_0_sum(const uint8_t *w, __m256i qa) { return sum_off_u8i8(nibbles(w + 2), 8, qa); }

/* Q4_1 (20 bytes: f16 d, f16 m, nibbles); x = d*q + m */
INLINE __m256i q4_1_sum(const uint8_t *w, __m256i qa) { return sum_u8i8(nibbles(w + 4), qa); }

/* Q5_0 (22 bytes: f16 d, u32 qh, nibbles); x = d*(q-16) with the fifth bit
 * of element j at bit j of qh */
INLINE __m256i q5_0_sum(const uint8_t *w, __m256i qa)
{
    __m256i hi = _mm256_and_si256(bits32(w + 2), _mm256_set1_epi8(0x10));
    return sum_off_u8i8(_mm256_or_si256(nibbles(w + 6), hi), 16, qa);
}

/* Q5_1 (24 bytes: f16 d, f16 m, u32 qh, nibbles); x = d*q + m, q = 0..31 */
INLINE __m256i q5_1_sum(const uint8_t *w, __m256i qa)
{
    __m256i hi = _mm256_and_si256(bits32(w + 4), _mm256_set1_epi8(0x10));
    return sum_u8i8(_mm256_or_si256(nibbles(w + 8), hi), qa);
}

/* IQ4_NL (18 bytes: f16 d, nibbles); x = d*values[q], one byte shuffle */
INLINE __m256i iq4_nl_sum(const uint8_t *w, __m256i qa)
{
    __m256i tab = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)dequant_iq4nl_values));
    return sum_i8i8(_mm256_shuffle_epi8(tab, nibbles(w + 2)), qa);
}

/* ---- the driver ---- */

typedef __m256i (*quant_sum_fn)(const uint8_t *w, __m256i qa);

/* Four blocks of the R rows at w[r] against the activation blocks at a. */
INLINE void dot32_four(const uint8_t *const w[], int R, const uint8_t *a, uint64_t wb, quant_sum_fn sum,
                       bool with_min, acc32 acc[])
{
    const __m256i ones = _mm256_set1_epi8(1);
    __m128 da = f16x4(a, ACT_BYTES);
    __m256 d8[DOT32_ROWS], m8[DOT32_ROWS];
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) {
        __m128 d = _mm_mul_ps(f16x4(w[r], wb), da);
        d8[r] = _mm256_set_m128(d, d);
        if (with_min) {
            __m128 m = _mm_mul_ps(f16x4(w[r] + 2, wb), da);
            m8[r] = _mm256_set_m128(m, m);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        __m256i qa = _mm256_loadu_si256((const __m256i *)(a + i * ACT_BYTES + 2));
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            acc[r].b[i] = _mm256_fmadd_ps(pick(d8[r], i), _mm256_cvtepi32_ps(sum(w[r] + i * wb, qa)), acc[r].b[i]);
            if (with_min)
                acc[r].m = _mm256_fmadd_ps(pick(m8[r], i), _mm256_cvtepi32_ps(sum_u8i8(ones, qa)), acc[r].m);
        }
    }
}

/* One block of one row (the blocks after the last group of four). */
INLINE void dot32_one(const uint8_t *w, const uint8_t *a, quant_sum_fn sum, bool with_min, acc32 *acc)
{
    float da = _cvtsh_ss(rd16(a));
    __m256i qa = _mm256_loadu_si256((const __m256i *)(a + 2));
    acc->b[0] = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(rd16(w)) * da), _mm256_cvtepi32_ps(sum(w, qa)), acc->b[0]);
    if (with_min)
        acc->m = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(rd16(w + 2)) * da),
                                 _mm256_cvtepi32_ps(sum_u8i8(_mm256_set1_epi8(1), qa)), acc->m);
}

DOT32_DEFINE(dot32, quant_sum_fn, dot32_four, dot32_one, acc32)

/* Each type's driver, single-row and two-row kernels. Q5_0, Q5_1 and
 * IQ4_NL are compute-bound even from RAM and their two-row loops spill
 * registers, yet they measured 3-26% (Q5_0), 10% (Q5_1) and 3-5% (IQ4_NL)
 * faster than one row at a time (best of 20 runs, in L2 and from RAM, on a
 * 2-vCPU EPYC; an earlier session measured them 3-13% slower). */
DOT32_DRIVER(q8_0, 34, q8_0_sum, false)
DOT32_DRIVER(q4_0, 18, q4_0_sum, false)
DOT32_DRIVER(q4_1, 20, q4_1_sum, true)
DOT32_DRIVER(q5_0, 22, q5_0_sum, false)
DOT32_DRIVER(q5_1, 24, q5_1_sum, true)
DOT32_DRIVER(iq4_nl, 18, iq4_nl_sum, false)

ROWS_KERNELS(kernel_dot_q8_0_avx2, kernel_dot_rows_q8_0_avx2, q8_0_rows)
ROWS_KERNELS(kernel_dot_q4_0_avx2, kernel_dot_rows_q4_0_avx2, q4_0_rows)
ROWS_KERNELS(kernel_dot_q4_1_avx2, kernel_dot_rows_q4_1_avx2, q4_1_rows)
ROWS_KERNELS(kernel_dot_q5_0_avx2, kernel_dot_rows_q5_0_avx2, q5_0_rows)
ROWS_KERNELS(kernel_dot_q5_1_avx2, kernel_dot_rows_q5_1_avx2, q5_1_rows)
ROWS_KERNELS(kernel_dot_iq4_nl_avx2, kernel_dot_rows_iq4_nl_avx2, iq4_nl_rows)

/* ---- the Q8_0 tile ----
 * One row against T tokens (see avx2_util.h), four blocks at a time as in
 * dot32 and each token's sums in dot32's order. Per group, the weight
 * scales and |q| are computed once for all T tokens, and q's signs move
 * onto each token's activations (sum_i8i8 spelled out). */
INLINE void q8_0_four_tile(const uint8_t *w, const uint8_t *const a[], int T, acc32 acc[])
{
    __m128 dw = f16x4(w, 34);
    __m256 d8[TILE_TOK];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        __m128 d = _mm_mul_ps(dw, f16x4(a[t], ACT_BYTES));
        d8[t] = _mm256_set_m128(d, d);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        __m256i q = _mm256_loadu_si256((const __m256i *)(w + i * 34 + 2)), uq = _mm256_sign_epi8(q, q);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            __m256i qa = _mm256_loadu_si256((const __m256i *)(a[t] + i * ACT_BYTES + 2));
            __m256i si = sum_u8i8(uq, _mm256_sign_epi8(qa, q));
            acc[t].b[i] = _mm256_fmadd_ps(pick(d8[t], i), _mm256_cvtepi32_ps(si), acc[t].b[i]);
        }
    }
}

INLINE void q8_0_tile(const uint8_t *w, const uint8_t *a, uint64_t as, int T, float *out, uint64_t os, uint64_t n)
{
    uint64_t nb = n / 32, b = 0;
    acc32 acc[TILE_TOK];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) acc32_zero(&acc[t]);
    for (; b + 4 <= nb; b += 4) {
        const uint8_t *at[TILE_TOK];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) at[t] = a + t * as + b * ACT_BYTES;
        q8_0_four_tile(w + b * 34, at, T, acc);
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        for (uint64_t i = b; i < nb; i++) dot32_one(w + i * 34, a + t * as + i * ACT_BYTES, q8_0_sum, false, &acc[t]);
        out[t * os] = acc32_result(&acc[t]);
    }
}

TILE_KERNEL(kernel_dot_tile_q8_0_avx2, q8_0_tile)
