#version 450
/* Q8_0 (34 bytes / 32): f16 d, i8 q[32]; x = d*q. Unit u (< 4) is
 * elements 8u .. 8u+7 (bytes 2+8u ..). */
#define BLOCK_ELEMS 32u
#define BLOCK_BYTES 34u
#define UNITS 4u
#define S 4
#include "common.glsl"
#include "mm_blocks.glsl"
void dq_unit(uvec2 blk, uint u, out float a[S], out float b[S], out uint oa, out uint ob)
{
    float d = h2f(wd(blk, 0u));
    int q0 = int(wd2(blk, 1u + 4u * u)), q1 = int(wd2(blk, 3u + 4u * u));
    for (int i = 0; i < S; i++) {
        a[i] = d * float(bitfieldExtract(q0, 8 * i, 8));
        b[i] = d * float(bitfieldExtract(q1, 8 * i, 8));
    }
    oa = 8u * u;
    ob = 8u * u + 4u;
}
/* The elements unit u covers (as dq_unit's oa, ob). */
void unit_spans(uint u, out uint oa, out uint ob)
{
    oa = 8u * u;
    ob = 8u * u + 4u;
}
#include "mm_main.glsl"
