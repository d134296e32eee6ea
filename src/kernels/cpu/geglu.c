#include "kernels/cpu/geglu.h"

#include <math.h>
#include <pthread.h>

#include "util/fp16.h"

static uint16_t gelu_table[1 << 16]; /* f16 input bits -> f16 GELU */
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

float gelu_tanh(float x)
{
    const float sqrt_2_over_pi = 0.79788456080286535587989211986876f;
    return 0.5f * x * (1.0f + tanhf(sqrt_2_over_pi * x * (1.0f + 0.044715f * x * x)));
}

static void fill_table(void)
{
    for (uint32_t h = 0; h < (1u << 16); h++) gelu_table[h] = f32_to_fp16(gelu_tanh(fp16_to_f32((uint16_t)h)));
}

static float gelu_f16(float x)
{
    if (x <= -10.0f) return 0.0f; /* outside the table's useful range */
    if (x >= 10.0f) return x;
    return fp16_to_f32(gelu_table[f32_to_fp16(x)]);
}

void geglu_f16(float *gate, const float *up, uint64_t n)
{
    pthread_once(&table_once, fill_table);
    for (uint64_t i = 0; i < n; i++) gate[i] = gelu_f16(gate[i]) * up[i];
}
