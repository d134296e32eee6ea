#version 450
/* Q5_1 (24 / 32): f16 d, f16 m, u32 qh, u8 qs[16] (bits as Q5_0);
 * x = d*q + m (not fused). */
#define BLOCK_ELEMS 32u
#define BLOCK_BYTES 24u
#define UNITS 4u
#define S 4
#include "common.glsl"
#include "mm_blocks.glsl"
void dq_unit(uvec2 blk, uint u, out float a[S], out float b[S], out uint oa, out uint ob)
{
    float d = h2f(wd(blk, 0u)), m = h2f(wd(blk, 1u));
    uint qh = wd2(blk, 2u);
    uint q = wd2(blk, 4u + 2u * u);
    oa = 4u * u;
    ob = 16u + 4u * u;
    for (uint i = 0u; i < S; i++) {
        uint lo = (byte_of(q, i) & 0xfu) | (((qh >> (oa + i)) & 1u) << 4);
        uint hi = (byte_of(q, i) >> 4) | (((qh >> (ob + i)) & 1u) << 4);
        precise float va = d * float(lo) + m;
        precise float vb = d * float(hi) + m;
        a[i] = va;
        b[i] = vb;
    }
}
/* The elements unit u covers (as dq_unit's oa, ob). */
void unit_spans(uint u, out uint oa, out uint ob)
{
    oa = 4u * u;
    ob = 16u + 4u * u;
}
#include "mm_main.glsl"
