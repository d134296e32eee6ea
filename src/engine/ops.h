/* Element-wise and row operations of the forward pass (scalar float). */
#ifndef STRATA_ENGINE_OPS_H
#define STRATA_ENGINE_OPS_H

#include <stdbool.h>
#include <stdint.h>

/* y = x / rms(x) * w over n elements (eps inside the root). */
void op_rmsnorm(float *y, const float *x, const float *w, uint64_t n, float eps);

/* Rotary embedding. Pair i (of dim / 2) turns by the angle
 * pos * freq_scale * base^(-2i/dim) / factors[i]; with YaRN (ext_factor > 0)
 * the angle blends interpolation and extrapolation over the correction
 * range and the result is scaled by mscale (as ggml's rope does). */
typedef struct rope_cfg {
    uint64_t dim;          /* rotated dims of a head */
    float base, freq_scale;
    const float *factors;  /* [dim / 2] frequency divisors, or NULL */
    float ext_factor, attn_factor, corr_low, corr_high;
} rope_cfg;

/* Writes (cos, sin) of each pair for one position: cs[2i], cs[2i+1]
 * (computed once per token and shared by every head and layer). */
void op_rope_table(float *cs, const rope_cfg *r, uint32_t pos);
/* Rotates one head in place: pairs (2i, 2i+1), or with neox (i, i + dim/2). */
void op_rope(float *head, const float *cs, uint64_t dim, bool neox);
/* y += x. */
void op_add(float *y, const float *x, uint64_t n);
/* y[t][i] += b[i] for n_tok rows of n. */
void op_add_rows(float *y, const float *b, uint64_t n, uint64_t n_tok);
/* x *= s. */
void op_scale(float *x, float s, uint64_t n);

#endif
