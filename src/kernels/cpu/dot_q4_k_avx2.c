/* AVX2 dot products of Q4_K and Q5_K weight rows with Q8_K activations.
 *
 * Both have eight sub-blocks of 32 with a 6-bit scale sc_j and min m_j and
 * x = d*sc_j*q - dmin*m_j (q unsigned). Against activations d_a*a:
 *   Σ x*a_x = d_a * (d * Σ_j sc_j Σ q*a  -  dmin * Σ_j m_j Σ a)
 * where Σ a over sub-block j is bsums[2j] + bsums[2j+1] of the Q8_K block:
 * the mins cost one small madd per super-block instead of work per value.
 * Integer sums are exact: |Σ_j sc_j Σ q*a| <= 8*63*32*31*127. Each type
 * has a single-row and a two-row kernel on one driver (ROWS_KERNELS), and
 * a tile kernel (TILE_KERNEL) on the same per-block helper. */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/act_quant.h"
#include "kernels/cpu/avx2_util.h"

INLINE __m256i ld256(const uint8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* The 12 packed scale bytes x[0..12) of a block (in each 128-bit lane: one
 * row per lane) -> bytes 0..7 the eight 6-bit scales, bytes 8..15 the eight
 * mins. Scale / min j < 4 is the low six bits of x[j] / x[4+j]; scale /
 * min j >= 4 takes its low four bits from the low / high nibble of x[4+j]
 * and its top two from bits 6..7 of x[j-4] / x[j]. Vector shuffles decode
 * both rows of a pair at once, in fewer instructions than word arithmetic
 * on one. Shifts are 16-bit: the mask after each drops the bits that cross
 * from the neighbouring byte. */
INLINE __m256i kq_scales(__m256i x)
{
    const char z = -128; /* pshufb: write zero */
    __m256i l = _mm256_shuffle_epi8(x, _mm256_broadcastsi128_si256(
                                           _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, z, z, z, z)));
    l = _mm256_and_si256(l, _mm256_broadcastsi128_si256(
                                _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0)));
    __m256i h = _mm256_shuffle_epi8(_mm256_srli_epi16(x, 4), _mm256_broadcastsi128_si256(
                                        _mm_setr_epi8(z, z, z, z, z, z, z, z, z, z, z, z, 8, 9, 10, 11)));
    __m256i t = _mm256_shuffle_epi8(_mm256_srli_epi16(x, 2), _mm256_broadcastsi128_si256(
                                        _mm_setr_epi8(z, z, z, z, 0, 1, 2, 3, z, z, z, z, 4, 5, 6, 7)));
    h = _mm256_and_si256(h, _mm256_set1_epi8(0x0f));
    t = _mm256_and_si256(t, _mm256_set1_epi8(0x30));
    return _mm256_or_si256(l, _mm256_or_si256(h, t));
}

/* Byte j of each lane of v, zero-extended into every int16 of the lane
 * (control bytes with the top bit set write zeros). */
INLINE __m256i pick_u8(__m256i v, int j) { return _mm256_shuffle_epi8(v, _mm256_set1_epi16((short)(j | -0x8000))); }

/* Σ_j m_j (bsums[2j] + bsums[2j+1]) as 8 int32: the mins (bytes 8..15 of
 * sm, the same in both lanes) spread to one int16 per bsum. */
INLINE __m256i mins_sum(__m256i sm, __m256i bsums)
{
    const char z = -128;
    __m256i m16 = _mm256_shuffle_epi8(sm, _mm256_setr_epi8(8, z, 8, z, 9, z, 9, z, 10, z, 10, z, 11, z, 11, z,  /* */
                                                           12, z, 12, z, 13, z, 13, z, 14, z, 14, z, 15, z, 15, z));
    return _mm256_madd_epi16(bsums, m16);
}

/* d_a of an activation block (unaligned: memcpy) */
INLINE float act_d(const uint8_t *a)
{
    float d;
    memcpy(&d, a, 4);
    return d;
}

/* d * d_a and dmin * d_a of a block (its first four bytes) in lanes 0, 1. */
INLINE __m128 kq_d_dmin(const uint8_t *w, __m128 da)
{
    return _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128((int)ld32(w))), da);
}

/* The 64 unsigned quants of sub-blocks 2c (lo) and 2c+1 (hi) of a block. */
typedef void (*kq_quants_fn)(const uint8_t *w, int c, __m256i *lo, __m256i *hi);

/* Q4_K (144 bytes: f16 d, f16 dmin, scales[12], qs[128]); sub-blocks 2c and
 * 2c+1 are the low and high nibbles of qs[32c .. 32c+32). */
INLINE void q4_k_quants(const uint8_t *w, int c, __m256i *lo, __m256i *hi)
{
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    __m256i raw = ld256(w + 16 + 32 * c);
    *lo = _mm256_and_si256(raw, low4);
    *hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
}

/* v shifted left by s bits in each 16-bit element (right by -s when s < 0;
 * s is a constant once unrolled). */
INLINE __m256i shift16(__m256i v, int s)
{
    return s > 0 ? _mm256_slli_epi16(v, s) : s < 0 ? _mm256_srli_epi16(v, -s) : v;
}

/* Q5_K (176 bytes: f16 d, f16 dmin, scales[12], qh[32], qs[128]): as Q4_K
 * with a fifth bit, bit j of qh[l] for element l of sub-block j, moved to
 * bit 4 by a 16-bit shift (within each byte the bits used never cross
 * over). */
INLINE void q5_k_quants(const uint8_t *w, int c, __m256i *lo, __m256i *hi)
{
    const __m256i low4 = _mm256_set1_epi8(0x0F), bit4 = _mm256_set1_epi8(0x10);
    __m256i raw = ld256(w + 48 + 32 * c), qh = ld256(w + 16);
    *lo = _mm256_or_si256(_mm256_and_si256(raw, low4), _mm256_and_si256(shift16(qh, 4 - 2 * c), bit4));
    *hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(raw, 4), low4),
                          _mm256_and_si256(shift16(qh, 3 - 2 * c), bit4));
}

/* ---- the driver ----
 * kq_rows runs both types over R (1 or 2) rows (a rows_driver_fn, see
 * avx2_util.h): block b of each row against activation block b. Two rows
 * have their scale bytes decoded together, one per lane, and share the
 * loads of d_a and the bsums; the rest runs one row after the other (the
 * state of both at once would not fit in the registers). Each row keeps its
 * own accumulators, summed in the order of the single-row kernel (R = 1):
 * a row's result does not depend on R. */
#define KQ_ROWS 2

/* Σ_j sc_j Σ q*a of chunk c for one row: sm its decoded scales. */
INLINE __m256i kq_chunk(__m256i lo, __m256i hi, __m256i a0, __m256i a1, __m256i sm, int c)
{
    __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a0), pick_u8(sm, 2 * c));
    __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a1), pick_u8(sm, 2 * c + 1));
    return _mm256_add_epi32(p0, p1);
}

/* The scale bytes of the R (1 or 2) rows at w[r], decoded: lane r holds
 * row r's (with R = 1, both lanes hold row 0's). Each lane loads 16 bytes
 * from offset 4: the 12 scale bytes and 4 bytes of quants, ignored. */
INLINE __m256i kq_scales_rows(const uint8_t *const w[], int R)
{
    __m128i x0 = _mm_loadu_si128((const __m128i *)(w[0] + 4));
    if (R == 1) return kq_scales(_mm256_broadcastsi128_si256(x0));
    __m128i x1 = _mm_loadu_si128((const __m128i *)(w[1] + 4));
    return kq_scales(_mm256_inserti128_si256(_mm256_castsi128_si256(x0), x1, 1));
}

/* Lane r of v in both lanes. */
INLINE __m256i lane_both(__m256i v, int r)
{
    return r ? _mm256_permute2x128_si256(v, v, 0x11) : _mm256_permute2x128_si256(v, v, 0x00);
}

/* Block b of one row at w (its decoded scales sm in both lanes) against
 * the T tokens' activation blocks a[t]: the quants are unpacked and the
 * scales picked once for all T (the single-row kernels run T = 1). */
INLINE void kq_tile_block(const uint8_t *w, __m256i sm, const uint8_t *const a[], int T, kq_quants_fn quants,
                          __m256 acc[], __m256 acc_m[])
{
    __m256i sum[TILE_TOK];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) sum[t] = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        __m256i lo, hi;
        quants(w, c, &lo, &hi);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            sum[t] = _mm256_add_epi32(sum[t], kq_chunk(lo, hi, ld256(a[t] + Q8K_OFF_QS + 64 * c),
                                                       ld256(a[t] + Q8K_OFF_QS + 64 * c + 32), sm, c));
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        __m128 dd = kq_d_dmin(w, _mm_set1_ps(act_d(a[t])));
        __m256i bsums = ld256(a[t] + Q8K_OFF_BSUMS);
        acc[t] = _mm256_fmadd_ps(_mm256_broadcastss_ps(dd), _mm256_cvtepi32_ps(sum[t]), acc[t]);
        acc_m[t] = _mm256_fmadd_ps(_mm256_broadcastss_ps(_mm_movehdup_ps(dd)),
                                   _mm256_cvtepi32_ps(mins_sum(sm, bsums)), acc_m[t]);
    }
}

/* Block b of the R (1 or 2) rows at w[r] against activation block a: one
 * row after the other (the state of both at once would not fit in the
 * registers), their scales decoded together. */
INLINE void kq_block(const uint8_t *const w[], int R, const uint8_t *a, kq_quants_fn quants, __m256 acc[],
                     __m256 acc_m[])
{
    const uint8_t *a1[1] = {a};
    __m256i sm2 = kq_scales_rows(w, R);
    if (R == 1) {
        kq_tile_block(w[0], sm2, a1, 1, quants, &acc[0], &acc_m[0]);
        return;
    }
    kq_tile_block(w[0], lane_both(sm2, 0), a1, 1, quants, &acc[0], &acc_m[0]);
    kq_tile_block(w[1], lane_both(sm2, 1), a1, 1, quants, &acc[1], &acc_m[1]);
}

/* *out[r] for the R rows starting at w[r] (nb blocks of wb bytes each). */
INLINE void kq_rows(const uint8_t *const w[], float *const out[], int R, const uint8_t *a, uint64_t nb, uint64_t wb,
                    kq_quants_fn quants)
{
    __m256 acc[KQ_ROWS], acc_m[KQ_ROWS];
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) acc[r] = acc_m[r] = _mm256_setzero_ps();
    for (uint64_t b = 0; b < nb; b++) {
        const uint8_t *wr[KQ_ROWS];
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            wr[r] = w[r] + wb * b;
            kernel_prefetch(wr[r], wb);
        }
        kq_block(wr, R, a + Q8K_BYTES * b, quants, acc, acc_m);
    }
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) *out[r] = hsum_ps(_mm256_sub_ps(acc[r], acc_m[r]));
}

/* The drivers of the two types, and their kernels. */
INLINE void q4_k_rows(const uint8_t *const w[], float *const out[], int R, const uint8_t *a, uint64_t n)
{
    kq_rows(w, out, R, a, n / 256, 144, q4_k_quants);
}

INLINE void q5_k_rows(const uint8_t *const w[], float *const out[], int R, const uint8_t *a, uint64_t n)
{
    kq_rows(w, out, R, a, n / 256, 176, q5_k_quants);
}

ROWS_KERNELS(kernel_dot_q4_k_avx2, kernel_dot_rows_q4_k_avx2, q4_k_rows)
ROWS_KERNELS(kernel_dot_q5_k_avx2, kernel_dot_rows_q5_k_avx2, q5_k_rows)

/* The tile driver (see avx2_util.h): one row at w, nb blocks of wb bytes,
 * against T tokens. The weights come from cache here (the caller's row
 * block), so no prefetch hints. */
INLINE void kq_tile(const uint8_t *w, const uint8_t *a, uint64_t as, int T, float *out, uint64_t os, uint64_t nb,
                    uint64_t wb, kq_quants_fn quants)
{
    __m256 acc[TILE_TOK], acc_m[TILE_TOK];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) acc[t] = acc_m[t] = _mm256_setzero_ps();
    for (uint64_t b = 0; b < nb; b++) {
        const uint8_t *wb_[1] = {w + wb * b}, *at[TILE_TOK];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) at[t] = a + t * as + Q8K_BYTES * b;
        kq_tile_block(wb_[0], kq_scales_rows(wb_, 1), at, T, quants, acc, acc_m);
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) out[t * os] = hsum_ps(_mm256_sub_ps(acc[t], acc_m[t]));
}

INLINE void q4_k_tile(const uint8_t *w, const uint8_t *a, uint64_t as, int T, float *out, uint64_t os, uint64_t n)
{
    kq_tile(w, a, as, T, out, os, n / 256, 144, q4_k_quants);
}

INLINE void q5_k_tile(const uint8_t *w, const uint8_t *a, uint64_t as, int T, float *out, uint64_t os, uint64_t n)
{
    kq_tile(w, a, as, T, out, os, n / 256, 176, q5_k_quants);
}

TILE_KERNEL(kernel_dot_tile_q4_k_avx2, q4_k_tile)
TILE_KERNEL(kernel_dot_tile_q5_k_avx2, q5_k_tile)
