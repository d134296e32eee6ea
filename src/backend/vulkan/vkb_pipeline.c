/* Compute pipelines, built on first use from the embedded SPIR-V (building
 * all of them at open would cost a software device seconds of JIT). The
 * shaders that reduce across a workgroup have a subgroup-arithmetic
 * variant, taken when the device supports it (vkb_info.subgroup_arith). */
#include <stdio.h>
#include <string.h>

#include "backend/vulkan/vkb_internal.h"
#include "backend/vulkan/vkb_shaders.h"

static const char *const shader_names[VKS_COUNT] = {
    [VKS_MM_F32] = "mm_f32",       [VKS_MM_F16] = "mm_f16",       [VKS_MM_BF16] = "mm_bf16",
    [VKS_MM_Q8_0] = "mm_q8_0",     [VKS_MM_Q4_0] = "mm_q4_0",     [VKS_MM_Q4_1] = "mm_q4_1",
    [VKS_MM_Q5_0] = "mm_q5_0",     [VKS_MM_Q5_1] = "mm_q5_1",     [VKS_MM_Q4_K] = "mm_q4_k",
    [VKS_MM_Q5_K] = "mm_q5_k",     [VKS_MM_Q6_K] = "mm_q6_k",     [VKS_RMSNORM] = "rmsnorm",
    [VKS_ATTENTION] = "attention", [VKS_ADD] = "add",             [VKS_ADD_ROWS] = "add_rows",
    [VKS_SCALE] = "scale",         [VKS_ROPE] = "rope",           [VKS_GLU_SILU] = "glu_silu",
    [VKS_GLU_GELU] = "glu_gelu",   [VKS_KV_STORE] = "kv_store",   [VKS_ROPE_KV] = "rope_kv",
    [VKS_MOE_GATHER] = "moe_gather", [VKS_MOE_COMBINE] = "moe_combine",
};

const char *vkb_shader_name(vkb_shader_id id) { return shader_names[id]; }

static const vkb_spirv *find_spirv(const char *name)
{
    for (size_t i = 0; i < vkb_spirv_count; i++)
        if (!strcmp(vkb_spirv_table[i].name, name)) return &vkb_spirv_table[i];
    return NULL;
}

/* The module for a shader: its subgroup variant when there is one and the
 * device can run it. */
static const vkb_spirv *module_for(const vkb *v, vkb_shader_id id)
{
    char sg[64];
    snprintf(sg, sizeof sg, "%s_sg", shader_names[id]);
    const vkb_spirv *m = v->info.subgroup_arith ? find_spirv(sg) : NULL;
    return m ? m : find_spirv(shader_names[id]);
}

static VkResult build(vkb *v, const vkb_spirv *m, vkb_variant var, VkPipeline *out)
{
    /* mm_main.glsl's constants: rows, tokens, workgroup size, mode, glu, unroll, tile */
    uint32_t decode[7] = {v->mv_rows, 1, v->mv_wg, 1, var == VKB_MM_DECODE_GLU, v->mv_unroll, 1};
    uint32_t tiled[7] = {1, 1, 256, 2, 0, 1, VKB_MM_TILE};
    VkSpecializationMapEntry entries[7] = {{0, 0, 4},  {1, 4, 4},  {2, 8, 4}, {3, 12, 4},
                                           {4, 16, 4}, {5, 20, 4}, {6, 24, 4}};
    VkSpecializationInfo spec = {7, entries, sizeof decode, var == VKB_MM_TILED ? tiled : decode};
    VkShaderModuleCreateInfo mci = {
        .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
        .codeSize = m->bytes,
        .pCode = m->code,
    };
    VkShaderModule mod;
    VkResult r = v->f.CreateShaderModule(v->dev, &mci, NULL, &mod);
    if (r != VK_SUCCESS) return r;
    VkComputePipelineCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                  .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                  .module = mod,
                  .pName = "main",
                  .pSpecializationInfo = var != VKB_DEFAULT ? &spec : NULL},
        .layout = v->layout,
    };
    r = v->f.CreateComputePipelines(v->dev, VK_NULL_HANDLE, 1, &ci, NULL, out);
    v->f.DestroyShaderModule(v->dev, mod, NULL);
    return r;
}

VkPipeline vkb_pipeline(vkb *v, vkb_shader_id id, vkb_variant var)
{
    if (v->pipes[id][var]) return v->pipes[id][var];
    const vkb_spirv *m = module_for(v, id);
    if (!m) {
        vkb_record_error(v, "Vulkan: shader %s is not in this build", shader_names[id]);
        return VK_NULL_HANDLE;
    }
    VkResult r = build(v, m, var, &v->pipes[id][var]);
    if (r != VK_SUCCESS) {
        v->pipes[id][var] = VK_NULL_HANDLE;
        vkb_record_error(v, "Vulkan: building the %s pipeline failed (%s)", m->name, vkb_result_name(r));
    }
    return v->pipes[id][var];
}

void vkb_destroy_pipelines(vkb *v)
{
    for (int i = 0; i < VKS_COUNT; i++)
        for (int k = 0; k < VKB_VARIANTS; k++)
            if (v->pipes[i][k]) v->f.DestroyPipeline(v->dev, v->pipes[i][k], NULL);
    memset(v->pipes, 0, sizeof v->pipes);
}
