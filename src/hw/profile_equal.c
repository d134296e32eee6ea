/* Field-by-field comparison of two profiles (for the round-trip test and
 * for telling whether a saved profile still describes the machine). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "hw/hw_internal.h"

typedef struct cmp {
    char *why;
    size_t len;
    bool differ;
} cmp;

static void differ(cmp *c, const char *field)
{
    if (!c->differ && c->why && c->len) snprintf(c->why, c->len, "%s", field);
    c->differ = true;
}

#define EQ_INT(c, a, b, f) \
    do { if ((a)->f != (b)->f) differ(c, #f); } while (0)
#define EQ_STR(c, a, b, f) \
    do { if (strcmp((a)->f, (b)->f)) differ(c, #f); } while (0)
#define EQ_DBL(c, a, b, f) \
    do { if (fabs((a)->f - (b)->f) > 1e-9 * fabs((a)->f)) differ(c, #f); } while (0)

static void cpu_eq(cmp *c, const hw_cpu *a, const hw_cpu *b)
{
    EQ_STR(c, a, b, arch);
    EQ_STR(c, a, b, model);
    EQ_INT(c, a, b, logical_cores);
    EQ_INT(c, a, b, physical_cores);
    EQ_INT(c, a, b, usable_cores);
    EQ_INT(c, a, b, features);
    EQ_INT(c, a, b, cache_l1d);
    EQ_INT(c, a, b, cache_l2);
    EQ_INT(c, a, b, cache_l3);
}

static void mem_eq(cmp *c, const hw_memory *a, const hw_memory *b)
{
    EQ_INT(c, a, b, total);
    EQ_INT(c, a, b, available);
    EQ_INT(c, a, b, swap_total);
    EQ_INT(c, a, b, swap_free);
    EQ_INT(c, a, b, usable);
    EQ_STR(c, a, b, thp);
    EQ_INT(c, a, b, cgroup.version);
    EQ_STR(c, a, b, cgroup.path);
    EQ_INT(c, a, b, cgroup.limit);
    EQ_INT(c, a, b, cgroup.usage);
    EQ_INT(c, a, b, cgroup.reclaimable);
    EQ_INT(c, a, b, cgroup.headroom);
}

static void storage_eq(cmp *c, const hw_storage *a, const hw_storage *b)
{
    EQ_STR(c, a, b, path);
    EQ_STR(c, a, b, mount_point);
    EQ_STR(c, a, b, fs_type);
    EQ_STR(c, a, b, device);
    EQ_INT(c, a, b, rotational);
    EQ_INT(c, a, b, free_bytes);
    EQ_INT(c, a, b, total_bytes);
    EQ_INT(c, a, b, o_direct);
}

static void gpu_eq(cmp *c, const hw_gpu *a, const hw_gpu *b)
{
    EQ_STR(c, a, b, name);
    EQ_INT(c, a, b, type);
    EQ_INT(c, a, b, vendor_id);
    EQ_INT(c, a, b, device_id);
    EQ_STR(c, a, b, driver);
    EQ_STR(c, a, b, driver_info);
    EQ_STR(c, a, b, pci_address);
    EQ_INT(c, a, b, sources);
    EQ_INT(c, a, b, vulkan_index);
    EQ_INT(c, a, b, vram_total);
    EQ_INT(c, a, b, vram_used);
    EQ_INT(c, a, b, vram_free);
    EQ_INT(c, a, b, has_budget);
    EQ_INT(c, a, b, vram_budget);
    EQ_INT(c, a, b, vram_process_usage);
    EQ_INT(c, a, b, pcie.gen);
    EQ_INT(c, a, b, pcie.width);
    EQ_INT(c, a, b, pcie.max_gen);
    EQ_INT(c, a, b, pcie.max_width);
    EQ_DBL(c, a, b, h2d_bw);
    EQ_DBL(c, a, b, vram_bw);
    EQ_DBL(c, a, b, mv_q4_k_bw);
    EQ_DBL(c, a, b, mm_q4_k_flops);
    EQ_DBL(c, a, b, round_trip_s);
}

static void measured_eq(cmp *c, const hw_measured *a, const hw_measured *b)
{
    EQ_INT(c, a, b, done);
    EQ_INT(c, a, b, time);
    EQ_DBL(c, a, b, ram_bw_1t);
    EQ_DBL(c, a, b, ram_bw_all);
    EQ_INT(c, a, b, ram_threads);
    EQ_INT(c, a, b, ram_bytes);
    EQ_DBL(c, a, b, disk_bw);
    EQ_DBL(c, a, b, cpu_rate);
    EQ_DBL(c, a, b, kernel_ram_bw);
    EQ_INT(c, a, b, n_engine);
    for (int i = 0; i < a->n_engine && i < HW_MAX_ENGINE_CALIB; i++) {
        EQ_INT(c, a, b, engine[i].threads);
        for (int t = 0; t < HW_ENGINE_TYPES; t++) EQ_DBL(c, a, b, engine[i].type_bw[t]);
        EQ_DBL(c, a, b, engine[i].layer_s);
        EQ_DBL(c, a, b, engine[i].token_s);
        EQ_DBL(c, a, b, engine[i].width_s);
        for (int t = 0; t < HW_ENGINE_TYPES; t++) EQ_DBL(c, a, b, engine[i].tile_bw[t]);
    }
    EQ_INT(c, a, b, disk_bytes);
    EQ_STR(c, a, b, disk_path);
}

bool hw_profile_equal(const hw_profile *a, const hw_profile *b, char *why, size_t why_len)
{
    cmp c = {why, why_len, false};
    EQ_INT(&c, a, b, version);
    EQ_INT(&c, a, b, created);
    EQ_STR(&c, a, b, fingerprint);
    EQ_STR(&c, a, b, hostname);
    EQ_STR(&c, a, b, kernel);
    cpu_eq(&c, &a->cpu, &b->cpu);
    mem_eq(&c, &a->mem, &b->mem);
    storage_eq(&c, &a->storage, &b->storage);
    EQ_INT(&c, a, b, stack.vulkan_loader);
    EQ_INT(&c, a, b, stack.vulkan_icds);
    EQ_INT(&c, a, b, stack.vulkan_devices);
    EQ_INT(&c, a, b, stack.nvml);
    EQ_STR(&c, a, b, stack.nvidia_driver);
    EQ_INT(&c, a, b, n_gpus);
    for (int i = 0; !c.differ && i < a->n_gpus && i < HW_MAX_GPUS; i++) {
        gpu_eq(&c, &a->gpus[i], &b->gpus[i]);
        if (c.differ && why && why_len) {
            char field[64];
            snprintf(field, sizeof field, "gpus[%d].%s", i, why);
            snprintf(why, why_len, "%s", field);
        }
    }
    EQ_INT(&c, a, b, n_pci_gpus);
    for (int i = 0; !c.differ && i < a->n_pci_gpus && i < HW_MAX_GPUS; i++) {
        EQ_INT(&c, a, b, pci_gpus[i].vendor_id);
        EQ_INT(&c, a, b, pci_gpus[i].device_id);
        EQ_STR(&c, a, b, pci_gpus[i].pci_address);
    }
    measured_eq(&c, &a->measured, &b->measured);
    EQ_INT(&c, a, b, n_warnings);
    for (int i = 0; !c.differ && i < a->n_warnings && i < HW_MAX_WARNINGS; i++)
        if (strcmp(a->warnings[i], b->warnings[i])) differ(&c, "warnings");
    return !c.differ;
}
