#version 450
/* One invocation per element (t, g, d) of src [n_tok][n_kv_heads][head_dim]
 * (f32): stored as f16 (round to nearest even) at cache
 * [n_kv_heads][kv_len][head_dim], slot (slot0 + t) mod kv_len. */
#include "elt.glsl"
layout(push_constant) uniform PC {
    uvec2 src, cache;
    uint n_tok, n_kv_heads, head_dim, kv_len, slot0;
} pc;
void main()
{
    uint id = elt_id();
    if (id >= pc.n_tok * pc.n_kv_heads * pc.head_dim) return;
    uint d = id % pc.head_dim, g = (id / pc.head_dim) % pc.n_kv_heads;
    uint t = id / (pc.head_dim * pc.n_kv_heads);
    uint row = g * pc.kv_len + (pc.slot0 + t) % pc.kv_len;
    U16Ref c = U16Ref(addr_mad(pc.cache, row, pc.head_dim * 2u));
    c.v[d] = uint16_t(f2h(F32Ref(pc.src).v[id]));
}
