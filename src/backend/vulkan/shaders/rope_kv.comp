#version 450
/* RoPE of q and k in place, then k and v stored as f16 in the caches (the
 * work of rope.comp twice and kv_store.comp twice in one dispatch, with
 * their arithmetic: the same values). One invocation per work item, in
 * four ranges: q pairs (t, h, i), k pairs (t, g, i), k dims from rope_dim
 * on (t, g, d), v elements (t, g, d). A token's K and V go to slot
 * (slot0 + t) mod kv_len of [n_kv_heads][kv_len][head_dim]. */
#include "elt.glsl"
layout(push_constant) uniform PC {
    uvec2 q, k, v, cs, kc, vc;
    uint n_tok, n_heads, n_kv_heads, head_dim, rope_dim, q_stride, kv_len, slot0, neox;
} pc;

/* Rotates pair i of the head at x (rows of the token's table cs). */
void rotate(F32Ref x, F32Ref cs, uint i, out uint ia, out uint ib, out float ra, out float rb)
{
    uint half_ = pc.rope_dim / 2u;
    ia = pc.neox != 0u ? i : 2u * i;
    ib = pc.neox != 0u ? i + half_ : 2u * i + 1u;
    float a = x.v[ia], b = x.v[ib], c = cs.v[2u * i], s = cs.v[2u * i + 1u];
    precise float pa = a * c - b * s;
    precise float pb = a * s + b * c;
    ra = pa;
    rb = pb;
}

/* The cache row of token t's KV head g. */
uint cache_row(uint t, uint g) { return g * pc.kv_len + (pc.slot0 + t) % pc.kv_len; }

void main()
{
    uint id = elt_id();
    uint half_ = pc.rope_dim / 2u, kvd = pc.n_kv_heads * pc.head_dim, tail = pc.head_dim - pc.rope_dim;
    uint nq = pc.n_tok * pc.n_heads * half_, nk = pc.n_tok * pc.n_kv_heads * half_;
    uint nt = pc.n_tok * pc.n_kv_heads * tail, nv = pc.n_tok * kvd;
    uint ia, ib;
    float ra, rb;
    if (id < nq) {
        uint i = id % half_, h = (id / half_) % pc.n_heads, t = id / (half_ * pc.n_heads);
        F32Ref x = F32Ref(addr_mad(pc.q, t * pc.q_stride + h * pc.head_dim, 4u));
        rotate(x, F32Ref(addr_mad(pc.cs, t * pc.rope_dim, 4u)), i, ia, ib, ra, rb);
        x.v[ia] = ra;
        x.v[ib] = rb;
        return;
    }
    id -= nq;
    if (id < nk) {
        uint i = id % half_, g = (id / half_) % pc.n_kv_heads, t = id / (half_ * pc.n_kv_heads);
        F32Ref x = F32Ref(addr_mad(pc.k, t * kvd + g * pc.head_dim, 4u));
        rotate(x, F32Ref(addr_mad(pc.cs, t * pc.rope_dim, 4u)), i, ia, ib, ra, rb);
        x.v[ia] = ra;
        x.v[ib] = rb;
        U16Ref c = U16Ref(addr_mad(pc.kc, cache_row(t, g), pc.head_dim * 2u));
        c.v[ia] = uint16_t(f2h(ra));
        c.v[ib] = uint16_t(f2h(rb));
        return;
    }
    id -= nk;
    if (id < nt) {
        uint d = pc.rope_dim + id % tail, g = (id / tail) % pc.n_kv_heads, t = id / (tail * pc.n_kv_heads);
        U16Ref c = U16Ref(addr_mad(pc.kc, cache_row(t, g), pc.head_dim * 2u));
        c.v[d] = uint16_t(f2h(F32Ref(pc.k).v[t * kvd + g * pc.head_dim + d]));
        return;
    }
    id -= nt;
    if (id < nv) {
        uint d = id % pc.head_dim, g = (id / pc.head_dim) % pc.n_kv_heads, t = id / kvd;
        U16Ref c = U16Ref(addr_mad(pc.vc, cache_row(t, g), pc.head_dim * 2u));
        c.v[d] = uint16_t(f2h(F32Ref(pc.v).v[id]));
    }
}
