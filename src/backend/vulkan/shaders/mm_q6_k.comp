#version 450
/* Q6_K (210 / 256): u8 ql[128], u8 qh[64], i8 scales[16], f16 d. Element
 * 128h + 32k + l: low four bits are the low (k < 2) or high (k >= 2) nibble
 * of ql[64h + 32(k%2) + l], top two bits are bits 2k of qh[32h + l];
 * x = d*scale*(q-32), multiplied left to right as the CPU. Unit
 * u = 8h + 4j + g (j = k % 2) covers l = 8g .. 8g+7 for k = j (span a) and
 * k = j + 2 (span b, 64 elements on). */
#define BLOCK_ELEMS 256u
#define BLOCK_BYTES 210u
#define UNITS 16u
#define S 8
#include "common.glsl"
#include "mm_blocks.glsl"
void dq_unit(uvec2 blk, uint u, out float a[S], out float b[S], out uint oa, out uint ob)
{
    uint h = u >> 3, j = (u >> 2) & 1u, g = u & 3u;
    float d = h2f(wd(blk, 104u));
    oa = 128u * h + 32u * j + 8u * g;
    ob = oa + 64u;
    float sa = float(bitfieldExtract(int(byte_at(blk, 192u + oa / 16u)), 0, 8));
    float sb = float(bitfieldExtract(int(byte_at(blk, 192u + ob / 16u)), 0, 8));
    uint lw = 32u * h + 16u * j + 4u * g; /* ql[64h + 32j + 8g] */
    uint hw = 64u + 16u * h + 4u * g;     /* qh[32h + 8g] */
    uint ql[2] = uint[2](wd2(blk, lw), wd2(blk, lw + 2u));
    uint qh[2] = uint[2](wd2(blk, hw), wd2(blk, hw + 2u));
    for (uint i = 0u; i < 8u; i++) {
        uint l = byte_of(ql[i >> 2], i & 3u), hb = byte_of(qh[i >> 2], i & 3u);
        int qa = int((l & 0xfu) | (((hb >> (2u * j)) & 3u) << 4)) - 32;
        int qb = int((l >> 4) | (((hb >> (2u * j + 4u)) & 3u) << 4)) - 32;
        precise float va = d * sa * float(qa);
        precise float vb = d * sb * float(qb);
        a[i] = va;
        b[i] = vb;
    }
}

/* The elements unit u covers (as dq_unit's oa, ob). */
void unit_spans(uint u, out uint oa, out uint ob)
{
    oa = 128u * (u >> 3) + 32u * ((u >> 2) & 1u) + 8u * (u & 3u);
    ob = oa + 64u;
}

/* Decode: dq_unit's unit u = 8h + 4j + g: ql[64h + 32j + 8g .. +8] and
 * qh[32h + 8g .. +8] as 16-bit words (blocks are only 2-byte aligned),
 * elements oa = 128h + 32j + 8g .. +8 (k = j) and oa + 64 .. (k = j + 2),
 * one scale each; x as two spans of two vec4 with their sums: a span's
 * part is d * sc * (sum(q x) - 32 sum(x)). (Units of 32 elements measured
 * slower on an H200.) */
#define DEC_UNITS 16u
#define DEC_SPAN 8u
#define DEC_SPAN_B 64u
#include "mm_dec.glsl"

uint dec_oa(uint u) { return 128u * (u >> 3) + 32u * ((u >> 2) & 1u) + 8u * (u & 3u); }

float dec_dot(uvec2 blk, uint u, XV xv)
{
    uint h = u >> 3, j = (u >> 2) & 1u, g = u & 3u;
    uint oa = dec_oa(u);
    uint lw = 32u * h + 16u * j + 4u * g; /* ql[64h + 32j + 8g] as a word index */
    uint hw = 64u + 16u * h + 4u * g;     /* qh[32h + 8g] */
    uint l[2], hb[2];
    [[unroll]] for (uint i = 0u; i < 2u; i++) {
        l[i] = wd2(blk, lw + 2u * i);
        hb[i] = wd2(blk, hw + 2u * i);
    }
    /* scales[oa / 16] and scales[oa / 16 + 4]: the same byte of words two apart */
    uint sw = 96u + (oa >> 5), sbyte = 8u * ((oa >> 4) & 1u);
    int sa = bitfieldExtract(int(wd(blk, sw)), int(sbyte), 8);
    int sb = bitfieldExtract(int(wd(blk, sw + 2u)), int(sbyte), 8);
    float d = h2f(wd(blk, 104u));
    uint ka = 2u * j, kb = 2u * j + 4u; /* the qh bit pairs of spans a (k = j) and b (k = j + 2) */
    float pa = -32.0 * xv.sa, pb = -32.0 * xv.sb;
    [[unroll]] for (uint i = 0u; i < 2u; i++) {
        uint qa = (l[i] & 0x0f0f0f0fu) | (((hb[i] >> ka) & 0x03030303u) << 4);
        uint qb = ((l[i] >> 4) & 0x0f0f0f0fu) | (((hb[i] >> kb) & 0x03030303u) << 4);
        pa += dot(bytes4(qa), xv.a[i]);
        pb += dot(bytes4(qb), xv.b[i]);
    }
    return d * (float(sa) * pa + float(sb) * pb);
}
#include "mm_main.glsl"
