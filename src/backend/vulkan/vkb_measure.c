/* What a device's weight reads cost (vkb.h: vkb_measure_reads): the
 * one-token product over a matrix larger than any cache, repeated in one
 * command buffer (barriers between them, so they do not overlap) until the
 * timing is long enough. F16 weights give the device memory's read
 * bandwidth as the shaders see it; Q4_K weights the rate of the type most
 * layers of a Q4_K_M model have (its unpacking may bound it below that).
 * Then the rate of a prompt batch: vkb_matmul (the path the engine takes
 * for a batch of that size, tiled where the device has it) over Q4_K
 * weights for MM_TOKENS tokens, in FLOP/s. And a round trip: a small
 * read back (a MoE layer's router logits), submitted and waited for. */
#include <stdlib.h>
#include <string.h>

#include "backend/vulkan/vkb.h"
#include "gguf/ggml_types.h"
#include "util/clock.h"
#include "util/error.h"

#define N_IN 4096u          /* row length: a multiple of both types' blocks */
#define PER_RUN 8           /* products per submission */
#define MIN_SECONDS 0.2
#define MAX_RUNS 64
#define FILL_CHUNK (8u << 20)
#define SOFTWARE_BYTES (16u << 20)
#define MM_TOKENS 512u      /* a prompt batch (bench/gpu.sh's prompts) */
#define MM_ROWS 8192u       /* output rows: a 7B-shaped FFN's order, 128 x 8 tiles of 64 */
#define MM_SOFTWARE_ROWS 64u /* a software device: 0.27 GFLOP a product */
#define ROUND_TRIPS 33u     /* timed, the median kept */
#define ROUND_TRIP_BYTES 512u /* 128 experts' logits of one token */

/* Weights of defined values (zero bytes: every type reads them as zeros). */
static strata_status fill_zero(vkb *v, vkb_buf *b, uint64_t bytes, strata_error *err)
{
    void *zero = calloc(1, FILL_CHUNK);
    if (!zero) return err_set(err, STRATA_E_NOMEM, "out of memory");
    strata_status st = STRATA_OK;
    for (uint64_t off = 0; off < bytes && !st; off += FILL_CHUNK)
        st = vkb_upload(v, b, off, zero, bytes - off < FILL_CHUNK ? bytes - off : FILL_CHUNK, err);
    free(zero);
    return st;
}

/* One product to time: the one-token product (mv) or a prompt batch's
 * (the rest). */
typedef struct timed_op {
    const vkb_mv *mv;
    uint64_t w, x, y;
    uint32_t n_out;
} timed_op;

/* Products of op per second: per_run of them in a submission, separated
 * by barriers so they do not overlap, submitted until MIN_SECONDS (at
 * least 2, at most MAX_RUNS submissions) after a first that builds the
 * pipeline. */
static strata_status time_op(vkb *v, const timed_op *op, int per_run, double *per_s, strata_error *err)
{
    strata_status st = STRATA_OK;
    double t0 = 0, t = 0;
    int runs = 0;
    for (int i = 0; !st && (i < 1 + 2 || (t - t0 < MIN_SECONDS && i < MAX_RUNS)); i++) {
        if (i == 1) t0 = clock_seconds();
        vkb_begin(v);
        for (int k = 0; k < per_run; k++) {
            if (op->mv) vkb_matvec(v, op->mv);
            else vkb_matmul(v, GGML_TYPE_Q4_K, op->w, op->x, op->y, N_IN, op->n_out, MM_TOKENS);
            vkb_barrier(v);
        }
        st = vkb_run(v, err);
        t = clock_seconds();
        runs += i >= 1;
    }
    *per_s = !st && t > t0 ? (double)per_run * runs / (t - t0) : 0;
    return st;
}

/* Weight bytes per second of the product of `type` over w (bytes of rows
 * of N_IN), x and y of the right sizes. */
static strata_status time_type(vkb *v, uint32_t type, vkb_buf *w, uint64_t bytes, vkb_buf *x, vkb_buf *y,
                               double *out, strata_error *err)
{
    uint64_t row = ggml_row_bytes(type, N_IN), n_out = bytes / row;
    vkb_mv mv = {.type = type, .w = vkb_addr(w), .x = vkb_addr(x), .y = vkb_addr(y), .n_in = N_IN,
                 .n_out = (uint32_t)n_out};
    double per_s;
    strata_status st = time_op(v, &(timed_op){.mv = &mv}, PER_RUN, &per_s, err);
    *out = (double)(n_out * row) * per_s;
    return st;
}

/* FLOP/s of the product of Q4_K weights w (n_out rows of N_IN) with
 * MM_TOKENS tokens x (MM_TOKENS x N_IN floats) into y (MM_TOKENS x n_out
 * floats): one product per submission on a software device, PER_RUN on
 * a GPU. */
static strata_status time_matmul(vkb *v, vkb_buf *w, uint32_t n_out, vkb_buf *x, vkb_buf *y, double *out,
                                 strata_error *err)
{
    timed_op op = {.w = vkb_addr(w), .x = vkb_addr(x), .y = vkb_addr(y), .n_out = n_out};
    double per_s;
    strata_status st = time_op(v, &op, vkb_get_info(v)->is_cpu ? 1 : PER_RUN, &per_s, err);
    *out = 2.0 * N_IN * n_out * MM_TOKENS * per_s;
    return st;
}

/* The prompt-batch rate (time_matmul) over the first rows of w (bytes). */
static strata_status measure_matmul(vkb *v, vkb_buf *w, uint64_t bytes, double *mm_flops, strata_error *err)
{
    uint64_t rows = vkb_get_info(v)->is_cpu ? MM_SOFTWARE_ROWS : MM_ROWS;
    if (rows > bytes / ggml_row_bytes(GGML_TYPE_Q4_K, N_IN)) rows = bytes / ggml_row_bytes(GGML_TYPE_Q4_K, N_IN);
    vkb_buf *x = NULL, *y = NULL;
    strata_status st = STRATA_OK;
    if (rows == 0) st = err_set(err, STRATA_E_NOMEM, "no device memory to measure with");
    if (!st) st = vkb_alloc(v, (uint64_t)MM_TOKENS * N_IN * sizeof(float), false, &x, err);
    if (!st) st = vkb_alloc(v, MM_TOKENS * rows * sizeof(float), false, &y, err);
    if (!st) st = fill_zero(v, x, (uint64_t)MM_TOKENS * N_IN * sizeof(float), err);
    if (!st) st = time_matmul(v, w, (uint32_t)rows, x, y, mm_flops, err);
    return st; /* vkb_close frees the buffers */
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median seconds of reading ROUND_TRIP_BYTES of y back: a submission,
 * the copy and the host's wait for its fence. */
static strata_status measure_round_trip(vkb *v, const vkb_buf *y, double *round_trip_s, strata_error *err)
{
    double t[ROUND_TRIPS];
    unsigned char back[ROUND_TRIP_BYTES];
    strata_status st = STRATA_OK;
    for (unsigned i = 0; i < ROUND_TRIPS && !st; i++) {
        double t0 = clock_seconds();
        st = vkb_download(v, y, 0, back, sizeof back, err);
        t[i] = clock_seconds() - t0;
    }
    if (st) return st;
    qsort(t, ROUND_TRIPS, sizeof *t, cmp_double);
    *round_trip_s = t[ROUND_TRIPS / 2];
    return STRATA_OK;
}

strata_status vkb_measure_reads(int index, uint64_t bytes, double *read_bw, double *q4_k_bw, double *mm_flops,
                                double *round_trip_s, strata_error *err)
{
    *read_bw = *q4_k_bw = *mm_flops = *round_trip_s = 0;
    vkb *v = NULL;
    strata_status st = vkb_open(index, true, &v, err);
    if (st) return st;
    /* a software device (lavapipe) is no GPU to plan for: a quick figure */
    uint64_t cap = vkb_get_info(v)->is_cpu ? SOFTWARE_BYTES : vkb_get_info(v)->budget_bytes / 4;
    if (bytes > cap) bytes = cap;
    bytes -= bytes % ggml_row_bytes(GGML_TYPE_Q4_K, N_IN); /* whole rows of both types */
    bytes -= bytes % ggml_row_bytes(GGML_TYPE_F16, N_IN);
    vkb_buf *w = NULL, *x = NULL, *y = NULL;
    if (bytes == 0) st = err_set(err, STRATA_E_NOMEM, "no device memory to measure with");
    if (!st) st = vkb_alloc(v, bytes, false, &w, err);
    if (!st) st = vkb_alloc(v, N_IN * sizeof(float), false, &x, err);
    if (!st) st = vkb_alloc(v, bytes / ggml_row_bytes(GGML_TYPE_Q4_K, N_IN) * sizeof(float), false, &y, err);
    if (!st) st = fill_zero(v, w, bytes, err);
    if (!st) st = fill_zero(v, x, N_IN * sizeof(float), err);
    if (!st) st = time_type(v, GGML_TYPE_F16, w, bytes, x, y, read_bw, err);
    if (!st) st = time_type(v, GGML_TYPE_Q4_K, w, bytes, x, y, q4_k_bw, err);
    if (!st) st = measure_matmul(v, w, bytes, mm_flops, err);
    if (!st) st = measure_round_trip(v, y, round_trip_s, err);
    vkb_close(v); /* frees the buffers */
    return st;
}
