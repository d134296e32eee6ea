/* vkb_matmul and vkb_matvec: one shader per weight type (shaders/mm_*.comp
 * over mm_main.glsl). Batches of VKB_MM_TILED_MIN tokens or more take
 * 64 x 64 tiles through shared memory; smaller ones one workgroup per
 * VKB_MM_ROWS output rows and group of up to VKB_MM_TOKENS tokens; a single token takes the
 * decode path (mm_main.glsl's mm_decode: mv_rows rows per workgroup of
 * mv_wg invocations, the block loads of neighbouring invocations adjacent,
 * the neighbouring ops fused in on request). */
#include "backend/vulkan/vkb_internal.h"
#include "gguf/ggml_types.h"
#include "util/error.h"

typedef struct mm_kind {
    vkb_shader_id shader;
    uint32_t n_in_multiple; /* the shader's (virtual) block */
    uint32_t w_align;       /* the decode path's alignment of weight rows (Q4_K: 16-byte loads) */
} mm_kind;

/* Mirrors mm_main.glsl's push constants. */
typedef struct mm_pc {
    uint64_t w, x, y, up, aux, nw, xn, table;
    uint32_t n_in, n_out, n_tok, row_bytes, flags;
    float eps;
} mm_pc;
_Static_assert(sizeof(mm_pc) <= 128, "push constants over the guaranteed 128 bytes");

enum { MM_NORM = 1, MM_XN = 2, MM_ACC = 4, MM_AUX = 8, MM_GELU = 16 }; /* mm_main.glsl's flags */

/* The shader for a type, or false. */
static bool mm_kind_of(uint32_t type, mm_kind *k)
{
    switch (type) {
    case GGML_TYPE_F32: *k = (mm_kind){VKS_MM_F32, 8, 4}; return true;
    case GGML_TYPE_F16: *k = (mm_kind){VKS_MM_F16, 8, 2}; return true;
    case GGML_TYPE_BF16: *k = (mm_kind){VKS_MM_BF16, 8, 2}; return true;
    case GGML_TYPE_Q8_0: *k = (mm_kind){VKS_MM_Q8_0, 32, 2}; return true;
    case GGML_TYPE_Q4_0: *k = (mm_kind){VKS_MM_Q4_0, 32, 2}; return true;
    case GGML_TYPE_Q4_1: *k = (mm_kind){VKS_MM_Q4_1, 32, 2}; return true;
    case GGML_TYPE_Q5_0: *k = (mm_kind){VKS_MM_Q5_0, 32, 2}; return true;
    case GGML_TYPE_Q5_1: *k = (mm_kind){VKS_MM_Q5_1, 32, 2}; return true;
    case GGML_TYPE_Q4_K: *k = (mm_kind){VKS_MM_Q4_K, 256, 16}; return true;
    case GGML_TYPE_Q5_K: *k = (mm_kind){VKS_MM_Q5_K, 256, 2}; return true;
    case GGML_TYPE_Q6_K: *k = (mm_kind){VKS_MM_Q6_K, 256, 2}; return true;
    default: return false;
    }
}

bool vkb_matmul_supported_rows(uint32_t ggml_type, uint32_t n_in)
{
    mm_kind k;
    return mm_kind_of(ggml_type, &k) && n_in % k.n_in_multiple == 0;
}

bool vkb_matmul_supported(uint32_t ggml_type)
{
    mm_kind k;
    return mm_kind_of(ggml_type, &k);
}

bool vkb_matvec_supported(uint32_t ggml_type, uint32_t n_in) { return vkb_matmul_supported_rows(ggml_type, n_in); }

/* Checks shared by both entry points; fills k and the row size. */
static bool check(vkb *v, const char *op, uint32_t type, uint32_t n_in, uint32_t n_out, uint32_t n_tok, mm_kind *k,
                  uint64_t *row_bytes)
{
    if (!vkb_record_check(v, op)) return false;
    if (!mm_kind_of(type, k)) {
        vkb_record_error(v, "Vulkan: %s has no shader for %s weights", op, ggml_type_name(type));
        return false;
    }
    if (n_in % k->n_in_multiple) {
        vkb_record_error(v, "Vulkan: %s: %u inputs is not a multiple of %u (%s)", op, n_in, k->n_in_multiple,
                         ggml_type_name(type));
        return false;
    }
    *row_bytes = ggml_row_bytes(type, n_in);
    if (*row_bytes > UINT32_MAX || (uint64_t)n_tok * n_in > UINT32_MAX || (uint64_t)n_tok * n_out > UINT32_MAX) {
        vkb_record_error(v, "Vulkan: %s %u x %u for %u tokens exceeds 32-bit indices", op, n_out, n_in, n_tok);
        return false;
    }
    return true;
}

/* The decode path's alignment: x (and the norm weight) are read as vec4,
 * Q4_K blocks as 16-byte words. */
static bool decode_aligned(const mm_kind *k, uint64_t w, uint64_t up, uint64_t x, uint64_t nw)
{
    return (x | nw) % 16 == 0 && w % k->w_align == 0 && up % k->w_align == 0;
}

void vkb_matmul(vkb *v, uint32_t type, uint64_t w, uint64_t x, uint64_t y, uint32_t n_in, uint32_t n_out,
                uint32_t n_tok)
{
    mm_kind k;
    uint64_t row_bytes;
    if (!check(v, "vkb_matmul", type, n_in, n_out, n_tok, &k, &row_bytes)) return;
    mm_pc pc = {.w = w, .x = x, .y = y, .n_in = n_in, .n_out = n_out, .n_tok = n_tok,
                .row_bytes = (uint32_t)row_bytes};
    if (n_tok == 1 && decode_aligned(&k, w, 0, x, 0)) {
        vkb_dispatch_variant(v, k.shader, VKB_MM_DECODE, &pc, sizeof pc, (n_out + v->mv_rows - 1) / v->mv_rows, 1);
    } else if (n_tok >= VKB_MM_TILED_MIN && v->tiled) {
        vkb_dispatch_variant(v, k.shader, VKB_MM_TILED, &pc, sizeof pc, (n_out + VKB_MM_TILE - 1) / VKB_MM_TILE,
                             (n_tok + VKB_MM_TILE - 1) / VKB_MM_TILE);
    } else {
        vkb_dispatch(v, k.shader, &pc, sizeof pc, (n_out + VKB_MM_ROWS - 1) / VKB_MM_ROWS,
                     (n_tok + VKB_MM_TOKENS - 1) / VKB_MM_TOKENS);
    }
}

void vkb_matvec(vkb *v, const vkb_mv *m)
{
    mm_kind k;
    uint64_t row_bytes;
    if (!check(v, "vkb_matvec", m->type, m->n_in, m->n_out, 1, &k, &row_bytes)) return;
    if (!decode_aligned(&k, m->w, m->up, m->x, m->norm_w)) {
        vkb_record_error(v, "Vulkan: vkb_matvec: x and the norm weight must be 16-byte aligned%s",
                         k.w_align > 2 ? ", the weights too" : "");
        return;
    }
    if (m->xn && !m->norm_w) {
        vkb_record_error(v, "Vulkan: vkb_matvec: xn without a norm");
        return;
    }
    uint32_t flags = (m->norm_w ? MM_NORM : 0) | (m->xn ? MM_XN : 0) | (m->acc ? MM_ACC : 0) |
                     (m->aux ? MM_AUX : 0) | (m->gelu ? MM_GELU : 0);
    mm_pc pc = {.w = m->w, .x = m->x, .y = m->y, .up = m->up, .aux = m->aux, .nw = m->norm_w, .xn = m->xn,
                .table = vkb_addr(v->gelu_table), .n_in = m->n_in, .n_out = m->n_out, .n_tok = 1,
                .row_bytes = (uint32_t)row_bytes, .flags = flags, .eps = m->eps};
    vkb_dispatch_variant(v, k.shader, m->up ? VKB_MM_DECODE_GLU : VKB_MM_DECODE, &pc, sizeof pc,
                         (m->n_out + v->mv_rows - 1) / v->mv_rows, 1);
}

strata_status vkb_prepare(vkb *v, const uint32_t *types, int n, strata_error *err)
{
    static const vkb_shader_id ops[] = {VKS_RMSNORM, VKS_ATTENTION, VKS_ADD,      VKS_ADD_ROWS, VKS_SCALE,
                                        VKS_ROPE,    VKS_GLU_SILU,  VKS_GLU_GELU, VKS_KV_STORE, VKS_ROPE_KV,
                                        VKS_MOE_GATHER, VKS_MOE_COMBINE};
    if (v->recording) return err_set(err, STRATA_E_INVALID, "Vulkan: vkb_prepare between vkb_begin and vkb_run");
    bool ok = true;
    for (size_t i = 0; i < sizeof ops / sizeof ops[0] && ok; i++) ok = vkb_pipeline(v, ops[i], VKB_DEFAULT) != VK_NULL_HANDLE;
    for (int i = 0; i < n && ok; i++) {
        mm_kind k;
        if (!mm_kind_of(types[i], &k)) continue;
        for (int var = VKB_DEFAULT; var < VKB_VARIANTS && ok; var++)
            ok = vkb_pipeline(v, k.shader, (vkb_variant)var) != VK_NULL_HANDLE;
    }
    if (ok) return STRATA_OK;
    strata_status st = err_set(err, STRATA_E_UNSUPPORTED, "%s", v->rec_err.message);
    v->rec_err.status = STRATA_OK;
    v->rec_err.message[0] = '\0';
    return st;
}
