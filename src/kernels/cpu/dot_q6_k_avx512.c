/* AVX-512 VNNI one-token dot of Q6_K weights with Q8_K activations
 * (decode, row by row; the tile kernel is tile_lanes_avx512.c's).
 *
 * Each row's block is unpacked into vectors that hold the products of
 * four 16-value groups of one half (u = q + 32 unsigned): vpdpbusd sums
 * u*a in fours (|sum| <= 4*63*127, within int16) and vpdpwssd multiplies
 * each by (s_j, 0) as an int16 pair and accumulates. The lanes are summed
 * to the tile's exact integers and the tile's float steps run on scalars
 * (lanes_avx512.h): the tile kernel's bits for every row and token. */
#include "kernels/cpu/lanes_avx512.h"

/* Q6_K (210 bytes: ql[128], qh[64], i8 scales[16], f16 d). Group k of half
 * h: low four bits from nibble k/2 of ql[64h + 32(k%2) + l], top two from
 * bits 2k of qh[32h + l]. Vector p = 2h + m holds groups 2m, 2m+1. */
typedef struct q6_block512 {
    __m512i u[4];  /* unsigned quants of groups (h, 2m), (h, 2m+1) */
    __m512i sc[4]; /* (s_j, 0) int16 pairs, j the sub-block of each 128-bit lane */
} q6_block512;

INLINE void q6_unpack(const uint8_t *w, q6_block512 *b)
{
    const __m512i low4 = _mm512_set1_epi8(0x0F), top2 = _mm512_set1_epi8(0x30);
    __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 192)));
    __m512i s32 = _mm512_cvtepu16_epi32(s16); /* zero-extended: (s_j, 0) */
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
}

void kernel_dot_q6_k_avx512(const void *w, const void *act, uint64_t n, float *out)
{
    const __m512i zero = _mm512_setzero_si512();
    float acc = 0;
    for (uint64_t blk = 0; blk < n / Q8K_BLOCK; blk++) {
        const uint8_t *a = (const uint8_t *)act + blk * Q8K_BYTES, *wb = (const uint8_t *)w + 210 * blk;
        q6_block512 b;
        q6_unpack(wb, &b);
        __m512i s = zero;
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++) {
            __m512i qa = _mm512_loadu_si512((const void *)(a + Q8K_OFF_QS + 64 * p));
            s = _mm512_dpwssd_epi32(s, _mm512_dpbusd_epi32(zero, b.u[p], qa), b.sc[p]);
        }
        __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wb + 192)));
        int32_t ms = hsum_i32x8(_mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(a + Q8K_OFF_BSUMS)), s16));
        acc = scaled_row_step(ld_f16(wb + 208), ldf32_512(a), _mm512_reduce_add_epi32(s) - 32 * ms, acc);
    }
    *out = acc;
}
