/* y[t][r] = sum_i W[r][i] * x[t][i], three paths chosen by specialization:
 *
 * Batches (MODE = 0): one workgroup per ROWS rows and group of up to NT
 * tokens (dispatch z). The includer defines the weight format:
 *   BLOCK_ELEMS, BLOCK_BYTES  one block of the row
 *   UNITS                     units per block (the work of one invocation)
 *   S                         a unit is two spans of S elements
 *   dq_unit(blk, u, a, b, oa, ob)  dequantizes unit u of the block at
 *       address blk into a[S] (elements oa..oa+S) and b[S] (ob..ob+S).
 *   unit_spans(u, oa, ob)     the same oa, ob without the weights.
 * Invocation i takes units i, i + WG_SIZE, ... of the rows, so neighbours
 * read neighbouring bytes; it dequantizes the unit of each of the ROWS rows
 * (independent loads in flight), then reads each token's x span once for
 * all of them. Dot products are f32; the ROWS * NT partial sums are reduced
 * over the workgroup at once (one barrier).
 *
 * Decode (MODE = 1, one token; mm_decode): ROWS rows per workgroup of
 * WG_SIZE invocations (specialized by the host), the same unit loop, with
 * the neighbouring ops fused in by flags (vkb_matvec): the RMS norm of x
 * (its scale applied to the sums, the normed x written by workgroup 0 when
 * asked), the residual add, and with GLU = 1 the gate and up rows of each
 * output together and the activation. A format may define DEC_FAST with
 * its own unit (dec_load_x, dec_dot over an XV of the unit's x values):
 * wide loads and the block scales factored out of the sums.
 *
 * Tiled (MODE = 2, prompt batches of many tokens; mm_tiled): 64 x 64
 * tiles of y through shared memory (below). */
layout(constant_id = 0) const uint ROWS = 4u; /* rows per workgroup */
layout(constant_id = 1) const uint NT = 8u;   /* tokens per workgroup (batches) */
layout(constant_id = 3) const uint MODE = 0u; /* 0: batch, 1: decode, 2: tiled (mm_tiled) */
layout(constant_id = 4) const uint GLU = 0u;  /* decode: gate and up rows */
layout(constant_id = 5) const uint UNROLL = 1u; /* decode: units in flight per invocation */
layout(constant_id = 6) const uint TILE = 1u;   /* tiled: rows and tokens of a tile (64; 1 elsewhere) */
layout(local_size_x = 128, local_size_x_id = 2) in; /* 128 unless specialized */
#define WG_SIZE gl_WorkGroupSize.x
const uint NV = ROWS * NT;
const uint NR = ROWS * (GLU + 1u);            /* weight rows of a decode workgroup */
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"

#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

layout(push_constant) uniform PC {
    uvec2 w, x, y;
    uvec2 up, aux, nw, xn, table; /* decode fusions (vkb_matvec) */
    uint n_in, n_out, n_tok, row_bytes, flags;
    float eps;
} pc;
#define MM_NORM 1u
#define MM_XN 2u
#define MM_ACC 4u
#define MM_AUX 8u
#define MM_GELU 16u

/* [NV][slots]: partial sums per (row, token) and invocation (or subgroup);
 * decode uses the first (NR + 1) * WG_SIZE */
shared float part[(NV > NR + 1u ? NV : NR + 1u) * WG_SIZE];

void mm_batch()
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

/* ---- decode ---- */

#ifdef DEC_FAST
/* The format's unit (mm_dec.glsl): its x spans, times the norm weight with
 * MM_NORM (their squares added to ss). */
XV dec_load_x(uvec2 xa, uvec2 nwa, uint e0, uint u, bool norm, inout float ss)
{
    const uint NV4 = DEC_SPAN / 4u;
    uint ia = (e0 + dec_oa(u)) / 4u, ib = ia + DEC_SPAN_B / 4u;
    X4Ref x = X4Ref(xa), w = X4Ref(nwa);
    XV r;
    [[unroll]] for (uint i = 0u; i < NV4; i++) {
        r.a[i] = x.v[ia + i];
        r.b[i] = x.v[ib + i];
    }
    if (norm) {
        [[unroll]] for (uint i = 0u; i < NV4; i++) {
            ss += dot(r.a[i], r.a[i]) + dot(r.b[i], r.b[i]);
            r.a[i] *= w.v[ia + i];
            r.b[i] *= w.v[ib + i];
        }
    }
    vec4 ta = r.a[0], tb = r.b[0];
    [[unroll]] for (uint i = 1u; i < NV4; i++) {
        ta += r.a[i];
        tb += r.b[i];
    }
    r.sa = dot(ta, vec4(1.0));
    r.sb = dot(tb, vec4(1.0));
    return r;
}
#else
/* The generic unit: the x values of unit u's two spans (times the norm
 * weight with MM_NORM, their squares added to ss), dotted with dq_unit's
 * weights. */
#define DEC_UNITS UNITS
struct XV {
    float a[S], b[S];
    uint oa, ob;
};

XV dec_load_x(uvec2 xa, uvec2 nwa, uint e0, uint u, bool norm, inout float ss)
{
    XV r;
    unit_spans(u, r.oa, r.ob);
    F32Ref x = F32Ref(xa), w = F32Ref(nwa);
    [[unroll]] for (uint i = 0u; i < S; i++) {
        r.a[i] = x.v[e0 + r.oa + i];
        r.b[i] = x.v[e0 + r.ob + i];
    }
    if (norm) {
        [[unroll]] for (uint i = 0u; i < S; i++) {
            ss += r.a[i] * r.a[i] + r.b[i] * r.b[i];
            r.a[i] *= w.v[e0 + r.oa + i];
            r.b[i] *= w.v[e0 + r.ob + i];
        }
    }
    return r;
}

float dec_dot(uvec2 blk, uint u, XV xv)
{
    float a[S], b[S];
    uint oa, ob;
    dq_unit(blk, u, a, b, oa, ob);
    float s = 0.0;
    [[unroll]] for (uint i = 0u; i < S; i++) s += a[i] * xv.a[i] + b[i] * xv.b[i];
    return s;
}
#endif

/* vkb_glu's activations, as glu_silu.comp and glu_gelu.comp */
float act(float x)
{
    if ((pc.flags & MM_GELU) == 0u) return x / (1.0 + exp(-x));
    if (x <= -10.0) return 0.0;
    if (x >= 10.0) return x;
    return h2f(uint(U16Ref(pc.table).v[f2h(x)]));
}

void mm_decode()
{
    uint lid = gl_LocalInvocationIndex;
    uint row0 = group_id() * ROWS;
    if (row0 >= pc.n_out) return;
    bool norm = (pc.flags & MM_NORM) != 0u;
    /* rows [0, ROWS): W's, [ROWS, 2 ROWS): Up's (GLU); rows past n_out
     * repeat the last one, their sums are not stored */
    uvec2 wrow[NR];
    [[unroll]] for (uint r = 0u; r < NR; r++)
        wrow[r] = addr_mad(r < ROWS ? pc.w : pc.up, min(row0 + r % ROWS, pc.n_out - 1u), pc.row_bytes);
    float acc[NR];
    [[unroll]] for (uint j = 0u; j < NR; j++) acc[j] = 0.0;
    float ss = 0.0;

    /* UNROLL units per invocation and step, their loads issued together
     * (past the end: the last unit again, not counted) */
    uint n_units = (pc.n_in / BLOCK_ELEMS) * DEC_UNITS;
    for (uint u0 = lid; u0 < n_units; u0 += WG_SIZE * UNROLL) {
        XV xv[UNROLL];
        uint blk[UNROLL], uu[UNROLL];
        bool live[UNROLL];
        [[unroll]] for (uint k = 0u; k < UNROLL; k++) {
            uint u = u0 + k * WG_SIZE;
            live[k] = u < n_units;
            u = min(u, n_units - 1u);
            blk[k] = u / DEC_UNITS;
            uu[k] = u % DEC_UNITS;
            float sk = 0.0;
            xv[k] = dec_load_x(pc.x, pc.nw, blk[k] * BLOCK_ELEMS, uu[k], norm, sk);
            if (live[k]) ss += sk;
        }
        [[unroll]] for (uint r = 0u; r < NR; r++)
            [[unroll]] for (uint k = 0u; k < UNROLL; k++) {
                float p = dec_dot(addr_add(wrow[r], blk[k] * BLOCK_BYTES), uu[k], xv[k]);
                if (live[k]) acc[r] += p;
            }
    }

    /* NR sums and ss over the workgroup: part[j][slot], one barrier */
    uint slots = WG_SIZE;
#ifdef USE_SUBGROUP
    slots = gl_NumSubgroups;
    [[unroll]] for (uint j = 0u; j < NR; j++) acc[j] = subgroupAdd(acc[j]);
    ss = subgroupAdd(ss);
    if (subgroupElect()) {
        [[unroll]] for (uint j = 0u; j < NR; j++) part[j * WG_SIZE + gl_SubgroupID] = acc[j];
        part[NR * WG_SIZE + gl_SubgroupID] = ss;
    }
#else
    [[unroll]] for (uint j = 0u; j < NR; j++) part[j * WG_SIZE + lid] = acc[j];
    part[NR * WG_SIZE + lid] = ss;
#endif
    barrier();
    float scale = 1.0;
    if (norm) {
        float t = 0.0;
        for (uint i = 0u; i < slots; i++) t += part[NR * WG_SIZE + i];
        scale = 1.0 / sqrt(t / float(pc.n_in) + pc.eps);
    }
    uint row = row0 + lid;
    if (lid < ROWS && row < pc.n_out) {
        float s = 0.0;
        for (uint i = 0u; i < slots; i++) s += part[lid * WG_SIZE + i];
        s *= scale;
        F32Ref y = F32Ref(pc.y);
        bool aux = (pc.flags & MM_AUX) != 0u;
        if (GLU != 0u) {
            float up = 0.0;
            for (uint i = 0u; i < slots; i++) up += part[(ROWS + lid) * WG_SIZE + i];
            up *= scale;
            y.v[row] = act(s) * up;
            if (aux) F32Ref(pc.aux).v[row] = up;
        } else if ((pc.flags & MM_ACC) != 0u) {
            y.v[row] += s;
            if (aux) F32Ref(pc.aux).v[row] = s;
        } else {
            y.v[row] = s;
        }
    }
    if ((pc.flags & MM_XN) != 0u && group_id() == 0u) { /* the normed input, as vkb_rmsnorm writes it */
        F32Ref x = F32Ref(pc.x), w = F32Ref(pc.nw), xn = F32Ref(pc.xn);
        for (uint i = lid; i < pc.n_in; i += WG_SIZE) xn.v[i] = x.v[i] * scale * w.v[i];
    }
}

/* ---- tiled (prompt batches) ---- */

/* A TILE x TILE block of y (rows row0.., tokens t0..) per workgroup of 256
 * invocations, each 4 rows x 4 tokens. The inner dimension goes in steps
 * of TK slots: UPS consecutive units of the row (dq_unit's two spans of S
 * each); per step the workgroup dequantizes the W tile [slot][row] and
 * gathers the matching x values [slot][token] into shared memory, then
 * each invocation takes TK rank-1 updates of its 4 x 4 sums. Slots past
 * the row (float types' last step), rows past n_out and tokens past n_tok
 * are zeros, their sums not stored. */
const uint TK = 32u;
const uint UPS = TK / (2u * uint(S));
shared vec4 w_t[TK * TILE / 4u]; /* [TK][TILE] */
shared vec4 x_t[TK * TILE / 4u];

void mm_tiled()
{
    uint lid = gl_LocalInvocationIndex;
    uint row0 = group_id() * TILE, t0 = gl_WorkGroupID.z * TILE;
    uint tr = lid % 16u, tc = lid / 16u; /* rows row0 + 4 tr.., tokens t0 + 4 tc.. */
    uint n_units = (pc.n_in / BLOCK_ELEMS) * UNITS;
    uint n_steps = (n_units + UPS - 1u) / UPS;
    F32Ref x = F32Ref(pc.x);
    vec4 acc[4];
    [[unroll]] for (uint i = 0u; i < 4u; i++) acc[i] = vec4(0.0);
    for (uint st = 0u; st < n_steps; st++) {
        for (uint p = lid; p < TILE * UPS; p += 256u) { /* (row, unit) pairs */
            uint r = p / UPS, k = p % UPS, gu = st * UPS + k;
            float a[S], b[S];
            uint oa, ob;
            if (gu < n_units) {
                uvec2 wr = addr_mad(pc.w, min(row0 + r, pc.n_out - 1u), pc.row_bytes);
                dq_unit(addr_add(wr, (gu / UNITS) * BLOCK_BYTES), gu % UNITS, a, b, oa, ob);
            } else {
                [[unroll]] for (uint i = 0u; i < S; i++) a[i] = b[i] = 0.0;
            }
            [[unroll]] for (uint i = 0u; i < S; i++) {
                uint sa = (k * 2u * S + i) * TILE + r, sb = (k * 2u * S + S + i) * TILE + r;
                w_t[sa / 4u][sa % 4u] = a[i];
                w_t[sb / 4u][sb % 4u] = b[i];
            }
        }
        for (uint p = lid; p < TILE * TK; p += 256u) { /* (token, slot) pairs, slots fastest */
            uint slot = p % TK, t = p / TK, k = slot / (2u * S), gu = st * UPS + k;
            float v = 0.0;
            if (gu < n_units && t0 + t < pc.n_tok) {
                uint oa, ob;
                unit_spans(gu % UNITS, oa, ob);
                uint e = (gu / UNITS) * BLOCK_ELEMS + ((slot / S) % 2u != 0u ? ob : oa) + slot % S;
                v = x.v[(t0 + t) * pc.n_in + e];
            }
            uint xi = slot * TILE + t;
            x_t[xi / 4u][xi % 4u] = v;
        }
        barrier();
        [[unroll]] for (uint kk = 0u; kk < TK; kk++) {
            vec4 a = w_t[kk * (TILE / 4u) + tr], b = x_t[kk * (TILE / 4u) + tc];
            [[unroll]] for (uint j = 0u; j < 4u; j++) acc[j] += a * b[j]; /* acc[token j][row i] */
        }
        barrier();
    }
    F32Ref y = F32Ref(pc.y);
    [[unroll]] for (uint j = 0u; j < 4u; j++) {
        uint t = t0 + 4u * tc + j;
        [[unroll]] for (uint i = 0u; i < 4u; i++) {
            uint r = row0 + 4u * tr + i;
            if (t < pc.n_tok && r < pc.n_out) y.v[t * pc.n_out + r] = acc[j][i];
        }
    }
}

void main()
{
    if (MODE == 1u) mm_decode();
    else if (MODE == 2u) mm_tiled();
    else mm_batch();
}
