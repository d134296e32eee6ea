#version 450
/* gate[i] = silu(gate[i]) * up[i] = gate / (1 + exp(-gate)) * up */
#include "elt.glsl"
layout(push_constant) uniform PC { uvec2 gate, up; uint n; } pc;
void main()
{
    uint i = elt_id();
    if (i >= pc.n) return;
    F32Ref g = F32Ref(pc.gate);
    float x = g.v[i];
    g.v[i] = x / (1.0 + exp(-x)) * F32Ref(pc.up).v[i];
}
