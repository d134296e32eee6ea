#version 450
/* Causal grouped-query attention, one workgroup per (token t, query head h)
 * over a ring of kv_len slots (position p at slot (p - slot_base) mod
 * kv_len), with a streaming softmax: keys first..pos are taken in tiles of WG_SIZE;
 * invocation j scores key k0 + j (q . K row, f32 over f16 K), the tile's
 * max and sum update the running max m and denominator l, and invocation
 * j then accumulates output dims j, j + WG_SIZE, ... over the tile's V rows
 * (neighbours read neighbouring halves), rescaled by exp(m_old - m_new).
 * With head_dim a multiple of 8 (the wide path) K and V rows are read as
 * 16-byte words, several in flight, and the V mix is split over key slices
 * (mix_wide): a decode step waits for few memory round trips.
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
shared float mix_s[8u * WG_SIZE]; /* wide path: [key slice][head_dim] partial V mixes */

layout(buffer_reference, std430, buffer_reference_align = 16) buffer U4Ref { uvec4 v[]; };

/* Eight halves of a 16-byte word, times eight floats, summed. */
float dot8(uvec4 w, uint d)
{
    float s = 0.0;
    [[unroll]] for (uint i = 0u; i < 4u; i++)
        s += q_s[d + 2u * i] * h2f(w[i] & 0xffffu) + q_s[d + 2u * i + 1u] * h2f(w[i] >> 16);
    return s;
}

/* The wide path (head_dim a multiple of 8, rows 16-byte aligned): a K row
 * as 16-byte words, eight in flight. */
float score_wide(uint kv_row)
{
    uvec2 base = addr_mad(pc.k, kv_row, pc.head_dim * 2u);
    uint n = pc.head_dim / 8u;
    float s = 0.0;
    for (uint w0 = 0u; w0 < n; w0 += 8u) {
        uvec4 w[8];
        [[unroll]] for (uint i = 0u; i < 8u; i++) w[i] = U4Ref(base).v[min(w0 + i, n - 1u)];
        [[unroll]] for (uint i = 0u; i < 8u; i++)
            if (w0 + i < n) s += dot8(w[i], 8u * (w0 + i));
    }
    return s * pc.scale;
}

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

/* A slot of the ring, s < 2 kv_len, brought below kv_len. */
uint wrap(uint s) { return s >= pc.kv_len ? s - pc.kv_len : s; }

/* sum over the tile's nk keys of p_s[kk] * V[row gbase + slot s0 + kk][d] */
float mix_v(uint gbase, uint s0, uint nk, uint d)
{
    float a = 0.0, vv[8];
    uint kk = 0u;
    for (; kk + 8u <= nk; kk += 8u) {
        [[unroll]] for (uint i = 0u; i < 8u; i++)
            vv[i] = h2f(uint(U16Ref(addr_mad(pc.v, gbase + wrap(s0 + kk + i), pc.head_dim * 2u)).v[d]));
        [[unroll]] for (uint i = 0u; i < 8u; i++) a += p_s[kk + i] * vv[i];
    }
    for (; kk < nk; kk++)
        a += p_s[kk] * h2f(uint(U16Ref(addr_mad(pc.v, gbase + wrap(s0 + kk), pc.head_dim * 2u)).v[d]));
    return a;
}

/* The wide path's V mix of the tile's nk keys for every output dim:
 * invocation (slice ks, dim group dg) adds keys ks, ks + n_slices, ... of
 * dims 8 dg .. 8 dg + 7 (16-byte loads, four in flight), the slices are
 * summed through shared memory; dim d's sum is mix_s[d] on return. */
void mix_wide(uint gbase, uint s0, uint nk, uint lid)
{
    uint n_dg = pc.head_dim / 8u, n_slices = min(WG_SIZE / n_dg, 8u);
    if (lid < n_dg * n_slices) {
        uint dg = lid % n_dg, ks = lid / n_dg;
        float a[8];
        [[unroll]] for (uint i = 0u; i < 8u; i++) a[i] = 0.0;
        for (uint k0 = ks; k0 < nk; k0 += 4u * n_slices) {
            uvec4 w[4];
            [[unroll]] for (uint j = 0u; j < 4u; j++) {
                uint kk = min(k0 + j * n_slices, nk - 1u);
                w[j] = U4Ref(addr_mad(pc.v, gbase + wrap(s0 + kk), pc.head_dim * 2u)).v[dg];
            }
            [[unroll]] for (uint j = 0u; j < 4u; j++) {
                uint kk = k0 + j * n_slices;
                float p = kk < nk ? p_s[kk] : 0.0;
                [[unroll]] for (uint i = 0u; i < 4u; i++) {
                    a[2u * i] += p * h2f(w[j][i] & 0xffffu);
                    a[2u * i + 1u] += p * h2f(w[j][i] >> 16);
                }
            }
        }
        [[unroll]] for (uint i = 0u; i < 8u; i++) mix_s[ks * pc.head_dim + 8u * dg + i] = a[i];
    }
    barrier();
    for (uint d = lid; d < pc.head_dim; d += WG_SIZE) {
        float t = mix_s[d];
        for (uint k = 1u; k < n_slices; k++) t += mix_s[k * pc.head_dim + d];
        mix_s[d] = t; /* only invocation d reads and writes column d */
    }
    barrier();
}

void main()
{
    uint id = group_id();
    if (id >= pc.n_tok * pc.n_heads) return;
    uint t = id / pc.n_heads, h = id % pc.n_heads, lid = gl_LocalInvocationIndex;
    uint g = h / (pc.n_heads / pc.n_kv_heads);
    uint pos = pc.pos0 + t;
    uint first = (pc.n_swa > 0u && pos + 1u > pc.n_swa) ? pos + 1u - pc.n_swa : 0u;
    uint gbase = g * pc.kv_len; /* position p is at row gbase + (p - slot_base) mod kv_len */
    F32Ref q = F32Ref(addr_mad(pc.q, id, pc.head_dim * 4u));
    for (uint d = lid; d < pc.head_dim; d += WG_SIZE) q_s[d] = q.v[d];
    barrier();

    float m = uintBitsToFloat(0xff800000u), l = 0.0; /* running max (-inf), sum */
    float acc[DPI];
    [[unroll]] for (uint j = 0u; j < DPI; j++) acc[j] = 0.0;
    /* 16-byte words: head_dim a multiple of 8 and the caches 16-byte aligned */
    bool wide = pc.head_dim % 8u == 0u && ((pc.k.x | pc.v.x) & 15u) == 0u;
    for (uint k0 = first; k0 <= pos; k0 += WG_SIZE) {
        uint kp = k0 + lid;
        uint s0 = (k0 - pc.slot_base) % pc.kv_len; /* the tile's keys: at most kv_len, so s0 + kk < 2 kv_len */
        float s = uintBitsToFloat(0xff800000u);
        if (kp <= pos) s = wide ? score_wide(gbase + wrap(s0 + lid)) : score(gbase + wrap(s0 + lid));
        float m_new = max(m, wg_max(s)); /* finite: key k0 is always valid */
        float p = kp <= pos ? exp(s - m_new) : 0.0;
        p_s[lid] = p;
        float alpha = exp(m - m_new);
        l = l * alpha + wg_sum(p); /* wg_sum's barrier also publishes p_s */
        m = m_new;
        uint nk = min(WG_SIZE, pos + 1u - k0);
        if (wide) {
            mix_wide(gbase, s0, nk, lid);
            [[unroll]] for (uint j = 0u; j < DPI; j++) {
                uint d = lid + j * WG_SIZE;
                if (d < pc.head_dim) acc[j] = acc[j] * alpha + mix_s[d];
            }
        } else {
            [[unroll]] for (uint j = 0u; j < DPI; j++) {
                uint d = lid + j * WG_SIZE;
                if (d < pc.head_dim) acc[j] = acc[j] * alpha + mix_v(gbase, s0, nk, d);
            }
        }
        barrier(); /* p_s and mix_s are rewritten by the next tile */
    }
    F32Ref o = F32Ref(addr_mad(pc.o, id, pc.head_dim * 4u));
    [[unroll]] for (uint j = 0u; j < DPI; j++) {
        uint d = lid + j * WG_SIZE;
        if (d < pc.head_dim) o.v[d] = acc[j] / l;
    }
}
