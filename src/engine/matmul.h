/* Y[t][r] = dot(W row r, X[t]) for a weight matrix in any supported type,
 * on the thread pool. */
#ifndef STRATA_ENGINE_MATMUL_H
#define STRATA_ENGINE_MATMUL_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/threadpool.h"
#include "kernels/cpu/kernels.h"

typedef struct matmul_args {
    const kernel_desc *k;
    const void *w;        /* n_out rows of n_in elements, packed */
    uint64_t n_in, n_out;
    const float *x;       /* n_tok rows of n_in floats */
    uint64_t n_tok;
    float *y;             /* n_tok rows of n_out floats */
    void *act;            /* scratch: n_tok prepared rows (matmul_act_bytes) */
} matmul_args;

uint64_t matmul_act_bytes(const kernel_desc *k, uint64_t n_in, uint64_t n_tok);
void matmul(pool *p, const matmul_args *a);
/* Several products with the same input x (same n_in and activation format,
 * checked by matmul_can_share), in one pass over their rows. */
void matmul_multi(pool *p, const matmul_args *a, int n);
bool matmul_can_share(const matmul_args *a, int n);
/* Several one-token products, each with its own input x and activation
 * scratch act (the experts' down products of a decode step), prepared in
 * turn, then one pass over all their rows. */
void matmul_each(pool *p, const matmul_args *a, int n);

#endif
