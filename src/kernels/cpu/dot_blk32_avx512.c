/* AVX-512 VNNI tile kernels of Q8_0 and Q4_0 weights with Q8_0 activations
 * (prompt batches). The scheme is dot_blk32_avx2.c's, step for step: groups of
 * four blocks, one float accumulator per block of a group, each block's
 * exact int32 sums in the same 8 lanes (lane l: Σ_{k<4} q[4l+k] a[4l+k]),
 * so the results equal the AVX2 kernel's bit for bit.
 *
 * vpdpbusd multiplies unsigned by signed bytes and sums groups of four into
 * int32 without intermediate saturation. For Q8_0 the tile (below) makes
 * the activations unsigned by adding 128 and subtracts the weights' share
 * of it exactly; the few blocks after the last group of four move the
 * weights' signs onto the activations instead (a masked subtract negates a
 * where q < 0; |q| <= 128 is the unsigned operand). Q4_0's quants u are
 * unsigned already: Σ (u - 8) a = Σ u a - 8 Σ a, the second term per
 * group of four bytes from the activations alone. */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/act_quant.h"
#include "kernels/cpu/avx2_util.h"
#include "kernels/cpu/avx512_util.h"
#include "kernels/cpu/blk32_util.h"

#define W_BYTES 34   /* Q8_0 weights: as ACT_BYTES (blk32_util.h) */
#define Q4_0_BYTES 18 /* Q4_0: f16 d, 16 bytes of nibbles */

/* The weight types of this file's tile (a constant in every inlined copy). */
typedef enum blk_kind { BLK_Q8_0 = 0, BLK_Q4_0 = 1 } blk_kind;

INLINE uint64_t blk_bytes(blk_kind k) { return k == BLK_Q4_0 ? Q4_0_BYTES : W_BYTES; }

/* One weight block's |q| and sign mask, shared by the tile's tokens. */
typedef struct q8_w {
    __m256i uq;
    __mmask32 neg;
} q8_w;

INLINE q8_w q8_unpack(const uint8_t *w)
{
    __m256i q = _mm256_loadu_si256((const __m256i *)(w + 2));
    return (q8_w){_mm256_abs_epi8(q), _mm256_movepi8_mask(q)};
}

/* Σ q*a of one block as 8 int32 (the activation quants at qa). */
INLINE __m256i q8_sum(q8_w w, const uint8_t *qa)
{
    __m256i a = _mm256_loadu_si256((const __m256i *)qa);
    a = _mm256_mask_sub_epi8(a, w.neg, _mm256_setzero_si256(), a);
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), w.uq, a);
}

/* 16 bytes at p: elements 0..15 in the low nibbles, 16..31 in the high
 * ones -> 32 values 0..15 in element order. */
INLINE __m256i nibbles(const uint8_t *p)
{
    __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    return _mm256_and_si256(_mm256_srlv_epi64(v, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(0x0F));
}

/* Σ (u - 8) * a of one Q4_0 block as 8 int32 */
INLINE __m256i q4_0_sum(const uint8_t *w, const uint8_t *qa)
{
    const __m256i zero = _mm256_setzero_si256();
    __m256i a = _mm256_loadu_si256((const __m256i *)qa);
    return _mm256_sub_epi32(_mm256_dpbusd_epi32(zero, nibbles(w + 2), a),
                            _mm256_dpbusd_epi32(zero, _mm256_set1_epi8(8), a));
}

/* One block of one token (the blocks after the last group of four). */
INLINE void blk_one(blk_kind k, const uint8_t *w, const uint8_t *a, acc32 *acc)
{
    float d = ld_f16(w) * ld_f16(a);
    __m256i si = k == BLK_Q4_0 ? q4_0_sum(w, a + 2) : q8_sum(q8_unpack(w), a + 2);
    acc->b[0] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(si), acc->b[0]);
}

/* ---- the tile ----
 * Activations go through a scratch copy first, made once per range of
 * Q8_RANGE blocks and group of Q8_TOK tokens for up to Q8_ROWS rows: the
 * quants with 128 added (a ^ 0x80, now unsigned: the vpdpbusd operand) and
 * packed 32 bytes per block, so one 64-byte load holds two blocks, and
 * each block's scale d_a as float, repeated 8 times. Then per token and
 * pair of blocks: one vpdpbusd, one multiply for the scales d_w*d_a, one
 * conversion and one fused multiply-add (AVX2 takes twice as many, per
 * block). The +128 adds 128 * Σ q per group of four bytes, taken off by
 * starting each sum at -128 * Σ q (computed per weight block, shared by
 * the tokens). Lanes and float steps stay AVX2's: the low / high half of
 * accumulator p of a token is AVX2's accumulator of block 2p / 2p+1 of
 * each group of four. Rows keep their accumulators in memory between
 * ranges (same order of operations). */
#define Q8_RANGE 32 /* blocks per scratch range: a multiple of four */
#define Q8_TOK 8
#define Q8_ROWS 16

typedef struct q8_scratch {
    _Alignas(64) uint8_t q[Q8_TOK][Q8_RANGE * 32]; /* Q8_0: a ^ 0x80; Q4_0: a */
    _Alignas(64) float d[Q8_TOK][Q8_RANGE * 8];
    _Alignas(64) int32_t c[Q8_TOK][Q8_RANGE * 8]; /* Q4_0: -8 * Σ a per four bytes */
} q8_scratch;

/* The scratch copy of T tokens' activation blocks b0 .. b0 + nbk. */
INLINE void blk_prepare(blk_kind k, q8_scratch *s, const uint8_t *a, uint64_t as, int T, uint64_t b0, uint64_t nbk)
{
    const __m256i top = _mm256_set1_epi8((char)0x80), eight = _mm256_set1_epi8(8), zero = _mm256_setzero_si256();
    for (int t = 0; t < T; t++)
        for (uint64_t i = 0; i < nbk; i++) {
            const uint8_t *blk = a + t * as + (b0 + i) * ACT_BYTES;
            __m256i q = _mm256_loadu_si256((const __m256i *)(blk + 2));
            _mm256_store_ps(s->d[t] + 8 * i, _mm256_set1_ps(ld_f16(blk)));
            if (k == BLK_Q4_0) {
                _mm256_store_si256((__m256i *)(s->q[t] + 32 * i), q);
                __m256i c = _mm256_sub_epi32(zero, _mm256_dpbusd_epi32(zero, eight, q));
                _mm256_store_si256((__m256i *)(s->c[t] + 8 * i), c);
            } else {
                _mm256_store_si256((__m256i *)(s->q[t] + 32 * i), _mm256_xor_si256(q, top));
            }
        }
}

/* Weight blocks i .. i+3 of a row (at w): quants of blocks 2p, 2p+1 in q[p]
 * (Q4_0: unpacked to 0..15), for Q8_0 the sums' starting values
 * -128 * Σ q in neg[p], d_w repeated 8 times per block in dw[p]. */
INLINE void blk_weights4(blk_kind k, const uint8_t *w, __m512i q[2], __m512i neg[2], __m512 dw[2])
{
    const __m512i zero = _mm512_setzero_si512(), top = _mm512_set1_epi8((char)0x80);
    const uint64_t wb = blk_bytes(k);
    __m512 d4 = _mm512_castps128_ps512(f16x4(w, wb));
#pragma GCC unroll 2
    for (int p = 0; p < 2; p++) {
        const uint8_t *b = w + 2 * p * wb;
        if (k == BLK_Q4_0) {
            q[p] = _mm512_inserti64x4(_mm512_castsi256_si512(nibbles(b + 2)), nibbles(b + wb + 2), 1);
        } else {
            __m256i lo = _mm256_loadu_si256((const __m256i *)(b + 2));
            __m256i hi = _mm256_loadu_si256((const __m256i *)(b + wb + 2));
            q[p] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
            neg[p] = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, top, q[p]));
        }
        __m512i idx = _mm512_inserti64x4(_mm512_set1_epi32(2 * p), _mm256_set1_epi32(2 * p + 1), 1);
        dw[p] = _mm512_permutexvar_ps(idx, d4);
    }
}

/* Scratch blocks 0 .. nbk (a multiple of four) of one row at w (its block
 * b0) against T tokens; acc[t][p] as described above. */
INLINE void blk_range(blk_kind k, const uint8_t *w, const q8_scratch *s, int T, uint64_t nbk, __m512 acc[][2])
{
    for (uint64_t i = 0; i < nbk; i += 4) {
        __m512i q[2], neg[2];
        __m512 dw[2];
        blk_weights4(k, w + i * blk_bytes(k), q, neg, dw);
#pragma GCC unroll 8
        for (int t = 0; t < T; t++)
#pragma GCC unroll 2
            for (int p = 0; p < 2; p++) {
                __m512i qa = _mm512_load_si512((const void *)(s->q[t] + 32 * (i + 2 * p)));
                __m512 d = _mm512_mul_ps(dw[p], _mm512_load_ps(s->d[t] + 8 * (i + 2 * p)));
                /* Q8_0: u8 a + 128 times s8 q; Q4_0: u8 q times s8 a */
                __m512i si = k == BLK_Q4_0
                                 ? _mm512_dpbusd_epi32(_mm512_load_si512((const void *)(s->c[t] + 8 * (i + 2 * p))),
                                                       q[p], qa)
                                 : _mm512_dpbusd_epi32(neg[p], qa, q[p]);
                acc[t][p] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(si), acc[t][p]);
            }
    }
}

/* out[t * os + r] for rows r < R (<= Q8_ROWS, at w + r * rb) and T tokens
 * (<= Q8_TOK, at a + t * as), n = 32 * nb elements. */
INLINE void blk_group(blk_kind k, const uint8_t *w, uint64_t rb, int R, const uint8_t *a, uint64_t as, int T,
                      float *out, uint64_t os, uint64_t nb)
{
    q8_scratch s;
    __m512 state[Q8_ROWS][Q8_TOK][2];
    uint64_t full = nb / 4 * 4;
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) state[r][t][0] = state[r][t][1] = _mm512_setzero_ps();
    for (uint64_t b0 = 0; b0 < full; b0 += Q8_RANGE) {
        uint64_t nbk = full - b0 < Q8_RANGE ? full - b0 : Q8_RANGE;
        blk_prepare(k, &s, a, as, T, b0, nbk);
        for (int r = 0; r < R; r++) {
            __m512 acc[Q8_TOK][2];
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) acc[t][0] = state[r][t][0], acc[t][1] = state[r][t][1];
            blk_range(k, w + r * rb + b0 * blk_bytes(k), &s, T, nbk, acc);
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) state[r][t][0] = acc[t][0], state[r][t][1] = acc[t][1];
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) {
            /* blk32_util.h's accumulators, as AVX2's driver has them (the min term is zero for these types) */
            acc32 acc = {.b = {_mm512_castps512_ps256(state[r][t][0]), _mm512_extractf32x8_ps(state[r][t][0], 1),
                               _mm512_castps512_ps256(state[r][t][1]), _mm512_extractf32x8_ps(state[r][t][1], 1)},
                         .m = _mm256_setzero_ps()};
            for (uint64_t i = full; i < nb; i++)
                blk_one(k, w + r * rb + i * blk_bytes(k), a + t * as + i * ACT_BYTES, &acc);
            out[t * os + r] = acc32_result(&acc);
        }
}

/* Each type's group sizes (8, 4, 2, 1 tokens) as functions, and its tile
 * kernel: rows in chunks of Q8_ROWS outside (the engine passes 16), token
 * groups of 8 inside, then the last 1..7 tokens as groups of 4, 2 and 1. */
typedef void (*group_fn)(const uint8_t *, uint64_t, int, const uint8_t *, uint64_t, float *, uint64_t, uint64_t);

#define BLK_GROUP(NAME, KIND, T)                                                                                  \
    static void NAME(const uint8_t *w, uint64_t rb, int R, const uint8_t *a, uint64_t as, float *out, uint64_t os, \
                     uint64_t nb)                                                                                 \
    {                                                                                                             \
        blk_group(KIND, w, rb, R, a, as, T, out, os, nb);                                                        \
    }

BLK_GROUP(q8_0_group8, BLK_Q8_0, 8)
BLK_GROUP(q8_0_group4, BLK_Q8_0, 4)
BLK_GROUP(q8_0_group2, BLK_Q8_0, 2)
BLK_GROUP(q8_0_group1, BLK_Q8_0, 1)
BLK_GROUP(q4_0_group8, BLK_Q4_0, 8)
BLK_GROUP(q4_0_group4, BLK_Q4_0, 4)
BLK_GROUP(q4_0_group2, BLK_Q4_0, 2)
BLK_GROUP(q4_0_group1, BLK_Q4_0, 1)

static void blk_tile(const group_fn groups[4], const uint8_t *w, uint64_t row_bytes, uint64_t n_rows,
                     const uint8_t *act, uint64_t act_row_bytes, uint64_t n_tok, uint64_t n, float *out,
                     uint64_t out_stride)
{
    static const uint64_t sizes[] = {8, 4, 2, 1};
    for (uint64_t r0 = 0; r0 < n_rows; r0 += Q8_ROWS) {
        int R = (int)(n_rows - r0 < Q8_ROWS ? n_rows - r0 : Q8_ROWS);
        uint64_t t0 = 0;
        for (int g = 0; g < 4; g++)
            for (; t0 + sizes[g] <= n_tok; t0 += sizes[g])
                groups[g](w + r0 * row_bytes, row_bytes, R, act + t0 * act_row_bytes, act_row_bytes,
                          out + t0 * out_stride + r0, out_stride, n / 32);
    }
}

void kernel_dot_tile_q8_0_avx512(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act,
                                 uint64_t act_row_bytes, uint64_t n_tok, uint64_t n, float *out, uint64_t out_stride)
{
    static const group_fn groups[] = {q8_0_group8, q8_0_group4, q8_0_group2, q8_0_group1};
    blk_tile(groups, w, row_bytes, n_rows, act, act_row_bytes, n_tok, n, out, out_stride);
}

void kernel_dot_tile_q4_0_avx512(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act,
                                 uint64_t act_row_bytes, uint64_t n_tok, uint64_t n, float *out, uint64_t out_stride)
{
    static const group_fn groups[] = {q4_0_group8, q4_0_group4, q4_0_group2, q4_0_group1};
    blk_tile(groups, w, row_bytes, n_rows, act, act_row_bytes, n_tok, n, out, out_stride);
}
