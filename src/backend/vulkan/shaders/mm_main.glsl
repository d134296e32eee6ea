/* y[t][r] = sum_i W[r][i] * x[t][i]: one workgroup per ROWS rows and group
 * of up to NT tokens (dispatch z); ROWS and NT are specialization constants
 * (the host builds a decode pipeline, 1 token, and a batch one). The includer defines the weight format:
 *   BLOCK_ELEMS, BLOCK_BYTES  one block of the row
 *   UNITS                     units per block (the work of one invocation)
 *   S                         a unit is two spans of S elements
 *   dq_unit(blk, u, a, b, oa, ob)  dequantizes unit u of the block at
 *       address blk into a[S] (elements oa..oa+S) and b[S] (ob..ob+S).
 * Invocation i takes units i, i + WG_SIZE, ... of the rows, so neighbours
 * read neighbouring bytes; it dequantizes the unit of each of the ROWS rows
 * (independent loads in flight), then reads each token's x span once for
 * all of them. Dot products are f32; the ROWS * NT partial sums are reduced
 * over the workgroup at once (one barrier). */
#define WG_SIZE 128u
layout(constant_id = 0) const uint ROWS = 4u; /* rows per workgroup */
layout(constant_id = 1) const uint NT = 8u;   /* tokens per workgroup */
const uint NV = ROWS * NT;
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"

#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

layout(local_size_x = 128) in;

layout(push_constant) uniform PC {
    uvec2 w, x, y;
    uint n_in, n_out, n_tok, row_bytes;
} pc;

/* [NV][slots]: partial sums per (row, token) and invocation (or subgroup) */
shared float part[NV * WG_SIZE];

void main()
{
    uint row0 = group_id() * ROWS;
    if (row0 >= pc.n_out) return;
    uint nr = min(ROWS, pc.n_out - row0);
    uint t0 = gl_WorkGroupID.z * NT;
    uint nt = min(NT, pc.n_tok - t0);
    uvec2 wrow[ROWS];
    [[unroll]] for (uint r = 0u; r < ROWS; r++) wrow[r] = addr_mad(pc.w, min(row0 + r, pc.n_out - 1u), pc.row_bytes);
    F32Ref x = F32Ref(addr_mad(pc.x, t0 * pc.n_in, 4u)); /* [nt][n_in] */
    float acc[NV];
    [[unroll]] for (uint j = 0u; j < NV; j++) acc[j] = 0.0;

    uint n_units = (pc.n_in / BLOCK_ELEMS) * UNITS;
    for (uint u = gl_LocalInvocationIndex; u < n_units; u += WG_SIZE) {
        uint blk = u / UNITS, e = blk * BLOCK_ELEMS;
        float a[ROWS][S], b[ROWS][S];
        uint oa, ob;
        /* rows past n_out repeat the last row; their sums are not stored */
        [[unroll]] for (uint r = 0u; r < ROWS; r++)
            dq_unit(addr_add(wrow[r], blk * BLOCK_BYTES), u % UNITS, a[r], b[r], oa, ob);
        [[unroll]] for (uint t = 0u; t < NT; t++) {
            if (t < nt) {
                float xa[S], xb[S];
                uint ia = t * pc.n_in + e + oa, ib = t * pc.n_in + e + ob;
                [[unroll]] for (uint i = 0u; i < S; i++) {
                    xa[i] = x.v[ia + i];
                    xb[i] = x.v[ib + i];
                }
                [[unroll]] for (uint r = 0u; r < ROWS; r++) {
                    float s = 0.0;
                    [[unroll]] for (uint i = 0u; i < S; i++) s += a[r][i] * xa[i] + b[r][i] * xb[i];
                    acc[r * NT + t] += s;
                }
            }
        }
    }

    /* the NV sums at once: partial sums into part[j][slot] (slot: the
     * invocation, or with subgroups the subgroup), one barrier, then
     * invocation j < NV adds up row j / NT, token j % NT */
    uint lid = gl_LocalInvocationIndex, slots = WG_SIZE;
#ifdef USE_SUBGROUP
    slots = gl_NumSubgroups;
    [[unroll]] for (uint j = 0u; j < NV; j++) acc[j] = subgroupAdd(acc[j]);
    if (subgroupElect())
        [[unroll]] for (uint j = 0u; j < NV; j++) part[j * WG_SIZE + gl_SubgroupID] = acc[j];
#else
    [[unroll]] for (uint j = 0u; j < NV; j++) part[j * WG_SIZE + lid] = acc[j];
#endif
    barrier();
    uint r = lid / NT, t = lid % NT;
    if (lid < NV && r < nr && t < nt) {
        float s = 0.0;
        for (uint i = 0u; i < slots; i++) s += part[lid * WG_SIZE + i];
        F32Ref(pc.y).v[(t0 + t) * pc.n_out + row0 + r] = s;
    }
}
