/* The GPU list: entries keyed by PCI address so that what Vulkan, NVML and
 * sysfs say about one device lands in one entry; PCIe links from sysfs. */
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "hw/hw_internal.h"

static const char *const type_names[] = {
    [HW_GPU_UNKNOWN] = "unknown", [HW_GPU_DISCRETE] = "discrete", [HW_GPU_INTEGRATED] = "integrated",
    [HW_GPU_VIRTUAL] = "virtual", [HW_GPU_CPU] = "cpu",           [HW_GPU_OTHER] = "other",
};

/* GPU drivers expose device nodes: DRM render nodes (Mesa, AMD, Intel,
 * nvidia-drm) or /dev/nvidia* (the NVIDIA driver also lists its GPUs in
 * /proc/driver/nvidia/gpus). A software Vulkan device needs none, and
 * opening the Vulkan loader on a machine without them would only load
 * that (lavapipe maps ~200 MiB of LLVM into the process). */
bool hw_gpu_device_node_present(void)
{
    if (access("/dev/nvidia0", F_OK) == 0 || access("/dev/nvidiactl", F_OK) == 0 ||
        access("/proc/driver/nvidia/gpus", F_OK) == 0)
        return true;
    DIR *d = opendir("/dev/dri");
    bool found = false;
    for (struct dirent *e; d && !found && (e = readdir(d));) found = !strncmp(e->d_name, "renderD", 7);
    if (d) closedir(d);
    return found;
}

const char *hw_gpu_type_name(hw_gpu_type t)
{
    return (unsigned)t < sizeof type_names / sizeof type_names[0] ? type_names[t] : "unknown";
}

hw_gpu_type hw_gpu_type_from_name(const char *name)
{
    for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++)
        if (!strcmp(type_names[i], name)) return (hw_gpu_type)i;
    return HW_GPU_UNKNOWN;
}

const char *hw_vendor_name(uint32_t id)
{
    switch (id) {
    case 0x1002: return "AMD";
    case 0x10de: return "NVIDIA";
    case 0x8086: return "Intel";
    case 0x13b5: return "ARM";
    case 0x5143: return "Qualcomm";
    case 0x1010: return "ImgTec";
    case 0x10005: return "Mesa";
    case 0x106b: return "Apple";
    default: return "";
    }
}

hw_gpu *hw_gpu_add(hw_profile *p)
{
    if (p->n_gpus >= HW_MAX_GPUS) {
        if (p->n_gpus == HW_MAX_GPUS) hw_warn(p, "more than %d GPUs: the rest are ignored", HW_MAX_GPUS);
        return NULL;
    }
    hw_gpu *g = &p->gpus[p->n_gpus++];
    memset(g, 0, sizeof *g);
    g->vulkan_index = -1;
    return g;
}

hw_gpu *hw_gpu_by_pci(hw_profile *p, const char *addr)
{
    if (!addr || !*addr) return NULL;
    for (int i = 0; i < p->n_gpus; i++)
        if (!strcmp(p->gpus[i].pci_address, addr)) return &p->gpus[i];
    return NULL;
}

void hw_pci_format(char *buf, size_t len, uint32_t dom, uint32_t bus, uint32_t dev, uint32_t fn)
{
    snprintf(buf, len, "%04x:%02x:%02x.%x", dom & 0xffff, bus & 0xff, dev & 0x1f, fn & 7);
}

bool hw_pci_normalize(const char *in, char *out, size_t len)
{
    unsigned dom, bus, dev, fn;
    char tail;
    if (sscanf(in, "%x:%x:%x.%x%c", &dom, &bus, &dev, &fn, &tail) != 4) return false;
    for (const char *c = in; *c; c++)
        if (!isxdigit((unsigned char)*c) && *c != ':' && *c != '.') return false;
    if (dom > 0xffff || bus > 0xff || dev > 0x1f || fn > 7) return false;
    hw_pci_format(out, len, dom, bus, dev, fn);
    return true;
}

int hw_pcie_gen_from_speed(const char *speed)
{
    static const struct { const char *prefix; int gen; } table[] = {
        {"2.5 GT/s", 1}, {"5.0 GT/s", 2}, {"5 GT/s", 2}, {"8.0 GT/s", 3}, {"8 GT/s", 3},
        {"16.0 GT/s", 4}, {"16 GT/s", 4}, {"32.0 GT/s", 5}, {"32 GT/s", 5}, {"64.0 GT/s", 6},
        {"64 GT/s", 6},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strncmp(speed, table[i].prefix, strlen(table[i].prefix))) return table[i].gen;
    return 0;
}

static int read_width(const char *root, const char *path)
{
    uint64_t w;
    if (!hw_read_u64(root, path, &w) || w == 0 || w > 32) return 0;
    return (int)w;
}

static int read_gen(const char *root, const char *path)
{
    char line[64];
    return hw_read_line(root, path, line, sizeof line) ? hw_pcie_gen_from_speed(line) : 0;
}

bool hw_pcie_from_sysfs(const char *root, const char *addr, hw_pcie *out)
{
    char base[64], path[128];
    if (!addr || !*addr || strchr(addr, '/')) return false;
    snprintf(base, sizeof base, "/sys/bus/pci/devices/%s", addr);
    hw_pcie l = {0};
    snprintf(path, sizeof path, "%s/current_link_speed", base);
    l.gen = read_gen(root, path);
    snprintf(path, sizeof path, "%s/current_link_width", base);
    l.width = read_width(root, path);
    snprintf(path, sizeof path, "%s/max_link_speed", base);
    l.max_gen = read_gen(root, path);
    snprintf(path, sizeof path, "%s/max_link_width", base);
    l.max_width = read_width(root, path);
    if (!l.gen && !l.width && !l.max_gen && !l.max_width) return false;
    *out = l;
    return true;
}
