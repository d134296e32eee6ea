#version 450
/* y[i] += x[i] for i < n */
#include "elt.glsl"
layout(push_constant) uniform PC { uvec2 y, x; uint n; } pc;
void main()
{
    uint i = elt_id();
    if (i >= pc.n) return;
    F32Ref y = F32Ref(pc.y);
    y.v[i] += F32Ref(pc.x).v[i];
}
