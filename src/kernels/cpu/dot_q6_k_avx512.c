/* AVX-512 VNNI tile kernel of Q6_K weights with Q8_K activations (prompt
 * batches). The scheme is dot_q6_k_avx2.c's: u = q + 32 unsigned,
 *   Σ x*a_x = d_a * d * (Σ_j s_j Σ u*a  -  32 * Σ_j s_j bsums[j])
 * with the same exact int32 sums in the same 8 lanes (lane l of a block:
 * Σ over the 32-byte groups of s_j Σ_{k<4} u[4l+k] a[4l+k], j the group's
 * sub-block, minus 32 * (s_2l bsums[2l] + s_2l+1 bsums[2l+1])) and the same
 * float steps, so the results equal the AVX2 kernel's bit for bit.
 *
 * One 512-bit vector holds groups 2m and 2m+1 of half h (sub-blocks
 * 8h+4m .. 8h+4m+3, one per 128-bit lane), matching the activations' byte
 * order. vpdpbusd sums u*a in fours (|sum| <= 4*63*127, within int16) and
 * vpdpwssd multiplies each by (s_j, 0) as int16 pairs and accumulates, as
 * in dot_q4_k_avx512.c. */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/act_quant.h"
#include "kernels/cpu/avx512_util.h"

/* Q6_K (210 bytes: ql[128], qh[64], i8 scales[16], f16 d). Group k of half
 * h: low four bits from nibble k/2 of ql[64h + 32(k%2) + l], top two from
 * bits 2k of qh[32h + l]. Vector p = 2h + m holds groups 2m, 2m+1. */
typedef struct q6_block512 {
    __m512i u[4];  /* unsigned quants of groups (h, 2m), (h, 2m+1) */
    __m512i sc[4]; /* (s_j, 0) int16 pairs, j the sub-block of each 128-bit lane */
    __m256i s16;   /* the sixteen scales as int16 (for the bsums) */
    float d;
} q6_block512;

INLINE void q6_unpack(const uint8_t *w, q6_block512 *b)
{
    const __m512i low4 = _mm512_set1_epi8(0x0F), top2 = _mm512_set1_epi8(0x30);
    b->s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 192)));
    __m512i s32 = _mm512_cvtepu16_epi32(b->s16); /* zero-extended: (s_j, 0) */
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m512i l = _mm512_loadu_si512((const void *)(w + 64 * h));
        __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(w + 128 + 32 * h)));
#pragma GCC unroll 2
        for (int m = 0; m < 2; m++) {
            /* bits 2k..2k+1 to bits 4..5: left by 4, 2 (k = 0, 1); right by 0, 2 (k = 2, 3) */
            __m512i top = m ? _mm512_srlv_epi64(qh, _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2))
                            : _mm512_sllv_epi64(qh, _mm512_setr_epi64(4, 4, 4, 4, 2, 2, 2, 2));
            __m512i lo = m ? _mm512_srli_epi64(l, 4) : l;
            int p = 2 * h + m, j = 4 * p;
            b->u[p] = _mm512_or_si512(_mm512_and_si512(lo, low4), _mm512_and_si512(top, top2));
            __m512i idx = _mm512_setr_epi32(j, j, j, j, j + 1, j + 1, j + 1, j + 1, j + 2, j + 2, j + 2, j + 2, j + 3,
                                            j + 3, j + 3, j + 3);
            b->sc[p] = _mm512_permutexvar_epi32(idx, s32);
        }
    }
    b->d = ld_f16_512(w + 208);
}

/* One block against one token's activation block a (AVX2's float step). */
INLINE void q6_token(const q6_block512 *b, const uint8_t *a, __m256 *acc)
{
    const __m512i zero = _mm512_setzero_si512();
    __m512i s = zero;
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) {
        __m512i qa = _mm512_loadu_si512((const void *)(a + Q8K_OFF_QS + 64 * p));
        s = _mm512_dpwssd_epi32(s, _mm512_dpbusd_epi32(zero, b->u[p], qa), b->sc[p]);
    }
    __m256i bsums = _mm256_loadu_si256((const __m256i *)(a + Q8K_OFF_BSUMS));
    __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(bsums, b->s16), 5);
    __m256i sum = _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
    sum = _mm256_sub_epi32(sum, off);
    *acc = _mm256_fmadd_ps(_mm256_set1_ps(b->d * ldf32_512(a)), _mm256_cvtepi32_ps(sum), *acc);
}

INLINE void q6_k_tile(const uint8_t *w, const uint8_t *a, uint64_t as, int T, float *out, uint64_t os, uint64_t n)
{
    __m256 acc[TILE512_TOK];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    for (uint64_t blk = 0; blk < n / 256; blk++) {
        q6_block512 b;
        q6_unpack(w + 210 * blk, &b);
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) q6_token(&b, a + t * as + Q8K_BYTES * blk, &acc[t]);
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) out[t * os] = hsum8(acc[t]);
}

TILE512_KERNEL(kernel_dot_tile_q6_k_avx512, q6_k_tile, 8)
