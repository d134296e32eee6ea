/* Tests of the scalar reference dequantizers and quantizers
 * (src/kernels/cpu/dequant.c, quantize.c).
 *
 * The truth used here is independent of the code under test:
 *  - llama.cpp's files: synth-TYPE.gguf were quantized by llama-quantize
 *    from synth-f16.gguf, so dequantizing any tensor of them must land
 *    close to the F16 original (an error bound derived from the bits per
 *    weight), and Q8_0 / Q4_0 / Q4_1, whose quantization rule is fully
 *    deterministic, must be reproduced byte for byte;
 *  - hand-assembled blocks whose values follow from the format description;
 *  - IEEE half / bfloat16 bit patterns known by definition.
 * Set STRATA_TEST_VERBOSE=1 to print the measured errors. */
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf/ggml_types.h"
#include "gguf/gguf.h"
#include "kernels/cpu/dequant.h"
#include "kernels/cpu/quantize.h"
#include "test.h"
#include "test_rng.h"
#include "util/fp16.h"

static bool verbose(void)
{
    const char *v = getenv("STRATA_TEST_VERBOSE");
    return v && *v && strcmp(v, "0") != 0;
}

/* ---- helpers ---- */

static bool read_tensor(const gguf_file *f, const gguf_tensor *t, void *buf)
{
    int fd = open(f->splits[t->split].path, O_RDONLY);
    if (fd < 0) return false;
    uint64_t done = 0;
    while (done < t->n_bytes) {
        ssize_t r = pread(fd, (char *)buf + done, t->n_bytes - done, (off_t)(t->file_offset + done));
        if (r <= 0) break;
        done += (uint64_t)r;
    }
    close(fd);
    return done == t->n_bytes;
}

/* The tensor's elements as floats (malloc'd), or NULL on failure. */
static float *load_dequant(const gguf_file *f, const gguf_tensor *t)
{
    void *raw = malloc(t->n_bytes ? t->n_bytes : 1);
    float *out = malloc(t->n_elems * sizeof(float));
    strata_error err = {0};
    bool ok = raw && out && read_tensor(f, t, raw) &&
              dequant_row(t->type, raw, out, t->n_elems, &err) == STRATA_OK;
    if (!ok) CHECK(false, "tensor %s (%s): %s", t->name, ggml_type_name(t->type), err.message);
    free(raw);
    if (!ok) {
        free(out);
        return NULL;
    }
    return out;
}

/* Relative RMS error sqrt(sum (a-b)^2 / sum b^2), Pearson correlation and
 * gain sum a*b / sum b^2 (the slope of a regressed on b: 1 when the values
 * are on the right scale). */
static void compare3(const float *a, const float *b, uint64_t n, double *rel, double *corr,
                     double *gain)
{
    double ma = 0, mb = 0;
    for (uint64_t i = 0; i < n; i++) {
        ma += a[i];
        mb += b[i];
    }
    ma /= (double)n;
    mb /= (double)n;
    double se = 0, sb = 0, caa = 0, cbb = 0, cab = 0, sab = 0;
    for (uint64_t i = 0; i < n; i++) {
        double e = (double)a[i] - b[i];
        se += e * e;
        sb += (double)b[i] * b[i];
        double da = a[i] - ma, db = b[i] - mb;
        caa += da * da;
        cbb += db * db;
        cab += da * db;
        sab += (double)a[i] * b[i];
    }
    *gain = sb > 0 ? sab / sb : 1.0;
    *rel = sb > 0 ? sqrt(se / sb) : sqrt(se);
    *corr = caa > 0 && cbb > 0 ? cab / sqrt(caa * cbb) : (se == 0 ? 1.0 : 0.0);
}

static void compare(const float *a, const float *b, uint64_t n, double *rel, double *corr)
{
    double gain;
    compare3(a, b, n, rel, corr, &gain);
}

/* ---- dequantizing llama.cpp's files ----
 *
 * Error bound per tensor type, as a relative RMS error against the F16
 * original. A uniform grid of step D has a rounding error of RMS D/sqrt(12).
 * With b bits spanning a block's range (about +-2.5 sigma for a block of
 * Gaussian weights), D ~ 5 sigma / 2^b, so relRMS ~ 5/sqrt(12) * 2^-b
 * ~ 1.4 * 2^-b. That estimate matches the measurements within 20% (b = 8:
 * 0.0055 estimated, 0.0054 measured; b = 4: 0.087 vs 0.072-0.087; b = 2:
 * 0.35 vs 0.30), so each bound is 1.25x the estimate: 1.75 * 2^-b, with b
 * the bits per quant (IQ4: 16 levels, b = 4). A wrong layout (swapped
 * nibbles, a misread scale) gives values nearly uncorrelated with the
 * original: relRMS near 1.0 or worse. The correlation must be at least
 * 1/sqrt(1 + bound^2), what an error independent of the signal at the
 * bound would leave. The gain (slope of dequantized on original) must be
 * within 0.5 * bound^2 + 0.001 of 1: rounding to the nearest grid point
 * leaves errors nearly uncorrelated with the values, so the slope moves only
 * at second order (measured: Q8_0 6e-5, Q4_0 0.003, Q2_K 0.02), while a
 * scale decoded wrong by a factor 1+e moves it by about e. */
typedef struct type_bound {
    uint32_t type;
    double max_rel;
} type_bound;

#define BITS_BOUND(b) (1.75 / (double)(1 << (b)))

static const type_bound bounds[] = {
    {GGML_TYPE_F32, 1e-7},  /* norms are stored F32 in every file: a copy */
    {GGML_TYPE_F16, 1e-7},  /* F16 -> F16 is a copy */
    /* 8 significant bits: ulp = 2^-7 relative at worst, RMS ulp/sqrt(12)
     * = 0.0023 (measured 0.0017), x1.5 */
    {GGML_TYPE_BF16, 0.0034},
    {GGML_TYPE_Q8_0, BITS_BOUND(8)},   {GGML_TYPE_Q6_K, BITS_BOUND(6)},
    {GGML_TYPE_Q5_0, BITS_BOUND(5)},   {GGML_TYPE_Q5_1, BITS_BOUND(5)},
    {GGML_TYPE_Q5_K, BITS_BOUND(5)},   {GGML_TYPE_Q4_0, BITS_BOUND(4)},
    {GGML_TYPE_Q4_1, BITS_BOUND(4)},   {GGML_TYPE_Q4_K, BITS_BOUND(4)},
    {GGML_TYPE_IQ4_NL, BITS_BOUND(4)}, {GGML_TYPE_IQ4_XS, BITS_BOUND(4)},
    {GGML_TYPE_Q3_K, BITS_BOUND(3)},   {GGML_TYPE_Q2_K, BITS_BOUND(2)},
};

static const type_bound *bound_for(uint32_t type)
{
    for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++)
        if (bounds[i].type == type) return &bounds[i];
    return NULL;
}

/* Dequantizes every tensor of synth-NAME.gguf and compares it with the same
 * tensor of synth-f16.gguf. `main_type` must occur in the file (so a file
 * that silently lost its quantized tensors cannot pass). */
static void check_fixture(const char *name, uint32_t main_type)
{
    char file[128];
    snprintf(file, sizeof file, "synth-%s.gguf", name);
    const char *p = test_fixture("synth-f16.gguf");
    if (!p) return;
    char ref_path[1024];
    snprintf(ref_path, sizeof ref_path, "%s", p);
    p = test_fixture(file);
    if (!p) return;

    strata_error err = {0};
    gguf_file *ref = NULL, *q = NULL;
    REQUIRE(gguf_open(ref_path, &ref, &err) == STRATA_OK, "%s", err.message);
    if (gguf_open(p, &q, &err) != STRATA_OK) {
        CHECK(false, "%s", err.message);
        gguf_close(ref);
        return;
    }
    CHECK(q->n_tensors == ref->n_tensors, "%s: %llu tensors, F16 file %llu", file,
          (unsigned long long)q->n_tensors, (unsigned long long)ref->n_tensors);

    double worst_rel[GGML_TYPE_COUNT] = {0}, worst_corr[GGML_TYPE_COUNT], worst_gain[GGML_TYPE_COUNT] = {0};
    uint64_t count[GGML_TYPE_COUNT] = {0};
    for (int i = 0; i < GGML_TYPE_COUNT; i++) worst_corr[i] = 1.0;

    for (uint64_t i = 0; i < q->n_tensors && test_failures() < 20; i++) {
        const gguf_tensor *t = &q->tensors[i];
        const gguf_tensor *r = gguf_find_tensor(ref, t->name);
        if (!r || r->n_elems != t->n_elems) {
            CHECK(false, "%s: tensor %s missing or of another shape in synth-f16.gguf", file, t->name);
            continue;
        }
        const type_bound *b = bound_for(t->type);
        if (!b) {
            CHECK(false, "%s: tensor %s has type %s, not covered by this test", file, t->name,
                  ggml_type_name(t->type));
            continue;
        }
        float *x = load_dequant(q, t), *y = load_dequant(ref, r);
        if (x && y) {
            double rel, corr, gain;
            compare3(x, y, t->n_elems, &rel, &corr, &gain);
            if (fabs(gain - 1) > worst_gain[t->type]) worst_gain[t->type] = fabs(gain - 1);
            double max_gain_dev = 0.5 * b->max_rel * b->max_rel + 0.001;
            CHECK(fabs(gain - 1) <= max_gain_dev, "%s: %s (%s): gain %.5f, not within %.5f of 1",
                  file, t->name, ggml_type_name(t->type), gain, max_gain_dev);
            CHECK(rel <= b->max_rel, "%s: %s (%s): relative RMS error %.5f > %.5f", file,
                  t->name, ggml_type_name(t->type), rel, b->max_rel);
            double min_corr = 1.0 / sqrt(1.0 + b->max_rel * b->max_rel) - 1e-9;
            CHECK(corr >= min_corr, "%s: %s (%s): correlation %.6f < %.6f", file, t->name,
                  ggml_type_name(t->type), corr, min_corr);
            if (rel > worst_rel[t->type]) worst_rel[t->type] = rel;
            if (corr < worst_corr[t->type]) worst_corr[t->type] = corr;
            count[t->type]++;
        }
        free(x);
        free(y);
    }
    CHECK(count[main_type] > 0, "%s holds no %s tensor", file, ggml_type_name(main_type));
    if (verbose()) {
        for (int ty = 0; ty < GGML_TYPE_COUNT; ty++)
            if (count[ty])
                printf("    %-14s %-6s %3llu tensors: worst relRMS %.5f, corr %.6f, |gain-1| %.5f\n",
                       file, ggml_type_name((uint32_t)ty), (unsigned long long)count[ty],
                       worst_rel[ty], worst_corr[ty], worst_gain[ty]);
    }
    gguf_close(q);
    gguf_close(ref);
}

TEST(test_dequant_fixture_q8_0) { check_fixture("q8_0", GGML_TYPE_Q8_0); }
TEST(test_dequant_fixture_q4_0) { check_fixture("q4_0", GGML_TYPE_Q4_0); }
TEST(test_dequant_fixture_q4_1) { check_fixture("q4_1", GGML_TYPE_Q4_1); }
TEST(test_dequant_fixture_q5_0) { check_fixture("q5_0", GGML_TYPE_Q5_0); }
TEST(test_dequant_fixture_q5_1) { check_fixture("q5_1", GGML_TYPE_Q5_1); }
TEST(test_dequant_fixture_q2_k) { check_fixture("q2_k", GGML_TYPE_Q2_K); }
TEST(test_dequant_fixture_q3_k_m) { check_fixture("q3_k_m", GGML_TYPE_Q3_K); }
TEST(test_dequant_fixture_q4_k_m) { check_fixture("q4_k_m", GGML_TYPE_Q4_K); }
TEST(test_dequant_fixture_q5_k_m) { check_fixture("q5_k_m", GGML_TYPE_Q5_K); }
TEST(test_dequant_fixture_q6_k) { check_fixture("q6_k", GGML_TYPE_Q6_K); }
TEST(test_dequant_fixture_iq4_nl) { check_fixture("iq4_nl", GGML_TYPE_IQ4_NL); }
TEST(test_dequant_fixture_iq4_xs) { check_fixture("iq4_xs", GGML_TYPE_IQ4_XS); }
TEST(test_dequant_fixture_bf16) { check_fixture("bf16", GGML_TYPE_BF16); }

/* ---- quantizing like llama.cpp ----
 * Quantizes each F16 original with our quantizer and compares the bytes with
 * every tensor of that type in llama.cpp's file. The rules of Q8_0, Q4_0 and
 * Q4_1 leave no freedom (scale from the block's extreme, fixed rounding), so
 * the blocks must be identical; a difference would mean a different rounding
 * of a tie (x/d exactly halfway) or of the f16 scale. */
static void check_bit_exact(const char *name, uint32_t type)
{
    char file[128];
    snprintf(file, sizeof file, "synth-%s.gguf", name);
    const char *p = test_fixture("synth-f16.gguf");
    if (!p) return;
    char ref_path[1024];
    snprintf(ref_path, sizeof ref_path, "%s", p);
    p = test_fixture(file);
    if (!p) return;

    strata_error err = {0};
    gguf_file *ref = NULL, *q = NULL;
    REQUIRE(gguf_open(ref_path, &ref, &err) == STRATA_OK, "%s", err.message);
    if (gguf_open(p, &q, &err) != STRATA_OK) {
        CHECK(false, "%s", err.message);
        gguf_close(ref);
        return;
    }
    const ggml_type_info *ti = ggml_type_get(type);
    uint64_t n_tensors = 0, n_blocks = 0, n_diff = 0;
    for (uint64_t i = 0; i < q->n_tensors; i++) {
        const gguf_tensor *t = &q->tensors[i];
        if (t->type != type) continue;
        const gguf_tensor *r = gguf_find_tensor(ref, t->name);
        if (!r || r->n_elems != t->n_elems) {
            CHECK(false, "%s: tensor %s missing in synth-f16.gguf", file, t->name);
            continue;
        }
        float *x = load_dequant(ref, r);
        uint8_t *want = malloc(t->n_bytes), *got = malloc(t->n_bytes);
        if (x && want && got && read_tensor(q, t, want)) {
            CHECK(quantize_row(type, x, got, t->n_elems, &err) == STRATA_OK, "%s", err.message);
            uint64_t nb = t->n_bytes / ti->block_bytes, diff = 0;
            for (uint64_t k = 0; k < nb; k++)
                if (memcmp(got + k * ti->block_bytes, want + k * ti->block_bytes, ti->block_bytes))
                    diff++;
            n_blocks += nb;
            n_diff += diff;
            n_tensors++;
        } else {
            CHECK(false, "%s: could not read tensor %s", file, t->name);
        }
        free(x);
        free(want);
        free(got);
    }
    CHECK(n_tensors > 0, "%s holds no %s tensor", file, ti->name);
    CHECK(n_diff == 0, "%s: %llu of %llu %s blocks differ from llama.cpp's", file,
          (unsigned long long)n_diff, (unsigned long long)n_blocks, ti->name);
    if (verbose())
        printf("    %s: %llu tensors, %llu blocks, %llu differ\n", file,
               (unsigned long long)n_tensors, (unsigned long long)n_blocks,
               (unsigned long long)n_diff);
    gguf_close(q);
    gguf_close(ref);
}

TEST(test_quant_q8_0_matches_llama) { check_bit_exact("q8_0", GGML_TYPE_Q8_0); }
TEST(test_quant_q4_0_matches_llama) { check_bit_exact("q4_0", GGML_TYPE_Q4_0); }
TEST(test_quant_q4_1_matches_llama) { check_bit_exact("q4_1", GGML_TYPE_Q4_1); }

/* Our K-quant scale search against llama.cpp's on the same weights: for
 * every tensor that llama.cpp stored as `type`, our quantization of the F16
 * original must have a relative RMS error at most 1.1x llama.cpp's (which
 * is a reasonable, mature search: this bounds "good error" independently). */
static void check_kquant_quality(const char *name, uint32_t type)
{
    char file[128];
    snprintf(file, sizeof file, "synth-%s.gguf", name);
    const char *p = test_fixture("synth-f16.gguf");
    if (!p) return;
    char ref_path[1024];
    snprintf(ref_path, sizeof ref_path, "%s", p);
    p = test_fixture(file);
    if (!p) return;

    strata_error err = {0};
    gguf_file *ref = NULL, *q = NULL;
    REQUIRE(gguf_open(ref_path, &ref, &err) == STRATA_OK, "%s", err.message);
    if (gguf_open(p, &q, &err) != STRATA_OK) {
        CHECK(false, "%s", err.message);
        gguf_close(ref);
        return;
    }
    double se_ours = 0, se_llama = 0, s_ref = 0;
    uint64_t n_tensors = 0;
    for (uint64_t i = 0; i < q->n_tensors; i++) {
        const gguf_tensor *t = &q->tensors[i];
        if (t->type != type) continue;
        const gguf_tensor *r = gguf_find_tensor(ref, t->name);
        if (!r || r->n_elems != t->n_elems) continue;
        float *x = load_dequant(ref, r), *theirs = load_dequant(q, t);
        uint8_t *blocks = malloc(t->n_bytes);
        float *ours = malloc(t->n_elems * sizeof(float));
        if (x && theirs && blocks && ours &&
            quantize_row(type, x, blocks, t->n_elems, &err) == STRATA_OK &&
            dequant_row(type, blocks, ours, t->n_elems, &err) == STRATA_OK) {
            double a = 0, b = 0, c = 0;
            for (uint64_t k = 0; k < t->n_elems; k++) {
                a += ((double)ours[k] - x[k]) * ((double)ours[k] - x[k]);
                b += ((double)theirs[k] - x[k]) * ((double)theirs[k] - x[k]);
                c += (double)x[k] * x[k];
            }
            CHECK(a <= 1.21 * b, /* squared errors: 1.1x in RMS */ "%s: tensor %s: our %s relRMS %.5f vs llama.cpp's %.5f", file,
                  t->name, ggml_type_name(type), sqrt(a / c), sqrt(b / c));
            se_ours += a;
            se_llama += b;
            s_ref += c;
            n_tensors++;
        } else {
            CHECK(false, "%s: tensor %s: %s", file, t->name, err.message);
        }
        free(x);
        free(theirs);
        free(blocks);
        free(ours);
    }
    CHECK(n_tensors > 0, "%s holds no %s tensor", file, ggml_type_name(type));
    if (verbose() && s_ref > 0)
        printf("    %s %s: %llu tensors, relRMS ours %.5f, llama.cpp %.5f\n", file,
               ggml_type_name(type), (unsigned long long)n_tensors, sqrt(se_ours / s_ref),
               sqrt(se_llama / s_ref));
    gguf_close(q);
    gguf_close(ref);
}

TEST(test_quant_q4_k_vs_llama_error) { check_kquant_quality("q4_k_m", GGML_TYPE_Q4_K); }
TEST(test_quant_q5_k_vs_llama_error) { check_kquant_quality("q5_k_m", GGML_TYPE_Q5_K); }
TEST(test_quant_q6_k_vs_llama_error) { check_kquant_quality("q6_k", GGML_TYPE_Q6_K); }

/* ---- round trips on random data ----
 * Seeded N(0,1) rows plus awkward rows (zeros, a constant, one outlier, all
 * positive, all negative, tiny values, block scales varying along the row).
 * Bound on the relative RMS error of dequant(quantize(x)) per type (Gaussian
 * data; same estimate as above), and a max-abs bound on the awkward rows
 * relative to their own scale; zeros must stay exactly zero. */
typedef struct rt_case {
    uint32_t type;
    double max_rel;   /* relative RMS error on Gaussian rows */
    double half_step; /* largest rounding error relative to the row's max |x| */
} rt_case;

/* F16: 11 significant bits, ulp/sqrt(12) = 2^-10/sqrt(12) = 2.8e-4 at worst
 * (measured 2.1e-4). The fixed-rule types get the bits-based bound above.
 * Our K-quants get 1.1x what their scale search achieves on this seeded
 * data (Q6_K 0.0167, Q5_K 0.0347, Q4_K 0.0702 measured; llama.cpp reaches
 * 0.0177 / 0.0362 / 0.0714 on the fixture), so a regression of the search
 * shows, not only a broken layout. */
/* half_step: half a grid step as a fraction of the largest magnitude:
 * half an ulp for the float types (2^-11, 2^-8); for the block types the
 * range [-amax, amax] (or [min, max]) over the grid's steps, halved: Q8_0
 * 1/254, Q4_1 and Q4_K 1/15, Q5_K 1/31, Q6_K 1/64. Q4_0 puts its extreme
 * at -8 steps, so a value of the other sign almost as large clamps at +7:
 * up to a full step, 1/8. The awkward
 * rows must stay within 1.5 half-steps (the slack covers the f16 rounding
 * of the scales and the 6-bit sub-block scales). */
static const rt_case rt_cases[] = {
    {GGML_TYPE_F32, 0.0, 0.0},
    {GGML_TYPE_F16, 2.9e-4, 1.0 / 2048},
    {GGML_TYPE_BF16, 0.0034, 1.0 / 256},
    {GGML_TYPE_Q8_0, BITS_BOUND(8), 1.0 / 254},
    {GGML_TYPE_Q4_0, BITS_BOUND(4), 1.0 / 8},
    {GGML_TYPE_Q4_1, BITS_BOUND(4), 1.0 / 15},
    {GGML_TYPE_Q6_K, 0.0184, 1.0 / 64},
    {GGML_TYPE_Q5_K, 0.0382, 1.0 / 31},
    {GGML_TYPE_Q4_K, 0.0772, 1.0 / 15},
};

#define RT_ROW 512
#define RT_ROWS 16

static void fill_awkward(float *x, int kind, uint64_t *seed)
{
    for (int i = 0; i < RT_ROW; i++) {
        float g = rng_normal(seed);
        switch (kind) {
        case 0: x[i] = 0.0f; break;
        case 1: x[i] = 0.37f; break;
        case 2: x[i] = i == 77 ? 100.0f : 0.01f * g; break;
        case 3: x[i] = 2.0f + fabsf(g); break;
        case 4: x[i] = -2.0f - fabsf(g); break;
        case 5: x[i] = 1e-3f * g; break; /* some f16 scales are subnormal */
        default: x[i] = g * (float)(1 + i % 7); break; /* varying block scales */
        }
    }
}

TEST(test_quant_roundtrip_random)
{
    uint64_t seed = 0x5eed1234;
    float *x = malloc(RT_ROW * RT_ROWS * sizeof(float)), *y = malloc(RT_ROW * RT_ROWS * sizeof(float));
    uint8_t *blk = malloc(RT_ROW * RT_ROWS * 4);
    REQUIRE(x && y && blk);
    for (int i = 0; i < RT_ROW * RT_ROWS; i++) x[i] = rng_normal(&seed);
    for (size_t c = 0; c < sizeof rt_cases / sizeof rt_cases[0]; c++) {
        uint32_t type = rt_cases[c].type;
        const char *tn = ggml_type_name(type);
        strata_error err = {0};
        /* Row by row, as the synthetic-model generator streams. */
        for (int r = 0; r < RT_ROWS; r++) {
            CHECK(quantize_row(type, x + r * RT_ROW, blk + ggml_row_bytes(type, RT_ROW) * r, RT_ROW,
                               &err) == STRATA_OK, "%s: %s", tn, err.message);
        }
        CHECK(dequant_row(type, blk, y, RT_ROW * RT_ROWS, &err) == STRATA_OK, "%s: %s", tn, err.message);
        double rel, corr;
        compare(y, x, RT_ROW * RT_ROWS, &rel, &corr);
        CHECK(rel <= rt_cases[c].max_rel, "%s: random round trip relRMS %.5f > %.5f", tn, rel,
              rt_cases[c].max_rel);
        if (verbose()) printf("    round trip %-5s relRMS %.6f\n", tn, rel);

        /* Awkward rows: error bounded by the row's range at the type's bits. */
        uint64_t s2 = 99;
        for (int kind = 0; kind < 7; kind++) {
            fill_awkward(x + RT_ROW * RT_ROWS - RT_ROW, kind, &s2);
            float *xa = x + RT_ROW * RT_ROWS - RT_ROW;
            CHECK(quantize_row(type, xa, blk, RT_ROW, &err) == STRATA_OK, "%s", err.message);
            CHECK(dequant_row(type, blk, y, RT_ROW, &err) == STRATA_OK, "%s", err.message);
            double amax = 0, emax = 0;
            bool finite = true;
            for (int i = 0; i < RT_ROW; i++) {
                amax = fmax(amax, fabs(xa[i]));
                emax = fmax(emax, fabs((double)y[i] - xa[i]));
                finite = finite && isfinite(y[i]);
            }
            CHECK(finite, "%s: awkward row %d dequantizes to non-finite values", tn, kind);
            double tol = 1.5 * rt_cases[c].half_step * amax;
            if (verbose()) printf("    awkward %-5s row %d: max error / max |x| = %.5f (bound %.5f)\n",
                                  tn, kind, amax > 0 ? emax / amax : 0, 1.5 * rt_cases[c].half_step);
            CHECK(emax <= tol, "%s: awkward row %d: max error %.3g > %.3g", tn, kind, emax, tol);
            if (kind == 0) CHECK(emax == 0, "%s: zeros do not stay zero", tn);
        }
        for (int i = 0; i < RT_ROW; i++) x[RT_ROW * RT_ROWS - RT_ROW + i] = rng_normal(&seed);
    }
    free(x);
    free(y);
    free(blk);
}

/* Values already on a grid the format can represent come back exactly. */
TEST(test_quant_roundtrip_exact_grid)
{
    float x[256], y[256];
    uint8_t blk[512];
    /* Q8_0: integers -127..127 times 0.5 with 127 in every block. */
    for (int i = 0; i < 256; i++) x[i] = 0.5f * (float)((i % 32 == 0) ? 127 : (i * 37) % 255 - 127);
    CHECK(quantize_row(GGML_TYPE_Q8_0, x, blk, 256, NULL) == STRATA_OK);
    CHECK(dequant_row(GGML_TYPE_Q8_0, blk, y, 256, NULL) == STRATA_OK);
    CHECK(memcmp(x, y, sizeof x) == 0, "Q8_0 grid values changed");
    /* Q4_0: k*0.25 for k in -8..7 with -8 in every block. */
    for (int i = 0; i < 256; i++) x[i] = 0.25f * (float)((i % 32 == 5) ? -8 : (i * 5) % 16 - 8);
    CHECK(quantize_row(GGML_TYPE_Q4_0, x, blk, 256, NULL) == STRATA_OK);
    CHECK(dequant_row(GGML_TYPE_Q4_0, blk, y, 256, NULL) == STRATA_OK);
    CHECK(memcmp(x, y, sizeof x) == 0, "Q4_0 grid values changed");
    /* Q4_0 keeps the sign of the extreme: d = extreme / -8, so a positive
     * extreme gets a negative d and q = 0 (value -8*d = the extreme). */
    for (int i = 0; i < 32; i++) x[i] = 0.0f;
    x[3] = 2.0f;
    CHECK(quantize_row(GGML_TYPE_Q4_0, x, blk, 32, NULL) == STRATA_OK);
    CHECK(fp16_to_f32((uint16_t)(blk[0] | blk[1] << 8)) == -0.25f, "d of a +2 extreme");
    CHECK((blk[2 + 3] & 0xF) == 0, "the extreme gets q = 0");
    CHECK(dequant_row(GGML_TYPE_Q4_0, blk, y, 32, NULL) == STRATA_OK);
    CHECK(y[3] == 2.0f && y[0] == 0.0f);
}

/* ---- hand-assembled blocks: values from the format description ---- */

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

TEST(test_dequant_handmade_blocks)
{
    uint8_t b[256];
    float y[256];
    const uint16_t ONE = 0x3C00, HALF = 0x3800, TWO = 0x4000;

    /* Q8_0: d = 0.5, q = -128, 127. */
    memset(b, 0, sizeof b);
    put16(b, HALF);
    b[2] = 0x80;
    b[3 + 30] = 127;
    REQUIRE(dequant_row(GGML_TYPE_Q8_0, b, y, 32, NULL) == STRATA_OK);
    CHECK(y[0] == -64.0f && y[31] == 63.5f && y[1] == 0.0f);

    /* Q4_0: low nibble = element j, high nibble = element j+16. */
    memset(b, 0, sizeof b);
    put16(b, TWO);
    b[2] = 0x9F; /* element 0: 15-8 = 7; element 16: 9-8 = 1 */
    REQUIRE(dequant_row(GGML_TYPE_Q4_0, b, y, 32, NULL) == STRATA_OK);
    CHECK(y[0] == 14.0f && y[16] == 2.0f && y[1] == -16.0f);

    /* Q4_1: x = d*q + m. */
    memset(b, 0, sizeof b);
    put16(b, HALF);
    put16(b + 2, 0xBC00); /* m = -1 */
    b[4 + 15] = 0x3A;     /* element 15: 10; element 31: 3 */
    REQUIRE(dequant_row(GGML_TYPE_Q4_1, b, y, 32, NULL) == STRATA_OK);
    CHECK(y[15] == 4.0f && y[31] == 0.5f && y[0] == -1.0f);

    /* Q5_0: fifth bit of element j is bit j of qh (j+16 -> bit j+16). */
    memset(b, 0, sizeof b);
    put16(b, ONE);
    b[2] = 0x01;        /* bit 0: element 0 */
    b[2 + 2] = 0x02;    /* bit 17: element 17 */
    b[6 + 0] = 0x53;    /* element 0 low 3, element 16 low 5 */
    b[6 + 1] = 0x70;    /* element 1 low 0, element 17 low 7 */
    REQUIRE(dequant_row(GGML_TYPE_Q5_0, b, y, 32, NULL) == STRATA_OK);
    CHECK(y[0] == 3.0f && y[16] == -11.0f && y[1] == -16.0f && y[17] == 7.0f,
          "%g %g %g %g", y[0], y[16], y[1], y[17]);

    /* Q5_1: d = 1, m = 0.5. */
    memset(b, 0, sizeof b);
    put16(b, ONE);
    put16(b + 2, HALF);
    b[4 + 3] = 0x80; /* bit 31: element 31 */
    b[8 + 15] = 0x20; /* element 31 low 2 */
    REQUIRE(dequant_row(GGML_TYPE_Q5_1, b, y, 32, NULL) == STRATA_OK);
    CHECK(y[31] == 18.5f && y[0] == 0.5f);

    /* Q2_K: scales[16] qs[64] d dmin. Element 200 = 128 + 2*32 + 8: bits 4..5
     * of qs[32+8], sub-block 12. */
    memset(b, 0, sizeof b);
    b[12] = 0x35;              /* scale 5, min 3 */
    b[16 + 40] = 0x30;         /* q = 3 at bits 4..5 */
    put16(b + 80, HALF);       /* d */
    put16(b + 82, 0x3400);     /* dmin = 0.25 */
    REQUIRE(dequant_row(GGML_TYPE_Q2_K, b, y, 256, NULL) == STRATA_OK);
    CHECK(y[200] == 0.5f * 5 * 3 - 0.25f * 3 && y[201] == -0.75f && y[0] == 0.0f, "%g", y[200]);

    /* Q3_K: hmask[32] qs[64] scales[12] d. Sub-block 13 (elements 208..223):
     * low nibble in scales[5] >> 4, top bits at bits 6..7 of scales[9].
     * Element 210 = 128 + 2*32 + 18: qs[32+18] bits 4..5, hmask[18] bit 6. */
    memset(b, 0, sizeof b);
    b[96 + 5] = 0x70;          /* low nibble 7 */
    b[96 + 9] = 0x80;          /* top bits 2: scale = 7 + 32 = 39 -> 39-32 = 7 */
    b[32 + 50] = 0x20;         /* q2 = 2 */
    b[18] = 0x40;              /* high bit set: no -4 */
    put16(b + 108, TWO);
    REQUIRE(dequant_row(GGML_TYPE_Q3_K, b, y, 256, NULL) == STRATA_OK);
    CHECK(y[210] == 2.0f * 7 * 2, "%g", y[210]);
    CHECK(y[211] == 2.0f * 7 * -4, "%g", y[211]); /* q2 = 0, bit clear: -4 */
    CHECK(y[0] == 2.0f * -32 * -4, "%g", y[0]);   /* scale 0 - 32 */

    /* Q4_K: d dmin scales[12] qs[128]. Sub-block 6 (elements 192..223):
     * scale low = scales[10] & 0xF, top = scales[2] >> 6; min low =
     * scales[10] >> 4, top = scales[6] >> 6. Element 200: low nibble of qs[96+8]. */
    memset(b, 0, sizeof b);
    put16(b, ONE);
    put16(b + 2, HALF);
    b[4 + 10] = 0x53;          /* scale low 3, min low 5 */
    b[4 + 2] = 0x40;           /* scale top 1 -> 19 */
    b[4 + 6] = 0x80;           /* min top 2 -> 37 */
    b[16 + 104] = 0x7A;        /* element 200: 10; element 232: 7 */
    b[4 + 1] = 9;              /* sub-block 1 scale 9 */
    b[4 + 5] = 4;              /* sub-block 1 min 4 */
    b[16 + 3] = 0x20;          /* element 35 (sub-block 1): 2 */
    REQUIRE(dequant_row(GGML_TYPE_Q4_K, b, y, 256, NULL) == STRATA_OK);
    CHECK(y[200] == 19.0f * 10 - 0.5f * 37, "%g", y[200]);
    CHECK(y[35] == 9.0f * 2 - 0.5f * 4, "%g", y[35]);
    CHECK(y[232] == 0.0f, "sub-block 7 has scale 0 and min 0: %g", y[232]);

    /* Q5_K: as Q4_K plus qh bit j of qh[l]. Element 200 = 32*6 + 8. */
    memset(b, 0, sizeof b);
    put16(b, ONE);
    b[4 + 10] = 0x03;          /* sub-block 6 scale low 3 */
    b[4 + 2] = 0x40;           /* -> 19 */
    b[16 + 8] = 0x40;          /* qh[8] bit 6 */
    b[48 + 104] = 0x01;        /* low bits 1 -> q = 17 */
    REQUIRE(dequant_row(GGML_TYPE_Q5_K, b, y, 256, NULL) == STRATA_OK);
    CHECK(y[200] == 19.0f * 17, "%g", y[200]);

    /* Q6_K: ql[128] qh[64] scales[16] d. Element 200 = 128 + 2*32 + 8:
     * high nibble of ql[64 + 8], bits 4..5 of qh[32 + 8], sub-block 12. */
    memset(b, 0, sizeof b);
    b[64 + 8] = 0x50;          /* low four bits 5 */
    b[128 + 40] = 0x30;        /* top bits 3 -> q = 53 - 32 = 21 */
    b[192 + 12] = 0xFE;        /* scale -2 */
    put16(b + 208, HALF);
    REQUIRE(dequant_row(GGML_TYPE_Q6_K, b, y, 256, NULL) == STRATA_OK);
    CHECK(y[200] == 0.5f * -2 * 21, "%g", y[200]);
    CHECK(y[0] == 0.0f);

    /* IQ4_NL: d * table[q]. */
    memset(b, 0, sizeof b);
    put16(b, HALF);
    b[2 + 4] = 0xF8; /* element 4: table[8] = 1; element 20: table[15] = 113 */
    REQUIRE(dequant_row(GGML_TYPE_IQ4_NL, b, y, 32, NULL) == STRATA_OK);
    CHECK(y[4] == 0.5f && y[20] == 56.5f && y[0] == -63.5f);

    /* IQ4_XS: d scales_h scales_l[4] qs[128]. Sub-block 5: low nibble =
     * scales_l[2] >> 4, top = bits 10..11 of scales_h. Element 165 = 32*5 + 5:
     * low nibble of qs[80 + 5]. */
    memset(b, 0, sizeof b);
    put16(b, ONE);
    put16(b + 2, 0x0C00);      /* sub-block 5 top bits 3 */
    b[4 + 2] = 0x20;           /* low nibble 2 -> 50 - 32 = 18 */
    b[8 + 85] = 0x0E;          /* table[14] = 89 */
    REQUIRE(dequant_row(GGML_TYPE_IQ4_XS, b, y, 256, NULL) == STRATA_OK);
    CHECK(y[165] == 18.0f * 89, "%g", y[165]);
    CHECK(y[0] == -32.0f * -127, "%g", y[0]);
}

/* ---- errors ---- */

TEST(test_dequant_errors)
{
    float y[64];
    uint8_t b[64] = {0};
    strata_error err = {0};
    CHECK(dequant_row(GGML_TYPE_IQ2_XXS, b, y, 256, &err) == STRATA_E_UNSUPPORTED);
    CHECK(strstr(err.message, "IQ2_XXS") != NULL, "message: %s", err.message);
    CHECK(dequant_row(77, b, y, 32, &err) == STRATA_E_UNSUPPORTED);
    CHECK(dequant_row(GGML_TYPE_Q4_0, b, y, 33, &err) == STRATA_E_INVALID);
    CHECK(strstr(err.message, "Q4_0") != NULL, "message: %s", err.message);
    CHECK(dequant_row(GGML_TYPE_Q4_0, b, y, 0, &err) == STRATA_OK);
    CHECK(!dequant_supported(GGML_TYPE_Q8_K) && dequant_supported(GGML_TYPE_IQ4_XS));
    uint32_t all[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q8_0,
                      GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1,
                      GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K,
                      GGML_TYPE_Q6_K, GGML_TYPE_IQ4_NL, GGML_TYPE_IQ4_XS};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        CHECK(dequant_supported(all[i]), "%s", ggml_type_name(all[i]));

    float x[64] = {0};
    CHECK(quantize_row(GGML_TYPE_Q3_K, x, b, 256, &err) == STRATA_E_UNSUPPORTED);
    CHECK(strstr(err.message, "Q3_K") != NULL, "message: %s", err.message);
    CHECK(quantize_row(GGML_TYPE_Q8_0, x, b, 48, &err) == STRATA_E_INVALID);
    CHECK(quantize_row(GGML_TYPE_Q4_K, x, b, 0, &err) == STRATA_OK);
    CHECK(quantize_supported(GGML_TYPE_Q6_K) && !quantize_supported(GGML_TYPE_IQ4_NL));
}

/* ---- F16 / BF16 bit patterns ---- */

static uint16_t to_f16(float f)
{
    uint8_t b[2];
    quantize_row(GGML_TYPE_F16, &f, b, 1, NULL);
    return (uint16_t)(b[0] | b[1] << 8);
}

static float from_f16(uint16_t h)
{
    uint8_t b[2] = {(uint8_t)h, (uint8_t)(h >> 8)};
    float f = 0;
    dequant_row(GGML_TYPE_F16, b, &f, 1, NULL);
    return f;
}

static uint16_t to_bf16(float f)
{
    uint8_t b[2];
    quantize_row(GGML_TYPE_BF16, &f, b, 1, NULL);
    return (uint16_t)(b[0] | b[1] << 8);
}

static float from_bf16(uint16_t h)
{
    uint8_t b[2] = {(uint8_t)h, (uint8_t)(h >> 8)};
    float f = 0;
    dequant_row(GGML_TYPE_BF16, b, &f, 1, NULL);
    return f;
}

TEST(test_quant_f16_bf16_bits)
{
    const float s24 = ldexpf(1.0f, -24), s25 = ldexpf(1.0f, -25);
    struct { float f; uint16_t h; } f16[] = {
        {1.0f, 0x3C00}, {-2.0f, 0xC000}, {0.5f, 0x3800}, {0.0f, 0x0000}, {-0.0f, 0x8000},
        {65504.0f, 0x7BFF}, {65519.0f, 0x7BFF}, {65520.0f, 0x7C00}, /* tie above max: inf */
        {1e6f, 0x7C00}, {-1e6f, 0xFC00}, {INFINITY, 0x7C00}, {-INFINITY, 0xFC00},
        {ldexpf(1.0f, -14), 0x0400},                 /* smallest normal */
        {s24, 0x0001}, {1023 * s24, 0x03FF},        /* subnormals */
        {s25, 0x0000}, {3 * s25, 0x0002},            /* ties to even */
        {s25 * 1.0001f, 0x0001}, {ldexpf(1.0f, -26), 0x0000},
        {1.0f + ldexpf(1.0f, -11), 0x3C00},          /* tie: stays even */
        {1.0f + 3 * ldexpf(1.0f, -11), 0x3C02},      /* tie: rounds up to even */
        {1.0f + ldexpf(1.0f, -11) + ldexpf(1.0f, -20), 0x3C01},
        {0.1f, 0x2E66}, {3.14159265f, 0x4248},
    };
    for (size_t i = 0; i < sizeof f16 / sizeof f16[0]; i++)
        CHECK(to_f16(f16[i].f) == f16[i].h, "f16(%a) = 0x%04X, want 0x%04X", f16[i].f,
              to_f16(f16[i].f), f16[i].h);
    uint16_t hn = to_f16(NAN);
    CHECK((hn & 0x7C00) == 0x7C00 && (hn & 0x3FF) != 0, "NaN -> 0x%04X", hn);

    CHECK(from_f16(0x3C00) == 1.0f && from_f16(0x7BFF) == 65504.0f);
    CHECK(from_f16(0x0001) == s24 && from_f16(0x8001) == -s24 && from_f16(0x03FF) == 1023 * s24);
    CHECK(from_f16(0x0400) == ldexpf(1.0f, -14));
    CHECK(from_f16(0x7C00) == INFINITY && from_f16(0xFC00) == -INFINITY);
    CHECK(isnan(from_f16(0x7E00)) && isnan(from_f16(0x7C01)));
    CHECK(from_f16(0x8000) == 0.0f && signbit(from_f16(0x8000)));
    CHECK(from_f16(0x3555) == 0.25f * (1.0f + 341.0f / 1024.0f), "%a", from_f16(0x3555));
    /* Every finite half survives f16 -> f32 -> f16. */
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7C00) == 0x7C00) continue;
        if (to_f16(from_f16((uint16_t)h)) != h) bad++;
    }
    CHECK(bad == 0, "%d halves do not round-trip", bad);

    struct { float f; uint16_t h; } bf[] = {
        {1.0f, 0x3F80}, {-2.0f, 0xC000}, {0.0f, 0x0000}, {-0.0f, 0x8000},
        {3.14159265f, 0x4049},                          /* 0x40490FDB rounds down */
        {1.0f + ldexpf(1.0f, -8), 0x3F80},              /* tie: stays even */
        {1.0f + 3 * ldexpf(1.0f, -8), 0x3F82},          /* tie: up to even */
        {1.0f + ldexpf(1.0f, -8) + ldexpf(1.0f, -20), 0x3F81},
        {INFINITY, 0x7F80}, {-INFINITY, 0xFF80},
        {3.3895314e38f, 0x7F7F},                        /* largest bf16 */
        {FLT_MAX, 0x7F80},                  /* rounds up to inf */
        {ldexpf(1.0f, -133), 0x0001},                   /* bf16 subnormal */
    };
    for (size_t i = 0; i < sizeof bf / sizeof bf[0]; i++)
        CHECK(to_bf16(bf[i].f) == bf[i].h, "bf16(%a) = 0x%04X, want 0x%04X", bf[i].f,
              to_bf16(bf[i].f), bf[i].h);
    uint16_t bn = to_bf16(fp_from_bits(0x7F800001u)); /* signalling NaN stays NaN */
    CHECK((bn & 0x7F80) == 0x7F80 && (bn & 0x7F) != 0, "sNaN -> 0x%04X", bn);
    CHECK(from_bf16(0x3F80) == 1.0f && from_bf16(0x4049) == fp_from_bits(0x40490000u));
    CHECK(from_bf16(0xFF80) == -INFINITY && isnan(from_bf16(0x7FC0)));
}
