/* AVX-512 decode (kernel_dot_rows_fn) of the K-quants: their tile kernel
 * with one token. The tile kernels give `dot`'s results bit for bit (the
 * AVX2 kernels' integer sums and float steps), so these are the AVX2
 * dot_rows's results too, and they unpack weights with 512-bit VNNI sums:
 * in cache, 1.5-1.7x the AVX2 two-row kernels' rate on this VM (Q4_K,
 * Q6_K), which leaves decode memory-bound at fewer cycles per byte (more
 * of the bandwidth per thread, less lost when another process takes CPU
 * time). They run a row straight through, as decode wants. Not Q8_0 and
 * Q4_0: their tile kernel walks ranges of blocks across all the rows, a
 * stream per row, which from RAM ran at 0.3-0.4x the AVX2 two-row kernel. */
#include "kernels/cpu/act_quant.h"

#define TILE_ROWS_KERNEL(DOT_ROWS, DOT_TILE)                                                                 \
    void DOT_ROWS(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act, uint64_t n, float *out) \
    {                                                                                                        \
        DOT_TILE(w, row_bytes, n_rows, act, 0, 1, n, out, 1);                                                \
    }

TILE_ROWS_KERNEL(kernel_dot_rows_q4_k_avx512, kernel_dot_tile_q4_k_avx512)
TILE_ROWS_KERNEL(kernel_dot_rows_q5_k_avx512, kernel_dot_tile_q5_k_avx512)
TILE_ROWS_KERNEL(kernel_dot_rows_q6_k_avx512, kernel_dot_tile_q6_k_avx512)
