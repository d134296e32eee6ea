/* Workgroup-wide sum and max of one float per invocation (WG_SIZE
 * invocations, defined by the includer). Compiled twice: with
 * USE_SUBGROUP, subgroup arithmetic reduces within each subgroup and
 * shared memory across subgroups; without it, a shared-memory tree. Call
 * from uniform control flow only; every invocation gets the result. */
#ifndef REDUCE_GLSL
#define REDUCE_GLSL
#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

shared float red_buf[WG_SIZE];

#ifdef USE_SUBGROUP
#define RED_SG(name, sgop, op)                                   \
    float name(float v)                                          \
    {                                                            \
        v = sgop(v);                                             \
        if (subgroupElect()) red_buf[gl_SubgroupID] = v;         \
        barrier();                                               \
        float r = red_buf[0];                                    \
        for (uint i = 1u; i < gl_NumSubgroups; i++) r = op(r, red_buf[i]); \
        barrier();                                               \
        return r;                                                \
    }
float op_add_(float a, float b) { return a + b; }
RED_SG(wg_sum, subgroupAdd, op_add_)
RED_SG(wg_max, subgroupMax, max)
#else
#define RED_TREE(name, op)                                       \
    float name(float v)                                          \
    {                                                            \
        uint lid = gl_LocalInvocationIndex;                      \
        red_buf[lid] = v;                                        \
        barrier();                                               \
        for (uint s = WG_SIZE / 2u; s > 0u; s >>= 1) {           \
            if (lid < s) red_buf[lid] = op(red_buf[lid], red_buf[lid + s]); \
            barrier();                                           \
        }                                                        \
        float r = red_buf[0];                                    \
        barrier();                                               \
        return r;                                                \
    }
float op_add_(float a, float b) { return a + b; }
RED_TREE(wg_sum, op_add_)
RED_TREE(wg_max, max)
#endif

#endif
