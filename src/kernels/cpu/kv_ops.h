/* The attention's loops over the KV cache, for the n_q query heads that
 * share one KV head (grouped-query attention): scores against every cached
 * key, a softmax per query, and the probability-weighted sum of the cached
 * values. Working on the whole group at once reads (and converts) each
 * cached row once per group instead of once per query head.
 *
 * Layout: q and out hold n_q rows of hd floats; s holds n_q rows of n_keys
 * scores; k and v point at this head's slice of position 0 in the cache,
 * position j is `stride` bytes further. Scalar versions are the truth; AVX2
 * (F16C + FMA) versions are chosen at run time.
 *
 * Cache element types (ggml type ids): F32, F16, and ggml's block types
 * Q8_0 (32 values: an f16 scale d and 32 int8 q, x = d q; 34 bytes) and
 * Q4_0 (an f16 d and 32 nibbles, x = d (q - 8); 18 bytes). A cached row of
 * a block type is hd / 32 whole blocks (hd a multiple of 32), so rows can
 * be moved (a sliding window) like float rows. K and V may differ. */
#ifndef STRATA_KERNELS_CPU_KV_OPS_H
#define STRATA_KERNELS_CPU_KV_OPS_H

#include <stdbool.h>
#include <stdint.h>

/* s[i][j] = scale * q[i] . k[j] */
typedef void (*kv_scores_fn)(const float *q, uint64_t n_q, const void *k, uint64_t stride, uint64_t n_keys,
                             uint64_t hd, float scale, float *s);
/* In place, over n values: x = exp(x - max) / sum. */
typedef void (*kv_softmax_fn)(float *x, uint64_t n);
/* out[i] = Σ_j p[i][j] v[j] */
typedef void (*kv_mix_fn)(float *out, uint64_t n_q, const float *p, const void *v, uint64_t stride, uint64_t n_keys,
                          uint64_t hd);

typedef struct kv_ops {
    kv_scores_fn scores;
    kv_softmax_fn softmax;
    kv_mix_fn mix;
} kv_ops;

/* For a cache of f16 (f32 = false) or f32 elements; fast = the best
 * version for this CPU, else the scalar one. */
kv_ops kv_ops_get(bool f32, bool fast);
/* For K rows of k_type and V rows of v_type (kv_type_supported). */
kv_ops kv_ops_for(uint32_t k_type, uint32_t v_type, bool fast);

/* F32, F16, Q8_0 or Q4_0. */
bool kv_type_supported(uint32_t type);
/* "f32", "f16", "q8_0", "q4_0" (llama.cpp's -ctk names); "?" otherwise. */
const char *kv_type_name(uint32_t type);
/* True for the block types (Q8_0, Q4_0): rows of whole 32-value blocks. */
bool kv_type_blocked(uint32_t type);
/* Bytes of one cached row of hd values (hd a multiple of 32 for a block type). */
uint64_t kv_row_bytes(uint32_t type, uint64_t hd);
/* Stores src[0..hd) as one cached row at dst (block types: the rounding
 * rule of llama.cpp's reference quantizer, as quantize.c). */
void kv_store_row(uint32_t type, void *dst, const float *src, uint64_t hd);

/* Scalar versions (the AVX2 ones fall back to them for head sizes that are
 * not a multiple of 8, 32 for the block types, or that are larger than
 * KV_FAST_MAX_HD for all but f32). */
void kv_scores_f16_ref(const float *q, uint64_t n_q, const void *k, uint64_t stride, uint64_t n_keys, uint64_t hd,
                       float scale, float *s);
void kv_scores_f32_ref(const float *q, uint64_t n_q, const void *k, uint64_t stride, uint64_t n_keys, uint64_t hd,
                       float scale, float *s);
void kv_softmax_ref(float *x, uint64_t n);
void kv_mix_f16_ref(float *out, uint64_t n_q, const float *p, const void *v, uint64_t stride, uint64_t n_keys,
                    uint64_t hd);
void kv_mix_f32_ref(float *out, uint64_t n_q, const float *p, const void *v, uint64_t stride, uint64_t n_keys,
                    uint64_t hd);
void kv_scores_q8_0_ref(const float *q, uint64_t n_q, const void *k, uint64_t stride, uint64_t n_keys, uint64_t hd,
                        float scale, float *s);
void kv_scores_q4_0_ref(const float *q, uint64_t n_q, const void *k, uint64_t stride, uint64_t n_keys, uint64_t hd,
                        float scale, float *s);
void kv_mix_q8_0_ref(float *out, uint64_t n_q, const float *p, const void *v, uint64_t stride, uint64_t n_keys,
                     uint64_t hd);
void kv_mix_q4_0_ref(float *out, uint64_t n_q, const float *p, const void *v, uint64_t stride, uint64_t n_keys,
                     uint64_t hd);

/* The AVX2 versions convert up to KV_FAST_MAX_HD values of a row at a time
 * (f16 and block types; larger heads go to the scalar loops). */
#define KV_FAST_MAX_HD 256
void kv_scores_f16_avx2(const float *q, uint64_t n_q, const void *k, uint64_t stride, uint64_t n_keys, uint64_t hd,
                        float scale, float *s);
void kv_scores_f32_avx2(const float *q, uint64_t n_q, const void *k, uint64_t stride, uint64_t n_keys, uint64_t hd,
                        float scale, float *s);
void kv_softmax_avx2(float *x, uint64_t n);
void kv_mix_f16_avx2(float *out, uint64_t n_q, const float *p, const void *v, uint64_t stride, uint64_t n_keys,
                     uint64_t hd);
void kv_mix_f32_avx2(float *out, uint64_t n_q, const float *p, const void *v, uint64_t stride, uint64_t n_keys,
                     uint64_t hd);
void kv_scores_q8_0_avx2(const float *q, uint64_t n_q, const void *k, uint64_t stride, uint64_t n_keys, uint64_t hd,
                         float scale, float *s);
void kv_scores_q4_0_avx2(const float *q, uint64_t n_q, const void *k, uint64_t stride, uint64_t n_keys, uint64_t hd,
                         float scale, float *s);
void kv_mix_q8_0_avx2(float *out, uint64_t n_q, const float *p, const void *v, uint64_t stride, uint64_t n_keys,
                      uint64_t hd);
void kv_mix_q4_0_avx2(float *out, uint64_t n_q, const float *p, const void *v, uint64_t stride, uint64_t n_keys,
                      uint64_t hd);
/* An f16 row (hd a multiple of 8) with F16C: the same halves as the
 * scalar conversion for every non-NaN value (both round to nearest even;
 * a NaN stays a NaN, its payload bits may differ). */
void kv_store_f16_avx2(void *dst, const float *src, uint64_t hd);

#endif
