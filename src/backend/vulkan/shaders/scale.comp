#version 450
/* x[i] *= s for i < n */
#include "elt.glsl"
layout(push_constant) uniform PC { uvec2 x; uint n; float s; } pc;
void main()
{
    uint i = elt_id();
    if (i >= pc.n) return;
    F32Ref x = F32Ref(pc.x);
    x.v[i] *= pc.s;
}
