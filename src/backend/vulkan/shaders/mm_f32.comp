#version 450
/* F32 weights: virtual blocks of 8 floats, one unit each. */
#define BLOCK_ELEMS 8u
#define BLOCK_BYTES 32u
#define UNITS 1u
#define S 4
#include "common.glsl"
void dq_unit(uvec2 blk, uint u, out float a[S], out float b[S], out uint oa, out uint ob)
{
    F32Ref w = F32Ref(blk);
    for (uint i = 0u; i < S; i++) {
        a[i] = w.v[i];
        b[i] = w.v[4u + i];
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
