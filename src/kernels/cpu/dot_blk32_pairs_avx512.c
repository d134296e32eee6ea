/* AVX-512 decode kernels (dot and two-row dot_rows) of the 32-value block
 * types Q4_1, Q5_0, Q5_1 and IQ4_NL, with Q8_0 activations: AVX2's results
 * bit for bit at fewer instructions per block.
 *
 * The AVX2 kernels (dot_blk32_avx2.c) are bound by instruction throughput
 * even from RAM. These compute the integer sums of two blocks in one
 * 512-bit vector (block i in the low half, i + 1 in the high half) with
 * VNNI's vpdpbusd, and AVX-512 masks spread Q5's fifth bits (two blocks'
 * 32-bit qh words make one 64-bit mask). vpdpbusd's int32 lane m sums the
 * products of bytes 4m..4m+3, as AVX2's maddubs + madd do, and every sum
 * is exact, so each block's eight int32 lanes are AVX2's; then both
 * halves go through AVX2's float steps at once, lane for lane (convert,
 * fused multiply-add into the blocks' accumulators, held as pairs in
 * 512-bit registers; the same final sum). */
#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

#include "kernels/cpu/act_quant.h"
#include "kernels/cpu/avx2_util.h"
#include "kernels/cpu/blk32_util.h"
#include "kernels/cpu/dequant.h"

/* 16 bytes at p and at q, each as 32 values 0..15 in element order (low
 * nibbles first): p's in the low 256 bits, q's in the high ones. */
INLINE __m512i nibbles2(const uint8_t *p, const uint8_t *q)
{
    __m256i lo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    __m256i hi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)q));
    __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    v = _mm512_srlv_epi64(v, _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4));
    return _mm512_and_si512(v, _mm512_set1_epi8(0x0F));
}

/* 0x10 in byte j where bit j of the two blocks' fifth bits is set: the u32
 * at p for bytes 0..31, the one at q for bytes 32..63. */
INLINE __m512i fifth_bits2(const uint8_t *p, const uint8_t *q)
{
    uint32_t a, b;
    memcpy(&a, p, 4);
    memcpy(&b, q, 4);
    return _mm512_maskz_mov_epi8((__mmask64)a | (__mmask64)b << 32, _mm512_set1_epi8(0x10));
}

/* Σ u*a per 4 bytes for unsigned u (exact int32) */
INLINE __m512i sum_u8i8_2(__m512i u, __m512i a) { return _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, a); }

/* Σ (u - c)*a per 4 bytes */
INLINE __m512i sum_off_u8i8_2(__m512i u, int c, __m512i a)
{
    return _mm512_sub_epi32(sum_u8i8_2(u, a), sum_u8i8_2(_mm512_set1_epi8((char)c), a));
}

/* Σ q*a per 4 bytes for signed q (|q| <= 127): q's sign moves onto a */
INLINE __m512i sum_i8i8_2(__m512i q, __m512i a)
{
    __m512i signed_a = _mm512_mask_sub_epi8(a, _mm512_movepi8_mask(q), _mm512_setzero_si512(), a);
    return sum_u8i8_2(_mm512_abs_epi8(q), signed_a);
}

/* ---- the quants of each type: blocks at w0 and w1 against qa ---- */

/* Q4_1 (20 bytes: f16 d, f16 m, nibbles); x = d*q + m */
INLINE __m512i q4_1_sum2(const uint8_t *w0, const uint8_t *w1, __m512i qa)
{
    return sum_u8i8_2(nibbles2(w0 + 4, w1 + 4), qa);
}

/* Q5_0 (22 bytes: f16 d, u32 qh, nibbles); x = d*(q-16) */
INLINE __m512i q5_0_sum2(const uint8_t *w0, const uint8_t *w1, __m512i qa)
{
    __m512i q = _mm512_or_si512(nibbles2(w0 + 6, w1 + 6), fifth_bits2(w0 + 2, w1 + 2));
    return sum_off_u8i8_2(q, 16, qa);
}

/* Q5_1 (24 bytes: f16 d, f16 m, u32 qh, nibbles); x = d*q + m */
INLINE __m512i q5_1_sum2(const uint8_t *w0, const uint8_t *w1, __m512i qa)
{
    return sum_u8i8_2(_mm512_or_si512(nibbles2(w0 + 8, w1 + 8), fifth_bits2(w0 + 4, w1 + 4)), qa);
}

/* IQ4_NL (18 bytes: f16 d, nibbles); x = d*values[q] */
INLINE __m512i iq4_nl_sum2(const uint8_t *w0, const uint8_t *w1, __m512i qa)
{
    __m512i tab = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)dequant_iq4nl_values));
    return sum_i8i8_2(_mm512_shuffle_epi8(tab, nibbles2(w0 + 2, w1 + 2)), qa);
}

/* ---- the driver: blk32_util.h's, two blocks per sum ---- */

typedef __m512i (*quant_sum2_fn)(const uint8_t *w0, const uint8_t *w1, __m512i qa);

/* Activation quants of the blocks at a and b, side by side. */
INLINE __m512i act2(const uint8_t *a, const uint8_t *b)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(a + 2))),
                              _mm256_loadu_si256((const __m256i *)(b + 2)), 1);
}

INLINE __m256 lo_ps(__m512i s) { return _mm256_cvtepi32_ps(_mm512_castsi512_si256(s)); }
INLINE __m256 hi_ps(__m512i s) { return _mm256_cvtepi32_ps(_mm512_extracti64x4_epi64(s, 1)); }

/* A row's accumulators: acc32's four block sums as two pairs, b01 holding
 * acc32's b[0] in its low half and b[1] in its high half (b23 likewise),
 * so one 512-bit fused multiply-add does the two 256-bit ones of AVX2 on
 * the same lanes; and the min term as acc32's. */
typedef struct acc32x {
    __m512 b01, b23;
    __m256 m;
} acc32x;

INLINE void acc32x_zero(acc32x *acc)
{
    acc->b01 = acc->b23 = _mm512_setzero_ps();
    acc->m = _mm256_setzero_ps();
}

INLINE float acc32x_result(const acc32x *acc)
{
    acc32 a = {.b = {_mm512_castps512_ps256(acc->b01), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc->b01), 1)),
                     _mm512_castps512_ps256(acc->b23), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc->b23), 1))},
               .m = acc->m};
    return acc32_result(&a);
}

/* Floats i and i + 1 (i: 0 or 2) of the four in d's low lanes, broadcast
 * over the low and the high half (the scales of blocks i and i + 1). */
INLINE __m512 pick_pair(__m512 d, int i)
{
    __m512i idx = i ? _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3)
                    : _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    return _mm512_permutexvar_ps(idx, d);
}

/* Four blocks of the R rows at w[r] against the activation blocks at a,
 * as two pairs. */
INLINE void dot32_four(const uint8_t *const w[], int R, const uint8_t *a, uint64_t wb, quant_sum2_fn sum,
                       bool with_min, acc32x acc[])
{
    __m128 da = f16x4(a, ACT_BYTES);
    __m512 d4[DOT32_ROWS];
    __m256 m8[DOT32_ROWS];
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) {
        d4[r] = _mm512_castps128_ps512(_mm_mul_ps(f16x4(w[r], wb), da));
        if (with_min) {
            __m128 m = _mm_mul_ps(f16x4(w[r] + 2, wb), da);
            m8[r] = _mm256_set_m128(m, m);
        }
    }
#pragma GCC unroll 2
    for (int i = 0; i < 4; i += 2) {
        __m512i qa = act2(a + i * ACT_BYTES, a + (i + 1) * ACT_BYTES);
        __m512i sa = with_min ? sum_u8i8_2(_mm512_set1_epi8(1), qa) : _mm512_setzero_si512();
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            __m512 s = _mm512_cvtepi32_ps(sum(w[r] + i * wb, w[r] + (i + 1) * wb, qa));
            __m512 *b = i ? &acc[r].b23 : &acc[r].b01;
            *b = _mm512_fmadd_ps(pick_pair(d4[r], i), s, *b);
            if (with_min) {
                acc[r].m = _mm256_fmadd_ps(pick(m8[r], i), lo_ps(sa), acc[r].m);
                acc[r].m = _mm256_fmadd_ps(pick(m8[r], i + 1), hi_ps(sa), acc[r].m);
            }
        }
    }
}

/* One block of one row (the blocks after the last group of four): into
 * b01's low half (acc32's b[0]); the pair's high half repeats the block
 * and goes unused. */
INLINE void dot32_one(const uint8_t *w, const uint8_t *a, quant_sum2_fn sum, bool with_min, acc32x *acc)
{
    float da = _cvtsh_ss(rd16(a));
    __m512i qa = act2(a, a);
    __m256 b0 = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(rd16(w)) * da), lo_ps(sum(w, w, qa)),
                                _mm512_castps512_ps256(acc->b01));
    acc->b01 = _mm512_mask_blend_ps(0x00FF, acc->b01, _mm512_castps256_ps512(b0));
    if (with_min)
        acc->m = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(rd16(w + 2)) * da),
                                 lo_ps(sum_u8i8_2(_mm512_set1_epi8(1), qa)), acc->m);
}

DOT32_DEFINE(dot32, quant_sum2_fn, dot32_four, dot32_one, acc32x)

DOT32_DRIVER(q4_1, 20, q4_1_sum2, true)
DOT32_DRIVER(q5_0, 22, q5_0_sum2, false)
DOT32_DRIVER(q5_1, 24, q5_1_sum2, true)
DOT32_DRIVER(iq4_nl, 18, iq4_nl_sum2, false)

ROWS_KERNELS(kernel_dot_q4_1_avx512, kernel_dot_rows_q4_1_avx512, q4_1_rows)
ROWS_KERNELS(kernel_dot_q5_0_avx512, kernel_dot_rows_q5_0_avx512, q5_0_rows)
ROWS_KERNELS(kernel_dot_q5_1_avx512, kernel_dot_rows_q5_1_avx512, q5_1_rows)
ROWS_KERNELS(kernel_dot_iq4_nl_avx512, kernel_dot_rows_iq4_nl_avx512, iq4_nl_rows)
