/* AVX-512 dot products of 16-bit float weight rows (F16, BF16) with float
 * activations, one row (dot) or two at a time (dot_rows: the activations
 * loaded once for both rows, two weight streams read at once). Per row:
 * four 16-lane accumulators over 64 elements per step, the rest 16 at a
 * time with masked loads (no scalar tail), one final reduction. A row's
 * sums run in the same order in dot and dot_rows, so the two agree bit for
 * bit; against the AVX2 kernels (8 lanes) only the float rounding of the
 * summation order differs (the tests hold both to the reference's float
 * bound).
 *
 * BF16 with AVX512_BF16 (dot_bf16_*_avx512bf16, chosen where the CPU has
 * it): vdpbf16ps multiplies bf16 pairs into float lanes, so the
 * activations are bf16 too (kernel_prepare_act rounds them to nearest
 * even: llama.cpp's scheme for BF16 weights); products are exact in float
 * and summed in float. One load and one instruction per 32 weights,
 * against two converts, two shifts and two FMAs above. */
#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

#include "kernels/cpu/act_quant.h"
#include "kernels/cpu/avx512_util.h"

/* 16 weights at p (16-bit floats) -> 16 floats; m: the lanes to load
 * (others 0). */
INLINE __m512 f16x16(const uint8_t *p, __mmask16 m)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

/* bfloat16 is the upper half of a float's bit pattern. */
INLINE __m512 bf16x16(const uint8_t *p, __mmask16 m)
{
    __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

INLINE __m512 load16(const uint8_t *p, __mmask16 m, bool bf16) { return bf16 ? bf16x16(p, m) : f16x16(p, m); }

/* Rows w[0..R-1] (R = 1 or 2, a constant in every inlined copy) against x. */
INLINE void dot_16bit(const uint8_t *const w[], int R, const float *x, uint64_t n, bool bf16, float *out)
{
    __m512 acc[2][4];
    #pragma GCC unroll 2
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int k = 0; k < 4; k++) acc[r][k] = _mm512_setzero_ps();
    uint64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        #pragma GCC unroll 2
        for (int r = 0; r < R; r++) kernel_prefetch(w[r] + 2 * i, 128);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            __m512 xv = _mm512_loadu_ps(x + i + 16 * k);
            #pragma GCC unroll 2
            for (int r = 0; r < R; r++)
                acc[r][k] = _mm512_fmadd_ps(load16(w[r] + 2 * (i + 16 * k), 0xFFFF, bf16), xv, acc[r][k]);
        }
    }
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
        #pragma GCC unroll 2
        for (int r = 0; r < R; r++) acc[r][0] = _mm512_fmadd_ps(load16(w[r] + 2 * i, m, bf16), xv, acc[r][0]);
    }
    #pragma GCC unroll 2
    for (int r = 0; r < R; r++)
        out[r] = _mm512_reduce_add_ps(
            _mm512_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]), _mm512_add_ps(acc[r][2], acc[r][3])));
}

/* dot_rows on a row kernel: pairs of rows, then the odd one. */
#define FLOAT_ROWS(DOT, DOT_ROWS, BF16)                                                                        \
    void DOT(const void *w_row, const void *act, uint64_t n, float *out)                                       \
    {                                                                                                          \
        const uint8_t *w[1] = {w_row};                                                                         \
        dot_16bit(w, 1, act, n, (BF16), out);                                                                  \
    }                                                                                                          \
    void DOT_ROWS(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act, uint64_t n, float *out) \
    {                                                                                                          \
        const uint8_t *p = w;                                                                                  \
        uint64_t r = 0;                                                                                        \
        for (; r + 2 <= n_rows; r += 2) {                                                                      \
            const uint8_t *two[2] = {p + r * row_bytes, p + (r + 1) * row_bytes};                              \
            dot_16bit(two, 2, act, n, (BF16), out + r);                                                        \
        }                                                                                                      \
        if (r < n_rows) DOT(p + r * row_bytes, act, n, out + r);                                               \
    }

FLOAT_ROWS(kernel_dot_f16_avx512, kernel_dot_rows_f16_avx512, false)
FLOAT_ROWS(kernel_dot_bf16_avx512, kernel_dot_rows_bf16_avx512, true)
