/* Choosing the physical device: the one asked for by index, or the first
 * discrete, then integrated (then virtual, other) GPU, and a software
 * device (lavapipe) only when allowed. A device must offer Vulkan 1.2,
 * storageBuffer16BitAccess, bufferDeviceAddress and a compute queue. */
#include <stdio.h>
#include <string.h>

#include "backend/vulkan/vkb_internal.h"
#include "util/error.h"

#define MAX_DEVICES 16

/* The first queue family with compute, or UINT32_MAX. */
static uint32_t compute_family(vkb *v, VkPhysicalDevice pd)
{
    VkQueueFamilyProperties q[32];
    uint32_t n = 32;
    v->f.GetPhysicalDeviceQueueFamilyProperties(pd, &n, q);
    for (uint32_t i = 0; i < n && i < 32; i++)
        if ((q[i].queueFlags & VK_QUEUE_COMPUTE_BIT) && q[i].queueCount > 0) return i;
    return UINT32_MAX;
}

/* Why the device cannot be used ("" when it can). */
static void check_device(vkb *v, VkPhysicalDevice pd, bool allow_cpu, char *why, size_t cap)
{
    VkPhysicalDeviceProperties2 p = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
    v->f.GetPhysicalDeviceProperties2(pd, &p);
    why[0] = '\0';
    if (p.properties.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU && !allow_cpu) {
        snprintf(why, cap, "a software device (not allowed here)");
        return;
    }
    if (p.properties.apiVersion < VK_API_VERSION_1_2) {
        snprintf(why, cap, "Vulkan %u.%u (1.2 needed)", VK_API_VERSION_MAJOR(p.properties.apiVersion),
                 VK_API_VERSION_MINOR(p.properties.apiVersion));
        return;
    }
    VkPhysicalDeviceVulkan12Features f12 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
    VkPhysicalDeviceVulkan11Features f11 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES,
                                            .pNext = &f12};
    VkPhysicalDeviceFeatures2 f = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &f11};
    v->f.GetPhysicalDeviceFeatures2(pd, &f);
    if (!f11.storageBuffer16BitAccess) snprintf(why, cap, "no storageBuffer16BitAccess");
    else if (!f12.bufferDeviceAddress) snprintf(why, cap, "no bufferDeviceAddress");
    else if (compute_family(v, pd) == UINT32_MAX) snprintf(why, cap, "no compute queue");
}

/* Preference of a device type for index < 0 (lower is better). */
static int type_rank(VkPhysicalDeviceType t)
{
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 0;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 1;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return 4;
    default: return 3;
    }
}

static void device_name(vkb *v, VkPhysicalDevice pd, char *name, size_t cap, VkPhysicalDeviceType *type)
{
    VkPhysicalDeviceProperties2 p = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
    v->f.GetPhysicalDeviceProperties2(pd, &p);
    p.properties.deviceName[VK_MAX_PHYSICAL_DEVICE_NAME_SIZE - 1] = '\0';
    snprintf(name, cap, "%s", p.properties.deviceName);
    if (type) *type = p.properties.deviceType;
}

static strata_status take(vkb *v, VkPhysicalDevice pd, int index)
{
    v->phys = pd;
    v->phys_index = index;
    v->queue_family = compute_family(v, pd);
    return STRATA_OK;
}

static strata_status by_index(vkb *v, VkPhysicalDevice *devs, uint32_t n, int index, bool allow_cpu,
                              strata_error *err)
{
    if ((uint32_t)index >= n)
        return err_set(err, STRATA_E_UNSUPPORTED, "Vulkan: no device %d (the loader lists %u)", index, n);
    char why[160], name[VK_MAX_PHYSICAL_DEVICE_NAME_SIZE];
    check_device(v, devs[index], allow_cpu, why, sizeof why);
    if (why[0]) {
        device_name(v, devs[index], name, sizeof name, NULL);
        return err_set(err, STRATA_E_UNSUPPORTED, "Vulkan: device %d (%s) cannot be used: %s", index, name, why);
    }
    return take(v, devs[index], index);
}

/* The best usable device, or an error listing why each one was refused. */
static strata_status best(vkb *v, VkPhysicalDevice *devs, uint32_t n, bool allow_cpu, strata_error *err)
{
    char reasons[768] = "", why[160], name[VK_MAX_PHYSICAL_DEVICE_NAME_SIZE];
    int best_i = -1, best_rank = 99;
    for (uint32_t i = 0; i < n; i++) {
        VkPhysicalDeviceType type;
        device_name(v, devs[i], name, sizeof name, &type);
        check_device(v, devs[i], allow_cpu, why, sizeof why);
        if (!why[0] && type_rank(type) < best_rank) {
            best_i = (int)i;
            best_rank = type_rank(type);
        } else if (why[0]) {
            size_t len = strlen(reasons);
            snprintf(reasons + len, sizeof reasons - len, "%s%s: %s", len ? "; " : "", name, why);
        }
    }
    if (best_i < 0) return err_set(err, STRATA_E_UNSUPPORTED, "Vulkan: no usable device (%s)", reasons);
    return take(v, devs[best_i], best_i);
}

strata_status vkb_select_device(vkb *v, int index, bool allow_cpu, strata_error *err)
{
    VkPhysicalDevice devs[MAX_DEVICES];
    uint32_t n = MAX_DEVICES;
    VkResult r = v->f.EnumeratePhysicalDevices(v->instance, &n, devs);
    if (r != VK_SUCCESS && r != VK_INCOMPLETE)
        return err_set(err, STRATA_E_UNSUPPORTED, "Vulkan: vkEnumeratePhysicalDevices failed (%s)",
                       vkb_result_name(r));
    if (n == 0) return err_set(err, STRATA_E_UNSUPPORTED, "Vulkan: the loader lists no device");
    return index >= 0 ? by_index(v, devs, n, index, allow_cpu, err) : best(v, devs, n, allow_cpu, err);
}
