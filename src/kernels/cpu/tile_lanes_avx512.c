/* AVX-512 VNNI tile kernels with weight rows in the vector lanes (prompt
 * batches and batched decode of Q4_K and Q6_K weights, Q8_K activations).
 *
 * Why a second scheme: the kernels of dot_q4_k_avx512.c keep the AVX2
 * kernels' lanes (one row, eight lanes of a block), so every 64 products
 * of one token need a vpdpbusd, a vpdpwssd for the sub-block scales and a
 * share of the per-block float steps: about 24 instructions per block, row
 * and token. Here lane r of a vector is weight row r of a group of 16, and
 * a vector of weights holds the same four positions of one sub-block in
 * 16 rows: one vpdpbusd against those four activations of a token,
 * broadcast, makes 64 useful products, the scale is applied once per
 * sub-block (not once per four products), and the float steps run once
 * per block for 16 rows. About 90 instructions per block, token and 16
 * rows, so ~4x fewer.
 *
 * Repacking: a chunk of CHUNK_K blocks of 16 rows is gathered into that
 * layout (on the stack, in L1) once and then used by every token of the
 * call, so its cost shrinks with the number of tokens.
 *
 * Numbers: see lanes_avx512.h (the same bits as these types' one-token
 * dot_rows for every row and token, within float rounding of AVX2's). */
#include "kernels/cpu/lanes_avx512.h"

#define CHUNK_K 4   /* K-quant blocks repacked at a time: 4 x 5-6 KiB, in L1 */
#define GROUP 8   /* tokens sharing each weight vector load */

/* ---- gathering 16 rows ---- */

/* v[k], lane r: dword k of the 32 bytes at rp[r] + off (a 16 x 8 dword
 * transpose). Four rows' 16-byte halves are loaded into one vector (lane
 * 4*rr + kk: row 4a+rr, dword 4h+kk), then two rounds of two-source
 * permutes bring first 8 rows x 2 dwords, then 16 rows x 1 dword together:
 * 32 loads and 16 permutes where gathers would cost 128 loads. */
INLINE void transpose_16x8(const uint8_t *const rp[LANES], uint64_t off, __m512i v[8])
{
    __m512i y[4][2]; /* [a][h] */
#pragma GCC unroll 4
    for (int a = 0; a < 4; a++)
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m512i t = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(rp[4 * a] + off + 16 * h)));
            t = _mm512_inserti32x4(t, _mm_loadu_si128((const __m128i *)(rp[4 * a + 1] + off + 16 * h)), 1);
            t = _mm512_inserti32x4(t, _mm_loadu_si128((const __m128i *)(rp[4 * a + 2] + off + 16 * h)), 2);
            y[a][h] = _mm512_inserti32x4(t, _mm_loadu_si128((const __m128i *)(rp[4 * a + 3] + off + 16 * h)), 3);
        }
    /* w[b][p], lane 8*kk + rr: row 8b+rr, dword 2p+kk */
    const __m512i pick[2] = {
        _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29),
        _mm512_setr_epi32(2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31)};
    const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
    const __m512i hi = _mm512_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) {
        __m512i w0 = _mm512_permutex2var_epi32(y[0][p / 2], pick[p % 2], y[1][p / 2]);
        __m512i w1 = _mm512_permutex2var_epi32(y[2][p / 2], pick[p % 2], y[3][p / 2]);
        v[2 * p] = _mm512_permutex2var_epi32(w0, lo, w1);
        v[2 * p + 1] = _mm512_permutex2var_epi32(w0, hi, w1);
    }
}

/* ---- Q4_K: 144-byte blocks (f16 d, f16 dmin, scales[12], qs[128]) ---- */

/* One block of 16 rows, row r in lane r. */
typedef struct q4k_lanes {
    __m512i q[64]; /* [g]: quants of values 4g..4g+3 (sub-block g/8), bytes 0..15 */
    q4k_lane_scales s;
} q4k_lanes;

/* The block at byte off of the rows rp[r] into *p (the scales from
 * rp[0] + off + lane offset). */
INLINE void q4k_pack(const uint8_t *const rp[LANES], uint64_t off, __m512i offs, q4k_lanes *p)
{
    q4k_lane_scales_get(rp[0] + off, offs, &p->s);
    /* sub-blocks 2c and 2c+1: the low and high nibbles of qs[32c .. 32c+32) */
    const __m512i low4 = _mm512_set1_epi8(0x0F);
#pragma GCC unroll 1
    for (int c = 0; c < 4; c++) {
        __m512i v[8];
        transpose_16x8(rp, off + 16 + 32 * c, v);
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            p->q[8 * (2 * c) + k] = _mm512_and_si512(v[k], low4);
            p->q[8 * (2 * c + 1) + k] = _mm512_and_si512(_mm512_srli_epi32(v[k], 4), low4);
        }
    }
}

/* is[t] = Σ_j sc[j] Σ_{g of sub-block j} q[g] . (values 4g..4g+3 of token
 * t's activations, at a + t*as) for n_sub sub-blocks of `per` groups of
 * four: the exact integer of lanes_avx512.h's float steps, for G tokens. */
INLINE void lane_scaled_sums(const __m512i *q, const __m512i *sc, int n_sub, int per, const uint8_t *a, uint64_t as,
                             int G, __m512i *is)
{
    const __m512i zero = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int t = 0; t < G; t++) is[t] = zero;
#pragma GCC unroll 1
    for (int j = 0; j < n_sub; j++) {
        __m512i s[GROUP];
#pragma GCC unroll 8
        for (int t = 0; t < G; t++) s[t] = zero;
#pragma GCC unroll 8
        for (int k = 0; k < per; k++) {
            int g = per * j + k;
#pragma GCC unroll 8
            for (int t = 0; t < G; t++) s[t] = _mm512_dpbusd_epi32(s[t], q[g], act4(a + t * as + Q8K_OFF_QS + 4 * g));
        }
#pragma GCC unroll 8
        for (int t = 0; t < G; t++) is[t] = _mm512_add_epi32(is[t], _mm512_mullo_epi32(s[t], sc[j]));
    }
}

/* One block of 16 rows against G tokens (activation block of token t at
 * a + t*as). |Σ q*a| <= 32*15*127 per sub-block, times sc <= 63, eight of
 * them: the int32 sums cannot overflow. */
INLINE void q4k_block(const q4k_lanes *p, const uint8_t *a, uint64_t as, int G, __m512 *acc)
{
    __m512i is[GROUP];
    lane_scaled_sums(p->q, p->s.sc, 8, 8, a, as, G, is);
#pragma GCC unroll 8
    for (int t = 0; t < G; t++) {
        const uint8_t *at = a + t * as;
        acc[t] = q4k_lane_step(&p->s, is[t], q4k_lane_mins(&p->s, at), at, acc[t]);
    }
}

/* ---- Q6_K: 210-byte blocks (ql[128], qh[64], i8 scales[16], f16 d) ---- */

typedef struct q6k_lanes {
    __m512i q[64]; /* [g]: unsigned quants (q + 32) of values 4g..4g+3 */
    q6k_lane_scales s;
} q6k_lanes;

/* Value 128h + 32m + l (l < 32): low four bits from nibble m/2 of
 * ql[64h + 32(m%2) + l], top two from bits 2m of qh[32h + l]. */
INLINE void q6k_pack(const uint8_t *const rp[LANES], uint64_t off, __m512i offs, q6k_lanes *p)
{
    q6k_lane_scales_get(rp[0] + off, offs, &p->s);
    const __m512i low4 = _mm512_set1_epi8(0x0F), top2 = _mm512_set1_epi8(0x30);
#pragma GCC unroll 1
    for (int h = 0; h < 2; h++) {
        __m512i vla[8], vlb[8], vqh[8];
        transpose_16x8(rp, off + 64 * h, vla);
        transpose_16x8(rp, off + 64 * h + 32, vlb);
        transpose_16x8(rp, off + 128 + 32 * h, vqh);
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            __m512i la = vla[i], lb = vlb[i], qh = vqh[i];
            int g = 32 * h + i; /* l = 4i; m adds 8 groups */
            p->q[g] = _mm512_or_si512(_mm512_and_si512(la, low4), _mm512_and_si512(_mm512_slli_epi32(qh, 4), top2));
            p->q[g + 8] = _mm512_or_si512(_mm512_and_si512(lb, low4), _mm512_and_si512(_mm512_slli_epi32(qh, 2), top2));
            p->q[g + 16] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(la, 4), low4), _mm512_and_si512(qh, top2));
            p->q[g + 24] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(lb, 4), low4),
                                           _mm512_and_si512(_mm512_srli_epi32(qh, 2), top2));
        }
    }
}

/* One block of 16 rows against G tokens (overflow: q6k_lane_step). */
INLINE void q6k_block(const q6k_lanes *p, const uint8_t *a, uint64_t as, int G, __m512 *acc)
{
    __m512i is[GROUP];
    lane_scaled_sums(p->q, p->s.sc, 16, 4, a, as, G, is);
#pragma GCC unroll 8
    for (int t = 0; t < G; t++) {
        const uint8_t *at = a + t * as;
        acc[t] = q6k_lane_step(&p->s, is[t], q6k_lane_mins(&p->s, at), at, acc[t]);
    }
}

/* Asks for bytes [off, off + len) of rows rp[0 .. nr): the next chunk,
 * while this one is used (see lane_prefetch). */
INLINE void prefetch_rows(const uint8_t *const rp[LANES], uint64_t nr, uint64_t off, uint64_t len)
{
    for (uint64_t r = 0; r < nr; r++) lane_prefetch(rp[r] + off, len);
}

/* ---- the driver ----
 * For each group of 16 rows, for each chunk of NCHUNK blocks: repack the
 * chunk, then run every token over it in groups of GROUP (then 4, 2, 1),
 * carrying each token's 16 sums in out between chunks (a float store and
 * reload is exact, so the chunking does not change the result). */
#define LANES_TOKENS(T_, BLOCK, G)                                                                               \
    for (; t_ + (G) <= n_tok; t_ += (G)) {                                                                       \
        __m512 acc[GROUP];                                                                                       \
        for (int t = 0; t < (G); t++)                                                                            \
            acc[t] = b0 ? _mm512_maskz_loadu_ps(valid, out + (t_ + t) * os) : _mm512_setzero_ps();               \
        for (uint64_t c = 0; c < cb; c++)                                                                        \
            BLOCK(&pk[c], a_ + t_ * as + (b0 + c) * act_bytes, as, (G), acc);                                    \
        for (int t = 0; t < (G); t++) _mm512_mask_storeu_ps(out + (t_ + t) * os, valid, acc[t]);                 \
    }

#define LANES_KERNEL(NAME, LANES_T, PACK, BLOCK, BLOCK_BYTES, BLOCK_ELEMS, ACT_BYTES, NCHUNK)                     \
    void NAME(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act, uint64_t as, uint64_t n_tok,  \
              uint64_t n, float *out_, uint64_t os)                                                              \
    {                                                                                                            \
        const uint8_t *a_ = act;                                                                                 \
        const uint64_t nb = n / (BLOCK_ELEMS), act_bytes = (ACT_BYTES);                                          \
        if (!n_tok) return; /* nothing to read or write */                                                      \
        for (uint64_t r0 = 0; r0 < n_rows; r0 += LANES) {                                                        \
            uint64_t nr = n_rows - r0 < LANES ? n_rows - r0 : LANES;                                             \
            __mmask16 valid = (__mmask16)((1u << nr) - 1);                                                       \
            __m512i offs = lane_offsets(row_bytes, valid);                                                       \
            const uint8_t *rp[LANES]; /* row r, or row 0 past n_rows */                                          \
            lane_rows((const uint8_t *)w + r0 * row_bytes, row_bytes, nr, rp);                                   \
            float *out = out_ + r0;                                                                              \
            for (uint64_t b0 = 0; b0 < nb; b0 += NCHUNK) {                                                        \
                uint64_t cb = nb - b0 < NCHUNK ? nb - b0 : NCHUNK;                                                 \
                LANES_T pk[NCHUNK];                                                                               \
                for (uint64_t c = 0; c < cb; c++) PACK(rp, (b0 + c) * (BLOCK_BYTES), offs, &pk[c]);              \
                if (b0 + (NCHUNK) < nb) prefetch_rows(rp, nr, (b0 + (NCHUNK)) * (BLOCK_BYTES), (NCHUNK) * (BLOCK_BYTES)); \
                uint64_t t_ = 0;                                                                                 \
                LANES_TOKENS(t_, BLOCK, GROUP)                                                                   \
                LANES_TOKENS(t_, BLOCK, 4)                                                                       \
                LANES_TOKENS(t_, BLOCK, 2)                                                                       \
                LANES_TOKENS(t_, BLOCK, 1)                                                                       \
            }                                                                                                    \
        }                                                                                                        \
    }

LANES_KERNEL(kernel_dot_tile_q4_k_avx512, q4k_lanes, q4k_pack, q4k_block, 144, Q8K_BLOCK, Q8K_BYTES, CHUNK_K)
LANES_KERNEL(kernel_dot_tile_q6_k_avx512, q6k_lanes, q6k_pack, q6k_block, 210, Q8K_BLOCK, Q8K_BYTES, CHUNK_K)
