/* The probe on captured and hand-written /proc + /sys trees under
 * tests/data/hw (through the root prefix: nothing here reads the host). */
#include <stdlib.h>
#include <string.h>

#include "hw/hw.h"
#include "test.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)

static hw_profile *probe_tree(const char *tree, const char *path)
{
    static char root[256];
    snprintf(root, sizeof root, "tests/data/hw/%s", tree);
    hw_profile *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    hw_probe_opts o = {.root = root, .path = path};
    strata_error err = {0};
    if (hw_probe(&o, p, &err) != STRATA_OK) {
        test_fail(__FILE__, __LINE__, "hw_probe", " %s: %s", tree, err.message);
        free(p);
        return NULL;
    }
    return p;
}

static bool has_warning(const hw_profile *p, const char *text)
{
    for (int i = 0; i < p->n_warnings; i++)
        if (strstr(p->warnings[i], text)) return true;
    return false;
}

/* Files captured from the development machine (x86-64 VM, cgroup v1). */
TEST(test_hw_fixture_x86_host)
{
    hw_profile *p = probe_tree("x86-host", "/work/main");
    REQUIRE(p);
    CHECK(!strcmp(p->cpu.arch, "x86_64"));
    CHECK(!strcmp(p->cpu.model, "AMD EPYC"), "%s", p->cpu.model);
    CHECK(p->cpu.logical_cores == 2 && p->cpu.physical_cores == 2 && p->cpu.usable_cores == 2);
    CHECK(p->cpu.features == (HW_CPU_SSE42 | HW_CPU_AVX | HW_CPU_AVX2 | HW_CPU_FMA | HW_CPU_F16C),
          "features %#x", p->cpu.features);
    CHECK(p->cpu.cache_l1d == 32 * KiB && p->cpu.cache_l2 == 512 * KiB && p->cpu.cache_l3 == 32 * MiB);
    CHECK(p->mem.total == 24684092 * KiB && p->mem.available == 24289792 * KiB);
    CHECK(p->mem.swap_total == 0 && p->mem.swap_free == 0);
    CHECK(!strcmp(p->mem.thp, "madvise"));
    CHECK(p->mem.cgroup.version == 1);
    CHECK(!strcmp(p->mem.cgroup.path, "/process_api/02a9734252ddc8a5cf584032384e6338"));
    CHECK(p->mem.cgroup.limit == HW_NO_LIMIT && p->mem.cgroup.headroom == HW_NO_LIMIT);
    CHECK(p->mem.cgroup.usage == 265007104, "usage of the process's own cgroup");
    CHECK(p->mem.usable == p->mem.available);
    CHECK(!strcmp(p->storage.mount_point, "/") && !strcmp(p->storage.fs_type, "ext4"));
    CHECK(!strcmp(p->storage.device, "vda"), "%s", p->storage.device);
    CHECK(p->storage.rotational == HW_YES);
    CHECK(p->storage.o_direct == HW_UNKNOWN && p->storage.free_bytes == 0, "not tested on a captured tree");
    CHECK(p->n_gpus == 0 && p->stack.vulkan_icds == 1);
    CHECK(!strcmp(p->hostname, "vm") && !strcmp(p->kernel, "6.18.44-fc-v657"));
    CHECK(p->n_warnings == 0, "first warning: %s", p->n_warnings ? p->warnings[0] : "");
    CHECK(strlen(p->fingerprint) == 16);
    free(p);
}

/* arm64 (Neoverse-V1) with cgroup v2: memory.high of a parent binds. */
TEST(test_hw_fixture_arm64_cgroup_v2)
{
    hw_profile *p = probe_tree("arm64-v2", "/home/user/models/llama.gguf");
    REQUIRE(p);
    CHECK(!strcmp(p->cpu.arch, "aarch64"));
    CHECK(!strcmp(p->cpu.model, "ARM Neoverse-V1"), "%s", p->cpu.model);
    CHECK(p->cpu.logical_cores == 4 && p->cpu.physical_cores == 4);
    CHECK(p->cpu.features == (HW_CPU_NEON | HW_CPU_DOTPROD | HW_CPU_I8MM | HW_CPU_SVE), "%#x", p->cpu.features);
    CHECK(p->cpu.cache_l1d == 64 * KiB && p->cpu.cache_l2 == MiB && p->cpu.cache_l3 == 32 * MiB);
    CHECK(p->mem.total == 16163404 * KiB && p->mem.available == 12 * GiB);
    CHECK(p->mem.swap_total == 2097148 * KiB && p->mem.swap_free == p->mem.swap_total);
    CHECK(!strcmp(p->mem.thp, "always"));
    const hw_cgroup *cg = &p->mem.cgroup;
    CHECK(cg->version == 2 && !strcmp(cg->path, "/user.slice/user-1000.slice/session-2.scope"));
    CHECK(cg->limit == 6 * GiB, "limit %llu: user-1000.slice's memory.high", (unsigned long long)cg->limit);
    /* 192 MiB of the usage is page cache (memory.stat inactive_file + active_file): headroom too */
    CHECK(cg->usage == 512 * MiB && cg->reclaimable == 192 * MiB && cg->headroom == 6 * GiB - 320 * MiB);
    CHECK(p->mem.usable == cg->headroom, "usable = min(available, headroom)");
    CHECK(!strcmp(p->storage.mount_point, "/home") && !strcmp(p->storage.fs_type, "xfs"));
    CHECK(!strcmp(p->storage.device, "nvme0n1p3") && p->storage.rotational == HW_NO, "%s", p->storage.device);
    CHECK(p->n_warnings == 0, "first warning: %s", p->n_warnings ? p->warnings[0] : "");
    free(p);

    p = probe_tree("arm64-v2", "/home/user/my models/x.gguf");
    REQUIRE(p);
    CHECK(!strcmp(p->storage.mount_point, "/home/user/my models") && !strcmp(p->storage.fs_type, "tmpfs"));
    CHECK(!strcmp(p->storage.device, "tmpfs") && p->storage.rotational == HW_UNKNOWN);
    free(p);
}

/* A docker container with cgroup v1 (namespaced mount root), an old
 * kernel without MemAvailable, AVX-512 and hyper-threads. */
TEST(test_hw_fixture_docker_cgroup_v1)
{
    hw_profile *p = probe_tree("x86-docker-v1", "/models/llama.gguf");
    REQUIRE(p);
    CHECK(!strcmp(p->cpu.model, "Intel(R) Xeon(R) Platinum 8488C"));
    CHECK(p->cpu.logical_cores == 4 && p->cpu.physical_cores == 2, "%u/%u", p->cpu.logical_cores,
          p->cpu.physical_cores);
    uint32_t all_x86 = HW_CPU_SSE42 | HW_CPU_AVX | HW_CPU_AVX2 | HW_CPU_FMA | HW_CPU_F16C | HW_CPU_AVX512F |
                       HW_CPU_AVX512BW | HW_CPU_AVX512VL | HW_CPU_AVX512VNNI | HW_CPU_AVX512BF16 | HW_CPU_AVXVNNI;
    CHECK(p->cpu.features == all_x86, "%#x", p->cpu.features);
    CHECK(p->mem.available == (20971520 + 524288 + 4194304) * KiB, "estimated without MemAvailable");
    CHECK(has_warning(p, "no MemAvailable"));
    CHECK(p->mem.cgroup.version == 1 && p->mem.cgroup.limit == 4 * GiB && p->mem.cgroup.usage == GiB);
    CHECK(p->mem.usable == 3 * GiB);
    CHECK(!strcmp(p->mem.thp, "never"));
    CHECK(!strcmp(p->storage.mount_point, "/models") && !strcmp(p->storage.device, "sda1"));
    CHECK(p->storage.rotational == HW_YES, "a partition takes the disk's flag");
    free(p);

    p = probe_tree("x86-docker-v1", "/app");
    REQUIRE(p);
    CHECK(!strcmp(p->storage.fs_type, "overlay") && !strcmp(p->storage.device, "overlay"));
    CHECK(p->storage.rotational == HW_UNKNOWN);
    free(p);
}

/* cgroup v1 walked up: the parent's limit leaves less than the child's;
 * its memory.stat counts 256 MiB of page cache in total_*_file (the
 * non-hierarchical inactive_file line is not the v1 key). */
TEST(test_hw_fixture_nested_cgroup_v1)
{
    hw_profile *p = probe_tree("x86-nested-v1", "/");
    REQUIRE(p);
    const hw_cgroup *cg = &p->mem.cgroup;
    CHECK(cg->version == 1 && !strcmp(cg->path, "/batch/job42"));
    CHECK(cg->limit == 2 * GiB && cg->usage == 1536 * MiB && cg->headroom == 768 * MiB,
          "limit %llu usage %llu headroom %llu", (unsigned long long)cg->limit,
          (unsigned long long)cg->usage, (unsigned long long)cg->headroom);
    CHECK(p->mem.usable == 768 * MiB);
    free(p);
}

/* DRM cards: AMD dGPU with VRAM counters, Intel iGPU, NVIDIA without NVML,
 * an ASPEED BMC adapter (ignored) and connector/render nodes (ignored). */
TEST(test_hw_fixture_gpu_sysfs)
{
    hw_profile *p = probe_tree("gpu-sysfs", "/");
    REQUIRE(p);
    CHECK(p->n_gpus == 3, "n_gpus %d", p->n_gpus);
    REQUIRE(p->n_gpus == 3);
    const hw_gpu *amd = &p->gpus[0], *intel = &p->gpus[1], *nv = &p->gpus[2];
    CHECK(amd->vendor_id == 0x1002 && amd->device_id == 0x73bf && !strcmp(amd->driver, "amdgpu"));
    CHECK(!strcmp(amd->pci_address, "0000:03:00.0"));
    CHECK(amd->vram_total == 17163091968ull && amd->vram_used == 2 * GiB &&
          amd->vram_free == 17163091968ull - 2 * GiB);
    CHECK(amd->pcie.gen == 4 && amd->pcie.width == 16 && amd->pcie.max_gen == 4 && amd->pcie.max_width == 16);
    CHECK(amd->sources == HW_SRC_SYSFS && amd->vulkan_index == -1);
    CHECK(intel->vendor_id == 0x8086 && intel->type == HW_GPU_INTEGRATED && !strcmp(intel->driver, "i915"));
    CHECK(intel->vram_total == 0 && intel->pcie.gen == 0);
    CHECK(nv->vendor_id == 0x10de && nv->type == HW_GPU_DISCRETE && !strcmp(nv->pci_address, "0000:41:00.0"));
    CHECK(nv->pcie.gen == 1 && nv->pcie.width == 16 && nv->pcie.max_gen == 4, "idle link at gen1, max gen4");
    CHECK(has_warning(p, "/proc/meminfo"), "no /proc in this tree: warned");
    free(p);
}

/* Garbage everywhere: a valid, degraded profile with warnings. */
TEST(test_hw_fixture_malformed)
{
    hw_profile *p = probe_tree("malformed", "/");
    REQUIRE(p);
    CHECK(p->cpu.logical_cores >= 1 && p->cpu.physical_cores >= 1 &&
          p->cpu.physical_cores <= p->cpu.logical_cores);
    CHECK(p->cpu.cache_l1d == 0 && p->cpu.cache_l2 == 0, "bad cache sizes are ignored");
    for (const char *c = p->cpu.model; *c; c++) CHECK(*c >= 0x20 && *c < 0x7f, "model is printable");
    CHECK(p->mem.total == 0 && p->mem.available == 0 && p->mem.usable == 0);
    CHECK(p->mem.swap_free <= p->mem.swap_total);
    CHECK(p->mem.thp[0] == '\0');
    CHECK(p->mem.cgroup.version == 0);
    CHECK(p->storage.fs_type[0] == '\0');
    CHECK(p->n_gpus == 1);
    if (p->n_gpus == 1) {
        CHECK(p->gpus[0].pci_address[0] == '\0', "a PCI_SLOT_NAME with a path is refused");
        CHECK(p->gpus[0].vram_used <= p->gpus[0].vram_total);
        CHECK(p->gpus[0].pcie.width == 0 && p->gpus[0].pcie.gen == 0);
    }
    CHECK(has_warning(p, "meminfo") && has_warning(p, "cgroup") && has_warning(p, "transparent huge page"));
    CHECK(has_warning(p, "mem_info_vram_used"));
    char *json = hw_profile_to_json(p);
    CHECK(json != NULL, "a degraded profile still renders");
    free(json);
    free(p);
}

TEST(test_hw_fixture_empty_and_missing)
{
    hw_profile *p = probe_tree("empty", "/");
    REQUIRE(p);
    CHECK(p->cpu.logical_cores == 1 && !strcmp(p->cpu.model, "unknown"));
    CHECK(p->mem.total == 0 && p->mem.cgroup.version == 0 && p->n_gpus == 0);
    CHECK(has_warning(p, "/proc/cpuinfo") && has_warning(p, "/proc/meminfo") &&
          has_warning(p, "/proc/self/cgroup") && has_warning(p, "mountinfo"));
    free(p);
    p = probe_tree("no-such-tree", "/");
    REQUIRE(p);
    CHECK(p->cpu.logical_cores == 1 && p->n_warnings > 0);
    free(p);
}

/* The fingerprint follows the machine, not the moment. */
TEST(test_hw_fixture_fingerprint)
{
    hw_profile *a = probe_tree("x86-host", "/"), *b = probe_tree("x86-host", "/tmp");
    hw_profile *c = probe_tree("arm64-v2", "/");
    REQUIRE(a && b && c);
    CHECK(!strcmp(a->fingerprint, b->fingerprint), "storage path is not identity");
    CHECK(strcmp(a->fingerprint, c->fingerprint), "another machine");
    char fp[24];
    b->mem.available /= 2;
    hw_fingerprint(b, fp);
    CHECK(!strcmp(fp, a->fingerprint), "free memory is not identity");
    b->mem.total += b->mem.total / 20;
    hw_fingerprint(b, fp);
    CHECK(!strcmp(fp, a->fingerprint), "RAM grown by 5 %% (a VM's balloon, a new kernel) is the same machine");
    b->mem.total = a->mem.total * 2;
    hw_fingerprint(b, fp);
    CHECK(strcmp(fp, a->fingerprint), "twice the RAM is another machine");
    free(a);
    free(b);
    free(c);
}
