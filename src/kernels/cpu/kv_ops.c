#include "kernels/cpu/kv_ops.h"

#include <math.h>
#include <string.h>

#include "gguf/ggml_types.h"
#include "kernels/cpu/act_quant.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/quantize.h"
#include "util/fp16.h"

/* Element d of cached row j, as float. */
static float f16_at(const void *base, uint64_t stride, uint64_t j, uint64_t d)
{
    return fp16_to_f32(((const uint16_t *)((const uint8_t *)base + j * stride))[d]);
}

static float f32_at(const void *base, uint64_t stride, uint64_t j, uint64_t d)
{
    return ((const float *)((const uint8_t *)base + j * stride))[d];
}

/* Q8_0 (34 bytes / 32 values): f16 d, int8 q[32]; x = d q. */
static float q8_0_at(const void *base, uint64_t stride, uint64_t j, uint64_t d)
{
    const uint8_t *b = (const uint8_t *)base + j * stride + d / 32 * 34;
    uint16_t h;
    memcpy(&h, b, 2);
    return fp16_to_f32(h) * (float)(int8_t)b[2 + d % 32];
}

/* Q4_0 (18 bytes / 32 values): f16 d, qs[16]; value i < 16 is the low
 * nibble of qs[i], value i + 16 its high nibble; x = d (q - 8). */
static float q4_0_at(const void *base, uint64_t stride, uint64_t j, uint64_t d)
{
    const uint8_t *b = (const uint8_t *)base + j * stride + d / 32 * 18;
    uint16_t h;
    memcpy(&h, b, 2);
    uint64_t i = d % 32;
    int q = i < 16 ? b[2 + i] & 0xF : b[2 + i - 16] >> 4;
    return fp16_to_f32(h) * (float)(q - 8);
}

typedef float (*elem_fn)(const void *base, uint64_t stride, uint64_t j, uint64_t d);

static void scores_ref(elem_fn at, const float *q, uint64_t n_q, const void *k, uint64_t stride, uint64_t n_keys,
                       uint64_t hd, float scale, float *s)
{
    for (uint64_t i = 0; i < n_q; i++)
        for (uint64_t j = 0; j < n_keys; j++) {
            float dot = 0.0f;
            for (uint64_t d = 0; d < hd; d++) dot += q[i * hd + d] * at(k, stride, j, d);
            s[i * n_keys + j] = dot * scale;
        }
}

static void mix_ref(elem_fn at, float *out, uint64_t n_q, const float *p, const void *v, uint64_t stride,
                    uint64_t n_keys, uint64_t hd)
{
    memset(out, 0, n_q * hd * sizeof *out);
    for (uint64_t i = 0; i < n_q; i++)
        for (uint64_t j = 0; j < n_keys; j++)
            for (uint64_t d = 0; d < hd; d++) out[i * hd + d] += p[i * n_keys + j] * at(v, stride, j, d);
}

void kv_scores_f16_ref(const float *q, uint64_t n_q, const void *k, uint64_t stride, uint64_t n_keys, uint64_t hd,
                       float scale, float *s)
{
    scores_ref(f16_at, q, n_q, k, stride, n_keys, hd, scale, s);
}

void kv_scores_f32_ref(const float *q, uint64_t n_q, const void *k, uint64_t stride, uint64_t n_keys, uint64_t hd,
                       float scale, float *s)
{
    scores_ref(f32_at, q, n_q, k, stride, n_keys, hd, scale, s);
}

void kv_mix_f16_ref(float *out, uint64_t n_q, const float *p, const void *v, uint64_t stride, uint64_t n_keys,
                    uint64_t hd)
{
    mix_ref(f16_at, out, n_q, p, v, stride, n_keys, hd);
}

void kv_mix_f32_ref(float *out, uint64_t n_q, const float *p, const void *v, uint64_t stride, uint64_t n_keys,
                    uint64_t hd)
{
    mix_ref(f32_at, out, n_q, p, v, stride, n_keys, hd);
}

void kv_scores_q8_0_ref(const float *q, uint64_t n_q, const void *k, uint64_t stride, uint64_t n_keys, uint64_t hd,
                        float scale, float *s)
{
    scores_ref(q8_0_at, q, n_q, k, stride, n_keys, hd, scale, s);
}

void kv_scores_q4_0_ref(const float *q, uint64_t n_q, const void *k, uint64_t stride, uint64_t n_keys, uint64_t hd,
                        float scale, float *s)
{
    scores_ref(q4_0_at, q, n_q, k, stride, n_keys, hd, scale, s);
}

void kv_mix_q8_0_ref(float *out, uint64_t n_q, const float *p, const void *v, uint64_t stride, uint64_t n_keys,
                     uint64_t hd)
{
    mix_ref(q8_0_at, out, n_q, p, v, stride, n_keys, hd);
}

void kv_mix_q4_0_ref(float *out, uint64_t n_q, const float *p, const void *v, uint64_t stride, uint64_t n_keys,
                     uint64_t hd)
{
    mix_ref(q4_0_at, out, n_q, p, v, stride, n_keys, hd);
}

void kv_softmax_ref(float *x, uint64_t n)
{
    float max = x[0];
    for (uint64_t i = 1; i < n; i++)
        if (x[i] > max) max = x[i];
    double sum = 0.0; /* double: thousands of terms of very different size */
    for (uint64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (uint64_t i = 0; i < n; i++) x[i] *= inv;
}

bool kv_type_supported(uint32_t type)
{
    return type == GGML_TYPE_F32 || type == GGML_TYPE_F16 || type == GGML_TYPE_Q8_0 || type == GGML_TYPE_Q4_0;
}

const char *kv_type_name(uint32_t type)
{
    return type == GGML_TYPE_F32    ? "f32"
           : type == GGML_TYPE_F16  ? "f16"
           : type == GGML_TYPE_Q8_0 ? "q8_0"
           : type == GGML_TYPE_Q4_0 ? "q4_0"
                                    : "?";
}

bool kv_type_blocked(uint32_t type) { return type == GGML_TYPE_Q8_0 || type == GGML_TYPE_Q4_0; }

uint64_t kv_row_bytes(uint32_t type, uint64_t hd)
{
    switch (type) {
    case GGML_TYPE_F32: return hd * 4;
    case GGML_TYPE_Q8_0: return (hd + 31) / 32 * 34;
    case GGML_TYPE_Q4_0: return (hd + 31) / 32 * 18;
    default: return hd * 2;
    }
}

/* Not a choice of the fast kernels (the reference engine's runs store the
 * same halves): this runs once per head per layer per token on one
 * thread, which more threads do not shorten. */
void kv_store_row(uint32_t type, void *dst, const float *src, uint64_t hd)
{
    if (type == GGML_TYPE_F32) memcpy(dst, src, hd * 4);
    else if (type == GGML_TYPE_Q8_0) act_quant_q8_0(src, dst, hd); /* quantize_row's bytes, vectorized */
    else if (kv_type_blocked(type)) quantize_row(type, src, dst, hd, NULL); /* hd % 32 == 0: cannot fail */
    else if (hd % 8 == 0 && kernel_cpu_features_get()->avx2_fma_f16c) kv_store_f16_avx2(dst, src, hd);
    else
        for (uint64_t i = 0; i < hd; i++) {
            uint16_t h = f32_to_fp16(src[i]);
            memcpy((uint8_t *)dst + 2 * i, &h, 2);
        }
}

typedef struct kv_fns {
    kv_scores_fn scores[2]; /* reference, AVX2 */
    kv_mix_fn mix[2];
} kv_fns;

static kv_fns fns_of(uint32_t type)
{
    switch (type) {
    case GGML_TYPE_F32: return (kv_fns){{kv_scores_f32_ref, kv_scores_f32_avx2}, {kv_mix_f32_ref, kv_mix_f32_avx2}};
    case GGML_TYPE_Q8_0:
        return (kv_fns){{kv_scores_q8_0_ref, kv_scores_q8_0_avx2}, {kv_mix_q8_0_ref, kv_mix_q8_0_avx2}};
    case GGML_TYPE_Q4_0:
        return (kv_fns){{kv_scores_q4_0_ref, kv_scores_q4_0_avx2}, {kv_mix_q4_0_ref, kv_mix_q4_0_avx2}};
    default: return (kv_fns){{kv_scores_f16_ref, kv_scores_f16_avx2}, {kv_mix_f16_ref, kv_mix_f16_avx2}};
    }
}

kv_ops kv_ops_for(uint32_t k_type, uint32_t v_type, bool fast)
{
    int f = fast && kernel_cpu_features_get()->avx2_fma_f16c;
    kv_fns k = fns_of(k_type), v = fns_of(v_type);
    return (kv_ops){k.scores[f], f ? kv_softmax_avx2 : kv_softmax_ref, v.mix[f]};
}

kv_ops kv_ops_get(bool f32, bool fast)
{
    uint32_t t = f32 ? GGML_TYPE_F32 : GGML_TYPE_F16;
    return kv_ops_for(t, t, fast);
}
