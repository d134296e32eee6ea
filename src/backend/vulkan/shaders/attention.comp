#version 450
/* Causal grouped-query attention, one workgroup per (token t, query head h)
 * with a streaming softmax: keys first..pos are taken in tiles of WG_SIZE;
 * invocation j scores key k0 + j (q . K row, f32 over f16 K), the tile's
 * max and sum update the running max m and denominator l, and invocation
 * j then accumulates output dims j, j + WG_SIZE, ... over the tile's V rows
 * (neighbours read neighbouring halves), rescaled by exp(m_old - m_new).
 * No scratch memory beyond shared; head_dim <= MAX_HD (checked on the host). */
#define WG_SIZE 128u
#define MAX_HD 512u
#define DPI (MAX_HD / WG_SIZE) /* output dims per invocation */
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"
#include "reduce.glsl"
layout(local_size_x = 128) in;
layout(push_constant) uniform PC {
    uvec2 q, k, v, o;
    uint n_tok, n_heads, n_kv_heads, head_dim, kv_len, pos0, n_swa, slot_base;
    float scale;
} pc;

shared float q_s[MAX_HD]; /* the query row */
shared float p_s[WG_SIZE]; /* exp(score - m) of the tile's keys */

/* Loads are issued 8 at a time before they are used: a loop that uses
 * each load at once waits a memory latency per element. */
float score(uint kv_row)
{
    U16Ref kr = U16Ref(addr_mad(pc.k, kv_row, pc.head_dim * 2u));
    float s = 0.0, k[8];
    uint d = 0u;
    for (; d + 8u <= pc.head_dim; d += 8u) {
        [[unroll]] for (uint i = 0u; i < 8u; i++) k[i] = h2f(uint(kr.v[d + i]));
        [[unroll]] for (uint i = 0u; i < 8u; i++) s += q_s[d + i] * k[i];
    }
    for (; d < pc.head_dim; d++) s += q_s[d] * h2f(uint(kr.v[d]));
    return s * pc.scale;
}

/* sum over the tile's nk keys of p_s[kk] * V[row k0 + kk][d] */
float mix_v(uint row, uint nk, uint d)
{
    float a = 0.0, vv[8];
    uint kk = 0u;
    for (; kk + 8u <= nk; kk += 8u) {
        [[unroll]] for (uint i = 0u; i < 8u; i++)
            vv[i] = h2f(uint(U16Ref(addr_mad(pc.v, row + kk + i, pc.head_dim * 2u)).v[d]));
        [[unroll]] for (uint i = 0u; i < 8u; i++) a += p_s[kk + i] * vv[i];
    }
    for (; kk < nk; kk++) a += p_s[kk] * h2f(uint(U16Ref(addr_mad(pc.v, row + kk, pc.head_dim * 2u)).v[d]));
    return a;
}

void main()
{
    uint id = group_id();
    if (id >= pc.n_tok * pc.n_heads) return;
    uint t = id / pc.n_heads, h = id % pc.n_heads, lid = gl_LocalInvocationIndex;
    uint g = h / (pc.n_heads / pc.n_kv_heads);
    uint pos = pc.pos0 + t;
    uint first = (pc.n_swa > 0u && pos + 1u > pc.n_swa) ? pos + 1u - pc.n_swa : 0u;
    uint row0 = g * pc.kv_len - pc.slot_base; /* cache row of position p: row0 + p */
    F32Ref q = F32Ref(addr_mad(pc.q, id, pc.head_dim * 4u));
    for (uint d = lid; d < pc.head_dim; d += WG_SIZE) q_s[d] = q.v[d];
    barrier();

    float m = uintBitsToFloat(0xff800000u), l = 0.0; /* running max (-inf), sum */
    float acc[DPI];
    [[unroll]] for (uint j = 0u; j < DPI; j++) acc[j] = 0.0;
    for (uint k0 = first; k0 <= pos; k0 += WG_SIZE) {
        uint kp = k0 + lid;
        float s = kp <= pos ? score(row0 + kp) : uintBitsToFloat(0xff800000u);
        float m_new = max(m, wg_max(s)); /* finite: key k0 is always valid */
        float p = kp <= pos ? exp(s - m_new) : 0.0;
        p_s[lid] = p;
        float alpha = exp(m - m_new);
        l = l * alpha + wg_sum(p); /* wg_sum's barrier also publishes p_s */
        m = m_new;
        uint nk = min(WG_SIZE, pos + 1u - k0);
        [[unroll]] for (uint j = 0u; j < DPI; j++) {
            uint d = lid + j * WG_SIZE;
            if (d < pc.head_dim) acc[j] = acc[j] * alpha + mix_v(row0 + k0, nk, d);
        }
        barrier(); /* p_s is rewritten by the next tile */
    }
    F32Ref o = F32Ref(addr_mad(pc.o, id, pc.head_dim * 4u));
    [[unroll]] for (uint j = 0u; j < DPI; j++) {
        uint d = lid + j * WG_SIZE;
        if (d < pc.head_dim) o.v[d] = acc[j] / l;
    }
}
