#version 450
/* Mixture of experts: each token's weighted sum of its k experts' outputs,
 * in the order of its entries (the host lists them by expert id, as the
 * CPU adds them), then its shared expert's output scaled by
 * sigmoid(gate[t]) when gated:
 *   out[t][i] = sum_j wt[t k + j] * y[pos[t k + j]][i] (+ s_t * shared[t][i])
 * for rows of n floats (i over n * n_tok). shared, gate: 0 when absent;
 * out must not overlap y or shared. */
#include "elt.glsl"
layout(buffer_reference, std430, buffer_reference_align = 4) buffer U32Ref { uint v[]; };
layout(push_constant) uniform PC { uvec2 out_, y, pos, wt, shared_, gate; uint n, k, total; } pc;
void main()
{
    uint i = elt_id();
    if (i >= pc.total) return;
    uint t = i / pc.n, c = i - t * pc.n;
    F32Ref y = F32Ref(pc.y);
    U32Ref pos = U32Ref(pc.pos);
    F32Ref wt = F32Ref(pc.wt);
    float o = 0.0;
    for (uint j = 0; j < pc.k; j++) o += wt.v[t * pc.k + j] * y.v[pos.v[t * pc.k + j] * pc.n + c];
    if (pc.shared_ != uvec2(0)) {
        float sh = F32Ref(pc.shared_).v[i];
        if (pc.gate != uvec2(0)) sh *= 1.0 / (1.0 + exp(-F32Ref(pc.gate).v[t]));
        o += sh;
    }
    F32Ref(pc.out_).v[i] = o;
}
