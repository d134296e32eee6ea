/* Helpers of the K-quants with sixteen sub-blocks of 16 (Q6_K, Q3_K,
 * Q2_K) shared by their AVX2 kernels (dot_q6_k_avx2.c) and AVX-512 ones
 * (dot_k16_avx512.c); include after avx2_util.h, from files compiled with
 * AVX2 at least. */
#ifndef STRATA_KERNELS_CPU_K16_UTIL_H
#define STRATA_KERNELS_CPU_K16_UTIL_H

#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/act_quant.h"

/* The f32 scale of a Q8_K activation block. */
INLINE float da_of(const uint8_t *a)
{
    float d;
    memcpy(&d, a, 4);
    return d;
}

INLINE __m256i ld256(const uint8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* int16 scales of sub-blocks 8h .. 8h+7, the same in both lanes */
INLINE __m256i half_scales(__m256i s16, int h)
{
    return h ? _mm256_permute2x128_si256(s16, s16, 0x11) : _mm256_permute2x128_si256(s16, s16, 0x00);
}

/* Σ_j c_j * bsums[j] for sixteen int16 c_j, as 8 int32 */
INLINE __m256i bsum_dot(__m256i c16, const uint8_t *a)
{
    return _mm256_madd_epi16(ld256(a + Q8K_OFF_BSUMS), c16);
}

/* Q2_K's sixteen scales and mins (at p, 16 bytes: sub-block j's scale in
 * the low nibble of byte j, its min in the high one) as int16. */
INLINE void q2_k_scales_mins(const uint8_t *p, __m256i *s16, __m256i *m16)
{
    __m128i sc = _mm_loadu_si128((const __m128i *)p);
    const __m128i low4 = _mm_set1_epi8(0x0F);
    *s16 = _mm256_cvtepu8_epi16(_mm_and_si128(sc, low4));
    *m16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc, 4), low4));
}

/* A Q2_K block's integer sum (its scales applied) and its mins into acc
 * and acc_m: d and dmin (the f16s at w + 80, w + 82) times the
 * activation's scale. */
INLINE void q2_k_accumulate(const uint8_t *w, const uint8_t *a, __m256i sum, __m256i m16, __m256 *acc,
                            __m256 *acc_m)
{
    float da = da_of(a);
    *acc = _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(w + 80) * da), _mm256_cvtepi32_ps(sum), *acc);
    *acc_m = _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(w + 82) * da), _mm256_cvtepi32_ps(bsum_dot(m16, a)), *acc_m);
}

/* Q3_K's sixteen scales (at p, 12 bytes) as int16 s - 32. Scale i (6
 * bits, stored + 32): low four bits in the low (i < 8) or high nibble of
 * byte i % 8, top two at bits 2*(i/4) of byte 8 + i % 4; word arithmetic
 * decodes four at a time. */
INLINE __m256i q3_k_scales(const uint8_t *p)
{
    uint32_t a0, a1, a2;
    memcpy(&a0, p, 4);
    memcpy(&a1, p + 4, 4);
    memcpy(&a2, p + 8, 4);
    const uint32_t m4 = 0x0f0f0f0f, m2 = 0x03030303;
    uint64_t s0 = (a0 & m4) | (a2 & m2) << 4, s1 = (a1 & m4) | ((a2 >> 2) & m2) << 4;
    uint64_t s2 = ((a0 >> 4) & m4) | ((a2 >> 4) & m2) << 4, s3 = ((a1 >> 4) & m4) | ((a2 >> 6) & m2) << 4;
    /* built in general registers: a vector load of four separate stores
     * would stall on store forwarding */
    __m128i v = _mm_set_epi64x((long long)(s3 << 32 | s2), (long long)(s1 << 32 | s0));
    return _mm256_cvtepi8_epi16(_mm_sub_epi8(v, _mm_set1_epi8(32)));
}

/* The Q3_K and Q2_K rows drivers (a rows_driver_fn, see avx2_util.h) run
 * up to K16_ROWS rows on the including file's block function, WB bytes per
 * block: BLOCK(w, a, acc) returns the accumulator with block w against
 * activation block a added (Q3_K); BLOCK_MINS(w, a, &acc, &acc_m) adds the
 * scales' part and the mins' part apart (Q2_K: the result is their
 * difference). Block b of the rows goes one row after the other: rows
 * side by side sharing each activation load measured 1-10% slower than
 * this (more live registers; the loads are L1 hits either way). Each row
 * keeps its own accumulator: its result does not depend on R. */
#define K16_ROWS 2

#define K16_ROWS_DRIVER(NAME, BLOCK, WB)                                                                          \
    INLINE void NAME(const uint8_t *const w[], float *const out[], int R, const uint8_t *a, uint64_t n)          \
    {                                                                                                            \
        __m256 acc[K16_ROWS];                                                                                    \
        _Pragma("GCC unroll 2") for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();                        \
        for (uint64_t b = 0; b < n / 256; b++) {                                                                 \
            _Pragma("GCC unroll 2") for (int r = 0; r < R; r++)                                                  \
            {                                                                                                    \
                const uint8_t *wr = w[r] + (WB) * b;                                                             \
                kernel_prefetch(wr, (WB));                                                                       \
                acc[r] = BLOCK(wr, a + Q8K_BYTES * b, acc[r]);                                                   \
            }                                                                                                    \
        }                                                                                                        \
        _Pragma("GCC unroll 2") for (int r = 0; r < R; r++) * out[r] = hsum_ps(acc[r]);                          \
    }

#define K16_ROWS_DRIVER_MINS(NAME, BLOCK_MINS, WB)                                                                \
    INLINE void NAME(const uint8_t *const w[], float *const out[], int R, const uint8_t *a, uint64_t n)          \
    {                                                                                                            \
        __m256 acc[K16_ROWS], acc_m[K16_ROWS];                                                                   \
        _Pragma("GCC unroll 2") for (int r = 0; r < R; r++) acc[r] = acc_m[r] = _mm256_setzero_ps();             \
        for (uint64_t b = 0; b < n / 256; b++) {                                                                 \
            _Pragma("GCC unroll 2") for (int r = 0; r < R; r++)                                                  \
            {                                                                                                    \
                const uint8_t *wr = w[r] + (WB) * b;                                                             \
                kernel_prefetch(wr, (WB));                                                                       \
                BLOCK_MINS(wr, a + Q8K_BYTES * b, &acc[r], &acc_m[r]);                                           \
            }                                                                                                    \
        }                                                                                                        \
        _Pragma("GCC unroll 2") for (int r = 0; r < R; r++) * out[r] = hsum_ps(_mm256_sub_ps(acc[r], acc_m[r])); \
    }

#endif
