/* `strata detect` and `strata doctor` as a user runs them (the sanitized
 * binary), including a run inside a memory cgroup with a limit. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hw/hw.h"
#include "hw/hw_internal.h"
#include "cgroup_helpers.h"
#include "hw_helpers.h"
#include "test.h"

#define MiB (1ull << 20)

/* Runs `strata ARGS` with the cache in the test's directory. */
static int strata(const char *args, char **out, bool merge)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "XDG_CACHE_HOME='%s/cache' %s %s", test_tmpdir(), test_strata_bin(), args);
    return test_run(cmd, out, merge);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; s && *s; s++) n += *s == '\n';
    return n;
}

static hw_profile *parse(const char *json)
{
    hw_profile *p = malloc(sizeof *p);
    strata_error err = {0};
    if (p && hw_profile_from_json(json ? json : "", "stdout", p, &err) != STRATA_OK) {
        test_fail(__FILE__, __LINE__, "parse", " %s", err.message);
        free(p);
        return NULL;
    }
    return p;
}

TEST(test_hw_cli_help)
{
    char *out = NULL;
    CHECK(strata("detect --help", &out, false) == 0);
    static const char *const flags[] = {"--json", "--measure", "--quick", "--path", "--profile", "--root", "--help"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        CHECK(out && strstr(out, flags[i]), "detect --help lacks %s", flags[i]);
    free(out);
    CHECK(strata("doctor -h", &out, false) == 0);
    CHECK(out && strstr(out, "--path") && strstr(out, "--profile") && strstr(out, "PASS"));
    free(out);
    CHECK(strata("--help", &out, false) == 0);
    CHECK(out && strstr(out, "detect") && strstr(out, "doctor"));
    free(out);
}

TEST(test_hw_cli_errors)
{
    static const struct { const char *args, *needle; } cases[] = {
        {"detect --frobnicate", "--frobnicate"},
        {"detect --path", "--path"},
        {"detect --profile=", "--profile"},
        {"detect --path /nonexistent/models", "/nonexistent/models"},
        {"detect --quick", "--quick"},
        {"detect --measure --root tests/data/hw/empty", "--root"},
        {"doctor --bogus", "--bogus"},
        {"doctor --path /nonexistent/models", "/nonexistent/models"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[256], *out = NULL;
        snprintf(args, sizeof args, "%s 2>&1 >/dev/null", cases[i].args);
        int rc = strata(args, &out, false);
        CHECK(rc != 0, "%s: exit 0", cases[i].args);
        CHECK(out && count_lines(out) == 1 && strstr(out, cases[i].needle), "%s: stderr '%s'", cases[i].args,
              out ? out : "");
        free(out);
    }
}

TEST(test_hw_cli_detect_json)
{
    char *out = NULL;
    char args[512];
    snprintf(args, sizeof args, "detect --json --path '%s'", test_tmpdir());
    CHECK(strata(args, &out, false) == 0);
    hw_profile *p = parse(out);
    free(out);
    REQUIRE(p);
    CHECK(p->cpu.logical_cores >= 1 && p->mem.total > 0 && p->mem.available <= p->mem.total);
    CHECK(!p->measured.done, "nothing measured yet in a fresh cache");
    CHECK(strlen(p->fingerprint) == 16);
    free(p);
    CHECK(strata("detect", &out, false) == 0);
    CHECK(out && strstr(out, "CPU") && strstr(out, "Memory") && strstr(out, "Storage") && strstr(out, "GPUs") &&
          strstr(out, "strata detect --measure"));
    free(out);
}

/* --measure saves the profile; later commands reuse it; no progress line
 * when stderr is not a terminal. */
TEST(test_hw_cli_measure_and_reuse)
{
    char args[1024], *out = NULL, *err_out = NULL, profile[512];
    snprintf(profile, sizeof profile, "%s/p/profile.json", test_tmpdir());
    snprintf(args, sizeof args, "detect --measure --quick --json --path '%s' --profile '%s' 2>'%s/stderr'",
             test_tmpdir(), profile, test_tmpdir());
    CHECK(strata(args, &out, false) == 0);
    hw_profile *p = parse(out);
    free(out);
    REQUIRE(p);
    CHECK(p->measured.done && p->measured.ram_bw_1t > 0 && p->measured.ram_bw_all > 0);
    CHECK(access(profile, R_OK) == 0, "profile saved at --profile");
    char cat[600];
    snprintf(cat, sizeof cat, "cat '%s/stderr'", test_tmpdir());
    test_run(cat, &err_out, false);
    CHECK(err_out && !strstr(err_out, "measuring"), "progress only on a TTY: '%s'", err_out ? err_out : "");
    free(err_out);
    snprintf(args, sizeof args, "detect --profile '%s'", profile);
    CHECK(strata(args, &out, false) == 0);
    CHECK(out && strstr(out, "(saved profile)") && strstr(out, "RAM read"), "%s", out ? out : "");
    /* every Vulkan device (lavapipe here) has its prompt-batch rate measured, saved and shown */
    for (int i = 0; out && i < p->n_gpus; i++) {
        if (p->gpus[i].vulkan_index < 0) continue;
        char line[64];
        snprintf(line, sizeof line, "GPU %d prompt batch ", i);
        CHECK(p->gpus[i].mm_q4_k_flops > 0 && strstr(out, line), "GPU %d: %.3g FLOP/s\n%s", i,
              p->gpus[i].mm_q4_k_flops, out);
    }
    free(out);
    snprintf(args, sizeof args, "doctor --path '%s' --profile '%s'", test_tmpdir(), profile);
    strata(args, &out, false);
    CHECK(out && strstr(out, "PASS  profile"), "%s", out ? out : "");
    free(out);
    free(p);
}

TEST(test_hw_cli_doctor_format)
{
    char *out = NULL, args[512];
    snprintf(args, sizeof args, "doctor --path '%s'", test_tmpdir());
    int rc = strata(args, &out, false);
    REQUIRE(out);
    int checks = 0, fails = 0, fixes = 0, warns = 0;
    bool summary = false;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strncmp(line, "PASS  ", 6) || !strncmp(line, "WARN  ", 6) || !strncmp(line, "FAIL  ", 6)) {
            checks++;
            fails += line[0] == 'F';
            warns += line[0] == 'W';
        } else if (strstr(line, " fix: ")) {
            fixes++;
        } else if (strstr(line, " pass, ") && strstr(line, " fail")) {
            summary = true;
        } else {
            CHECK(false, "unexpected line '%s'", line);
        }
    }
    CHECK(checks >= 9 && summary, "%d checks", checks);
    CHECK(fixes == warns + fails, "one fix per WARN/FAIL (%d fixes, %d warn, %d fail)", fixes, warns, fails);
    CHECK(rc == (fails ? 1 : 0), "exit %d with %d failures", rc, fails);
    free(out);
}

/* A captured tree full of garbage: exit 0, a valid profile, warnings. */
TEST(test_hw_cli_degraded_root)
{
    char *out = NULL;
    CHECK(strata("detect --json --root tests/data/hw/malformed", &out, false) == 0);
    hw_profile *p = parse(out);
    free(out);
    REQUIRE(p);
    CHECK(p->n_warnings >= 3 && p->cpu.logical_cores == 1);
    free(p);
    CHECK(strata("detect --root tests/data/hw/empty", &out, false) == 0);
    CHECK(out && strstr(out, "Warnings"));
    free(out);
    CHECK(strata("doctor --root tests/data/hw/arm64-v2 --path /home/user/models", &out, false) != 2);
    CHECK(out && strstr(out, "cgroup") && strstr(out, "thp"));
    free(out);
}

/* NVML path with a stand-in library (built here with the C compiler). */
TEST(test_hw_cli_fake_nvml)
{
    char *out = test_detect_json_with_fake_nvml();
    if (!out) return;
    hw_profile *p = parse(out);
    free(out);
    REQUIRE(p);
    CHECK(p->stack.nvml && !strcmp(p->stack.nvidia_driver, "550.54.14"));
    const hw_gpu *g = NULL;
    for (int i = 0; i < p->n_gpus; i++)
        if (p->gpus[i].sources & HW_SRC_NVML) g = &p->gpus[i];
    CHECK(g != NULL, "the NVML GPU is listed");
    if (g) {
        CHECK(!strcmp(g->name, "Fake GPU 24GB") && !strcmp(g->pci_address, "0000:65:00.0"));
        CHECK(g->vram_total == 24ull << 30 && g->vram_used == 3ull << 30 && g->vram_free == 21ull << 30);
        CHECK(g->pcie.gen == 4 && g->pcie.width == 16 && g->pcie.max_gen == 4 && g->type == HW_GPU_DISCRETE);
    }
    free(p);
}

/* ---- the cgroup test: a child memory cgroup with a limit ---- */

TEST(test_hw_cli_cgroup_limit)
{
    if (geteuid() != 0) {
        test_skip("needs root to create a memory cgroup");
        return;
    }
    int version;
    char child[HW_PATH_MAX + 64], name[64], why[512] = "";
    if (!test_cgroup_create(512 * MiB, &version, child, sizeof child, name, sizeof name, why, sizeof why)) {
        test_skip("%s", why);
        return;
    }
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "sh -c 'echo $$ > \"%s/cgroup.procs\" && exec env XDG_CACHE_HOME=\"%s/cache\" %s detect --json "
             "--path \"%s\"'",
             child, test_tmpdir(), test_strata_bin(), test_tmpdir());
    int rc = test_run(cmd, &out, false);
    CHECK(test_cgroup_remove(child), "cgroup %s removed", child);
    CHECK(rc == 0);
    hw_profile *p = parse(out);
    free(out);
    REQUIRE(p);
    const hw_cgroup *cg = &p->mem.cgroup;
    size_t nl = strlen(name), pl = strlen(cg->path);
    CHECK(cg->version == version && pl > nl && !strcmp(cg->path + pl - nl, name), "path %s", cg->path);
    CHECK(cg->limit == 512 * MiB, "limit %llu", (unsigned long long)cg->limit);
    CHECK(cg->usage > 0 && cg->usage < 512 * MiB && cg->reclaimable <= cg->usage &&
          cg->headroom == cg->limit - (cg->usage - cg->reclaimable));
    CHECK(p->mem.usable <= 512 * MiB && p->mem.usable == cg->headroom);
    printf("    cgroup v%d %s: limit 512 MiB seen, usage %.1f MiB\n", version, cg->path, cg->usage / 1048576.0);
    free(p);
}
