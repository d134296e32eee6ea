/* NVIDIA GPUs through NVML, opened with dlopen("libnvidia-ml.so.1") so
 * that strata neither builds nor links against it. Declarations follow the
 * NVML API reference: every call returns nvmlReturn_t (0 = NVML_SUCCESS). */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "hw/hw_internal.h"

typedef int nvml_ret;
typedef struct nvml_device_st *nvml_device;

typedef struct nvml_memory {   /* nvmlMemory_t */
    unsigned long long total, free, used;
} nvml_memory;

typedef struct nvml_pci_info { /* nvmlPciInfo_t (v3) */
    char bus_id_legacy[16];
    unsigned domain, bus, device, pci_device_id, pci_subsystem_id;
    char bus_id[32];
    char spare[64];            /* room should a later layout grow */
} nvml_pci_info;

typedef struct nvml_api {
    void *lib;
    nvml_ret (*init)(void);
    nvml_ret (*shutdown)(void);
    nvml_ret (*count)(unsigned *);
    nvml_ret (*handle)(unsigned, nvml_device *);
    nvml_ret (*name)(nvml_device, char *, unsigned);
    nvml_ret (*memory)(nvml_device, nvml_memory *);
    nvml_ret (*pci)(nvml_device, nvml_pci_info *);
    nvml_ret (*cur_gen)(nvml_device, unsigned *);
    nvml_ret (*cur_width)(nvml_device, unsigned *);
    nvml_ret (*max_gen)(nvml_device, unsigned *);
    nvml_ret (*max_width)(nvml_device, unsigned *);
    nvml_ret (*driver)(char *, unsigned);
} nvml_api;

#define NVML_SYM(field, name) (api->field = (__typeof__(api->field))dlsym(api->lib, name))

static bool nvml_load(nvml_api *api)
{
    memset(api, 0, sizeof *api);
    api->lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!api->lib) return false;
    NVML_SYM(init, "nvmlInit_v2");
    NVML_SYM(shutdown, "nvmlShutdown");
    NVML_SYM(count, "nvmlDeviceGetCount_v2");
    NVML_SYM(handle, "nvmlDeviceGetHandleByIndex_v2");
    NVML_SYM(name, "nvmlDeviceGetName");
    NVML_SYM(memory, "nvmlDeviceGetMemoryInfo");
    if (!NVML_SYM(pci, "nvmlDeviceGetPciInfo_v3")) NVML_SYM(pci, "nvmlDeviceGetPciInfo_v2");
    NVML_SYM(cur_gen, "nvmlDeviceGetCurrPcieLinkGeneration");
    NVML_SYM(cur_width, "nvmlDeviceGetCurrPcieLinkWidth");
    NVML_SYM(max_gen, "nvmlDeviceGetMaxPcieLinkGeneration");
    NVML_SYM(max_width, "nvmlDeviceGetMaxPcieLinkWidth");
    NVML_SYM(driver, "nvmlSystemGetDriverVersion");
    if (!api->init || !api->shutdown || !api->count || !api->handle) {
        dlclose(api->lib);
        return false;
    }
    return true;
}

static int link_value(nvml_ret (*fn)(nvml_device, unsigned *), nvml_device dev, unsigned max)
{
    unsigned v = 0;
    if (!fn || fn(dev, &v) != 0 || v == 0 || v > max) return 0;
    return (int)v;
}

static void nvml_device_info(nvml_api *api, unsigned index, hw_profile *p)
{
    nvml_device dev;
    if (api->handle(index, &dev) != 0) return;
    char addr[16] = "";
    nvml_pci_info pci;
    memset(&pci, 0, sizeof pci);
    if (api->pci && api->pci(dev, &pci) == 0) {
        pci.bus_id[sizeof pci.bus_id - 1] = '\0';
        if (!hw_pci_normalize(pci.bus_id, addr, sizeof addr)) addr[0] = '\0';
    }
    hw_gpu *g = hw_gpu_by_pci(p, addr);
    if (!g && !(g = hw_gpu_add(p))) return;
    g->sources |= HW_SRC_NVML;
    g->vendor_id = 0x10de;
    if (!g->pci_address[0]) snprintf(g->pci_address, sizeof g->pci_address, "%s", addr);
    if (g->type == HW_GPU_UNKNOWN) g->type = HW_GPU_DISCRETE;
    char name[96] = "";
    if (api->name && api->name(dev, name, sizeof name) == 0) {
        name[sizeof name - 1] = '\0';
        hw_copy_clean(g->name, sizeof g->name, name);
    }
    nvml_memory mem;
    if (api->memory && api->memory(dev, &mem) == 0 && mem.used <= mem.total &&
        mem.free <= mem.total) {
        g->vram_total = mem.total;
        g->vram_used = mem.used;
        g->vram_free = mem.free;
    }
    hw_pcie l = {link_value(api->cur_gen, dev, 8), link_value(api->cur_width, dev, 32),
                 link_value(api->max_gen, dev, 8), link_value(api->max_width, dev, 32)};
    if (!g->pcie.gen) g->pcie = l;
    if (!g->driver[0]) snprintf(g->driver, sizeof g->driver, "NVIDIA");
    if (!g->driver_info[0]) snprintf(g->driver_info, sizeof g->driver_info, "%s", p->stack.nvidia_driver);
}

void hw_gpu_nvml_probe(hw_profile *p)
{
    nvml_api api;
    if (!nvml_load(&api)) return;
    if (api.init() != 0) {
        hw_warn(p, "libnvidia-ml.so.1 found but nvmlInit failed (driver not loaded?)");
        dlclose(api.lib);
        return;
    }
    p->stack.nvml = true;
    char ver[80] = "";
    if (api.driver && api.driver(ver, sizeof ver) == 0) {
        ver[sizeof ver - 1] = '\0';
        hw_copy_clean(p->stack.nvidia_driver, sizeof p->stack.nvidia_driver, ver);
    }
    unsigned count = 0;
    if (api.count(&count) != 0) count = 0;
    if (count > HW_MAX_GPUS) count = HW_MAX_GPUS;
    for (unsigned i = 0; i < count; i++) nvml_device_info(&api, i, p);
    api.shutdown();
    dlclose(api.lib);
}
