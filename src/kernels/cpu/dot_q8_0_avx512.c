/* AVX-512 VNNI one-token dot_rows of Q8_0 weights with Q8_0 activations
 * (decode; the tile kernel is tile_lanes_avx512.c's). Two rows' blocks go
 * in one vector (row 2i low, 2i+1 high), made unsigned (q ^ 0x80 = q + 128)
 * against the activations in both halves: one vpdpbusd gives eight sums of
 * four per row. Their lanes are summed into lane r of one vector for 16
 * rows (lanes_avx512.h) and the float steps run once per 16 rows: the tile
 * kernel's bits for every row and token. */
#include "kernels/cpu/lanes_avx512.h"

#define Q8_0_BYTES 34 /* f16 d, i8 q[32]: weights and activations alike */

void kernel_dot_rows_q8_0_avx512(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act, uint64_t n,
                                 float *out)
{
    const __m512i zero = _mm512_setzero_si512(), bias = _mm512_set1_epi8((char)0x80);
    for (uint64_t r0 = 0; r0 < n_rows; r0 += LANES) {
        uint64_t nr = n_rows - r0 < LANES ? n_rows - r0 : LANES;
        __mmask16 valid = (__mmask16)((1u << nr) - 1);
        __m512i offs = lane_offsets(row_bytes, valid);
        const uint8_t *rp[LANES];
        lane_rows((const uint8_t *)w + r0 * row_bytes, row_bytes, nr, rp);
        uint64_t next = r0 + LANES < n_rows ? LANES * row_bytes : 0; /* the next group, to prefetch */
        __m512 acc = _mm512_setzero_ps();
        for (uint64_t blk = 0; blk < n / 32; blk++) {
            const uint8_t *a = (const uint8_t *)act + blk * Q8_0_BYTES;
            __m512i av = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(a + 2)));
            __m512i u[LANES / 2];
#pragma GCC unroll 8
            for (int i = 0; i < LANES / 2; i++) {
                const uint8_t *w0 = rp[2 * i] + Q8_0_BYTES * blk, *w1 = rp[2 * i + 1] + Q8_0_BYTES * blk;
                if (next) {
                    lane_prefetch(w0 + next, Q8_0_BYTES);
                    lane_prefetch(w1 + next, Q8_0_BYTES);
                }
                __m512i wv = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(w0 + 2))),
                                                _mm256_loadu_si256((const __m256i *)(w1 + 2)), 1);
                u[i] = _mm512_dpbusd_epi32(zero, _mm512_xor_si512(wv, bias), av);
            }
            __m512 d = half_to_float(gather4(offs, rp[0] + Q8_0_BYTES * blk), 0);
            acc = q80_lane_step(d, lane_sums_halves(u), a, acc);
        }
        _mm512_mask_storeu_ps(out + r0, valid, acc);
    }
}

/* One row: the same integers on one 256-bit vector per block, the float
 * steps on scalars. */
void kernel_dot_q8_0_avx512(const void *w, const void *act, uint64_t n, float *out)
{
    float acc = 0;
    for (uint64_t blk = 0; blk < n / 32; blk++) {
        const uint8_t *a = (const uint8_t *)act + blk * Q8_0_BYTES, *wb = (const uint8_t *)w + blk * Q8_0_BYTES;
        __m256i q = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(wb + 2)), _mm256_set1_epi8((char)0x80));
        __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), q, _mm256_loadu_si256((const __m256i *)(a + 2)));
        acc = scaled_row_step(ld_f16_512(wb), ld_f16_512(a), hsum_i32x8(s) - 128 * q80_act_sum(a), acc);
    }
    *out = acc;
}
