/* hw_probe(): every source in turn into one profile. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hw/hw_internal.h"
#include "util/error.h"

void hw_warn(hw_profile *p, const char *fmt, ...)
{
    if (!p || p->n_warnings >= HW_MAX_WARNINGS) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->warnings[p->n_warnings], HW_WARNING_MAX, fmt, ap);
    va_end(ap);
    p->n_warnings++;
}

double hw_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#define GPU_PROBE_TIMEOUT_MS 30000

static void gpu_libs_child(void *ctx, void *out)
{
    hw_profile *p = out;
    hw_gpu_nvml_probe(p);
    hw_gpu_vulkan_probe(ctx, p);
}

/* NVML and Vulkan, in a child process (see isolate.c); the child's copy of
 * the profile comes back whole and is checked before it is taken. */
static void gpu_libs(const char *root, hw_profile *p)
{
    hw_profile *tmp = malloc(sizeof *tmp);
    if (!tmp) return;
    *tmp = *p;
    char why[160];
    bool ok = hw_run_isolated(gpu_libs_child, (void *)root, tmp, sizeof *tmp, GPU_PROBE_TIMEOUT_MS,
                              why, sizeof why);
    if (ok && tmp->version == p->version && tmp->n_gpus >= p->n_gpus && tmp->n_gpus <= HW_MAX_GPUS &&
        tmp->n_warnings >= 0 && tmp->n_warnings <= HW_MAX_WARNINGS) {
        for (int i = 0; i < tmp->n_gpus; i++) {
            hw_gpu *g = &tmp->gpus[i];
            g->name[sizeof g->name - 1] = g->driver[sizeof g->driver - 1] = '\0';
            g->driver_info[sizeof g->driver_info - 1] = g->pci_address[sizeof g->pci_address - 1] = '\0';
        }
        for (int i = 0; i < tmp->n_warnings; i++) tmp->warnings[i][HW_WARNING_MAX - 1] = '\0';
        tmp->stack.nvidia_driver[sizeof tmp->stack.nvidia_driver - 1] = '\0';
        *p = *tmp;
    } else {
        p->stack.vulkan_icds = hw_vulkan_count_icds(root);
        hw_warn(p, "GPU probe (Vulkan/NVML) %s: GPUs may be missing", ok ? "returned garbage" : why);
    }
    free(tmp);
}

static void identity(const char *root, hw_profile *p)
{
    if (!hw_read_line(root, "/proc/sys/kernel/hostname", p->hostname, sizeof p->hostname))
        p->hostname[0] = '\0';
    if (!hw_read_line(root, "/proc/sys/kernel/osrelease", p->kernel, sizeof p->kernel))
        p->kernel[0] = '\0';
}

strata_status hw_probe(const hw_probe_opts *opts, hw_profile *out, strata_error *err)
{
    hw_probe_opts def = {0};
    if (!opts) opts = &def;
    const char *root = opts->root && *opts->root ? opts->root : "";
    bool live = !*root;
    const char *path = opts->path && *opts->path ? opts->path : live ? "." : "/";
    if (live && access(path, F_OK) != 0)
        return err_set(err, STRATA_E_INVALID, "--path %s: no such file or directory", path);

    memset(out, 0, sizeof *out);
    out->version = HW_PROFILE_VERSION;
    out->created = (int64_t)time(NULL);
    identity(root, out);
    hw_cpu_probe(root, live, &out->cpu, out);
    hw_memory_probe(root, &out->mem, out);
    hw_storage_probe(root, path, live, live && !opts->no_odirect_test, &out->storage, out);
    hw_gpu_sysfs_probe(root, out);
    hw_pci_gpus_probe(root, out); /* the fingerprint's GPUs: the same with or without the libraries */
    if (live && !opts->no_gpu_libs) {
        gpu_libs(root, out);
    } else {
        out->stack.vulkan_icds = hw_vulkan_count_icds(root);
    }
    hw_fingerprint(out, out->fingerprint);
    return STRATA_OK;
}
