/* What a device's weight reads cost (vkb.h: vkb_measure_reads): the
 * one-token product over a matrix larger than any cache, repeated in one
 * command buffer (barriers between them, so they do not overlap) until the
 * timing is long enough. F16 weights give the device memory's read
 * bandwidth as the shaders see it; Q4_K weights the rate of the type most
 * layers of a Q4_K_M model have (its unpacking may bound it below that). */
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

/* Weight bytes per second of the product of `type` over w (bytes of rows
 * of N_IN), x and y of the right sizes. */
static strata_status time_type(vkb *v, uint32_t type, vkb_buf *w, uint64_t bytes, vkb_buf *x, vkb_buf *y,
                               double *out, strata_error *err)
{
    uint64_t row = ggml_row_bytes(type, N_IN), n_out = bytes / row;
    vkb_mv mv = {.type = type, .w = vkb_addr(w), .x = vkb_addr(x), .y = vkb_addr(y), .n_in = N_IN,
                 .n_out = (uint32_t)n_out};
    strata_status st = STRATA_OK;
    double t0 = 0, t = 0;
    int runs = 0;
    for (int i = 0; !st && (i < 1 + 2 || (t - t0 < MIN_SECONDS && i < MAX_RUNS)); i++) {
        if (i == 1) t0 = clock_seconds(); /* the first run builds the pipeline */
        vkb_begin(v);
        for (int k = 0; k < PER_RUN; k++) {
            vkb_matvec(v, &mv);
            vkb_barrier(v);
        }
        st = vkb_run(v, err);
        t = clock_seconds();
        runs += i >= 1;
    }
    *out = !st && t > t0 ? (double)(n_out * row) * PER_RUN * runs / (t - t0) : 0;
    return st;
}

strata_status vkb_measure_reads(int index, uint64_t bytes, double *read_bw, double *q4_k_bw, strata_error *err)
{
    *read_bw = *q4_k_bw = 0;
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
    vkb_close(v); /* frees the buffers */
    return st;
}
