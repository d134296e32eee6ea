#version 450
/* Q4_K (144 / 256): f16 d, f16 dmin, u8 scales[12], u8 qs[128]. Element
 * 64c + 32k + l is the low (k = 0) or high (k = 1) nibble of qs[32c + l],
 * in sub-block 2c + k; x = d*scale*q - dmin*min (d*scale and dmin*min
 * first, not fused, as the CPU). Unit u = 4c + g covers l = 8g .. 8g+7. */
#define BLOCK_ELEMS 256u
#define BLOCK_BYTES 144u
#define UNITS 16u
#define S 8
#include "common.glsl"
#include "mm_blocks.glsl"
#include "mm_dec.glsl"
void dq_unit(uvec2 blk, uint u, out float a[S], out float b[S], out uint oa, out uint ob)
{
    uint c = u >> 2, g = u & 3u;
    float d = h2f(wd(blk, 0u)), dmin = h2f(wd(blk, 1u));
    uint sc0, mn0, sc1, mn1;
    kq_scale_min(blk, 2u * c, sc0, mn0);
    kq_scale_min(blk, 2u * c + 1u, sc1, mn1);
    float ds0 = d * float(sc0), dm0 = dmin * float(mn0);
    float ds1 = d * float(sc1), dm1 = dmin * float(mn1);
    uint qw = 8u + 16u * c + 4u * g; /* qs[32c + 8g] as a word index */
    uint q[2] = uint[2](wd2(blk, qw), wd2(blk, qw + 2u));
    for (uint i = 0u; i < 8u; i++) {
        uint v = byte_of(q[i >> 2], i & 3u);
        precise float va = ds0 * float(v & 0xfu) - dm0;
        precise float vb = ds1 * float(v >> 4) - dm1;
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

/* Decode: 8 units of a block, u = 2c + h: qs[32c + 16h .. +16] (one
 * 16-byte load; 8 invocations read a block's 128 bytes of qs adjacent) and
 * the 16-byte header d, dmin, scales (one broadcast load); x as two spans
 * of four vec4 (elements 64c + 16h.., sub-block 2c, and 32 on, 2c + 1)
 * with their sums, so a row's part is ds * sum(q x) - dm * sum(x) per
 * sub-block: 32 products, no per-element scale. */
#define DEC_UNITS 8u
#define DEC_SPAN_B 32u

uint dec_oa(uint u) { return 64u * (u >> 1) + 16u * (u & 1u); }

float dec_dot(uvec2 blk, uint u, XV xv)
{
    uint c = u >> 1;
    uvec4 h = U4Ref(blk).v[0];                               /* d | dmin << 16, scales[0..11] */
    uvec4 q = U4Ref(addr_add(blk, 16u + 32u * c + 16u * (u & 1u))).v[0];
    float d = h2f(h.x & 0xffffu), dmin = h2f(h.x >> 16);
    /* sub-blocks j = 2c, 2c + 1 (kq_scale_min): scales[j'] at byte j' of
     * h.y (j' < 4), h.z (4..7), h.w (8..11) */
    uint sh = 16u * (c & 1u);
    uint by = h.y >> sh, bz = h.z >> sh, bw = h.w >> sh; /* bytes j & 3 and (j & 3) + 1 from bit 0 */
    uint sc0, mn0, sc1, mn1;
    if (c < 2u) {
        sc0 = by & 63u;
        mn0 = bz & 63u;
        sc1 = (by >> 8) & 63u;
        mn1 = (bz >> 8) & 63u;
    } else {
        sc0 = (bw & 0xfu) | (((by >> 6) & 3u) << 4);
        mn0 = ((bw >> 4) & 0xfu) | (((bz >> 6) & 3u) << 4);
        sc1 = ((bw >> 8) & 0xfu) | (((by >> 14) & 3u) << 4);
        mn1 = ((bw >> 12) & 0xfu) | (((bz >> 14) & 3u) << 4);
    }
    float ds0 = d * float(sc0), dm0 = dmin * float(mn0);
    float ds1 = d * float(sc1), dm1 = dmin * float(mn1);
    float sa = 0.0, sb = 0.0;
    [[unroll]] for (uint i = 0u; i < 4u; i++) {
        sa += dot(bytes4(q[i] & 0x0f0f0f0fu), xv.a[i]);
        sb += dot(bytes4((q[i] >> 4) & 0x0f0f0f0fu), xv.b[i]);
    }
    return (ds0 * sa - dm0 * xv.sa) + (ds1 * sb - dm1 * xv.sb);
}
#include "mm_main.glsl"
