#version 450
/* Rotary embedding, one invocation per (token t, head h, pair i): pair i
 * is (2i, 2i+1), or (i, i + rope_dim/2) with neox; cs[t][2i], cs[t][2i+1]
 * are its cos and sin. a' = a*c - b*s, b' = a*s + b*c, unfused as the
 * CPU's op_rope. */
#include "elt.glsl"
layout(push_constant) uniform PC {
    uvec2 x, cs;
    uint n_tok, n_heads, head_dim, rope_dim, row_stride, neox;
} pc;
void main()
{
    uint half_ = pc.rope_dim / 2u;
    uint id = elt_id();
    if (id >= pc.n_tok * pc.n_heads * half_) return;
    uint i = id % half_, h = (id / half_) % pc.n_heads, t = id / (half_ * pc.n_heads);
    F32Ref x = F32Ref(addr_mad(pc.x, t * pc.row_stride + h * pc.head_dim, 4u));
    F32Ref cs = F32Ref(addr_mad(pc.cs, t * pc.rope_dim, 4u));
    uint ia = pc.neox != 0u ? i : 2u * i, ib = pc.neox != 0u ? i + half_ : 2u * i + 1u;
    float a = x.v[ia], b = x.v[ib], c = cs.v[2u * i], s = cs.v[2u * i + 1u];
    precise float ra = a * c - b * s;
    precise float rb = a * s + b * c;
    x.v[ia] = ra;
    x.v[ib] = rb;
}
