#version 450
/* Mixture of experts: the rows routed to the experts, gathered in expert
 * order: dst[p][i] = src[rows[p]][i] for rows of n floats (i over n *
 * n_rows; rows: uint32 token indices). */
#include "elt.glsl"
layout(buffer_reference, std430, buffer_reference_align = 4) buffer U32Ref { uint v[]; };
layout(push_constant) uniform PC { uvec2 dst, src, rows; uint n, total; } pc;
void main()
{
    uint i = elt_id();
    if (i >= pc.total) return;
    uint p = i / pc.n, c = i - p * pc.n;
    F32Ref(pc.dst).v[i] = F32Ref(pc.src).v[U32Ref(pc.rows).v[p] * pc.n + c];
}
