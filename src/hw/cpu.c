/* CPU: model, cores and caches from /proc/cpuinfo and sysfs. */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hw/hw_internal.h"

#define MAX_CPUS 8192u

typedef struct core_id {
    uint64_t package, core;
} core_id;

typedef struct cpuinfo_state {
    uint32_t processors;
    bool x86, arm;
    char model[HW_NAME_MAX];
    uint32_t implementer, part;
    bool have_impl, have_part;
    uint64_t cur_package, cur_core;
    bool have_package, have_core;
    core_id *cores;
    uint32_t n_cores;
    bool bad_topology;
} cpuinfo_state;

static void add_core(cpuinfo_state *s)
{
    if (!s->have_package || !s->have_core) return;
    for (uint32_t i = 0; i < s->n_cores; i++)
        if (s->cores[i].package == s->cur_package && s->cores[i].core == s->cur_core) return;
    if (s->n_cores >= MAX_CPUS) return;
    core_id *nc = realloc(s->cores, (s->n_cores + 1) * sizeof *nc);
    if (!nc) return;
    s->cores = nc;
    s->cores[s->n_cores++] = (core_id){s->cur_package, s->cur_core};
}

static const char *arm_part_name(uint32_t impl, uint32_t part)
{
    static const struct { uint32_t part; const char *name; } arm[] = {
        {0xd03, "Cortex-A53"}, {0xd05, "Cortex-A55"}, {0xd07, "Cortex-A57"},
        {0xd08, "Cortex-A72"}, {0xd0b, "Cortex-A76"}, {0xd0c, "Neoverse-N1"},
        {0xd40, "Neoverse-V1"}, {0xd49, "Neoverse-N2"}, {0xd4f, "Neoverse-V2"},
    };
    if (impl != 0x41) return NULL;
    for (size_t i = 0; i < sizeof arm / sizeof arm[0]; i++)
        if (arm[i].part == part) return arm[i].name;
    return NULL;
}

static const char *arm_implementer_name(uint32_t impl)
{
    switch (impl) {
    case 0x41: return "ARM";
    case 0x42: return "Broadcom";
    case 0x43: return "Cavium";
    case 0x46: return "Fujitsu";
    case 0x48: return "HiSilicon";
    case 0x4e: return "NVIDIA";
    case 0x51: return "Qualcomm";
    case 0x61: return "Apple";
    case 0xc0: return "Ampere";
    default: return NULL;
    }
}

/* One "key : value" line of cpuinfo. */
static void cpuinfo_line(cpuinfo_state *s, const char *key, const char *val, hw_cpu *cpu)
{
    uint64_t v;
    if (!strcmp(key, "processor")) {
        if (s->processors && s->have_package) add_core(s);
        s->have_package = s->have_core = false;
        if (hw_parse_u64(val, &v)) s->processors++;
    } else if (!strcmp(key, "model name") && !s->model[0]) {
        hw_copy_clean(s->model, sizeof s->model, val);
    } else if (!strcmp(key, "vendor_id")) {
        s->x86 = true;
    } else if (!strcmp(key, "flags")) {
        s->x86 = true;
        if (!cpu->features) cpu->features = hw_cpu_features_from_flags(val);
    } else if (!strcmp(key, "Features")) {
        s->arm = true;
        if (!cpu->features) cpu->features = hw_cpu_features_from_flags(val);
    } else if (!strcmp(key, "CPU implementer")) {
        s->arm = true;
        s->have_impl = hw_parse_hex32(val, &s->implementer);
    } else if (!strcmp(key, "CPU part")) {
        s->have_part = hw_parse_hex32(val, &s->part);
    } else if (!strcmp(key, "physical id")) {
        s->have_package = hw_parse_u64(val, &s->cur_package);
        if (!s->have_package) s->bad_topology = true;
    } else if (!strcmp(key, "core id")) {
        s->have_core = hw_parse_u64(val, &s->cur_core);
        if (!s->have_core) s->bad_topology = true;
    }
}

static void arm_model(cpuinfo_state *s, hw_cpu *cpu)
{
    const char *part = s->have_part ? arm_part_name(s->implementer, s->part) : NULL;
    const char *impl = s->have_impl ? arm_implementer_name(s->implementer) : NULL;
    if (part)
        snprintf(cpu->model, sizeof cpu->model, "%s %s", impl, part);
    else if (s->have_impl && s->have_part)
        snprintf(cpu->model, sizeof cpu->model, "%s part 0x%03x", impl ? impl : "unknown vendor",
                 s->part);
}

void hw_cpu_parse_cpuinfo(const char *text, hw_cpu *cpu, hw_profile *p)
{
    cpuinfo_state s = {0};
    const char *line = text;
    while (line && *line) {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        char buf[8192];
        if (n < sizeof buf) {
            memcpy(buf, line, n);
            buf[n] = '\0';
            char *colon = strchr(buf, ':');
            if (colon) {
                *colon = '\0';
                cpuinfo_line(&s, hw_trim(buf), hw_trim(colon + 1), cpu);
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    add_core(&s);
    if (s.processors > MAX_CPUS) s.processors = MAX_CPUS;
    cpu->logical_cores = s.processors;
    if (s.n_cores && !s.bad_topology && s.n_cores <= s.processors) cpu->physical_cores = s.n_cores;
    if (s.x86 && !cpu->arch[0]) snprintf(cpu->arch, sizeof cpu->arch, "x86_64");
    if (s.arm && !s.x86 && !cpu->arch[0]) snprintf(cpu->arch, sizeof cpu->arch, "aarch64");
    if (s.model[0])
        snprintf(cpu->model, sizeof cpu->model, "%s", s.model);
    else if (s.arm)
        arm_model(&s, cpu);
    if (!s.processors && p) hw_warn(p, "/proc/cpuinfo: no \"processor\" entries");
    free(s.cores);
}

/* Counts the CPUs of a kernel cpu list such as "0-3,8,10-11". */
static bool parse_cpulist(const char *s, uint32_t *count)
{
    uint64_t total = 0;
    while (*s && *s != '\n') {
        uint64_t a, b;
        const char *end;
        if (!hw_parse_u64_prefix(s, &a, &end)) return false;
        b = a;
        if (*end == '-' && !hw_parse_u64_prefix(end + 1, &b, &end)) return false;
        if (b < a || b >= MAX_CPUS) return false;
        total += b - a + 1;
        s = end;
        if (*s == ',') s++;
        else if (*s && *s != '\n') return false;
    }
    if (!total || total > MAX_CPUS) return false;
    *count = (uint32_t)total;
    return true;
}

/* Physical cores as the number of distinct thread-sibling sets. */
static uint32_t sysfs_physical_cores(const char *root, uint32_t logical)
{
    char (*seen)[64] = calloc(logical, sizeof *seen);
    if (!seen) return 0;
    uint32_t n = 0;
    for (uint32_t cpu = 0, found = 0; cpu < MAX_CPUS && found < logical; cpu++) {
        if (cpu > 4 * logical + 64) break; /* sparse numbering gone too far */
        char path[128], line[64];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%u/topology/thread_siblings_list",
                 cpu);
        if (!hw_read_line(root, path, line, sizeof line)) continue;
        found++;
        bool dup = false;
        for (uint32_t i = 0; i < n && !dup; i++) dup = !strcmp(seen[i], line);
        if (!dup && n < logical) snprintf(seen[n++], sizeof seen[0], "%s", line);
    }
    free(seen);
    return n;
}

static void sysfs_caches(const char *root, hw_cpu *cpu)
{
    for (int i = 0; i < 8; i++) {
        char path[128], type[32];
        uint64_t level, size;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        if (!hw_read_u64(root, path, &level)) continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", i);
        if (!hw_read_line(root, path, type, sizeof type)) continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        char sz[32];
        if (!hw_read_line(root, path, sz, sizeof sz) || !hw_parse_size_suffix(sz, &size)) continue;
        if (size > (1ull << 40)) continue;
        if (level == 1 && !strcmp(type, "Data")) cpu->cache_l1d = size;
        else if (level == 2 && strcmp(type, "Instruction")) cpu->cache_l2 = size;
        else if (level == 3 && strcmp(type, "Instruction")) cpu->cache_l3 = size;
    }
}

static uint32_t affinity_cores(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
    int n = CPU_COUNT(&set);
    return n > 0 ? (uint32_t)n : 0;
}

void hw_cpu_probe(const char *root, bool live, hw_cpu *cpu, hw_profile *p)
{
    memset(cpu, 0, sizeof *cpu);
    char *text = hw_read_file(root, "/proc/cpuinfo", HW_FILE_MAX, NULL);
    if (text) {
        hw_cpu_parse_cpuinfo(text, cpu, p);
        free(text);
    } else {
        hw_warn(p, "cannot read /proc/cpuinfo: CPU model and features unknown");
    }
    char line[256];
    uint32_t online;
    if (hw_read_line(root, "/sys/devices/system/cpu/online", line, sizeof line) &&
        parse_cpulist(line, &online) && (!cpu->logical_cores || live))
        cpu->logical_cores = online;
    if (!cpu->logical_cores) {
        hw_warn(p, "CPU count unknown: assuming 1");
        cpu->logical_cores = 1;
    }
    uint32_t phys = sysfs_physical_cores(root, cpu->logical_cores);
    if (phys) cpu->physical_cores = phys;
    if (!cpu->physical_cores || cpu->physical_cores > cpu->logical_cores)
        cpu->physical_cores = cpu->logical_cores;
    sysfs_caches(root, cpu);
    cpu->usable_cores = live ? affinity_cores() : 0;
    if (!cpu->usable_cores || cpu->usable_cores > cpu->logical_cores)
        cpu->usable_cores = cpu->logical_cores;
    uint32_t f;
    if (live && hw_cpu_features_live(&f)) cpu->features = f;
#if defined(__x86_64__)
    if (live) snprintf(cpu->arch, sizeof cpu->arch, "x86_64");
#elif defined(__aarch64__)
    if (live) snprintf(cpu->arch, sizeof cpu->arch, "aarch64");
#endif
    if (!cpu->model[0]) snprintf(cpu->model, sizeof cpu->model, "unknown");
}

int hw_default_threads(const hw_cpu *c)
{
    uint32_t n = c->physical_cores;
    if (c->usable_cores && (n == 0 || c->usable_cores < n)) n = c->usable_cores;
    return n ? (int)n : 1;
}
