/* Scalar reference dequantization: ggml tensor blocks -> float.
 *
 * These functions are the truth that SIMD kernels are tested against: plain
 * C, one function per tensor type, written from the GGUF/ggml block layouts
 * (see the comment above each function in dequant.c). */
#ifndef STRATA_KERNELS_CPU_DEQUANT_H
#define STRATA_KERNELS_CPU_DEQUANT_H

#include <stdbool.h>
#include <stdint.h>

#include "strata.h"

/* The 16 values of the non-linear 4-bit grid of IQ4_NL and IQ4_XS. */
extern const int8_t dequant_iq4nl_values[16];

/* True when dequant_row handles this ggml type id. */
bool dequant_supported(uint32_t type);

/* Dequantizes n elements of ggml type `type` from `src` (packed blocks, as
 * stored in a GGUF file) into dst[0..n). n must be a multiple of the type's
 * block size. Errors: STRATA_E_UNSUPPORTED for a type without a dequantizer
 * (the message names the type), STRATA_E_INVALID for a bad n. */
strata_status dequant_row(uint32_t type, const void *src, float *dst, uint64_t n,
                          strata_error *err);

#endif
