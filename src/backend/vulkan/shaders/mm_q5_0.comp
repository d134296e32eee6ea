#version 450
/* Q5_0 (22 / 32): f16 d, u32 qh, u8 qs[16]; low four bits as Q4_0, the
 * fifth bit of element j is bit j of qh; x = d*(q-16). */
#define BLOCK_ELEMS 32u
#define BLOCK_BYTES 22u
#define UNITS 4u
#define S 4
#include "common.glsl"
#include "mm_blocks.glsl"
void dq_unit(uvec2 blk, uint u, out float a[S], out float b[S], out uint oa, out uint ob)
{
    float d = h2f(wd(blk, 0u));
    uint qh = wd2(blk, 1u);
    uint q = wd2(blk, 3u + 2u * u);
    oa = 4u * u;
    ob = 16u + 4u * u;
    for (uint i = 0u; i < S; i++) {
        uint lo = (byte_of(q, i) & 0xfu) | (((qh >> (oa + i)) & 1u) << 4);
        uint hi = (byte_of(q, i) >> 4) | (((qh >> (ob + i)) & 1u) << 4);
        a[i] = d * float(int(lo) - 16);
        b[i] = d * float(int(hi) - 16);
    }
}
/* The elements unit u covers (as dq_unit's oa, ob). */
void unit_spans(uint u, out uint oa, out uint ob)
{
    oa = 4u * u;
    ob = 16u + 4u * u;
}
#include "mm_main.glsl"
