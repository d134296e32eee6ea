/* The machine's identity: the fingerprint that tells whether a saved
 * profile still describes this machine, and what differs when it does not.
 *
 * Only facts that every probe of one machine reports alike go in: `run`
 * probes without the GPU libraries (no Vulkan, no NVML), `detect` with
 * them, and a VM may report a slightly different MemTotal from one boot
 * to the next. So GPUs enter as the PCI bus lists them in sysfs (never
 * Vulkan- or NVML-only facts such as names or VRAM sizes), and RAM as a
 * coarse step. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hw/hw_internal.h"
#include "util/fmt.h"

/* ---- GPUs on the PCI bus ---- */

static bool gpu_vendor(uint32_t v) { return v == 0x1002 || v == 0x10de || v == 0x8086; }

/* A display controller (base class 0x03), or a processing accelerator
 * (0x12) of AMD or NVIDIA; a captured tree without class files: a device
 * with a DRM card. */
static bool is_gpu(const char *root, const char name[32], uint32_t vendor)
{
    char path[160], line[64];
    snprintf(path, sizeof path, "/sys/bus/pci/devices/%.31s/class", name);
    uint32_t cls;
    if (hw_read_line(root, path, line, sizeof line) && hw_parse_hex32(line, &cls)) {
        uint32_t base = cls >> 16;
        return base == 0x03 || (base == 0x12 && vendor != 0x8086);
    }
    snprintf(path, sizeof path, "/sys/bus/pci/devices/%.31s/drm", name);
    return hw_exists(root, path);
}

static int cmp_pci(const void *a, const void *b)
{
    return strcmp(((const hw_pci_gpu *)a)->pci_address, ((const hw_pci_gpu *)b)->pci_address);
}

void hw_pci_gpus_probe(const char *root, hw_profile *p)
{
    p->n_pci_gpus = 0;
    char dir[HW_PATH_MAX];
    if (!hw_path(dir, sizeof dir, root, "/sys/bus/pci/devices")) return;
    DIR *d = opendir(dir);
    if (!d) return; /* no PCI bus in sysfs (some containers, captured trees) */
    for (struct dirent *e; (e = readdir(d)) && p->n_pci_gpus < HW_MAX_GPUS;) {
        char name[32], addr[16], path[160], line[64];
        if (e->d_name[0] == '.' || !hw_copy_str(name, sizeof name, e->d_name) ||
            !hw_pci_normalize(name, addr, sizeof addr))
            continue;
        uint32_t vendor = 0, device = 0;
        snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/vendor", name);
        if (!hw_read_line(root, path, line, sizeof line) || !hw_parse_hex32(line, &vendor) || !gpu_vendor(vendor))
            continue;
        if (!is_gpu(root, name, vendor)) continue;
        snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/device", name);
        if (!hw_read_line(root, path, line, sizeof line) || !hw_parse_hex32(line, &device)) device = 0;
        hw_pci_gpu *g = &p->pci_gpus[p->n_pci_gpus++];
        g->vendor_id = vendor;
        g->device_id = device;
        snprintf(g->pci_address, sizeof g->pci_address, "%s", addr);
    }
    closedir(d);
    qsort(p->pci_gpus, (size_t)p->n_pci_gpus, sizeof p->pci_gpus[0], cmp_pci);
}

/* ---- the fingerprint ---- */

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *b = data;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t fnv_str(uint64_t h, const char *s) { return fnv1a(h, s, strlen(s) + 1); }
static uint64_t fnv_u64(uint64_t h, uint64_t v) { return fnv1a(h, &v, sizeof v); }

int hw_fingerprint_ram_step(uint64_t total)
{
    if (!total) return -1000;
    return (int)lround(2.0 * log2((double)total / (double)(1ull << 30)));
}

void hw_fingerprint(const hw_profile *p, char out[24])
{
    uint64_t h = 0xcbf29ce484222325ull;
    h = fnv_str(h, "strata-fingerprint-2"); /* differs from the first scheme's on purpose */
    h = fnv_str(h, p->cpu.arch);
    h = fnv_str(h, p->cpu.model);
    h = fnv_u64(h, p->cpu.logical_cores);
    h = fnv_u64(h, p->cpu.physical_cores);
    h = fnv_u64(h, p->cpu.features);
    h = fnv_u64(h, (uint64_t)(int64_t)hw_fingerprint_ram_step(p->mem.total));
    for (int i = 0; i < p->n_pci_gpus && i < HW_MAX_GPUS; i++) {
        const hw_pci_gpu *g = &p->pci_gpus[i];
        h = fnv_u64(h, g->vendor_id);
        h = fnv_u64(h, g->device_id);
        h = fnv_str(h, g->pci_address);
    }
    snprintf(out, 24, "%016llx", (unsigned long long)h);
}

/* ---- what differs ---- */

/* Appends "WHAT: A there, B here" (or WHAT alone when a is NULL), after a
 * "; " when why holds something already. */
static void append(char *why, size_t len, const char *what, const char *a, const char *b)
{
    size_t n = strlen(why);
    if (n + 2 >= len) return;
    if (a) snprintf(why + n, len - n, "%s%s: %s there, %s here", n ? "; " : "", what, a, b);
    else snprintf(why + n, len - n, "%s%s", n ? "; " : "", what);
}

static void cpu_text(const hw_cpu *c, char *buf, size_t len)
{
    snprintf(buf, len, "%.80s%s%s (%u cores)", c->model[0] ? c->model : "unknown CPU", c->arch[0] ? ", " : "",
             c->arch, c->logical_cores);
}

static bool same_pci_gpus(const hw_profile *a, const hw_profile *b)
{
    if (a->n_pci_gpus != b->n_pci_gpus) return false;
    for (int i = 0; i < a->n_pci_gpus && i < HW_MAX_GPUS; i++)
        if (a->pci_gpus[i].vendor_id != b->pci_gpus[i].vendor_id ||
            a->pci_gpus[i].device_id != b->pci_gpus[i].device_id ||
            strcmp(a->pci_gpus[i].pci_address, b->pci_gpus[i].pci_address))
            return false;
    return true;
}

static void gpus_text(const hw_profile *p, char *buf, size_t len)
{
    if (!p->n_pci_gpus) {
        snprintf(buf, len, "none");
        return;
    }
    buf[0] = '\0';
    for (int i = 0; i < p->n_pci_gpus && i < HW_MAX_GPUS; i++) {
        size_t n = strlen(buf);
        const hw_pci_gpu *g = &p->pci_gpus[i];
        if (n + 24 >= len) break;
        snprintf(buf + n, len - n, "%s%04x:%04x", i ? ", " : "", g->vendor_id, g->device_id);
    }
}

void hw_fingerprint_diff(const hw_profile *saved, const hw_profile *live, char *why, size_t len)
{
    if (!len) return;
    why[0] = '\0';
    const hw_cpu *a = &saved->cpu, *b = &live->cpu;
    char x[160], y[160];
    if (strcmp(a->arch, b->arch) || strcmp(a->model, b->model) || a->logical_cores != b->logical_cores ||
        a->physical_cores != b->physical_cores) {
        cpu_text(a, x, sizeof x);
        cpu_text(b, y, sizeof y);
        append(why, len, "CPU differs", x, y);
    } else if (a->features != b->features) {
        append(why, len, "CPU features differ", NULL, NULL);
    }
    if (hw_fingerprint_ram_step(saved->mem.total) != hw_fingerprint_ram_step(live->mem.total)) {
        fmt_bytes(saved->mem.total, x, sizeof x);
        fmt_bytes(live->mem.total, y, sizeof y);
        append(why, len, "RAM size differs", x, y);
    }
    if (!same_pci_gpus(saved, live)) {
        gpus_text(saved, x, sizeof x);
        gpus_text(live, y, sizeof y);
        append(why, len, "GPUs differ", x, y);
    }
}
