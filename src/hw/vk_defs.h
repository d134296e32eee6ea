/* The few Vulkan types and entry points the probe uses, declared from the
 * Vulkan specification (strata has no build dependency on Vulkan headers;
 * the loader is opened with dlopen at run time). Structures that strata
 * only receives are declared with their leading members plus room for the
 * rest, never smaller than the real ones. Linux calling convention. */
#ifndef STRATA_HW_VK_DEFS_H
#define STRATA_HW_VK_DEFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef int32_t VkResult;             /* VK_SUCCESS = 0, errors negative */
typedef uint32_t VkBool32;
typedef uint64_t VkDeviceSize;
typedef struct VkInstance_T *VkInstance;
typedef struct VkPhysicalDevice_T *VkPhysicalDevice;
typedef struct VkDevice_T *VkDevice;
typedef struct VkQueue_T *VkQueue;
typedef struct VkCommandBuffer_T *VkCommandBuffer;
typedef uint64_t VkBuffer;            /* non-dispatchable handles */
typedef uint64_t VkDeviceMemory;
typedef uint64_t VkCommandPool;
typedef uint64_t VkFence;
typedef void (*PFN_vkVoidFunction)(void);

#define VK_SUCCESS 0
#define VK_INCOMPLETE 5
#define VK_MAKE_API_VERSION(major, minor, patch) \
    (((uint32_t)(major) << 22) | ((uint32_t)(minor) << 12) | (uint32_t)(patch))
#define VK_API_MAJOR(v) (((uint32_t)(v) >> 22) & 0x7fu)
#define VK_API_MINOR(v) (((uint32_t)(v) >> 12) & 0x3ffu)
#define VK_API_PATCH(v) ((uint32_t)(v)&0xfffu)
#define VK_MAX_MEMORY_TYPES 32
#define VK_MAX_MEMORY_HEAPS 16

/* VkStructureType values */
enum {
    VK_ST_APPLICATION_INFO = 0,
    VK_ST_INSTANCE_CREATE_INFO = 1,
    VK_ST_DEVICE_QUEUE_CREATE_INFO = 2,
    VK_ST_DEVICE_CREATE_INFO = 3,
    VK_ST_SUBMIT_INFO = 4,
    VK_ST_MEMORY_ALLOCATE_INFO = 5,
    VK_ST_FENCE_CREATE_INFO = 8,
    VK_ST_BUFFER_CREATE_INFO = 12,
    VK_ST_COMMAND_POOL_CREATE_INFO = 39,
    VK_ST_COMMAND_BUFFER_ALLOCATE_INFO = 40,
    VK_ST_COMMAND_BUFFER_BEGIN_INFO = 42,
    VK_ST_PHYSICAL_DEVICE_PROPERTIES_2 = 1000059001,
    VK_ST_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2 = 1000059006,
    VK_ST_PHYSICAL_DEVICE_DRIVER_PROPERTIES = 1000196000,
    VK_ST_PHYSICAL_DEVICE_PCI_BUS_INFO_PROPERTIES_EXT = 1000212000,
    VK_ST_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT = 1000237000,
};

/* VkPhysicalDeviceType */
enum { VK_PDT_OTHER = 0, VK_PDT_INTEGRATED = 1, VK_PDT_DISCRETE = 2, VK_PDT_VIRTUAL = 3, VK_PDT_CPU = 4 };

#define VK_MEMORY_HEAP_DEVICE_LOCAL 0x1u
#define VK_MEMORY_PROPERTY_DEVICE_LOCAL 0x1u
#define VK_MEMORY_PROPERTY_HOST_VISIBLE 0x2u
#define VK_MEMORY_PROPERTY_HOST_COHERENT 0x4u
#define VK_QUEUE_GRAPHICS 0x1u
#define VK_QUEUE_COMPUTE 0x2u
#define VK_QUEUE_TRANSFER 0x4u
#define VK_BUFFER_USAGE_TRANSFER_SRC 0x1u
#define VK_BUFFER_USAGE_TRANSFER_DST 0x2u
#define VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT 0x1u

typedef struct VkApplicationInfo {
    int32_t sType;
    const void *pNext;
    const char *pApplicationName;
    uint32_t applicationVersion;
    const char *pEngineName;
    uint32_t engineVersion;
    uint32_t apiVersion;
} VkApplicationInfo;

typedef struct VkInstanceCreateInfo {
    int32_t sType;
    const void *pNext;
    uint32_t flags;
    const VkApplicationInfo *pApplicationInfo;
    uint32_t enabledLayerCount;
    const char *const *ppEnabledLayerNames;
    uint32_t enabledExtensionCount;
    const char *const *ppEnabledExtensionNames;
} VkInstanceCreateInfo;

/* VkPhysicalDeviceProperties: the head strata reads, then room for
 * VkPhysicalDeviceLimits and VkPhysicalDeviceSparseProperties (824 bytes
 * in all in Vulkan 1.3; 2048 leaves a wide margin). */
typedef struct VkPhysicalDeviceProperties {
    uint32_t apiVersion;
    uint32_t driverVersion;
    uint32_t vendorID;
    uint32_t deviceID;
    int32_t deviceType;
    char deviceName[256];
    uint8_t pipelineCacheUUID[16];
    _Alignas(8) unsigned char rest[2048];
} VkPhysicalDeviceProperties;

typedef struct VkPhysicalDeviceProperties2 {
    int32_t sType;
    void *pNext;
    VkPhysicalDeviceProperties properties;
} VkPhysicalDeviceProperties2;

typedef struct VkPhysicalDeviceDriverProperties {
    int32_t sType;
    void *pNext;
    int32_t driverID;
    char driverName[256];
    char driverInfo[256];
    uint8_t conformanceVersion[4];
} VkPhysicalDeviceDriverProperties;

typedef struct VkPhysicalDevicePCIBusInfoPropertiesEXT {
    int32_t sType;
    void *pNext;
    uint32_t pciDomain, pciBus, pciDevice, pciFunction;
} VkPhysicalDevicePCIBusInfoPropertiesEXT;

typedef struct VkMemoryType {
    uint32_t propertyFlags;
    uint32_t heapIndex;
} VkMemoryType;

typedef struct VkMemoryHeap {
    VkDeviceSize size;
    uint32_t flags;
} VkMemoryHeap;

typedef struct VkPhysicalDeviceMemoryProperties {
    uint32_t memoryTypeCount;
    VkMemoryType memoryTypes[VK_MAX_MEMORY_TYPES];
    uint32_t memoryHeapCount;
    VkMemoryHeap memoryHeaps[VK_MAX_MEMORY_HEAPS];
} VkPhysicalDeviceMemoryProperties;

typedef struct VkPhysicalDeviceMemoryProperties2 {
    int32_t sType;
    void *pNext;
    VkPhysicalDeviceMemoryProperties memoryProperties;
} VkPhysicalDeviceMemoryProperties2;

typedef struct VkPhysicalDeviceMemoryBudgetPropertiesEXT {
    int32_t sType;
    void *pNext;
    VkDeviceSize heapBudget[VK_MAX_MEMORY_HEAPS];
    VkDeviceSize heapUsage[VK_MAX_MEMORY_HEAPS];
} VkPhysicalDeviceMemoryBudgetPropertiesEXT;

typedef struct VkExtensionProperties {
    char extensionName[256];
    uint32_t specVersion;
} VkExtensionProperties;

typedef struct VkQueueFamilyProperties {
    uint32_t queueFlags;
    uint32_t queueCount;
    uint32_t timestampValidBits;
    uint32_t minImageTransferGranularity[3];
} VkQueueFamilyProperties;

typedef struct VkDeviceQueueCreateInfo {
    int32_t sType;
    const void *pNext;
    uint32_t flags;
    uint32_t queueFamilyIndex;
    uint32_t queueCount;
    const float *pQueuePriorities;
} VkDeviceQueueCreateInfo;

typedef struct VkDeviceCreateInfo {
    int32_t sType;
    const void *pNext;
    uint32_t flags;
    uint32_t queueCreateInfoCount;
    const VkDeviceQueueCreateInfo *pQueueCreateInfos;
    uint32_t enabledLayerCount;
    const char *const *ppEnabledLayerNames;
    uint32_t enabledExtensionCount;
    const char *const *ppEnabledExtensionNames;
    const void *pEnabledFeatures;
} VkDeviceCreateInfo;

typedef struct VkBufferCreateInfo {
    int32_t sType;
    const void *pNext;
    uint32_t flags;
    VkDeviceSize size;
    uint32_t usage;
    int32_t sharingMode;
    uint32_t queueFamilyIndexCount;
    const uint32_t *pQueueFamilyIndices;
} VkBufferCreateInfo;

typedef struct VkMemoryRequirements {
    VkDeviceSize size;
    VkDeviceSize alignment;
    uint32_t memoryTypeBits;
} VkMemoryRequirements;

typedef struct VkMemoryAllocateInfo {
    int32_t sType;
    const void *pNext;
    VkDeviceSize allocationSize;
    uint32_t memoryTypeIndex;
} VkMemoryAllocateInfo;

typedef struct VkCommandPoolCreateInfo {
    int32_t sType;
    const void *pNext;
    uint32_t flags;
    uint32_t queueFamilyIndex;
} VkCommandPoolCreateInfo;

typedef struct VkCommandBufferAllocateInfo {
    int32_t sType;
    const void *pNext;
    VkCommandPool commandPool;
    int32_t level;              /* 0 = primary */
    uint32_t commandBufferCount;
} VkCommandBufferAllocateInfo;

typedef struct VkCommandBufferBeginInfo {
    int32_t sType;
    const void *pNext;
    uint32_t flags;
    const void *pInheritanceInfo;
} VkCommandBufferBeginInfo;

typedef struct VkBufferCopy {
    VkDeviceSize srcOffset, dstOffset, size;
} VkBufferCopy;

typedef struct VkSubmitInfo {
    int32_t sType;
    const void *pNext;
    uint32_t waitSemaphoreCount;
    const void *pWaitSemaphores;
    const uint32_t *pWaitDstStageMask;
    uint32_t commandBufferCount;
    const VkCommandBuffer *pCommandBuffers;
    uint32_t signalSemaphoreCount;
    const void *pSignalSemaphores;
} VkSubmitInfo;

typedef struct VkFenceCreateInfo {
    int32_t sType;
    const void *pNext;
    uint32_t flags;
} VkFenceCreateInfo;

/* The instance-level session shared by the probe and the copy benchmark. */
typedef struct hw_vk {
    void *lib;
    VkInstance instance;
    uint32_t instance_version;
    PFN_vkVoidFunction (*GetInstanceProcAddr)(VkInstance, const char *);
    void (*DestroyInstance)(VkInstance, const void *);
    VkResult (*EnumeratePhysicalDevices)(VkInstance, uint32_t *, VkPhysicalDevice *);
    void (*GetPhysicalDeviceProperties)(VkPhysicalDevice, VkPhysicalDeviceProperties *);
    void (*GetPhysicalDeviceProperties2)(VkPhysicalDevice, VkPhysicalDeviceProperties2 *);
    void (*GetPhysicalDeviceMemoryProperties)(VkPhysicalDevice, VkPhysicalDeviceMemoryProperties *);
    void (*GetPhysicalDeviceMemoryProperties2)(VkPhysicalDevice, VkPhysicalDeviceMemoryProperties2 *);
    VkResult (*EnumerateDeviceExtensionProperties)(VkPhysicalDevice, const char *, uint32_t *,
                                                   VkExtensionProperties *);
    void (*GetPhysicalDeviceQueueFamilyProperties)(VkPhysicalDevice, uint32_t *,
                                                   VkQueueFamilyProperties *);
    VkResult (*CreateDevice)(VkPhysicalDevice, const VkDeviceCreateInfo *, const void *, VkDevice *);
    PFN_vkVoidFunction (*GetDeviceProcAddr)(VkDevice, const char *);
} hw_vk;

typedef enum hw_vk_open_result { HW_VK_OK, HW_VK_NO_LOADER, HW_VK_FAILED } hw_vk_open_result;

/* Opens the loader and creates an instance; on failure why says why. */
hw_vk_open_result hw_vk_open(hw_vk *vk, char *why, size_t why_len);
void hw_vk_close(hw_vk *vk);
/* The physical devices (at most max), in the loader's order. */
uint32_t hw_vk_devices(hw_vk *vk, VkPhysicalDevice *out, uint32_t max);

#endif
