/* AVX2 dot products of Q4_K and Q5_K weight rows with Q8_K activations.
 *
 * Both have eight sub-blocks of 32 with a 6-bit scale sc_j and min m_j and
 * x = d*sc_j*q - dmin*m_j (q unsigned). Against activations d_a*a:
 *   Σ x*a_x = d_a * (d * Σ_j sc_j Σ q*a  -  dmin * Σ_j m_j Σ a)
 * where Σ a over sub-block j is bsums[2j] + bsums[2j+1] of the Q8_K block:
 * the mins cost one small madd per super-block instead of work per value.
 * Integer sums are exact: |Σ_j sc_j Σ q*a| <= 8*63*32*31*127. */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/act_quant.h"
#include "kernels/cpu/avx2_util.h"


/* The 12 packed scale bytes -> eight 6-bit scales and mins, one per byte.
 * Byte j (< 4) of the first word holds scale j in its low six bits, of the
 * second word min j; scales / mins 4..7 take their low four bits from the
 * nibbles of the third word and their top two from bits 6..7 of bytes 0..3
 * / 4..7. Word arithmetic handles four at a time. */
INLINE void kq_scales(const uint8_t *p, uint64_t *sc, uint64_t *mn)
{
    uint32_t u0 = ld32(p), u1 = ld32(p + 4), u2 = ld32(p + 8);
    uint32_t s_lo = u0 & 0x3f3f3f3f, m_lo = u1 & 0x3f3f3f3f;
    uint32_t s_hi = (u2 & 0x0f0f0f0f) | ((u0 >> 6) & 0x03030303) << 4;
    uint32_t m_hi = ((u2 >> 4) & 0x0f0f0f0f) | ((u1 >> 6) & 0x03030303) << 4;
    *sc = (uint64_t)s_hi << 32 | s_lo;
    *mn = (uint64_t)m_hi << 32 | m_lo;
}

/* Eight bytes -> eight int16 in a 128-bit vector. */
INLINE __m128i u8x8_to_i16(uint64_t v) { return _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)v)); }

/* Broadcast int16 element j of both lanes (each lane holds the same 8). */
INLINE __m256i pick16(__m256i v, int j)
{
    return _mm256_shuffle_epi8(v, _mm256_set1_epi16((short)(2 * j | (2 * j + 1) << 8)));
}

/* dmin * d_a * Σ_j m_j (bsums[2j] + bsums[2j+1]) accumulated in acc. */
INLINE __m128 mins_term(uint64_t mn, const uint8_t *a, float dmin_da, __m128 acc)
{
    __m128i m = u8x8_to_i16(mn);
    __m128i b0 = _mm_loadu_si128((const __m128i *)(a + Q8K_OFF_BSUMS));
    __m128i b1 = _mm_loadu_si128((const __m128i *)(a + Q8K_OFF_BSUMS + 16));
    __m128i s = _mm_madd_epi16(_mm_hadd_epi16(b0, b1), m);
    return _mm_fmadd_ps(_mm_set1_ps(dmin_da), _mm_cvtepi32_ps(s), acc);
}

INLINE float da_of(const uint8_t *a)
{
    float d;
    memcpy(&d, a, 4);
    return d;
}

INLINE float finish(__m256 acc, __m128 acc_m)
{
    __m256 m = _mm256_castps128_ps256(acc_m);
    m = _mm256_insertf128_ps(m, _mm_setzero_ps(), 1);
    return hsum_ps(_mm256_sub_ps(acc, m));
}

/* Q4_K (144 bytes: f16 d, f16 dmin, scales[12], qs[128]); sub-blocks 2c and
 * 2c+1 are the low and high nibbles of qs[32c .. 32c+32). */
INLINE void q4_k_block(const uint8_t *w, const uint8_t *a, __m256 *acc, __m128 *acc_m)
{
    uint64_t sc, mn;
    kq_scales(w + 4, &sc, &mn);
    __m256i sc16 = _mm256_broadcastsi128_si256(u8x8_to_i16(sc));
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    const uint8_t *qs = w + 16, *qa = a + Q8K_OFF_QS;
    __m256i sum = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
        __m256i lo = _mm256_and_si256(raw, low4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
        __m256i p0 = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(qa + 64 * c)));
        __m256i p1 = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(qa + 64 * c + 32)));
        p0 = _mm256_madd_epi16(p0, pick16(sc16, 2 * c));
        p1 = _mm256_madd_epi16(p1, pick16(sc16, 2 * c + 1));
        sum = _mm256_add_epi32(sum, _mm256_add_epi32(p0, p1));
    }
    float da = da_of(a);
    *acc = _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(w) * da), _mm256_cvtepi32_ps(sum), *acc);
    *acc_m = mins_term(mn, a, ld_f16(w + 2) * da, *acc_m);
}

void kernel_dot_q4_k_avx2(const void *w_row, const void *act, uint64_t n, float *out)
{
    const uint8_t *w = w_row, *a = act;
    __m256 acc = _mm256_setzero_ps();
    __m128 acc_m = _mm_setzero_ps();
    for (uint64_t b = 0; b < n / 256; b++) {
        kernel_prefetch(w + 144 * b, 144);
        q4_k_block(w + 144 * b, a + Q8K_BYTES * b, &acc, &acc_m);
    }
    *out = finish(acc, acc_m);
}

/* Q5_K (176 bytes: f16 d, f16 dmin, scales[12], qh[32], qs[128]): as Q4_K
 * with a fifth bit, bit j of qh[l] for element l of sub-block j. Each pass
 * moves bits 2c and 2c+1 of every qh byte to bit 4 and shifts the next two
 * down (16-bit shifts: within each byte the bits used never cross over). */
INLINE void q5_k_block(const uint8_t *w, const uint8_t *a, __m256 *acc, __m128 *acc_m)
{
    uint64_t sc, mn;
    kq_scales(w + 4, &sc, &mn);
    __m256i sc16 = _mm256_broadcastsi128_si256(u8x8_to_i16(sc));
    const __m256i low4 = _mm256_set1_epi8(0x0F), bit4 = _mm256_set1_epi8(0x10);
    const uint8_t *qs = w + 48, *qa = a + Q8K_OFF_QS;
    __m256i qh = _mm256_loadu_si256((const __m256i *)(w + 16));
    __m256i sum = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
        __m256i lo = _mm256_and_si256(raw, low4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
        lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(qh, 4), bit4));
        hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(qh, 3), bit4));
        qh = _mm256_srli_epi16(qh, 2);
        __m256i p0 = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(qa + 64 * c)));
        __m256i p1 = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(qa + 64 * c + 32)));
        p0 = _mm256_madd_epi16(p0, pick16(sc16, 2 * c));
        p1 = _mm256_madd_epi16(p1, pick16(sc16, 2 * c + 1));
        sum = _mm256_add_epi32(sum, _mm256_add_epi32(p0, p1));
    }
    float da = da_of(a);
    *acc = _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(w) * da), _mm256_cvtepi32_ps(sum), *acc);
    *acc_m = mins_term(mn, a, ld_f16(w + 2) * da, *acc_m);
}

void kernel_dot_q5_k_avx2(const void *w_row, const void *act, uint64_t n, float *out)
{
    const uint8_t *w = w_row, *a = act;
    __m256 acc = _mm256_setzero_ps();
    __m128 acc_m = _mm_setzero_ps();
    for (uint64_t b = 0; b < n / 256; b++) {
        kernel_prefetch(w + 176 * b, 176);
        q5_k_block(w + 176 * b, a + Q8K_BYTES * b, &acc, &acc_m);
    }
    *out = finish(acc, acc_m);
}
