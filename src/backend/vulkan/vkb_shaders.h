/* The SPIR-V of src/backend/vulkan/shaders/NAME.comp, embedded at build time
 * (the Makefile runs glslc, then embed_spirv.sh writes the table into
 * $(BUILD)/gen/vk_shaders.c). A shader's name is its file name without
 * .comp; the subgroup-arithmetic variant of one that reduces is NAME_sg. */
#ifndef STRATA_BACKEND_VULKAN_VKB_SHADERS_H
#define STRATA_BACKEND_VULKAN_VKB_SHADERS_H

#include <stddef.h>
#include <stdint.h>

typedef struct vkb_spirv {
    const char *name;
    const uint32_t *code;
    size_t bytes;
} vkb_spirv;

extern const vkb_spirv vkb_spirv_table[];
extern const size_t vkb_spirv_count;

#endif
