/* The fingerprint identifies the machine, not the command that probed it
 * (issue 16): `run` probes without the GPU libraries and `detect` with
 * them, and a VM's RAM moves by a few percent, yet a profile saved by one
 * must be reused by the other. Another CPU, RAM size or GPU is another
 * machine, and the message for a stale profile names what differs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hw/hw.h"
#include "hw_helpers.h"
#include "test.h"

#define MiB (1024ull * 1024)
#define GiB (1024ull * MiB)

static hw_profile *probe_root(const char *root, const char *path)
{
    hw_profile *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    hw_probe_opts o = {.root = root, .path = path};
    strata_error err = {0};
    if (hw_probe(&o, p, &err) != STRATA_OK) {
        test_fail(__FILE__, __LINE__, "hw_probe", " %s: %s", root, err.message);
        free(p);
        return NULL;
    }
    return p;
}

static hw_profile *probe_tree(const char *tree)
{
    char root[256];
    snprintf(root, sizeof root, "tests/data/hw/%s", tree);
    return probe_root(root, "/");
}

static hw_profile *copy_of(const hw_profile *p)
{
    hw_profile *q = malloc(sizeof *q);
    if (q) *q = *p;
    return q;
}

static bool same_fp(const hw_profile *p, const char *fp)
{
    char now[24];
    hw_fingerprint(p, now);
    return !strcmp(now, fp);
}

/* The PCI bus in sysfs lists the GPUs whatever else was probed: display
 * controllers of AMD, NVIDIA and Intel (class 0x03, or a DRM card where a
 * captured tree has no class file), not the BMC's ASPEED adapter. */
TEST(test_hw_fingerprint_pci_gpus)
{
    hw_profile *p = probe_tree("gpu-sysfs");
    REQUIRE(p);
    CHECK(p->n_pci_gpus == 3, "%d PCI GPUs", p->n_pci_gpus);
    if (p->n_pci_gpus == 3) {
        CHECK(!strcmp(p->pci_gpus[0].pci_address, "0000:00:02.0") && p->pci_gpus[0].vendor_id == 0x8086);
        CHECK(!strcmp(p->pci_gpus[1].pci_address, "0000:03:00.0") && p->pci_gpus[1].vendor_id == 0x1002 &&
              p->pci_gpus[1].device_id == 0x73bf);
        CHECK(!strcmp(p->pci_gpus[2].pci_address, "0000:41:00.0") && p->pci_gpus[2].vendor_id == 0x10de &&
              p->pci_gpus[2].device_id == 0x2684);
    }
    /* saved and read back with the profile */
    char *text = hw_profile_to_json(p);
    hw_profile *q = calloc(1, sizeof *q);
    REQUIRE(text && q);
    strata_error err = {0};
    CHECK(hw_profile_from_json(text, "t", q, &err) == STRATA_OK, "%s", err.message);
    char why[128] = "";
    CHECK(hw_profile_equal(p, q, why, sizeof why), "differs in %s", why);
    free(text);
    free(q);
    free(p);
}

/* What the GPU libraries add to a probe (NVML's name and VRAM for a GPU
 * sysfs lists, a Vulkan device sysfs does not, llvmpipe) changes nothing. */
TEST(test_hw_fingerprint_gpu_libs_on_and_off)
{
    hw_profile *off = probe_tree("gpu-sysfs");
    REQUIRE(off);
    hw_profile *on = copy_of(off);
    REQUIRE(on);
    REQUIRE(on->n_gpus == 3);
    hw_gpu *nv = &on->gpus[2];
    snprintf(nv->name, sizeof nv->name, "NVIDIA GeForce RTX 4090");
    nv->sources |= HW_SRC_NVML | HW_SRC_VULKAN;
    nv->vram_total = 24 * GiB;
    nv->vram_used = 1 * GiB;
    nv->vram_free = 23 * GiB;
    nv->vulkan_index = 0;
    on->gpus[0].vram_total = 16 * GiB - 256 * MiB; /* Vulkan's heap sum, not amdgpu's counter */
    hw_gpu *vk = &on->gpus[on->n_gpus++];
    memset(vk, 0, sizeof *vk);
    snprintf(vk->name, sizeof vk->name, "llvmpipe (LLVM 15.0.6, 256 bits)");
    vk->type = HW_GPU_CPU;
    vk->vendor_id = 0x10005;
    vk->vulkan_index = 1;
    vk->vram_total = 2 * GiB;
    hw_gpu *soc = &on->gpus[on->n_gpus++];
    memset(soc, 0, sizeof *soc);
    snprintf(soc->name, sizeof soc->name, "Vulkan-only device");
    soc->type = HW_GPU_INTEGRATED;
    soc->vendor_id = 0x13b5;
    soc->vulkan_index = 2;
    on->stack.vulkan_loader = on->stack.nvml = true;
    on->stack.vulkan_devices = 3;
    CHECK(same_fp(on, off->fingerprint), "the GPU libraries do not change the fingerprint");
    free(on);
    free(off);
}

/* An NVIDIA GPU without nvidia-drm (no DRM card: only NVML would list it)
 * on the captured x86 host: a tree made here. Probing it gives the same
 * fingerprint every time, another one than the host without the GPU, and
 * NVML's view of it changes nothing. */
TEST(test_hw_fingerprint_nvidia_without_drm)
{
    char root[1024], cmd[4000], *out = NULL;
    snprintf(root, sizeof root, "%s/nv-host", test_tmpdir());
    snprintf(cmd, sizeof cmd,
             "cp -r tests/data/hw/x86-host '%s' && d='%s/sys/bus/pci/devices/0000:65:00.0' && mkdir -p \"$d\" && "
             "echo 0x10de > \"$d/vendor\" && echo 0x2335 > \"$d/device\" && echo 0x030200 > \"$d/class\" && "
             "e='%s/sys/bus/pci/devices/0000:00:03.0' && mkdir -p \"$e\" && echo 0x8086 > \"$e/vendor\" && "
             "echo 0x0c0330 > \"$e/class\"",
             root, root, root);
    REQUIRE(test_run(cmd, &out, true) == 0, "%s", out ? out : "");
    free(out);
    hw_profile *a = probe_root(root, "/"), *b = probe_root(root, "/work"), *host = probe_tree("x86-host");
    REQUIRE(a && b && host);
    CHECK(a->n_gpus == 0 && a->n_pci_gpus == 1, "no DRM card: only the PCI bus lists it (%d, %d)", a->n_gpus,
          a->n_pci_gpus);
    CHECK(!strcmp(a->fingerprint, b->fingerprint));
    CHECK(strcmp(a->fingerprint, host->fingerprint), "a GPU more is another machine");
    /* what NVML adds in a live probe */
    hw_gpu *g = &b->gpus[b->n_gpus++];
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "NVIDIA H200");
    snprintf(g->pci_address, sizeof g->pci_address, "0000:65:00.0");
    g->vendor_id = 0x10de;
    g->type = HW_GPU_DISCRETE;
    g->sources = HW_SRC_NVML;
    g->vram_total = 141 * GiB;
    g->vulkan_index = -1;
    CHECK(same_fp(b, a->fingerprint), "NVML's view of the GPU changes nothing");
    char why[400];
    hw_fingerprint_diff(host, a, why, sizeof why);
    CHECK(strstr(why, "GPUs differ: none there, 10de:2335 here") != NULL, "%s", why);
    free(a);
    free(b);
    free(host);
}

/* RAM: steps of a factor sqrt(2), so a few percent more or less (a VM's
 * balloon, a kernel reserving more) is the same machine, for every common
 * size; twice as much is not. */
TEST(test_hw_fingerprint_ram_size)
{
    hw_profile *p = probe_tree("x86-host");
    REQUIRE(p);
    static const double sizes[] = {2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        /* MemTotal sits a little below the installed size */
        uint64_t base = (uint64_t)(sizes[i] * 0.97 * (double)GiB);
        int step = hw_fingerprint_ram_step(base);
        CHECK(hw_fingerprint_ram_step(base + base / 20) == step && hw_fingerprint_ram_step(base - base / 20) == step,
              "%.0f GiB +- 5 %%", sizes[i]);
        CHECK(hw_fingerprint_ram_step(base * 2) != step);
    }
    char fp[24];
    snprintf(fp, sizeof fp, "%s", p->fingerprint);
    p->mem.total += p->mem.total * 3 / 100;
    CHECK(same_fp(p, fp), "3 %% more RAM");
    p->mem.total = p->mem.total * 96 / 100;
    CHECK(same_fp(p, fp), "a little less RAM");
    p->mem.total *= 2;
    CHECK(!same_fp(p, fp), "twice the RAM");
    free(p);
}

/* Another CPU model, core count or feature set is another machine; the
 * affinity mask (usable cores) and the storage are not identity. */
TEST(test_hw_fingerprint_cpu)
{
    hw_profile *a = probe_tree("x86-host");
    REQUIRE(a);
    hw_profile *b = copy_of(a);
    REQUIRE(b);
    b->cpu.usable_cores = 1;
    snprintf(b->storage.path, sizeof b->storage.path, "/elsewhere");
    snprintf(b->storage.device, sizeof b->storage.device, "nvme0n1");
    CHECK(same_fp(b, a->fingerprint), "usable cores and storage are not identity");
    snprintf(b->cpu.model, sizeof b->cpu.model, "Intel(R) Xeon(R) Platinum 8480+");
    CHECK(!same_fp(b, a->fingerprint), "another CPU model");
    *b = *a;
    b->cpu.logical_cores = b->cpu.physical_cores = 16;
    CHECK(!same_fp(b, a->fingerprint), "more cores");
    *b = *a;
    b->cpu.features |= HW_CPU_AVX512F;
    CHECK(!same_fp(b, a->fingerprint), "other SIMD features");
    free(a);
    free(b);
}

/* A saved profile of another machine is stale, and the reason names what
 * differs; a few percent of RAM is not a reason. */
TEST(test_hw_fingerprint_stale_reason)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/cache/strata/profile.json", test_tmpdir());
    hw_profile *saved = probe_tree("x86-host");
    REQUIRE(saved);
    saved->measured.done = true;
    saved->measured.ram_bw_all = 2e10;
    saved->measured.disk_bw = 1e9;
    snprintf(saved->cpu.model, sizeof saved->cpu.model, "Intel Xeon 8480");
    saved->cpu.logical_cores = saved->cpu.physical_cores = saved->cpu.usable_cores = 16;
    hw_fingerprint(saved, saved->fingerprint);
    strata_error err = {0};
    REQUIRE(hw_profile_save(saved, path, &err) == STRATA_OK, "%s", err.message);
    hw_profile *live = probe_tree("x86-host");
    REQUIRE(live);
    char why[400];
    CHECK(hw_profile_reuse(live, path, why, sizeof why, &err) == HW_CACHE_STALE);
    CHECK(strstr(why, "the saved profile is from another machine (CPU differs: Intel Xeon 8480, x86_64 (16 cores) "
                      "there, AMD EPYC, x86_64 (2 cores) here)") != NULL,
          "%s", why);
    CHECK(!live->measured.done, "nothing reused");

    /* the same machine with 3 % more RAM: reused */
    hw_profile *same = probe_tree("x86-host");
    REQUIRE(same);
    same->measured = saved->measured;
    same->mem.total += same->mem.total * 3 / 100;
    hw_fingerprint(same, same->fingerprint);
    REQUIRE(hw_profile_save(same, path, &err) == STRATA_OK, "%s", err.message);
    CHECK(hw_profile_reuse(live, path, why, sizeof why, &err) == HW_CACHE_FRESH && !why[0], "%s", why);
    CHECK(live->measured.done && live->measured.disk_bw == 1e9);

    /* twice the RAM, and a profile without measurements */
    same->mem.total *= 2;
    hw_fingerprint(same, same->fingerprint);
    REQUIRE(hw_profile_save(same, path, &err) == STRATA_OK);
    CHECK(hw_profile_reuse(live, path, why, sizeof why, &err) == HW_CACHE_STALE);
    CHECK(strstr(why, "(RAM size differs: 48.5 GiB there, 23.5 GiB here)") != NULL, "%s", why);
    same->measured.done = false;
    REQUIRE(hw_profile_save(same, path, &err) == STRATA_OK);
    CHECK(hw_profile_reuse(live, path, why, sizeof why, &err) == HW_CACHE_STALE);
    CHECK(!strcmp(why, "the saved profile has no measurements"), "%s", why);
    free(same);
    free(live);
    free(saved);
}

/* Live: `strata detect --json` opens the GPU libraries (here a stand-in
 * NVML that reports a 24 GiB GPU) and `run` does not; both fingerprints of
 * this machine are the same. */
TEST(test_hw_fingerprint_live_nvml)
{
    char *out = test_detect_json_with_fake_nvml();
    if (!out) return;
    hw_profile *with = calloc(1, sizeof *with), *without = calloc(1, sizeof *without);
    REQUIRE(with && without);
    strata_error err = {0};
    CHECK(out && hw_profile_from_json(out, "detect", with, &err) == STRATA_OK, "%s", err.message);
    free(out);
    bool nvml = false;
    for (int i = 0; i < with->n_gpus; i++) nvml |= (with->gpus[i].sources & HW_SRC_NVML) != 0;
    CHECK(nvml, "the stand-in NVML's GPU is listed");
    hw_probe_opts o = {.no_gpu_libs = true, .no_odirect_test = true};
    CHECK(hw_probe(&o, without, &err) == STRATA_OK, "%s", err.message);
    CHECK(!strcmp(with->fingerprint, without->fingerprint), "with GPU libraries %s, without %s", with->fingerprint,
          without->fingerprint);
    free(with);
    free(without);
}
