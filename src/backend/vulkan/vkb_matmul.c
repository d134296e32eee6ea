/* vkb_matmul: one shader per weight type (shaders/mm_*.comp), one
 * workgroup per VKB_MM_ROWS output rows and group of up to VKB_MM_TOKENS
 * tokens; a single token (decode) runs the variant specialized for it
 * (NT = 1: fewer registers, more workgroups in flight). */
#include "backend/vulkan/vkb_internal.h"
#include "gguf/ggml_types.h"

typedef struct mm_kind {
    vkb_shader_id shader;
    uint32_t n_in_multiple; /* the shader's (virtual) block */
} mm_kind;

/* The shader for a type, or false. */
static bool mm_kind_of(uint32_t type, mm_kind *k)
{
    switch (type) {
    case GGML_TYPE_F32: *k = (mm_kind){VKS_MM_F32, 8}; return true;
    case GGML_TYPE_F16: *k = (mm_kind){VKS_MM_F16, 8}; return true;
    case GGML_TYPE_BF16: *k = (mm_kind){VKS_MM_BF16, 8}; return true;
    case GGML_TYPE_Q8_0: *k = (mm_kind){VKS_MM_Q8_0, 32}; return true;
    case GGML_TYPE_Q4_0: *k = (mm_kind){VKS_MM_Q4_0, 32}; return true;
    case GGML_TYPE_Q4_1: *k = (mm_kind){VKS_MM_Q4_1, 32}; return true;
    case GGML_TYPE_Q5_0: *k = (mm_kind){VKS_MM_Q5_0, 32}; return true;
    case GGML_TYPE_Q5_1: *k = (mm_kind){VKS_MM_Q5_1, 32}; return true;
    case GGML_TYPE_Q4_K: *k = (mm_kind){VKS_MM_Q4_K, 256}; return true;
    case GGML_TYPE_Q5_K: *k = (mm_kind){VKS_MM_Q5_K, 256}; return true;
    case GGML_TYPE_Q6_K: *k = (mm_kind){VKS_MM_Q6_K, 256}; return true;
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

void vkb_matmul(vkb *v, uint32_t type, uint64_t w, uint64_t x, uint64_t y, uint32_t n_in, uint32_t n_out,
                uint32_t n_tok)
{
    mm_kind k;
    if (!vkb_record_check(v, "vkb_matmul")) return;
    if (!mm_kind_of(type, &k)) {
        vkb_record_error(v, "Vulkan: vkb_matmul has no shader for %s weights", ggml_type_name(type));
        return;
    }
    if (n_in % k.n_in_multiple) {
        vkb_record_error(v, "Vulkan: vkb_matmul: %u inputs is not a multiple of %u (%s)", n_in,
                         k.n_in_multiple, ggml_type_name(type));
        return;
    }
    uint64_t row_bytes = ggml_row_bytes(type, n_in);
    if (row_bytes > UINT32_MAX || (uint64_t)n_tok * n_in > UINT32_MAX || (uint64_t)n_tok * n_out > UINT32_MAX) {
        vkb_record_error(v, "Vulkan: vkb_matmul %u x %u for %u tokens exceeds 32-bit indices", n_out, n_in,
                         n_tok);
        return;
    }
    struct {
        uint64_t w, x, y;
        uint32_t n_in, n_out, n_tok, row_bytes;
    } pc = {w, x, y, n_in, n_out, n_tok, (uint32_t)row_bytes};
    if (n_tok == 1) {
        vkb_dispatch_variant(v, k.shader, VKB_MM_DECODE, &pc, sizeof pc,
                             (n_out + VKB_MM_DECODE_ROWS - 1) / VKB_MM_DECODE_ROWS, 1);
    } else {
        vkb_dispatch(v, k.shader, &pc, sizeof pc, (n_out + VKB_MM_ROWS - 1) / VKB_MM_ROWS,
                     (n_tok + VKB_MM_TOKENS - 1) / VKB_MM_TOKENS);
    }
}
