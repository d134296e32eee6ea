/* The GeGLU gate of Gemma's feed-forward block: gate[i] = gelu(gate[i]) *
 * up[i], with the tanh approximation of GELU. As in llama.cpp (whose
 * outputs are this project's golden files), GELU goes through a float16
 * table: the input is rounded to f16 and the result is an f16 value; that
 * rounding moves logits by ~1e-3, more than the conformance bound. */
#ifndef STRATA_KERNELS_CPU_GEGLU_H
#define STRATA_KERNELS_CPU_GEGLU_H

#include <stdint.h>

void geglu_f16(float *gate, const float *up, uint64_t n);
/* tanh-approximation GELU of one value, in float (the table's entries). */
float gelu_tanh(float x);

#endif
