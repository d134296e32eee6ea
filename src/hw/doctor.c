/* strata doctor's checks: what makes big-model runs fail or crawl, judged
 * from a probed profile. Each check gives PASS, WARN or FAIL, a message
 * and a one-line fix. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "hw/hw_internal.h"

#define GiB (1ull << 30)
#define MiB (1ull << 20)
/* Below this a cgroup cannot run even the smallest model streamed: the
 * process itself, a KV cache and two streaming slots (measured: a 1B model
 * streams in 27 MiB at -c 32). */
#define CGROUP_MIN_HEADROOM (32 * MiB)

typedef struct checks {
    hw_check *out;
    int n, max;
} checks;

__attribute__((format(printf, 5, 6))) static void add(checks *c, hw_check_level level,
                                                      const char *name, const char *fix,
                                                      const char *fmt, ...)
{
    if (c->n >= c->max) return;
    hw_check *k = &c->out[c->n++];
    memset(k, 0, sizeof *k);
    k->level = level;
    snprintf(k->name, sizeof k->name, "%s", name);
    snprintf(k->fix, sizeof k->fix, "%s", fix ? fix : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(k->message, sizeof k->message, fmt, ap);
    va_end(ap);
}

static double gib(uint64_t b) { return (double)b / (double)GiB; }
static double mib(uint64_t b) { return (double)b / (double)MiB; }

static void check_odirect(checks *c, const hw_storage *s)
{
    const char *fs = s->fs_type[0] ? s->fs_type : "unknown filesystem";
    if (s->o_direct == HW_YES)
        add(c, HW_PASS, "o_direct", NULL, "O_DIRECT works in %s (%s)", s->path, fs);
    else if (s->o_direct == HW_NO)
        add(c, HW_WARN, "o_direct",
            "keep models on a local ext4, xfs or btrfs filesystem (not tmpfs, overlay or a network share)",
            "O_DIRECT unsupported in %s (%s): streaming will go through the page cache", s->path, fs);
    else
        add(c, HW_WARN, "o_direct", "run `strata doctor --path DIR` on a writable directory where models live",
            "could not test O_DIRECT in %s", s->path[0] ? s->path : "the model directory");
}

/* A rotational flag is a warning unless a measurement shows the device
 * streams fast anyway (virtual disks often claim to rotate). */
static void check_disk(checks *c, const hw_storage *s, const hw_measured *m)
{
    if (s->rotational == HW_YES && m->done && m->disk_bw >= 400e6)
        add(c, HW_PASS, "disk_type", NULL, "%s: the kernel calls %s rotational, but it read %.0f MB/s",
            s->path, s->device, m->disk_bw / 1e6);
    else if (s->rotational == HW_YES)
        add(c, HW_WARN, "disk_type", "move models to an SSD or NVMe drive",
            "%s is on a rotating disk (%s): streaming weights will be slow", s->path, s->device);
    if (!s->total_bytes) {
        add(c, HW_WARN, "disk_space", "check that --path exists and is readable", "free space in %s unknown",
            s->path);
        return;
    }
    double pct = 100.0 * (double)s->free_bytes / (double)s->total_bytes;
    if (s->free_bytes < GiB)
        add(c, HW_FAIL, "disk_space", "free space on that filesystem or use --path on a larger disk",
            "%s: only %.2f GiB free: downloads and test files will fail", s->path, gib(s->free_bytes));
    else if (pct < 10.0 || s->free_bytes < 20 * GiB)
        add(c, HW_WARN, "disk_space", "free space on that filesystem or use --path on a larger disk",
            "%s: disk nearly full, %.1f GiB free (%.0f%%)", s->path, gib(s->free_bytes), pct);
    else
        add(c, HW_PASS, "disk_space", NULL, "%s: %.1f GiB free (%.0f%%)", s->path, gib(s->free_bytes), pct);
}

static void check_cgroup(checks *c, const hw_memory *m)
{
    const hw_cgroup *cg = &m->cgroup;
    if (!cg->version || cg->limit == HW_NO_LIMIT) {
        add(c, HW_PASS, "cgroup", NULL, "no cgroup memory limit%s", cg->version ? "" : " found");
    } else if (cg->headroom < CGROUP_MIN_HEADROOM) {
        add(c, HW_FAIL, "cgroup", "raise the limit (systemd-run -p MemoryMax=..., docker run --memory=...)",
            "cgroup v%d limit %.0f MiB with %.0f MiB held leaves %.0f MiB: too little to run even a small model "
            "streamed", cg->version, mib(cg->limit), mib(cg->usage - cg->reclaimable), mib(cg->headroom));
    } else if (cg->headroom < GiB) {
        add(c, HW_WARN, "cgroup", "raise the limit (systemd-run -p MemoryMax=..., docker run --memory=...)",
            "cgroup v%d limit %.0f MiB leaves %.0f MiB (default budget %.0f MiB): models larger than that "
            "stream from disk", cg->version, mib(cg->limit), mib(cg->headroom),
            mib(hw_default_budget(cg->headroom)));
    } else if (cg->headroom < m->available / 2) {
        add(c, HW_WARN, "cgroup", "raise the limit (systemd-run -p MemoryMax=..., docker run --memory=...) or run outside the cgroup",
            "cgroup v%d limit leaves %.1f GiB, far below MemAvailable %.1f GiB: strata will respect the cgroup",
            cg->version, gib(cg->headroom), gib(m->available));
    } else {
        add(c, HW_PASS, "cgroup", NULL, "cgroup v%d limit %.1f GiB leaves %.1f GiB", cg->version,
            gib(cg->limit), gib(cg->headroom));
    }
}

static void check_swap(checks *c, const hw_memory *m)
{
    if (!m->total) {
        add(c, HW_WARN, "swap", "check /proc/meminfo", "memory size unknown");
    } else if (!m->swap_total) {
        add(c, HW_WARN, "swap", "add a small swap file (2-4 GiB) as a cushion against other programs' spikes",
            "no swap: memory pressure from other programs ends in the OOM killer");
    } else if (m->swap_total > m->total / 4) {
        add(c, HW_WARN, "swap", "sudo sysctl vm.swappiness=10 (strata keeps to its budgets; mmap-based runners thrash)",
            "%.1f GiB of swap: over-committed mmap-style runs thrash instead of failing fast",
            gib(m->swap_total));
    } else {
        add(c, HW_PASS, "swap", NULL, "%.1f GiB of swap, small next to %.1f GiB of RAM", gib(m->swap_total),
            gib(m->total));
    }
}

static void check_thp(checks *c, const hw_memory *m)
{
    const char *fix = "echo madvise | sudo tee /sys/kernel/mm/transparent_hugepage/enabled";
    if (!strcmp(m->thp, "madvise"))
        add(c, HW_PASS, "thp", NULL, "transparent huge pages: madvise (strata asks for them where they help)");
    else if (!strcmp(m->thp, "always"))
        add(c, HW_WARN, "thp", fix, "transparent huge pages: always (compaction stalls and memory bloat)");
    else if (!strcmp(m->thp, "never"))
        add(c, HW_WARN, "thp", fix, "transparent huge pages: never (weight buffers pay more TLB misses)");
    else
        add(c, HW_WARN, "thp", "check /sys/kernel/mm/transparent_hugepage/enabled",
            "transparent huge page mode unknown");
}

static int real_gpus(const hw_profile *p)
{
    int n = 0;
    for (int i = 0; i < p->n_gpus; i++)
        if (p->gpus[i].type != HW_GPU_CPU) n++;
    return n;
}

static int vulkan_real_gpus(const hw_profile *p)
{
    int n = 0;
    for (int i = 0; i < p->n_gpus; i++)
        if (p->gpus[i].type != HW_GPU_CPU && p->gpus[i].vulkan_index >= 0) n++;
    return n;
}

static void check_vulkan(checks *c, const hw_profile *p)
{
    const hw_gpu_stack *s = &p->stack;
    const char *driver_fix = "install the GPU's Vulkan driver (Debian/Ubuntu: mesa-vulkan-drivers; NVIDIA: the proprietary driver)";
    int gpus = real_gpus(p), vk_gpus = vulkan_real_gpus(p);
    if (!s->vulkan_loader) {
        if (s->vulkan_icds || gpus)
            add(c, HW_WARN, "vulkan", "install the Vulkan loader (Debian/Ubuntu: libvulkan1)",
                "Vulkan driver or GPU present but no Vulkan loader (libvulkan.so.1)");
        else
            add(c, HW_PASS, "vulkan", NULL, "no GPU and no Vulkan: plans use the CPU only");
    } else if (!s->vulkan_devices) {
        add(c, HW_WARN, "vulkan", driver_fix, "Vulkan loader present but no driver (ICD) reports a device");
    } else if (vk_gpus < gpus) {
        add(c, HW_WARN, "vulkan", driver_fix, "%d GPU(s) found but only %d visible through Vulkan", gpus, vk_gpus);
    } else if (!vk_gpus) {
        add(c, HW_PASS, "vulkan", NULL, "Vulkan sees only a software device (no GPU): plans use the CPU only");
    } else {
        add(c, HW_PASS, "vulkan", NULL, "Vulkan sees %d GPU(s)", vk_gpus);
    }
}

static void check_gpu_memory(checks *c, const hw_profile *p)
{
    for (int i = 0; i < p->n_gpus; i++) {
        const hw_gpu *g = &p->gpus[i];
        if (g->type == HW_GPU_CPU || !g->vram_total) continue;
        uint64_t used = g->vram_used;
        const char *how = "used";
        if (!used && !g->vram_free && g->has_budget) {
            used = g->vram_budget < g->vram_total ? g->vram_total - g->vram_budget : 0;
            how = "unavailable (Vulkan budget)";
        }
        uint64_t thresh = g->vram_total / 10 > 512 * MiB ? g->vram_total / 10 : 512 * MiB;
        if (used > thresh)
            add(c, HW_WARN, "gpu_memory", "close other GPU programs (nvidia-smi, or amdgpu_top / radeontop, lists them)",
                "GPU %d %s: %.1f of %.1f GiB already %s by other processes", i, g->name, gib(used),
                gib(g->vram_total), how);
        else
            add(c, HW_PASS, "gpu_memory", NULL, "GPU %d %s: %.1f GiB, %.1f GiB in use elsewhere", i, g->name,
                gib(g->vram_total), gib(used));
    }
}

static void check_cpu(checks *c, const hw_cpu *cpu)
{
    if (!strcmp(cpu->arch, "x86_64")) {
        if (cpu->features & HW_CPU_AVX2)
            add(c, HW_PASS, "cpu_simd", NULL, "%s: AVX2%s%s", cpu->model,
                cpu->features & HW_CPU_FMA ? " FMA" : "", cpu->features & HW_CPU_AVX512F ? " AVX-512" : "");
        else
            add(c, HW_WARN, "cpu_simd", "use a machine with AVX2 (any x86-64 since about 2013) for fast kernels",
                "%s has no AVX2: CPU kernels fall back to slow SSE/scalar code", cpu->model);
    } else if (!strcmp(cpu->arch, "aarch64")) {
        if (cpu->features & HW_CPU_DOTPROD)
            add(c, HW_PASS, "cpu_simd", NULL, "%s: NEON with dot product", cpu->model);
        else
            add(c, HW_WARN, "cpu_simd", "use an ARMv8.2+ CPU with the dot-product extension for fast kernels",
                "%s has no dot-product instructions: quantized kernels are slower", cpu->model);
    } else {
        add(c, HW_WARN, "cpu_simd", "strata's fast kernels target x86-64 and arm64",
            "CPU architecture %s: scalar kernels only", cpu->arch[0] ? cpu->arch : "unknown");
    }
}

static void check_profile(checks *c, const hw_profile *p, hw_cache_state cache)
{
    const char *fix = "strata detect --measure";
    if (cache == HW_CACHE_FRESH) {
        char when[32] = "an unknown time";
        time_t t = (time_t)p->measured.time;
        struct tm tm;
        if (t > 0 && gmtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", &tm);
        add(c, HW_PASS, "profile", NULL, "saved hardware profile measured %s", when);
    } else if (cache == HW_CACHE_STALE) {
        add(c, HW_WARN, "profile", fix, "saved hardware profile is stale (another machine, or not measured)");
    } else if (cache == HW_CACHE_BAD) {
        add(c, HW_WARN, "profile", fix, "saved hardware profile is unreadable");
    } else {
        add(c, HW_WARN, "profile", fix, "no saved hardware profile: bandwidths are not measured yet");
    }
}

int hw_doctor(const hw_profile *p, hw_cache_state cache, hw_check *out, int max)
{
    checks c = {out, 0, max};
    check_cpu(&c, &p->cpu);
    check_cgroup(&c, &p->mem);
    check_swap(&c, &p->mem);
    check_thp(&c, &p->mem);
    check_odirect(&c, &p->storage);
    check_disk(&c, &p->storage, &p->measured);
    check_vulkan(&c, p);
    check_gpu_memory(&c, p);
    check_profile(&c, p, cache);
    return c.n;
}
