/* Weight rows in the vector lanes: what the Q4_K and Q6_K AVX-512 kernels
 * (tile_lanes_avx512.c for token batches, dot_q4_k_avx512.c and
 * dot_q6_k_avx512.c for one token) share. Include only from *_avx512.c.
 *
 * Lane r of a vector belongs to weight row r of a group of 16. Per block
 * and token, every kernel first makes two exact integers per row, then
 * runs the same float steps on them (the *_lane_step functions below), so
 * a row and a token get the same bits from every kernel, whatever the tile
 * size (batch == token by token):
 *   Q4_K: is = Σ_j sc_j Σ q*a, ms = Σ_j m_j Σ a  (8 sub-blocks of 32)
 *         acc += da * (d*float(is) - dmin*float(ms))
 *   Q6_K: is = Σ_j sc_j Σ u*a (u = q + 32), ms = Σ_j sc_j Σ a  (16 of 16)
 *         acc += (d*da) * float(is - 32*ms)
 * A single row (`dot`) makes the same integers and runs the same steps on
 * scalars (*_row_step), so `dot`, `dot_rows` and the tile agree bit for
 * bit, and the tests check each against the others. The order of these
 * float steps differs from the AVX2 kernels' (eight lanes per row, one
 * horizontal sum at the end): results agree with them within float
 * rounding, not bit for bit. */
#ifndef STRATA_KERNELS_CPU_LANES_AVX512_H
#define STRATA_KERNELS_CPU_LANES_AVX512_H

#include "kernels/cpu/act_quant.h"
#include "kernels/cpu/avx512_util.h"

#define LANES 16

/* Lane r: the byte offset of row r; lanes outside `valid` get row 0 (they
 * compute values that are never stored). */
INLINE __m512i lane_offsets(uint64_t row_bytes, __mmask16 valid)
{
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return _mm512_maskz_mullo_epi32(valid, iota, _mm512_set1_epi32((int)row_bytes));
}

/* rp[r] = row r of the group at w, or its row 0 past nr rows. */
INLINE void lane_rows(const void *w, uint64_t row_bytes, uint64_t nr, const uint8_t *rp[LANES])
{
    for (uint64_t r = 0; r < LANES; r++) rp[r] = (const uint8_t *)w + (r < nr ? r : 0) * row_bytes;
}

/* Prefetches the lines of [p, p + len) into L2. The tile kernels read 16
 * rows a chunk at a time: sixteen strided streams that the hardware
 * prefetchers do not follow far enough, so they ask for the next chunk
 * while using this one. */
INLINE void lane_prefetch(const uint8_t *p, uint64_t len)
{
    for (uint64_t o = 0; o < len; o += 64) _mm_prefetch((const char *)p + o, _MM_HINT_T1);
}

/* The 4 bytes at p + offset of each lane's row. */
INLINE __m512i gather4(__m512i offs, const uint8_t *p) { return _mm512_i32gather_epi32(offs, (const void *)p, 1); }

/* (v >> s) & mask per 32-bit lane. */
INLINE __m512i bits(__m512i v, int s, int mask)
{
    return _mm512_and_si512(_mm512_srli_epi32(v, (unsigned)s), _mm512_set1_epi32(mask));
}

/* The f16 in the low (hi = 0) or high half of each 32-bit lane, as float. */
INLINE __m512 half_to_float(__m512i v, int hi)
{
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(hi ? _mm512_srli_epi32(v, 16) : v));
}

/* The 4 bytes at p in every lane (a signed vpdpbusd / vpdpwssd operand). */
INLINE __m512i act4(const uint8_t *p) { return _mm512_set1_epi32((int)ld32(p)); }

/* ---- Q4_K: 144-byte blocks (f16 d, f16 dmin, scales[12], qs[128]) ---- */

typedef struct q4k_lane_scales {
    __m512i sc[8]; /* scale of sub-block j, int32 */
    __m512i mp[4]; /* (min 2i, min 2i+1) as an int16 pair */
    __m512 d, dmin;
} q4k_lane_scales;

/* The scales of the block at b (row 0's; the others at b + lane offset).
 * The bit layout is dot_q4_k_avx512.c's kq_scales_mins, per lane. */
INLINE void q4k_lane_scales_get(const uint8_t *b, __m512i offs, q4k_lane_scales *p)
{
    __m512i dd = gather4(offs, b), s0 = gather4(offs, b + 4), s1 = gather4(offs, b + 8), s2 = gather4(offs, b + 12);
    p->d = half_to_float(dd, 0);
    p->dmin = half_to_float(dd, 1);
    __m512i m[8];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        p->sc[j] = bits(s0, 8 * j, 0x3f);
        m[j] = bits(s1, 8 * j, 0x3f);
        p->sc[j + 4] = _mm512_or_si512(bits(s2, 8 * j, 0x0f), _mm512_slli_epi32(bits(s0, 8 * j + 6, 3), 4));
        m[j + 4] = _mm512_or_si512(bits(s2, 8 * j + 4, 0x0f), _mm512_slli_epi32(bits(s1, 8 * j + 6, 3), 4));
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) p->mp[i] = _mm512_or_si512(m[2 * i], _mm512_slli_epi32(m[2 * i + 1], 16));
}

/* ms = Σ_j m_j Σ a over the Q8_K block at a: its sums of 16 added in pairs
 * (|Σ| <= 32*127 fits int16), paired as the mins are, four vpdpwssd. */
INLINE __m512i q4k_lane_mins(const q4k_lane_scales *p, const uint8_t *a)
{
    __m256i b = _mm256_loadu_si256((const __m256i *)(a + Q8K_OFF_BSUMS)); /* 16 sums of 16 */
    __m256i s = _mm256_madd_epi16(b, _mm256_set1_epi16(1));               /* 8 sums of 32 */
    uint32_t pr[8]; /* per 128-bit half: s0 s1 s2 s3 (twice) as int16 */
    _mm256_storeu_si256((__m256i *)pr, _mm256_packs_epi32(s, s));
    const int at[4] = {0, 1, 4, 5};
    __m512i ms = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) ms = _mm512_dpwssd_epi32(ms, p->mp[i], _mm512_set1_epi32((int)pr[at[i]]));
    return ms;
}

INLINE __m512 q4k_lane_step(const q4k_lane_scales *p, __m512i is, __m512i ms, const uint8_t *a, __m512 acc)
{
    __m512 f = _mm512_fmsub_ps(p->d, _mm512_cvtepi32_ps(is), _mm512_mul_ps(p->dmin, _mm512_cvtepi32_ps(ms)));
    return _mm512_fmadd_ps(f, _mm512_set1_ps(ldf32_512(a)), acc);
}

/* ---- Q6_K: 210-byte blocks (ql[128], qh[64], i8 scales[16], f16 d) ---- */

typedef struct q6k_lane_scales {
    __m512i sc[16]; /* scale of sub-block j (16 values), int32 */
    __m512i sp[8];  /* (scale 2i, scale 2i+1) as an int16 pair */
    __m512 d;
} q6k_lane_scales;

INLINE void q6k_lane_scales_get(const uint8_t *b, __m512i offs, q6k_lane_scales *p)
{
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        __m512i v = gather4(offs, b + 192 + 4 * i);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) /* sign-extend byte k */
            p->sc[4 * i + k] = _mm512_srai_epi32(_mm512_slli_epi32(v, (unsigned)(24 - 8 * k)), 24);
    }
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        p->sp[i] = _mm512_or_si512(_mm512_and_si512(p->sc[2 * i], _mm512_set1_epi32(0xffff)),
                                   _mm512_slli_epi32(p->sc[2 * i + 1], 16));
    p->d = half_to_float(gather4(offs, b + 206), 1); /* bytes 206..209: the last two scales, d */
}

/* ms = Σ_j sc_j Σ a: the Q8_K sums of 16 are int16 pairs as stored. */
INLINE __m512i q6k_lane_mins(const q6k_lane_scales *p, const uint8_t *a)
{
    __m512i ms = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) ms = _mm512_dpwssd_epi32(ms, p->sp[i], act4(a + Q8K_OFF_BSUMS + 4 * i));
    return ms;
}

/* |is| <= 16 * 128 * 16*63*127 and 32*|ms| <= 32 * 16*128*2032: int32. */
INLINE __m512 q6k_lane_step(const q6k_lane_scales *p, __m512i is, __m512i ms, const uint8_t *a, __m512 acc)
{
    __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(is, _mm512_slli_epi32(ms, 5)));
    return _mm512_fmadd_ps(_mm512_mul_ps(p->d, _mm512_set1_ps(ldf32_512(a))), f, acc);
}

/* The sum of the 8 int32 of v (exact). */
INLINE int32_t hsum_i32x8(__m256i v)
{
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1));
    return _mm_cvtsi128_si32(h);
}

/* ---- one row and one token (`dot`): the same steps on scalars ----
 * Each *_lane_step above for a single lane: the same operations, so the
 * same roundings and bits. */
INLINE float cvt_i32(int32_t v) { return _mm_cvtss_f32(_mm_cvtsi32_ss(_mm_setzero_ps(), v)); }


INLINE float q4k_row_step(float d, float dmin, int32_t is, int32_t ms, float da, float acc)
{
    __m128 f = _mm_fmsub_ss(_mm_set_ss(d), _mm_set_ss(cvt_i32(is)), _mm_mul_ss(_mm_set_ss(dmin), _mm_set_ss(cvt_i32(ms))));
    return _mm_cvtss_f32(_mm_fmadd_ss(f, _mm_set_ss(da), _mm_set_ss(acc)));
}

/* Q6_K: tot = is - 32*ms (d: the row's, da: the activation block's). */
INLINE float scaled_row_step(float d, float da, int32_t tot, float acc)
{
    __m128 dd = _mm_mul_ss(_mm_set_ss(d), _mm_set_ss(da));
    return _mm_cvtss_f32(_mm_fmadd_ss(dd, _mm_set_ss(cvt_i32(tot)), _mm_set_ss(acc)));
}

#endif
