/* The driver of the 32-value block types' decode kernels (Q8_0, Q4_0,
 * Q4_1, Q5_0, Q5_1, IQ4_NL against Q8_0 activations), shared by the AVX2
 * kernels (dot_blk32_avx2.c) and the AVX-512 ones that give their bits
 * (dot_blk32_pairs_avx512.c); include after avx2_util.h, from files
 * compiled with AVX2 at least.
 *
 * dot32 runs R (1 or 2) rows side by side (a rows_driver_fn, see
 * avx2_util.h): the activation quant vectors and f16 scales of each group
 * of four blocks are loaded and converted once for both. A file supplies
 * the work on a group of four blocks (FOUR) and on one block (ONE) with its
 * per-type sums, and DOT32_DEFINE makes dot32 from them. */
#ifndef STRATA_KERNELS_CPU_BLK32_UTIL_H
#define STRATA_KERNELS_CPU_BLK32_UTIL_H

#include <immintrin.h>
#include <stdint.h>

#define ACT_BYTES 34 /* Q8_0 block: f16 d, i8 q[32] */
#define DOT32_ROWS 2

/* f16 values at p, p + stride, p + 2*stride, p + 3*stride as 4 floats
 * (word inserts take fewer instructions than assembling the four in a
 * general register) */
INLINE __m128 f16x4(const uint8_t *p, uint64_t stride)
{
    __m128i v = _mm_cvtsi32_si128(rd16(p));
    v = _mm_insert_epi16(v, rd16(p + stride), 1);
    v = _mm_insert_epi16(v, rd16(p + 2 * stride), 2);
    v = _mm_insert_epi16(v, rd16(p + 3 * stride), 3);
    return _mm_cvtph_ps(v);
}

/* Broadcast float i of both lanes of v (which hold the same four). */
INLINE __m256 pick(__m256 v, int i) { return _mm256_permutevar_ps(v, _mm256_set1_epi32(i)); }

/* Accumulators of one row: one per block of a group of four (their sum is
 * the row's result), and the min term. */
typedef struct acc32 {
    __m256 b[4], m;
} acc32;

/* A row's accumulators: zeroed, and summed into its result (the same
 * order for every driver). */
INLINE void acc32_zero(acc32 *acc)
{
    for (int i = 0; i < 4; i++) acc->b[i] = _mm256_setzero_ps();
    acc->m = _mm256_setzero_ps();
}

INLINE float acc32_result(const acc32 *acc)
{
    __m256 s = _mm256_add_ps(_mm256_add_ps(acc->b[0], acc->b[1]), _mm256_add_ps(acc->b[2], acc->b[3]));
    return hsum_ps(_mm256_add_ps(s, acc->m));
}

/* DOT32(w, out, R, a, nb, wb, sum, with_min): *out[r] = Σ over nb blocks of
 * d_w*d_a*Σ q*a (+ m*d_a*Σ a for types with a min: their f16 m follows d)
 * for the R rows starting at w[r]. Four blocks go together (FOUR), the rest
 * one by one (ONE); each row's float sums run in the same order whatever R.
 * ACC is the accumulator type, with ACC_zero and ACC_result (acc32's, or
 * one holding the same sums in other registers).
 * A macro rather than a function taking FOUR and ONE: GCC drops the
 * prefetch hints of code it inlines through a function pointer. */
#define DOT32_DEFINE(DOT32, SUM_FN, FOUR, ONE, ACC)                                                               \
    INLINE void DOT32(const uint8_t *const w[], float *const out[], int R, const uint8_t *a, uint64_t nb,         \
                      uint64_t wb, SUM_FN sum, bool with_min)                                                    \
    {                                                                                                            \
        ACC acc[DOT32_ROWS];                                                                                     \
        const uint8_t *wr[DOT32_ROWS];                                                                           \
        _Pragma("GCC unroll 2") for (int r = 0; r < R; r++)                                                      \
        {                                                                                                        \
            ACC##_zero(&acc[r]);                                                                                 \
            wr[r] = w[r];                                                                                        \
        }                                                                                                        \
        uint64_t b = 0;                                                                                          \
        for (; b + 4 <= nb; b += 4) {                                                                            \
            _Pragma("GCC unroll 2") for (int r = 0; r < R; r++) kernel_prefetch(wr[r], 4 * wb);                  \
            FOUR(wr, R, a + b * ACT_BYTES, wb, sum, with_min, acc);                                              \
            _Pragma("GCC unroll 2") for (int r = 0; r < R; r++) wr[r] += 4 * wb;                                 \
        }                                                                                                        \
        _Pragma("GCC unroll 2") for (int r = 0; r < R; r++)                                                      \
        {                                                                                                        \
            for (uint64_t t = b; t < nb; t++, wr[r] += wb) ONE(wr[r], a + t * ACT_BYTES, sum, with_min, &acc[r]); \
            *out[r] = ACC##_result(&acc[r]);                                                                     \
        }                                                                                                        \
    }

/* NAME_rows: the rows driver of a type on dot32 (WB bytes per block). */
#define DOT32_DRIVER(NAME, WB, SUM, WITH_MIN)                                                                      \
    INLINE void NAME##_rows(const uint8_t *const w[], float *const out[], int R, const uint8_t *a, uint64_t n)  \
    {                                                                                                            \
        dot32(w, out, R, a, n / 32, WB, SUM, WITH_MIN);                                                         \
    }

#endif
