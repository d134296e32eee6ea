/* Prepared activation rows for the fast kernels, and the fast kernels that
 * consume them.
 *
 * Q8_0 (34 bytes / 32 values): f16 d, i8 q[32]; x ~ d*q, by the format's
 * deterministic rule (the bytes quantize_row writes).
 * Q8_K (292 bytes / 256 values): f32 d, i8 q[256], i16 bsums[16] where
 * bsums[i] = q[16i] + ... + q[16i+15]; x ~ d*q. The K-quant kernels use the
 * bsums to apply the weights' per-sub-block offsets (mins) once per 16
 * values instead of once per value.
 * Both are packed little-endian with no alignment: rows follow each other
 * at 34*n/32 and 292*n/256 bytes.
 *
 * Every quantized activation lies in [-127, 127] (never -128): the AVX2
 * kernels rely on this, negating activations with _mm256_sign_epi8. */
#ifndef STRATA_KERNELS_CPU_ACT_QUANT_H
#define STRATA_KERNELS_CPU_ACT_QUANT_H

#include <stdint.h>

#define Q8K_BLOCK 256
#define Q8K_BYTES 292
#define Q8K_OFF_QS 4
#define Q8K_OFF_BSUMS 260

/* x[0..n) -> Q8_0 blocks at dst; n a multiple of 32. Byte-identical to
 * quantize_row(GGML_TYPE_Q8_0) whichever version runs. */
void act_quant_q8_0(const float *x, void *dst, uint64_t n);
/* x[0..n) -> Q8_K blocks at dst; n a multiple of 256. d = max|x| / 127,
 * q = x * (127 / max|x|) rounded to nearest (ties to even), so every value
 * is within d/2 of x. Byte-identical whichever version runs. */
void act_quant_q8_k(const float *x, void *dst, uint64_t n);

/* The individual versions (the dispatchers above pick one), for tests. */
void act_quant_q8_k_scalar(const float *x, void *dst, uint64_t n);
void act_quant_q8_0_avx2(const float *x, void *dst, uint64_t n);
void act_quant_q8_k_avx2(const float *x, void *dst, uint64_t n);

/* The fast kernels prefetch the weight bytes this far ahead of the ones
 * they read: decode streams weights from RAM, and the hardware prefetchers
 * alone leave 10-15% of the bandwidth unused here (measured with
 * bench/bench_kernels.c: 1-2 KiB ahead is best, 512 B too little). 2 KiB is
 * about the memory latency (~120 ns) times one core's share of the
 * bandwidth (~10 GB/s), with a margin. Prefetching past the end of a row
 * reaches into the next row, which is usually read next; past the end of
 * the mapping it is harmless (prefetches never fault). */
#define KERNEL_PREFETCH_BYTES 2048

/* Prefetches [p, p + bytes) + KERNEL_PREFETCH_BYTES, one hint per 64-byte
 * line step. Consecutive calls over a stream touch every line. */
static inline void kernel_prefetch(const void *p, uint64_t bytes)
{
    for (uint64_t o = 0; o < bytes; o += 64) __builtin_prefetch((const char *)p + KERNEL_PREFETCH_BYTES + o, 0, 3);
}

/* Fast dot kernels (kernel_dot_fn), registered in kernels_fast.c. The
 * suffix names the instruction set the file is compiled for; the comment
 * the activation format each expects. */
void kernel_dot_f32_avx2(const void *w, const void *act, uint64_t n, float *out);    /* F32 */
void kernel_dot_f16_avx2(const void *w, const void *act, uint64_t n, float *out);    /* F32 */
void kernel_dot_bf16_avx2(const void *w, const void *act, uint64_t n, float *out);   /* F32 */
void kernel_dot_q8_0_avx2(const void *w, const void *act, uint64_t n, float *out);   /* Q8_0 */
void kernel_dot_q4_0_avx2(const void *w, const void *act, uint64_t n, float *out);   /* Q8_0 */
void kernel_dot_q4_1_avx2(const void *w, const void *act, uint64_t n, float *out);   /* Q8_0 */
void kernel_dot_q5_0_avx2(const void *w, const void *act, uint64_t n, float *out);   /* Q8_0 */
void kernel_dot_q5_1_avx2(const void *w, const void *act, uint64_t n, float *out);   /* Q8_0 */
void kernel_dot_iq4_nl_avx2(const void *w, const void *act, uint64_t n, float *out); /* Q8_0 */
void kernel_dot_q2_k_avx2(const void *w, const void *act, uint64_t n, float *out);   /* Q8_K */
void kernel_dot_q3_k_avx2(const void *w, const void *act, uint64_t n, float *out);   /* Q8_K */
void kernel_dot_q4_k_avx2(const void *w, const void *act, uint64_t n, float *out);   /* Q8_K */
void kernel_dot_q5_k_avx2(const void *w, const void *act, uint64_t n, float *out);   /* Q8_K */
void kernel_dot_q6_k_avx2(const void *w, const void *act, uint64_t n, float *out);   /* Q8_K */
void kernel_dot_iq4_xs_avx2(const void *w, const void *act, uint64_t n, float *out); /* Q8_K */

/* Fast multi-row kernels (kernel_dot_rows_fn). */
void kernel_dot_rows_q8_0_avx2(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act, uint64_t n,
                               float *out);
void kernel_dot_rows_q4_0_avx2(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act, uint64_t n,
                               float *out);
void kernel_dot_rows_q4_1_avx2(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act, uint64_t n,
                               float *out);
void kernel_dot_rows_q5_0_avx2(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act, uint64_t n,
                               float *out);
void kernel_dot_rows_q5_1_avx2(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act, uint64_t n,
                               float *out);
void kernel_dot_rows_iq4_nl_avx2(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act, uint64_t n,
                                 float *out);
void kernel_dot_rows_q2_k_avx2(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act, uint64_t n,
                               float *out);
void kernel_dot_rows_q3_k_avx2(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act, uint64_t n,
                               float *out);
void kernel_dot_rows_q4_k_avx2(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act, uint64_t n,
                               float *out);
void kernel_dot_rows_q5_k_avx2(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act, uint64_t n,
                               float *out);
void kernel_dot_rows_q6_k_avx2(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act, uint64_t n,
                               float *out);

/* AVX-512 decode kernels of F16 and BF16 (F32 activations) and IQ4_XS
 * (Q8_K; the AVX2 kernel's results bit for bit). */
void kernel_dot_f16_avx512(const void *w, const void *act, uint64_t n, float *out);
void kernel_dot_bf16_avx512(const void *w, const void *act, uint64_t n, float *out);
void kernel_dot_iq4_xs_avx512(const void *w, const void *act, uint64_t n, float *out);
/* The decode of Q5_K: its AVX-512 tile with one token (dot_rows_avx512.c;
 * the AVX2 dot_rows's results bit for bit). */
void kernel_dot_rows_q5_k_avx512(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act, uint64_t n,
                                 float *out);
/* AVX-512 decode of Q4_1, Q5_0, Q5_1 and IQ4_NL (dot_blk32_pairs_avx512.c:
 * two blocks per vector; the AVX2 kernels' results bit for bit). */
void kernel_dot_q4_1_avx512(const void *w, const void *act, uint64_t n, float *out);
void kernel_dot_q5_0_avx512(const void *w, const void *act, uint64_t n, float *out);
void kernel_dot_q5_1_avx512(const void *w, const void *act, uint64_t n, float *out);
void kernel_dot_iq4_nl_avx512(const void *w, const void *act, uint64_t n, float *out);
void kernel_dot_rows_q4_1_avx512(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act, uint64_t n,
                                 float *out);
void kernel_dot_rows_q5_0_avx512(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act, uint64_t n,
                                 float *out);
void kernel_dot_rows_q5_1_avx512(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act, uint64_t n,
                                 float *out);
void kernel_dot_rows_iq4_nl_avx512(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act, uint64_t n,
                                   float *out);
/* AVX-512 decode of Q2_K and Q3_K (dot_k16_avx512.c: two groups of 32
 * quants per vector; the AVX2 kernels' results bit for bit). */
void kernel_dot_q2_k_avx512(const void *w, const void *act, uint64_t n, float *out);
void kernel_dot_q3_k_avx512(const void *w, const void *act, uint64_t n, float *out);
void kernel_dot_rows_q2_k_avx512(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act, uint64_t n,
                                 float *out);
void kernel_dot_rows_q3_k_avx512(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act, uint64_t n,
                                 float *out);


/* Fast tile kernels (kernel_dot_tile_fn): AVX-512 (files *_avx512.c; they
 * need AVX512-VNNI too), then AVX2. */
void kernel_dot_tile_q8_0_avx512(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act,
                                 uint64_t act_row_bytes, uint64_t n_tok, uint64_t n, float *out, uint64_t out_stride);
void kernel_dot_tile_q4_0_avx512(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act,
                                 uint64_t act_row_bytes, uint64_t n_tok, uint64_t n, float *out, uint64_t out_stride);
void kernel_dot_tile_q4_k_avx512(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act,
                                 uint64_t act_row_bytes, uint64_t n_tok, uint64_t n, float *out, uint64_t out_stride);
void kernel_dot_tile_q5_k_avx512(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act,
                                 uint64_t act_row_bytes, uint64_t n_tok, uint64_t n, float *out, uint64_t out_stride);
void kernel_dot_tile_q6_k_avx512(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act,
                                 uint64_t act_row_bytes, uint64_t n_tok, uint64_t n, float *out, uint64_t out_stride);
/* AVX-512 dot of Q4_K and Q6_K (dot_q4_k_avx512.c, dot_q6_k_avx512.c):
 * their float sums in the order of the tile kernels above
 * (lanes_avx512.h), not of the AVX2 kernels. */
void kernel_dot_q4_k_avx512(const void *w, const void *act, uint64_t n, float *out);
void kernel_dot_q6_k_avx512(const void *w, const void *act, uint64_t n, float *out);

void kernel_dot_tile_q8_0_avx2(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act,
                               uint64_t act_row_bytes, uint64_t n_tok, uint64_t n, float *out, uint64_t out_stride);
void kernel_dot_tile_q4_k_avx2(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act,
                               uint64_t act_row_bytes, uint64_t n_tok, uint64_t n, float *out, uint64_t out_stride);
void kernel_dot_tile_q5_k_avx2(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act,
                               uint64_t act_row_bytes, uint64_t n_tok, uint64_t n, float *out, uint64_t out_stride);
void kernel_dot_tile_q6_k_avx2(const void *w, uint64_t row_bytes, uint64_t n_rows, const void *act,
                               uint64_t act_row_bytes, uint64_t n_tok, uint64_t n, float *out, uint64_t out_stride);

#endif
