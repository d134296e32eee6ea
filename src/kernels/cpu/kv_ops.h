/* The attention's inner loops over the KV cache: q . k for a cached key row
 * and out += p * v for a cached value row, for f16 and f32 caches. Scalar
 * versions are the truth; AVX2 (F16C + FMA) versions are chosen at run
 * time. n is a head dimension (any length). */
#ifndef STRATA_KERNELS_CPU_KV_OPS_H
#define STRATA_KERNELS_CPU_KV_OPS_H

#include <stdbool.h>
#include <stdint.h>

typedef float (*kv_dot_fn)(const float *q, const void *k, uint64_t n);
typedef void (*kv_axpy_fn)(float *out, float p, const void *v, uint64_t n);

typedef struct kv_ops {
    kv_dot_fn dot;
    kv_axpy_fn axpy;
} kv_ops;

/* For a cache of f16 (f32 = false) or f32 elements; fast = the best
 * version for this CPU, else the scalar one. */
kv_ops kv_ops_get(bool f32, bool fast);

float kv_dot_f16_avx2(const float *q, const void *k, uint64_t n);
void kv_axpy_f16_avx2(float *out, float p, const void *v, uint64_t n);
float kv_dot_f32_avx2(const float *q, const void *k, uint64_t n);
void kv_axpy_f32_avx2(float *out, float p, const void *v, uint64_t n);

#endif
