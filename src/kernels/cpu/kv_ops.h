/* The attention's loops over the KV cache, for the n_q query heads that
 * share one KV head (grouped-query attention): scores against every cached
 * key, a softmax per query, and the probability-weighted sum of the cached
 * values. Working on the whole group at once reads (and converts) each
 * cached row once per group instead of once per query head.
 *
 * Layout: q and out hold n_q rows of hd floats; s holds n_q rows of n_keys
 * scores; k and v point at this head's slice of position 0 in the cache,
 * position j is `stride` bytes further. Scalar versions are the truth; AVX2
 * (F16C + FMA) versions are chosen at run time. */
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

/* Scalar versions (the AVX2 ones fall back to them for head sizes that are
 * not a multiple of 8 or larger than KV_FAST_MAX_HD). */
void kv_scores_f16_ref(const float *q, uint64_t n_q, const void *k, uint64_t stride, uint64_t n_keys, uint64_t hd,
                       float scale, float *s);
void kv_scores_f32_ref(const float *q, uint64_t n_q, const void *k, uint64_t stride, uint64_t n_keys, uint64_t hd,
                       float scale, float *s);
void kv_softmax_ref(float *x, uint64_t n);
void kv_mix_f16_ref(float *out, uint64_t n_q, const float *p, const void *v, uint64_t stride, uint64_t n_keys,
                    uint64_t hd);
void kv_mix_f32_ref(float *out, uint64_t n_q, const float *p, const void *v, uint64_t stride, uint64_t n_keys,
                    uint64_t hd);

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

#endif
