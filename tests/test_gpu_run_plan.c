/* `run` plans for the GPU its engine opens, and the engine runs that plan
 * (issue 12): the plan line's GPU layers are exactly the ones the engine
 * puts in VRAM; a CPU plan puts none there (the engine's own first-fit
 * rule would have placed every layer); -ngl still forces a placement; the
 * greedy text is the CPU's.
 *
 * CI has no GPU, only lavapipe, which the planner ignores on purpose (a
 * CPU is no GPU to plan for): these tests set STRATA_PLAN_SOFTWARE_GPU=1,
 * the test-only switch that lets the planner take it for one
 * (src/plan/inputs.h: plan_software_gpus), except the one checking that
 * without it the plan and the run stay on the CPU. The device's rates come
 * from a saved profile (`detect --measure --quick`, in a cache directory
 * of the test's own): lavapipe's measured rates (slower than the CPU: a
 * CPU plan), or the same profile with its GPU made fast (1 TB/s, 100
 * TFLOP/s: a GPU plan). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_helpers.h"
#include "run_helpers.h"
#include "test.h"

#define PROMPT "Once upon a time there was a little girl named Lily who loved to play outside in the park"

/* Two cache directories under the test's tmpdir holding a saved profile of
 * this machine: "slow" as measured, "fast" with its GPU's rates raised
 * and its host-to-device link slowed.
 * False (the test failed) when it could not be made. */
static bool profiles(char *slow, char *fast, size_t cap)
{
    snprintf(slow, cap, "%s/runplan-slow", test_tmpdir());
    snprintf(fast, cap, "%s/runplan-fast", test_tmpdir());
    char cmd[2048], *out = NULL, path[1024];
    /* measuring is slow under the sanitizers: the release binary measures */
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/strata' && XDG_CACHE_HOME='%s' %s detect --measure --quick 2>&1 >/dev/null",
             fast, slow, test_release_bin());
    int rc = test_run(cmd, &out, true);
    CHECK(rc == 0, " detect --measure --quick (exit %d): %.400s", rc, out ? out : "");
    free(out);
    if (rc) return false;
    snprintf(path, sizeof path, "%s/strata/profile.json", slow);
    json_error_t je;
    json_t *doc = json_load_file(path, 0, &je);
    json_t *gpu = json_array_get(json_object_get(doc, "gpus"), 0);
    bool ok = gpu && json_integer_value(json_object_get(gpu, "vulkan_index")) == 0 &&
              json_number_value(json_object_get(gpu, "matvec_q4_k_bytes_per_s")) > 0;
    CHECK(ok, " %s: no measured Vulkan device 0 (%s)", path, doc ? "gpus[0]" : je.text);
    if (ok) {
        json_object_set_new(gpu, "vram_bytes_per_s", json_real(1e12));
        json_object_set_new(gpu, "matvec_q4_k_bytes_per_s", json_real(1e12));
        json_object_set_new(gpu, "matmul_q4_k_flop_per_s", json_real(1e14));
        /* a slow link: streaming every layer over it never beats a split (its measured rate
         * varies from run to run, and at a fast one the planner rightly preferred it) */
        json_object_set_new(gpu, "h2d_bytes_per_s", json_real(1e8));
        snprintf(path, sizeof path, "%s/strata/profile.json", fast);
        ok = json_dump_file(doc, path, 0) == 0;
        CHECK(ok, " writing %s", path);
    }
    json_decref(doc);
    return ok;
}

/* `run --gpu 0` of the fixture with the profile in cache dir `cache`
 * (stdout and stderr), the planner taking lavapipe for a GPU when
 * `software`; NULL (the test failed) when it failed. */
static char *run(const char *model, const char *cache, bool software, const char *args)
{
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "XDG_CACHE_HOME='%s' STRATA_PLAN_SOFTWARE_GPU=%s %s run -m '%s' --gpu 0 -c 64 -n 8 "
             "--temp 0 -p '" PROMPT "' %s 2>&1", cache, software ? "1" : "0", test_strata_bin(), model, args);
    int rc = test_run(cmd, &out, true);
    CHECK(rc == 0 && out, " %s (exit %d): %.600s", args, rc, out ? out : "");
    if (rc) free(out), out = NULL;
    return out;
}

/* The text generated after the prompt, up to the first report line. */
static void generated(const char *out, char *buf, size_t len)
{
    const char *p = strstr(out, "in the park");
    p = p ? p + strlen("in the park") : "";
    const char *end = strstr(p, "\nstrata:");
    size_t n = end ? (size_t)(end - p) : strlen(p);
    snprintf(buf, len, "%.*s", (int)n, p);
}

/* Layers the plan line puts on GPU 0 ("blk A-B on GPU 0" or "blk A on GPU
 * 0": B - A + 1, or 1; 0 when none) and whether the output is there. */
static unsigned plan_gpu_layers(const char *out, bool *output)
{
    const char *line = strstr(out, "strata: plan: ");
    const char *eol = line ? strchr(line, '\n') : NULL;
    char l[1024];
    snprintf(l, sizeof l, "%.*s", line ? (int)(eol ? eol - line : (long)strlen(line)) : 0, line ? line : "");
    *output = strstr(l, "output on GPU") != NULL;
    const char *at = strstr(l, " on GPU 0");
    if (!at) return 0;
    const char *blk = at;
    while (blk > l && strncmp(blk, "blk ", 4)) blk--;
    unsigned a = 0, b = 0;
    int n = sscanf(blk, "blk %u-%u", &a, &b);
    return n == 2 ? b - a + 1 : n == 1 ? 1 : 0;
}

/* Layers the engine put in VRAM ("strata: GPU NAME: N layers[ and the
 * output] in VRAM"); 0 without that line (no GPU opened). */
static unsigned engine_gpu_layers(const char *out, bool *output)
{
    const char *line = strstr(out, "strata: GPU ");
    const char *colon = line ? strstr(line, "): ") : NULL;
    unsigned n = 0;
    *output = false;
    if (!colon || sscanf(colon, "): %u layers", &n) != 1) return 0;
    const char *eol = strchr(colon, '\n');
    const char *and_out = strstr(colon, " and the output");
    *output = and_out && (!eol || and_out < eol);
    return n;
}

/* The plan's GPU layers (at least `least`, the output there when
 * `output`) are the engine's, and the text is `cpu_text`. */
static void runs_its_plan(const char *out, const char *what, unsigned least, bool output, const char *cpu_text)
{
    bool p_out, e_out;
    unsigned p = plan_gpu_layers(out, &p_out), e = engine_gpu_layers(out, &e_out);
    CHECK(p >= least && p_out == output && e == p && e_out == p_out,
          " %s: the plan puts %u layers%s on the GPU, the engine %u%s: %.1200s", what, p, p_out ? " and the output" : "",
          e, e_out ? " and the output" : "", out);
    char text[512];
    generated(out, text, sizeof text);
    CHECK(text[0] && !strcmp(text, cpu_text), " %s: greedy text '%s', on the CPU '%s'", what, text, cpu_text);
}

TEST(test_gpu_run_executes_its_plan)
{
    if (!gpu_test_device()) return;
    const char *model = test_fixture("synth-q4_k_m.gguf"); /* 4 layers and the output, all the GPU's types */
    char slow[512], fast[512];
    if (!model || !profiles(slow, fast, sizeof slow)) return;
    char *cpu = run(model, slow, false, "--gpu none"), cpu_text[512] = "";
    if (cpu) generated(cpu, cpu_text, sizeof cpu_text);
    CHECK(cpu_text[0], " --gpu none: %.600s", cpu ? cpu : "");
    free(cpu);
    if (!cpu_text[0]) return;
    /* fast GPU, all its memory: everything there */
    char *out = run(model, fast, true, "");
    if (out) runs_its_plan(out, "fast GPU", 4, true, cpu_text);
    free(out);
    /* fast GPU, 270 MB of which the planner keeps 256 MiB in reserve: a split; the engine's own rule (first
     * fit in the 270 MB) would place every layer */
    out = run(model, fast, true, "--gpu-mem 270000000");
    if (out) {
        bool o;
        unsigned n = plan_gpu_layers(out, &o);
        CHECK(n >= 1 && n < 4 && !o, " --gpu-mem 270000000: the plan puts %u layers on the GPU: %.800s", n, out);
        runs_its_plan(out, "--gpu-mem 270000000", 1, false, cpu_text);
    }
    free(out);
    /* the CPU plan's cases: lavapipe as measured (slower than the CPU), a GPU with no room (the reserve alone
     * exceeds 1 MiB), and lavapipe as a software device (no switch): no layer on the GPU */
    const struct { const char *cache, *args, *what; bool software; } cpu_cases[] = {
        {slow, "", "measured lavapipe", true},
        {fast, "--gpu-mem 1M", "--gpu-mem 1M", true},
        {fast, "", "a software device", false},
    };
    for (size_t c = 0; c < sizeof cpu_cases / sizeof cpu_cases[0]; c++) {
        out = run(model, cpu_cases[c].cache, cpu_cases[c].software, cpu_cases[c].args);
        if (out) runs_its_plan(out, cpu_cases[c].what, 0, false, cpu_text);
        CHECK(!out || cpu_cases[c].software || strstr(out, "is a software device, no GPU to plan for"),
              " %s: %.800s", cpu_cases[c].what, out);
        free(out);
    }
    /* a profile without the GPU's rates (the run measures the CPU and the disk, not the GPU): the plan says
     * its GPU figures are estimates; the measured profiles' plans do not */
    char bare[600];
    snprintf(bare, sizeof bare, "%s/runplan-bare", test_tmpdir());
    out = run(model, bare, true, "");
    CHECK(!out || strstr(out, "not measured, its rates are estimates (`strata detect --measure`"), " %.800s", out);
    free(out);
    out = run(model, slow, true, "");
    CHECK(!out || (strstr(out, "strata: plan:") && !strstr(out, "rates are estimates")), " %.800s", out);
    free(out);
    /* -ngl forces the engine's placement: 2 layers, whatever the plan */
    out = run(model, fast, true, "-ngl 2");
    bool o;
    CHECK(!out || (engine_gpu_layers(out, &o) == 2 && !o), " -ngl 2: %.800s", out ? out : "");
    free(out);
}
