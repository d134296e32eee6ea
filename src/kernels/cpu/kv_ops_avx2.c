/* AVX2 attention loops. Cached rows are taken eight positions at a time:
 * an f16 or block-quantized (Q8_0, Q4_0) block of rows is converted once
 * into a small float tile (in L1) that all the group's queries then read;
 * an f32 block is read in place. Scores come out eight at a time: eight
 * per-key accumulators reduced together. */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "gguf/ggml_types.h"
#include "kernels/cpu/avx2_util.h"
#include "kernels/cpu/kv_ops.h"

#define KEYS 8

typedef struct kv_block {
    const float *row[KEYS]; /* row k of the block (past the end: row 0 again) */
    uint64_t n;             /* real rows, 1..KEYS */
    float tile[KEYS][KV_FAST_MAX_HD];
} kv_block;

INLINE const uint8_t *cached_row(const void *base, uint64_t stride, uint64_t j)
{
    return (const uint8_t *)base + j * stride;
}

/* One cached row of hd values into floats. */
static void row_f16(float *t, const uint8_t *row, uint64_t hd)
{
    for (uint64_t d = 0; d < hd; d += 8)
        _mm256_storeu_ps(t + d, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * d))));
}

void kv_store_f16_avx2(void *dst, const float *src, uint64_t hd)
{
    for (uint64_t d = 0; d < hd; d += 8)
        _mm_storeu_si128((__m128i *)((uint8_t *)dst + 2 * d),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + d), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

/* Q8_0: per block of 32, d (f16) then 32 int8. */
static void row_q8_0(float *t, const uint8_t *row, uint64_t hd)
{
    for (uint64_t b = 0; b < hd / 32; b++, row += 34, t += 32) {
        __m256 d = _mm256_set1_ps(ld_f16(row));
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(row + 2 + 8 * c)));
            _mm256_storeu_ps(t + 8 * c, _mm256_mul_ps(d, _mm256_cvtepi32_ps(q)));
        }
    }
}

/* Q4_0: per block of 32, d (f16) then 16 bytes: values 0..15 in the low
 * nibbles, 16..31 in the high ones; x = d q - 8 d (exact: as d (q - 8),
 * both products and the difference are exact in float). */
static void row_q4_0(float *t, const uint8_t *row, uint64_t hd)
{
    const __m128i lo4 = _mm_set1_epi8(0xF);
    for (uint64_t b = 0; b < hd / 32; b++, row += 18, t += 32) {
        float df = ld_f16(row);
        __m256 d = _mm256_set1_ps(df), m = _mm256_set1_ps(-8.0f * df);
        __m128i qs = _mm_loadu_si128((const __m128i *)(row + 2));
        __m128i half[2] = {_mm_and_si128(qs, lo4), _mm_and_si128(_mm_srli_epi16(qs, 4), lo4)};
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i a = _mm256_cvtepu8_epi32(half[h]), c = _mm256_cvtepu8_epi32(_mm_srli_si128(half[h], 8));
            _mm256_storeu_ps(t + 16 * h, _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(a), m));
            _mm256_storeu_ps(t + 16 * h + 8, _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(c), m));
        }
    }
}

/* Positions j0.. (up to KEYS) of the cache into b: f16 and block rows
 * converted into the tile, f32 rows pointed at in place. */
static void block_load(kv_block *b, uint32_t type, const void *base, uint64_t stride, uint64_t j0, uint64_t n_keys,
                       uint64_t hd)
{
    b->n = n_keys - j0 < KEYS ? n_keys - j0 : KEYS;
    for (uint64_t k = 0; k < KEYS; k++) {
        const uint8_t *row = cached_row(base, stride, j0 + (k < b->n ? k : 0));
        if (type == GGML_TYPE_F32) {
            b->row[k] = (const float *)row;
            continue;
        }
        if (k < b->n) {
            if (type == GGML_TYPE_Q8_0) row_q8_0(b->tile[k], row, hd);
            else if (type == GGML_TYPE_Q4_0) row_q4_0(b->tile[k], row, hd);
            else row_f16(b->tile[k], row, hd);
        }
        b->row[k] = b->tile[k < b->n ? k : 0];
    }
}

/* The eight sums of a[0..8), in order, as one vector. */
INLINE __m256 hsum8(const __m256 *a)
{
    __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
    __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
    __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* Scores of every query against the block's keys. */
static void block_scores(const kv_block *b, const float *q, uint64_t n_q, uint64_t hd, float scale, float *s,
                         uint64_t n_keys)
{
    for (uint64_t i = 0; i < n_q; i++) {
        const float *qi = q + i * hd;
        __m256 acc[KEYS];
#pragma GCC unroll 8
        for (int k = 0; k < KEYS; k++) acc[k] = _mm256_setzero_ps();
        for (uint64_t d = 0; d < hd; d += 8) {
            __m256 qv = _mm256_loadu_ps(qi + d);
#pragma GCC unroll 8
            for (int k = 0; k < KEYS; k++) acc[k] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(b->row[k] + d), acc[k]);
        }
        __m256 r = _mm256_mul_ps(hsum8(acc), _mm256_set1_ps(scale));
        float *si = s + i * n_keys;
        if (b->n == KEYS) {
            _mm256_storeu_ps(si, r);
            continue;
        }
        float tmp[KEYS];
        _mm256_storeu_ps(tmp, r);
        for (uint64_t k = 0; k < b->n; k++) si[k] = tmp[k];
    }
}

/* o[0 .. 8w) += Σ_k p[k] row[k][d .. d + 8w): w accumulators, each
 * advanced once per key (w = 8 keeps enough FMAs in flight to hide their
 * latency). */
INLINE void mix_cols(const kv_block *b, float *o, const float *p, uint64_t d, int w)
{
    __m256 acc[8];
#pragma GCC unroll 8
    for (int c = 0; c < w; c++) acc[c] = _mm256_loadu_ps(o + 8 * c);
    for (uint64_t k = 0; k < b->n; k++) {
        __m256 pk = _mm256_broadcast_ss(p + k);
#pragma GCC unroll 8
        for (int c = 0; c < w; c++) acc[c] = _mm256_fmadd_ps(pk, _mm256_loadu_ps(b->row[k] + d + 8 * c), acc[c]);
    }
#pragma GCC unroll 8
    for (int c = 0; c < w; c++) _mm256_storeu_ps(o + 8 * c, acc[c]);
}

/* out[i] += Σ_k p[i][k] row[k] over the block, 64, 32 then 8 columns at a time. */
static void block_mix(const kv_block *b, float *out, uint64_t n_q, const float *p, uint64_t n_keys, uint64_t hd)
{
    for (uint64_t i = 0; i < n_q; i++) {
        float *oi = out + i * hd;
        const float *pi = p + i * n_keys;
        uint64_t d = 0;
        for (; d + 64 <= hd; d += 64) mix_cols(b, oi + d, pi, d, 8);
        for (; d + 32 <= hd; d += 32) mix_cols(b, oi + d, pi, d, 4);
        for (; d < hd; d += 8) mix_cols(b, oi + d, pi, d, 1);
    }
}

/* The vector path: head sizes in whole vectors (whole blocks for the block
 * types) that fit the tile (f32 rows are read in place: any size); others
 * go to the scalar loops. */
static bool fast_shape(uint32_t type, uint64_t hd)
{
    if (type == GGML_TYPE_F32) return hd % 8 == 0;
    return hd % (type == GGML_TYPE_F16 ? 8 : 32) == 0 && hd <= KV_FAST_MAX_HD;
}

static void scores_blocks(uint32_t type, const float *q, uint64_t n_q, const void *k, uint64_t stride,
                          uint64_t n_keys, uint64_t hd, float scale, float *s)
{
    kv_block b;
    for (uint64_t j = 0; j < n_keys; j += KEYS) {
        block_load(&b, type, k, stride, j, n_keys, hd);
        block_scores(&b, q, n_q, hd, scale, s + j, n_keys);
    }
}

static void mix_blocks(uint32_t type, float *out, uint64_t n_q, const float *p, const void *v, uint64_t stride,
                       uint64_t n_keys, uint64_t hd)
{
    memset(out, 0, n_q * hd * sizeof *out);
    kv_block b;
    for (uint64_t j = 0; j < n_keys; j += KEYS) {
        block_load(&b, type, v, stride, j, n_keys, hd);
        block_mix(&b, out, n_q, p + j, n_keys, hd);
    }
}

#define KV_AVX2(NAME, TYPE)                                                                                         \
    void kv_scores_##NAME##_avx2(const float *q, uint64_t n_q, const void *k, uint64_t stride, uint64_t n_keys,    \
                                 uint64_t hd, float scale, float *s)                                                \
    {                                                                                                               \
        if (fast_shape(TYPE, hd)) scores_blocks(TYPE, q, n_q, k, stride, n_keys, hd, scale, s);                     \
        else kv_scores_##NAME##_ref(q, n_q, k, stride, n_keys, hd, scale, s);                                       \
    }                                                                                                               \
    void kv_mix_##NAME##_avx2(float *out, uint64_t n_q, const float *p, const void *v, uint64_t stride,            \
                              uint64_t n_keys, uint64_t hd)                                                         \
    {                                                                                                               \
        if (fast_shape(TYPE, hd)) mix_blocks(TYPE, out, n_q, p, v, stride, n_keys, hd);                             \
        else kv_mix_##NAME##_ref(out, n_q, p, v, stride, n_keys, hd);                                               \
    }

KV_AVX2(f16, GGML_TYPE_F16)
KV_AVX2(f32, GGML_TYPE_F32)
KV_AVX2(q8_0, GGML_TYPE_Q8_0)
KV_AVX2(q4_0, GGML_TYPE_Q4_0)

static float max_of(const float *x, uint64_t n)
{
    __m256 m = _mm256_set1_ps(-INFINITY);
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
    float t[8], r = -INFINITY;
    _mm256_storeu_ps(t, m);
    for (int k = 0; k < 8; k++) r = t[k] > r ? t[k] : r;
    for (; i < n; i++) r = x[i] > r ? x[i] : r;
    return r;
}

void kv_softmax_avx2(float *x, uint64_t n)
{
    float max = max_of(x, n);
    __m256 mv = _mm256_set1_ps(max), acc = _mm256_setzero_ps();
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    double sum = hsum_ps(acc);
    for (; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    __m256 inv = _mm256_set1_ps((float)(1.0 / sum));
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    for (; i < n; i++) x[i] *= (float)(1.0 / sum);
}
