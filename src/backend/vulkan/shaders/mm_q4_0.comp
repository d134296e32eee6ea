#version 450
/* Q4_0 (18 / 32): f16 d, u8 qs[16]; element j (< 16) is the low nibble of
 * qs[j], element j+16 the high nibble; x = d*(q-8). Unit u (< 4) is
 * qs[4u .. 4u+3]: elements 4u.. (low) and 16+4u.. (high). */
#define BLOCK_ELEMS 32u
#define BLOCK_BYTES 18u
#define UNITS 4u
#define S 4
#include "common.glsl"
#include "mm_blocks.glsl"
void dq_unit(uvec2 blk, uint u, out float a[S], out float b[S], out uint oa, out uint ob)
{
    float d = h2f(wd(blk, 0u));
    uint q = wd2(blk, 1u + 2u * u);
    for (uint i = 0u; i < S; i++) {
        a[i] = d * float(int(byte_of(q, i) & 0xfu) - 8);
        b[i] = d * float(int(byte_of(q, i) >> 4) - 8);
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
