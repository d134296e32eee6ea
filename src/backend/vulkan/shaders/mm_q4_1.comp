#version 450
/* Q4_1 (20 / 32): f16 d, f16 m, u8 qs[16] (nibbles as Q4_0); x = d*q + m
 * (not fused, as the CPU computes it). */
#define BLOCK_ELEMS 32u
#define BLOCK_BYTES 20u
#define UNITS 4u
#define S 4
#include "common.glsl"
#include "mm_blocks.glsl"
void dq_unit(uvec2 blk, uint u, out float a[S], out float b[S], out uint oa, out uint ob)
{
    float d = h2f(wd(blk, 0u)), m = h2f(wd(blk, 1u));
    uint q = wd2(blk, 2u + 2u * u);
    for (uint i = 0u; i < S; i++) {
        precise float va = d * float(byte_of(q, i) & 0xfu) + m;
        precise float vb = d * float(byte_of(q, i) >> 4) + m;
        a[i] = va;
        b[i] = vb;
    }
    oa = 4u * u;
    ob = 16u + 4u * u;
}
/* The elements unit u covers (as dq_unit's oa, ob). */
void unit_spans(uint u, out uint oa, out uint ob)
{
    oa = 4u * u;
    ob = 16u + 4u * u;
}
#include "mm_main.glsl"
