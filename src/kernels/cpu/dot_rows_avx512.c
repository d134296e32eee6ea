/* AVX-512 decode (kernel_dot_rows_fn) of Q5_K: its tile kernel with one
 * token. The tile kernel gives `dot`'s results bit for bit (the AVX2
 * kernels' integer sums and float steps), so this is the AVX2 dot_rows's
 * result too, and it unpacks weights with 512-bit VNNI sums: in cache,
 * 1.5-1.7x the AVX2 two-row kernels' rate on this VM (measured for the
 * Q4_K and Q6_K tiles of the same scheme), which leaves decode
 * memory-bound at fewer cycles per byte. It runs a row straight through,
 * as decode wants. (Q4_K, Q6_K and Q8_0 have one-token kernels of their
 * own: dot_q4_k_avx512.c and its siblings.) */
#include "kernels/cpu/act_quant.h"

#define TILE_ROWS_KERNEL(DOT_ROWS, DOT_TILE)                                                                 \
    void DOT_ROWS(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act, uint64_t n, float *out) \
    {                                                                                                        \
        DOT_TILE(w, row_bytes, n_rows, act, 0, 1, n, out, 1);                                                \
    }

TILE_ROWS_KERNEL(kernel_dot_rows_q5_k_avx512, kernel_dot_tile_q5_k_avx512)
