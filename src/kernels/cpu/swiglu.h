/* The SwiGLU gate of the feed-forward block: gate[i] = silu(gate[i]) * up[i]
 * with silu(x) = x / (1 + e^-x). The scalar version is the truth; the AVX2
 * one (a vector exponential instead of expf per element) is chosen at run
 * time. */
#ifndef STRATA_KERNELS_CPU_SWIGLU_H
#define STRATA_KERNELS_CPU_SWIGLU_H

#include <stdbool.h>
#include <stdint.h>

typedef void (*swiglu_fn)(float *gate, const float *up, uint64_t n);

/* fast = the best version for this CPU, else the scalar one. */
swiglu_fn swiglu_get(bool fast);

void swiglu_ref(float *gate, const float *up, uint64_t n);
void swiglu_avx2(float *gate, const float *up, uint64_t n);

#endif
