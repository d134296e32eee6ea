/* Internals of the hardware probe: file access through the root prefix,
 * strict parsers, and the per-source probes hw_probe() calls. */
#ifndef STRATA_HW_INTERNAL_H
#define STRATA_HW_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hw/hw.h"

/* Largest file the probe reads (a 1024-CPU /proc/cpuinfo is ~1.5 MB). */
#define HW_FILE_MAX (8u << 20)

/* ---- files (sysfile.c) ---- */

/* root + path into buf; false when it does not fit. */
bool hw_path(char *buf, size_t len, const char *root, const char *path);
/* Whole file, NUL-terminated, malloc'd; NULL with errno on failure (also
 * when larger than max). *len may be NULL. Embedded NULs become spaces. */
char *hw_read_file(const char *root, const char *path, size_t max, size_t *len);
/* First line without its newline and surrounding blanks. */
bool hw_read_line(const char *root, const char *path, char *buf, size_t len);
/* One decimal unsigned number (surrounding blanks allowed). */
bool hw_read_u64(const char *root, const char *path, uint64_t *out);
bool hw_exists(const char *root, const char *path);

/* ---- strict parsing (parse.c) ---- */

/* Decimal digits only, no sign, no overflow; trailing blanks allowed. */
bool hw_parse_u64(const char *s, uint64_t *out);
/* Like hw_parse_u64 but stops at the first non-digit and reports it in *end. */
bool hw_parse_u64_prefix(const char *s, uint64_t *out, const char **end);
/* "0x1002" or "1002" (hex) into *out. */
bool hw_parse_hex32(const char *s, uint32_t *out);
/* A size with an optional K/M/G suffix (binary), e.g. "32K", "512 KB". */
bool hw_parse_size_suffix(const char *s, uint64_t *out);
/* a * b, false on overflow. */
bool hw_mul_u64(uint64_t a, uint64_t b, uint64_t *out);
/* Copies printable ASCII of src (others become '?'), trimming blanks and
 * truncating to fit; always NUL-terminates. */
void hw_copy_clean(char *dst, size_t len, const char *src);
/* Copies src whole (false, and truncated, when it does not fit). */
bool hw_copy_str(char *dst, size_t len, const char *src);
/* Trims leading and trailing blanks in place; returns s. */
char *hw_trim(char *s);

/* ---- per-source probes ---- */

/* cpu.c: cpuinfo + sysfs topology and caches. live: features from cpuid/hwcaps. */
void hw_cpu_parse_cpuinfo(const char *text, hw_cpu *cpu, hw_profile *p);
void hw_cpu_probe(const char *root, bool live, hw_cpu *cpu, hw_profile *p);
/* cpu_features.c: the running CPU's features (cpuid + xgetbv, or hwcaps);
 * false when not supported on this architecture. */
bool hw_cpu_features_live(uint32_t *features);
/* Features from the cpuinfo "flags"/"Features" word list. */
uint32_t hw_cpu_features_from_flags(const char *flags);

/* memory.c */
bool hw_meminfo_parse(const char *text, hw_memory *m, hw_profile *p);
void hw_memory_probe(const char *root, hw_memory *m, hw_profile *p);
/* The bracketed word of a THP "enabled" file ("always [madvise] never"). */
bool hw_thp_parse(const char *text, char *out, size_t len);

/* mountinfo.c */
typedef struct hw_mount {
    unsigned major, minor;
    char root[HW_PATH_MAX];        /* root of the mount within its filesystem */
    char mount_point[HW_PATH_MAX];
    char fs_type[32];
    char source[HW_PATH_MAX];
    char super_opts[256];
} hw_mount;

/* Calls fn for each well-formed line (malformed lines are counted in
 * *bad when non-NULL); fn returns false to stop. Returns the lines parsed. */
int hw_mountinfo_parse(const char *text, bool (*fn)(const hw_mount *m, void *ctx), void *ctx,
                       int *bad);
/* The mount holding `path` (longest mount-point prefix; the last one wins
 * for equal mount points, as it hides the others). */
bool hw_mountinfo_find(const char *text, const char *path, hw_mount *out);

/* cgroup.c */
void hw_cgroup_probe(const char *root, hw_cgroup *cg, hw_profile *p);

/* storage.c */
void hw_storage_probe(const char *root, const char *path, bool live, bool odirect_test,
                      hw_storage *st, hw_profile *p);
/* Creates a file in dir and does an aligned O_DIRECT write and read. */
hw_tristate hw_odirect_works(const char *dir, char *why, size_t why_len);

/* gpu.c: the GPU list keyed by PCI address */
hw_gpu *hw_gpu_add(hw_profile *p);
hw_gpu *hw_gpu_by_pci(hw_profile *p, const char *pci_address);
/* "0000:03:00.0" from domain/bus/device/function. */
void hw_pci_format(char *buf, size_t len, uint32_t dom, uint32_t bus, uint32_t dev, uint32_t fn);
/* Normalises "00000000:03:00.0" (NVML) or "0000:03:00.0" into 12 chars. */
bool hw_pci_normalize(const char *in, char *out, size_t len);
/* "16.0 GT/s PCIe" -> 4; 0 when unknown. */
int hw_pcie_gen_from_speed(const char *speed);
/* The PCIe link of PCI device addr from root/sys/bus/pci/devices/addr. */
bool hw_pcie_from_sysfs(const char *root, const char *addr, hw_pcie *out);

/* gpu_sysfs.c: DRM cards of known GPU vendors */
void hw_gpu_sysfs_probe(const char *root, hw_profile *p);
/* The display controllers of AMD, NVIDIA and Intel in root/sys/bus/pci/devices
 * into p->pci_gpus (sorted by address). */
void hw_pci_gpus_probe(const char *root, hw_profile *p);
/* gpu_nvml.c */
void hw_gpu_nvml_probe(hw_profile *p);
/* gpu_vulkan.c */
void hw_gpu_vulkan_probe(const char *root, hw_profile *p);
int hw_vulkan_count_icds(const char *root);
/* gpu_vulkan_copy.c: host->device copy bandwidth of Vulkan device `index`
 * (bytes/s), 0 with why set when it cannot be measured. */
double hw_vulkan_measure_h2d(int index, uint64_t bytes, char *why, size_t why_len);

/* probe.c */
double hw_now(void); /* monotonic seconds */

/* isolate.c: runs fn(ctx, out) in a child process and copies the child's
 * `size` bytes at out back into out; false with why set when the child
 * crashes, fails or exceeds timeout_ms. Only while single-threaded. */
bool hw_run_isolated(void (*fn)(void *ctx, void *out), void *ctx, void *out, size_t size,
                     int timeout_ms, char *why, size_t why_len);

#endif
