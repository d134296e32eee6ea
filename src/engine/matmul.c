/* Matrix products: activations are prepared once per token row, then the
 * threads take chunks of weight rows from a shared counter and run them
 * against every token. Chunks shrink as the rows run out (each takes a
 * share of what is left): a thread slowed by another process simply takes
 * fewer, and the threads finish within a small chunk of each other. Within
 * a chunk, rows go a few at a time so they stay in cache while the tokens
 * go by (prompt batches), or straight through (decode). Several matrices that
 * read the same input (Q, K, V; gate, up) run as one job over their
 * concatenated rows: a decode step is hundreds of small jobs, and each
 * dispatch to the pool costs microseconds. */
#include <stdatomic.h>

#include "engine/matmul.h"
#include "gguf/ggml_types.h"

#define ROW_BLOCK 16

uint64_t matmul_act_bytes(const kernel_desc *k, uint64_t n_in, uint64_t n_tok)
{
    return kernel_act_bytes(k->act_type, n_in) * n_tok;
}

typedef struct multi_job {
    const matmul_args *a;
    int n;
    uint64_t rows; /* total over the matrices */
    atomic_long next;
} multi_job;

static void prepare_rows(const matmul_args *a, long b, long e)
{
    uint64_t act_row = kernel_act_bytes(a->k->act_type, a->n_in);
    for (long t = b; t < e; t++)
        kernel_prepare_act(a->k->act_type, a->x + (uint64_t)t * a->n_in, (char *)a->act + (uint64_t)t * act_row,
                           a->n_in);
}

static void prepare_job(void *ctx, int ith, int nth)
{
    const matmul_args *a = ctx;
    long b, e;
    pool_share((long)a->n_tok, ith, nth, &b, &e);
    prepare_rows(a, b, e);
}

/* Rows [r0, r1) of one matrix against every token. Decode: the rows
 * straight through. Prompt batches: ROW_BLOCK rows at a time (their weights
 * stay in L1/L2) against all tokens as one tile, which the tile kernels run
 * in small token groups: each weight block is unpacked once per group, not
 * once per token. */
static void run_rows(const matmul_args *a, long r0, long r1)
{
    uint64_t w_row = ggml_row_bytes(a->k->weight_type, a->n_in);
    uint64_t act_row = kernel_act_bytes(a->k->act_type, a->n_in);
    if (a->n_tok == 1) {
        kernel_dot_rows(a->k, (const char *)a->w + (uint64_t)r0 * w_row, w_row, (uint64_t)(r1 - r0), a->act,
                        a->n_in, &a->y[r0]);
        return;
    }
    for (long s = r0; s < r1; s += ROW_BLOCK) {
        long s1 = s + ROW_BLOCK < r1 ? s + ROW_BLOCK : r1;
        kernel_dot_tile(a->k, (const char *)a->w + (uint64_t)s * w_row, w_row, (uint64_t)(s1 - s), a->act, act_row,
                        a->n_tok, a->n_in, &a->y[s], a->n_out);
    }
}

/* Rows [b, e) of the concatenated matrices. */
static void run_range(const multi_job *j, long b, long e)
{
    long base = 0;
    for (int m = 0; m < j->n && b < e; m++) {
        long n_out = (long)j->a[m].n_out;
        long lo = b > base ? b - base : 0, hi = e - base < n_out ? e - base : n_out;
        if (lo < hi) run_rows(&j->a[m], lo, hi);
        base += n_out;
    }
}

/* The next chunk: a 1/(2 nth) share of the rows left, whole row blocks. */
static bool take_chunk(multi_job *j, int nth, long *b, long *e)
{
    long rows = (long)j->rows, at = atomic_load_explicit(&j->next, memory_order_relaxed), end;
    do {
        if (at >= rows) return false;
        long n = (rows - at) / (2 * nth);
        n = n < ROW_BLOCK ? ROW_BLOCK : n / ROW_BLOCK * ROW_BLOCK;
        end = at + n < rows ? at + n : rows;
    } while (!atomic_compare_exchange_weak_explicit(&j->next, &at, end, memory_order_relaxed, memory_order_relaxed));
    *b = at;
    *e = end;
    return true;
}

static void rows_job(void *ctx, int ith, int nth)
{
    multi_job *j = ctx;
    long b, e;
    while (take_chunk(j, nth, &b, &e)) run_range(j, b, e);
}

/* One pass of the threads over the rows of a[0..n), activations prepared. */
static void run_all_rows(pool *p, const matmul_args *a, int n)
{
    multi_job j = {.a = a, .n = n};
    for (int m = 0; m < n; m++) j.rows += a[m].n_out;
    atomic_init(&j.next, 0);
    pool_run(p, rows_job, &j);
}

/* Matrices a[0..n) share x, n_in and the activation format: a[0] prepares
 * the activations, the others read them. */
void matmul_multi(pool *p, const matmul_args *a, int n)
{
    if (a[0].n_tok == 1) prepare_rows(&a[0], 0, 1); /* one row: not worth a dispatch */
    else pool_run(p, prepare_job, (void *)&a[0]);
    run_all_rows(p, a, n);
}

void matmul_each(pool *p, const matmul_args *a, int n)
{
    for (int m = 0; m < n; m++) prepare_rows(&a[m], 0, (long)a[m].n_tok); /* one row each: not worth a dispatch */
    run_all_rows(p, a, n);
}

void matmul(pool *p, const matmul_args *a) { matmul_multi(p, a, 1); }

bool matmul_can_share(const matmul_args *a, int n)
{
    for (int m = 1; m < n; m++)
        if (a[m].k->act_type != a[0].k->act_type || a[m].n_in != a[0].n_in || a[m].x != a[0].x) return false;
    return true;
}
