/* Matrix products: activations are prepared once per token row (in
 * parallel), then each thread takes a share of the weight rows and runs them
 * against every token, a few rows at a time so the rows stay in cache while
 * the tokens go by (prompt batches), or straight through (decode). */
#include "engine/matmul.h"
#include "gguf/ggml_types.h"

#define ROW_BLOCK 16

uint64_t matmul_act_bytes(const kernel_desc *k, uint64_t n_in, uint64_t n_tok)
{
    return kernel_act_bytes(k->act_type, n_in) * n_tok;
}

static void prepare_job(void *ctx, int ith, int nth)
{
    const matmul_args *a = ctx;
    uint64_t act_row = kernel_act_bytes(a->k->act_type, a->n_in);
    long b, e;
    pool_share((long)a->n_tok, ith, nth, &b, &e);
    for (long t = b; t < e; t++)
        kernel_prepare_act(a->k->act_type, a->x + (uint64_t)t * a->n_in, (char *)a->act + (uint64_t)t * act_row,
                           a->n_in);
}

static void rows_job(void *ctx, int ith, int nth)
{
    const matmul_args *a = ctx;
    uint64_t w_row = ggml_row_bytes(a->k->weight_type, a->n_in);
    uint64_t act_row = kernel_act_bytes(a->k->act_type, a->n_in);
    long b, e;
    pool_share((long)a->n_out, ith, nth, &b, &e);
    for (long r0 = b; r0 < e; r0 += ROW_BLOCK) {
        long r1 = r0 + ROW_BLOCK < e ? r0 + ROW_BLOCK : e;
        for (uint64_t t = 0; t < a->n_tok; t++) {
            const char *act = (const char *)a->act + t * act_row;
            for (long r = r0; r < r1; r++)
                a->k->dot((const char *)a->w + (uint64_t)r * w_row, act, a->n_in, &a->y[t * a->n_out + (uint64_t)r]);
        }
    }
}

void matmul(pool *p, const matmul_args *a)
{
    pool_run(p, prepare_job, (void *)a);
    pool_run(p, rows_job, (void *)a);
}
