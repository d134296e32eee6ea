#include <math.h>

#include "engine/ops.h"

void op_rmsnorm(float *y, const float *x, const float *w, uint64_t n, float eps)
{
    double sum = 0.0; /* double: the mean of squares of thousands of values */
    for (uint64_t i = 0; i < n; i++) sum += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(sum / (double)n + eps));
    for (uint64_t i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
}

void op_rope_table(float *cs, uint64_t rope_dim, uint32_t pos, float base, float freq_scale)
{
    for (uint64_t i = 0; i < rope_dim; i += 2) {
        double theta = (double)pos * freq_scale * pow((double)base, -(double)i / (double)rope_dim);
        cs[i] = (float)cos(theta);
        cs[i + 1] = (float)sin(theta);
    }
}

void op_rope(float *head, const float *cs, uint64_t rope_dim)
{
    for (uint64_t i = 0; i < rope_dim; i += 2) {
        float a = head[i], b = head[i + 1], c = cs[i], s = cs[i + 1];
        head[i] = a * c - b * s;
        head[i + 1] = a * s + b * c;
    }
}

void op_add(float *y, const float *x, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) y[i] += x[i];
}
