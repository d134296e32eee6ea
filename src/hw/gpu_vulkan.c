/* GPUs through the Vulkan loader (dlopen("libvulkan.so.1") at run time):
 * name, type, vendor, driver, device-local heaps, and the current budget
 * and usage when the device has VK_EXT_memory_budget. */
#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hw/hw_internal.h"
#include "hw/hw_vk.h"

#define VK_FN(vk, field, name) \
    ((vk)->field = (__typeof__((vk)->field))(vk)->GetInstanceProcAddr((vk)->instance, name))

static bool load_instance_fns(hw_vk *vk)
{
    VK_FN(vk, DestroyInstance, "vkDestroyInstance");
    VK_FN(vk, EnumeratePhysicalDevices, "vkEnumeratePhysicalDevices");
    VK_FN(vk, GetPhysicalDeviceProperties, "vkGetPhysicalDeviceProperties");
    VK_FN(vk, GetPhysicalDeviceMemoryProperties, "vkGetPhysicalDeviceMemoryProperties");
    VK_FN(vk, EnumerateDeviceExtensionProperties, "vkEnumerateDeviceExtensionProperties");
    VK_FN(vk, GetPhysicalDeviceQueueFamilyProperties, "vkGetPhysicalDeviceQueueFamilyProperties");
    VK_FN(vk, CreateDevice, "vkCreateDevice");
    VK_FN(vk, GetDeviceProcAddr, "vkGetDeviceProcAddr");
    if (vk->instance_version >= VK_MAKE_API_VERSION(0, 1, 1, 0)) {
        VK_FN(vk, GetPhysicalDeviceProperties2, "vkGetPhysicalDeviceProperties2");
        VK_FN(vk, GetPhysicalDeviceMemoryProperties2, "vkGetPhysicalDeviceMemoryProperties2");
    }
    return vk->DestroyInstance && vk->EnumeratePhysicalDevices && vk->GetPhysicalDeviceProperties &&
           vk->GetPhysicalDeviceMemoryProperties && vk->EnumerateDeviceExtensionProperties;
}

typedef VkResult (*create_instance_fn)(const VkInstanceCreateInfo *, const void *, VkInstance *);

/* vkCreateInstance asking for Vulkan 1.2 when the loader is 1.1 or newer
 * (so that properties2 and driver properties are core). */
static VkResult create_instance(hw_vk *vk)
{
    VkResult (*enum_version)(uint32_t *) =
        (VkResult(*)(uint32_t *))vk->GetInstanceProcAddr(NULL, "vkEnumerateInstanceVersion");
    create_instance_fn create = (create_instance_fn)vk->GetInstanceProcAddr(NULL, "vkCreateInstance");
    vk->instance_version = VK_MAKE_API_VERSION(0, 1, 0, 0);
    if (enum_version && enum_version(&vk->instance_version) != VK_SUCCESS)
        vk->instance_version = VK_MAKE_API_VERSION(0, 1, 0, 0);
    bool v11 = vk->instance_version >= VK_MAKE_API_VERSION(0, 1, 1, 0);
    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "strata",
        .pEngineName = "strata",
        .apiVersion = v11 ? VK_MAKE_API_VERSION(0, 1, 2, 0) : VK_MAKE_API_VERSION(0, 1, 0, 0),
    };
    VkInstanceCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app};
    if (!create) return -1;
    VkResult r = create(&ci, NULL, &vk->instance);
    if (r != VK_SUCCESS) vk->instance = NULL;
    return r;
}

hw_vk_open_result hw_vk_open(hw_vk *vk, char *why, size_t why_len)
{
    memset(vk, 0, sizeof *vk);
    vk->lib = dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!vk->lib) {
        snprintf(why, why_len, "Vulkan loader libvulkan.so.1 not found");
        return HW_VK_NO_LOADER;
    }
    vk->GetInstanceProcAddr =
        (__typeof__(vk->GetInstanceProcAddr))dlsym(vk->lib, "vkGetInstanceProcAddr");
    if (!vk->GetInstanceProcAddr) {
        snprintf(why, why_len, "libvulkan.so.1 has no vkGetInstanceProcAddr");
        hw_vk_close(vk);
        return HW_VK_FAILED;
    }
    VkResult r = create_instance(vk);
    if (r != VK_SUCCESS) {
        snprintf(why, why_len, "vkCreateInstance failed (VkResult %d): no usable Vulkan driver", (int)r);
        hw_vk_close(vk);
        return HW_VK_FAILED;
    }
    if (!load_instance_fns(vk)) {
        snprintf(why, why_len, "Vulkan loader lacks core instance functions");
        hw_vk_close(vk);
        return HW_VK_FAILED;
    }
    return HW_VK_OK;
}

void hw_vk_close(hw_vk *vk)
{
    if (vk->instance && vk->DestroyInstance) vk->DestroyInstance(vk->instance, NULL);
    if (vk->lib) dlclose(vk->lib);
    memset(vk, 0, sizeof *vk);
}

uint32_t hw_vk_devices(hw_vk *vk, VkPhysicalDevice *out, uint32_t max)
{
    uint32_t n = max;
    VkResult r = vk->EnumeratePhysicalDevices(vk->instance, &n, out);
    if (r != VK_SUCCESS && r != VK_INCOMPLETE) return 0;
    return n > max ? max : n;
}

typedef struct vk_exts {
    bool budget, pci, driver_props;
} vk_exts;

static vk_exts device_extensions(hw_vk *vk, VkPhysicalDevice dev)
{
    vk_exts e = {false, false, false};
    uint32_t n = 0;
    if (vk->EnumerateDeviceExtensionProperties(dev, NULL, &n, NULL) != VK_SUCCESS || !n) return e;
    if (n > 4096) n = 4096;
    VkExtensionProperties *props = calloc(n, sizeof *props);
    if (!props) return e;
    VkResult r = vk->EnumerateDeviceExtensionProperties(dev, NULL, &n, props);
    if (r == VK_SUCCESS || r == VK_INCOMPLETE) {
        for (uint32_t i = 0; i < n; i++) {
            props[i].extensionName[255] = '\0';
            const char *name = props[i].extensionName;
            if (!strcmp(name, "VK_EXT_memory_budget")) e.budget = true;
            if (!strcmp(name, "VK_EXT_pci_bus_info")) e.pci = true;
            if (!strcmp(name, "VK_KHR_driver_properties")) e.driver_props = true;
        }
    }
    free(props);
    return e;
}

static hw_gpu_type map_type(int32_t t)
{
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return HW_GPU_INTEGRATED;
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return HW_GPU_DISCRETE;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return HW_GPU_VIRTUAL;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return HW_GPU_CPU;
    default: return HW_GPU_OTHER;
    }
}

/* The entry for this device: by PCI address, else an unclaimed entry with
 * the same PCI ids (NVML/sysfs found it), else a new one. */
static hw_gpu *entry_for(hw_profile *p, const char *addr, uint32_t vendor, uint32_t device)
{
    hw_gpu *g = hw_gpu_by_pci(p, addr);
    if (g) return g;
    if (!addr[0])
        for (int i = 0; i < p->n_gpus; i++)
            if (p->gpus[i].vulkan_index < 0 && p->gpus[i].vendor_id == vendor &&
                p->gpus[i].device_id == device)
                return &p->gpus[i];
    return hw_gpu_add(p);
}

static void heaps(hw_vk *vk, VkPhysicalDevice dev, bool budget, hw_gpu *g)
{
    VkPhysicalDeviceMemoryBudgetPropertiesEXT b;
    memset(&b, 0, sizeof b);
    b.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT;
    VkPhysicalDeviceMemoryProperties2 m2;
    memset(&m2, 0, sizeof m2);
    m2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2;
    bool use2 = budget && vk->GetPhysicalDeviceMemoryProperties2;
    if (use2) {
        m2.pNext = &b;
        vk->GetPhysicalDeviceMemoryProperties2(dev, &m2);
    } else {
        vk->GetPhysicalDeviceMemoryProperties(dev, &m2.memoryProperties);
    }
    const VkPhysicalDeviceMemoryProperties *mp = &m2.memoryProperties;
    uint32_t nh = mp->memoryHeapCount > VK_MAX_MEMORY_HEAPS ? VK_MAX_MEMORY_HEAPS : mp->memoryHeapCount;
    uint64_t total = 0, bud = 0, use = 0;
    for (uint32_t i = 0; i < nh; i++) {
        if (!(mp->memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)) continue;
        total += mp->memoryHeaps[i].size;
        bud += b.heapBudget[i];
        use += b.heapUsage[i];
    }
    if (!g->vram_total) g->vram_total = total;
    if (use2 && bud) {
        g->has_budget = true;
        g->vram_budget = bud;
        g->vram_process_usage = use;
    }
}

typedef struct vk_props {
    VkPhysicalDeviceProperties2 props;
    VkPhysicalDeviceDriverProperties drv;
    VkPhysicalDevicePCIBusInfoPropertiesEXT pci;
    bool have_drv, have_pci;
} vk_props;

/* Properties, plus driver and PCI bus properties where the device has them. */
static void query_props(hw_vk *vk, VkPhysicalDevice dev, const vk_exts *ext, vk_props *q)
{
    memset(q, 0, sizeof *q);
    q->props.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2;
    q->drv.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES;
    q->pci.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PCI_BUS_INFO_PROPERTIES_EXT;
    vk->GetPhysicalDeviceProperties(dev, &q->props.properties);
    uint32_t api = q->props.properties.apiVersion;
    bool v11 = vk->GetPhysicalDeviceProperties2 && api >= VK_MAKE_API_VERSION(0, 1, 1, 0);
    q->have_drv = v11 && (ext->driver_props || api >= VK_MAKE_API_VERSION(0, 1, 2, 0));
    q->have_pci = v11 && ext->pci;
    if (!v11) return;
    void **next = &q->props.pNext;
    if (q->have_drv) {
        *next = &q->drv;
        next = &q->drv.pNext;
    }
    if (q->have_pci) *next = &q->pci;
    vk->GetPhysicalDeviceProperties2(dev, &q->props);
    q->drv.driverName[255] = q->drv.driverInfo[255] = '\0';
    q->props.properties.deviceName[255] = '\0';
}

static void fill_gpu(const vk_props *q, int index, const char *addr, hw_gpu *g)
{
    const VkPhysicalDeviceProperties *pr = &q->props.properties;
    g->sources |= HW_SRC_VULKAN;
    g->vulkan_index = index;
    hw_copy_clean(g->name, sizeof g->name, pr->deviceName);
    g->type = map_type(pr->deviceType);
    g->vendor_id = pr->vendorID;
    g->device_id = pr->deviceID;
    if (addr[0]) snprintf(g->pci_address, sizeof g->pci_address, "%s", addr);
    if (q->have_drv) {
        hw_copy_clean(g->driver, sizeof g->driver, q->drv.driverName);
        hw_copy_clean(g->driver_info, sizeof g->driver_info, q->drv.driverInfo);
    }
    uint32_t api = pr->apiVersion;
    if (!g->driver_info[0])
        snprintf(g->driver_info, sizeof g->driver_info, "driver version 0x%08x, Vulkan %u.%u.%u",
                 pr->driverVersion, VK_API_VERSION_MAJOR(api), VK_API_VERSION_MINOR(api), VK_API_VERSION_PATCH(api));
}

static void probe_device(const char *root, hw_vk *vk, VkPhysicalDevice dev, int index, hw_profile *p)
{
    vk_exts ext = device_extensions(vk, dev);
    vk_props *q = malloc(sizeof *q);
    if (!q) return;
    query_props(vk, dev, &ext, q);
    char addr[16] = "";
    if (q->have_pci)
        hw_pci_format(addr, sizeof addr, q->pci.pciDomain, q->pci.pciBus, q->pci.pciDevice, q->pci.pciFunction);
    hw_gpu *g = entry_for(p, addr, q->props.properties.vendorID, q->props.properties.deviceID);
    if (g) {
        fill_gpu(q, index, addr, g);
        heaps(vk, dev, ext.budget, g);
        if (g->pci_address[0] && !g->pcie.gen) hw_pcie_from_sysfs(root, g->pci_address, &g->pcie);
    }
    free(q);
}

void hw_gpu_vulkan_probe(const char *root, hw_profile *p)
{
    hw_vk vk;
    char why[200];
    p->stack.vulkan_icds = hw_vulkan_count_icds(root);
    hw_vk_open_result r = hw_vk_open(&vk, why, sizeof why);
    if (r != HW_VK_OK) {
        p->stack.vulkan_loader = r == HW_VK_FAILED;
        if (p->stack.vulkan_loader) hw_warn(p, "Vulkan: %s", why);
        return;
    }
    p->stack.vulkan_loader = true;
    VkPhysicalDevice devs[HW_MAX_GPUS];
    uint32_t n = hw_vk_devices(&vk, devs, HW_MAX_GPUS);
    p->stack.vulkan_devices = (int)n;
    for (uint32_t i = 0; i < n; i++) probe_device(root, &vk, devs[i], (int)i, p);
    hw_vk_close(&vk);
}

/* ICD manifests in the loader's standard search directories. */
int hw_vulkan_count_icds(const char *root)
{
    static const char *const dirs[] = {
        "/usr/share/vulkan/icd.d", "/usr/local/share/vulkan/icd.d", "/etc/vulkan/icd.d",
    };
    int count = 0;
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char path[HW_PATH_MAX];
        if (!hw_path(path, sizeof path, root, dirs[i])) continue;
        DIR *d = opendir(path);
        if (!d) continue;
        for (struct dirent *e; (e = readdir(d));) {
            size_t n = strlen(e->d_name);
            if (n > 5 && !strcmp(e->d_name + n - 5, ".json")) count++;
        }
        closedir(d);
    }
    return count;
}
