#version 450
/* Q5_K (176 / 256): f16 d, f16 dmin, u8 scales[12], u8 qh[32], u8 qs[128].
 * As Q4_K, plus a fifth bit for element 32j + l: bit j of qh[l]. Unit
 * u = 4c + g covers l = 8g .. 8g+7 of sub-blocks 2c and 2c+1. */
#define BLOCK_ELEMS 256u
#define BLOCK_BYTES 176u
#define UNITS 16u
#define S 8
#include "common.glsl"
#include "mm_blocks.glsl"
void dq_unit(uvec2 blk, uint u, out float a[S], out float b[S], out uint oa, out uint ob)
{
    uint c = u >> 2, g = u & 3u;
    float d = h2f(wd(blk, 0u)), dmin = h2f(wd(blk, 1u));
    uint sc0, mn0, sc1, mn1;
    kq_scale_min(blk, 2u * c, sc0, mn0);
    kq_scale_min(blk, 2u * c + 1u, sc1, mn1);
    float ds0 = d * float(sc0), dm0 = dmin * float(mn0);
    float ds1 = d * float(sc1), dm1 = dmin * float(mn1);
    uint qw = 24u + 16u * c + 4u * g; /* qs[32c + 8g] */
    uint hw = 8u + 4u * g;            /* qh[8g] */
    uint q[2] = uint[2](wd2(blk, qw), wd2(blk, qw + 2u));
    uint h[2] = uint[2](wd2(blk, hw), wd2(blk, hw + 2u));
    for (uint i = 0u; i < 8u; i++) {
        uint v = byte_of(q[i >> 2], i & 3u), hb = byte_of(h[i >> 2], i & 3u);
        uint lo = (v & 0xfu) | (((hb >> (2u * c)) & 1u) << 4);
        uint hi = (v >> 4) | (((hb >> (2u * c + 1u)) & 1u) << 4);
        precise float va = ds0 * float(lo) - dm0;
        precise float vb = ds1 * float(hi) - dm1;
        a[i] = va;
        b[i] = vb;
    }
    oa = 64u * c + 8u * g;
    ob = oa + 32u;
}
/* The elements unit u covers (as dq_unit's oa, ob). */
void unit_spans(uint u, out uint oa, out uint ob)
{
    oa = 64u * (u >> 2) + 8u * (u & 3u);
    ob = oa + 32u;
}
#include "mm_main.glsl"
