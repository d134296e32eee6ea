/* AVX-512 VNNI kernels of Q4_K and Q5_K weights with Q8_K activations: the
 * Q5_K tile kernel (prompt batches) and Q4_K's one-token dot.
 *
 * The Q5_K tile's scheme is dot_q4_k_avx2.c's:
 *   Σ x*a_x = d_a * (d * Σ_j sc_j Σ q*a  -  dmin * Σ_j m_j Σ a)
 * with the same exact int32 sums in the same 8 lanes (lane l of a block:
 * Σ_j sc_j Σ_{k<4} q_j[4l+k] a_j[4l+k]) and the same float steps, so the
 * results equal the AVX2 kernels' bit for bit.
 *
 * One 512-bit vector holds sub-blocks 2c (low half) and 2c+1 (high half),
 * matching the activations' byte order, so each token needs one 64-byte
 * load per pair of sub-blocks. vpdpbusd multiplies the unsigned quants by
 * the signed activations and sums groups of four into int32 (|sum| <=
 * 4*31*127, within int16); vpdpwssd then multiplies each such int32, read
 * as an int16 pair (value, sign extension), by (sc_j, 0) and accumulates:
 * two instructions per 64 values and token where AVX2 needs seven. */
#include "kernels/cpu/lanes_avx512.h"

/* The eight 6-bit scales (bytes of *sc) and mins (bytes of *mn) of the
 * block at w, from its 12 packed bytes at w + 4: scale / min j < 4 is the
 * low six bits of byte j / 4+j; j >= 4 takes its low four bits from the
 * low / high nibble of byte 4+j and its top two from bits 6..7 of byte
 * j-4 / j. Four bytes at a time in general registers. */
INLINE void kq_scales_mins(const uint8_t *w, uint64_t *sc, uint64_t *mn)
{
    uint32_t s0 = ld32(w + 4), s1 = ld32(w + 8), s2 = ld32(w + 12);
    uint32_t sc_hi = (s2 & 0x0f0f0f0fu) | ((s0 >> 6) & 0x03030303u) << 4;
    uint32_t m_hi = ((s2 >> 4) & 0x0f0f0f0fu) | ((s1 >> 6) & 0x03030303u) << 4;
    *sc = (s0 & 0x3f3f3f3fu) | (uint64_t)sc_hi << 32;
    *mn = (s1 & 0x3f3f3f3fu) | (uint64_t)m_hi << 32;
}

/* The unpacked weights of one block, shared by the tile's tokens. */
typedef struct kq_block512 {
    __m512i q[4];   /* chunk c: sub-block 2c's quants (low half), 2c+1's (high) */
    __m512i sc[4];  /* chunk c: (sc_2c, 0) as int16 pairs in the low half, (sc_2c+1, 0) in the high */
    __m256i m16;    /* m_0, m_0, m_1, m_1, ... m_7, m_7 as int16: one per bsum */
    float d, dmin;
} kq_block512;

/* The scales and mins of the block at w into *b. */
INLINE void kq_unpack_scales(const uint8_t *w, kq_block512 *b)
{
    uint64_t sc, mn;
    kq_scales_mins(w, &sc, &mn);
    __m512i bc = _mm512_set1_epi64((long long)sc);
    /* int32 lane: byte j zero-extended (shuffle control bytes with the top
     * bit set write zeros); j = 2c in the low half, 2c+1 in the high */
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        __m512i ctrl = _mm512_inserti64x4(_mm512_set1_epi32((int)(0x80808000u | (unsigned)(2 * c))),
                                          _mm256_set1_epi32((int)(0x80808000u | (unsigned)(2 * c + 1))), 1);
        b->sc[c] = _mm512_shuffle_epi8(bc, ctrl);
    }
    __m128i m = _mm_cvtsi64_si128((long long)mn);
    b->m16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m, m));
    b->d = ld_f16(w);
    b->dmin = ld_f16(w + 2);
}

/* 32 bytes at p in both halves, the high half shifted right by s bits in
 * each 64-bit element (the low half by s0). */
INLINE __m512i both_halves(const uint8_t *p, int s0, int s)
{
    __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_srlv_epi64(v, _mm512_setr_epi64(s0, s0, s0, s0, s, s, s, s));
}

/* Q4_K (144 bytes: f16 d, f16 dmin, scales[12], qs[128]); sub-blocks 2c
 * and 2c+1 are the low and high nibbles of qs[32c .. 32c+32). */
INLINE void q4_k_unpack(const uint8_t *w, kq_block512 *b)
{
    const __m512i low4 = _mm512_set1_epi8(0x0F);
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) b->q[c] = _mm512_and_si512(both_halves(w + 16 + 32 * c, 0, 4), low4);
    kq_unpack_scales(w, b);
}

/* Q5_K (176 bytes: f16 d, f16 dmin, scales[12], qh[32], qs[128]): as Q4_K
 * with a fifth bit, bit j of qh[l] for element l of sub-block j. */
INLINE void q5_k_unpack(const uint8_t *w, kq_block512 *b)
{
    const __m512i low4 = _mm512_set1_epi8(0x0F), bit0 = _mm512_set1_epi8(0x01);
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        __m512i hb = _mm512_and_si512(both_halves(w + 16, 2 * c, 2 * c + 1), bit0);
        __m512i lo = _mm512_and_si512(both_halves(w + 48 + 32 * c, 0, 4), low4);
        b->q[c] = _mm512_or_si512(lo, _mm512_slli_epi64(hb, 4));
    }
    kq_unpack_scales(w, b);
}

typedef void (*kq_unpack_fn)(const uint8_t *w, kq_block512 *b);

/* One block against one token's activation block a: the AVX2 kernel's
 * float steps on the same int32 lanes. */
INLINE void kq_token(const kq_block512 *b, const uint8_t *a, __m256 *acc, __m256 *acc_m)
{
    const __m512i zero = _mm512_setzero_si512();
    __m512i s = zero;
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        __m512i qa = _mm512_loadu_si512((const void *)(a + Q8K_OFF_QS + 64 * c));
        s = _mm512_dpwssd_epi32(s, _mm512_dpbusd_epi32(zero, b->q[c], qa), b->sc[c]);
    }
    __m256i sum = _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
    __m256i mins = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(a + Q8K_OFF_BSUMS)), b->m16);
    float da = ldf32_512(a);
    *acc = _mm256_fmadd_ps(_mm256_set1_ps(b->d * da), _mm256_cvtepi32_ps(sum), *acc);
    *acc_m = _mm256_fmadd_ps(_mm256_set1_ps(b->dmin * da), _mm256_cvtepi32_ps(mins), *acc_m);
}

/* The tile driver (see avx512_util.h): one row at w, nb blocks of wb
 * bytes, against T tokens. */
INLINE void kq_tile(const uint8_t *w, const uint8_t *a, uint64_t as, int T, float *out, uint64_t os, uint64_t nb,
                    uint64_t wb, kq_unpack_fn unpack)
{
    __m256 acc[TILE512_TOK], acc_m[TILE512_TOK];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) acc[t] = acc_m[t] = _mm256_setzero_ps();
    for (uint64_t blk = 0; blk < nb; blk++) {
        kq_block512 b;
        unpack(w + wb * blk, &b);
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) kq_token(&b, a + t * as + Q8K_BYTES * blk, &acc[t], &acc_m[t]);
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) out[t * os] = hsum_ps(_mm256_sub_ps(acc[t], acc_m[t]));
}

INLINE void q5_k_tile(const uint8_t *w, const uint8_t *a, uint64_t as, int T, float *out, uint64_t os, uint64_t n)
{
    kq_tile(w, a, as, T, out, os, n / 256, 176, q5_k_unpack);
}

TILE512_KERNEL(kernel_dot_tile_q5_k_avx512, q5_k_tile, 8)

/* ---- Q4_K, one token (decode) ----
 * The tile kernel (tile_lanes_avx512.c) repacks 16 rows into the lanes,
 * which pays only when several tokens share it. For one token a row's
 * block is unpacked as above (one vector: its products and scales), its
 * lanes summed to the tile's exact integers and the tile's float steps run
 * on scalars (lanes_avx512.h): the tile kernel's bits. Decode runs it row
 * by row (no dot_rows: sixteen rows side by side, one per lane, ran 25 %
 * slower, more pages and streams than the TLB and prefetchers follow). */
void kernel_dot_q4_k_avx512(const void *w, const void *act, uint64_t n, float *out)
{
    const __m512i zero = _mm512_setzero_si512();
    float acc = 0;
    for (uint64_t blk = 0; blk < n / Q8K_BLOCK; blk++) {
        const uint8_t *a = (const uint8_t *)act + blk * Q8K_BYTES;
        kq_block512 b;
        q4_k_unpack((const uint8_t *)w + 144 * blk, &b);
        __m512i s = zero;
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m512i qa = _mm512_loadu_si512((const void *)(a + Q8K_OFF_QS + 64 * c));
            s = _mm512_dpwssd_epi32(s, _mm512_dpbusd_epi32(zero, b.q[c], qa), b.sc[c]);
        }
        __m256i mins = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(a + Q8K_OFF_BSUMS)), b.m16);
        acc = q4k_row_step(b.d, b.dmin, _mm512_reduce_add_epi32(s), hsum_i32x8(mins), ldf32_512(a), acc);
    }
    *out = acc;
}
