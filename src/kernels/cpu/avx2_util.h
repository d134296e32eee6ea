/* Small helpers shared by the AVX2 kernels. Include only from files named
 * *_avx2.c (the only ones compiled with AVX2, FMA and F16C enabled). */
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

#endif
