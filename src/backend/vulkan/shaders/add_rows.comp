#version 450
/* y[r][i] += b[i] for n_rows rows of n (i over n * n_rows) */
#include "elt.glsl"
layout(push_constant) uniform PC { uvec2 y, b; uint n, total; } pc;
void main()
{
    uint i = elt_id();
    if (i >= pc.total) return;
    F32Ref y = F32Ref(pc.y);
    y.v[i] += F32Ref(pc.b).v[i % pc.n];
}
