/* GPUs seen through DRM in sysfs: /sys/class/drm/cardN/device holds the
 * PCI ids (vendor, device), uevent (DRIVER=, PCI_SLOT_NAME=), and for
 * amdgpu the VRAM counters mem_info_vram_total and mem_info_vram_used
 * (bytes). Only GPU vendors that compute (AMD, NVIDIA, Intel) are listed:
 * BMC and virtual display adapters are not GPUs for strata. */
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hw/hw_internal.h"

static bool is_card(const char *name)
{
    if (strncmp(name, "card", 4) || !name[4]) return false;
    for (const char *c = name + 4; *c; c++)
        if (!isdigit((unsigned char)*c)) return false;
    return strlen(name) < 12;
}

static void parse_uevent(const char *text, char *driver, size_t dlen, char *slot, size_t slen)
{
    for (const char *line = text; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        char buf[256];
        if (n < sizeof buf) {
            memcpy(buf, line, n);
            buf[n] = '\0';
            if (!strncmp(buf, "DRIVER=", 7)) hw_copy_clean(driver, dlen, buf + 7);
            if (!strncmp(buf, "PCI_SLOT_NAME=", 14) && !hw_pci_normalize(buf + 14, slot, slen))
                slot[0] = '\0';
        }
        line = nl ? nl + 1 : NULL;
    }
}

static void read_card(const char *root, const char *card, hw_profile *p)
{
    char path[128], line[64], driver[64] = "", slot[16] = "";
    uint32_t vendor = 0, device = 0;
    snprintf(path, sizeof path, "/sys/class/drm/%s/device/vendor", card);
    if (!hw_read_line(root, path, line, sizeof line) || !hw_parse_hex32(line, &vendor)) return;
    if (vendor != 0x1002 && vendor != 0x10de && vendor != 0x8086) return;
    snprintf(path, sizeof path, "/sys/class/drm/%s/device/device", card);
    if (hw_read_line(root, path, line, sizeof line) && !hw_parse_hex32(line, &device)) device = 0;
    snprintf(path, sizeof path, "/sys/class/drm/%s/device/uevent", card);
    char *uevent = hw_read_file(root, path, 1u << 16, NULL);
    if (uevent) parse_uevent(uevent, driver, sizeof driver, slot, sizeof slot);
    free(uevent);

    hw_gpu *g = hw_gpu_by_pci(p, slot);
    if (!g && !(g = hw_gpu_add(p))) return;
    g->sources |= HW_SRC_SYSFS;
    g->vendor_id = vendor;
    if (device) g->device_id = device;
    snprintf(g->pci_address, sizeof g->pci_address, "%s", slot);
    if (!g->driver[0]) snprintf(g->driver, sizeof g->driver, "%s", driver);
    if (!g->name[0])
        snprintf(g->name, sizeof g->name, "%s GPU %04x:%04x", hw_vendor_name(vendor), vendor, device);
    if (vendor == 0x8086 && g->type == HW_GPU_UNKNOWN) g->type = HW_GPU_INTEGRATED;
    if (vendor == 0x10de && g->type == HW_GPU_UNKNOWN) g->type = HW_GPU_DISCRETE;

    uint64_t total, used;
    snprintf(path, sizeof path, "/sys/class/drm/%s/device/mem_info_vram_total", card);
    bool have_total = hw_read_u64(root, path, &total);
    snprintf(path, sizeof path, "/sys/class/drm/%s/device/mem_info_vram_used", card);
    bool have_used = hw_read_u64(root, path, &used);
    if (have_total && have_used && used > total) {
        hw_warn(p, "%s: mem_info_vram_used above mem_info_vram_total: ignored", card);
        have_used = false;
    }
    if (have_total) g->vram_total = total;
    if (have_total && have_used) {
        g->vram_used = used;
        g->vram_free = total - used;
    }
    if (slot[0]) hw_pcie_from_sysfs(root, slot, &g->pcie);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void hw_gpu_sysfs_probe(const char *root, hw_profile *p)
{
    char dir[HW_PATH_MAX];
    if (!hw_path(dir, sizeof dir, root, "/sys/class/drm")) return;
    DIR *d = opendir(dir);
    if (!d) return; /* no DRM at all: a machine without GPUs */
    char *names[64];
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < 64;)
        if (is_card(e->d_name) && (names[n] = strdup(e->d_name))) n++;
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_names);
    for (int i = 0; i < n; i++) {
        read_card(root, names[i], p);
        free(names[i]);
    }
}
