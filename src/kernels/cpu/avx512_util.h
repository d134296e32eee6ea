/* Helpers shared by the AVX-512 kernels. Include only from files named
 * *_avx512.c (compiled with AVX-512 F/BW/VL/DQ + VNNI, FMA and F16C; the
 * dispatch in kernels_fast.c runs them only on CPUs with all of those).
 *
 * The Q8_0, Q4_0 and Q5_K AVX-512 kernels are tile kernels (prompt
 * batches) that compute the same exact integer sums as the AVX2 ones and
 * then run the AVX2 kernels' float steps (per block: convert 8 int32
 * lanes, fused multiply-add into 8-lane accumulators; the same final
 * horizontal sum): their results are the AVX2 kernels' bit for bit, so a
 * kernel_desc can pair them with the AVX2 dot / dot_rows. Q4_K and Q6_K
 * have their own dot and tile with weight rows in the vector lanes
 * (lanes_avx512.h). */
#ifndef STRATA_KERNELS_CPU_AVX512_UTIL_H
#define STRATA_KERNELS_CPU_AVX512_UTIL_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

/* INLINE, hsum_ps (the horizontal sum the AVX2 kernels end with), rd16,
 * ld32 and ld_f16: the AVX-512 flags include AVX2's */
#include "kernels/cpu/avx2_util.h"

INLINE float ldf32_512(const uint8_t *p)
{
    float v;
    memcpy(&v, p, 4);
    return v;
}

/* ---- tile kernels ----
 * A tile driver computes out[t * os] for one weight row of n elements at w
 * against T (1 .. G <= TILE512_TOK) prepared activation rows, token t at
 * a + t * as, unpacking each weight block once for all T tokens:
 *   void tile(const uint8_t *w, const uint8_t *a, uint64_t as, int T,
 *             float *out, uint64_t os, uint64_t n);
 * TILE512_KERNEL defines a kernel_dot_tile_fn on it: token groups of G
 * (4 or 8: what the accumulators leave registers for) outside, rows inside (a group's activations stay in L1 while
 * the caller's few rows go by from L2), the remaining 1..G-1 tokens as
 * groups of 4, 2 and 1 (T a constant in every inlined copy). */
#define TILE512_TOK 8

#define TILE512_GROUP(TILE, G)                                                                                    \
    for (; t_ + (G) <= n_tok; t_ += (G))                                                                          \
        for (uint64_t r_ = 0; r_ < n_rows; r_++)                                                                  \
            TILE(w_ + r_ * row_bytes, a_ + t_ * act_row_bytes, act_row_bytes, (G), out + t_ * out_stride + r_,    \
                 out_stride, n);

#define TILE512_KERNEL(DOT_TILE, TILE, G)                                                                         \
    void DOT_TILE(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act, uint64_t act_row_bytes,    \
                  uint64_t n_tok, uint64_t n, float *out, uint64_t out_stride)                                    \
    {                                                                                                             \
        const uint8_t *w_ = w, *a_ = act;                                                                         \
        uint64_t t_ = 0;                                                                                          \
        TILE512_GROUP(TILE, (G))                                                                                  \
        if ((G) > 4) TILE512_GROUP(TILE, 4)                                                                       \
        TILE512_GROUP(TILE, 2)                                                                                    \
        TILE512_GROUP(TILE, 1)                                                                                    \
    }

#endif
