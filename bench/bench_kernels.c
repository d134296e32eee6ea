/* Dot-product kernel benchmark: GB/s of weight bytes streamed by each
 * kernel over a matrix far larger than the last-level cache, against the
 * plain memory read bandwidth measured in the same process.
 *
 * For every tensor type: rows of 4096 weights filling --mb MiB (default
 * 512, 16x a 32 MiB L3) are multiplied with one prepared activation row, as
 * at decode. Each run measures, back to back, the plain read bandwidth of
 * the same buffer and the kernel's, with one thread and with two, so that
 * the ratios compare like with like even when the machine is busy.
 * Reported, as medians over --runs runs:
 *   fast 1T  - the kernel_select(type, KERNEL_FAST) kernel, one thread,
 *              GB/s of weight bytes; mem 1T the read bandwidth, ratio their
 *              ratio (median of the per-run ratios);
 *   fast 2T  - the same with the rows split over two threads (decode uses
 *              every core: the figure the 0.7 target applies to);
 *   cache    - the fast kernel on a 512 KiB matrix that stays in L2: its
 *              compute ceiling, to tell compute-bound from memory-bound;
 *   ref      - the scalar reference kernel (on --ref-mb MiB, default 64),
 *              and the fast / reference speed-up.
 * Kernels with a multi-row version (kernel_desc.dot_rows) get a second
 * line, "rows": the same figures through kernel_dot_rows over each
 * thread's share (the mem columns repeat the first line's), then its
 * speed-ups over dot row by row in cache and from RAM with two threads
 * (medians of the per-run ratios).
 * The read loop uses 32-byte AVX2 loads when the CPU has them, as the
 * kernels do (8-byte loads measure about 10% less here).
 * Also: activation preparation (Q8_0, Q8_K) per 4096 values, portable vs
 * AVX2; and the tile kernels of prompt batches (kernel_dot_tile: 16 rows,
 * as the engine's row blocks, x 64 tokens, in cache), AVX2 against
 * AVX-512 where the CPU has it, runs alternated: G weight-token products/s
 * per thread and the speed-up (median of the per-run ratios); and the
 * AVX-512 decode kernels (F16, BF16, IQ4_XS dot) against AVX2's, both
 * through kernel_dot_rows, alternated: GB/s from RAM with two threads and in cache
 * with one, and the ratios (medians of the per-run ratios).
 * Usage: bench_kernels [--mb N] [--ref-mb N] [--runs N] [--types q4_k,q8_0,...] */
#include <immintrin.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "gguf/ggml_types.h"
#include "kernels/cpu/act_quant.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/quantize.h"
#include "util/fp16.h"

#define N_IN 4096
#define MAX_RUNS 31

static const uint32_t all_types[] = {
    GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0,
    GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K,
    GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_IQ4_NL, GGML_TYPE_IQ4_XS,
};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static uint64_t rng_state = 0x1234567;
static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float rng_float(void) { return (float)((double)(rng_next() >> 11) / 9007199254740992.0) * 2.0f - 1.0f; }

/* ---- work split over threads ---- */

typedef struct job {
    const kernel_desc *k;  /* NULL: plain memory read */
    bool multi;            /* kernel_dot_rows over the share, not dot row by row */
    const uint8_t *w;
    const void *act;
    uint64_t rows, row_bytes; /* for a read: rows = 1, row_bytes = bytes */
    float *y;
    uint64_t sink;
} job;

/* Sum of 8-byte words (the result keeps the reads from being optimized
 * away): the portable read loop, and the 32-byte one. */
static uint64_t read_u64(const uint64_t *v, uint64_t n)
{
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (uint64_t i = 0; i + 4 <= n; i += 4) {
        s0 += v[i];
        s1 += v[i + 1];
        s2 += v[i + 2];
        s3 += v[i + 3];
    }
    return s0 + s1 + s2 + s3;
}

__attribute__((target("avx2"))) static uint64_t read_avx2(const uint64_t *v, uint64_t n)
{
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (uint64_t i = 0; i + 16 <= n; i += 16) {
        a = _mm256_add_epi64(a, _mm256_loadu_si256((const __m256i *)(v + i)));
        b = _mm256_add_epi64(b, _mm256_loadu_si256((const __m256i *)(v + i + 4)));
        c = _mm256_add_epi64(c, _mm256_loadu_si256((const __m256i *)(v + i + 8)));
        d = _mm256_add_epi64(d, _mm256_loadu_si256((const __m256i *)(v + i + 12)));
    }
    a = _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d));
    return (uint64_t)_mm256_extract_epi64(a, 0) + (uint64_t)_mm256_extract_epi64(a, 3);
}

static void *run_job(void *p)
{
    job *j = p;
    if (!j->k) {
        const uint64_t *v = (const uint64_t *)j->w;
        bool avx2 = kernel_cpu_features_get()->avx2_fma_f16c;
        j->sink = avx2 ? read_avx2(v, j->row_bytes / 8) : read_u64(v, j->row_bytes / 8);
        return NULL;
    }
    if (j->multi) kernel_dot_rows(j->k, j->w, j->row_bytes, j->rows, j->act, N_IN, j->y);
    else
        for (uint64_t r = 0; r < j->rows; r++) j->k->dot(j->w + r * j->row_bytes, j->act, N_IN, &j->y[r]);
    return NULL;
}

/* Seconds for one pass over `rows` rows split over n_threads. */
static double timed_pass(const kernel_desc *k, bool multi, const uint8_t *w, const void *act, uint64_t rows,
                         uint64_t row_bytes, float *y, int n_threads)
{
    job jobs[2];
    pthread_t th[2];
    uint64_t share = rows / (uint64_t)n_threads;
    for (int t = 0; t < n_threads; t++) {
        uint64_t r0 = share * (uint64_t)t, r1 = t == n_threads - 1 ? rows : r0 + share;
        if (k) jobs[t] = (job){k, multi, w + r0 * row_bytes, act, r1 - r0, row_bytes, y + r0, 0};
        else jobs[t] = (job){NULL, false, w + r0 * row_bytes, NULL, 1, (r1 - r0) * row_bytes, NULL, 0};
    }
    double t0 = now();
    for (int t = 1; t < n_threads; t++) pthread_create(&th[t], NULL, run_job, &jobs[t]);
    run_job(&jobs[0]);
    for (int t = 1; t < n_threads; t++) pthread_join(th[t], NULL);
    double dt = now() - t0;
    volatile uint64_t keep = jobs[0].sink;
    (void)keep;
    return dt;
}

/* GB/s of `passes` passes (at least one pass: rows * row_bytes bytes). */
static double gbps(const kernel_desc *k, bool multi, const uint8_t *w, const void *act, uint64_t rows,
                   uint64_t row_bytes, float *y, int n_threads, int passes)
{
    double dt = 0;
    for (int p = 0; p < passes; p++) dt += timed_pass(k, multi, w, act, rows, row_bytes, y, n_threads);
    return (double)(rows * row_bytes) * passes / dt / 1e9;
}

/* ---- matrices ---- */

/* Fills buf with rows of valid blocks: a tile of 64 rows made by quantizing
 * random floats (or random bytes with sane f16 scales, for types without a
 * quantizer), repeated. The values do not change the speed. */
static void fill_matrix(uint32_t type, uint8_t *buf, uint64_t bytes)
{
    const ggml_type_info *t = ggml_type_get(type);
    uint64_t row_bytes = ggml_row_bytes(type, N_IN), tile = 64 * row_bytes;
    uint8_t *tl = malloc(tile);
    if (quantize_supported(type)) {
        float *x = malloc(N_IN * sizeof(float));
        for (int r = 0; r < 64; r++) {
            for (int i = 0; i < N_IN; i++) x[i] = 0.05f * rng_float();
            quantize_row(type, x, tl + (uint64_t)r * row_bytes, N_IN, NULL);
        }
        free(x);
    } else {
        for (uint64_t i = 0; i < tile; i++) tl[i] = (uint8_t)rng_next();
        /* every f16 field position of these types: d / dmin at the block
         * start, or at the end for Q2_K (80, 82) and Q3_K (108) */
        int off[2] = {0, 2};
        if (type == GGML_TYPE_Q2_K) off[0] = 80, off[1] = 82;
        if (type == GGML_TYPE_Q3_K) off[0] = off[1] = 108;
        uint16_t h = f32_to_fp16(0.01f);
        for (uint64_t b = 0; b < tile / t->block_bytes; b++)
            for (int k = 0; k < 2; k++) memcpy(tl + b * t->block_bytes + off[k], &h, 2);
    }
    for (uint64_t o = 0; o < bytes; o += tile) memcpy(buf + o, tl, bytes - o < tile ? bytes - o : tile);
    free(tl);
}

/* ---- activation preparation ---- */

static double prep_ns(void (*fn)(const float *, void *, uint64_t), const float *x, void *dst)
{
    double v[9];
    for (int r = 0; r < 9; r++) {
        double t0 = now();
        for (int i = 0; i < 200; i++) fn(x, dst, N_IN);
        v[r] = (now() - t0) / 200 * 1e9;
    }
    return median(v, 9);
}

static void q8_0_portable(const float *x, void *dst, uint64_t n) { quantize_row(GGML_TYPE_Q8_0, x, dst, n, NULL); }

static void bench_prep(void)
{
    float x[N_IN];
    static uint8_t dst[N_IN / 256 * Q8K_BYTES];
    for (int i = 0; i < N_IN; i++) x[i] = rng_float();
    printf("\nactivation preparation, ns per %d values (portable / avx2):\n", N_IN);
    bool avx2 = kernel_cpu_features_get()->avx2_fma_f16c;
    double a = prep_ns(q8_0_portable, x, dst), b = avx2 ? prep_ns(act_quant_q8_0_avx2, x, dst) : 0;
    printf("  Q8_0  %8.0f / %8.0f\n", a, b);
    a = prep_ns(act_quant_q8_k_scalar, x, dst), b = avx2 ? prep_ns(act_quant_q8_k_avx2, x, dst) : 0;
    printf("  Q8_K  %8.0f / %8.0f\n", a, b);
}

/* ---- one type ---- */

/* Per-run figures of one path (dot row by row, or kernel_dot_rows). */
typedef struct path_runs {
    double f1[MAX_RUNS], r1[MAX_RUNS], f2[MAX_RUNS], r2[MAX_RUNS], fc[MAX_RUNS];
} path_runs;

/* Run r of a path: from memory with 1 and 2 threads (ratios to this run's
 * read bandwidths m1, m2), and in cache. */
static void run_path(path_runs *p, int r, const kernel_desc *k, bool multi, const uint8_t *buf, const void *act,
                     uint64_t rows, uint64_t row_bytes, float *y, double m1, double m2)
{
    uint64_t cache_rows = (512u << 10) / row_bytes;
    p->f1[r] = gbps(k, multi, buf, act, rows, row_bytes, y, 1, 1);
    p->f2[r] = gbps(k, multi, buf, act, rows, row_bytes, y, 2, 1);
    p->r1[r] = p->f1[r] / m1;
    p->r2[r] = p->f2[r] / m2;
    p->fc[r] = gbps(k, multi, buf, act, cache_rows, row_bytes, y, 1, 200);
}

/* The table lines of a type: the dot kernel, and kernel_dot_rows when the
 * kernel has a multi-row version (with its speed-ups over dot, medians of
 * the per-run ratios, in cache and from memory with two threads). */
static void bench_type(uint32_t type, uint8_t *buf, uint64_t bytes, uint64_t ref_mb, float *y, const float *x,
                       int runs)
{
    static uint8_t act[N_IN * sizeof(float)];
    static path_runs one, multi;
    const kernel_desc *fast = kernel_select(type, KERNEL_FAST), *ref = kernel_reference(type);
    uint64_t row_bytes = ggml_row_bytes(type, N_IN), rows = bytes / row_bytes;
    uint64_t ref_rows = (ref_mb << 20) / row_bytes;
    bool has_rows = fast->dot_rows != NULL;
    fill_matrix(type, buf, rows * row_bytes);
    kernel_prepare_act(fast->act_type, x, act, N_IN);
    double m1[MAX_RUNS], m2[MAX_RUNS], rf[MAX_RUNS], gc[MAX_RUNS], g2[MAX_RUNS];
    gbps(fast, false, buf, act, rows, row_bytes, y, 1, 1); /* warm-up: page tables, clocks */
    for (int r = 0; r < runs; r++) {
        m1[r] = gbps(NULL, false, buf, NULL, rows, row_bytes, NULL, 1, 1);
        m2[r] = gbps(NULL, false, buf, NULL, rows, row_bytes, NULL, 2, 1);
        run_path(&one, r, fast, false, buf, act, rows, row_bytes, y, m1[r], m2[r]);
        if (!has_rows) continue;
        run_path(&multi, r, fast, true, buf, act, rows, row_bytes, y, m1[r], m2[r]);
        gc[r] = multi.fc[r] / one.fc[r];
        g2[r] = multi.f2[r] / one.f2[r];
    }
    kernel_prepare_act(ref->act_type, x, act, N_IN);
    int ref_runs = runs < 3 ? runs : 3;
    for (int r = 0; r < ref_runs; r++) rf[r] = gbps(ref, false, buf, act, ref_rows, row_bytes, y, 1, 1);
    double f1m = median(one.f1, runs), rfm = median(rf, ref_runs), m1m = median(m1, runs), m2m = median(m2, runs);
    printf("%-7s %-6s %5.2f | %7.2f %7.2f %5.2f | %7.2f %7.2f %5.2f | %7.2f | %7.2f %6.1fx\n", ggml_type_name(type),
           fast->isa, ggml_type_bpw(type), f1m, m1m, median(one.r1, runs), median(one.f2, runs), m2m,
           median(one.r2, runs), median(one.fc, runs), rfm, f1m / rfm);
    if (has_rows)
        printf("%-7s %-6s %5s | %7.2f %7.2f %5.2f | %7.2f %7.2f %5.2f | %7.2f | %6.2fx %6.2fx\n", "", "rows", "",
               median(multi.f1, runs), m1m, median(multi.r1, runs), median(multi.f2, runs), m2m,
               median(multi.r2, runs), median(multi.fc, runs), median(gc, runs), median(g2, runs));
    fflush(stdout);
}

/* ---- tile kernels (prompt batches) ---- */

/* kernels_fast.c internals, as in tests/test_kernels.c */
typedef enum kernel_isa { KERNEL_ISA_SCALAR = 0, KERNEL_ISA_AVX2 = 1, KERNEL_ISA_AVX512 = 2 } kernel_isa;
const kernel_desc *kernel_fast_lookup(uint32_t weight_type, kernel_isa isa);

#define TILE_ROWS 16
#define TILE_TOKS 64

/* Seconds per kernel_dot_tile call of TILE_ROWS x TILE_TOKS (best of 3
 * repetitions of a batch of calls). */
static double tile_seconds(const kernel_desc *k, const uint8_t *w, uint64_t row_bytes, const uint8_t *act,
                           uint64_t act_row, float *out)
{
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now();
        for (int i = 0; i < 20; i++)
            kernel_dot_tile(k, w, row_bytes, TILE_ROWS, act, act_row, TILE_TOKS, N_IN, out, TILE_ROWS);
        double dt = (now() - t0) / 20;
        if (dt < best) best = dt;
    }
    return best;
}

static void bench_tile(uint32_t type, int runs)
{
    const kernel_desc *k2 = kernel_fast_lookup(type, KERNEL_ISA_AVX2);
    const kernel_desc *k5 = kernel_cpu_features_get()->avx512_vnni ? kernel_fast_lookup(type, KERNEL_ISA_AVX512)
                                                                    : NULL;
    if (k5 == k2) k5 = NULL;
    /* types with a tile kernel in either set (without one, AVX2 runs
     * dot_rows token by token) */
    if (!k2 || (!k2->dot_tile && !(k5 && k5->dot_tile))) return;
    uint64_t row_bytes = ggml_row_bytes(type, N_IN), act_row = kernel_act_bytes(k2->act_type, N_IN);
    uint8_t *w = malloc(64 * row_bytes), *act = malloc(act_row * TILE_TOKS);
    float *out = malloc(sizeof(float) * TILE_ROWS * TILE_TOKS), x[N_IN];
    fill_matrix(type, w, 64 * row_bytes);
    for (int t = 0; t < TILE_TOKS; t++) {
        for (int i = 0; i < N_IN; i++) x[i] = rng_float();
        kernel_prepare_act(k2->act_type, x, act + t * act_row, N_IN);
    }
    double g2[MAX_RUNS], g5[MAX_RUNS], sp[MAX_RUNS], work = (double)TILE_ROWS * TILE_TOKS * N_IN / 1e9;
    for (int r = 0; r < runs; r++) {
        g2[r] = work / tile_seconds(k2, w, row_bytes, act, act_row, out);
        g5[r] = k5 ? work / tile_seconds(k5, w, row_bytes, act, act_row, out) : 0;
        sp[r] = g5[r] / g2[r];
    }
    if (k5)
        printf("%-7s | %8.2f %8.2f %6.2fx\n", ggml_type_name(type), median(g2, runs), median(g5, runs),
               median(sp, runs));
    else
        printf("%-7s | %8.2f %8s %7s\n", ggml_type_name(type), median(g2, runs), "-", "-");
    free(w);
    free(act);
    free(out);
}

/* ---- AVX-512 decode kernels against AVX2 ---- */

static void bench_decode512(uint32_t type, uint8_t *buf, uint64_t bytes, float *y, const float *x, int runs)
{
    static uint8_t act[N_IN * sizeof(float)];
    const kernel_desc *k2 = kernel_fast_lookup(type, KERNEL_ISA_AVX2), *k5 = kernel_fast_lookup(type, KERNEL_ISA_AVX512);
    if (!kernel_cpu_features_get()->avx512_vnni || !k2 || !k5 || k5->dot == k2->dot) return;
    uint64_t row_bytes = ggml_row_bytes(type, N_IN), rows = bytes / row_bytes, cache_rows = (512u << 10) / row_bytes;
    fill_matrix(type, buf, rows * row_bytes);
    kernel_prepare_act(k2->act_type, x, act, N_IN);
    double m2[MAX_RUNS], m5[MAX_RUNS], c2[MAX_RUNS], c5[MAX_RUNS], rm[MAX_RUNS], rc[MAX_RUNS];
    gbps(k5, true, buf, act, rows, row_bytes, y, 2, 1); /* warm-up */
    for (int r = 0; r < runs; r++) {
        m2[r] = gbps(k2, true, buf, act, rows, row_bytes, y, 2, 1);
        m5[r] = gbps(k5, true, buf, act, rows, row_bytes, y, 2, 1);
        c2[r] = gbps(k2, true, buf, act, cache_rows, row_bytes, y, 1, 200);
        c5[r] = gbps(k5, true, buf, act, cache_rows, row_bytes, y, 1, 200);
        rm[r] = m5[r] / m2[r];
        rc[r] = c5[r] / c2[r];
    }
    printf("%-7s | %8.2f %8.2f %6.2fx | %8.2f %8.2f %6.2fx\n", ggml_type_name(type), median(m2, runs),
           median(m5, runs), median(rm, runs), median(c2, runs), median(c5, runs), median(rc, runs));
    fflush(stdout);
}

/* ---- main ---- */

static bool wanted(const char *list, uint32_t type)
{
    if (!list) return true;
    const char *name = ggml_type_name(type);
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        size_t m = strcspn(p, ",");
        if (m == n && !strncasecmp(p, name, n)) return true;
        p += m + (p[m] == ',');
    }
    return false;
}

int main(int argc, char **argv)
{
    uint64_t mb = 512, ref_mb = 64;
    int runs = 5;
    const char *types = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--mb")) mb = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--ref-mb")) ref_mb = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--runs")) runs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--types")) types = argv[i + 1];
        else {
            fprintf(stderr, "usage: %s [--mb N] [--ref-mb N] [--runs N] [--types a,b,...]\n", argv[0]);
            return 2;
        }
    }
    if (runs < 1) runs = 1;
    if (runs > MAX_RUNS) runs = MAX_RUNS;
    if (ref_mb > mb) ref_mb = mb;
    uint64_t bytes = mb << 20;
    uint8_t *buf = aligned_alloc(64, bytes);
    float *y = malloc((bytes / 1024 + 1) * sizeof(float)); /* every row is > 1 KiB */
    float x[N_IN];
    if (!buf || !y) {
        fprintf(stderr, "bench_kernels: cannot allocate %" PRIu64 " MiB\n", mb);
        return 1;
    }
    memset(buf, 1, bytes);
    for (int i = 0; i < N_IN; i++) x[i] = rng_float();

    printf("kernel benchmark: rows of %d weights, %" PRIu64 " MiB per type (reference: %" PRIu64
           " MiB), medians of %d runs, GB/s of weight bytes\n\n",
           N_IN, mb, ref_mb, runs);
    printf("%-7s %-6s %5s | %7s %7s %5s | %7s %7s %5s | %7s | %7s %7s\n", "type", "isa", "bpw", "fast 1T",
           "mem 1T", "ratio", "fast 2T", "mem 2T", "ratio", "cache", "ref", "speedup");
    printf("%-7s %-6s %5s | %21s | %21s | %7s | %15s\n", "", "rows", "", "", "", "", "vs dot: cache 2T");
    for (size_t i = 0; i < sizeof all_types / sizeof all_types[0]; i++)
        if (wanted(types, all_types[i])) bench_type(all_types[i], buf, bytes, ref_mb, y, x, runs);
    bench_prep();
    printf("\ntile kernels (%d rows x %d tokens x %d, in cache, 1 thread): G products/s\n", TILE_ROWS, TILE_TOKS,
           N_IN);
    printf("%-7s | %8s %8s %7s\n", "type", "avx2", "avx512", "speedup");
    for (size_t i = 0; i < sizeof all_types / sizeof all_types[0]; i++)
        if (wanted(types, all_types[i])) bench_tile(all_types[i], runs);
    if (kernel_cpu_features_get()->avx512_vnni) {
        printf("\nAVX-512 decode kernels against AVX2 (kernel_dot_rows), GB/s of weight bytes\n");
        printf("%-7s | %8s %8s %7s | %8s %8s %7s\n", "type", "avx2 2T", "avx512", "ratio", "cache 1T", "avx512",
               "ratio");
        for (size_t i = 0; i < sizeof all_types / sizeof all_types[0]; i++)
            if (wanted(types, all_types[i])) bench_decode512(all_types[i], buf, bytes, y, x, runs);
    } else
        printf("\nAVX-512 decode kernels: this CPU lacks AVX-512 + VNNI, not measured\n");
    free(buf);
    free(y);
    return 0;
}
