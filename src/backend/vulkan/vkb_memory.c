/* Buffers: one VkBuffer with its own memory each, addressed by device
 * address. Device-local bytes the caller allocates are counted against a
 * budget: VK_EXT_memory_budget's heapBudget of the device-local heap at
 * open time, or without the extension the heap size minus a reserve of
 * max(10 %, 256 MiB) (at most half the heap) left to the driver, the
 * display and other processes. */
#include <stdlib.h>
#include <string.h>

#include "backend/vulkan/vkb_internal.h"
#include "util/error.h"
#include "util/fmt.h"

static bool has_extension(vkb *v, const char *name)
{
    uint32_t n = 0;
    if (v->f.EnumerateDeviceExtensionProperties(v->phys, NULL, &n, NULL) != VK_SUCCESS || n == 0) return false;
    VkExtensionProperties *e = calloc(n, sizeof *e);
    if (!e) return false;
    bool found = false;
    VkResult r = v->f.EnumerateDeviceExtensionProperties(v->phys, NULL, &n, e);
    for (uint32_t i = 0; (r == VK_SUCCESS || r == VK_INCOMPLETE) && i < n && !found; i++)
        found = !strncmp(e[i].extensionName, name, VK_MAX_EXTENSION_NAME_SIZE);
    free(e);
    return found;
}

/* Preference score of a memory type (negative: unusable). Device memory:
 * device-local, best without host visibility (VRAM proper rather than the
 * BAR window). Host memory: visible and coherent, best cached and not
 * device-local. */
static int type_score(VkMemoryPropertyFlags f, bool host_visible)
{
    bool local = f & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, visible = f & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT;
    if (!host_visible) return local ? (visible ? 1 : 2) : -1;
    if (!visible || !(f & VK_MEMORY_PROPERTY_HOST_COHERENT_BIT)) return -1;
    return 1 + !!(f & VK_MEMORY_PROPERTY_HOST_CACHED_BIT) * 2 + !local;
}

static uint32_t find_type(vkb *v, uint32_t bits, bool host_visible)
{
    VkPhysicalDeviceMemoryProperties mp;
    v->f.GetPhysicalDeviceMemoryProperties(v->phys, &mp);
    uint32_t best = UINT32_MAX;
    int best_score = -1;
    for (uint32_t i = 0; i < mp.memoryTypeCount; i++) {
        int s = (bits >> i) & 1 ? type_score(mp.memoryTypes[i].propertyFlags, host_visible) : -1;
        if (s > best_score) {
            best = i;
            best_score = s;
        }
    }
    return best;
}

static uint64_t heap_budget(vkb *v, uint32_t heap, uint64_t heap_size)
{
    if (has_extension(v, VK_EXT_MEMORY_BUDGET_EXTENSION_NAME)) {
        VkPhysicalDeviceMemoryBudgetPropertiesEXT b = {
            .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT};
        VkPhysicalDeviceMemoryProperties2 mp2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2,
                                                 .pNext = &b};
        v->f.GetPhysicalDeviceMemoryProperties2(v->phys, &mp2);
        if (b.heapBudget[heap] > 0) return b.heapBudget[heap];
    }
    uint64_t reserve = heap_size / 10 > (256ull << 20) ? heap_size / 10 : 256ull << 20;
    if (reserve > heap_size / 2) reserve = heap_size / 2;
    return heap_size - reserve;
}

void vkb_memory_init(vkb *v)
{
    VkPhysicalDeviceMemoryProperties mp;
    v->f.GetPhysicalDeviceMemoryProperties(v->phys, &mp);
    v->mem_device = find_type(v, UINT32_MAX, false);
    v->mem_host = find_type(v, UINT32_MAX, true);
    if (v->mem_device != UINT32_MAX) {
        uint32_t heap = mp.memoryTypes[v->mem_device].heapIndex;
        v->info.heap_bytes = mp.memoryHeaps[heap].size;
        v->info.budget_bytes = heap_budget(v, heap, v->info.heap_bytes);
    }
    VkPhysicalDeviceMaintenance3Properties m3 = {.sType =
                                                     VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
    VkPhysicalDeviceProperties2 p = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &m3};
    v->f.GetPhysicalDeviceProperties2(v->phys, &p);
    v->max_alloc = m3.maxMemoryAllocationSize ? m3.maxMemoryAllocationSize : UINT64_MAX;
}

/* Fails with a message naming the size when it cannot fit. */
static strata_status check_limits(vkb *v, uint64_t bytes, bool host_visible, bool counted, strata_error *err)
{
    char a[32], b[32], c[32];
    if (bytes == 0) return err_set(err, STRATA_E_INVALID, "Vulkan: a buffer of 0 bytes");
    uint64_t budget = v->cap_bytes && v->cap_bytes < v->info.budget_bytes ? v->cap_bytes : v->info.budget_bytes;
    if (counted && (bytes > budget || v->device_bytes > budget - bytes)) /* no overflow */
        return err_set(err, STRATA_E_NOMEM, "Vulkan: %s of device memory would exceed the %s (%s, %s in use)",
                       fmt_bytes(bytes, a, sizeof a), budget < v->info.budget_bytes ? "cap" : "budget",
                       fmt_bytes(budget, b, sizeof b), fmt_bytes(v->device_bytes, c, sizeof c));
    if (counted && (bytes > v->fail_above || v->device_bytes > v->fail_above - bytes))
        return err_set(err, STRATA_E_NOMEM, "Vulkan: allocating a device buffer of %s failed (%s, simulated above %s)",
                       fmt_bytes(bytes, a, sizeof a), vkb_result_name(VK_ERROR_OUT_OF_DEVICE_MEMORY),
                       fmt_bytes(v->fail_above, b, sizeof b));
    if (bytes > v->max_alloc)
        return err_set(err, STRATA_E_NOMEM, "Vulkan: a buffer of %s exceeds the device's largest allocation (%s)",
                       fmt_bytes(bytes, a, sizeof a), fmt_bytes(v->max_alloc, b, sizeof b));
    if ((host_visible ? v->mem_host : v->mem_device) == UINT32_MAX)
        return err_set(err, STRATA_E_UNSUPPORTED, "Vulkan: the device has no %s memory type",
                       host_visible ? "host-visible coherent" : "device-local");
    return STRATA_OK;
}

static VkResult create_memory(vkb *v, vkb_buf *b, bool host_visible)
{
    VkBufferCreateInfo bci = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = b->size,
        .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                 VK_BUFFER_USAGE_TRANSFER_DST_BIT | VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT,
        .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
    };
    VkResult r = v->f.CreateBuffer(v->dev, &bci, NULL, &b->buf);
    if (r != VK_SUCCESS) return r;
    VkMemoryRequirements req;
    v->f.GetBufferMemoryRequirements(v->dev, b->buf, &req);
    uint32_t type = find_type(v, req.memoryTypeBits, host_visible);
    if (type == UINT32_MAX) return VK_ERROR_FEATURE_NOT_PRESENT;
    VkMemoryAllocateFlagsInfo flags = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_FLAGS_INFO,
        .flags = VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT,
    };
    VkMemoryAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
        .pNext = &flags,
        .allocationSize = req.size,
        .memoryTypeIndex = type,
    };
    r = v->f.AllocateMemory(v->dev, &ai, NULL, &b->mem);
    if (r == VK_SUCCESS) r = v->f.BindBufferMemory(v->dev, b->buf, b->mem, 0);
    if (r == VK_SUCCESS && host_visible) r = v->f.MapMemory(v->dev, b->mem, 0, VK_WHOLE_SIZE, 0, &b->map);
    if (r != VK_SUCCESS) return r;
    VkBufferDeviceAddressInfo di = {.sType = VK_STRUCTURE_TYPE_BUFFER_DEVICE_ADDRESS_INFO, .buffer = b->buf};
    b->addr = v->f.GetBufferDeviceAddress(v->dev, &di);
    return VK_SUCCESS;
}

static void destroy(vkb *v, vkb_buf *b)
{
    if (b->map) v->f.UnmapMemory(v->dev, b->mem);
    if (b->buf) v->f.DestroyBuffer(v->dev, b->buf, NULL);
    if (b->mem) v->f.FreeMemory(v->dev, b->mem, NULL);
    free(b);
}

strata_status vkb_alloc_internal(vkb *v, uint64_t bytes, bool host_visible, bool counted, vkb_buf **out,
                                 strata_error *err)
{
    *out = NULL;
    strata_status st = check_limits(v, bytes, host_visible, counted, err);
    if (st != STRATA_OK) return st;
    vkb_buf *b = calloc(1, sizeof *b);
    if (!b) return err_set(err, STRATA_E_NOMEM, "Vulkan: out of memory");
    b->size = bytes;
    b->counted = counted;
    VkResult r = create_memory(v, b, host_visible);
    if (r != VK_SUCCESS) {
        destroy(v, b);
        char a[32];
        return err_set(err, STRATA_E_NOMEM, "Vulkan: allocating a %s buffer of %s failed (%s)",
                       host_visible ? "host-visible" : "device", fmt_bytes(bytes, a, sizeof a),
                       vkb_result_name(r));
    }
    b->next = v->buffers;
    if (v->buffers) v->buffers->prev = b;
    v->buffers = b;
    if (counted) v->device_bytes += bytes;
    if (v->device_bytes > v->device_peak) v->device_peak = v->device_bytes;
    *out = b;
    return STRATA_OK;
}

strata_status vkb_alloc(vkb *v, uint64_t bytes, bool host_visible, vkb_buf **out, strata_error *err)
{
    return vkb_alloc_internal(v, bytes, host_visible, !host_visible, out, err);
}

void vkb_free(vkb *v, vkb_buf *b)
{
    if (!b) return;
    if (b->prev) b->prev->next = b->next;
    else v->buffers = b->next;
    if (b->next) b->next->prev = b->prev;
    if (b->counted) v->device_bytes -= b->size;
    destroy(v, b);
}

void vkb_free_all(vkb *v)
{
    while (v->buffers) vkb_free(v, v->buffers);
    v->gelu_table = NULL;
    v->staging[0] = v->staging[1] = NULL;
}

uint64_t vkb_addr(const vkb_buf *b) { return b->addr; }
uint64_t vkb_size(const vkb_buf *b) { return b->size; }
void *vkb_map(vkb_buf *b) { return b->map; }
uint64_t vkb_device_bytes(const vkb *v) { return v->device_bytes; }
uint64_t vkb_device_peak(const vkb *v) { return v->device_peak; }
void vkb_set_cap(vkb *v, uint64_t bytes) { v->cap_bytes = bytes; }
void vkb_fail_above(vkb *v, uint64_t bytes) { v->fail_above = bytes; }
