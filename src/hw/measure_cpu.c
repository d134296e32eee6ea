/* The planner's CPU rates, through the fast Q4_K dot-product kernel with
 * all threads: weights per second on rows that stay in cache (compute), and
 * weight bytes per second on rows that stream from RAM (what resident
 * weights really cost per token: memory and compute together). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf/ggml_types.h"
#include "hw/hw.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/quantize.h"

#define ROW 4096
#define ROWS 32 /* 32 x 4096 Q4_K = 72 KiB: in L2 */
#define MAX_THREADS 64

typedef struct cpu_job {
    double seconds;
    uint64_t weights;
    uint64_t rows; /* rows of Q4_K to cycle through: few stay in cache, many stream from RAM */
} cpu_job;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void *run(void *arg)
{
    cpu_job *j = arg;
    const kernel_desc *k = kernel_select(GGML_TYPE_Q4_K, KERNEL_FAST);
    uint64_t wrow = ggml_row_bytes(GGML_TYPE_Q4_K, ROW);
    float *x = malloc(ROW * sizeof(float));
    uint8_t *w = malloc(j->rows * wrow), *act = malloc(kernel_act_bytes(k->act_type, ROW));
    float *y = malloc(j->rows * sizeof(float));
    if (!x || !w || !act || !y) goto out;
    for (int i = 0; i < ROW; i++) x[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    quantize_row(GGML_TYPE_Q4_K, x, w, ROW, NULL);
    for (uint64_t r = 1; r < j->rows; r++) memcpy(w + r * wrow, w, wrow);
    kernel_prepare_act(k->act_type, x, act, ROW);
    double t0 = now(), t;
    float sink = 0;
    do { /* through kernel_dot_rows, as the engine runs a matrix */
        kernel_dot_rows(k, w, wrow, j->rows, act, ROW, y);
        sink += y[0] + y[j->rows - 1];
        j->weights += j->rows * ROW;
    } while ((t = now() - t0) < j->seconds);
    j->seconds = t + (sink == 12345.0f ? 1e-9 : 0); /* keep the dot products */
out:
    free(y);
    free(x);
    free(w);
    free(act);
    return NULL;
}

static double run_all(int threads, double min_seconds, uint64_t rows)
{
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    cpu_job jobs[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    bool started[MAX_THREADS] = {false};
    for (int i = 0; i < threads; i++) {
        jobs[i] = (cpu_job){min_seconds > 0 ? min_seconds : 0.3, 0, rows};
        started[i] = pthread_create(&tid[i], NULL, run, &jobs[i]) == 0;
    }
    double rate = 0;
    for (int i = 0; i < threads; i++) {
        if (!started[i]) continue;
        pthread_join(tid[i], NULL);
        if (jobs[i].seconds > 0) rate += (double)jobs[i].weights / jobs[i].seconds;
    }
    return rate;
}

double hw_measure_cpu_rate(int threads, double min_seconds) { return run_all(threads, min_seconds, ROWS); }

double hw_measure_kernel_ram_bw(int threads, uint64_t bytes, double min_seconds)
{
    if (threads < 1) threads = 1;
    uint64_t wrow = ggml_row_bytes(GGML_TYPE_Q4_K, ROW);
    uint64_t rows = bytes / (uint64_t)threads / wrow;
    if (rows < ROWS) rows = ROWS;
    return run_all(threads, min_seconds, rows) * (double)wrow / ROW; /* weights/s -> bytes/s */
}
