#version 450
/* gate[i] = gelu(gate[i]) * up[i] as the CPU's geglu_f16: x <= -10 -> 0,
 * x >= 10 -> x, else the f16 table entry of f16(x). The table (65536 f16
 * values, built on the host by the same gelu_tanh as the CPU's) makes the
 * result bit for bit the CPU's: a device tanh would differ in the last
 * bits and flip some f16 roundings. */
#include "elt.glsl"
layout(push_constant) uniform PC { uvec2 gate, up, table; uint n; } pc;
void main()
{
    uint i = elt_id();
    if (i >= pc.n) return;
    F32Ref g = F32Ref(pc.gate);
    float x = g.v[i], a;
    if (x <= -10.0) a = 0.0;
    else if (x >= 10.0) a = x;
    else a = h2f(uint(U16Ref(pc.table).v[f2h(x)]));
    g.v[i] = a * F32Ref(pc.up).v[i];
}
