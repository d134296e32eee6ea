/* Kernel selection and activation preparation. Fast kernels register in
 * kernels_fast.c (the only place that knows which ISA builds exist). */
#include <string.h>

#include "gguf/ggml_types.h"
#include "kernels/cpu/act_quant.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/quantize.h"

/* Provided by kernels_fast.c: the fastest kernel this CPU supports for the
 * type, or NULL when only the reference exists. */
const kernel_desc *kernel_fast(uint32_t weight_type);

const kernel_desc *kernel_select(uint32_t weight_type, kernel_mode mode)
{
    if (mode == KERNEL_FAST) {
        const kernel_desc *k = kernel_fast(weight_type);
        if (k) return k;
    }
    return kernel_reference(weight_type);
}

void kernel_dot_rows(const kernel_desc *k, const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act,
                     uint64_t n, float *out)
{
    if (k->dot_rows) {
        k->dot_rows(w, row_bytes, n_rows, act, n, out);
        return;
    }
    for (uint64_t r = 0; r < n_rows; r++) k->dot((const uint8_t *)w + r * row_bytes, act, n, &out[r]);
}

void kernel_dot_tile(const kernel_desc *k, const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act,
                     uint64_t act_row_bytes, uint64_t n_tok, uint64_t n, float *out, uint64_t out_stride)
{
    if (k->dot_tile) {
        k->dot_tile(w, row_bytes, n_rows, act, act_row_bytes, n_tok, n, out, out_stride);
        return;
    }
    for (uint64_t t = 0; t < n_tok; t++)
        kernel_dot_rows(k, w, row_bytes, n_rows, (const uint8_t *)act + t * act_row_bytes, n, out + t * out_stride);
}

uint64_t kernel_act_bytes(uint32_t act_type, uint64_t n)
{
    return act_type == GGML_TYPE_F32 ? n * sizeof(float) : ggml_row_bytes(act_type, n);
}

void kernel_prepare_act(uint32_t act_type, const float *x, void *dst, uint64_t n)
{
    if (act_type == GGML_TYPE_F32) memcpy(dst, x, n * sizeof(float));
    else if (act_type == GGML_TYPE_Q8_0) act_quant_q8_0(x, dst, n);
    else if (act_type == GGML_TYPE_Q8_K) act_quant_q8_k(x, dst, n);
    else quantize_row(act_type, x, dst, n, NULL);
}
