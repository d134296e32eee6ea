/* vkb_attention: one workgroup per (token, query head), shaders/attention.comp. */
#include "backend/vulkan/vkb_internal.h"

#define ATTN_MAX_HEAD_DIM 512u /* attention.comp's MAX_HD */

void vkb_attention(vkb *v, const vkb_attn *a)
{
    if (!vkb_record_check(v, "vkb_attention")) return;
    if (a->head_dim == 0 || a->head_dim > ATTN_MAX_HEAD_DIM) {
        vkb_record_error(v, "Vulkan: vkb_attention: head_dim %u (the shader takes 1..%u)", a->head_dim,
                         ATTN_MAX_HEAD_DIM);
        return;
    }
    if (a->n_kv_heads == 0 || a->n_heads % a->n_kv_heads) {
        vkb_record_error(v, "Vulkan: vkb_attention: %u query heads over %u KV heads", a->n_heads, a->n_kv_heads);
        return;
    }
    uint32_t first = a->n_swa && a->pos0 + 1 > a->n_swa ? a->pos0 + 1 - a->n_swa : 0; /* token 0's */
    if (first < a->slot_base) {
        vkb_record_error(v, "Vulkan: vkb_attention: position %u is not in the cache (its first slot holds %u)",
                         first, a->slot_base);
        return;
    }
    if ((uint64_t)a->pos0 + a->n_tok - first > a->kv_len) { /* the positions the batch sees, at once */
        vkb_record_error(v, "Vulkan: vkb_attention: positions %u..%llu do not fit in %u cache slots", first,
                         (unsigned long long)a->pos0 + a->n_tok - 1, a->kv_len);
        return;
    }
    struct {
        uint64_t q, k, v, o;
        uint32_t n_tok, n_heads, n_kv_heads, head_dim, kv_len, pos0, n_swa, slot_base;
        float scale;
    } pc = {a->q, a->k_cache, a->v_cache, a->out, a->n_tok, a->n_heads, a->n_kv_heads, a->head_dim,
            a->kv_len, a->pos0, a->n_swa, a->slot_base, a->scale};
    _Static_assert(sizeof pc <= 128, "push constants over the guaranteed 128 bytes");
    vkb_dispatch(v, VKS_ATTENTION, &pc, sizeof pc, (uint64_t)a->n_tok * a->n_heads, 1);
}
