/* Live tests on this host: invariants of the probe and of short
 * measurements (bandwidths > 0 and below physical limits). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hw/hw.h"
#include "hw/hw_internal.h"
#include "test.h"

#define MiB (1ull << 20)

static hw_profile *live_probe(void)
{
    hw_profile *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    hw_probe_opts o = {.path = test_tmpdir()};
    strata_error err = {0};
    if (hw_probe(&o, p, &err) != STRATA_OK) {
        test_fail(__FILE__, __LINE__, "hw_probe", " %s", err.message);
        free(p);
        return NULL;
    }
    return p;
}

TEST(test_hw_live_invariants)
{
    hw_profile *p = live_probe();
    REQUIRE(p);
    const hw_cpu *c = &p->cpu;
    CHECK(c->logical_cores >= 1 && c->physical_cores >= 1 && c->physical_cores <= c->logical_cores);
    CHECK(c->usable_cores >= 1 && c->usable_cores <= c->logical_cores);
#if defined(__x86_64__)
    CHECK(!strcmp(c->arch, "x86_64") && (c->features & HW_CPU_SSE42), "every x86-64 since 2008 has SSE4.2");
#endif
    const hw_memory *m = &p->mem;
    CHECK(m->total > 64 * MiB && m->available <= m->total, "total %llu available %llu",
          (unsigned long long)m->total, (unsigned long long)m->available);
    CHECK(m->usable <= m->available && m->swap_free <= m->swap_total);
    if (m->cgroup.version && m->cgroup.limit != HW_NO_LIMIT)
        CHECK(m->cgroup.headroom <= m->cgroup.limit && m->usable <= m->cgroup.headroom);
    const hw_storage *s = &p->storage;
    CHECK(s->path[0] == '/' && s->fs_type[0] && s->total_bytes > 0 && s->free_bytes <= s->total_bytes);
    CHECK(s->o_direct != HW_UNKNOWN, "O_DIRECT tested in the writable test directory");
    CHECK(strlen(p->fingerprint) == 16);
    for (int i = 0; i < p->n_gpus; i++) {
        const hw_gpu *g = &p->gpus[i];
        CHECK(g->name[0] && g->sources, "GPU %d", i);
        CHECK(g->vram_used <= g->vram_total || !g->vram_total);
    }
    CHECK(p->stack.vulkan_devices <= HW_MAX_GPUS);
    printf("    live: %s, %u cores, %.1f GiB total / %.1f GiB usable, %s on %s, %d GPU(s)\n", c->model,
           c->logical_cores, m->total / 1073741824.0, m->usable / 1073741824.0, s->fs_type, s->device,
           p->n_gpus);
    free(p);
}

/* cpuid (what the kernels dispatch on) agrees with the kernel's flags. */
TEST(test_hw_live_cpu_features_match_cpuinfo)
{
    uint32_t live;
    if (!hw_cpu_features_live(&live)) {
        test_skip("no live feature detection on this architecture");
        return;
    }
    hw_cpu cpu;
    memset(&cpu, 0, sizeof cpu);
    char *text = hw_read_file("", "/proc/cpuinfo", HW_FILE_MAX, NULL);
    REQUIRE(text);
    hw_cpu_parse_cpuinfo(text, &cpu, NULL);
    free(text);
    CHECK(live == cpu.features, "cpuid/hwcaps %#x, /proc/cpuinfo %#x", live, cpu.features);
}

TEST(test_hw_live_odirect)
{
    char why[200] = "";
    hw_tristate t = hw_odirect_works(test_tmpdir(), why, sizeof why);
    CHECK(t != HW_UNKNOWN, "%s", why);
    if (t == HW_NO) printf("    O_DIRECT unsupported in %s: %s\n", test_tmpdir(), why);
    DIR *d = opendir(test_tmpdir());
    REQUIRE(d);
    for (struct dirent *e; (e = readdir(d));) CHECK(strncmp(e->d_name, ".strata-", 8), "left behind: %s", e->d_name);
    closedir(d);
}

/* GPU i's prompt-batch rate (FLOP/s of the Q4_K matrix-matrix shader).
 * Below: a 512-token batch shares each weight over the tokens, so even a
 * software device (lavapipe, JIT-compiled shaders on these very cores)
 * does at least 1 FLOP per weight the CPU's hand-written kernels take per
 * second, /100 (2 FLOP a weight and token: a factor 200 of slack; lavapipe
 * on an AVX-512 EPYC did 2 GFLOP/s for 38e9 weights/s). Above: a software
 * device runs on the usable cores, none of which does more than 6 GHz x
 * 64 FLOP a cycle (two 512-bit FMA units); no GPU's shaders reach 1e16
 * (an H100's FP32 peak is 6.7e13). */
static void check_prompt_batch_rate(const hw_profile *p, int i)
{
    const hw_gpu *g = &p->gpus[i];
    double lo = p->measured.cpu_rate / 100;
    double hi = g->type == HW_GPU_CPU ? p->cpu.usable_cores * 6e9 * 64 : 1e16;
    CHECK(p->measured.cpu_rate > 0 && g->mm_q4_k_flops > lo && g->mm_q4_k_flops < hi,
          "GPU %d (%s) prompt batch %.3g FLOP/s, expected between %.3g and %.3g", i, g->name, g->mm_q4_k_flops, lo,
          hi);
    printf("    GPU %d (%s): prompt batch %.3g GFLOP/s; CPU kernels %.3g Gweights/s\n", i, g->name,
           g->mm_q4_k_flops / 1e9, p->measured.cpu_rate / 1e9);
}

TEST(test_hw_live_measure_quick)
{
    hw_profile *p = live_probe();
    REQUIRE(p);
    hw_measure_opts o = {.ram_bytes = 64 * MiB, .disk_bytes = 32 * MiB, .gpu_bytes = 8 * MiB, .min_seconds = 0.1};
    strata_error err = {0};
    CHECK(hw_measure(p, &o, &err) == STRATA_OK, "%s", err.message);
    const hw_measured *m = &p->measured;
    CHECK(m->done && m->time > 0);
    /* DDR5-8800 x 12 channels is ~850 GB/s; 2 TB/s is beyond any CPU socket. */
    CHECK(m->ram_bw_1t > 100e6 && m->ram_bw_1t < 2e12, "1 thread %.3g B/s", m->ram_bw_1t);
    CHECK(m->ram_bw_all > 100e6 && m->ram_bw_all < 2e12, "all threads %.3g B/s", m->ram_bw_all);
    CHECK(m->ram_threads == (int)p->cpu.usable_cores);
    if (p->storage.o_direct == HW_YES) {
        /* PCIe 5.0 x16 carries ~64 GB/s: no single device reads faster. */
        CHECK(m->disk_bw > 1e6 && m->disk_bw < 64e9, "disk %.3g B/s", m->disk_bw);
        CHECK(m->disk_bytes == 32 * MiB);
    } else {
        CHECK(m->disk_bw == 0);
    }
    int measured_gpus = 0;
    for (int i = 0; i < p->n_gpus; i++) {
        if (p->gpus[i].vulkan_index < 0) continue;
        CHECK(p->gpus[i].h2d_bw > 1e6 && p->gpus[i].h2d_bw < 1e12, "GPU %d h2d %.3g B/s", i, p->gpus[i].h2d_bw);
        /* the shaders' reads of F16 and Q4_K weights (a software device too) */
        CHECK(p->gpus[i].vram_bw > 1e6 && p->gpus[i].vram_bw < 1e14 && p->gpus[i].mv_q4_k_bw > 1e6 &&
                  p->gpus[i].mv_q4_k_bw < 1e14,
              "GPU %d reads %.3g and %.3g B/s", i, p->gpus[i].vram_bw, p->gpus[i].mv_q4_k_bw);
        check_prompt_batch_rate(p, i);
        /* a read back's round trip: something, and under the second the measure allows */
        CHECK(p->gpus[i].round_trip_s > 1e-7 && p->gpus[i].round_trip_s < 1, "GPU %d round trip %.3g s", i,
              p->gpus[i].round_trip_s);
        measured_gpus++;
    }
    printf("    measured: RAM %.2f GB/s (1 thread), %.2f GB/s (%d threads); O_DIRECT read %.2f GB/s; "
           "%d Vulkan device(s)\n",
           m->ram_bw_1t / 1e9, m->ram_bw_all / 1e9, m->ram_threads, m->disk_bw / 1e9, measured_gpus);
    if (!p->stack.vulkan_loader)
        printf("    note: no Vulkan loader here (install libvulkan1 + mesa-vulkan-drivers to test host->device copies)\n");
    DIR *d = opendir(test_tmpdir());
    REQUIRE(d);
    for (struct dirent *e; (e = readdir(d));) CHECK(strncmp(e->d_name, ".strata-", 8), "left behind: %s", e->d_name);
    closedir(d);
    free(p);
}

/* A file given instead of a directory is read as it is (a model file). */
TEST(test_hw_live_measure_file)
{
    char path[512];
    snprintf(path, sizeof path, "%s/model.bin", test_tmpdir());
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    static char block[1 << 16];
    memset(block, 7, sizeof block);
    for (int i = 0; i < 80; i++) fwrite(block, 1, sizeof block, f); /* 5 MiB, not block-aligned at the end */
    fwrite(block, 1, 1000, f);
    fclose(f);
    uint64_t got = 0;
    strata_error err = {0};
    double bw = hw_measure_file_read_bw(path, 0, &got, &err);
    if (bw == 0 && strstr(err.message, "O_DIRECT")) {
        test_skip("O_DIRECT unsupported in %s", test_tmpdir());
        return;
    }
    CHECK(bw > 0 && got == 80 * sizeof block + 1000, "bw %g got %llu: %s", bw, (unsigned long long)got, err.message);
    CHECK(hw_measure_file_read_bw("/nonexistent/model.gguf", 0, &got, &err) == 0);
    CHECK(strstr(err.message, "/nonexistent/model.gguf") != NULL);
}

/* The Vulkan probe on whatever driver this machine has (Mesa's lavapipe
 * on CI: packages libvulkan1 and mesa-vulkan-drivers). */
TEST(test_hw_live_vulkan)
{
    hw_profile *p = live_probe();
    REQUIRE(p);
    if (!p->stack.vulkan_loader) {
        test_skip("no Vulkan loader (libvulkan.so.1): install libvulkan1 and mesa-vulkan-drivers to test the Vulkan probe");
        free(p);
        return;
    }
    if (!p->stack.vulkan_devices) {
        test_skip("Vulkan loader present but no driver reports a device (%d ICD manifest(s))", p->stack.vulkan_icds);
        free(p);
        return;
    }
    int seen = 0;
    for (int i = 0; i < p->n_gpus; i++) {
        const hw_gpu *g = &p->gpus[i];
        if (g->vulkan_index < 0) continue;
        seen++;
        CHECK(g->name[0] && g->driver[0] && g->driver_info[0], "GPU %d", i);
        CHECK(g->type != HW_GPU_UNKNOWN && g->vram_total > 0, "GPU %d %s", i, g->name);
        if (g->has_budget) CHECK(g->vram_budget > 0 && g->vram_process_usage <= g->vram_total);
        printf("    Vulkan device %d: %s (%s, %s), %.2f GiB device-local%s\n", g->vulkan_index, g->name,
               hw_gpu_type_name(g->type), g->driver, g->vram_total / 1073741824.0,
               g->has_budget ? ", VK_EXT_memory_budget" : "");
    }
    CHECK(seen == p->stack.vulkan_devices, "%d of %d devices listed", seen, p->stack.vulkan_devices);
    free(p);
}
