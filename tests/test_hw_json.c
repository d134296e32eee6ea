/* The profile JSON: round trips, hand-written (hypothetical) profiles,
 * errors naming the field, and the saved profile's reuse. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hw/hw.h"
#include "test.h"

#define GiB (1ull << 30)

static hw_profile *fixture(const char *tree)
{
    char root[256];
    snprintf(root, sizeof root, "tests/data/hw/%s", tree);
    hw_profile *p = calloc(1, sizeof *p);
    hw_probe_opts o = {.root = root, .path = "/"};
    if (p && hw_probe(&o, p, NULL) != STRATA_OK) {
        free(p);
        return NULL;
    }
    return p;
}

static bool round_trip(const hw_profile *p, const char *what)
{
    char *text = hw_profile_to_json(p);
    if (!text) {
        test_fail(__FILE__, __LINE__, "text", " %s: no JSON", what);
        return false;
    }
    hw_profile *q = malloc(sizeof *q);
    strata_error err = {0};
    bool ok = q && hw_profile_from_json(text, what, q, &err) == STRATA_OK;
    char why[128] = "";
    if (!ok) test_fail(__FILE__, __LINE__, "from_json", " %s: %s", what, err.message);
    else if (!hw_profile_equal(p, q, why, sizeof why)) {
        test_fail(__FILE__, __LINE__, "equal", " %s: %s differs after a round trip", what, why);
        ok = false;
    }
    free(q);
    free(text);
    return ok;
}

/* Fills every field that a probe of a captured tree leaves unknown. */
static void fill_everything(hw_profile *p)
{
    p->created = 1767225600;
    p->storage.o_direct = HW_NO;
    p->storage.free_bytes = 12345 * GiB / 1000;
    p->storage.total_bytes = 2000 * GiB;
    p->stack.vulkan_loader = true;
    p->stack.vulkan_devices = 2;
    p->stack.nvml = true;
    snprintf(p->stack.nvidia_driver, sizeof p->stack.nvidia_driver, "550.54.14");
    for (int i = 0; i < p->n_gpus; i++) {
        hw_gpu *g = &p->gpus[i];
        g->has_budget = true;
        g->vram_budget = 3 * GiB + (uint64_t)i;
        g->vram_process_usage = 12345;
        g->h2d_bw = 12.345678901234e9 + i;
        g->vram_bw = 3.35e12 - i;
        g->mv_q4_k_bw = 2.5e12 + i;
        g->mm_q4_k_flops = 1.0 / 3.0 * 1e15 + i; /* above the byte rates' 1e15 cap: FLOP/s have their own */
        g->round_trip_s = 37e-6 + i * 1e-6;
        g->vulkan_index = i;
        g->sources |= HW_SRC_VULKAN;
        snprintf(g->driver_info, sizeof g->driver_info, "Mesa 24.0 \"quoted\" \\ back");
    }
    hw_measured *m = &p->measured;
    m->done = true;
    m->time = 1767225700;
    m->ram_bw_1t = 1.0 / 3.0 * 1e10;
    m->ram_bw_all = 4.56e10;
    m->ram_threads = 7;
    m->ram_bytes = 256u << 20;
    m->disk_bw = 3.2e9;
    m->disk_bytes = 256u << 20;
    snprintf(m->disk_path, sizeof m->disk_path, "/models/\xc3\xa9t\xc3\xa9");
    hw_engine_calib c = {.threads = 3, .layer_s = 4.5e-6, .token_s = 3.25e-5, .width_s = 2.125e-8}; /* and tiles */
    for (int t = 0; t < HW_ENGINE_TYPES; t++) {
        c.type_bw[t] = 2.0e10 / 3 + t;
        c.tile_bw[t] = 1.25e11 / 7 - t;
    }
    hw_engine_calib_put(m, &c);
}

TEST(test_hw_json_round_trip)
{
    static const char *const trees[] = {"x86-host", "arm64-v2", "x86-docker-v1", "x86-nested-v1",
                                        "gpu-sysfs", "malformed", "empty"};
    for (size_t i = 0; i < sizeof trees / sizeof trees[0]; i++) {
        hw_profile *p = fixture(trees[i]);
        REQUIRE(p, "%s", trees[i]);
        round_trip(p, trees[i]);
        fill_everything(p);
        round_trip(p, trees[i]);
        free(p);
    }
}

TEST(test_hw_json_hypothetical)
{
    hw_profile *p = malloc(sizeof *p);
    strata_error err = {0};
    REQUIRE(p);
    strata_status st = hw_profile_load("tests/data/hw/profiles/hypothetical-24g.json", p, &err);
    CHECK(st == STRATA_OK, "%s", err.message);
    if (st == STRATA_OK) {
        CHECK(p->cpu.logical_cores == 16 && p->cpu.physical_cores == 8 && p->cpu.usable_cores == 16);
        CHECK(p->cpu.features & HW_CPU_AVX2);
        CHECK(p->mem.total == 64 * GiB && p->mem.available == 60 * GiB && p->mem.usable == 60 * GiB);
        CHECK(p->mem.cgroup.version == 0 && p->mem.cgroup.limit == HW_NO_LIMIT);
        CHECK(p->storage.o_direct == HW_YES && p->storage.rotational == HW_NO);
        CHECK(p->n_gpus == 1 && p->gpus[0].vram_total == 24 * GiB && p->gpus[0].type == HW_GPU_DISCRETE);
        CHECK(p->gpus[0].vulkan_index == -1 && p->gpus[0].h2d_bw == 25e9 && p->gpus[0].pcie.gen == 4);
        /* a profile from before the prompt-batch rate: unknown, not an error */
        CHECK(p->gpus[0].mm_q4_k_flops == 0 && p->gpus[0].mv_q4_k_bw == 0);
        CHECK(p->measured.done && p->measured.ram_bw_all == 60e9 && p->measured.disk_bw == 6.5e9);
        /* the profile's older keys read as one calibration at ram_threads */
        CHECK(p->measured.n_engine == 1 && p->measured.engine[0].threads == p->measured.ram_threads &&
              p->measured.engine[0].type_bw[HW_ENGINE_Q4_K] == 40e9 && p->measured.engine[0].layer_s == 4e-5 &&
              p->measured.engine[0].tile_bw[HW_ENGINE_Q4_K] == 0); /* no tile calibration: priced as before */
        CHECK(p->fingerprint[0] == '\0', "a hand-written profile has no fingerprint");
        round_trip(p, "hypothetical");
    }
    free(p);
}

static void expect_error(const char *json, const char *needle)
{
    hw_profile *p = malloc(sizeof *p);
    strata_error err = {0};
    if (!p) return;
    strata_status st = hw_profile_from_json(json, "t.json", p, &err);
    CHECK(st == STRATA_E_FORMAT, "accepted: %s", json);
    CHECK(strstr(err.message, needle) && !strncmp(err.message, "t.json: ", 8),
          "message '%s' should name '%s'", err.message, needle);
    CHECK(!strchr(err.message, '\n'), "one line");
    free(p);
}

#define HEAD "{\"schema\": \"strata-hw-profile\", \"version\": 1, "

TEST(test_hw_json_errors)
{
    expect_error("{", "line 1");
    expect_error("[]", "expected a JSON object");
    expect_error("{\"schema\": \"other\", \"version\": 1}", "schema");
    expect_error("{\"schema\": \"strata-hw-profile\"}", "version");
    expect_error("{\"schema\": \"strata-hw-profile\", \"version\": 2}", "newer strata");
    expect_error(HEAD "\"cpu\": {\"logical_cores\": \"many\"}}", "cpu.logical_cores");
    expect_error(HEAD "\"cpu\": {\"logical_cores\": -2}}", "cpu.logical_cores");
    expect_error(HEAD "\"cpu\": {\"logical_cores\": 2, \"physical_cores\": 4}}", "cpu.physical_cores");
    expect_error(HEAD "\"cpu\": {\"features\": [\"avx3\"]}}", "avx3");
    expect_error(HEAD "\"cpu\": 5}", "cpu");
    expect_error(HEAD "\"memory\": {\"total_bytes\": 10, \"available_bytes\": 20}}", "memory.available_bytes");
    expect_error(HEAD "\"memory\": {\"total_bytes\": \"24 GB of RAM\"}}", "memory.total_bytes");
    expect_error(HEAD "\"memory\": {\"total_bytes\": 1.5}}", "memory.total_bytes");
    expect_error(HEAD "\"memory\": {\"cgroup\": {\"version\": 3}}}", "memory.cgroup.version");
    expect_error(HEAD "\"memory\": {\"cgroup\": {\"version\": 2, \"limit_bytes\": 100, \"usage_bytes\": 50, "
                 "\"reclaimable_bytes\": 60}}}", "memory.cgroup.reclaimable_bytes");
    expect_error(HEAD "\"storage\": {\"o_direct\": \"yes\"}}", "storage.o_direct");
    expect_error(HEAD "\"gpus\": {}}", "gpus");
    expect_error(HEAD "\"gpus\": [{\"type\": \"quantum\"}]}", "gpus[0]");
    expect_error(HEAD "\"gpus\": [{}, {\"vram_total_bytes\": 10, \"vram_used_bytes\": 11}]}", "gpus[1]");
    expect_error(HEAD "\"gpus\": [{\"pcie\": {\"width\": 64}}]}", "gpus[0].pcie.width");
    expect_error(HEAD "\"gpus\": [{\"matmul_q4_k_flop_per_s\": -5e12}]}", "gpus[0].matmul_q4_k_flop_per_s");
    expect_error(HEAD "\"gpus\": [{\"matmul_q4_k_flop_per_s\": \"fast\"}]}", "gpus[0].matmul_q4_k_flop_per_s");
    expect_error(HEAD "\"gpus\": [{\"matmul_q4_k_flop_per_s\": 1e18}]}", "gpus[0].matmul_q4_k_flop_per_s");
    expect_error(HEAD "\"measured\": {\"ram_read_1t_bytes_per_s\": -1}}", "measured.ram_read_1t_bytes_per_s");
    /* a positive rate so small that times divided by it are infinite */
    expect_error(HEAD "\"measured\": {\"disk_read_bytes_per_s\": 1e-300}}", "measured.disk_read_bytes_per_s");
    expect_error(HEAD "\"gpus\": [{\"h2d_bytes_per_s\": 0.5}]}", "gpus[0].h2d_bytes_per_s");
    expect_error(HEAD "\"gpus\": [{\"matmul_q4_k_flop_per_s\": 1e-9}]}", "gpus[0].matmul_q4_k_flop_per_s");
    expect_error(HEAD "\"measured\": {\"time\": \"yesterday\"}}", "measured.time");
    expect_error(HEAD "\"created\": \"2026-01-01\"}", "created");
    expect_error(HEAD "\"warnings\": [1]}", "warnings");
    expect_error(HEAD "\"cpu\": {}, \"cpu\": {}}", "duplicate");
    hw_profile *p = malloc(sizeof *p);
    REQUIRE(p);
    CHECK(hw_profile_from_json(HEAD "\"cpu\": null, \"gpus\": null, \"measured\": null}", "t", p, NULL) ==
              STRATA_OK, "null means unknown");
    CHECK(p->cpu.logical_cores == 1 && p->n_gpus == 0 && !p->measured.done);
    /* 0 is "not measured", and seconds may be small */
    CHECK(hw_profile_from_json(HEAD "\"measured\": {\"disk_read_bytes_per_s\": 0, \"engine\": [{\"threads\": 2, "
                               "\"bytes_per_s\": {\"q4_k\": 3e10}, \"layer_seconds\": 2e-5, \"token_seconds\": 1e-4}]}}",
                               "t", p, NULL) == STRATA_OK, "a rate of 0, seconds of 2e-5");
    /* headroom computed when absent: the page cache counts as free */
    CHECK(hw_profile_from_json(HEAD "\"memory\": {\"cgroup\": {\"version\": 2, \"limit_bytes\": 100, "
                               "\"usage_bytes\": 50, \"reclaimable_bytes\": 20}}}", "t", p, NULL) == STRATA_OK &&
              p->mem.cgroup.reclaimable == 20 && p->mem.cgroup.headroom == 70,
          "headroom %llu", (unsigned long long)p->mem.cgroup.headroom);
    free(p);
}

TEST(test_hw_json_save_and_reuse)
{
    char path[512], other[512];
    snprintf(path, sizeof path, "%s/cache/strata/profile.json", test_tmpdir());
    snprintf(other, sizeof other, "%s/bad.json", test_tmpdir());
    hw_profile *p = fixture("x86-host"), *live = fixture("x86-host");
    REQUIRE(p && live);
    strata_error err = {0};
    CHECK(hw_profile_reuse_measured(live, path, &err) == HW_CACHE_MISSING);
    fill_everything(p);
    CHECK(hw_profile_save(p, path, &err) == STRATA_OK, "%s", err.message);
    hw_profile *q = malloc(sizeof *q);
    REQUIRE(q);
    CHECK(hw_profile_load(path, q, &err) == STRATA_OK, "%s", err.message);
    CHECK(hw_profile_equal(p, q, NULL, 0), "saved and loaded");
    /* The live profile has the same fingerprint: measurements are reused. */
    CHECK(hw_profile_reuse_measured(live, path, &err) == HW_CACHE_FRESH);
    CHECK(live->measured.done && live->measured.ram_bw_all == p->measured.ram_bw_all);
    /* Another machine: stale, nothing reused. */
    hw_profile *arm = fixture("arm64-v2");
    REQUIRE(arm);
    CHECK(hw_profile_reuse_measured(arm, path, &err) == HW_CACHE_STALE);
    CHECK(!arm->measured.done);
    FILE *f = fopen(other, "w");
    REQUIRE(f);
    fputs("{\"schema\": \"strata-hw-profile\", \"version\": 1, \"cpu\": []}", f);
    fclose(f);
    CHECK(hw_profile_reuse_measured(arm, other, &err) == HW_CACHE_BAD);
    CHECK(strstr(err.message, "bad.json") && strstr(err.message, "cpu"), "%s", err.message);
    CHECK(hw_profile_load("/nonexistent/p.json", q, &err) == STRATA_E_IO);
    CHECK(strstr(err.message, "/nonexistent/p.json") != NULL);
    free(arm);
    free(q);
    free(p);
    free(live);
}

TEST(test_hw_json_default_path)
{
    char buf[1024];
    const char *old_xdg = getenv("XDG_CACHE_HOME");
    char *saved = old_xdg ? strdup(old_xdg) : NULL;
    setenv("XDG_CACHE_HOME", "/x/cache", 1);
    CHECK(hw_profile_default_path(buf, sizeof buf, NULL) == STRATA_OK && !strcmp(buf, "/x/cache/strata/profile.json"));
    setenv("XDG_CACHE_HOME", "relative", 1);
    CHECK(hw_profile_default_path(buf, sizeof buf, NULL) == STRATA_OK && strstr(buf, "/.cache/strata/profile.json"),
          "a relative XDG_CACHE_HOME is ignored (XDG spec): %s", buf);
    if (saved) setenv("XDG_CACHE_HOME", saved, 1);
    else unsetenv("XDG_CACHE_HOME");
    free(saved);
}
