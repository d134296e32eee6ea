/* Dot-product kernels of the CPU back end: out = Σ dequant(w_row)[i] · x[i].
 *
 * A kernel consumes activations in the format it names (`act_type`): the
 * reference kernels take plain floats and do exact dequantization plus float
 * math (the truth the fast kernels are tested against); fast kernels may take
 * activations quantized to Q8_0 or Q8_K (as llama.cpp does), which trades a
 * little precision for integer SIMD dot products. The engine converts each
 * activation row once with kernel_prepare_act and reuses it for every weight
 * row of the matrix. */
#ifndef STRATA_KERNELS_CPU_KERNELS_H
#define STRATA_KERNELS_CPU_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

typedef enum kernel_mode {
    KERNEL_FAST = 0,      /* best kernel for this CPU (the default: zero value) */
    KERNEL_REFERENCE = 1, /* scalar, exact dequantization, float activations */
} kernel_mode;

/* One weight row (n elements in the kernel's weight type) against one
 * prepared activation row; writes the dot product to *out. */
typedef void (*kernel_dot_fn)(const void *w_row, const void *act, uint64_t n, float *out);

/* n_rows weight rows (row r at w + r * row_bytes) against one prepared
 * activation row: out[r] = the dot product of row r, bit for bit what
 * `dot` gives. Kernels that have one run two rows at a time, sharing work
 * on the activations, and read two weight streams from RAM at once. */
typedef void (*kernel_dot_rows_fn)(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act, uint64_t n,
                                   float *out);

/* A tile: n_rows weight rows against n_tok prepared activation rows (token
 * t at act + t * act_row_bytes): out[t * out_stride + r] = the dot product
 * of row r with token t, bit for bit what `dot` gives. Prompt batches: a
 * kernel unpacks each weight block once and uses it for several tokens. */
typedef void (*kernel_dot_tile_fn)(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act,
                                   uint64_t act_row_bytes, uint64_t n_tok, uint64_t n, float *out,
                                   uint64_t out_stride);

typedef struct kernel_desc {
    uint32_t weight_type;
    uint32_t act_type;    /* GGML_TYPE_F32, GGML_TYPE_Q8_0 or GGML_TYPE_Q8_K */
    kernel_dot_fn dot;
    kernel_dot_rows_fn dot_rows; /* NULL when the kernel has none: use kernel_dot_rows */
    kernel_dot_tile_fn dot_tile; /* NULL when the kernel has none: use kernel_dot_tile */
    const char *isa;      /* "scalar", "avx2", "avx512" */
} kernel_desc;

/* The kernel for weights of a type, or NULL when the engine cannot run the
 * type. In KERNEL_FAST mode, falls back to the reference where no faster
 * kernel exists for this CPU. */
const kernel_desc *kernel_select(uint32_t weight_type, kernel_mode mode);

/* out[r] = dot product of weight row r (at w + r * row_bytes) with the
 * prepared activation row act, for r < n_rows: k->dot_rows when the kernel
 * has one, else k->dot row by row. The one entry for callers. */
void kernel_dot_rows(const kernel_desc *k, const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act,
                     uint64_t n, float *out);

/* out[t * out_stride + r] = dot product of weight row r with prepared
 * activation row t (at act + t * act_row_bytes), for r < n_rows and
 * t < n_tok: k->dot_tile when the kernel has one, else kernel_dot_rows
 * token by token. The one entry for callers. */
void kernel_dot_tile(const kernel_desc *k, const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act,
                     uint64_t act_row_bytes, uint64_t n_tok, uint64_t n, float *out, uint64_t out_stride);

/* Bytes of one prepared activation row of n elements. */
uint64_t kernel_act_bytes(uint32_t act_type, uint64_t n);

/* Converts n floats into act_type at dst (kernel_act_bytes bytes). n must be
 * a multiple of the act type's block (32 for Q8_0, 256 for Q8_K). */
void kernel_prepare_act(uint32_t act_type, const float *x, void *dst, uint64_t n);

/* The reference kernel of a type (what kernel_select returns in reference
 * mode), exposed for tests. */
const kernel_desc *kernel_reference(uint32_t weight_type);

#endif
