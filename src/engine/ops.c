#include <math.h>

#include "engine/ops.h"

/* Σ x² in double (the mean of squares of thousands of values) over
 * SUM_LANES independent partial sums, added in a fixed order at the end:
 * one chain of dependent additions would wait on each (this runs on one
 * thread twice per layer), and a fixed order gives the same bits on
 * every machine, vectorized or not. */
#define SUM_LANES 8

static double sum_squares(const float *x, uint64_t n)
{
    double part[SUM_LANES] = {0};
    uint64_t i = 0;
    for (; i + SUM_LANES <= n; i += SUM_LANES)
        for (int l = 0; l < SUM_LANES; l++) part[l] += (double)x[i + l] * x[i + l];
    for (; i < n; i++) part[i % SUM_LANES] += (double)x[i] * x[i];
    double sum = 0.0;
    for (int l = 0; l < SUM_LANES; l++) sum += part[l];
    return sum;
}

void op_rmsnorm(float *y, const float *x, const float *w, uint64_t n, float eps)
{
    double sum = sum_squares(x, n);
    float scale = (float)(1.0 / sqrt(sum / (double)n + eps));
    for (uint64_t i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
}

/* YaRN's ramp: 1 below the correction range (extrapolate), 0 above it. */
static double yarn_ramp(double low, double high, uint64_t pair)
{
    double y = ((double)pair - low) / fmax(0.001, high - low);
    return 1.0 - fmin(1.0, fmax(0.0, y));
}

void op_rope_table(float *cs, const rope_cfg *r, uint32_t pos)
{
    for (uint64_t i = 0; i < r->dim / 2; i++) {
        double extrap = (double)pos * pow((double)r->base, -(double)(2 * i) / (double)r->dim);
        if (r->factors) extrap /= r->factors[i];
        double theta = r->freq_scale * extrap, mscale = 1.0;
        if (r->ext_factor != 0) {
            double mix = yarn_ramp(r->corr_low, r->corr_high, i) * r->ext_factor;
            theta = theta * (1 - mix) + extrap * mix;
            mscale = r->attn_factor * (1.0 + 0.1 * log(1.0 / r->freq_scale));
        }
        cs[2 * i] = (float)(cos(theta) * mscale);
        cs[2 * i + 1] = (float)(sin(theta) * mscale);
    }
}

void op_rope(float *head, const float *cs, uint64_t dim, bool neox)
{
    uint64_t half = dim / 2;
    for (uint64_t i = 0; i < half; i++) {
        /* neox pairs element i with i + dim/2; the others pair neighbours */
        float *a = neox ? head + i : head + 2 * i, *b = neox ? head + i + half : head + 2 * i + 1;
        float x = *a, y = *b, c = cs[2 * i], s = cs[2 * i + 1];
        *a = x * c - y * s;
        *b = x * s + y * c;
    }
}

void op_add(float *y, const float *x, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) y[i] += x[i];
}

void op_add_rows(float *y, const float *b, uint64_t n, uint64_t n_tok)
{
    for (uint64_t t = 0; t < n_tok; t++) op_add(y + t * n, b, n);
}

void op_scale(float *x, float s, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) x[i] *= s;
}
