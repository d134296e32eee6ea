/* The probe's Vulkan session (gpu_vulkan.c, gpu_vulkan_copy.c): the real
 * Vulkan headers (libvulkan-dev) without prototypes; the loader is opened
 * with dlopen at run time, so a machine without Vulkan still runs. */
#ifndef STRATA_HW_HW_VK_H
#define STRATA_HW_HW_VK_H

#include <stddef.h>
#include <stdint.h>

#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

/* The instance-level session shared by the probe and the copy benchmark. */
typedef struct hw_vk {
    void *lib;
    VkInstance instance;
    uint32_t instance_version;
    PFN_vkGetInstanceProcAddr GetInstanceProcAddr;
    PFN_vkDestroyInstance DestroyInstance;
    PFN_vkEnumeratePhysicalDevices EnumeratePhysicalDevices;
    PFN_vkGetPhysicalDeviceProperties GetPhysicalDeviceProperties;
    PFN_vkGetPhysicalDeviceProperties2 GetPhysicalDeviceProperties2;
    PFN_vkGetPhysicalDeviceMemoryProperties GetPhysicalDeviceMemoryProperties;
    PFN_vkGetPhysicalDeviceMemoryProperties2 GetPhysicalDeviceMemoryProperties2;
    PFN_vkEnumerateDeviceExtensionProperties EnumerateDeviceExtensionProperties;
    PFN_vkGetPhysicalDeviceQueueFamilyProperties GetPhysicalDeviceQueueFamilyProperties;
    PFN_vkCreateDevice CreateDevice;
    PFN_vkGetDeviceProcAddr GetDeviceProcAddr;
} hw_vk;

typedef enum hw_vk_open_result { HW_VK_OK, HW_VK_NO_LOADER, HW_VK_FAILED } hw_vk_open_result;

/* Opens the loader and creates an instance; on failure why says why. */
hw_vk_open_result hw_vk_open(hw_vk *vk, char *why, size_t why_len);
void hw_vk_close(hw_vk *vk);
/* The physical devices (at most max), in the loader's order. */
uint32_t hw_vk_devices(hw_vk *vk, VkPhysicalDevice *out, uint32_t max);

#endif
