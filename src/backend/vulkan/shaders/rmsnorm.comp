#version 450
/* y[r] = x[r] * (1 / sqrt(mean(x[r]^2) + eps)) * w, one workgroup per row
 * (y may be x: each invocation reads its elements before writing them);
 * with acc (not 0) also acc[r] += y[r]. */
#define WG_SIZE 128u
#include "common.glsl"
#include "reduce.glsl"
layout(local_size_x = 128) in;
layout(push_constant) uniform PC { uvec2 x, w, y, acc; uint n, n_rows; float eps; } pc;
void main()
{
    uint r = group_id();
    if (r >= pc.n_rows) return;
    F32Ref x = F32Ref(addr_mad(pc.x, r, pc.n * 4u));
    F32Ref y = F32Ref(addr_mad(pc.y, r, pc.n * 4u));
    F32Ref w = F32Ref(pc.w);
    float ss = 0.0;
    for (uint i = gl_LocalInvocationIndex; i < pc.n; i += WG_SIZE) ss += x.v[i] * x.v[i];
    ss = wg_sum(ss);
    float scale = 1.0 / sqrt(ss / float(pc.n) + pc.eps);
    bool add = any(notEqual(pc.acc, uvec2(0u)));
    F32Ref acc = F32Ref(addr_mad(pc.acc, r, pc.n * 4u));
    for (uint i = gl_LocalInvocationIndex; i < pc.n; i += WG_SIZE) {
        float v = x.v[i] * scale * w.v[i];
        y.v[i] = v;
        if (add) acc.v[i] += v;
    }
}
