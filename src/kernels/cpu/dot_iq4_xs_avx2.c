/* AVX2 dot product of IQ4_XS weight rows (super-blocks of 256 with the
 * non-linear 4-bit grid; IQ4_NL is in dot_blk32_avx2.c) with Q8_K
 * activations. Nibbles index the 16-entry value table with one byte
 * shuffle; the values are signed (|v| <= 127), so their sign moves onto the
 * activations before maddubs (activations are never -128). */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/act_quant.h"
#include "kernels/cpu/dequant.h"
#include "kernels/cpu/avx2_util.h"


INLINE __m256i table(void)
{
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)dequant_iq4nl_values));
}

/* The 32 values of 16 bytes of nibbles at p (elements 0..15 low nibbles,
 * 16..31 high), in element order: broadcast to both lanes, shift the upper
 * lane by 4, mask, look up. */
INLINE __m256i values(const uint8_t *p, __m256i tab)
{
    __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    v = _mm256_and_si256(_mm256_srlv_epi64(v, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(0x0F));
    return _mm256_shuffle_epi8(tab, v);
}

/* Σ v*a over 32 signed bytes as 16 int16 pair sums (|pair| <= 2*127*127). */
INLINE __m256i dot_pairs(__m256i v, __m256i a)
{
    return _mm256_maddubs_epi16(_mm256_sign_epi8(v, v), _mm256_sign_epi8(a, v));
}

/* The eight 6-bit scales of an IQ4_XS block, one per byte: the low four
 * bits of scale j are nibble j of scales_l (low nibble first), the top two
 * bits j of scales_h. Bit spreading in a 64-bit word: each step moves the
 * upper half of every field group to the next wider slot. */
INLINE uint64_t iq4_xs_scales(const uint8_t *w)
{
    uint16_t sh;
    uint32_t sl;
    memcpy(&sh, w + 2, 2);
    memcpy(&sl, w + 4, 4);
    uint64_t h = sh; /* 2-bit fields -> bytes */
    h = (h & 0xFF) | (h & 0xFF00) << 24;
    h = (h & 0x0000000F0000000Full) | (h & 0x000000F0000000F0ull) << 12;
    h = (h & 0x0003000300030003ull) | (h & 0x000C000C000C000Cull) << 6;
    uint64_t l = sl; /* bytes -> every other byte, then nibbles -> bytes */
    l = (l & 0xFFFF) | (l & 0xFFFF0000) << 16;
    l = (l & 0x000000FF000000FFull) | (l & 0x0000FF000000FF00ull) << 8;
    l = (l & 0x000F000F000F000Full) | ((l >> 4) & 0x000F000F000F000Full) << 8;
    return l | h << 4;
}

/* Broadcast int16 element j of both lanes (each lane holds the same 8). */
INLINE __m256i pick16(__m256i v, int j)
{
    return _mm256_shuffle_epi8(v, _mm256_set1_epi16((short)(2 * j | (2 * j + 1) << 8)));
}

/* IQ4_XS (136 bytes: f16 d, u16 scales_h, u8 scales_l[4], qs[128]): eight
 * sub-blocks of 32 laid out as IQ4_NL quants, each with a 6-bit scale
 * (offset 32); x = d*(ls-32)*values[q]. The block's integer sum
 * Σ_j (ls_j-32) Σ v*a is exact in int32 (at most 8*32*32*127*127 per block). */
INLINE __m256 iq4_xs_block(const uint8_t *w, const uint8_t *a, __m256i tab, __m256 acc)
{
    __m128i ls = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)iq4_xs_scales(w)));
    __m256i s16 = _mm256_broadcastsi128_si256(_mm_sub_epi16(ls, _mm_set1_epi16(32)));
    const uint8_t *qs = w + 8, *qa = a + Q8K_OFF_QS;
    __m256i sum = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        __m256i p = dot_pairs(values(qs + 16 * j, tab), _mm256_loadu_si256((const __m256i *)(qa + 32 * j)));
        sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, pick16(s16, j)));
    }
    float da;
    memcpy(&da, a, 4);
    return _mm256_fmadd_ps(_mm256_set1_ps(ld_f16(w) * da), _mm256_cvtepi32_ps(sum), acc);
}

void kernel_dot_iq4_xs_avx2(const void *w_row, const void *act, uint64_t n, float *out)
{
    const uint8_t *w = w_row, *a = act;
    const __m256i tab = table();
    __m256 acc = _mm256_setzero_ps();
    for (uint64_t b = 0; b < n / 256; b++) {
        kernel_prefetch(w + 136 * b, 136);
        acc = iq4_xs_block(w + 136 * b, a + Q8K_BYTES * b, tab, acc);
    }
    *out = hsum_ps(acc);
}
