#version 450
/* BF16 weights: the upper 16 bits of a float; virtual blocks of 8. */
#define BLOCK_ELEMS 8u
#define BLOCK_BYTES 16u
#define UNITS 1u
#define S 4
#include "common.glsl"
#include "mm_blocks.glsl"
void dq_unit(uvec2 blk, uint u, out float a[S], out float b[S], out uint oa, out uint ob)
{
    for (uint i = 0u; i < S; i++) {
        a[i] = uintBitsToFloat(wd(blk, i) << 16);
        b[i] = uintBitsToFloat(wd(blk, 4u + i) << 16);
    }
    oa = 0u;
    ob = 4u;
}
/* The elements unit u covers (as dq_unit's oa, ob). */
void unit_spans(uint u, out uint oa, out uint ob)
{
    oa = 0u;
    ob = 4u;
}
#include "mm_main.glsl"
