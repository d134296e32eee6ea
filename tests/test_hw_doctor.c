/* strata doctor's checks on hand-made profiles: each problem gives its
 * WARN or FAIL with a one-line fix, a healthy machine passes. */
#include <stdlib.h>
#include <string.h>

#include "hw/hw.h"
#include "test.h"

#define GiB (1ull << 30)

static hw_profile *healthy(void)
{
    hw_profile *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    snprintf(p->cpu.arch, sizeof p->cpu.arch, "x86_64");
    snprintf(p->cpu.model, sizeof p->cpu.model, "Test CPU");
    p->cpu.logical_cores = p->cpu.physical_cores = p->cpu.usable_cores = 8;
    p->cpu.features = HW_CPU_AVX2 | HW_CPU_FMA;
    p->mem.total = 64 * GiB;
    p->mem.available = 60 * GiB;
    p->mem.swap_total = p->mem.swap_free = 4 * GiB;
    p->mem.cgroup.version = 2;
    p->mem.cgroup.limit = p->mem.cgroup.headroom = HW_NO_LIMIT;
    snprintf(p->mem.thp, sizeof p->mem.thp, "madvise");
    hw_memory_update_usable(&p->mem);
    snprintf(p->storage.path, sizeof p->storage.path, "/models");
    snprintf(p->storage.fs_type, sizeof p->storage.fs_type, "ext4");
    snprintf(p->storage.device, sizeof p->storage.device, "nvme0n1");
    p->storage.rotational = HW_NO;
    p->storage.o_direct = HW_YES;
    p->storage.total_bytes = 1000 * GiB;
    p->storage.free_bytes = 500 * GiB;
    p->stack.vulkan_loader = true;
    p->stack.vulkan_icds = 1;
    p->stack.vulkan_devices = 1;
    p->n_gpus = 1;
    hw_gpu *g = &p->gpus[0];
    snprintf(g->name, sizeof g->name, "Test GPU");
    g->type = HW_GPU_DISCRETE;
    g->vulkan_index = 0;
    g->vram_total = 24 * GiB;
    g->vram_used = GiB / 4;
    g->vram_free = g->vram_total - g->vram_used;
    p->measured.done = true;
    p->measured.time = 1767225600;
    return p;
}

static const hw_check *find(const hw_check *c, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(c[i].name, name)) return &c[i];
    return NULL;
}

static hw_check_level level_of(const hw_profile *p, hw_cache_state cache, const char *name)
{
    hw_check checks[HW_MAX_CHECKS];
    int n = hw_doctor(p, cache, checks, HW_MAX_CHECKS);
    const hw_check *c = find(checks, n, name);
    if (!c) {
        test_fail(__FILE__, __LINE__, "find", " no check named %s", name);
        return HW_FAIL;
    }
    if (c->level != HW_PASS && !c->fix[0]) test_fail(__FILE__, __LINE__, "fix", " %s has no fix", name);
    if (strchr(c->message, '\n') || strchr(c->fix, '\n')) test_fail(__FILE__, __LINE__, "one line", " %s", name);
    return c->level;
}

TEST(test_hw_doctor_healthy)
{
    hw_profile *p = healthy();
    REQUIRE(p);
    hw_check checks[HW_MAX_CHECKS];
    int n = hw_doctor(p, HW_CACHE_FRESH, checks, HW_MAX_CHECKS);
    CHECK(n >= 9, "n %d", n);
    for (int i = 0; i < n; i++) CHECK(checks[i].level == HW_PASS, "%s: %s", checks[i].name, checks[i].message);
    free(p);
}

TEST(test_hw_doctor_problems)
{
    hw_profile *p = healthy();
    REQUIRE(p);
    p->storage.o_direct = HW_NO;
    CHECK(level_of(p, HW_CACHE_FRESH, "o_direct") == HW_WARN);
    p->storage.o_direct = HW_UNKNOWN;
    CHECK(level_of(p, HW_CACHE_FRESH, "o_direct") == HW_WARN);

    p->mem.cgroup.limit = 8 * GiB;
    p->mem.cgroup.usage = GiB;
    p->mem.cgroup.headroom = 7 * GiB;
    CHECK(level_of(p, HW_CACHE_FRESH, "cgroup") == HW_WARN, "headroom far below MemAvailable");
    p->mem.cgroup.headroom = GiB / 2;
    CHECK(level_of(p, HW_CACHE_FRESH, "cgroup") == HW_WARN, "under 1 GiB left: models stream");
    p->mem.cgroup.headroom = 20u << 20;
    CHECK(level_of(p, HW_CACHE_FRESH, "cgroup") == HW_FAIL, "20 MiB left: too little even streamed");
    p->mem.cgroup.limit = 100 * GiB;
    p->mem.cgroup.headroom = 99 * GiB;
    CHECK(level_of(p, HW_CACHE_FRESH, "cgroup") == HW_PASS);

    p->mem.swap_total = 0;
    CHECK(level_of(p, HW_CACHE_FRESH, "swap") == HW_WARN, "no swap");
    p->mem.swap_total = 64 * GiB;
    CHECK(level_of(p, HW_CACHE_FRESH, "swap") == HW_WARN, "large swap: thrash risk");

    snprintf(p->mem.thp, sizeof p->mem.thp, "never");
    CHECK(level_of(p, HW_CACHE_FRESH, "thp") == HW_WARN);
    snprintf(p->mem.thp, sizeof p->mem.thp, "always");
    CHECK(level_of(p, HW_CACHE_FRESH, "thp") == HW_WARN);

    p->stack.vulkan_devices = 0;
    CHECK(level_of(p, HW_CACHE_FRESH, "vulkan") == HW_WARN, "loader but no driver");
    p->stack.vulkan_loader = false;
    CHECK(level_of(p, HW_CACHE_FRESH, "vulkan") == HW_WARN, "driver/GPU but no loader");
    p->n_gpus = 0;
    p->stack.vulkan_icds = 0;
    CHECK(level_of(p, HW_CACHE_FRESH, "vulkan") == HW_PASS, "no GPU at all is clean");
    p->n_gpus = 1;

    p->gpus[0].vram_used = 10 * GiB;
    CHECK(level_of(p, HW_CACHE_FRESH, "gpu_memory") == HW_WARN, "used by other processes");
    p->gpus[0].vram_used = p->gpus[0].vram_free = 0;
    p->gpus[0].has_budget = true;
    p->gpus[0].vram_budget = 12 * GiB;
    CHECK(level_of(p, HW_CACHE_FRESH, "gpu_memory") == HW_WARN, "Vulkan budget far below the heap");

    p->storage.free_bytes = 5 * GiB;
    CHECK(level_of(p, HW_CACHE_FRESH, "disk_space") == HW_WARN);
    p->storage.free_bytes = GiB / 2;
    CHECK(level_of(p, HW_CACHE_FRESH, "disk_space") == HW_FAIL);
    p->storage.rotational = HW_YES;
    p->measured.disk_bw = 150e6;
    CHECK(level_of(p, HW_CACHE_FRESH, "disk_type") == HW_WARN);
    p->measured.disk_bw = 900e6;
    CHECK(level_of(p, HW_CACHE_FRESH, "disk_type") == HW_PASS, "measured fast despite the flag");

    p->cpu.features = HW_CPU_SSE42 | HW_CPU_AVX;
    CHECK(level_of(p, HW_CACHE_FRESH, "cpu_simd") == HW_WARN, "no AVX2");
    snprintf(p->cpu.arch, sizeof p->cpu.arch, "aarch64");
    p->cpu.features = HW_CPU_NEON;
    CHECK(level_of(p, HW_CACHE_FRESH, "cpu_simd") == HW_WARN, "no dotprod");

    CHECK(level_of(p, HW_CACHE_MISSING, "profile") == HW_WARN);
    CHECK(level_of(p, HW_CACHE_STALE, "profile") == HW_WARN);
    CHECK(level_of(p, HW_CACHE_BAD, "profile") == HW_WARN);
    hw_check checks[HW_MAX_CHECKS];
    int n = hw_doctor(p, HW_CACHE_STALE, checks, HW_MAX_CHECKS);
    const hw_check *c = find(checks, n, "profile");
    CHECK(c && !strcmp(c->fix, "strata detect --measure"));
    free(p);
}
