/* Internals of the Vulkan device layer shared by its files: the function
 * table loaded from libvulkan.so.1, the device state and the helpers each
 * file offers the others. */
#ifndef STRATA_BACKEND_VULKAN_VKB_INTERNAL_H
#define STRATA_BACKEND_VULKAN_VKB_INTERNAL_H

#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

#include "backend/vulkan/vkb.h"

/* Instance-level functions (vkGetInstanceProcAddr on the instance). */
#define VKB_INSTANCE_FNS(X)                                                    \
    X(DestroyInstance) X(EnumeratePhysicalDevices) X(GetPhysicalDeviceProperties2) \
    X(GetPhysicalDeviceFeatures2) X(GetPhysicalDeviceMemoryProperties)         \
    X(GetPhysicalDeviceMemoryProperties2) X(GetPhysicalDeviceQueueFamilyProperties) \
    X(EnumerateDeviceExtensionProperties) X(CreateDevice) X(GetDeviceProcAddr)

/* Device-level functions (vkGetDeviceProcAddr). */
#define VKB_DEVICE_FNS(X)                                                      \
    X(DestroyDevice) X(GetDeviceQueue) X(DeviceWaitIdle) X(CreateBuffer)       \
    X(DestroyBuffer) X(GetBufferMemoryRequirements) X(AllocateMemory)          \
    X(FreeMemory) X(BindBufferMemory) X(MapMemory) X(UnmapMemory)              \
    X(GetBufferDeviceAddress) X(CreateShaderModule) X(DestroyShaderModule)     \
    X(CreatePipelineLayout) X(DestroyPipelineLayout) X(CreateComputePipelines) \
    X(DestroyPipeline) X(CreateCommandPool) X(DestroyCommandPool)              \
    X(AllocateCommandBuffers) X(BeginCommandBuffer) X(EndCommandBuffer)        \
    X(ResetCommandBuffer) X(CmdBindPipeline) X(CmdPushConstants)               \
    X(CmdDispatch) X(CmdPipelineBarrier) X(CmdCopyBuffer) X(CreateFence)       \
    X(DestroyFence) X(ResetFences) X(WaitForFences) X(QueueSubmit)

typedef struct vkb_fns {
    PFN_vkGetInstanceProcAddr GetInstanceProcAddr;
#define VKB_FN_FIELD(name) PFN_vk##name name;
    VKB_INSTANCE_FNS(VKB_FN_FIELD)
    VKB_DEVICE_FNS(VKB_FN_FIELD)
#undef VKB_FN_FIELD
} vkb_fns;

/* The shaders (names of the embedded SPIR-V; the subgroup variant of the
 * reducing ones is NAME_sg). Keep in step with vkb_shader_names. */
typedef enum vkb_shader_id {
    VKS_MM_F32, VKS_MM_F16, VKS_MM_BF16, VKS_MM_Q8_0, VKS_MM_Q4_0, VKS_MM_Q4_1,
    VKS_MM_Q5_0, VKS_MM_Q5_1, VKS_MM_Q4_K, VKS_MM_Q5_K, VKS_MM_Q6_K,
    VKS_RMSNORM, VKS_ATTENTION, VKS_ADD, VKS_ADD_ROWS, VKS_SCALE, VKS_ROPE,
    VKS_GLU_SILU, VKS_GLU_GELU, VKS_KV_STORE,
    VKS_COUNT
} vkb_shader_id;

/* Pipeline variants of a shader: its defaults, or the matmul shaders
 * specialized for one token (constant_id 0 = rows, 1 = tokens per
 * workgroup; other shaders have no specialization constants). */
typedef enum vkb_variant { VKB_DEFAULT, VKB_MM_DECODE, VKB_VARIANTS } vkb_variant;
#define VKB_MM_ROWS 4u          /* mm_main.glsl's defaults: rows ... */
#define VKB_MM_TOKENS 8u        /* ... and tokens per workgroup */
#define VKB_MM_DECODE_ROWS 4u   /* the decode variant's (1 token; 4 beat 1 and 2 on an H200) */

/* Upload/download staging: two host-visible halves so that filling one
 * overlaps the device's copy out of the other. */
#define VKB_STAGING_BYTES (8u << 20) /* per half */

/* Wait for one submission at most this long (a wedged device is an error,
 * not a hang). */
#define VKB_TIMEOUT_NS (120ull * 1000000000ull)

struct vkb_buf {
    VkBuffer buf;
    VkDeviceMemory mem;
    uint64_t size, addr;
    void *map;            /* host-visible buffers */
    bool counted;         /* device-local and the caller's: in device_bytes */
    vkb_buf *prev, *next; /* every live buffer, so vkb_close frees them all */
};

struct vkb {
    vkb_fns f;
    VkInstance instance; /* the process's (vkb_loader.c) */
    VkPhysicalDevice phys;
    VkDevice dev;
    VkQueue queue;
    uint32_t queue_family;
    uint32_t mem_device, mem_host; /* memory type indices */
    uint64_t max_alloc;            /* maxMemoryAllocationSize */
    VkCommandPool pool;
    VkCommandBuffer cmd;           /* the ops' command buffer */
    VkFence fence;
    VkCommandBuffer xfer_cmd[2];   /* staging copies, one per half */
    VkFence xfer_fence[2];
    bool xfer_pending[2];
    vkb_buf *staging[2];
    VkPipelineLayout layout;       /* push constants only */
    VkPipeline pipes[VKS_COUNT][VKB_VARIANTS]; /* created on first use */
    bool recording, lost;
    strata_error rec_err;          /* first error of the recording, for vkb_run */
    vkb_buf *gelu_table;           /* [65536] f16: GELU of every f16 input */
    vkb_buf *buffers;              /* list head */
    uint64_t device_bytes;
    vkb_info info;
};

/* vkb_loader.c: the process's loader and instance (made once, kept), the
 * function tables. */
strata_status vkb_load_instance(vkb *v, strata_error *err);
strata_status vkb_load_device_fns(vkb *v, strata_error *err);

/* vkb_select.c: the physical device for vkb_open's index / allow_cpu. */
strata_status vkb_select_device(vkb *v, int index, bool allow_cpu, strata_error *err);

/* vkb_memory.c */
strata_status vkb_alloc_internal(vkb *v, uint64_t bytes, bool host_visible, bool counted, vkb_buf **out,
                                 strata_error *err);
void vkb_memory_init(vkb *v); /* memory types, budget, max allocation */
void vkb_free_all(vkb *v);

/* vkb_pipeline.c */
VkPipeline vkb_pipeline(vkb *v, vkb_shader_id id, vkb_variant var); /* NULL (rec_err set) on failure */
void vkb_destroy_pipelines(vkb *v);

/* vkb_record.c: records one dispatch of `groups` workgroups (folded into x
 * and y), gz in z, with the push constants pc. Invalid arguments and
 * pipeline failures go to rec_err via vkb_record_error. */
void vkb_dispatch(vkb *v, vkb_shader_id id, const void *pc, uint32_t pc_bytes, uint64_t groups, uint32_t gz);
void vkb_dispatch_variant(vkb *v, vkb_shader_id id, vkb_variant var, const void *pc, uint32_t pc_bytes,
                          uint64_t groups, uint32_t gz);
bool vkb_record_check(vkb *v, const char *op); /* false (and rec_err) when not recording */
void vkb_record_error(vkb *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Submits an ended command buffer with a fence; _wait also waits for it. */
strata_status vkb_submit(vkb *v, VkCommandBuffer cmd, VkFence fence, const char *what, strata_error *err);
strata_status vkb_submit_wait(vkb *v, VkCommandBuffer cmd, VkFence fence, const char *what, strata_error *err);
strata_status vkb_wait_fence(vkb *v, VkFence fence, const char *what, strata_error *err);

/* vkb_transfer.c */
strata_status vkb_transfer_init(vkb *v, strata_error *err);

/* A VkResult's name for messages. */
const char *vkb_result_name(VkResult r);

#endif
