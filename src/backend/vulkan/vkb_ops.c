/* The element-wise and row ops: each fills its shader's push constants and
 * records one dispatch. Push-constant structs mirror the GLSL blocks
 * (std430: the uvec2 addresses first, as uint64_t here, which matches on
 * little-endian hosts; then 32-bit fields). */
#include "backend/vulkan/vkb_internal.h"

#define ELT_WG 256u /* elt.glsl's workgroup size */

static uint64_t elt_groups(uint64_t n) { return (n + ELT_WG - 1) / ELT_WG; }

/* False (and the recording's error) when an index space does not fit the
 * shaders' 32-bit indices. */
static bool fits32(vkb *v, const char *op, uint64_t n)
{
    if (n <= UINT32_MAX) return true;
    vkb_record_error(v, "Vulkan: %s over %llu elements (more than 2^32)", op, (unsigned long long)n);
    return false;
}

void vkb_add(vkb *v, uint64_t y, uint64_t x, uint32_t n)
{
    struct { uint64_t y, x; uint32_t n; } pc = {y, x, n};
    if (vkb_record_check(v, "vkb_add")) vkb_dispatch(v, VKS_ADD, &pc, sizeof pc, elt_groups(n), 1);
}

void vkb_add_rows(vkb *v, uint64_t y, uint64_t b, uint32_t n, uint32_t n_rows)
{
    uint64_t total = (uint64_t)n * n_rows;
    struct { uint64_t y, b; uint32_t n, total; } pc = {y, b, n, (uint32_t)total};
    if (vkb_record_check(v, "vkb_add_rows") && fits32(v, "vkb_add_rows", total))
        vkb_dispatch(v, VKS_ADD_ROWS, &pc, sizeof pc, elt_groups(total), 1);
}

void vkb_scale(vkb *v, uint64_t x, float s, uint32_t n)
{
    struct { uint64_t x; uint32_t n; float s; } pc = {x, n, s};
    if (vkb_record_check(v, "vkb_scale")) vkb_dispatch(v, VKS_SCALE, &pc, sizeof pc, elt_groups(n), 1);
}

void vkb_rmsnorm_add(vkb *v, uint64_t x, uint64_t w, uint64_t y, uint64_t acc, uint32_t n, uint32_t n_rows,
                     float eps)
{
    struct { uint64_t x, w, y, acc; uint32_t n, n_rows; float eps; } pc = {x, w, y, acc, n, n_rows, eps};
    if (vkb_record_check(v, acc ? "vkb_rmsnorm_add" : "vkb_rmsnorm"))
        vkb_dispatch(v, VKS_RMSNORM, &pc, sizeof pc, n_rows, 1);
}

void vkb_rmsnorm(vkb *v, uint64_t x, uint64_t w, uint64_t y, uint32_t n, uint32_t n_rows, float eps)
{
    vkb_rmsnorm_add(v, x, w, y, 0, n, n_rows, eps);
}

void vkb_rope(vkb *v, uint64_t x, uint64_t cs, uint32_t n_tok, uint32_t n_heads, uint32_t head_dim,
              uint32_t rope_dim, uint32_t row_stride, bool neox)
{
    struct {
        uint64_t x, cs;
        uint32_t n_tok, n_heads, head_dim, rope_dim, row_stride, neox;
    } pc = {x, cs, n_tok, n_heads, head_dim, rope_dim, row_stride, neox};
    if (!vkb_record_check(v, "vkb_rope")) return;
    if (rope_dim % 2 || rope_dim > head_dim) {
        vkb_record_error(v, "Vulkan: vkb_rope: rope_dim %u must be even and at most head_dim %u", rope_dim,
                         head_dim);
        return;
    }
    uint64_t pairs = (uint64_t)n_tok * n_heads * (rope_dim / 2);
    if (fits32(v, "vkb_rope", pairs)) vkb_dispatch(v, VKS_ROPE, &pc, sizeof pc, elt_groups(pairs), 1);
}

void vkb_glu(vkb *v, uint64_t gate, uint64_t up, uint32_t n, bool gelu)
{
    if (!vkb_record_check(v, "vkb_glu")) return;
    if (gelu) {
        struct { uint64_t gate, up, table; uint32_t n; } pc = {gate, up, v->gelu_table->addr, n};
        vkb_dispatch(v, VKS_GLU_GELU, &pc, sizeof pc, elt_groups(n), 1);
    } else {
        struct { uint64_t gate, up; uint32_t n; } pc = {gate, up, n};
        vkb_dispatch(v, VKS_GLU_SILU, &pc, sizeof pc, elt_groups(n), 1);
    }
}

void vkb_kv_store(vkb *v, uint64_t src, uint64_t cache, uint32_t n_tok, uint32_t n_kv_heads, uint32_t head_dim,
                  uint32_t kv_len, uint32_t slot0)
{
    struct {
        uint64_t src, cache;
        uint32_t n_tok, n_kv_heads, head_dim, kv_len, slot0;
    } pc = {src, cache, n_tok, n_kv_heads, head_dim, kv_len, slot0};
    if (!vkb_record_check(v, "vkb_kv_store")) return;
    if (n_tok > kv_len) {
        vkb_record_error(v, "Vulkan: vkb_kv_store: %u tokens into a cache of %u slots", n_tok, kv_len);
        return;
    }
    uint64_t n = (uint64_t)n_tok * n_kv_heads * head_dim;
    if (fits32(v, "vkb_kv_store", n)) vkb_dispatch(v, VKS_KV_STORE, &pc, sizeof pc, elt_groups(n), 1);
}

void vkb_rope_kv_store(vkb *v, const vkb_rope_kv *r)
{
    if (!vkb_record_check(v, "vkb_rope_kv_store")) return;
    if (r->rope_dim % 2 || r->rope_dim > r->head_dim || r->n_tok > r->kv_len) {
        vkb_record_error(v, "Vulkan: vkb_rope_kv_store: rope_dim %u (even, <= head_dim %u), %u tokens into %u slots",
                         r->rope_dim, r->head_dim, r->n_tok, r->kv_len);
        return;
    }
    /* work items: q pairs, k pairs, k dims past rope_dim, v elements (rope_kv.comp) */
    uint64_t half_ = r->rope_dim / 2, kvd = (uint64_t)r->n_kv_heads * r->head_dim;
    uint64_t total = (uint64_t)r->n_tok * (r->n_heads * half_ + r->n_kv_heads * half_ +
                                           r->n_kv_heads * (r->head_dim - r->rope_dim) + kvd);
    struct {
        uint64_t q, k, v, cs, kc, vc;
        uint32_t n_tok, n_heads, n_kv_heads, head_dim, rope_dim, q_stride, kv_len, slot0, neox;
    } pc = {r->q, r->k, r->v, r->cs, r->k_cache, r->v_cache, r->n_tok, r->n_heads, r->n_kv_heads, r->head_dim,
            r->rope_dim, r->q_stride, r->kv_len, r->slot0, r->neox};
    _Static_assert(sizeof pc <= 128, "push constants over the guaranteed 128 bytes");
    if (fits32(v, "vkb_rope_kv_store", total)) vkb_dispatch(v, VKS_ROPE_KV, &pc, sizeof pc, elt_groups(total), 1);
}

void vkb_moe_gather(vkb *v, uint64_t dst, uint64_t src, uint64_t rows, uint32_t n, uint32_t n_rows)
{
    uint64_t total = (uint64_t)n * n_rows;
    struct { uint64_t dst, src, rows; uint32_t n, total; } pc = {dst, src, rows, n, (uint32_t)total};
    if (vkb_record_check(v, "vkb_moe_gather") && fits32(v, "vkb_moe_gather", total))
        vkb_dispatch(v, VKS_MOE_GATHER, &pc, sizeof pc, elt_groups(total), 1);
}

void vkb_moe_combine(vkb *v, const vkb_moe_sum *m)
{
    uint64_t total = (uint64_t)m->n * m->n_tok;
    struct {
        uint64_t out, y, pos, wt, shared, gate;
        uint32_t n, k, total;
    } pc = {m->out, m->y, m->pos, m->wt, m->shared, m->gate, m->n, m->k, (uint32_t)total};
    if (vkb_record_check(v, "vkb_moe_combine") && fits32(v, "vkb_moe_combine", total))
        vkb_dispatch(v, VKS_MOE_COMBINE, &pc, sizeof pc, elt_groups(total), 1);
}
