/* Scalar reference quantizers (see quantize.h for what is bit-exact with
 * llama.cpp and what is strata's own). Block layouts are those documented
 * in dequant.c. */
#include "kernels/cpu/quantize.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "gguf/ggml_types.h"
#include "util/error.h"
#include "util/fp16.h"

static inline void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* Rounds to nearest (ties up) and clamps to [lo, hi]; NaN gives lo.
 * Branch-free plain arithmetic: nearbyintf is a library call on baseline
 * x86-64, and data-dependent branches dominated the K-quant search. */
static inline int round_clamp(float v, int lo, int hi)
{
    v = v >= (float)lo ? v : (float)lo; /* also maps NaN to lo */
    v = v <= (float)hi ? v : (float)hi;
    return (int)(v - (float)lo + 0.5f) + lo;
}

/* ---- float types ---- */

static void q_f32(const float *x, uint8_t *y, uint64_t nb)
{
    memcpy(y, x, nb * sizeof(float));
}

static void q_f16(const float *x, uint8_t *y, uint64_t nb)
{
    for (uint64_t i = 0; i < nb; i++) wr16(y + 2 * i, f32_to_fp16(x[i]));
}

static void q_bf16(const float *x, uint8_t *y, uint64_t nb)
{
    for (uint64_t i = 0; i < nb; i++) wr16(y + 2 * i, f32_to_bf16(x[i]));
}

/* ---- the format's deterministic rules ----
 * The arithmetic below (multiplying by the float reciprocal of d, adding
 * 8.5 / 0.5 in float and truncating) is part of the rule: it is what makes
 * the output byte-identical to llama.cpp's, including at rounding ties.
 * Separate statements keep the compiler from fusing a multiply-add. */

/* Q8_0: d = max|x| / 127, q = round-half-away(x * (1/d)). */
static void q_q8_0(const float *x, uint8_t *y, uint64_t nb)
{
    for (uint64_t b = 0; b < nb; b++, x += 32, y += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) {
            float a = fabsf(x[j]);
            amax = a > amax ? a : amax;
        }
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        wr16(y, f32_to_fp16(d));
        for (int j = 0; j < 32; j++) {
            float v = x[j] * id;
            y[2 + j] = (uint8_t)(int8_t)roundf(v);
        }
    }
}

/* Q4_0: m = the first element of largest magnitude (signed), d = m / -8,
 * q = min(15, trunc(x * (1/d) + 8.5)), i.e. round-half-up of x/d + 8. */
static void q_q4_0(const float *x, uint8_t *y, uint64_t nb)
{
    for (uint64_t b = 0; b < nb; b++, x += 32, y += 18) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++) {
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        float d = max / -8.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        wr16(y, f32_to_fp16(d));
        for (int j = 0; j < 16; j++) {
            float v0 = x[j] * id, v1 = x[j + 16] * id;
            v0 += 8.5f;
            v1 += 8.5f;
            int q0 = (int)v0, q1 = (int)v1;
            if (q0 > 15) q0 = 15;
            if (q1 > 15) q1 = 15;
            y[2 + j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

/* Q4_1: m = min x, d = (max x - m) / 15, q = min(15, trunc((x-m) * (1/d) + 0.5)). */
static void q_q4_1(const float *x, uint8_t *y, uint64_t nb)
{
    for (uint64_t b = 0; b < nb; b++, x += 32, y += 20) {
        float lo = x[0], hi = x[0];
        for (int j = 1; j < 32; j++) {
            lo = x[j] < lo ? x[j] : lo;
            hi = x[j] > hi ? x[j] : hi;
        }
        float d = (hi - lo) / 15.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        wr16(y, f32_to_fp16(d));
        wr16(y + 2, f32_to_fp16(lo));
        for (int j = 0; j < 16; j++) {
            float v0 = x[j] - lo, v1 = x[j + 16] - lo;
            v0 *= id;
            v1 *= id;
            v0 += 0.5f;
            v1 += 0.5f;
            int q0 = (int)v0, q1 = (int)v1;
            if (q0 > 15) q0 = 15;
            if (q1 > 15) q1 = 15;
            y[4 + j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

/* ---- K-quants: strata's own scale search ----
 * Each sub-block gets the float scale (and min) minimizing its squared
 * error over a small set of candidate grids: for each candidate the values
 * are rounded onto the grid, then scale (and min) are refit by least squares
 * for those integers. The sub-block scales are then quantized against the
 * super-block scale (trying the rounded integer and its neighbours), and the
 * values are quantized again with the scales actually stored. */

/* Candidate grids: the sub-block's range [min(x, 0), max x] divided into
 * nmax + KQ_STEP_LO + KQ_STEP*t steps, t < KQ_CANDIDATES. */
#define KQ_CANDIDATES 12
#define KQ_STEP_LO (-1.0f)
#define KQ_STEP 0.25f

/* Affine fit x ~ s*q - m with q in [0, nmax], s >= 0, m >= 0. The squared
 * error of each candidate comes from the sums in closed form. */
static void fit_affine(const float *x, int n, int nmax, float *s_out, float *m_out)
{
    float lo = x[0], hi = x[0];
    double sx = 0, sxx = 0;
    for (int i = 0; i < n; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
        sx += x[i];
        sxx += (double)x[i] * x[i];
    }
    if (lo > 0.0f) lo = 0.0f;
    if (!(hi > lo)) { /* constant non-positive sub-block */
        *s_out = 0.0f;
        *m_out = -lo;
        return;
    }
    double best = INFINITY;
    float best_s = (hi - lo) / (float)nmax, best_m = -lo;
    for (int t = 0; t < KQ_CANDIDATES; t++) {
        float steps = (float)nmax + KQ_STEP_LO + KQ_STEP * (float)t;
        float is = steps / (hi - lo);
        int sq = 0, sqq = 0;
        float sqx = 0;
        for (int i = 0; i < n; i++) {
            int q = round_clamp((x[i] - lo) * is, 0, nmax);
            sq += q;
            sqq += q * q;
            sqx += (float)q * x[i];
        }
        double det = (double)n * sqq - (double)sq * sq, s, b;
        if (det > 0) {
            s = (n * (double)sqx - sq * sx) / det;
            b = (sx - s * sq) / n;
        } else {
            s = 0;
            b = sx / n;
        }
        if (b > 0) { /* the format needs a non-positive offset */
            b = 0;
            s = sqq > 0 ? sqx / (double)sqq : 0;
        }
        if (s < 0) continue;
        double err = sxx + s * s * sqq + n * b * b - 2 * s * sqx - 2 * b * sx + 2 * s * b * sq;
        if (err < best) {
            best = err;
            best_s = (float)s;
            best_m = (float)-b;
        }
    }
    *s_out = best_s;
    *m_out = best_m;
}

/* Squared error of x quantized with the affine grid (ds, dm), optionally
 * storing the integers. */
static double affine_quant(const float *x, int n, int nmax, float ds, float dm, uint8_t *q)
{
    float err = 0, ids = ds > 0.0f ? 1.0f / ds : 0.0f;
    for (int i = 0; i < n; i++) {
        int v = round_clamp((x[i] + dm) * ids, 0, nmax);
        if (q) q[i] = (uint8_t)v;
        float e = ds * (float)v - dm - x[i];
        err += e * e;
    }
    return err;
}

static int clamp_int(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* The eight (scale, min) pairs and quants of one Q4_K / Q5_K super-block.
 * Writes d and dmin (f16) to hdr[0..4) and the packed 6-bit scales to
 * sc12[0..12); q[256] receives the integers in [0, nmax]. */
static void kq_affine_block(const float *x, int nmax, uint8_t *hdr, uint8_t *sc12, uint8_t *q)
{
    float s[8], m[8], smax = 0.0f, mmax = 0.0f;
    for (int j = 0; j < 8; j++) {
        fit_affine(x + 32 * j, 32, nmax, &s[j], &m[j]);
        smax = s[j] > smax ? s[j] : smax;
        mmax = m[j] > mmax ? m[j] : mmax;
    }
    uint16_t hd = f32_to_fp16(smax / 63.0f), hm = f32_to_fp16(mmax / 63.0f);
    float d = fp16_to_f32(hd), dmin = fp16_to_f32(hm);
    wr16(hdr, hd);
    wr16(hdr + 2, hm);
    int sc[8], mn[8];
    for (int j = 0; j < 8; j++) {
        /* The rounded 6-bit scale and min, then each moved by one step
         * (scale first, then min) when that lowers the error. */
        sc[j] = d > 0.0f ? round_clamp(s[j] / d, 0, 63) : 0;
        mn[j] = dmin > 0.0f ? round_clamp(m[j] / dmin, 0, 63) : 0;
        const float *xj = x + 32 * j;
        double best = affine_quant(xj, 32, nmax, d * (float)sc[j], dmin * (float)mn[j], NULL);
        for (int pass = 0; pass < 2; pass++) {
            int *v = pass == 0 ? &sc[j] : &mn[j], v0 = *v;
            for (int a = -1; a <= 1; a += 2) {
                int c = v0 + a;
                if (c < 0 || c > 63) continue;
                *v = c;
                double err = affine_quant(xj, 32, nmax, d * (float)sc[j], dmin * (float)mn[j], NULL);
                if (err < best) {
                    best = err;
                    v0 = c;
                }
            }
            *v = v0;
        }
        affine_quant(x + 32 * j, 32, nmax, d * (float)sc[j], dmin * (float)mn[j], q + 32 * j);
    }
    /* Packing, the inverse of kq_scale_min in dequant.c. */
    for (int j = 0; j < 4; j++) {
        sc12[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
        sc12[j + 4] = (uint8_t)(mn[j] | (mn[j + 4] >> 4) << 6);
        sc12[j + 8] = (uint8_t)((sc[j + 4] & 0xF) | (mn[j + 4] & 0xF) << 4);
    }
}

static void q_q4_k(const float *x, uint8_t *y, uint64_t nb)
{
    for (uint64_t b = 0; b < nb; b++, x += 256, y += 144) {
        uint8_t q[256];
        kq_affine_block(x, 15, y, y + 4, q);
        uint8_t *qs = y + 16;
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                qs[32 * c + l] = (uint8_t)(q[64 * c + l] | q[64 * c + 32 + l] << 4);
    }
}

static void q_q5_k(const float *x, uint8_t *y, uint64_t nb)
{
    for (uint64_t b = 0; b < nb; b++, x += 256, y += 176) {
        uint8_t q[256];
        kq_affine_block(x, 31, y, y + 4, q);
        uint8_t *qh = y + 16, *qs = y + 48;
        memset(qh, 0, 32);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                qs[32 * c + l] = (uint8_t)((q[64 * c + l] & 0xF) | (q[64 * c + 32 + l] & 0xF) << 4);
        for (int j = 0; j < 8; j++)
            for (int l = 0; l < 32; l++) qh[l] |= (uint8_t)((q[32 * j + l] >> 4) << j);
    }
}

/* Symmetric fit x ~ s*q with q in [-32, 31] (s may be negative, so that
 * the value of largest magnitude can use the longer side, -32). */
static float fit_symmetric6(const float *x, int n)
{
    float amax = 0.0f, vmax = 0.0f;
    double sxx = 0;
    for (int i = 0; i < n; i++) {
        sxx += (double)x[i] * x[i];
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            vmax = x[i];
        }
    }
    if (amax == 0.0f) return 0.0f;
    double best = INFINITY;
    float best_s = vmax / -32.0f;
    for (int t = 0; t < KQ_CANDIDATES; t++) {
        /* grids putting vmax at -32, -31.5, ... and at +31, +30.5, ... */
        float steps = t < KQ_CANDIDATES / 2 ? -32.0f + 0.5f * (float)t
                                            : 31.0f - 0.5f * (float)(t - KQ_CANDIDATES / 2);
        float is = steps / vmax;
        int sqq = 0;
        float sqx = 0;
        for (int i = 0; i < n; i++) {
            int q = round_clamp(x[i] * is, -32, 31);
            sqq += q * q;
            sqx += (float)q * x[i];
        }
        if (sqq <= 0) continue;
        double err = sxx - (double)sqx * sqx / sqq;
        if (err < best) {
            best = err;
            best_s = (float)(sqx / (double)sqq);
        }
    }
    return best_s;
}

static double sym_quant(const float *x, int n, float ds, int8_t *q)
{
    float err = 0, ids = ds != 0.0f ? 1.0f / ds : 0.0f;
    for (int i = 0; i < n; i++) {
        int v = round_clamp(x[i] * ids, -32, 31);
        if (q) q[i] = (int8_t)v;
        float e = ds * (float)v - x[i];
        err += e * e;
    }
    return err;
}

static void q_q6_k(const float *x, uint8_t *y, uint64_t nb)
{
    for (uint64_t b = 0; b < nb; b++, x += 256, y += 210) {
        float s[16], amax = 0.0f;
        for (int j = 0; j < 16; j++) {
            s[j] = fit_symmetric6(x + 16 * j, 16);
            amax = fabsf(s[j]) > amax ? fabsf(s[j]) : amax;
        }
        uint16_t hd = f32_to_fp16(amax / 127.0f);
        float d = fp16_to_f32(hd);
        int8_t q[256];
        int8_t *sc = (int8_t *)(y + 192);
        for (int j = 0; j < 16; j++) {
            int sc0 = d > 0.0f ? round_clamp(s[j] / d, -128, 127) : 0;
            double best = INFINITY;
            int scj = sc0;
            for (int a = -1; a <= 1; a++) {
                int c = clamp_int(sc0 + a, -128, 127);
                double err = sym_quant(x + 16 * j, 16, d * (float)c, NULL);
                if (err < best) {
                    best = err;
                    scj = c;
                }
            }
            sc[j] = (int8_t)scj;
            sym_quant(x + 16 * j, 16, d * (float)scj, q + 16 * j);
        }
        wr16(y + 208, hd);
        uint8_t *ql = y, *qh = y + 128;
        memset(ql, 0, 128);
        memset(qh, 0, 64);
        for (int e = 0; e < 256; e++) {
            int h = e / 128, k = (e % 128) / 32, l = e % 32;
            int v = q[e] + 32; /* 0..63 */
            ql[64 * h + 32 * (k % 2) + l] |= (uint8_t)((v & 0xF) << (4 * (k / 2)));
            qh[32 * h + l] |= (uint8_t)((v >> 4) << (2 * k));
        }
    }
}

typedef void (*q_fn)(const float *src, uint8_t *dst, uint64_t n_blocks);

static const q_fn q_table[GGML_TYPE_COUNT] = {
    [GGML_TYPE_F32] = q_f32,   [GGML_TYPE_F16] = q_f16,   [GGML_TYPE_BF16] = q_bf16,
    [GGML_TYPE_Q8_0] = q_q8_0, [GGML_TYPE_Q4_0] = q_q4_0, [GGML_TYPE_Q4_1] = q_q4_1,
    [GGML_TYPE_Q4_K] = q_q4_k, [GGML_TYPE_Q5_K] = q_q5_k, [GGML_TYPE_Q6_K] = q_q6_k,
};

bool quantize_supported(uint32_t type)
{
    return type < GGML_TYPE_COUNT && q_table[type] != NULL;
}

strata_status quantize_row(uint32_t type, const float *src, void *dst, uint64_t n,
                           strata_error *err)
{
    if (!quantize_supported(type))
        return err_set(err, STRATA_E_UNSUPPORTED,
                       "quantize: no quantizer for tensor type %s (id %" PRIu32 ")",
                       ggml_type_name(type), type);
    const ggml_type_info *t = ggml_type_get(type);
    if (n % t->block_elems != 0)
        return err_set(err, STRATA_E_INVALID,
                       "quantize: %" PRIu64 " elements is not a multiple of the %s block size %" PRIu32,
                       n, t->name, t->block_elems);
    if (n == 0) return STRATA_OK;
    q_table[type](src, (uint8_t *)dst, n / t->block_elems);
    return STRATA_OK;
}
