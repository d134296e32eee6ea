/* Host->device copy bandwidth of a Vulkan device: a host-visible staging
 * buffer copied into a device-local buffer with vkCmdCopyBuffer on a
 * transfer queue, timed over repeated submissions. */
#include <stdio.h>
#include <string.h>

#include "hw/hw_internal.h"
#include "hw/hw_vk.h"

#define FENCE_TIMEOUT_NS 20000000000ull
#define MIN_SECONDS 0.3
#define MAX_ROUNDS 32

typedef struct vk_dev_fns {
    PFN_vkDestroyDevice DestroyDevice;
    PFN_vkGetDeviceQueue GetDeviceQueue;
    PFN_vkCreateBuffer CreateBuffer;
    PFN_vkDestroyBuffer DestroyBuffer;
    PFN_vkGetBufferMemoryRequirements GetBufferMemoryRequirements;
    PFN_vkAllocateMemory AllocateMemory;
    PFN_vkFreeMemory FreeMemory;
    PFN_vkBindBufferMemory BindBufferMemory;
    PFN_vkMapMemory MapMemory;
    PFN_vkUnmapMemory UnmapMemory;
    PFN_vkCreateCommandPool CreateCommandPool;
    PFN_vkDestroyCommandPool DestroyCommandPool;
    PFN_vkAllocateCommandBuffers AllocateCommandBuffers;
    PFN_vkBeginCommandBuffer BeginCommandBuffer;
    PFN_vkEndCommandBuffer EndCommandBuffer;
    PFN_vkCmdCopyBuffer CmdCopyBuffer;
    PFN_vkCreateFence CreateFence;
    PFN_vkDestroyFence DestroyFence;
    PFN_vkResetFences ResetFences;
    PFN_vkQueueSubmit QueueSubmit;
    PFN_vkWaitForFences WaitForFences;
} vk_dev_fns;

typedef struct copy_ctx {
    hw_vk *vk;
    VkPhysicalDevice phys;
    VkDevice dev;
    vk_dev_fns f;
    uint32_t family;
    VkQueue queue;
    VkBuffer src, dst;
    VkDeviceMemory src_mem, dst_mem;
    VkCommandPool pool;
    VkCommandBuffer cmd;
    VkFence fence;
} copy_ctx;

#define DEV_FN(c, name) \
    ((c)->f.name = (__typeof__((c)->f.name))(c)->vk->GetDeviceProcAddr((c)->dev, "vk" #name))

static bool load_device_fns(copy_ctx *c)
{
    return DEV_FN(c, DestroyDevice) && DEV_FN(c, GetDeviceQueue) && DEV_FN(c, CreateBuffer) &&
           DEV_FN(c, DestroyBuffer) && DEV_FN(c, GetBufferMemoryRequirements) &&
           DEV_FN(c, AllocateMemory) && DEV_FN(c, FreeMemory) && DEV_FN(c, BindBufferMemory) &&
           DEV_FN(c, MapMemory) && DEV_FN(c, UnmapMemory) && DEV_FN(c, CreateCommandPool) &&
           DEV_FN(c, DestroyCommandPool) && DEV_FN(c, AllocateCommandBuffers) &&
           DEV_FN(c, BeginCommandBuffer) && DEV_FN(c, EndCommandBuffer) &&
           DEV_FN(c, CmdCopyBuffer) && DEV_FN(c, CreateFence) && DEV_FN(c, DestroyFence) &&
           DEV_FN(c, ResetFences) && DEV_FN(c, QueueSubmit) && DEV_FN(c, WaitForFences);
}

/* A queue family for uploads: a dedicated transfer (DMA) family when there
 * is one, as a streaming engine would use, else any family that copies. */
static bool pick_family(copy_ctx *c)
{
    VkQueueFamilyProperties fam[32];
    uint32_t n = 32;
    c->vk->GetPhysicalDeviceQueueFamilyProperties(c->phys, &n, fam);
    if (n > 32) n = 32;
    int any = -1, dedicated = -1;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t fl = fam[i].queueFlags;
        if (!fam[i].queueCount) continue;
        if (fl & (VK_QUEUE_TRANSFER_BIT | VK_QUEUE_GRAPHICS_BIT | VK_QUEUE_COMPUTE_BIT))
            if (any < 0) any = (int)i;
        if ((fl & VK_QUEUE_TRANSFER_BIT) && !(fl & (VK_QUEUE_GRAPHICS_BIT | VK_QUEUE_COMPUTE_BIT)) && dedicated < 0)
            dedicated = (int)i;
    }
    if (any < 0) return false;
    c->family = (uint32_t)(dedicated >= 0 ? dedicated : any);
    return true;
}

static bool create_device(copy_ctx *c)
{
    float prio = 1.0f;
    VkDeviceQueueCreateInfo q = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                                 .queueFamilyIndex = c->family,
                                 .queueCount = 1,
                                 .pQueuePriorities = &prio};
    VkDeviceCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .queueCreateInfoCount = 1,
                             .pQueueCreateInfos = &q};
    if (!c->vk->CreateDevice || !c->vk->GetDeviceProcAddr) return false;
    if (c->vk->CreateDevice(c->phys, &ci, NULL, &c->dev) != VK_SUCCESS) {
        c->dev = NULL;
        return false;
    }
    if (!load_device_fns(c)) return false;
    c->f.GetDeviceQueue(c->dev, c->family, 0, &c->queue);
    return c->queue != NULL;
}

/* A memory type allowed by bits with all of `want` (preferring none of `avoid`). */
static int memory_type(copy_ctx *c, uint32_t bits, uint32_t want, uint32_t avoid)
{
    VkPhysicalDeviceMemoryProperties mp;
    memset(&mp, 0, sizeof mp);
    c->vk->GetPhysicalDeviceMemoryProperties(c->phys, &mp);
    int fallback = -1;
    for (uint32_t i = 0; i < mp.memoryTypeCount && i < VK_MAX_MEMORY_TYPES; i++) {
        uint32_t fl = mp.memoryTypes[i].propertyFlags;
        if (!(bits & (1u << i)) || (fl & want) != want) continue;
        if (!(fl & avoid)) return (int)i;
        if (fallback < 0) fallback = (int)i;
    }
    return fallback;
}

static bool make_buffer(copy_ctx *c, uint64_t bytes, uint32_t usage, uint32_t want, uint32_t avoid,
                        VkBuffer *buf, VkDeviceMemory *mem)
{
    VkBufferCreateInfo bi = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, .size = bytes, .usage = usage};
    if (c->f.CreateBuffer(c->dev, &bi, NULL, buf) != VK_SUCCESS) {
        *buf = 0;
        return false;
    }
    VkMemoryRequirements req;
    memset(&req, 0, sizeof req);
    c->f.GetBufferMemoryRequirements(c->dev, *buf, &req);
    int type = memory_type(c, req.memoryTypeBits, want, avoid);
    if (type < 0) return false;
    VkMemoryAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .allocationSize = req.size,
                               .memoryTypeIndex = (uint32_t)type};
    if (c->f.AllocateMemory(c->dev, &ai, NULL, mem) != VK_SUCCESS) {
        *mem = 0;
        return false;
    }
    return c->f.BindBufferMemory(c->dev, *buf, *mem, 0) == VK_SUCCESS;
}

static bool fill_staging(copy_ctx *c, uint64_t bytes)
{
    void *ptr = NULL;
    if (c->f.MapMemory(c->dev, c->src_mem, 0, bytes, 0, &ptr) != VK_SUCCESS || !ptr) return false;
    memset(ptr, 0x3c, bytes);
    c->f.UnmapMemory(c->dev, c->src_mem);
    return true;
}

static bool record(copy_ctx *c, uint64_t bytes)
{
    VkCommandPoolCreateInfo pi = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO, .queueFamilyIndex = c->family};
    if (c->f.CreateCommandPool(c->dev, &pi, NULL, &c->pool) != VK_SUCCESS) {
        c->pool = 0;
        return false;
    }
    VkCommandBufferAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                      .commandPool = c->pool, .level = 0, .commandBufferCount = 1};
    if (c->f.AllocateCommandBuffers(c->dev, &ai, &c->cmd) != VK_SUCCESS) return false;
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    if (c->f.BeginCommandBuffer(c->cmd, &bi) != VK_SUCCESS) return false;
    VkBufferCopy region = {0, 0, bytes};
    c->f.CmdCopyBuffer(c->cmd, c->src, c->dst, 1, &region);
    if (c->f.EndCommandBuffer(c->cmd) != VK_SUCCESS) return false;
    VkFenceCreateInfo fi = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    if (c->f.CreateFence(c->dev, &fi, NULL, &c->fence) != VK_SUCCESS) {
        c->fence = 0;
        return false;
    }
    return true;
}

static bool submit_wait(copy_ctx *c)
{
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &c->cmd};
    if (c->f.ResetFences(c->dev, 1, &c->fence) != VK_SUCCESS) return false;
    if (c->f.QueueSubmit(c->queue, 1, &si, c->fence) != VK_SUCCESS) return false;
    return c->f.WaitForFences(c->dev, 1, &c->fence, 1, FENCE_TIMEOUT_NS) == VK_SUCCESS;
}

static double time_copies(copy_ctx *c, uint64_t bytes)
{
    if (!submit_wait(c)) return 0; /* warm-up: first-touch and paging */
    double best = 0, start = hw_now();
    for (int round = 0; round < MAX_ROUNDS; round++) {
        double t0 = hw_now();
        if (!submit_wait(c)) return 0;
        double dt = hw_now() - t0;
        if (dt > 0 && (double)bytes / dt > best) best = (double)bytes / dt;
        if (hw_now() - start > MIN_SECONDS && round >= 2) break;
    }
    return best;
}

static void destroy(copy_ctx *c)
{
    if (!c->dev) return;
    if (c->f.DestroyFence && c->fence) c->f.DestroyFence(c->dev, c->fence, NULL);
    if (c->f.DestroyCommandPool && c->pool) c->f.DestroyCommandPool(c->dev, c->pool, NULL);
    if (c->f.DestroyBuffer && c->src) c->f.DestroyBuffer(c->dev, c->src, NULL);
    if (c->f.DestroyBuffer && c->dst) c->f.DestroyBuffer(c->dev, c->dst, NULL);
    if (c->f.FreeMemory && c->src_mem) c->f.FreeMemory(c->dev, c->src_mem, NULL);
    if (c->f.FreeMemory && c->dst_mem) c->f.FreeMemory(c->dev, c->dst_mem, NULL);
    if (c->f.DestroyDevice) c->f.DestroyDevice(c->dev, NULL);
}

static double fail(char *why, size_t why_len, const char *msg)
{
    snprintf(why, why_len, "%s", msg);
    return 0;
}

static double measure(copy_ctx *c, uint64_t bytes, char *why, size_t why_len)
{
    if (!pick_family(c)) return fail(why, why_len, "no queue family can copy");
    if (!create_device(c)) return fail(why, why_len, "vkCreateDevice failed");
    uint32_t host = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    if (!make_buffer(c, bytes, VK_BUFFER_USAGE_TRANSFER_SRC_BIT, host, 0, &c->src, &c->src_mem) ||
        !make_buffer(c, bytes, VK_BUFFER_USAGE_TRANSFER_DST_BIT, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT,
                     VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT, &c->dst, &c->dst_mem))
        return fail(why, why_len, "cannot allocate the staging and device buffers");
    if (!fill_staging(c, bytes)) return fail(why, why_len, "vkMapMemory failed");
    if (!record(c, bytes)) return fail(why, why_len, "cannot record the copy");
    double bw = time_copies(c, bytes);
    if (bw <= 0) fail(why, why_len, "the copy did not complete");
    return bw;
}

double hw_vulkan_measure_h2d(int index, uint64_t bytes, char *why, size_t why_len)
{
    hw_vk vk;
    if (hw_vk_open(&vk, why, why_len) != HW_VK_OK) return 0;
    VkPhysicalDevice devs[HW_MAX_GPUS];
    uint32_t n = hw_vk_devices(&vk, devs, HW_MAX_GPUS);
    double bw = 0;
    if (index < 0 || (uint32_t)index >= n) {
        snprintf(why, why_len, "Vulkan device %d not found", index);
    } else {
        copy_ctx c;
        memset(&c, 0, sizeof c);
        c.vk = &vk;
        c.phys = devs[index];
        bw = measure(&c, bytes, why, why_len);
        destroy(&c);
    }
    hw_vk_close(&vk);
    return bw;
}
