/* Tests of the Vulkan device layer (src/backend/vulkan): every op against
 * a scalar CPU version written here from the op's definition, matmul for
 * every weight type against the CPU dequantizer, and the error paths.
 * They open any Vulkan device, a software one (lavapipe) included; without
 * any they are skipped, naming the reason. Set STRATA_TEST_VERBOSE=1 to
 * print the measured errors.
 *
 * Bounds: matmul and rmsnorm compare with a double-precision reference;
 * the shaders sum in f32 (per-invocation sums, then a tree or subgroup
 * reduction), whose rounding error is at most about (log2(n) + units per
 * invocation) * 2^-24 times sum |w_i x_i|. For n = 512 random products
 * that sum is ~25x the typical |y|, so 1e-4 relative to
 * max(|y_ref|, mean |y_ref|) leaves a margin of several times the worst
 * case while catching any wrong element (one misdecoded weight moves y by
 * ~1e-2 relative). Attention outputs are O(1) averages of V: 1e-4 absolute. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/vulkan/vkb.h"
#include "gguf/ggml_types.h"
#include "kernels/cpu/dequant.h"
#include "kernels/cpu/geglu.h"
#include "kernels/cpu/quantize.h"
#include "test.h"
#include "test_rng.h"
#include "util/fp16.h"

static bool verbose(void)
{
    const char *e = getenv("STRATA_TEST_VERBOSE");
    return e && *e && strcmp(e, "0") != 0;
}

/* ---- device helpers ---- */

/* A device, or NULL with the test marked skipped (loudly) when the machine
 * has no Vulkan device at all. */
static vkb *open_dev(void)
{
    vkb *v = NULL;
    strata_error err = {0};
    if (vkb_open(-1, true, &v, &err) != STRATA_OK) {
        fprintf(stderr, "WARNING: Vulkan tests skipped: %s\n", err.message);
        test_skip("no Vulkan device: %s", err.message);
        return NULL;
    }
    return v;
}

/* A device buffer holding `bytes` of src (or zeros when src is NULL). */
static vkb_buf *dev_buf(vkb *v, const void *src, uint64_t bytes)
{
    vkb_buf *b = NULL;
    strata_error err = {0};
    if (vkb_alloc(v, bytes, false, &b, &err) != STRATA_OK) {
        CHECK(false, "vkb_alloc %llu: %s", (unsigned long long)bytes, err.message);
        return NULL;
    }
    void *zero = src ? NULL : calloc(1, bytes);
    if (vkb_upload(v, b, 0, src ? src : zero, bytes, &err) != STRATA_OK) CHECK(false, "upload: %s", err.message);
    free(zero);
    return b;
}

static void download(vkb *v, vkb_buf *b, void *dst, uint64_t bytes)
{
    strata_error err = {0};
    if (vkb_download(v, b, 0, dst, bytes, &err) != STRATA_OK) CHECK(false, "download: %s", err.message);
}

static bool run(vkb *v)
{
    strata_error err = {0};
    strata_status st = vkb_run(v, &err);
    CHECK(st == STRATA_OK, "vkb_run: %s", err.message);
    return st == STRATA_OK;
}

static void fill_normal(float *x, size_t n, uint64_t *seed, float scale)
{
    for (size_t i = 0; i < n; i++) x[i] = rng_normal(seed) * scale;
}

/* max over i of |got - ref| / max(|ref_i|, mean |ref|) */
static double max_rel_err(const float *got, const double *ref, size_t n)
{
    double mean = 0, worst = 0;
    for (size_t i = 0; i < n; i++) mean += fabs(ref[i]) / (double)n;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(got[i] - ref[i]) / fmax(fabs(ref[i]), mean);
        worst = fmax(worst, isnan(e) ? INFINITY : e);
    }
    return worst;
}

/* ---- matmul ---- */

/* Q5_0 / Q5_1 blocks (the project's quantizer has no 5-bit legacy types):
 * the format's rule, d = max / -16 (Q5_0) or d = (max - min) / 31 (Q5_1). */
static void quant_q5(uint32_t type, const float *x, uint8_t *blk)
{
    float lo = x[0], hi = x[0], amax = 0, vmax = 0;
    for (int j = 0; j < 32; j++) {
        lo = fminf(lo, x[j]);
        hi = fmaxf(hi, x[j]);
        if (fabsf(x[j]) > amax) amax = fabsf(x[j]), vmax = x[j];
    }
    bool q51 = type == GGML_TYPE_Q5_1;
    float d = q51 ? (hi - lo) / 31 : vmax / -16;
    float id = d ? 1.0f / d : 0.0f;
    uint16_t dh = f32_to_fp16(d), mh = f32_to_fp16(lo);
    memcpy(blk, &dh, 2);
    if (q51) memcpy(blk + 2, &mh, 2);
    uint8_t *qhp = blk + (q51 ? 4 : 2), *qs = qhp + 4;
    uint32_t qh = 0;
    memset(qs, 0, 16);
    for (int j = 0; j < 32; j++) {
        float f = q51 ? (x[j] - lo) * id + 0.5f : x[j] * id + 16.5f;
        int q = (int)f > 31 ? 31 : (int)f < 0 ? 0 : (int)f;
        qs[j % 16] |= (uint8_t)((q & 15) << (j < 16 ? 0 : 4));
        qh |= (uint32_t)(q >> 4) << j;
    }
    memcpy(qhp, &qh, 4);
}

/* n_out rows of n_in random weights in `type` (malloc'd) and the values
 * the CPU dequantizes them to (wf, [n_out][n_in]). */
static uint8_t *make_weights(uint32_t type, uint32_t n_in, uint32_t n_out, float *wf, uint64_t *seed)
{
    uint64_t rb = ggml_row_bytes(type, n_in);
    uint8_t *w = malloc(rb * n_out);
    float *row = malloc(n_in * sizeof *row);
    strata_error err = {0};
    for (uint32_t r = 0; r < n_out; r++) {
        fill_normal(row, n_in, seed, 0.5f);
        if (type == GGML_TYPE_Q5_0 || type == GGML_TYPE_Q5_1) {
            for (uint32_t b = 0; b < n_in / 32; b++) quant_q5(type, row + 32 * b, w + r * rb + b * ggml_type_get(type)->block_bytes);
        } else if (quantize_row(type, row, w + r * rb, n_in, &err) != STRATA_OK) {
            CHECK(false, "quantize %s: %s", ggml_type_name(type), err.message);
        }
        if (dequant_row(type, w + r * rb, wf + (size_t)r * n_in, n_in, &err) != STRATA_OK)
            CHECK(false, "dequant %s: %s", ggml_type_name(type), err.message);
    }
    free(row);
    return w;
}

/* The max relative error of vkb_matmul for one type and token count. */
static double matmul_err(vkb *v, uint32_t type, uint32_t n_tok, uint64_t seed)
{
    const uint32_t n_in = 512, n_out = 37;
    float *wf = malloc((size_t)n_in * n_out * sizeof *wf), *x = malloc((size_t)n_in * n_tok * sizeof *x);
    float *y = malloc((size_t)n_out * n_tok * sizeof *y);
    double *ref = malloc((size_t)n_out * n_tok * sizeof *ref);
    uint8_t *w = make_weights(type, n_in, n_out, wf, &seed);
    fill_normal(x, (size_t)n_in * n_tok, &seed, 1.0f);
    for (uint32_t t = 0; t < n_tok; t++)
        for (uint32_t r = 0; r < n_out; r++) {
            double s = 0;
            for (uint32_t i = 0; i < n_in; i++) s += (double)wf[(size_t)r * n_in + i] * x[(size_t)t * n_in + i];
            ref[(size_t)t * n_out + r] = s;
        }
    vkb_buf *bw = dev_buf(v, w, ggml_row_bytes(type, n_in) * n_out);
    vkb_buf *bx = dev_buf(v, x, (size_t)n_in * n_tok * sizeof *x), *by = dev_buf(v, NULL, (size_t)n_out * n_tok * 4);
    double e = INFINITY;
    if (bw && bx && by) {
        vkb_begin(v);
        vkb_matmul(v, type, vkb_addr(bw), vkb_addr(bx), vkb_addr(by), n_in, n_out, n_tok);
        if (run(v)) {
            download(v, by, y, (size_t)n_out * n_tok * sizeof *y);
            e = max_rel_err(y, ref, (size_t)n_out * n_tok);
        }
    }
    vkb_free(v, bw), vkb_free(v, bx), vkb_free(v, by);
    free(w), free(wf), free(x), free(y), free(ref);
    return e;
}

static const uint32_t mm_types[] = {
    GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1,
    GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K,
};

static void check_matmul_all(vkb *v)
{
    /* 9: two groups of the batch path's 8 tokens; 70: the tiled path, a
     * partial second tile of tokens (and of rows: 37) */
    const uint32_t toks[] = {1, 5, 9, 70};
    for (size_t i = 0; i < sizeof mm_types / sizeof *mm_types; i++) {
        CHECK(vkb_matmul_supported(mm_types[i]), "%s", ggml_type_name(mm_types[i]));
        for (size_t k = 0; k < sizeof toks / sizeof *toks; k++) {
            double e = matmul_err(v, mm_types[i], toks[k], 1000 + i);
            CHECK(e <= 1e-4, "%s n_tok %u: max relative error %.3g", ggml_type_name(mm_types[i]), toks[k], e);
            if (verbose())
                printf("    %-5s n_tok %u: max rel err %.3g (%s)\n", ggml_type_name(mm_types[i]), toks[k], e,
                       vkb_get_info(v)->subgroup_arith ? "subgroup" : "shared memory");
        }
    }
    CHECK(!vkb_matmul_supported(GGML_TYPE_IQ4_XS));
}

TEST(vkb_matmul_every_type)
{
    vkb *v = open_dev();
    if (!v) return;
    check_matmul_all(v);
    vkb_close(v);
}

/* The shared-memory reduction variant (the subgroup one is taken where the
 * device has subgroup arithmetic, as lavapipe does). */
TEST(vkb_matmul_shared_memory_reduction)
{
    setenv("STRATA_VK_SUBGROUP", "0", 1);
    vkb *v = open_dev();
    unsetenv("STRATA_VK_SUBGROUP");
    if (!v) return;
    CHECK(!vkb_get_info(v)->subgroup_arith);
    check_matmul_all(v);
    vkb_close(v);
}

/* ---- element-wise and row ops ---- */

/* The buffers of one op test (NULL where unused). */
typedef struct op_bufs {
    vkb_buf *b[4];
} op_bufs;

static void free_bufs(vkb *v, op_bufs *o)
{
    for (int i = 0; i < 4; i++) vkb_free(v, o->b[i]);
}

TEST(vkb_add_scale_add_rows)
{
    vkb *v = open_dev();
    if (!v) return;
    enum { N = 1000, ROWS = 3 };
    uint64_t seed = 7;
    float y[N * ROWS], x[N * ROWS], b[N], got[N * ROWS];
    fill_normal(y, N * ROWS, &seed, 1), fill_normal(x, N * ROWS, &seed, 1), fill_normal(b, N, &seed, 1);
    op_bufs o = {{dev_buf(v, y, sizeof y), dev_buf(v, x, sizeof x), dev_buf(v, b, sizeof b), NULL}};
    REQUIRE(o.b[0] && o.b[1] && o.b[2]);
    vkb_begin(v);
    vkb_add(v, vkb_addr(o.b[0]), vkb_addr(o.b[1]), N * ROWS);
    vkb_barrier(v);
    vkb_scale(v, vkb_addr(o.b[0]), 0.37f, N * ROWS);
    vkb_barrier(v);
    vkb_add_rows(v, vkb_addr(o.b[0]), vkb_addr(o.b[2]), N, ROWS);
    if (run(v)) {
        download(v, o.b[0], got, sizeof got);
        int bad = 0;
        for (int i = 0; i < N * ROWS; i++) bad += got[i] != (y[i] + x[i]) * 0.37f + b[i % N];
        CHECK(bad == 0, "%d of %d elements differ from (y + x) * s + b (each step is one rounded f32 op)", bad,
              N * ROWS);
    }
    free_bufs(v, &o);
    vkb_close(v);
}

static void rmsnorm_ref(const float *x, const float *w, double *y, uint32_t n, uint32_t rows, float eps)
{
    for (uint32_t r = 0; r < rows; r++) {
        double ss = 0;
        for (uint32_t i = 0; i < n; i++) ss += (double)x[r * n + i] * x[r * n + i];
        double scale = 1.0 / sqrt(ss / n + eps);
        for (uint32_t i = 0; i < n; i++) y[r * n + i] = x[r * n + i] * scale * w[i];
    }
}

TEST(vkb_rmsnorm_matches_definition)
{
    vkb *v = open_dev();
    if (!v) return;
    enum { N = 300, ROWS = 3 }; /* N: not a multiple of the workgroup */
    uint64_t seed = 11;
    float x[N * ROWS], w[N], got[N * ROWS];
    double ref[N * ROWS];
    fill_normal(x, N * ROWS, &seed, 2), fill_normal(w, N, &seed, 1);
    rmsnorm_ref(x, w, ref, N, ROWS, 1e-5f);
    op_bufs o = {{dev_buf(v, x, sizeof x), dev_buf(v, w, sizeof w), dev_buf(v, NULL, sizeof x), NULL}};
    REQUIRE(o.b[0] && o.b[1] && o.b[2]);
    vkb_begin(v);
    vkb_rmsnorm(v, vkb_addr(o.b[0]), vkb_addr(o.b[1]), vkb_addr(o.b[2]), N, ROWS, 1e-5f);
    vkb_barrier(v);
    vkb_rmsnorm(v, vkb_addr(o.b[0]), vkb_addr(o.b[1]), vkb_addr(o.b[0]), N, ROWS, 1e-5f); /* in place */
    if (run(v)) {
        download(v, o.b[2], got, sizeof got);
        double e = max_rel_err(got, ref, N * ROWS);
        CHECK(e <= 1e-5, "rmsnorm: max relative error %.3g", e);
        download(v, o.b[0], got, sizeof got);
        double e2 = max_rel_err(got, ref, N * ROWS);
        CHECK(e2 <= 1e-5, "rmsnorm in place: max relative error %.3g", e2);
        if (verbose()) printf("    rmsnorm: max rel err %.3g, in place %.3g\n", e, e2);
    }
    free_bufs(v, &o);
    vkb_close(v);
}

/* The rotation of op_rope's definition on head_dim-strided heads. */
static void rope_ref(float *x, const float *cs, uint32_t n_tok, uint32_t n_heads, uint32_t head_dim,
                     uint32_t rope_dim, uint32_t stride, bool neox)
{
    for (uint32_t t = 0; t < n_tok; t++)
        for (uint32_t h = 0; h < n_heads; h++)
            for (uint32_t i = 0; i < rope_dim / 2; i++) {
                float *hd = x + t * stride + h * head_dim;
                uint32_t a = neox ? i : 2 * i, b = neox ? i + rope_dim / 2 : 2 * i + 1;
                float c = cs[t * rope_dim + 2 * i], s = cs[t * rope_dim + 2 * i + 1], xa = hd[a], xb = hd[b];
                hd[a] = xa * c - xb * s;
                hd[b] = xa * s + xb * c;
            }
}

static void check_rope(vkb *v, bool neox)
{
    enum { T = 4, H = 3, HD = 64, RD = 32, STRIDE = H * HD + 16 }; /* rope_dim < head_dim; padded rows */
    uint64_t seed = 13;
    float x[T * STRIDE], cs[T * RD], ref[T * STRIDE], got[T * STRIDE];
    fill_normal(x, T * STRIDE, &seed, 1);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < RD / 2; i++) {
            double th = (t + 5) * pow(10000.0, -2.0 * i / RD);
            cs[t * RD + 2 * i] = (float)cos(th), cs[t * RD + 2 * i + 1] = (float)sin(th);
        }
    memcpy(ref, x, sizeof x);
    rope_ref(ref, cs, T, H, HD, RD, STRIDE, neox);
    op_bufs o = {{dev_buf(v, x, sizeof x), dev_buf(v, cs, sizeof cs), NULL, NULL}};
    REQUIRE(o.b[0] && o.b[1]);
    vkb_begin(v);
    vkb_rope(v, vkb_addr(o.b[0]), vkb_addr(o.b[1]), T, H, HD, RD, STRIDE, neox);
    if (run(v)) {
        download(v, o.b[0], got, sizeof got);
        double worst = 0;
        int moved = 0; /* elements outside the rotated dims that changed */
        for (int i = 0; i < T * STRIDE; i++) {
            worst = fmax(worst, fabs(got[i] - ref[i]) / fmax(fabs(ref[i]), 1e-3));
            moved += ref[i] == x[i] && got[i] != x[i];
        }
        CHECK(worst <= 1e-6, "rope (neox %d): max relative error %.3g", neox, worst);
        CHECK(moved == 0, "rope (neox %d): %d elements outside the rotated dims changed", neox, moved);
        if (verbose()) printf("    rope neox %d: max rel err %.3g\n", neox, worst);
    }
    free_bufs(v, &o);
}

TEST(vkb_rope_both_pairings)
{
    vkb *v = open_dev();
    if (!v) return;
    check_rope(v, false);
    check_rope(v, true);
    vkb_close(v);
}

/* gate values covering GELU's cut-offs and many f16 rounding cases */
static void glu_inputs(float *g, float *u, int n, uint64_t *seed)
{
    static const float edge[] = {-10.0f, 10.0f, -9.999f, 9.999f, -10.001f, 10.001f, 0.0f, -0.0f,
                                 1e-8f,  -1e-8f, 6.1e-5f, 65504.0f, -65504.0f, 70000.0f, -3.0f, 2.5f};
    for (int i = 0; i < n; i++) {
        g[i] = i < 16 ? edge[i] : rng_normal(seed) * (i % 3 ? 3.0f : 8.0f);
        u[i] = rng_normal(seed);
    }
}

TEST(vkb_glu_silu_and_gelu)
{
    vkb *v = open_dev();
    if (!v) return;
    enum { N = 4096 };
    uint64_t seed = 17;
    static float g[N], u[N], got[N], gelu_ref[N];
    glu_inputs(g, u, N, &seed);
    memcpy(gelu_ref, g, sizeof g);
    geglu_f16(gelu_ref, u, N);
    op_bufs o = {{dev_buf(v, g, sizeof g), dev_buf(v, g, sizeof g), dev_buf(v, u, sizeof u), NULL}};
    REQUIRE(o.b[0] && o.b[1] && o.b[2]);
    vkb_begin(v);
    vkb_glu(v, vkb_addr(o.b[0]), vkb_addr(o.b[2]), N, false);
    vkb_glu(v, vkb_addr(o.b[1]), vkb_addr(o.b[2]), N, true);
    if (run(v)) {
        download(v, o.b[0], got, sizeof got);
        double worst = 0;
        for (int i = 0; i < N; i++) {
            double r = (double)g[i] / (1.0 + exp(-(double)g[i])) * u[i];
            worst = fmax(worst, fabs(got[i] - r) / fmax(fabs(r), 1e-30));
        }
        CHECK(worst <= 1e-5, "silu: max relative error %.3g", worst);
        download(v, o.b[1], got, sizeof got);
        int bad = 0;
        for (int i = 0; i < N; i++) bad += memcmp(&got[i], &gelu_ref[i], 4) != 0;
        CHECK(bad == 0, "gelu: %d of %d results differ from geglu_f16's bits", bad, N);
        if (verbose()) printf("    silu: max rel err %.3g; gelu: %d bit differences\n", worst, bad);
    }
    free_bufs(v, &o);
    vkb_close(v);
}

TEST(vkb_kv_store_f16_bits)
{
    vkb *v = open_dev();
    if (!v) return;
    enum { T = 4, G = 2, HD = 40, LEN = 10, SLOT0 = 3 };
    static const float special[] = {65504.0f, 65520.0f, 1e6f, -1e6f, 6e-8f, 3e-8f, 2.98e-8f, 1e-5f,
                                    -0.0f,    1.0009765625f + 0.00048828125f, 2049.0f, 2051.0f};
    uint64_t seed = 19;
    float src[T * G * HD];
    uint16_t cache[G * LEN * HD], got[G * LEN * HD];
    fill_normal(src, T * G * HD, &seed, 4);
    memcpy(src, special, sizeof special);
    for (int i = 0; i < G * LEN * HD; i++) cache[i] = 0xabcd; /* untouched slots keep this */
    op_bufs o = {{dev_buf(v, src, sizeof src), dev_buf(v, cache, sizeof cache), NULL, NULL}};
    REQUIRE(o.b[0] && o.b[1]);
    vkb_begin(v);
    vkb_kv_store(v, vkb_addr(o.b[0]), vkb_addr(o.b[1]), T, G, HD, LEN, SLOT0);
    if (run(v)) {
        download(v, o.b[1], got, sizeof got);
        for (int t = 0; t < T; t++)
            for (int g = 0; g < G; g++)
                for (int d = 0; d < HD; d++) cache[(g * LEN + SLOT0 + t) * HD + d] = f32_to_fp16(src[(t * G + g) * HD + d]);
        int bad = 0;
        for (int i = 0; i < G * LEN * HD; i++) bad += got[i] != cache[i];
        CHECK(bad == 0, "%d of %d cache halves differ from f32_to_fp16 (or a slot outside was written)", bad,
              G * LEN * HD);
    }
    free_bufs(v, &o);
    vkb_close(v);
}

/* ---- attention ---- */

typedef struct attn_case {
    uint32_t n_tok, n_heads, n_kv_heads, head_dim, kv_len, pos0, n_swa, slot_base;
} attn_case;

/* out[t][h] from the definition, in double, over the f16 cache values. */
static void attention_ref(const attn_case *c, const float *q, const uint16_t *k, const uint16_t *vc, double *out)
{
    uint32_t hd = c->head_dim, group = c->n_heads / c->n_kv_heads;
    double *p = malloc((c->pos0 + c->n_tok) * sizeof *p);
    for (uint32_t t = 0; t < c->n_tok; t++)
        for (uint32_t h = 0; h < c->n_heads; h++) {
            uint32_t pos = c->pos0 + t, first = c->n_swa && pos + 1 > c->n_swa ? pos + 1 - c->n_swa : 0;
            const float *qh = q + ((size_t)t * c->n_heads + h) * hd;
            size_t base = (size_t)(h / group) * c->kv_len; /* position j at slot (j - slot_base) mod kv_len */
            double m = -INFINITY, sum = 0;
            for (uint32_t j = first; j <= pos; j++) {
                double s = 0;
                for (uint32_t d = 0; d < hd; d++)
                    s += (double)qh[d] * fp16_to_f32(k[(base + (j - c->slot_base) % c->kv_len) * hd + d]);
                p[j] = s / sqrt((double)hd);
                m = fmax(m, p[j]);
            }
            for (uint32_t j = first; j <= pos; j++) sum += p[j] = exp(p[j] - m);
            for (uint32_t d = 0; d < hd; d++) {
                double o = 0;
                for (uint32_t j = first; j <= pos; j++)
                    o += p[j] * fp16_to_f32(vc[(base + (j - c->slot_base) % c->kv_len) * hd + d]);
                out[((size_t)t * c->n_heads + h) * hd + d] = o / sum;
            }
        }
    free(p);
}

static double attention_err(vkb *v, const attn_case *c, uint64_t seed)
{
    size_t nq = (size_t)c->n_tok * c->n_heads * c->head_dim, nc = (size_t)c->n_kv_heads * c->kv_len * c->head_dim;
    float *q = malloc(nq * sizeof *q), *got = malloc(nq * sizeof *got);
    uint16_t *k = malloc(nc * 2), *vc = malloc(nc * 2);
    double *ref = malloc(nq * sizeof *ref), worst = INFINITY;
    fill_normal(q, nq, &seed, 1);
    for (size_t i = 0; i < nc; i++) k[i] = f32_to_fp16(rng_normal(&seed)), vc[i] = f32_to_fp16(rng_normal(&seed));
    attention_ref(c, q, k, vc, ref);
    op_bufs o = {{dev_buf(v, q, nq * 4), dev_buf(v, k, nc * 2), dev_buf(v, vc, nc * 2), dev_buf(v, NULL, nq * 4)}};
    if (o.b[0] && o.b[1] && o.b[2] && o.b[3]) {
        vkb_attn a = {vkb_addr(o.b[0]), vkb_addr(o.b[1]), vkb_addr(o.b[2]), vkb_addr(o.b[3]), c->n_tok,
                      c->n_heads, c->n_kv_heads, c->head_dim, c->kv_len, c->pos0, c->n_swa, c->slot_base,
                      (float)(1.0 / sqrt((double)c->head_dim))};
        vkb_begin(v);
        vkb_attention(v, &a);
        if (run(v)) {
            download(v, o.b[3], got, nq * 4);
            worst = 0;
            for (size_t i = 0; i < nq; i++) worst = fmax(worst, isnan(got[i]) ? INFINITY : fabs(got[i] - ref[i]));
        }
    }
    free_bufs(v, &o);
    free(q), free(got), free(k), free(vc), free(ref);
    return worst;
}

TEST(vkb_attention_gqa_window_slots)
{
    vkb *v = open_dev();
    if (!v) return;
    static const attn_case cases[] = {
        {5, 4, 2, 64, 256, 200, 0, 0},   /* 205 keys: two tiles of 128 */
        {5, 4, 2, 64, 200, 200, 150, 40}, /* window of 150, cache slot = position - 40 */
        {1, 4, 2, 160, 8, 3, 0, 0},      /* decode; head_dim > 128: two dims per invocation */
        {3, 4, 4, 32, 16, 0, 2, 0},      /* window of 2 from position 0 */
        {2, 4, 2, 36, 16, 3, 0, 0},      /* head_dim not a multiple of 8: the narrow loads */
        {1, 8, 2, 128, 140, 700, 130, 0}, /* decode, a ring: positions 571..700 at slots p mod 140 */
        {4, 2, 1, 256, 40, 97, 32, 0},   /* a batch over the ring's wrap, head_dim 256 (Gemma 3) */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        double e = attention_err(v, &cases[i], 100 + i);
        CHECK(e <= 1e-4, "attention case %zu: max error %.3g", i, e);
        if (verbose()) printf("    attention case %zu: max abs err %.3g\n", i, e);
    }
    vkb_close(v);
}

/* ---- fused ops ---- */

/* vkb_matvec against its definition: the norm (and the normed x written),
 * the residual add with aux, and the GLU pairing, for a fast and a generic
 * format of each block size. */
static void check_matvec(vkb *v, uint32_t type, uint64_t seed)
{
    const uint32_t n_in = 512, n_out = 37;
    const float eps = 1e-5f;
    size_t nw_ = (size_t)n_in * n_out;
    float *wf = malloc(nw_ * sizeof *wf), *uf = malloc(nw_ * sizeof *uf), x[512], nw[512], y0[37], got[512];
    double xn[512], g[37], u[37], ss = 0;
    uint8_t *w = make_weights(type, n_in, n_out, wf, &seed), *up = make_weights(type, n_in, n_out, uf, &seed);
    fill_normal(x, n_in, &seed, 2.0f), fill_normal(nw, n_in, &seed, 1.0f), fill_normal(y0, n_out, &seed, 1.0f);
    for (uint32_t i = 0; i < n_in; i++) ss += (double)x[i] * x[i];
    for (uint32_t i = 0; i < n_in; i++) xn[i] = x[i] / sqrt(ss / n_in + eps) * nw[i];
    for (uint32_t r = 0; r < n_out; r++) {
        g[r] = u[r] = 0;
        for (uint32_t i = 0; i < n_in; i++) g[r] += wf[(size_t)r * n_in + i] * xn[i], u[r] += uf[(size_t)r * n_in + i] * xn[i];
    }
    uint64_t rb = ggml_row_bytes(type, n_in) * n_out;
    op_bufs o = {{dev_buf(v, w, rb), dev_buf(v, up, rb), dev_buf(v, x, sizeof x), dev_buf(v, nw, sizeof nw)}};
    vkb_buf *y = dev_buf(v, y0, sizeof y0), *aux = dev_buf(v, NULL, sizeof y0), *xo = dev_buf(v, NULL, sizeof x);
    REQUIRE(o.b[0] && o.b[1] && o.b[2] && o.b[3] && y && aux && xo);
    const char *name = ggml_type_name(type);
    double ref[512];
    /* 1. y = W . norm(x), xn written */
    vkb_begin(v);
    vkb_matvec(v, &(vkb_mv){.type = type, .w = vkb_addr(o.b[0]), .x = vkb_addr(o.b[2]), .y = vkb_addr(aux),
                            .norm_w = vkb_addr(o.b[3]), .xn = vkb_addr(xo), .n_in = n_in, .n_out = n_out, .eps = eps});
    if (run(v)) {
        download(v, aux, got, sizeof y0);
        double e = max_rel_err(got, g, n_out);
        CHECK(e <= 1e-4, "%s: matvec with the norm: max relative error %.3g", name, e);
        download(v, xo, got, sizeof x);
        double e2 = max_rel_err(got, xn, n_in);
        CHECK(e2 <= 1e-5, "%s: the normed x: max relative error %.3g", name, e2);
    }
    /* 2. y += W . x, aux = W . x (no norm) */
    for (uint32_t r = 0; r < n_out; r++) {
        ref[r] = 0;
        for (uint32_t i = 0; i < n_in; i++) ref[r] += wf[(size_t)r * n_in + i] * (double)x[i];
    }
    vkb_begin(v);
    vkb_matvec(v, &(vkb_mv){.type = type, .w = vkb_addr(o.b[0]), .x = vkb_addr(o.b[2]), .y = vkb_addr(y),
                            .aux = vkb_addr(aux), .n_in = n_in, .n_out = n_out, .acc = true});
    if (run(v)) {
        download(v, aux, got, sizeof y0);
        double e = max_rel_err(got, ref, n_out);
        for (uint32_t r = 0; r < n_out; r++) ref[r] += y0[r];
        download(v, y, got, sizeof y0);
        double e2 = max_rel_err(got, ref, n_out);
        CHECK(e <= 1e-4 && e2 <= 1e-4, "%s: matvec add: aux %.3g, sum %.3g", name, e, e2);
    }
    /* 3. y = silu(W . norm(x)) * (Up . norm(x)), aux = Up . norm(x); then gelu */
    for (int gelu = 0; gelu < 2; gelu++) {
        vkb_begin(v);
        vkb_matvec(v, &(vkb_mv){.type = type, .w = vkb_addr(o.b[0]), .up = vkb_addr(o.b[1]), .x = vkb_addr(o.b[2]),
                                .y = vkb_addr(y), .aux = vkb_addr(aux), .norm_w = vkb_addr(o.b[3]), .n_in = n_in,
                                .n_out = n_out, .eps = eps, .gelu = gelu});
        if (!run(v)) continue;
        download(v, aux, got, sizeof y0);
        double eu = max_rel_err(got, u, n_out);
        for (uint32_t r = 0; r < n_out; r++) {
            if (gelu) { /* the GELU table of f16(x): compare through the CPU's geglu_f16 of the exact gate */
                float gg = (float)g[r], uu = (float)u[r];
                geglu_f16(&gg, &uu, 1);
                ref[r] = gg;
            } else {
                ref[r] = g[r] / (1 + exp(-g[r])) * u[r];
            }
        }
        download(v, y, got, sizeof y0);
        double e = max_rel_err(got, ref, n_out);
        /* gelu: an f16 rounding of the gate may land on the other side (2^-11 relative) */
        CHECK(eu <= 1e-4 && e <= (gelu ? 3e-3 : 1e-4), "%s: matvec glu (%s): up %.3g, out %.3g", name,
              gelu ? "gelu" : "silu", eu, e);
        if (verbose()) printf("    %-5s glu %s: up %.3g, out %.3g\n", name, gelu ? "gelu" : "silu", eu, e);
    }
    free_bufs(v, &o);
    vkb_free(v, y), vkb_free(v, aux), vkb_free(v, xo);
    free(w), free(up), free(wf), free(uf);
}

TEST(vkb_matvec_fused)
{
    vkb *v = open_dev();
    if (!v) return;
    const uint32_t types[] = {GGML_TYPE_Q4_K, GGML_TYPE_Q6_K, GGML_TYPE_Q5_K, GGML_TYPE_Q8_0, GGML_TYPE_F16};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) check_matvec(v, types[i], 300 + i);
    /* the unaligned x is refused, naming the op */
    strata_error err = {0};
    vkb_begin(v);
    vkb_matvec(v, &(vkb_mv){.type = GGML_TYPE_Q4_K, .x = 4, .n_in = 256, .n_out = 1});
    CHECK(vkb_run(v, &err) != STRATA_OK && strstr(err.message, "vkb_matvec"), "%s", err.message);
    vkb_close(v);
}

TEST(vkb_rmsnorm_add_fused)
{
    vkb *v = open_dev();
    if (!v) return;
    enum { N = 300, ROWS = 2 };
    uint64_t seed = 29;
    float x[N * ROWS], w[N], a0[N * ROWS], got[N * ROWS];
    double ref[N * ROWS];
    fill_normal(x, N * ROWS, &seed, 2), fill_normal(w, N, &seed, 1), fill_normal(a0, N * ROWS, &seed, 1);
    rmsnorm_ref(x, w, ref, N, ROWS, 1e-6f);
    op_bufs o = {{dev_buf(v, x, sizeof x), dev_buf(v, w, sizeof w), dev_buf(v, a0, sizeof a0), NULL}};
    REQUIRE(o.b[0] && o.b[1] && o.b[2]);
    vkb_begin(v);
    vkb_rmsnorm_add(v, vkb_addr(o.b[0]), vkb_addr(o.b[1]), vkb_addr(o.b[0]), vkb_addr(o.b[2]), N, ROWS, 1e-6f);
    if (run(v)) {
        download(v, o.b[0], got, sizeof got);
        double e = max_rel_err(got, ref, N * ROWS);
        for (int i = 0; i < N * ROWS; i++) ref[i] += a0[i];
        download(v, o.b[2], got, sizeof got);
        double e2 = max_rel_err(got, ref, N * ROWS);
        CHECK(e <= 1e-5 && e2 <= 1e-5, "rmsnorm_add: norm %.3g, sum %.3g", e, e2);
    }
    free_bufs(v, &o);
    vkb_close(v);
}

/* vkb_rope_kv_store writes exactly what vkb_rope twice and vkb_kv_store
 * twice write, here into a ring that wraps. */
TEST(vkb_rope_kv_store_matches_separate_ops)
{
    vkb *v = open_dev();
    if (!v) return;
    enum { T = 3, H = 4, G = 2, HD = 64, RD = 48, LEN = 4, SLOT0 = 6 };
    uint64_t seed = 31;
    float q[T * H * HD], k[T * G * HD], vv[T * G * HD], cs[T * RD];
    fill_normal(q, T * H * HD, &seed, 1), fill_normal(k, T * G * HD, &seed, 1), fill_normal(vv, T * G * HD, &seed, 3);
    for (int i = 0; i < T * RD; i++) cs[i] = (float)cos(0.1 * i + (i % 2) * 1.5);
    for (int neox = 0; neox < 2; neox++) {
        vkb_buf *b[2][5]; /* q, k, v, K cache, V cache: separate ops, fused */
        uint16_t junk[G * LEN * HD];
        for (int i = 0; i < G * LEN * HD; i++) junk[i] = 0x1234;
        for (int f = 0; f < 2; f++) {
            b[f][0] = dev_buf(v, q, sizeof q), b[f][1] = dev_buf(v, k, sizeof k), b[f][2] = dev_buf(v, vv, sizeof vv);
            b[f][3] = dev_buf(v, junk, sizeof junk), b[f][4] = dev_buf(v, junk, sizeof junk);
        }
        vkb_buf *bcs = dev_buf(v, cs, sizeof cs);
        vkb_begin(v);
        vkb_rope(v, vkb_addr(b[0][0]), vkb_addr(bcs), T, H, HD, RD, H * HD, neox);
        vkb_rope(v, vkb_addr(b[0][1]), vkb_addr(bcs), T, G, HD, RD, G * HD, neox);
        vkb_barrier(v);
        vkb_kv_store(v, vkb_addr(b[0][1]), vkb_addr(b[0][3]), T, G, HD, LEN, SLOT0);
        vkb_kv_store(v, vkb_addr(b[0][2]), vkb_addr(b[0][4]), T, G, HD, LEN, SLOT0);
        vkb_rope_kv r = {vkb_addr(b[1][0]), vkb_addr(b[1][1]), vkb_addr(b[1][2]), vkb_addr(bcs), vkb_addr(b[1][3]),
                         vkb_addr(b[1][4]), T, H, G, HD, RD, H * HD, LEN, SLOT0, neox};
        vkb_rope_kv_store(v, &r);
        if (run(v)) {
            static const size_t bytes[5] = {sizeof q, sizeof k, sizeof vv, sizeof junk, sizeof junk};
            static const char *const what[5] = {"q", "k", "v", "K cache", "V cache"};
            for (int i = 0; i < 5; i++) {
                uint8_t *x0 = malloc(bytes[i]), *x1 = malloc(bytes[i]);
                download(v, b[0][i], x0, bytes[i]);
                download(v, b[1][i], x1, bytes[i]);
                CHECK(memcmp(x0, x1, bytes[i]) == 0, "neox %d: %s differs from the separate ops'", neox, what[i]);
                free(x0), free(x1);
            }
        }
        for (int f = 0; f < 2; f++)
            for (int i = 0; i < 5; i++) vkb_free(v, b[f][i]);
        vkb_free(v, bcs);
    }
    vkb_close(v);
}

/* Staged copies run inside the command buffer: one submission and one
 * wait for upload, op and download; the counters say so. */
TEST(vkb_staged_copies_and_counters)
{
    vkb *v = open_dev();
    if (!v) return;
    float x[1000], got[1000];
    uint64_t seed = 37;
    fill_normal(x, 1000, &seed, 1);
    vkb_buf *b = dev_buf(v, NULL, sizeof x);
    REQUIRE(b);
    vkb_stats s0, s1;
    vkb_get_stats(v, &s0);
    CHECK(!vkb_stage_upload(v, b, 0, x, sizeof x), "staged upload outside a recording");
    vkb_begin(v);
    CHECK(vkb_stage_upload(v, b, 0, x, sizeof x));
    vkb_scale(v, vkb_addr(b), 2.0f, 1000);
    CHECK(vkb_stage_download(v, b, 0, got, sizeof got));
    CHECK(!vkb_stage_download(v, b, 4, got, sizeof got), "a download past the buffer");
    CHECK(!vkb_stage_upload(v, b, 0, x, 9u << 20), "an upload larger than the staging");
    memset(got, 0, sizeof got);
    if (run(v)) {
        int bad = 0;
        for (int i = 0; i < 1000; i++) bad += got[i] != x[i] * 2.0f;
        CHECK(bad == 0, "%d of 1000 values differ", bad);
    }
    vkb_get_stats(v, &s1);
    CHECK(s1.dispatches - s0.dispatches == 1 && s1.staged - s0.staged == 2 && s1.submits - s0.submits == 1 &&
              s1.waits - s0.waits == 1 && s1.runs - s0.runs == 1 && s1.push_consts - s0.push_consts == 1,
          "dispatches %llu, staged %llu, submits %llu, waits %llu", (unsigned long long)(s1.dispatches - s0.dispatches),
          (unsigned long long)(s1.staged - s0.staged), (unsigned long long)(s1.submits - s0.submits),
          (unsigned long long)(s1.waits - s0.waits));
    vkb_free(v, b);
    vkb_close(v);
}

/* ---- memory, transfers and errors ---- */

TEST(vkb_transfers_in_chunks)
{
    vkb *v = open_dev();
    if (!v) return;
    const uint64_t n = (20u << 20) + 12, off = 4; /* crosses both staging halves twice */
    uint8_t *src = malloc(n), *got = malloc(n);
    uint64_t seed = 23;
    for (uint64_t i = 0; i < n; i++) src[i] = (uint8_t)rng_next(&seed);
    vkb_buf *b = NULL;
    strata_error err = {0};
    REQUIRE(vkb_alloc(v, n + off, false, &b, &err) == STRATA_OK, "%s", err.message);
    CHECK(vkb_upload(v, b, off, src, n, &err) == STRATA_OK, "%s", err.message);
    CHECK(vkb_download(v, b, off, got, n, &err) == STRATA_OK, "%s", err.message);
    CHECK(memcmp(src, got, n) == 0, "the round trip changed the data");
    CHECK(vkb_upload(v, b, off + 1, src, n, &err) == STRATA_E_INVALID && strstr(err.message, "overruns"),
          "an overrunning upload: %s", err.message);
    vkb_free(v, b);
    free(src), free(got);
    vkb_close(v);
}

TEST(vkb_memory_accounting_and_budget)
{
    vkb *v = open_dev();
    if (!v) return;
    const vkb_info *info = vkb_get_info(v);
    CHECK(info->name[0] && info->heap_bytes > 0 && info->budget_bytes > 0 && info->budget_bytes <= info->heap_bytes);
    printf("    device: %s (%s), heap %.2f GiB, budget %.2f GiB, %s reductions\n", info->name,
           info->is_cpu ? "software" : "GPU", info->heap_bytes / 1073741824.0, info->budget_bytes / 1073741824.0,
           info->subgroup_arith ? "subgroup" : "shared-memory");
    strata_error err = {0};
    vkb_buf *a = NULL, *b = NULL, *h = NULL, *big = NULL;
    CHECK(vkb_device_bytes(v) == 0);
    CHECK(vkb_alloc(v, 1000, false, &a, &err) == STRATA_OK, "%s", err.message);
    CHECK(vkb_alloc(v, 1 << 20, false, &b, &err) == STRATA_OK, "%s", err.message);
    CHECK(vkb_alloc(v, 4096, true, &h, &err) == STRATA_OK, "%s", err.message);
    CHECK(vkb_device_bytes(v) == 1000 + (1 << 20), "host-visible memory is not device memory");
    CHECK(h && vkb_map(h) != NULL && a && vkb_map(a) == NULL && vkb_size(a) == 1000 && vkb_addr(a) != 0);
    CHECK(vkb_alloc(v, info->budget_bytes + 1, false, &big, &err) == STRATA_E_NOMEM && !big &&
              strstr(err.message, "budget"),
          "over the budget: %s", err.message);
    CHECK(vkb_alloc(v, UINT64_MAX, false, &big, &err) == STRATA_E_NOMEM && !big, "%s", err.message);
    CHECK(vkb_alloc(v, 0, false, &big, &err) == STRATA_E_INVALID && !big, "%s", err.message);
    vkb_free(v, a), vkb_free(v, b), vkb_free(v, h);
    CHECK(vkb_device_bytes(v) == 0, "%llu bytes left", (unsigned long long)vkb_device_bytes(v));
    /* the simulated driver failure (auto mode's fallback tests) */
    vkb_fail_above(v, 1u << 20);
    CHECK(vkb_alloc(v, 512u << 10, false, &a, &err) == STRATA_OK, "%s", err.message);
    CHECK(vkb_alloc(v, 768u << 10, false, &b, &err) == STRATA_E_NOMEM && !b &&
              strstr(err.message, "VK_ERROR_OUT_OF_DEVICE_MEMORY"),
          "%s", err.message);
    CHECK(vkb_alloc(v, 2u << 20, true, &h, &err) == STRATA_OK, "host-visible memory is not limited: %s", err.message);
    vkb_free(v, a), vkb_free(v, h);
    vkb_fail_above(v, UINT64_MAX);
    CHECK(vkb_alloc(v, 64, false, &a, &err) == STRATA_OK); /* left for vkb_close to free */
    vkb_close(v);
}

TEST(vkb_open_bad_index)
{
    vkb *v = NULL;
    strata_error err = {0};
    bool any = vkb_open(-1, true, &v, &err) == STRATA_OK; /* is there a device at all? */
    vkb_close(v);
    v = NULL;
    if (vkb_open(99, true, &v, &err) == STRATA_OK) {
        CHECK(false, "device 99 opened");
        vkb_close(v);
        return;
    }
    CHECK(!v && err.status == STRATA_E_UNSUPPORTED && err.message[0] && !strchr(err.message, '\n'));
    if (any) CHECK(strstr(err.message, "no device 99") != NULL, "%s", err.message);
}

/* Bad arguments record nothing: the next vkb_run fails naming them, and
 * the device works afterwards. */
TEST(vkb_recording_errors)
{
    vkb *v = open_dev();
    if (!v) return;
    strata_error err = {0};
    CHECK(vkb_run(v, &err) == STRATA_E_INVALID && strstr(err.message, "vkb_begin"), "%s", err.message);
    vkb_add(v, 0, 0, 1); /* outside begin .. run */
    CHECK(vkb_run(v, &err) != STRATA_OK && strstr(err.message, "vkb_add"), "%s", err.message);
    vkb_begin(v);
    vkb_attn a = {.n_tok = 1, .n_heads = 2, .n_kv_heads = 2, .head_dim = 1024, .kv_len = 4};
    vkb_attention(v, &a);
    CHECK(vkb_run(v, &err) != STRATA_OK && strstr(err.message, "head_dim 1024"), "%s", err.message);
    vkb_begin(v);
    vkb_matmul(v, GGML_TYPE_IQ4_XS, 0, 0, 0, 256, 1, 1);
    CHECK(vkb_run(v, &err) != STRATA_OK && strstr(err.message, "IQ4_XS"), "%s", err.message);
    vkb_begin(v);
    vkb_matmul(v, GGML_TYPE_Q4_K, 0, 0, 0, 100, 1, 1);
    CHECK(vkb_run(v, &err) != STRATA_OK && strstr(err.message, "multiple of 256"), "%s", err.message);
    float x = 2.0f, got = 0;
    vkb_buf *b = dev_buf(v, &x, sizeof x);
    REQUIRE(b);
    vkb_begin(v);
    vkb_scale(v, vkb_addr(b), 3.0f, 1);
    CHECK(vkb_run(v, &err) == STRATA_OK, "%s", err.message);
    download(v, b, &got, sizeof got);
    CHECK(got == 6.0f, "%g", got);
    vkb_free(v, b);
    vkb_close(v);
}
