/* Tests of the fast dot-product kernels (src/kernels/cpu/): kernel
 * selection, activation quantization to Q8_0 / Q8_K, and every fast kernel
 * against the scalar reference on random rows.
 *
 * Each fast kernel is checked twice:
 *  - exactly up to float rounding, against Σ w_i x̂_i computed in double,
 *    where w is the reference dequantization of the weights and x̂ the
 *    dequantized prepared activations: this isolates the kernel's integer
 *    and bit-unpacking logic from the (intended) activation rounding, so a
 *    misplaced bit or scale cannot hide inside the tolerance;
 *  - against the reference kernel itself (float activations): the
 *    difference must stay below the rigorous bound Σ |w_i| |x_i - x̂_i| that
 *    activation rounding allows, and, for Gaussian activations, below 1e-2
 *    of Σ |w_i x_i| (see Q8_REL_TOL for why 1e-2).
 * Rows are quantized random floats where a quantizer exists and random
 * bytes with sane scales written in (covering encodings no quantizer
 * produces: q = -128, negative scales, any 6-bit scale pattern) for all
 * block types. Several rows are packed back to back, so row starts take
 * every alignment the format allows, and activation buffers start at
 * unaligned addresses. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/ggml_types.h"
#include "kernels/cpu/act_quant.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/dequant.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/kv_ops.h"
#include "kernels/cpu/quantize.h"
#include "kernels/cpu/swiglu.h"
#include "test.h"
#include "test_rng.h"
#include "util/fp16.h"

/* kernels_fast.c internals (no header: only kernels.c and this test use them) */
typedef enum kernel_isa { KERNEL_ISA_SCALAR = 0, KERNEL_ISA_AVX2 = 1, KERNEL_ISA_AVX512 = 2 } kernel_isa;
kernel_isa kernel_fast_isa(const char *env, const kernel_cpu_features *cpu, const char **warning);
const kernel_desc *kernel_fast_lookup(uint32_t weight_type, kernel_isa isa);

/* Float paths: fast and reference differ only in summation order, an error
 * of a few float ulps of Σ|w x| (n * 2^-24 at the very worst for n = 4096
 * is 2.4e-4, but the pairwise partial sums of the fast kernels and random
 * signs keep it near 1e-7 in practice). */
#define FLOAT_REL_TOL 1e-5
/* Q8 activations: each value moves by at most d/2 (d = max|x| / 127 of its
 * block), uniformly, so Σ w_i δ_i has standard deviation
 * sqrt(n) * rms(w) * d / sqrt(12). For Gaussian x, d ~ 2.2-2.9 sigma / 127
 * and Σ|w x| ~ n * 0.64 * sigma * rms(w): the relative error is about
 * 0.0015 / sqrt(n / 32), so 1e-2 is a margin of more than six standard
 * deviations even for a single block. */
#define Q8_REL_TOL 1e-2

static const uint32_t all_types[] = {
    GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0,
    GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K,
    GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_IQ4_NL, GGML_TYPE_IQ4_XS,
};
#define N_TYPES (sizeof all_types / sizeof all_types[0])

/* ---- weight rows ---- */

/* Byte offsets of the f16 scale fields within a block, -1 terminated. */
static const int *scale_offsets(uint32_t type)
{
    static const int at0[] = {0, -1}, at0_2[] = {0, 2, -1}, q2k[] = {80, 82, -1}, q3k[] = {108, -1},
                     q6k[] = {208, -1};
    switch (type) {
    case GGML_TYPE_Q8_0: case GGML_TYPE_Q4_0: case GGML_TYPE_Q5_0: case GGML_TYPE_IQ4_NL:
    case GGML_TYPE_IQ4_XS:
        return at0;
    case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_1: case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K:
        return at0_2;
    case GGML_TYPE_Q2_K: return q2k;
    case GGML_TYPE_Q3_K: return q3k;
    case GGML_TYPE_Q6_K: return q6k;
    default: return NULL;
    }
}

static bool is_float_type(uint32_t type)
{
    return type == GGML_TYPE_F32 || type == GGML_TYPE_F16 || type == GGML_TYPE_BF16;
}

/* The types with AVX-512 dot kernels of their own. */
/* The types with AVX-512 dot and dot_rows of their own that give AVX2's
 * bits: 32-value blocks two per vector, Q2_K and Q3_K two groups per vector. */
static bool is_avx512_pairs_type(uint32_t type)
{
    return type == GGML_TYPE_Q4_1 || type == GGML_TYPE_Q5_0 || type == GGML_TYPE_Q5_1 || type == GGML_TYPE_IQ4_NL ||
           type == GGML_TYPE_Q2_K || type == GGML_TYPE_Q3_K;
}

static bool is_avx512_decode_type(uint32_t type)
{
    return type == GGML_TYPE_F16 || type == GGML_TYPE_BF16 || type == GGML_TYPE_IQ4_XS || is_avx512_pairs_type(type);
}

/* Fills `rows` rows of n elements of `type` at w. Block types: random bytes
 * with f16 scales of random sign and magnitude 2^-8 .. 2^-4 written in.
 * Otherwise (and when `quantized`): Gaussian floats through quantize_row. */
static void make_rows(uint32_t type, bool quantized, uint8_t *w, uint64_t n, int rows, uint64_t *rng)
{
    const ggml_type_info *t = ggml_type_get(type);
    uint64_t row_bytes = ggml_row_bytes(type, n);
    if (quantized || is_float_type(type)) {
        float *x = malloc(n * sizeof(float));
        for (int r = 0; r < rows; r++) {
            float scale = (float)(0.02 + rng_unit(rng));
            for (uint64_t i = 0; i < n; i++) x[i] = scale * rng_normal(rng);
            quantize_row(type, x, w + (uint64_t)r * row_bytes, n, NULL);
        }
        free(x);
        return;
    }
    for (uint64_t i = 0; i < row_bytes * (uint64_t)rows; i++) w[i] = (uint8_t)rng_next(rng);
    const int *off = scale_offsets(type);
    for (uint64_t b = 0; b < row_bytes * (uint64_t)rows / t->block_bytes; b++) {
        for (int k = 0; off[k] >= 0; k++) {
            float s = ldexpf((float)(1.0 + rng_unit(rng)), -8 + (int)(rng_next(rng) % 5));
            uint16_t h = f32_to_fp16(rng_next(rng) & 1 ? -s : s);
            memcpy(w + b * t->block_bytes + off[k], &h, 2);
        }
    }
}

/* ---- activations ---- */

typedef enum act_kind { ACT_GAUSS, ACT_OUTLIERS, ACT_ZERO_BLOCK } act_kind;

static void make_act(act_kind kind, float *x, uint64_t n, uint64_t *rng)
{
    float scale = (float)(0.1 + 3.0 * rng_unit(rng));
    for (uint64_t i = 0; i < n; i++) x[i] = scale * rng_normal(rng);
    if (kind == ACT_OUTLIERS)
        for (int k = 0; k < 3; k++) x[rng_next(rng) % n] *= 40.0f;
    if (kind == ACT_ZERO_BLOCK) memset(x, 0, (n < 256 ? n : 256) * sizeof(float));
}

/* The values a prepared activation row stands for. */
static void dequant_act(uint32_t act_type, const uint8_t *a, const float *x, float *xh, uint64_t n)
{
    if (act_type == GGML_TYPE_F32) {
        memcpy(xh, x, n * sizeof(float));
    } else if (act_type == GGML_TYPE_Q8_0) {
        for (uint64_t b = 0; b < n / 32; b++, a += 34) {
            uint16_t h;
            memcpy(&h, a, 2);
            for (int i = 0; i < 32; i++) xh[32 * b + i] = fp16_to_f32(h) * (float)(int8_t)a[2 + i];
        }
    } else {
        for (uint64_t b = 0; b < n / 256; b++, a += Q8K_BYTES) {
            float d;
            memcpy(&d, a, 4);
            for (int i = 0; i < 256; i++) xh[256 * b + i] = d * (float)(int8_t)a[Q8K_OFF_QS + i];
        }
    }
}

/* ---- selection ---- */

TEST(test_kernel_reference_mode)
{
    for (size_t i = 0; i < N_TYPES; i++) {
        const kernel_desc *k = kernel_select(all_types[i], KERNEL_REFERENCE);
        REQUIRE(k != NULL, "type %s", ggml_type_name(all_types[i]));
        CHECK(k == kernel_reference(all_types[i]), "%s", ggml_type_name(all_types[i]));
        CHECK(!strcmp(k->isa, "scalar") && k->act_type == GGML_TYPE_F32 && k->weight_type == all_types[i],
              "%s: isa %s act %u", ggml_type_name(all_types[i]), k->isa, k->act_type);
    }
    /* types the engine cannot run have no kernel in either mode */
    CHECK(kernel_select(GGML_TYPE_Q8_K, KERNEL_FAST) == NULL);
    CHECK(kernel_select(GGML_TYPE_IQ2_XXS, KERNEL_REFERENCE) == NULL);
    CHECK(kernel_select(GGML_TYPE_COUNT + 5, KERNEL_FAST) == NULL);
}

TEST(test_kernel_env_override)
{
    const kernel_cpu_features avx2 = {.avx2_fma_f16c = true}, none = {0};
    const char *warn;
    CHECK(kernel_fast_isa(NULL, &avx2, &warn) == KERNEL_ISA_AVX2 && !warn);
    CHECK(kernel_fast_isa("", &avx2, &warn) == KERNEL_ISA_AVX2 && !warn);
    CHECK(kernel_fast_isa("auto", &avx2, &warn) == KERNEL_ISA_AVX2 && !warn);
    CHECK(kernel_fast_isa("avx2", &avx2, &warn) == KERNEL_ISA_AVX2 && !warn);
    CHECK(kernel_fast_isa("scalar", &avx2, &warn) == KERNEL_ISA_SCALAR && !warn);
    CHECK(kernel_fast_isa(NULL, &none, &warn) == KERNEL_ISA_SCALAR && !warn);
    /* not honoured: a warning, and the reference path */
    CHECK(kernel_fast_isa("avx2", &none, &warn) == KERNEL_ISA_SCALAR && warn);
    CHECK(kernel_fast_isa("Scalar", &avx2, &warn) == KERNEL_ISA_SCALAR && warn);
    CHECK(kernel_fast_isa("avx512", &avx2, &warn) == KERNEL_ISA_SCALAR && warn);
    CHECK(kernel_fast_isa("fast", &avx2, &warn) == KERNEL_ISA_SCALAR && warn);
    /* AVX-512 needs F/BW/VL/DQ and VNNI; "avx2" caps it for A/B runs */
    const kernel_cpu_features a512 = {.avx2_fma_f16c = true, .avx512 = true},
                              vnni = {.avx2_fma_f16c = true, .avx512 = true, .avx512_vnni = true};
    CHECK(kernel_fast_isa(NULL, &a512, &warn) == KERNEL_ISA_AVX2 && !warn);
    CHECK(kernel_fast_isa("avx512", &a512, &warn) == KERNEL_ISA_SCALAR && warn);
    CHECK(kernel_fast_isa(NULL, &vnni, &warn) == KERNEL_ISA_AVX512 && !warn);
    CHECK(kernel_fast_isa("auto", &vnni, &warn) == KERNEL_ISA_AVX512 && !warn);
    CHECK(kernel_fast_isa("avx512", &vnni, &warn) == KERNEL_ISA_AVX512 && !warn);
    CHECK(kernel_fast_isa("avx2", &vnni, &warn) == KERNEL_ISA_AVX2 && !warn);
    CHECK(kernel_fast_isa("scalar", &vnni, &warn) == KERNEL_ISA_SCALAR && !warn);
    CHECK(kernel_fast_isa("AVX512", &vnni, &warn) == KERNEL_ISA_SCALAR && warn);
    for (size_t i = 0; i < N_TYPES; i++) {
        CHECK(kernel_fast_lookup(all_types[i], KERNEL_ISA_SCALAR) == NULL, "%s", ggml_type_name(all_types[i]));
        const kernel_desc *k = kernel_fast_lookup(all_types[i], KERNEL_ISA_AVX2);
        REQUIRE(k != NULL, "no AVX2 kernel for %s", ggml_type_name(all_types[i]));
        CHECK(k->weight_type == all_types[i] && !strcmp(k->isa, "avx2"));
        uint32_t at = k->act_type;
        CHECK(at == GGML_TYPE_F32 || at == GGML_TYPE_Q8_0 || at == GGML_TYPE_Q8_K);
        /* a Q8 activation block must divide the weight block */
        if (at != GGML_TYPE_F32)
            CHECK(ggml_type_get(all_types[i])->block_elems % ggml_type_get(at)->block_elems == 0);
        /* every type has an AVX-512 choice: its own kernel, else AVX2's,
         * with the same activations; the AVX2 dot but for the types with
         * AVX-512 dot kernels (F16, BF16, IQ4_XS, and Q4_K, Q6_K in the
         * order of their tile kernels); the AVX2 dot_rows but for Q5_K (its
         * own) and Q4_K, Q6_K (none: their dot row by row) */
        const kernel_desc *k5 = kernel_fast_lookup(all_types[i], KERNEL_ISA_AVX512);
        REQUIRE(k5 != NULL, "no AVX-512 choice for %s", ggml_type_name(all_types[i]));
        uint32_t ty = all_types[i];
        bool by_row = ty == GGML_TYPE_Q4_K || ty == GGML_TYPE_Q6_K;
        bool own_decode = is_avx512_decode_type(ty) || by_row,
             own_rows = ty == GGML_TYPE_Q5_K || is_avx512_pairs_type(ty);
        CHECK(k5->weight_type == ty && k5->act_type == at && (own_decode ? k5->dot != k->dot : k5->dot == k->dot) &&
                  (by_row ? !k5->dot_rows
                          : own_rows ? k5->dot_rows && k5->dot_rows != k->dot_rows : k5->dot_rows == k->dot_rows) &&
                  (k5 == k || !strcmp(k5->isa, "avx512")),
              "%s", ggml_type_name(all_types[i]));
    }
    /* the live choice follows the same rule for this process's environment */
    kernel_isa isa = kernel_fast_isa(getenv("STRATA_KERNELS"), kernel_cpu_features_get(), &warn);
    for (size_t i = 0; i < N_TYPES; i++) {
        const kernel_desc *want = kernel_fast_lookup(all_types[i], isa);
        if (!want) want = kernel_reference(all_types[i]);
        CHECK(kernel_select(all_types[i], KERNEL_FAST) == want, "%s", ggml_type_name(all_types[i]));
    }
}

/* ---- activation quantization ---- */

TEST(test_kernel_q8k_prepare)
{
    uint64_t rng = 11;
    const uint64_t n = 1024;
    float *x = malloc(n * sizeof(float));
    uint8_t *a = malloc(ggml_row_bytes(GGML_TYPE_Q8_K, n) + 1), *b = malloc(ggml_row_bytes(GGML_TYPE_Q8_K, n));
    REQUIRE(kernel_act_bytes(GGML_TYPE_Q8_K, n) == n / 256 * 292);
    for (int kind = 0; kind < 3; kind++) {
        make_act((act_kind)kind, x, n, &rng);
        uint8_t *p = a + 1;      /* unaligned on purpose */
        kernel_prepare_act(GGML_TYPE_Q8_K, x, p, n);
        for (uint64_t blk = 0; blk < n / 256; blk++) {
            const uint8_t *q = p + blk * Q8K_BYTES;
            float d;
            memcpy(&d, q, 4);
            float amax = 0;
            for (int i = 0; i < 256; i++) amax = fmaxf(amax, fabsf(x[256 * blk + i]));
            CHECK(d == amax / 127.0f, "block %llu: d %g for max %g", (unsigned long long)blk, d, amax);
            for (int j = 0; j < 16; j++) {
                int sum = 0;
                for (int i = 0; i < 16; i++) {
                    int v = (int8_t)q[Q8K_OFF_QS + 16 * j + i];
                    float xv = x[256 * blk + 16 * j + i];
                    CHECK(v >= -127 && v <= 127);
                    CHECK(fabsf(xv - d * (float)v) <= 0.5f * d * 1.0001f, "x %g q %d d %g", xv, v, d);
                    sum += v;
                }
                int16_t bs;
                memcpy(&bs, q + Q8K_OFF_BSUMS + 2 * j, 2);
                CHECK(bs == sum, "bsums[%d] = %d, quants sum to %d", j, bs, sum);
            }
        }
        /* every version writes the same bytes */
        act_quant_q8_k_scalar(x, b, n);
        CHECK(!memcmp(p, b, ggml_row_bytes(GGML_TYPE_Q8_K, n)), "dispatch vs scalar, kind %d", kind);
        if (kernel_cpu_features_get()->avx2_fma_f16c) {
            act_quant_q8_k_avx2(x, b, n);
            CHECK(!memcmp(p, b, ggml_row_bytes(GGML_TYPE_Q8_K, n)), "AVX2 vs scalar, kind %d", kind);
        }
    }
    free(x);
    free(a);
    free(b);
}

TEST(test_kernel_q8_0_prepare)
{
    uint64_t rng = 12;
    const uint64_t n = 512;
    float x[512];
    uint8_t ref[544], got[545];
    for (int kind = 0; kind < 4; kind++) {
        if (kind < 3) {
            make_act((act_kind)kind, x, n, &rng);
        } else {
            /* exact ties: max 127 gives d = 1, so k + 0.5 must round away from zero */
            for (uint64_t i = 0; i < n; i++) x[i] = (float)((int)(i % 64) - 32) + 0.5f;
            for (uint64_t b = 0; b < n / 32; b++) x[32 * b] = b % 2 ? 127.0f : -127.0f;
        }
        quantize_row(GGML_TYPE_Q8_0, x, ref, n, NULL);
        kernel_prepare_act(GGML_TYPE_Q8_0, x, got + 1, n);
        CHECK(!memcmp(ref, got + 1, sizeof ref), "prepared Q8_0 differs from quantize_row, kind %d", kind);
        if (kernel_cpu_features_get()->avx2_fma_f16c) {
            act_quant_q8_0_avx2(x, got, n);
            CHECK(!memcmp(ref, got, sizeof ref), "AVX2 Q8_0 differs from quantize_row, kind %d", kind);
        }
    }
}

/* ---- fast kernels against the reference ---- */

typedef struct case_stats {
    double worst_exact, worst_bound, worst_rel; /* worst ratios to the tolerances */
} case_stats;

/* `got`, a fast kernel's result for weight row w (dequantized: wd) against
 * activations x (prepared, then dequantized: xh): checks described at the
 * top. */
static void check_value(float got, const kernel_desc *fast, const kernel_desc *ref, const uint8_t *w,
                        const float *x, const float *wd, const float *xh, uint64_t n, act_kind kind,
                        const char *what, case_stats *st)
{
    float want;
    ref->dot(w, x, n, &want);
    double exact = 0, mag_hat = 0, mag = 0, bound = 0;
    for (uint64_t i = 0; i < n; i++) {
        exact += (double)wd[i] * xh[i];
        mag_hat += fabs((double)wd[i] * xh[i]);
        mag += fabs((double)wd[i] * x[i]);
        bound += fabs((double)wd[i]) * fabs((double)x[i] - xh[i]);
    }
    const double tiny = 1e-30;
    double e_exact = fabs(got - exact) / (FLOAT_REL_TOL * mag_hat + tiny);
    double e_bound = fabs((double)got - want) / (bound + FLOAT_REL_TOL * (mag + mag_hat) + tiny);
    double rel_tol = fast->act_type == GGML_TYPE_F32 ? FLOAT_REL_TOL : Q8_REL_TOL;
    double e_rel = kind == ACT_GAUSS ? fabs((double)got - want) / (rel_tol * mag + tiny) : 0;
    CHECK(e_exact <= 1.0, "%s: fast %.9g, exact dot with the prepared activations %.9g (Σ|wx| %g)", what, got,
          exact, mag_hat);
    CHECK(e_bound <= 1.0, "%s: fast %.9g, reference %.9g, activation rounding allows %g", what, got, want, bound);
    CHECK(e_rel <= 1.0, "%s: fast %.9g, reference %.9g, Σ|wx| %g", what, got, want, mag);
    st->worst_exact = fmax(st->worst_exact, e_exact);
    st->worst_bound = fmax(st->worst_bound, e_bound);
    st->worst_rel = fmax(st->worst_rel, e_rel);
}

/* One weight row against one activation row. */
static void check_row(const kernel_desc *fast, const kernel_desc *ref, const uint8_t *w, const float *x,
                      const uint8_t *act, const float *wd, const float *xh, uint64_t n, act_kind kind,
                      const char *what, case_stats *st)
{
    float got;
    fast->dot(w, act, n, &got);
    check_value(got, fast, ref, w, x, wd, xh, n, kind, what, st);
}

#define ROWS 3

static void check_type(const kernel_desc *fast, uint32_t type, case_stats *st)
{
    const kernel_desc *ref = kernel_reference(type);
    const ggml_type_info *t = ggml_type_get(type);
    uint64_t be = t->block_elems;
    uint64_t lens_blocks[] = {1, 3, 7, 4096 / be}, lens_float[] = {1, 7, 31, 32, 33, 100, 4096};
    bool flt = is_float_type(type);
    int n_lens = flt ? 7 : 4;
    uint64_t rng = 1000 + type;
    for (int li = 0; li < n_lens; li++) {
        uint64_t n = flt ? lens_float[li] : lens_blocks[li] * be;
        uint64_t row_bytes = ggml_row_bytes(type, n), act_bytes = kernel_act_bytes(fast->act_type, n);
        uint8_t *w = malloc(row_bytes * ROWS), *act_buf = malloc(act_bytes + 4);
        float *x = malloc(n * sizeof(float)), *xh = malloc(n * sizeof(float)), *wd = malloc(n * sizeof(float));
        /* float activations stay float-aligned; Q8 ones start on an odd address */
        uint8_t *act = act_buf + (fast->act_type == GGML_TYPE_F32 ? 4 : 1);
        for (int src = 0; src < 2; src++) {
            bool quantized = src == 0;
            if (!flt && quantized && !quantize_supported(type)) continue;
            if (flt && !quantized) continue;
            make_rows(type, quantized, w, n, ROWS, &rng);
            for (int kind = 0; kind < 3; kind++) {
                make_act((act_kind)kind, x, n, &rng);
                kernel_prepare_act(fast->act_type, x, act, n);
                dequant_act(fast->act_type, act, x, xh, n);
                for (int r = 0; r < ROWS; r++) {
                    const uint8_t *wr = w + (uint64_t)r * row_bytes;
                    dequant_row(type, wr, wd, n, NULL);
                    char what[128];
                    snprintf(what, sizeof what, "%s n=%llu row %d (%s weights, activations kind %d)", t->name,
                             (unsigned long long)n, r, quantized ? "quantized" : "random-byte", kind);
                    check_row(fast, ref, wr, x, act, wd, xh, n, (act_kind)kind, what, st);
                }
            }
        }
        /* an all-zero activation row gives exactly 0 */
        memset(x, 0, n * sizeof(float));
        kernel_prepare_act(fast->act_type, x, act, n);
        float z = 1;
        fast->dot(w, act, n, &z);
        CHECK(z == 0.0f, "%s n=%llu: %g for zero activations", t->name, (unsigned long long)n, z);
        free(w);
        free(act_buf);
        free(x);
        free(xh);
        free(wd);
    }
}

TEST(test_kernel_fast_vs_reference)
{
    if (!kernel_cpu_features_get()->avx2_fma_f16c) {
        test_skip("this CPU has no AVX2/FMA/F16C: no fast kernel can run");
        return;
    }
    const char *v = getenv("STRATA_TEST_VERBOSE");
    for (size_t i = 0; i < N_TYPES && test_failures() < 20; i++) {
        case_stats st = {0};
        check_type(kernel_fast_lookup(all_types[i], KERNEL_ISA_AVX2), all_types[i], &st);
        if (v && *v && strcmp(v, "0"))
            printf("    %-7s worst error / tolerance: exact %.3f, bound %.3f, relative %.3f\n",
                   ggml_type_name(all_types[i]), st.worst_exact, st.worst_bound, st.worst_rel);
    }
}

/* ---- multi-row kernels ---- */

#define MAX_ROWS 7

/* MAX_ROWS rows of n elements at `stride` bytes (the row's bytes + pad)
 * through kernel_dot_rows with n_rows = 1 .. MAX_ROWS: every result passes
 * the single-row checks and is the kernel's own dot bit for bit (the
 * multi-row kernels keep each row's float sums in the single-row order),
 * and nothing past out[n_rows - 1] is written. */
static void check_rows_upto(const kernel_desc *fast, uint32_t type, uint64_t n, uint64_t pad, bool quantized,
                            uint64_t max_rows, uint64_t *rng, case_stats *st)
{
    const kernel_desc *ref = kernel_reference(type);
    uint64_t stride = ggml_row_bytes(type, n) + pad, act_bytes = kernel_act_bytes(fast->act_type, n);
    uint8_t *w = malloc(stride * max_rows), *act_buf = malloc(act_bytes + 1), *act = act_buf + 1;
    float *x = malloc(n * sizeof(float)), *xh = malloc(n * sizeof(float));
    float *wd = malloc(n * max_rows * sizeof(float)), *out = malloc((max_rows + 1) * sizeof(float));
    for (uint64_t r = 0; r < max_rows; r++) {
        make_rows(type, quantized, w + r * stride, n, 1, rng);
        dequant_row(type, w + r * stride, wd + r * n, n, NULL);
    }
    for (int kind = 0; kind < 3; kind++) {
        make_act((act_kind)kind, x, n, rng);
        kernel_prepare_act(fast->act_type, x, act, n);
        dequant_act(fast->act_type, act, x, xh, n);
        for (uint64_t n_rows = 1; n_rows <= max_rows; n_rows++) {
            for (uint64_t r = 0; r <= max_rows; r++) out[r] = -1234.5f;
            kernel_dot_rows(fast, w, stride, n_rows, act, n, out);
            CHECK(out[n_rows] == -1234.5f, "%s n=%llu: out[%llu] written", ggml_type_name(type),
                  (unsigned long long)n, (unsigned long long)n_rows);
            for (uint64_t r = 0; r < n_rows; r++) {
                const uint8_t *wr = w + r * stride;
                char what[160];
                snprintf(what, sizeof what, "%s dot_rows n=%llu pad %llu row %llu of %llu (%s weights, kind %d)",
                         ggml_type_name(type), (unsigned long long)n, (unsigned long long)pad,
                         (unsigned long long)r, (unsigned long long)n_rows, quantized ? "quantized" : "random-byte",
                         kind);
                float one;
                fast->dot(wr, act, n, &one);
                CHECK(!memcmp(&out[r], &one, sizeof one), "%s: %.9g, single-row dot %.9g", what, out[r], one);
                check_value(out[r], fast, ref, wr, x, wd + r * n, xh, n, (act_kind)kind, what, st);
            }
        }
    }
    free(w);
    free(act_buf);
    free(x);
    free(xh);
    free(wd);
    free(out);
}

static void check_rows_case(const kernel_desc *fast, uint32_t type, uint64_t n, uint64_t pad, bool quantized,
                            uint64_t *rng, case_stats *st)
{
    check_rows_upto(fast, type, n, pad, quantized, MAX_ROWS, rng, st);
}

TEST(test_kernel_dot_rows_vs_reference)
{
    if (!kernel_cpu_features_get()->avx2_fma_f16c) {
        test_skip("this CPU has no AVX2/FMA/F16C: no fast kernel can run");
        return;
    }
    /* the types of the benchmark models must have one, and so must the
     * other 32-value block types and Q2_K .. Q5_K (issue 14: two weight
     * streams at once from RAM) */
    static const uint32_t expected[] = {GGML_TYPE_Q4_K, GGML_TYPE_Q6_K, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0,
                                        GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_IQ4_NL,
                                        GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q5_K};
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
        CHECK(kernel_fast_lookup(expected[i], KERNEL_ISA_AVX2)->dot_rows != NULL, "%s",
              ggml_type_name(expected[i]));
    /* lengths in blocks: odd counts leave partial groups in kernels that
     * take several blocks at a time */
    static const uint64_t lens_blocks[] = {1, 2, 3, 5, 7, 16};
    for (size_t i = 0; i < N_TYPES && test_failures() < 20; i++) {
        uint32_t type = all_types[i];
        const kernel_desc *fast = kernel_fast_lookup(type, KERNEL_ISA_AVX2);
        if (!fast->dot_rows) continue;
        uint64_t be = ggml_type_get(type)->block_elems, rng = 2000 + type;
        case_stats st = {0};
        for (size_t li = 0; li < sizeof lens_blocks / sizeof lens_blocks[0]; li++)
            for (int src = 0; src < 2; src++) {
                bool quantized = src == 0;
                if (quantized && !quantize_supported(type)) continue;
                /* rows back to back, and rows further apart than their size */
                check_rows_case(fast, type, lens_blocks[li] * be, 0, quantized, &rng, &st);
                check_rows_case(fast, type, lens_blocks[li] * be, 37, quantized, &rng, &st);
            }
        const char *v = getenv("STRATA_TEST_VERBOSE");
        if (v && *v && strcmp(v, "0"))
            printf("    %-7s dot_rows worst error / tolerance: exact %.3f, bound %.3f, relative %.3f\n",
                   ggml_type_name(type), st.worst_exact, st.worst_bound, st.worst_rel);
    }
}

/* kernel_dot_rows without a dot_rows (every reference kernel; a fast one
 * with it removed) runs dot row by row: the same bits; with one, it gives
 * dot_rows's own results. n_rows = 0 writes nothing. */
TEST(test_kernel_dot_rows_fallback)
{
    const uint64_t n = 512, rows = 5;
    uint64_t rng = 99;
    float x[512];
    make_act(ACT_GAUSS, x, n, &rng);
    for (size_t i = 0; i < N_TYPES; i++) {
        uint32_t type = all_types[i];
        const kernel_desc *ref = kernel_reference(type), *fast = kernel_select(type, KERNEL_FAST);
        CHECK(ref->dot_rows == NULL, "%s: reference kernel with a dot_rows", ggml_type_name(type));
        uint64_t stride = ggml_row_bytes(type, n) + 3;
        uint8_t *w = malloc(stride * rows), *act = malloc(kernel_act_bytes(GGML_TYPE_F32, n));
        for (uint64_t r = 0; r < rows; r++) make_rows(type, false, w + r * stride, n, 1, &rng);
        kernel_desc plain = *fast;
        plain.dot_rows = NULL;
        const kernel_desc *descs[3] = {ref, &plain, fast};
        for (int d = 0; d < 3; d++) {
            const kernel_desc *k = descs[d];
            kernel_prepare_act(k->act_type, x, act, n);
            float out[6] = {7, 7, 7, 7, 7, 7}, want[5];
            kernel_dot_rows(k, w, stride, 0, act, n, out);
            CHECK(out[0] == 7, "%s: n_rows 0 wrote", ggml_type_name(type));
            kernel_dot_rows(k, w, stride, rows, act, n, out);
            if (k->dot_rows) k->dot_rows(w, stride, rows, act, n, want);
            else
                for (uint64_t r = 0; r < rows; r++) k->dot(w + r * stride, act, n, &want[r]);
            CHECK(!memcmp(out, want, sizeof want) && out[rows] == 7, "%s %s%s", ggml_type_name(type), k->isa,
                  d == 1 ? " without dot_rows" : "");
        }
        free(w);
        free(act);
    }
}

/* ---- tile kernels ---- */

#define MAX_TOK 17 /* past two groups of the widest tile kernel (8 tokens) */
#define SENTINEL -1234.5f

/* MAX_ROWS rows at `stride` bytes against MAX_TOK activation rows at
 * act_stride bytes (at odd addresses unless float: unaligned) through kernel_dot_tile
 * with n_rows = 1 .. MAX_ROWS and n_tok = 1 .. MAX_TOK, results at a padded
 * out stride: each is the kernel's single-row dot bit for bit, nothing
 * outside the tile is written, and the full tile passes the single-row
 * checks against the reference. */
static void check_tile_rows(const kernel_desc *k, uint32_t type, uint64_t n, uint64_t pad, uint64_t max_rows,
                            uint64_t *rng, case_stats *st)
{
    const kernel_desc *ref = kernel_reference(type);
    /* float activations (reference kernels) must stay aligned */
    bool f32 = k->act_type == GGML_TYPE_F32;
    uint64_t stride = ggml_row_bytes(type, n) + pad;
    uint64_t act_stride = kernel_act_bytes(k->act_type, n) + (f32 ? 8 : pad + 3);
    const uint64_t os = max_rows + 2;
    uint8_t *w = malloc(stride * max_rows), *act_buf = malloc(act_stride * MAX_TOK + 1), *act = act_buf + !f32;
    float *x = malloc(n * MAX_TOK * sizeof(float)), *xh = malloc(n * MAX_TOK * sizeof(float));
    float *wd = malloc(n * max_rows * sizeof(float)), *out = malloc(MAX_TOK * os * sizeof(float));
    float *one = malloc(MAX_TOK * max_rows * sizeof(float)); /* [token][row] */
    bool quantized = quantize_supported(type);
    for (uint64_t r = 0; r < max_rows; r++) {
        make_rows(type, quantized, w + r * stride, n, 1, rng);
        dequant_row(type, w + r * stride, wd + r * n, n, NULL);
    }
    for (int t = 0; t < MAX_TOK; t++) {
        make_act((act_kind)(t % 3), x + t * n, n, rng);
        kernel_prepare_act(k->act_type, x + t * n, act + t * act_stride, n);
        dequant_act(k->act_type, act + t * act_stride, x + t * n, xh + t * n, n);
        for (uint64_t r = 0; r < max_rows; r++) k->dot(w + r * stride, act + t * act_stride, n, &one[t * max_rows + r]);
    }
    for (uint64_t n_rows = 1; n_rows <= max_rows; n_rows++)
        for (uint64_t n_tok = 1; n_tok <= MAX_TOK; n_tok++) {
            for (uint64_t i = 0; i < MAX_TOK * os; i++) out[i] = SENTINEL;
            kernel_dot_tile(k, w, stride, n_rows, act, act_stride, n_tok, n, out, os);
            for (uint64_t t = 0; t < MAX_TOK; t++)
                for (uint64_t r = 0; r < os; r++) {
                    float got = out[t * os + r];
                    if (t < n_tok && r < n_rows)
                        CHECK(!memcmp(&got, &one[t * max_rows + r], sizeof got),
                              "%s tile n=%llu pad %llu %llux%llu: row %llu token %llu %.9g, single-row dot %.9g",
                              ggml_type_name(type), (unsigned long long)n, (unsigned long long)pad,
                              (unsigned long long)n_rows, (unsigned long long)n_tok, (unsigned long long)r,
                              (unsigned long long)t, got, one[t * max_rows + r]);
                    else
                        CHECK(got == SENTINEL, "%s tile n=%llu %llux%llu wrote out[%llu]", ggml_type_name(type),
                              (unsigned long long)n, (unsigned long long)n_rows, (unsigned long long)n_tok,
                              (unsigned long long)(t * os + r));
                }
            if (n_rows < max_rows || n_tok < MAX_TOK) continue;
            for (uint64_t t = 0; t < n_tok; t++)
                for (uint64_t r = 0; r < n_rows; r++) {
                    char what[160];
                    snprintf(what, sizeof what, "%s tile n=%llu row %llu token %llu", ggml_type_name(type),
                             (unsigned long long)n, (unsigned long long)r, (unsigned long long)t);
                    check_value(out[t * os + r], k, ref, w + r * stride, x + t * n, wd + r * n, xh + t * n, n,
                                (act_kind)(t % 3), what, st);
                }
        }
    free(w);
    free(act_buf);
    free(x);
    free(xh);
    free(wd);
    free(out);
    free(one);
}

static void check_tile_case(const kernel_desc *k, uint32_t type, uint64_t n, uint64_t pad, uint64_t *rng,
                            case_stats *st)
{
    check_tile_rows(k, type, n, pad, MAX_ROWS, rng, st);
}

TEST(test_kernel_dot_tile_vs_reference)
{
    if (!kernel_cpu_features_get()->avx2_fma_f16c) {
        test_skip("this CPU has no AVX2/FMA/F16C: no fast kernel can run");
        return;
    }
    /* the types of the benchmark models must have one */
    static const uint32_t expected[] = {GGML_TYPE_Q4_K, GGML_TYPE_Q6_K, GGML_TYPE_Q8_0};
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
        CHECK(kernel_fast_lookup(expected[i], KERNEL_ISA_AVX2)->dot_tile != NULL, "%s",
              ggml_type_name(expected[i]));
    /* odd block counts leave partial groups in kernels that take several
     * blocks at a time */
    static const uint64_t lens_blocks[] = {1, 3, 5, 9};
    for (size_t i = 0; i < N_TYPES && test_failures() < 20; i++) {
        uint32_t type = all_types[i];
        const kernel_desc *fast = kernel_fast_lookup(type, KERNEL_ISA_AVX2);
        if (!fast->dot_tile) continue;
        uint64_t be = ggml_type_get(type)->block_elems, rng = 3000 + type;
        case_stats st = {0};
        for (size_t li = 0; li < sizeof lens_blocks / sizeof lens_blocks[0]; li++) {
            check_tile_case(fast, type, lens_blocks[li] * be, 0, &rng, &st);
            check_tile_case(fast, type, lens_blocks[li] * be, 37, &rng, &st);
        }
    }
}

/* The AVX-512 tile kernels: the same checks, and the tile kernels of the
 * benchmark models' types must exist. Their `dot` is AVX2's, so passing
 * means bit-identical results to the AVX2 kernels; the Q4_K and Q6_K
 * kernels (weight rows in the vector lanes) have their own dot and sum in
 * their own order: the same bits in every tile, and within the
 * reference's bounds. */
TEST(test_kernel_dot_tile_avx512)
{
    if (!kernel_cpu_features_get()->avx512_vnni) {
        test_skip("this CPU has no AVX-512 F/BW/VL/DQ + VNNI: the AVX-512 tile kernels are NOT tested here");
        return;
    }
    static const uint32_t expected[] = {GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_Q8_0,
                                        GGML_TYPE_Q4_0};
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
        CHECK(!strcmp(kernel_fast_lookup(expected[i], KERNEL_ISA_AVX512)->isa, "avx512"), "%s",
              ggml_type_name(expected[i]));
    /* the Q8_0 tile works in ranges of 32 blocks, groups of four: 37 and
     * 70 blocks cross ranges and leave a partial group */
    static const uint64_t lens_blocks[] = {1, 3, 5, 9, 12, 37, 70};
    for (size_t i = 0; i < N_TYPES && test_failures() < 20; i++) {
        uint32_t type = all_types[i];
        const kernel_desc *k = kernel_fast_lookup(type, KERNEL_ISA_AVX512);
        if (strcmp(k->isa, "avx512") || !k->dot_tile) continue;
        uint64_t be = ggml_type_get(type)->block_elems, rng = 5000 + type;
        case_stats st = {0};
        for (size_t li = 0; li < sizeof lens_blocks / sizeof lens_blocks[0]; li++) {
            check_tile_case(k, type, lens_blocks[li] * be, 0, &rng, &st);
            check_tile_case(k, type, lens_blocks[li] * be, 37, &rng, &st);
        }
        /* kernels with rows in the vector lanes (16 at a time): one group
         * and a partial one, over block counts crossing their chunks */
        if (type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q6_K)
            for (size_t li = 0; li < 4; li++) {
                check_tile_rows(k, type, lens_blocks[li] * be, 5, 33, &rng, &st);
                check_rows_upto(k, type, lens_blocks[li] * be, 5, true, 33, &rng, &st);
            }
    }
}

/* The AVX-512 decode kernels (F16, BF16, IQ4_XS, Q4_1, Q5_0, Q5_1,
 * IQ4_NL, Q2_K, Q3_K; the tile kernels with one token as dot_rows of Q4_K, Q5_K,
 * Q6_K): one row and many rows against the reference under the same
 * bounds as the AVX2 kernels (the float types sum 16 lanes, so their bits
 * differ from AVX2's within the float bound), kernel_dot_rows equal to
 * their own dot bit for bit (for the tile types, that dot is AVX2's), and
 * the results of IQ4_XS and the 32-value block types the AVX2 kernel's bit
 * for bit (the same integer sums), at lengths with and without a partial
 * group of four blocks. */
static void check_same_as_avx2(const kernel_desc *k5, uint32_t type, uint64_t *rng)
{
    const kernel_desc *k2 = kernel_fast_lookup(type, KERNEL_ISA_AVX2);
    static const uint64_t lens_blocks[] = {1, 2, 3, 5, 7, 16, 37};
    for (size_t li = 0; li < sizeof lens_blocks / sizeof lens_blocks[0]; li++) {
        uint64_t n = lens_blocks[li] * ggml_type_get(type)->block_elems, row_bytes = ggml_row_bytes(type, n);
        uint8_t *w = malloc(row_bytes * ROWS), *act = malloc(kernel_act_bytes(k5->act_type, n));
        float *x = malloc(n * sizeof(float));
        for (int src = 0; src < 2; src++) {
            make_rows(type, src == 0, w, n, ROWS, rng);
            for (int kind = 0; kind < 3; kind++) {
                make_act((act_kind)kind, x, n, rng);
                kernel_prepare_act(k5->act_type, x, act, n);
                for (int r = 0; r < ROWS; r++) {
                    float a2, a5;
                    k2->dot(w + r * row_bytes, act, n, &a2);
                    k5->dot(w + r * row_bytes, act, n, &a5);
                    CHECK(!memcmp(&a2, &a5, sizeof a2), "%s n=%llu row %d kind %d: AVX-512 %.9g, AVX2 %.9g",
                          ggml_type_name(type), (unsigned long long)n, r, kind, a5, a2);
                }
            }
        }
        free(w);
        free(act);
        free(x);
    }
}

TEST(test_kernel_avx512_decode_vs_reference)
{
    if (!kernel_cpu_features_get()->avx512_vnni) {
        test_skip("this CPU has no AVX-512 F/BW/VL/DQ + VNNI: the AVX-512 decode kernels are NOT tested here");
        return;
    }
    static const uint64_t lens_blocks[] = {1, 2, 3, 5, 7, 16, 37};
    for (size_t i = 0; i < N_TYPES && test_failures() < 20; i++) {
        uint32_t type = all_types[i];
        const kernel_desc *k = kernel_fast_lookup(type, KERNEL_ISA_AVX512), *k2 = kernel_fast_lookup(type, KERNEL_ISA_AVX2);
        if (!is_avx512_decode_type(type) && k->dot_rows == k2->dot_rows) continue;
        REQUIRE(!strcmp(k->isa, "avx512"), "%s: no AVX-512 decode kernel", ggml_type_name(type));
        uint64_t be = ggml_type_get(type)->block_elems, rng = 7000 + type;
        case_stats st = {0};
        if (is_avx512_decode_type(type)) check_type(k, type, &st);
        for (size_t li = 0; li < sizeof lens_blocks / sizeof lens_blocks[0]; li++)
            for (int src = 0; src < 2; src++) {
                bool quantized = src == 0;
                if (quantized && !quantize_supported(type)) continue;
                /* float types: lengths off the 64- and 16-element steps too */
                uint64_t n = lens_blocks[li] * be * (be == 1 ? 37 : 1);
                check_rows_case(k, type, n, 0, quantized, &rng, &st);
                check_rows_case(k, type, n, 37, quantized, &rng, &st);
            }
        if (type == GGML_TYPE_IQ4_XS || is_avx512_pairs_type(type)) check_same_as_avx2(k, type, &rng);
        const char *v = getenv("STRATA_TEST_VERBOSE");
        if (v && *v && strcmp(v, "0"))
            printf("    %-7s avx512 worst error / tolerance: exact %.3f, bound %.3f, relative %.3f\n",
                   ggml_type_name(type), st.worst_exact, st.worst_bound, st.worst_rel);
    }
}

/* kernel_dot_tile without a dot_tile (every reference kernel; a fast one
 * with it removed) runs kernel_dot_rows token by token: the same bits as
 * with one, and the tile checks hold for every type. n_tok = 0 writes
 * nothing. */
TEST(test_kernel_dot_tile_fallback)
{
    uint64_t rng = 77;
    for (size_t i = 0; i < N_TYPES; i++) {
        uint32_t type = all_types[i];
        const kernel_desc *ref = kernel_reference(type), *fast = kernel_select(type, KERNEL_FAST);
        CHECK(ref->dot_tile == NULL, "%s: reference kernel with a dot_tile", ggml_type_name(type));
        kernel_desc plain = *fast;
        plain.dot_tile = NULL;
        uint64_t n = 2 * ggml_type_get(type)->block_elems > 512 ? 2 * ggml_type_get(type)->block_elems : 512;
        case_stats st = {0};
        check_tile_case(ref, type, n, 5, &rng, &st);
        check_tile_case(&plain, type, n, 5, &rng, &st);
        float out[2] = {7, 7};
        uint8_t w[1] = {0}, act[1] = {0};
        kernel_dot_tile(&plain, w, 0, 1, act, 0, 0, n, out, 1);
        kernel_dot_tile(fast, w, 0, 1, act, 0, 0, n, out, 1);
        CHECK(out[0] == 7 && out[1] == 7, "%s: n_tok 0 wrote", ggml_type_name(type));
    }
}

/* Kernels keep no state: the same rows from several threads at once give
 * the same results as from one. */
typedef struct thread_job {
    const kernel_desc *k;
    const uint8_t *w, *act;
    uint64_t n, row_bytes;
    float out[64];
} thread_job;

static void *run_rows(void *p)
{
    thread_job *j = p;
    for (int rep = 0; rep < 20; rep++)
        for (int r = 0; r < 64; r++) j->k->dot(j->w + (uint64_t)r * j->row_bytes, j->act, j->n, &j->out[r]);
    return NULL;
}

TEST(test_kernel_threads)
{
    const kernel_desc *k = kernel_select(GGML_TYPE_Q4_K, KERNEL_FAST);
    const uint64_t n = 1024, row_bytes = ggml_row_bytes(GGML_TYPE_Q4_K, n);
    uint64_t rng = 77;
    uint8_t *w = malloc(row_bytes * 64), *act = malloc(kernel_act_bytes(k->act_type, n));
    float x[1024];
    make_rows(GGML_TYPE_Q4_K, false, w, n, 64, &rng);
    make_act(ACT_GAUSS, x, n, &rng);
    kernel_prepare_act(k->act_type, x, act, n);
    thread_job jobs[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        jobs[i] = (thread_job){.k = k, .w = w, .act = act, .n = n, .row_bytes = row_bytes};
        REQUIRE(pthread_create(&th[i], NULL, run_rows, &jobs[i]) == 0);
    }
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    for (int r = 0; r < 64; r++) {
        float one;
        k->dot(w + (uint64_t)r * row_bytes, act, n, &one);
        for (int i = 0; i < 3; i++) CHECK(jobs[i].out[r] == one, "thread %d row %d", i, r);
    }
    free(w);
    free(act);
}

/* The attention loops: AVX2 against scalar for group sizes 1..9, key counts
 * around the block of 8, head sizes the fast path takes (8, 64, 128) and
 * leaves to the scalar loops (1, 63, 131), on a cache row wider than the
 * head (stride) as in the engine. */
static void kv_case(bool f32, uint64_t n_q, uint64_t n_keys, uint64_t hd)
{
    uint64_t elem = f32 ? 4 : 2, stride = (hd + 5) * elem;
    uint8_t *cache = calloc(n_keys, stride);
    float *q = malloc(n_q * hd * 4), *s[2], *out[2];
    for (int v = 0; v < 2; v++) {
        s[v] = malloc(n_q * n_keys * 4);
        out[v] = malloc(n_q * hd * 4);
    }
    for (uint64_t i = 0; i < n_q * hd; i++) q[i] = (float)((i * 37) % 23) / 11.0f - 1.0f;
    for (uint64_t j = 0; j < n_keys; j++)
        for (uint64_t d = 0; d < hd; d++) {
            float x = (float)((j * 131 + d * 53) % 29) / 14.0f - 1.0f;
            if (f32) memcpy(cache + j * stride + d * 4, &x, 4);
            else {
                uint16_t h = f32_to_fp16(x);
                memcpy(cache + j * stride + d * 2, &h, 2);
            }
        }
    kv_ops ops[2] = {kv_ops_get(f32, false), kv_ops_get(f32, true)};
    for (int v = 0; v < 2; v++) {
        ops[v].scores(q, n_q, cache, stride, n_keys, hd, 0.125f, s[v]);
        for (uint64_t i = 0; i < n_q; i++) ops[v].softmax(s[v] + i * n_keys, n_keys);
        /* both mix the same probabilities, so each step is checked alone */
        ops[v].mix(out[v], n_q, s[0], cache, stride, n_keys, hd);
    }
    for (uint64_t i = 0; i < n_q * n_keys; i++)
        CHECK(fabsf(s[0][i] - s[1][i]) <= 1e-6f, " probabilities f32=%d n_q=%llu keys=%llu hd=%llu i=%llu: %g vs %g",
              f32, (unsigned long long)n_q, (unsigned long long)n_keys, (unsigned long long)hd,
              (unsigned long long)i, s[0][i], s[1][i]);
    for (uint64_t i = 0; i < n_q * hd; i++)
        CHECK(fabsf(out[0][i] - out[1][i]) <= 1e-5f * (1.0f + fabsf(out[0][i])),
              " mix f32=%d n_q=%llu keys=%llu hd=%llu i=%llu", f32, (unsigned long long)n_q,
              (unsigned long long)n_keys, (unsigned long long)hd, (unsigned long long)i);
    for (int v = 0; v < 2; v++) {
        free(s[v]);
        free(out[v]);
    }
    free(q);
    free(cache);
}

TEST(test_kernel_kv_ops_match_scalar)
{
    static const uint64_t hds[] = {1, 8, 63, 64, 128, 131}, keys[] = {1, 7, 8, 9, 33, 200};
    for (int f32 = 0; f32 <= 1; f32++)
        for (uint64_t n_q = 1; n_q <= 9; n_q += 4)
            for (size_t h = 0; h < sizeof hds / sizeof hds[0]; h++)
                for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) kv_case(f32, n_q, keys[k], hds[h]);
}

/* The vector exponential of the fast softmax against expf over the whole
 * range softmax feeds it (x - max <= 0), including the underflow end. */
TEST(test_kernel_softmax_matches_expf)
{
    enum { N = 4099 };
    float *a = malloc(N * 4), *b = malloc(N * 4);
    kv_ops ref = kv_ops_get(false, false), fast = kv_ops_get(false, true);
    for (int span = 1; span <= 200; span *= 5) {
        for (int i = 0; i < N; i++) a[i] = b[i] = -(float)span * (float)((i * 7919) % N) / N;
        ref.softmax(a, N);
        fast.softmax(b, N);
        for (int i = 0; i < N; i++)
            CHECK(fabsf(a[i] - b[i]) <= 2e-6f * a[i] + 1e-12f, " span %d i=%d: %g vs %g", span, i, a[i], b[i]);
    }
    free(a);
    free(b);
}

/* SwiGLU with the vector exponential against expf, over gate values from
 * deep negative (silu -> 0) to large positive (silu -> x), odd lengths. */
TEST(test_kernel_swiglu_matches_scalar)
{
    enum { N = 1027 };
    float *a = malloc(N * 4), *b = malloc(N * 4), *up = malloc(N * 4);
    swiglu_fn fast = swiglu_get(true);
    for (int i = 0; i < N; i++) {
        a[i] = b[i] = (float)((i * 7919) % N) / N * 240.0f - 120.0f;
        up[i] = (float)((i * 31) % 17) / 8.0f - 1.0f;
    }
    swiglu_ref(a, up, N);
    fast(b, up, N);
    for (int i = 0; i < N; i++)
        CHECK(fabsf(a[i] - b[i]) <= 1e-6f * (1.0f + fabsf(a[i])), " i=%d: %g vs %g", i, a[i], b[i]);
    free(a);
    free(b);
    free(up);
}
