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
    X(DestroyFence) X(ResetFences) X(WaitForFences) X(QueueSubmit)             \
    X(CreateQueryPool) X(DestroyQueryPool) X(CmdResetQueryPool)                \
    X(CmdWriteTimestamp) X(GetQueryPoolResults)

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
    VKS_GLU_SILU, VKS_GLU_GELU, VKS_KV_STORE, VKS_ROPE_KV, VKS_MOE_GATHER, VKS_MOE_COMBINE,
    VKS_COUNT
} vkb_shader_id;

/* Pipeline variants of a shader: its defaults, or the matmul shaders
 * specialized for one token (mm_main.glsl's decode path: constant_id 0 =
 * rows per workgroup, 1 = tokens (1), 2 = the workgroup size, 3 = the
 * mode, 4 = gate and up rows together, 5 = units in flight), without or
 * with the GLU pairing, or for tiles of many tokens (mode 2, 6 = the tile);
 * other shaders have no specialization constants. */
typedef enum vkb_variant { VKB_DEFAULT, VKB_MM_DECODE, VKB_MM_DECODE_GLU, VKB_MM_TILED, VKB_VARIANTS } vkb_variant;
#define VKB_MM_ROWS 4u          /* mm_main.glsl's defaults: rows ... */
#define VKB_MM_TOKENS 8u        /* ... and tokens per workgroup (batches) */
/* The decode path's rows per workgroup (STRATA_VK_MV_ROWS: 1, 2, 4, 8) ...
 * On an H200, 7B Q4_K_M decode: 4 x 64 174 tok/s, 4 x 128 175, 2 x 64 169,
 * 4 x 32 141, 8 x 128 147, 8 x 64 128, 1 x 64 137; unroll 2 -16 %. */
#define VKB_MM_DECODE_ROWS 4u
#define VKB_MM_DECODE_WG 64u    /* ... invocations (STRATA_VK_MV_WG: 32, 64, 128 or 256) ... */
#define VKB_MM_DECODE_UNROLL 1u /* ... and units in flight per invocation (STRATA_VK_MV_UNROLL: 1, 2, 4) */
#define VKB_MM_TILE 64u         /* the tiled path's rows and tokens per workgroup ... */
#define VKB_MM_TILED_MIN 32u    /* ... taken from this many tokens on (STRATA_VK_TILED=0: never) */

/* Timestamps of one recording at most, with STRATA_VK_PROFILE. */
#define VKB_PROF_MAX 4096u
#define VKB_PROF_COPY (VKS_COUNT * VKB_VARIANTS) /* the label of staged copies */

typedef struct vkb_prof {
    VkQueryPool pool;          /* VK_NULL_HANDLE: not profiling */
    double period_ns;
    uint32_t n;                /* timestamps written in this recording */
    uint16_t label[VKB_PROF_MAX]; /* what ended at timestamp i (shader * VKB_VARIANTS + variant) */
    uint64_t ts[VKB_PROF_MAX];    /* the timestamps read back */
    double ns[VKB_PROF_COPY + 1];
    uint64_t count[VKB_PROF_COPY + 1];
    double gpu_ns, wall_ns;    /* first to last timestamp, and vkb_run's wall time, summed */
    uint64_t runs;
} vkb_prof;

/* A staged download: where vkb_run copies it. */
#define VKB_MAX_STAGED 16u
typedef struct vkb_staged {
    void *dst;
    uint64_t off, n; /* in the download staging half */
} vkb_staged;

/* Upload/download staging: two host-visible halves so that filling one
 * overlaps the device's copy out of the other. */
#define VKB_STAGING_BYTES (8u << 20) /* per half */

/* Recordings submitted by vkb_submit that may be in flight at once. */
#define VKB_RING 8u

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
    int phys_index; /* phys's index in the loader's list */
    VkDevice dev;
    VkQueue queue;
    uint32_t queue_family;
    uint32_t mem_device, mem_host; /* memory type indices */
    uint64_t max_alloc;            /* maxMemoryAllocationSize */
    VkCommandPool pool;
    /* The ops' command buffers, a ring: recording n (from vkb_begin) goes
     * into ops_cmd[n % VKB_RING] and its submission is ticket n + 1, so
     * vkb_submit can leave a recording running while the next one records. */
    VkCommandBuffer ops_cmd[VKB_RING];
    VkFence ops_fence[VKB_RING];
    uint64_t ops_ticket[VKB_RING]; /* the submission in flight in that slot (0: none) */
    uint64_t submitted, completed; /* tickets: the last submitted, the last known finished */
    VkCommandBuffer cmd;           /* the slot being recorded */
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
    uint64_t device_bytes, device_peak; /* now, and the most since vkb_open */
    uint64_t cap_bytes;            /* vkb_set_cap (0: none) */
    uint64_t fail_above;           /* vkb_fail_above */
    /* staged copies of the recording: uploads from staging[0], downloads
     * into staging[1] (both idle while recording) */
    uint64_t up_used, down_used;
    bool ops_since_begin;          /* a dispatch or copy was recorded since vkb_begin */
    bool upload_barrier;           /* a staged upload awaits its barrier before the next dispatch */
    const vkb_buf *last_upload;    /* the destination of the last staged upload */
    vkb_staged staged[VKB_MAX_STAGED];
    uint32_t n_staged;
    uint32_t mv_rows, mv_wg, mv_unroll; /* the decode matmul's shape */
    bool tiled;                    /* the tiled path for batches of VKB_MM_TILED_MIN tokens or more */
    vkb_stats stats;
    vkb_prof prof;
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
const char *vkb_shader_name(vkb_shader_id id);
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
strata_status vkb_ops_init(vkb *v, strata_error *err); /* the ops' command buffers and fences */
void vkb_ops_close(vkb *v);
/* At vkb_begin: the ring slot of the next submission (waiting for the one
 * in flight there) becomes v->cmd and v->fence. */
strata_status vkb_ops_slot(vkb *v, strata_error *err);

/* vkb_transfer.c */
strata_status vkb_transfer_init(vkb *v, strata_error *err);
/* Copies the staged downloads of the recording that just ran to their
 * destinations. */
void vkb_staged_finish(vkb *v);

/* vkb_profile.c (STRATA_VK_PROFILE) */
void vkb_prof_init(vkb *v);
void vkb_prof_begin(vkb *v);             /* at vkb_begin */
void vkb_prof_mark(vkb *v, uint32_t label); /* after a dispatch or copy */
void vkb_prof_collect(vkb *v, double wall_ns); /* after vkb_run's wait */
void vkb_prof_close(vkb *v);             /* prints the table, frees the pool */

/* A memory barrier in the ops' command buffer (counted). */
void vkb_cmd_barrier(vkb *v, VkPipelineStageFlags src, VkAccessFlags src_access, VkPipelineStageFlags dst,
                     VkAccessFlags dst_access);

/* A VkResult's name for messages. */
const char *vkb_result_name(VkResult r);

#endif
