/* Small helpers shared by the AVX2 kernels (and, through avx512_util.h,
 * the AVX-512 ones). Include only from files named *_avx2.c or *_avx512.c
 * (the only ones compiled with AVX2, FMA and F16C enabled). */
#ifndef STRATA_KERNELS_CPU_AVX2_UTIL_H
#define STRATA_KERNELS_CPU_AVX2_UTIL_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))

/* Sum of the 8 floats of v. */
INLINE float hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* e^x, 8 lanes: x = n ln2 + r with |r| <= ln2/2 (ln2 split in two so that
 * n ln2 is exact), e^r from its Taylor series to r^6 (relative error below
 * 2e-7 on that range), times 2^n built in the exponent bits. Arguments are
 * clamped to [-87, 88] (the normal float range); below -87 the result is 0. */
INLINE __m256 exp_ps(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(-87.0f);
    __m256 underflow = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(underflow, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

/* Unaligned little-endian loads from packed blocks. */
INLINE uint16_t rd16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

INLINE uint32_t ld32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* An IEEE half at p, as float (F16C). */
INLINE float ld_f16(const uint8_t *p) { return _cvtsh_ss(rd16(p)); }

/* ---- multi-row kernels ----
 * A driver computes *out[r] for R (1 or 2) weight rows of n elements
 * starting at w[r] against one prepared activation row, sharing the work
 * on the activations between the rows:
 *   void driver(const uint8_t *const w[], float *const out[], int R,
 *               const uint8_t *act, uint64_t n);
 * ROW_KERNEL defines a kernel_dot_fn DOT on a driver, ROWS_KERNELS that and
 * a kernel_dot_rows_fn DOT_ROWS, which pairs row r with row r + n_rows / 2
 * (an odd last row goes alone). Rows half the matrix apart, not
 * neighbours: each of the two weight streams then reads consecutive rows in
 * address order as a single-row kernel does, so the prefetch hints (which
 * run past a row's end into the stream's next row) and the hardware
 * prefetchers work as for one row, and two streams keep more reads in
 * flight. Neighbouring rows side by side measured slower from RAM than one
 * row at a time; pairs half apart, 6-18% faster (bench/bench_kernels.c).
 * Macros rather than functions taking the driver: GCC drops the prefetch
 * hints of code it inlines through a function pointer. */
#define ROW_KERNEL(DOT, DRIVER)                                                                                   \
    void DOT(const void *w_row, const void *act, uint64_t n, float *out)                                         \
    {                                                                                                             \
        const uint8_t *w_[1] = {w_row};                                                                           \
        float *o_[1] = {out};                                                                                     \
        DRIVER(w_, o_, 1, act, n);                                                                                \
    }

#define ROWS_KERNELS(DOT, DOT_ROWS, DRIVER)                                                                      \
    ROW_KERNEL(DOT, DRIVER)                                                                                       \
    void DOT_ROWS(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act, uint64_t n, float *out)    \
    {                                                                                                             \
        const uint8_t *p_ = w;                                                                                    \
        uint64_t half_ = n_rows / 2;                                                                              \
        for (uint64_t r_ = 0; r_ < half_; r_++) {                                                                 \
            const uint8_t *w_[2] = {p_ + r_ * row_bytes, p_ + (r_ + half_) * row_bytes};                          \
            float *o_[2] = {out + r_, out + r_ + half_};                                                          \
            DRIVER(w_, o_, 2, act, n);                                                                            \
        }                                                                                                         \
        if (n_rows % 2) DOT(p_ + (n_rows - 1) * row_bytes, act, n, out + n_rows - 1);                             \
    }

/* ---- tile kernels ----
 * A tile driver computes out[t * os] for one weight row of n elements at w
 * against T (1 .. TILE_TOK) prepared activation rows, token t at a + t * as,
 * unpacking each weight block once for all T tokens:
 *   void tile(const uint8_t *w, const uint8_t *a, uint64_t as, int T,
 *             float *out, uint64_t os, uint64_t n);
 * Each token keeps its own accumulators, summed in the order of the
 * single-row kernel: results are `dot`'s bit for bit. TILE_KERNEL defines a
 * kernel_dot_tile_fn on a driver: token groups of TILE_TOK outside, rows
 * inside, so a group's activations stay in L1 while the rows (which the
 * caller keeps few enough for L1/L2) go by; the last 1..3 tokens go as a
 * group of 2 and / or 1 (T a constant in every inlined copy). */
#define TILE_TOK 4

#define TILE_KERNEL(DOT_TILE, TILE)                                                                               \
    void DOT_TILE(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act, uint64_t act_row_bytes,    \
                  uint64_t n_tok, uint64_t n, float *out, uint64_t out_stride)                                    \
    {                                                                                                             \
        const uint8_t *w_ = w, *a_ = act;                                                                         \
        uint64_t t_ = 0;                                                                                          \
        for (; t_ + TILE_TOK <= n_tok; t_ += TILE_TOK)                                                            \
            for (uint64_t r_ = 0; r_ < n_rows; r_++)                                                              \
                TILE(w_ + r_ * row_bytes, a_ + t_ * act_row_bytes, act_row_bytes, TILE_TOK,                       \
                     out + t_ * out_stride + r_, out_stride, n);                                                  \
        if (n_tok - t_ >= 2) {                                                                                    \
            for (uint64_t r_ = 0; r_ < n_rows; r_++)                                                              \
                TILE(w_ + r_ * row_bytes, a_ + t_ * act_row_bytes, act_row_bytes, 2, out + t_ * out_stride + r_, \
                     out_stride, n);                                                                              \
            t_ += 2;                                                                                              \
        }                                                                                                         \
        if (n_tok > t_)                                                                                           \
            for (uint64_t r_ = 0; r_ < n_rows; r_++)                                                              \
                TILE(w_ + r_ * row_bytes, a_ + t_ * act_row_bytes, act_row_bytes, 1, out + t_ * out_stride + r_, \
                     out_stride, n);                                                                              \
    }

#endif
