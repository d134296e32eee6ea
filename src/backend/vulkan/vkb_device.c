/* Opening and closing the device: logical device and queue, command pool,
 * the push-constant pipeline layout, staging and the GELU table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/vulkan/vkb_internal.h"
#include "kernels/cpu/geglu.h"
#include "util/error.h"
#include "util/fp16.h"

/* Every op's push constants fit in this (the minimum Vulkan guarantees). */
#define VKB_PUSH_BYTES 128

static strata_status create_device(vkb *v, strata_error *err)
{
    float prio = 1.0f;
    VkDeviceQueueCreateInfo q = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
        .queueFamilyIndex = v->queue_family,
        .queueCount = 1,
        .pQueuePriorities = &prio,
    };
    VkPhysicalDeviceVulkan12Features f12 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
        .bufferDeviceAddress = VK_TRUE,
    };
    VkPhysicalDeviceVulkan11Features f11 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES,
        .pNext = &f12,
        .storageBuffer16BitAccess = VK_TRUE,
    };
    VkDeviceCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
        .pNext = &f11,
        .queueCreateInfoCount = 1,
        .pQueueCreateInfos = &q,
    };
    VkResult r = v->f.CreateDevice(v->phys, &ci, NULL, &v->dev);
    if (r != VK_SUCCESS) {
        v->dev = VK_NULL_HANDLE;
        return err_set(err, STRATA_E_UNSUPPORTED, "Vulkan: vkCreateDevice failed (%s)", vkb_result_name(r));
    }
    strata_status st = vkb_load_device_fns(v, err);
    if (st != STRATA_OK) { /* vkb_close needs the whole table: destroy here */
        PFN_vkDestroyDevice destroy = (PFN_vkDestroyDevice)v->f.GetDeviceProcAddr(v->dev, "vkDestroyDevice");
        if (destroy) destroy(v->dev, NULL);
        v->dev = VK_NULL_HANDLE;
        return st;
    }
    v->f.GetDeviceQueue(v->dev, v->queue_family, 0, &v->queue);
    return STRATA_OK;
}

/* Name, ids, type and whether the shaders' subgroup variants can run:
 * subgroup arithmetic in compute shaders, unless STRATA_VK_SUBGROUP=0. */
static void fill_info(vkb *v)
{
    VkPhysicalDeviceSubgroupProperties sg = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceProperties2 p = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &sg};
    v->f.GetPhysicalDeviceProperties2(v->phys, &p);
    p.properties.deviceName[VK_MAX_PHYSICAL_DEVICE_NAME_SIZE - 1] = '\0';
    snprintf(v->info.name, sizeof v->info.name, "%s", p.properties.deviceName);
    v->info.vendor_id = p.properties.vendorID;
    v->info.device_id = p.properties.deviceID;
    v->info.is_cpu = p.properties.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
    const char *env = getenv("STRATA_VK_SUBGROUP");
    bool want = !(env && env[0] == '0');
    VkSubgroupFeatureFlags ops = VK_SUBGROUP_FEATURE_BASIC_BIT | VK_SUBGROUP_FEATURE_ARITHMETIC_BIT;
    v->info.subgroup_arith = want && (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                             (sg.supportedOperations & ops) == ops;
}

static strata_status create_commands(vkb *v, strata_error *err)
{
    VkCommandPoolCreateInfo pci = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
        .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
        .queueFamilyIndex = v->queue_family,
    };
    VkResult r = v->f.CreateCommandPool(v->dev, &pci, NULL, &v->pool);
    VkCommandBufferAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = v->pool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = 2,
    };
    if (r == VK_SUCCESS) r = v->f.AllocateCommandBuffers(v->dev, &ai, v->xfer_cmd);
    if (r != VK_SUCCESS)
        return err_set(err, STRATA_E_UNSUPPORTED, "Vulkan: command buffers: %s", vkb_result_name(r));
    VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    for (int i = 0; i < 2 && r == VK_SUCCESS; i++) r = v->f.CreateFence(v->dev, &fci, NULL, &v->xfer_fence[i]);
    if (r != VK_SUCCESS) return err_set(err, STRATA_E_UNSUPPORTED, "Vulkan: fences: %s", vkb_result_name(r));
    return vkb_ops_init(v, err);
}

static strata_status create_layout(vkb *v, strata_error *err)
{
    VkPushConstantRange range = {.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .size = VKB_PUSH_BYTES};
    VkPipelineLayoutCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
        .pushConstantRangeCount = 1,
        .pPushConstantRanges = &range,
    };
    VkResult r = v->f.CreatePipelineLayout(v->dev, &ci, NULL, &v->layout);
    if (r != VK_SUCCESS)
        return err_set(err, STRATA_E_UNSUPPORTED, "Vulkan: pipeline layout: %s", vkb_result_name(r));
    return STRATA_OK;
}

/* The GELU of every f16 input, exactly the CPU's table (same gelu_tanh,
 * same rounding), so vkb_glu's gelu matches geglu_f16 bit for bit. */
static strata_status upload_gelu_table(vkb *v, strata_error *err)
{
    uint16_t *t = malloc(65536 * sizeof *t); /* [65536] f16 by input bits */
    if (!t) return err_set(err, STRATA_E_NOMEM, "Vulkan: no memory for the GELU table");
    for (uint32_t h = 0; h < 65536; h++) t[h] = f32_to_fp16(gelu_tanh(fp16_to_f32((uint16_t)h)));
    strata_status st = vkb_alloc_internal(v, 65536 * sizeof *t, false, false, &v->gelu_table, err);
    if (st == STRATA_OK) st = vkb_upload(v, v->gelu_table, 0, t, 65536 * sizeof *t, err);
    free(t);
    return st;
}

/* An unsigned number from the environment, or def when unset or not one of
 * the allowed values (0-terminated). */
static uint32_t env_choice(const char *name, uint32_t def, const uint32_t *allowed)
{
    const char *s = getenv(name);
    if (!s || !*s) return def;
    char *end;
    unsigned long n = strtoul(s, &end, 10);
    for (; *allowed; allowed++)
        if (!*end && n == *allowed) return (uint32_t)n;
    fprintf(stderr, "strata: %s=%s ignored (not one of the allowed values)\n", name, s);
    return def;
}

/* The decode matmul's shape (tunable for measurements) and the test hooks
 * from the environment. */
static void read_settings(vkb *v)
{
    static const uint32_t rows[] = {1, 2, 4, 8, 0}, wg[] = {32, 64, 128, 256, 0}, unroll[] = {1, 2, 4, 0};
    v->mv_rows = env_choice("STRATA_VK_MV_ROWS", VKB_MM_DECODE_ROWS, rows);
    v->mv_wg = env_choice("STRATA_VK_MV_WG", VKB_MM_DECODE_WG, wg);
    v->mv_unroll = env_choice("STRATA_VK_MV_UNROLL", VKB_MM_DECODE_UNROLL, unroll);
    const char *t = getenv("STRATA_VK_TILED");
    v->tiled = !(t && t[0] == '0');
    v->fail_above = UINT64_MAX;
    const char *f = getenv("STRATA_VK_FAIL_ABOVE");
    if (f && *f) v->fail_above = strtoull(f, NULL, 10);
}

static strata_status open_steps(vkb *v, int index, bool allow_cpu, strata_error *err)
{
    strata_status st = vkb_load_instance(v, err);
    if (st == STRATA_OK) st = vkb_select_device(v, index, allow_cpu, err);
    if (st == STRATA_OK) st = create_device(v, err);
    if (st != STRATA_OK) return st;
    fill_info(v);
    read_settings(v);
    vkb_memory_init(v);
    st = create_commands(v, err);
    if (st == STRATA_OK) st = create_layout(v, err);
    if (st == STRATA_OK) st = vkb_transfer_init(v, err);
    if (st == STRATA_OK) st = upload_gelu_table(v, err);
    if (st == STRATA_OK) vkb_prof_init(v);
    return st;
}

strata_status vkb_open(int index, bool allow_cpu, vkb **out, strata_error *err)
{
    *out = NULL;
    vkb *v = calloc(1, sizeof *v);
    if (!v) return err_set(err, STRATA_E_NOMEM, "Vulkan: out of memory");
    strata_status st = open_steps(v, index, allow_cpu, err);
    if (st != STRATA_OK) {
        vkb_close(v);
        return st;
    }
    *out = v;
    return STRATA_OK;
}

strata_status vkb_peek(int index, bool allow_cpu, vkb_info *out, int *phys_index, strata_error *err)
{
    vkb *v = calloc(1, sizeof *v); /* the physical device's queries only: no VkDevice */
    if (!v) return err_set(err, STRATA_E_NOMEM, "Vulkan: out of memory");
    strata_status st = vkb_load_instance(v, err);
    if (st == STRATA_OK) st = vkb_select_device(v, index, allow_cpu, err);
    if (st == STRATA_OK) {
        fill_info(v);
        vkb_memory_init(v);
        *out = v->info;
        *phys_index = v->phys_index;
    }
    free(v);
    return st;
}

void vkb_close(vkb *v)
{
    if (!v) return;
    if (v->dev) {
        v->f.DeviceWaitIdle(v->dev);
        vkb_prof_close(v);
        vkb_destroy_pipelines(v);
        vkb_free_all(v);
        if (v->layout) v->f.DestroyPipelineLayout(v->dev, v->layout, NULL);
        vkb_ops_close(v);
        for (int i = 0; i < 2; i++)
            if (v->xfer_fence[i]) v->f.DestroyFence(v->dev, v->xfer_fence[i], NULL);
        if (v->pool) v->f.DestroyCommandPool(v->dev, v->pool, NULL);
        v->f.DestroyDevice(v->dev, NULL);
    }
    free(v);
}

const vkb_info *vkb_get_info(const vkb *v) { return &v->info; }
void vkb_get_stats(const vkb *v, vkb_stats *out) { *out = v->stats; }
