/* Element-wise and row operations of the forward pass (scalar float). */
#ifndef STRATA_ENGINE_OPS_H
#define STRATA_ENGINE_OPS_H

#include <stdint.h>

/* y = x / rms(x) * w over n elements (eps inside the root). */
void op_rmsnorm(float *y, const float *x, const float *w, uint64_t n, float eps);
/* Rotary embedding: the angle of pair (2i, 2i+1) at a position is
 * pos * freq_scale * base^(-2i/rope_dim). op_rope_table writes (cos, sin)
 * of each pair for one position (rope_dim floats, computed once per token
 * and shared by every head and layer); op_rope rotates one head in place. */
void op_rope_table(float *cs, uint64_t rope_dim, uint32_t pos, float base, float freq_scale);
void op_rope(float *head, const float *cs, uint64_t rope_dim);
/* y += x. */
void op_add(float *y, const float *x, uint64_t n);

#endif
