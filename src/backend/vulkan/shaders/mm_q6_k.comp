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
#include "mm_main.glsl"
