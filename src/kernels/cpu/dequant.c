/* Scalar reference dequantizers, one per ggml tensor type.
 *
 * Every block is read byte by byte (multi-byte fields are little-endian and
 * may be unaligned), so these functions make no assumption about the
 * alignment of `src`. Notation in the layout comments: f16 = IEEE half,
 * u8[n] = n bytes; "x = ..." gives element values of one block. */
#include "kernels/cpu/dequant.h"

#include <inttypes.h>
#include <string.h>

#include "gguf/ggml_types.h"
#include "util/error.h"
#include "util/fp16.h"

const int8_t dequant_iq4nl_values[16] = {
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
};

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline float rdh(const uint8_t *p) { return fp16_to_f32(rd16(p)); }

/* F32: plain little-endian floats. */
static void dq_f32(const uint8_t *s, float *y, uint64_t nb)
{
    memcpy(y, s, nb * sizeof(float));
}

/* F16: IEEE half. */
static void dq_f16(const uint8_t *s, float *y, uint64_t nb)
{
    for (uint64_t i = 0; i < nb; i++) y[i] = rdh(s + 2 * i);
}

/* BF16: the upper 16 bits of a float. */
static void dq_bf16(const uint8_t *s, float *y, uint64_t nb)
{
    for (uint64_t i = 0; i < nb; i++) y[i] = bf16_to_f32(rd16(s + 2 * i));
}

/* Q8_0 (34 bytes / 32): f16 d, i8 q[32]; x = d*q. */
static void dq_q8_0(const uint8_t *s, float *y, uint64_t nb)
{
    for (uint64_t b = 0; b < nb; b++, s += 34, y += 32) {
        float d = rdh(s);
        for (int j = 0; j < 32; j++) y[j] = d * (float)(int8_t)s[2 + j];
    }
}

/* Q4_0 (18 / 32): f16 d, u8 qs[16]; element j (<16) is the low nibble of
 * qs[j], element j+16 the high nibble; x = d*(q-8). */
static void dq_q4_0(const uint8_t *s, float *y, uint64_t nb)
{
    for (uint64_t b = 0; b < nb; b++, s += 18, y += 32) {
        float d = rdh(s);
        const uint8_t *qs = s + 2;
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)((qs[j] & 0xF) - 8);
            y[j + 16] = d * (float)((qs[j] >> 4) - 8);
        }
    }
}

/* Q4_1 (20 / 32): f16 d, f16 m, u8 qs[16] (nibbles as Q4_0); x = d*q + m. */
static void dq_q4_1(const uint8_t *s, float *y, uint64_t nb)
{
    for (uint64_t b = 0; b < nb; b++, s += 20, y += 32) {
        float d = rdh(s), m = rdh(s + 2);
        const uint8_t *qs = s + 4;
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)(qs[j] & 0xF) + m;
            y[j + 16] = d * (float)(qs[j] >> 4) + m;
        }
    }
}

/* Q5_0 (22 / 32): f16 d, u32 qh (little-endian), u8 qs[16]; the low four
 * bits of element j come from qs as in Q4_0, its fifth bit is bit j of qh;
 * x = d*(q-16). */
static void dq_q5_0(const uint8_t *s, float *y, uint64_t nb)
{
    for (uint64_t b = 0; b < nb; b++, s += 22, y += 32) {
        float d = rdh(s);
        uint32_t qh = (uint32_t)s[2] | (uint32_t)s[3] << 8 | (uint32_t)s[4] << 16 |
                      (uint32_t)s[5] << 24;
        const uint8_t *qs = s + 6;
        for (int j = 0; j < 16; j++) {
            int q0 = (qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
            int q1 = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = d * (float)(q0 - 16);
            y[j + 16] = d * (float)(q1 - 16);
        }
    }
}

/* Q5_1 (24 / 32): f16 d, f16 m, u32 qh, u8 qs[16] (bits as Q5_0); x = d*q + m. */
static void dq_q5_1(const uint8_t *s, float *y, uint64_t nb)
{
    for (uint64_t b = 0; b < nb; b++, s += 24, y += 32) {
        float d = rdh(s), m = rdh(s + 2);
        uint32_t qh = (uint32_t)s[4] | (uint32_t)s[5] << 8 | (uint32_t)s[6] << 16 |
                      (uint32_t)s[7] << 24;
        const uint8_t *qs = s + 8;
        for (int j = 0; j < 16; j++) {
            int q0 = (qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
            int q1 = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = d * (float)q0 + m;
            y[j + 16] = d * (float)q1 + m;
        }
    }
}

/* Q2_K (84 / 256): u8 scales[16], u8 qs[64], f16 d, f16 dmin. Sixteen
 * sub-blocks of 16; scales[i] holds sub-block i's 4-bit scale (low nibble)
 * and 4-bit min (high nibble). Element e = 128*h + 32*k + l (h < 2, k < 4,
 * l < 32) is bits 2k..2k+1 of qs[32*h + l] and belongs to sub-block e/16;
 * x = d*scale*q - dmin*min. */
static void dq_q2_k(const uint8_t *s, float *y, uint64_t nb)
{
    for (uint64_t b = 0; b < nb; b++, s += 84, y += 256) {
        const uint8_t *sc = s, *qs = s + 16;
        float d = rdh(s + 80), dmin = rdh(s + 82);
        for (int e = 0; e < 256; e++) {
            int h = e / 128, k = (e % 128) / 32, l = e % 32;
            int q = (qs[32 * h + l] >> (2 * k)) & 3;
            uint8_t m = sc[e / 16];
            y[e] = d * (float)(m & 0xF) * (float)q - dmin * (float)(m >> 4);
        }
    }
}

/* Q3_K (110 / 256): u8 hmask[32], u8 qs[64], u8 scales[12], f16 d. Sixteen
 * sub-blocks of 16 with 6-bit scales stored with an offset of 32: scale i has
 * its low four bits in the low (i < 8) or high (i >= 8) nibble of
 * scales[i % 8] and its top two bits at bit 2*(i/4) of scales[8 + i%4].
 * Element e = 128*h + 32*k + l: low two bits at bits 2k of qs[32*h + l], the
 * third bit is bit 4*h + k of hmask[l]; a clear third bit means q - 4:
 * x = d*(scale-32)*(q2 - (hbit ? 0 : 4)). */
static void dq_q3_k(const uint8_t *s, float *y, uint64_t nb)
{
    for (uint64_t b = 0; b < nb; b++, s += 110, y += 256) {
        const uint8_t *hm = s, *qs = s + 32, *sc = s + 96;
        float d = rdh(s + 108);
        float dl[16];
        for (int i = 0; i < 16; i++) {
            int lo = i < 8 ? sc[i] & 0xF : sc[i - 8] >> 4;
            int hi = (sc[8 + i % 4] >> (2 * (i / 4))) & 3;
            dl[i] = d * (float)((lo | hi << 4) - 32);
        }
        for (int e = 0; e < 256; e++) {
            int h = e / 128, k = (e % 128) / 32, l = e % 32;
            int q = (qs[32 * h + l] >> (2 * k)) & 3;
            if (!((hm[l] >> (4 * h + k)) & 1)) q -= 4;
            y[e] = dl[e / 16] * (float)q;
        }
    }
}

/* The 6-bit scale and min of sub-block j (< 8) of Q4_K / Q5_K, packed in 12
 * bytes: for j < 4, scale = q[j] & 63 and min = q[j+4] & 63; for j >= 4 the
 * low four bits are the nibbles of q[j+4] (scale low, min high) and the top
 * two bits are bits 6..7 of q[j-4] (scale) and q[j] (min). */
static void kq_scale_min(const uint8_t *q, int j, int *sc, int *mn)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | (q[j - 4] >> 6) << 4;
        *mn = (q[j + 4] >> 4) | (q[j] >> 6) << 4;
    }
}

/* Q4_K (144 / 256): f16 d, f16 dmin, u8 scales[12], u8 qs[128]. Eight
 * sub-blocks of 32. Element e = 64*c + 32*k + l (k < 2) is the low (k = 0)
 * or high (k = 1) nibble of qs[32*c + l], in sub-block e/32;
 * x = d*scale*q - dmin*min. */
static void dq_q4_k(const uint8_t *s, float *y, uint64_t nb)
{
    for (uint64_t b = 0; b < nb; b++, s += 144, y += 256) {
        float d = rdh(s), dmin = rdh(s + 2);
        const uint8_t *sc = s + 4, *qs = s + 16;
        for (int j = 0; j < 8; j++) {
            int scale, min;
            kq_scale_min(sc, j, &scale, &min);
            float ds = d * (float)scale, dm = dmin * (float)min;
            const uint8_t *q = qs + 32 * (j / 2);
            int shift = 4 * (j % 2);
            for (int l = 0; l < 32; l++) y[32 * j + l] = ds * (float)((q[l] >> shift) & 0xF) - dm;
        }
    }
}

/* Q5_K (176 / 256): f16 d, f16 dmin, u8 scales[12], u8 qh[32], u8 qs[128].
 * As Q4_K, plus a fifth bit for element e = 32*j + l: bit j of qh[l]. */
static void dq_q5_k(const uint8_t *s, float *y, uint64_t nb)
{
    for (uint64_t b = 0; b < nb; b++, s += 176, y += 256) {
        float d = rdh(s), dmin = rdh(s + 2);
        const uint8_t *sc = s + 4, *qh = s + 16, *qs = s + 48;
        for (int j = 0; j < 8; j++) {
            int scale, min;
            kq_scale_min(sc, j, &scale, &min);
            float ds = d * (float)scale, dm = dmin * (float)min;
            const uint8_t *q = qs + 32 * (j / 2);
            int shift = 4 * (j % 2);
            for (int l = 0; l < 32; l++) {
                int v = ((q[l] >> shift) & 0xF) | ((qh[l] >> j) & 1) << 4;
                y[32 * j + l] = ds * (float)v - dm;
            }
        }
    }
}

/* Q6_K (210 / 256): u8 ql[128], u8 qh[64], i8 scales[16], f16 d. Sixteen
 * sub-blocks of 16 with signed 8-bit scales. Element e = 128*h + 32*k + l:
 * low four bits are the low (k = 0, 1) or high (k = 2, 3) nibble of
 * ql[64*h + 32*(k%2) + l], top two bits are bits 2k..2k+1 of qh[32*h + l];
 * x = d*scale*(q-32). */
static void dq_q6_k(const uint8_t *s, float *y, uint64_t nb)
{
    for (uint64_t b = 0; b < nb; b++, s += 210, y += 256) {
        const uint8_t *ql = s, *qh = s + 128;
        const int8_t *sc = (const int8_t *)(s + 192);
        float d = rdh(s + 208);
        for (int e = 0; e < 256; e++) {
            int h = e / 128, k = (e % 128) / 32, l = e % 32;
            int lo = (ql[64 * h + 32 * (k % 2) + l] >> (4 * (k / 2))) & 0xF;
            int hi = (qh[32 * h + l] >> (2 * k)) & 3;
            y[e] = d * (float)sc[e / 16] * (float)((lo | hi << 4) - 32);
        }
    }
}

/* IQ4_NL (18 / 32): f16 d, u8 qs[16] with nibbles as Q4_0;
 * x = d*values[q] (the non-linear table above). */
static void dq_iq4_nl(const uint8_t *s, float *y, uint64_t nb)
{
    for (uint64_t b = 0; b < nb; b++, s += 18, y += 32) {
        float d = rdh(s);
        const uint8_t *qs = s + 2;
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)dequant_iq4nl_values[qs[j] & 0xF];
            y[j + 16] = d * (float)dequant_iq4nl_values[qs[j] >> 4];
        }
    }
}

/* IQ4_XS (136 / 256): f16 d, u16 scales_h, u8 scales_l[4], u8 qs[128].
 * Eight sub-blocks of 32, each laid out as one IQ4_NL block's quants
 * (qs[16*j ..]); 6-bit scale of sub-block j: low nibble of scales_l[j/2]
 * (j even) or high nibble (j odd), top two bits at bit 2j of scales_h;
 * x = d*(scale-32)*values[q]. */
static void dq_iq4_xs(const uint8_t *s, float *y, uint64_t nb)
{
    for (uint64_t b = 0; b < nb; b++, s += 136, y += 256) {
        float d = rdh(s);
        uint16_t sh = rd16(s + 2);
        const uint8_t *sl = s + 4, *qs = s + 8;
        for (int j = 0; j < 8; j++) {
            int ls = ((sl[j / 2] >> (4 * (j % 2))) & 0xF) | ((sh >> (2 * j)) & 3) << 4;
            float dl = d * (float)(ls - 32);
            const uint8_t *q = qs + 16 * j;
            float *yj = y + 32 * j;
            for (int l = 0; l < 16; l++) {
                yj[l] = dl * (float)dequant_iq4nl_values[q[l] & 0xF];
                yj[l + 16] = dl * (float)dequant_iq4nl_values[q[l] >> 4];
            }
        }
    }
}

typedef void (*dq_fn)(const uint8_t *src, float *dst, uint64_t n_blocks);

static const dq_fn dq_table[GGML_TYPE_COUNT] = {
    [GGML_TYPE_F32] = dq_f32,       [GGML_TYPE_F16] = dq_f16,
    [GGML_TYPE_BF16] = dq_bf16,     [GGML_TYPE_Q8_0] = dq_q8_0,
    [GGML_TYPE_Q4_0] = dq_q4_0,     [GGML_TYPE_Q4_1] = dq_q4_1,
    [GGML_TYPE_Q5_0] = dq_q5_0,     [GGML_TYPE_Q5_1] = dq_q5_1,
    [GGML_TYPE_Q2_K] = dq_q2_k,     [GGML_TYPE_Q3_K] = dq_q3_k,
    [GGML_TYPE_Q4_K] = dq_q4_k,     [GGML_TYPE_Q5_K] = dq_q5_k,
    [GGML_TYPE_Q6_K] = dq_q6_k,     [GGML_TYPE_IQ4_NL] = dq_iq4_nl,
    [GGML_TYPE_IQ4_XS] = dq_iq4_xs,
};

bool dequant_supported(uint32_t type)
{
    return type < GGML_TYPE_COUNT && dq_table[type] != NULL;
}

strata_status dequant_row(uint32_t type, const void *src, float *dst, uint64_t n,
                          strata_error *err)
{
    if (!dequant_supported(type))
        return err_set(err, STRATA_E_UNSUPPORTED,
                       "dequantize: no dequantizer for tensor type %s (id %" PRIu32 ")",
                       ggml_type_name(type), type);
    const ggml_type_info *t = ggml_type_get(type);
    if (n % t->block_elems != 0)
        return err_set(err, STRATA_E_INVALID,
                       "dequantize: %" PRIu64 " elements is not a multiple of the %s block size %" PRIu32,
                       n, t->name, t->block_elems);
    if (n == 0) return STRATA_OK;
    dq_table[type]((const uint8_t *)src, dst, n / t->block_elems);
    return STRATA_OK;
}
