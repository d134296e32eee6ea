/* Scalar reference quantization: float -> ggml tensor blocks.
 *
 * Q8_0, Q4_0 and Q4_1 follow the format's simple deterministic rule (the one
 * llama.cpp's reference quantizer uses without an importance matrix), so
 * their output is byte-identical to llama-quantize's for the same input.
 * The K-quants (Q4_K, Q5_K, Q6_K) use strata's own per-sub-block scale
 * search minimizing squared error; their blocks are valid for any reader of
 * the format, but are not byte-identical to llama.cpp's. */
#ifndef STRATA_KERNELS_CPU_QUANTIZE_H
#define STRATA_KERNELS_CPU_QUANTIZE_H

#include <stdbool.h>
#include <stdint.h>

#include "strata.h"

/* True when quantize_row can produce this ggml type id: F32, F16, BF16,
 * Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K. */
bool quantize_supported(uint32_t type);

/* Quantizes src[0..n) into n / block_elems blocks of `type` at dst
 * (ggml_row_bytes(type, n) bytes; no alignment needed). n must be a multiple
 * of the block size. Rows are independent, so a tensor can be quantized row
 * by row (streaming). Inputs must be finite, and for the block types no
 * larger than the f16 scales allow (|x| up to about 65504 * 127 for Q8_0,
 * about 4e6 for the K-quants). Errors: STRATA_E_UNSUPPORTED naming the type,
 * STRATA_E_INVALID for a bad n. */
strata_status quantize_row(uint32_t type, const float *src, void *dst, uint64_t n,
                           strata_error *err);

#endif
