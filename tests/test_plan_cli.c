/* `strata plan` end to end through the sanitized binary, on small models
 * made by the generator (linked in) and hand-written machine profiles, so
 * the tests never measure this machine nor touch the user's cache. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tools/synth/synth.h"
#include "gguf_helpers.h"
#include "test.h"
#include "util/fmt.h"

/* A shared scratch directory for the models and profiles (made once per
 * run: the runner removes every test's directory at the end). */
static const char *scratch(void)
{
    static char dir[1024];
    if (!dir[0]) snprintf(dir, sizeof dir, "%s", test_tmpdir());
    return dir;
}

/* Q8_0 llama models of 8 layers: embedding 256 (6.3 MiB) or 128 (the same
 * layer names, other sizes), or 4 layers of 128. */
static const char *model(int which)
{
    static char paths[3][1100];
    static const synth_shape shapes[3] = {
        {256, 704, 8, 4, 2, 512, 512}, {128, 352, 8, 4, 2, 512, 512}, {128, 352, 4, 4, 2, 512, 512}};
    if (paths[which][0]) return paths[which];
    char path[1100];
    snprintf(path, sizeof path, "%s/m%d.gguf", scratch(), which);
    synth_options o = {.shape = shapes[which], .type = GGML_TYPE_Q8_0, .seed = 5 + (uint64_t)which, .threads = 2,
                       .output = path};
    strata_error e;
    if (synth_write(&o, &e) != STRATA_OK) {
        test_fail(__FILE__, __LINE__, "synth", " %s", e.message);
        return NULL;
    }
    memcpy(paths[which], path, sizeof path);
    return paths[which];
}

/* A measured machine without a GPU, in the `strata detect --json` format:
 * RAM 20 GB/s, disk 1 GB/s, CPU 5e9 weights/s, 16 GiB available. */
static const char *cpu_profile(void)
{
    static char path[1100];
    if (path[0]) return path;
    snprintf(path, sizeof path, "%s/cpu.json", scratch());
    FILE *f = fopen(path, "w");
    if (!f) {
        test_fail(__FILE__, __LINE__, "fopen", " %s", path);
        path[0] = '\0';
        return NULL;
    }
    fputs("{\"schema\": \"strata-hw-profile\", \"version\": 1,\n"
          " \"cpu\": {\"arch\": \"x86_64\", \"model\": \"test CPU\", \"logical_cores\": 2, \"physical_cores\": 2},\n"
          " \"memory\": {\"total_bytes\": \"16 GiB\", \"available_bytes\": \"16 GiB\", \"swap_total_bytes\": 0,\n"
          "            \"swap_free_bytes\": 0, \"cgroup\": null},\n"
          " \"storage\": {\"path\": \"/models\", \"fs_type\": \"ext4\", \"rotational\": false, \"o_direct\": true,\n"
          "             \"free_bytes\": \"100 GiB\"},\n"
          " \"gpus\": [],\n"
          " \"measured\": {\"ram_read_1t_bytes_per_s\": 1e10, \"ram_read_all_bytes_per_s\": 2e10, \"ram_threads\": 2,\n"
          "              \"disk_read_bytes_per_s\": 1e9, \"cpu_q4_k_weights_per_s\": 5e9, \"cpu_q4_k_from_ram_bytes_per_s\": 6e9}}\n",
          f);
    fclose(f);
    return path;
}

static const char *gpu_profile(void) { return "tests/data/hw/profiles/hypothetical-24g.json"; }

/* Runs `strata ARGS` with the cache in the scratch directory. */
static int strata(const char *args, char **out, bool merge)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "XDG_CACHE_HOME='%s/cache' %s %s", scratch(), test_strata_bin(), args);
    return test_run(cmd, out, merge);
}

static json_t *plan_json(const char *args)
{
    char *out = NULL;
    int rc = strata(args, &out, false);
    json_error_t je;
    json_t *doc = rc == 0 && out ? json_loads(out, 0, &je) : NULL;
    if (!doc) test_fail(__FILE__, __LINE__, "json", " rc %d for '%s': %s", rc, args, out ? out : "");
    free(out);
    return doc;
}

static json_int_t tier_sum(const json_t *tier)
{
    return json_integer_value(json_object_get(tier, "weights")) + json_integer_value(json_object_get(tier, "kv_cache")) +
           json_integer_value(json_object_get(tier, "buffers")) + json_integer_value(json_object_get(tier, "overhead"));
}

/* The model's RAM needs at -c 256 from its all-resident plan: weights, and
 * the rest (KV cache, buffers, overhead). */
static bool needs(const char *m, const char *hw, long long *weights, long long *fixed)
{
    char args[4096];
    snprintf(args, sizeof args, "plan '%s' --hw '%s' -c 256 --json", m, hw);
    json_t *doc = plan_json(args);
    if (!doc) return false;
    const json_t *ram = json_object_get(json_object_get(doc, "plan"), "ram");
    *weights = json_integer_value(json_object_get(ram, "weights"));
    *fixed = tier_sum(ram) - *weights;
    json_decref(doc);
    return *weights > 0 && *fixed > 0;
}

/* Exactly one line of text. */
static bool one_line(const char *s)
{
    const char *nl = s ? strchr(s, '\n') : NULL;
    return nl && nl > s && !nl[1];
}

/* The buffers of the all-resident plan of m at -c 1024 with --batch B. */
static long long plan_buffers(const char *m, const char *hw, int batch)
{
    char args[4096];
    snprintf(args, sizeof args, "plan '%s' --hw '%s' -c 1024 --batch %d --json", m, hw, batch);
    json_t *doc = plan_json(args);
    long long b = doc ? (long long)json_integer_value(json_object_get(
                            json_object_get(json_object_get(doc, "plan"), "ram"), "buffers"))
                      : -1;
    json_decref(doc);
    return b;
}

/* --batch sizes the plan's buffers as run's -b sizes the engine's (audit
 * item 5: a plan called feasible failed at run with -b 512): linear in the
 * batch, up to the context. */
TEST(test_plan_cli_batch_sizes_buffers)
{
    const char *m = test_fixture("synth-q4_k_m.gguf");
    if (!m) return;
    const char *hw = cpu_profile();
    long long b8 = plan_buffers(m, hw, 8), b16 = plan_buffers(m, hw, 16), b512 = plan_buffers(m, hw, 512);
    long long b1024 = plan_buffers(m, hw, 1024), b4096 = plan_buffers(m, hw, 4096);
    CHECK(b8 > 0 && b16 > b8 && b512 - b8 == (b16 - b8) / 8 * 504 && b1024 > b512 && b4096 == b1024,
          " buffers at batch 8, 16, 512, 1024, 4096: %lld %lld %lld %lld %lld", b8, b16, b512, b1024, b4096);
}

TEST(test_plan_cli_json)
{
    const char *m = model(0), *hw = cpu_profile();
    REQUIRE(m && hw);
    char args[4096];
    snprintf(args, sizeof args, "plan '%s' --hw '%s' -c 256 --json", m, hw);
    json_t *doc = plan_json(args);
    REQUIRE(doc);
    const json_t *p = json_object_get(doc, "plan"), *groups = json_object_get(p, "groups");
    CHECK(!strcmp(json_string_value(json_object_get(doc, "schema")), "strata-plan"));
    CHECK(json_is_true(json_object_get(p, "feasible")) && !strcmp(json_string_value(json_object_get(p, "label")),
                                                                   "all resident"));
    REQUIRE(json_is_array(groups) && json_array_size(groups) == 9, " groups");
    CHECK(!strcmp(json_string_value(json_object_get(json_array_get(groups, 0), "name")), "blk.0") &&
          !strcmp(json_string_value(json_object_get(json_array_get(groups, 8), "name")), "output") &&
          !strcmp(json_string_value(json_object_get(json_array_get(groups, 3), "tier")), "ram"));
    CHECK(json_real_value(json_object_get(p, "decode_tokens_per_s")) > 0 &&
          json_real_value(json_object_get(p, "prefill_tokens_per_s")) > 0);
    CHECK(json_is_string(json_object_get(p, "bottleneck")) && json_is_object(json_object_get(p, "seconds_per_token")));
    /* f16 KV: 8 layers x (2 KV heads x 64) x K and V x 2 bytes = 4 KiB per token */
    const json_t *ram = json_object_get(p, "ram");
    CHECK(json_integer_value(json_object_get(ram, "kv_cache")) == 256 * 4096,
          " KV %lld", (long long)json_integer_value(json_object_get(ram, "kv_cache")));
    CHECK(json_integer_value(json_object_get(p, "n_ctx")) == 256 &&
          !strcmp(json_string_value(json_object_get(p, "kv_type")), "f16"));
    /* the machine is the profile's: measured, 16 GiB - 10 % */
    const json_t *mach = json_object_get(doc, "machine");
    CHECK(json_is_true(json_object_get(mach, "measured")) &&
          json_real_value(json_object_get(mach, "disk_bytes_per_s")) == 1e9 &&
          json_integer_value(json_object_get(mach, "ram_budget_bytes")) == (json_int_t)((16ull << 30) - (16ull << 30) / 10));
    CHECK(tier_sum(ram) <= json_integer_value(json_object_get(mach, "ram_budget_bytes")));
    CHECK(json_array_size(json_object_get(doc, "alternatives")) >= 2 && json_array_size(json_object_get(doc, "warnings")) == 0);
    json_decref(doc);
}

/* The exit codes of --can-run around the model's own numbers: the budget it
 * needs all resident, half its weights less, and half its fixed part. */
TEST(test_plan_cli_can_run)
{
    const char *m = model(0), *hw = cpu_profile();
    REQUIRE(m && hw);
    char args[4096], *out = NULL;
    long long w, fixed;
    REQUIRE(needs(m, hw, &w, &fixed));
    long long all = w + fixed;
    const struct { long long mem; int rc; const char *says; } cases[] = {
        {all, 0, "yes: runs entirely in memory"},
        {fixed + w / 2, 1, "yes: runs with weights streamed from disk"},
        {fixed / 2, 2, "needs at least"},
    };
    for (int i = 0; i < 3; i++) {
        snprintf(args, sizeof args, "plan '%s' --hw '%s' -c 256 --mem %lld --can-run", m, hw, cases[i].mem);
        int rc = strata(args, &out, false);
        CHECK(rc == cases[i].rc && out && strstr(out, cases[i].says), " --mem %lld: rc %d: %s", cases[i].mem, rc, out);
        free(out);
        out = NULL;
    }
    /* one byte less than all resident needs streaming */
    snprintf(args, sizeof args, "plan '%s' --hw '%s' -c 256 --mem %lld --can-run", m, hw, all - 1);
    CHECK(strata(args, &out, false) == 1, " %s", out);
    free(out);
    /* with --json the plan is printed and the exit status is still the verdict */
    for (int i = 0; i < 3; i++) {
        snprintf(args, sizeof args, "plan '%s' --hw '%s' -c 256 --mem %lld --can-run --json", m, hw, cases[i].mem);
        out = NULL;
        int rc = strata(args, &out, false);
        CHECK(rc == cases[i].rc && out && strstr(out, "\"strata-plan\""), " --json: rc %d: %s", rc, out);
        free(out);
    }
}

TEST(test_plan_cli_export_llamacpp)
{
    const char *m = model(0), *hw = cpu_profile();
    REQUIRE(m && hw);
    char args[4096], *out = NULL;
    snprintf(args, sizeof args, "plan '%s' --hw '%s' -c 256 --export llama.cpp", m, hw);
    CHECK(strata(args, &out, true) == 0 && strstr(out, "llama.cpp   -c 256 -ctk f16 -ctv f16 -ngl 0 --no-mmap --mlock") &&
              strstr(out, "can run this plan as is"),
          " %s", out);
    free(out);
    long long w, fixed;
    REQUIRE(needs(m, hw, &w, &fixed));
    snprintf(args, sizeof args, "plan '%s' --hw '%s' -c 256 --mem %lld --export llama.cpp", m, hw, fixed + w / 2);
    CHECK(strata(args, &out, true) == 0 && strstr(out, "-c 256 -ctk f16 -ctv f16 -ngl 0\n") &&
              strstr(out, "llama.cpp cannot stream") && strstr(out, "streamed"),
          " %s", out);
    free(out);
}

/* --export with --json: the flags under "export" (null when the plan is
 * infeasible); with --can-run: after the verdict line, the exit status still
 * the verdict. */
TEST(test_plan_cli_export_with_json_and_can_run)
{
    const char *m = model(0), *hw = cpu_profile();
    REQUIRE(m && hw);
    char args[4096], *out = NULL;
    long long w, fixed;
    REQUIRE(needs(m, hw, &w, &fixed));
    snprintf(args, sizeof args, "plan '%s' --hw '%s' -c 256 --json --export llama.cpp", m, hw);
    json_t *doc = plan_json(args);
    REQUIRE(doc);
    const json_t *ex = json_object_get(doc, "export");
    const char *flags = json_string_value(json_object_get(ex, "flags"));
    CHECK(!strcmp(json_string_value(json_object_get(ex, "tool")), "llama.cpp") && flags &&
              !strcmp(flags, "-c 256 -ctk f16 -ctv f16 -ngl 0 --no-mmap --mlock") &&
              strstr(json_string_value(json_object_get(ex, "note")), "as is"),
          " %s", flags);
    json_decref(doc);
    snprintf(args, sizeof args, "plan '%s' --hw '%s' -c 256 --mem %lld --can-run --json --export llama.cpp", m, hw,
             fixed / 2);
    CHECK(strata(args, &out, false) == 2 && out && strstr(out, "\"export\": null"), " %s", out);
    free(out);
    snprintf(args, sizeof args, "plan '%s' --hw '%s' -c 256 --mem %lld --can-run --export llama.cpp", m, hw,
             fixed + w / 2);
    CHECK(strata(args, &out, false) == 1 && out &&
              !strncmp(out, "yes: runs with weights streamed from disk\nllama.cpp   -c 256 -ctk f16 -ctv f16 -ngl 0\n", 86) &&
              strstr(out, "llama.cpp cannot stream"),
          " %s", out);
    free(out);
    snprintf(args, sizeof args, "plan '%s' --hw '%s' -c 256 --mem %lld --can-run --export llama.cpp", m, hw, fixed / 2);
    CHECK(strata(args, &out, false) == 2 && out && one_line(out) && !strstr(out, "llama.cpp"), " %s", out);
    free(out);
}

/* Rates with SI prefixes, never in exponent notation; bandwidths in GB/s. */
TEST(test_plan_cli_units)
{
    const char *m = model(0), *hw = cpu_profile();
    REQUIRE(m && hw);
    char args[4096], *out = NULL;
    snprintf(args, sizeof args, "plan '%s' --hw '%s' -c 256 --mem 64M", m, hw);
    CHECK(strata(args, &out, false) == 0 && out && strstr(out, "(5.00 G weights/s)") && strstr(out, "at 20.0 GB/s") &&
              strstr(out, "at 1.00 GB/s") && strstr(out, "budget 64.0 MiB") && !strstr(out, "e+"),
          " %s", out);
    free(out);
    char b[48];
    CHECK(!strcmp(fmt_rate(4.19e10, "weights/s", b, sizeof b), "41.9 G weights/s") &&
          !strcmp(fmt_rate(812, "weights/s", b, sizeof b), "812 weights/s") &&
          !strcmp(fmt_rate(2.5e6, "tok/s", b, sizeof b), "2.50 M tok/s") &&
          !strcmp(fmt_rate(-1, "B/s", b, sizeof b), "0 B/s"), " %s", b);
}

/* The hypothetical 24 GB GPU: the whole model goes to the GPU. */
TEST(test_plan_cli_hw_gpu_profile)
{
    const char *m = model(0);
    REQUIRE(m);
    char args[4096], *out = NULL;
    snprintf(args, sizeof args, "plan '%s' --hw %s --json", m, gpu_profile());
    json_t *doc = plan_json(args);
    REQUIRE(doc);
    const json_t *p = json_object_get(doc, "plan"), *groups = json_object_get(p, "groups");
    CHECK(strstr(json_string_value(json_object_get(p, "label")), "GPU") != NULL, " %s",
          json_string_value(json_object_get(p, "label")));
    for (size_t i = 0; i < json_array_size(groups); i++)
        CHECK(!strcmp(json_string_value(json_object_get(json_array_get(groups, i), "tier")), "gpu") &&
                  json_integer_value(json_object_get(json_array_get(groups, i), "gpu")) == 0,
              " group %zu", i);
    const json_t *gpu = json_array_get(json_object_get(p, "gpus"), 0);
    CHECK(gpu && json_integer_value(json_object_get(gpu, "weights")) > 0 && tier_sum(gpu) <= (json_int_t)24 << 30);
    CHECK(json_is_true(json_object_get(p, "runnable")) && json_is_false(json_object_get(json_object_get(doc, "machine"),
                                                                                        "measured")));
    json_decref(doc);
    snprintf(args, sizeof args, "plan '%s' --hw %s --export llama.cpp", m, gpu_profile());
    CHECK(strata(args, &out, true) == 0 && strstr(out, "GPU 0      weights") && strstr(out, "on GPU 0") &&
              strstr(out, "-ngl 9") && strstr(out, "GPU 0 memory bandwidth unknown"),
          " %s", out);
    free(out);
}

TEST(test_plan_cli_compare)
{
    const char *m = model(0);
    REQUIRE(m);
    char args[4096], *out = NULL;
    snprintf(args, sizeof args, "plan '%s' --hw %s --compare", m, gpu_profile());
    CHECK(strata(args, &out, true) == 0 && strstr(out, "alternatives considered"), " %s", out);
    static const char *const expect[] = {
        "all resident", "smaller context (half)", "q8_0 KV cache", "q4_0 KV cache", "GPU/CPU layer split, KV on GPU",
        "GPU/CPU layer split, KV in RAM", "weights streamed over the GPU link", "chosen", "slower:",
        "shorter context than requested (512)", "KV cache type other than requested"};
    for (size_t i = 0; out && i < sizeof expect / sizeof expect[0]; i++)
        CHECK(strstr(out, expect[i]), " no '%s' in: %s", expect[i], out);
    free(out);
    /* in JSON every alternative carries its verdict */
    snprintf(args, sizeof args, "plan '%s' --hw %s --json", m, gpu_profile());
    json_t *doc = plan_json(args);
    REQUIRE(doc);
    const json_t *alts = json_object_get(doc, "alternatives");
    int chosen = 0;
    for (size_t i = 0; i < json_array_size(alts); i++) {
        const char *v = json_string_value(json_object_get(json_array_get(alts, i), "verdict"));
        CHECK(v && v[0], " alternative %zu has no verdict", i);
        chosen += v && !strcmp(v, "chosen");
    }
    CHECK(json_array_size(alts) == 7 && chosen == 1, " %zu alternatives, %d chosen", json_array_size(alts), chosen);
    json_decref(doc);
}

/* Bad input: one line on stderr naming the flag or file, nothing on stdout. */
TEST(test_plan_cli_bad_flags)
{
    const char *m = model(0), *hw = cpu_profile();
    REQUIRE(m && hw);
    const struct { const char *args; int rc; const char *says; } cases[] = {
        {"--kv-type q5_0", 3, "--kv-type 'q5_0'"},
        {"--export vllm", 3, "--export 'vllm'"},
        {"--mem lots", 3, "--mem 'lots'"},
        {"--mem 0.5", 3, "--mem '0.5': at least 1M"},
        {"--moe-hit-rate 1.5", 3, "--moe-hit-rate '1.5': expected a decimal number from 0 to 1"},
        {"--moe-hit-rate -0.1", 3, "--moe-hit-rate '-0.1'"},
        {"--moe-hit-rate 50%", 3, "--moe-hit-rate '50%'"},
        {"--moe-hit-rate 1e-1", 3, "--moe-hit-rate '1e-1'"},
        {"--moe-hit-rate", 3, "--moe-hit-rate: missing value"},
        {"--mem 0x10M", 3, "--mem '0x10M'"},
        {"--mem 1e3M", 3, "--mem '1e3M'"},
        {"--mem inf", 3, "--mem 'inf'"},
        {"-c 0", 3, "-c"},
        {"-c 0x10", 3, "-c '0x10'"},
        {"-c +5", 3, "-c '+5'"},
        {"--batch", 3, "--batch: missing value"},
        {"--frobnicate 1", 3, "unknown option '--frobnicate'"},
        {"--frobnicate", 3, "unknown option '--frobnicate'"}, /* last: not "missing value" */
        {"--comapre", 3, "unknown option '--comapre'; did you mean '--compare'?"},
        {"--ctx 5", 3, "did you mean '--ctx-size'?"},
        {"other.gguf", 3, "more than one model"},
        {"-m other.gguf", 3, "more than one model"},
        {"--hw /nonexistent/profile.json", 3, "/nonexistent/profile.json"},
        {"--hw /nonexistent/profile.json --can-run", 3, "/nonexistent/profile.json"},
        {"--hw /nonexistent/profile.json --can-run --json", 3, "/nonexistent/profile.json"},
    };
    char args[4096], *out = NULL;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool own_hw = strstr(cases[i].args, "--hw") != NULL;
        snprintf(args, sizeof args, "plan '%s' %s%s %s 2>&1 >/dev/null", m, own_hw ? "" : "--hw ", own_hw ? "" : hw,
                 cases[i].args);
        int rc = strata(args, &out, false);
        CHECK(rc == cases[i].rc && out && !strncmp(out, "strata plan: ", 13) && strstr(out, cases[i].says) &&
                  one_line(out),
              " '%s': rc %d: %s", cases[i].args, rc, out);
        free(out);
        out = NULL;
    }
    /* a model that does not exist; and nothing printed on stdout for bad flags */
    snprintf(args, sizeof args, "plan /nonexistent/model.gguf --hw '%s'", hw);
    CHECK(strata(args, &out, true) == 3 && out && strstr(out, "/nonexistent/model.gguf") && one_line(out),
          " %s", out);
    free(out);
    snprintf(args, sizeof args, "plan /nonexistent/model.gguf --hw '%s' --can-run", hw);
    CHECK(strata(args, &out, true) == 3, " %s", out);
    free(out);
    snprintf(args, sizeof args, "plan '%s' --kv-type q5_0 2>/dev/null", m);
    CHECK(strata(args, &out, false) == 3 && out && !out[0], " stdout: %s", out);
    free(out);
}

/* A Q8_0 llama model of the given shape in the scratch directory (m: its
 * path, 1100 bytes); false after reporting the failure. */
static bool synth_shaped(char *m, const char *name, synth_shape shape, uint64_t seed)
{
    snprintf(m, 1100, "%s/%s", scratch(), name);
    synth_options o = {.shape = shape, .type = GGML_TYPE_Q8_0, .seed = seed, .threads = 2, .output = m};
    strata_error e;
    if (synth_write(&o, &e) == STRATA_OK) return true;
    test_fail(__FILE__, __LINE__, "synth", " %s", e.message);
    return false;
}

/* A head dimension that is not a multiple of 32 (16 here) has no q8_0 or
 * q4_0 KV cache in the engine (`run --kv-type q4_0` refuses it), so the plan
 * refuses the request too, and --compare offers neither as an alternative. */
TEST(test_plan_cli_quantized_kv_needs_head_dim_32)
{
    const char *hw = cpu_profile();
    REQUIRE(hw);
    char m[1100];
    REQUIRE(synth_shaped(m, "hd16.gguf", (synth_shape){128, 352, 2, 8, 8, 512, 512}, 9));
    char args[4096], *out = NULL;
    snprintf(args, sizeof args, "run -m '%s' --gpu none -p hi -n 1 --kv-type q4_0 2>&1 >/dev/null", m);
    CHECK(strata(args, &out, false) != 0 && out && strstr(out, "multiple of 32"), " run: %s", out);
    free(out);
    out = NULL;
    for (int q = 0; q < 2; q++) {
        snprintf(args, sizeof args, "plan '%s' --hw '%s' --kv-type %s 2>&1 >/dev/null", m, hw, q ? "q4_0" : "q8_0");
        int rc = strata(args, &out, false);
        CHECK(rc == 3 && out && !strncmp(out, "strata plan: ", 13) && strstr(out, "multiple of 32") && one_line(out),
              " %s: rc %d: %s", q ? "q4_0" : "q8_0", rc, out);
        free(out);
        out = NULL;
    }
    snprintf(args, sizeof args, "plan '%s' --hw '%s' --compare", m, hw);
    CHECK(strata(args, &out, false) == 0 && out && strstr(out, "alternatives considered") &&
              !strstr(out, "q8_0 KV cache") && !strstr(out, "q4_0 KV cache"),
          " %s", out);
    free(out);
}

/* A general.name that is not UTF-8 (a byte 0xFF in it): `plan --json` still
 * prints the plan, the name made printable; it exited 3 with no output and
 * no message (json_pack refuses such a string). */
TEST(test_plan_cli_json_with_non_utf8_name)
{
    const char *hw = cpu_profile();
    REQUIRE(hw);
    char m[1100];
    REQUIRE(synth_shaped(m, "badname.gguf", (synth_shape){128, 352, 2, 4, 2, 512, 512}, 3));
    size_t size = 0;
    uint8_t *bytes = read_whole_file(m, &size);
    REQUIRE(bytes);
    uint8_t *name = memmem(bytes, size, "strata-synth", 12); /* the generator's general.name */
    FILE *f = name ? fopen(m, "wb") : NULL;
    if (f) {
        name[0] = 0xFF;
        fwrite(bytes, 1, size, f);
        fclose(f);
    }
    free(bytes);
    REQUIRE(f, " no general.name to spoil in %s", m);
    char args[4096];
    snprintf(args, sizeof args, "plan '%s' --hw '%s' --json", m, hw);
    json_t *doc = plan_json(args);
    const char *model = json_string_value(json_object_get(doc, "model"));
    CHECK(model && !strncmp(model, "?trata-synth", 12), " %s", model ? model : "(none)");
    json_decref(doc);
}

/* -m names the model as the positional path does; both: the same path. */
TEST(test_plan_cli_model_flag)
{
    const char *m = model(0), *hw = cpu_profile();
    REQUIRE(m && hw);
    char args[4096], *out = NULL;
    snprintf(args, sizeof args, "plan --hw '%s' -c 256 -m '%s' --can-run", hw, m);
    CHECK(strata(args, &out, false) == 0 && out && strstr(out, "yes:"), " %s", out);
    free(out);
    snprintf(args, sizeof args, "plan '%s' --hw '%s' -c 256 --model '%s' --can-run", m, hw, m);
    CHECK(strata(args, &out, false) == 0, " %s", out);
    free(out);
}

/* The help states the exit codes and prints no doubled percent sign. */
TEST(test_plan_cli_help)
{
    char *out = NULL;
    CHECK(strata("plan --help", &out, true) == 0 && out && strstr(out, "3 error") && strstr(out, "minus 10%, at least") &&
              !strstr(out, "%%"),
          " %s", out);
    free(out);
}

/* `run --plan` executes a saved plan (here with streaming), and refuses a
 * plan saved for another model with a one-line error. */
TEST(test_plan_cli_run_saved_plan)
{
    const char *m = model(0), *hw = cpu_profile();
    REQUIRE(m && hw);
    char args[4096], saved[1200], *out = NULL;
    long long w, fixed;
    REQUIRE(needs(m, hw, &w, &fixed));
    long long mem = fixed + w / 2;
    snprintf(saved, sizeof saved, "%s/saved.json", test_tmpdir());
    snprintf(args, sizeof args, "plan '%s' --hw '%s' -c 256 --mem %lld --json > '%s'", m, hw, mem, saved);
    REQUIRE(strata(args, &out, false) == 0, " %s", out);
    free(out);
    json_error_t je;
    json_t *doc = json_load_file(saved, 0, &je);
    REQUIRE(doc, " %s", je.text);
    const char *label = json_string_value(json_object_get(json_object_get(doc, "plan"), "label"));
    CHECK(label && !strcmp(label, "partial residency (streaming)"), " %s", label);
    json_decref(doc);
    /* without --mem: the plan's budget, printed with the plan's prediction */
    snprintf(args, sizeof args, "run -m '%s' --plan '%s' -p 'a b c' -n 4 --temp 0 -t 2", m, saved);
    char want[1300], budget[64], b[32];
    snprintf(want, sizeof want, "plan %s: partial residency (streaming), context 256: blk 0", saved);
    snprintf(budget, sizeof budget, "; budget %s\n", fmt_bytes((uint64_t)mem, b, sizeof b));
    CHECK(strata(args, &out, true) == 0 && out && strstr(out, want) && strstr(out, "streamed") &&
              strstr(out, "tok/s (disk-bound); budget") && strstr(out, budget) && strstr(out, "predicted by the plan") &&
              strstr(out, "generated 4 tokens"),
          " %s", out);
    free(out);
    /* --mem wins over the plan's budget */
    snprintf(args, sizeof args, "run -m '%s' --plan '%s' --mem 3G -p 'a b c' -n 2 --temp 0 -t 2", m, saved);
    CHECK(strata(args, &out, true) == 0 && out && strstr(out, "; budget 3.00 GiB\n"), " %s", out);
    free(out);
    /* the same layer names, other tensors; and another layer count */
    const char *others[2] = {model(1), model(2)}, *why[2] = {"the plan was made for another model",
                                                             "does not match this model's 5 groups"};
    for (int i = 0; i < 2; i++) {
        REQUIRE(others[i]);
        snprintf(args, sizeof args, "run -m '%s' --plan '%s' -p 'a b c' -n 4 --temp 0 -t 2", others[i], saved);
        out = NULL;
        int rc = strata(args, &out, true);
        CHECK(rc == 1 && out && !strncmp(out, "strata run: ", 12) && strstr(out, saved) && strstr(out, why[i]) &&
                  one_line(out),
              " rc %d: %s", rc, out);
        free(out);
    }
    /* a plan saved with a q8_0 KV cache runs with one: less memory accounted than the f16 plan's run */
    double acc[2] = {0, 0};
    for (int q = 0; q < 2; q++) {
        snprintf(args, sizeof args, "plan '%s' --hw '%s' -c 256 --mem %lld --kv-type %s --json > '%s'", m, hw, mem,
                 q ? "q8_0" : "f16", saved);
        REQUIRE(strata(args, &out, false) == 0, " %s", out);
        free(out);
        snprintf(args, sizeof args, "run -m '%s' --plan '%s' -p 'a b c' -n 2 --temp 0 -t 2", m, saved);
        const char *a = NULL;
        CHECK(strata(args, &out, true) == 0 && out && (a = strstr(out, "(accounted ")) &&
                  sscanf(a, "(accounted %lf", &acc[q]) == 1,
              " %s", out);
        free(out);
    }
    CHECK(acc[1] > 0 && acc[1] < acc[0], " accounted %.2f MiB with q8_0, %.2f MiB with f16", acc[1], acc[0]);
}

/* ---- mixture of experts ---- */

/* A Qwen3-MoE-shaped model (4 layers, 8 experts of 2 used, Q4_K_M mix). */
static const char *moe_model(void)
{
    static char path[1100];
    if (path[0]) return path;
    char p[1100];
    snprintf(p, sizeof p, "%s/moe.gguf", scratch());
    synth_options o = {.arch = "qwen3moe", .shape = {256, 768, 4, 4, 2, 512, 512}, .n_expert = 8,
                       .n_expert_used = 2, .mix = MIX_Q4_K_M, .type = GGML_TYPE_Q4_K, .seed = 9, .threads = 2,
                       .output = p};
    strata_error e;
    if (synth_write(&o, &e) != STRATA_OK) {
        test_fail(__FILE__, __LINE__, "synth", " %s", e.message);
        return NULL;
    }
    memcpy(path, p, sizeof p);
    return path;
}

static json_int_t int_of(const json_t *o, const char *key) { return json_integer_value(json_object_get(o, key)); }

/* The budget that holds the dense part and `units` expert units next to the
 * rest (KV cache, buffers, overhead), from the all-resident plan. */
static long long moe_budget(const char *m, const char *hw, int units)
{
    char args[4096];
    snprintf(args, sizeof args, "plan '%s' --hw '%s' -c 256 --json", m, hw);
    json_t *doc = plan_json(args);
    if (!doc) return 0;
    const json_t *p = json_object_get(doc, "plan"), *ram = json_object_get(p, "ram"),
                 *ex = json_object_get(p, "experts"), *groups = json_object_get(p, "groups");
    long long dense = 0;
    for (size_t i = 0; i < json_array_size(groups); i++) dense += int_of(json_array_get(groups, i), "bytes");
    long long fixed = tier_sum(ram) - int_of(ram, "weights");
    long long mem = fixed + dense + units * int_of(ex, "unit_slot_bytes");
    bool ok = !strcmp(json_string_value(json_object_get(p, "label")), "all resident") && int_of(ex, "units") == 32 &&
              int_of(ex, "cached_units") == 32 && int_of(ram, "weights") == dense + 32 * int_of(ex, "unit_slot_bytes");
    json_decref(doc);
    if (!ok) test_fail(__FILE__, __LINE__, "moe_budget", " unexpected all-resident plan of %s", m);
    return ok ? mem : 0;
}

/* Dense resident and an expert cache of exactly 10 of 32 units (under LFU,
 * the default, and uniform routing (--moe-routing uniform) the 9 kept
 * units hit: 9 of 32);
 * what the plan says about it, in text and JSON; --can-run says it streams. */
TEST(test_plan_cli_moe_expert_cache)
{
    const char *m = moe_model(), *hw = cpu_profile();
    REQUIRE(m && hw);
    long long mem = moe_budget(m, hw, 10);
    REQUIRE(mem > 0);
    char args[4096], *out = NULL;
    snprintf(args, sizeof args, "plan '%s' --hw '%s' -c 256 --mem %lld --json --moe-routing uniform", m, hw, mem);
    json_t *doc = plan_json(args);
    REQUIRE(doc);
    const json_t *p = json_object_get(doc, "plan"), *ex = json_object_get(p, "experts");
    CHECK(!strcmp(json_string_value(json_object_get(p, "label")), "dense resident + expert cache") &&
              int_of(ex, "cached_units") == 10 && int_of(ex, "units") == 32 &&
              fabs(json_real_value(json_object_get(ex, "hit_rate")) - 9.0 / 32) < 1e-12 &&
              !strcmp(json_string_value(json_object_get(ex, "hit_rate_source")), "uniform routing, LFU"),
          " %s, %lld units", json_string_value(json_object_get(p, "label")), (long long)int_of(ex, "cached_units"));
    json_decref(doc);
    snprintf(args, sizeof args, "plan '%s' --hw '%s' -c 256 --mem %lld --compare --moe-routing uniform", m, hw, mem);
    CHECK(strata(args, &out, true) == 0 && out && strstr(out, "expert cache 10 of 32 units") &&
              strstr(out, "hit rate 28.1% (uniform routing, LFU)") && strstr(out, "all resident ") &&
              strstr(out, "does not fit") && strstr(out, "all streamed + least expert cache") &&
              strstr(out, "dense resident + expert cache"),
          " %s", out);
    free(out);
    /* a stated hit rate: used and said */
    snprintf(args, sizeof args, "plan '%s' --hw '%s' -c 256 --mem %lld --moe-hit-rate 0.9", m, hw, mem);
    CHECK(strata(args, &out, true) == 0 && out && strstr(out, "hit rate 90.0% (stated with --moe-hit-rate)"), " %s",
          out);
    free(out);
    snprintf(args, sizeof args, "plan '%s' --hw '%s' -c 256 --mem %lld --can-run --export llama.cpp", m, hw, mem);
    CHECK(strata(args, &out, false) == 1 && out && strstr(out, "yes: runs with weights streamed from disk") &&
              strstr(out, "-c 256 -ctk f16 -ctv f16 -ngl 0\n") && strstr(out, "cannot cache experts"),
          " %s", out);
    free(out);
    /* on a dense model the rate is ignored, with a warning */
    snprintf(args, sizeof args, "plan '%s' --hw '%s' -c 256 --moe-hit-rate 0.5", model(0), hw);
    CHECK(strata(args, &out, true) == 0 && out && strstr(out, "is ignored: the model has no experts"), " %s", out);
    free(out);
}

/* A GPU that holds the model but its experts: llama.cpp's --n-cpu-moe split
 * is chosen (a slow link and the layers being too large for the GPU with
 * their experts rule out the others), exported as -ot exps=CPU. */
TEST(test_plan_cli_moe_gpu_split_export)
{
    const char *m = moe_model();
    REQUIRE(m);
    char args[4096], prof[1200], *out = NULL;
    snprintf(args, sizeof args, "plan '%s' --hw '%s' -c 256 --json", m, gpu_profile());
    json_t *doc = plan_json(args);
    REQUIRE(doc);
    long long dense = 0;
    const json_t *groups = json_object_get(json_object_get(doc, "plan"), "groups");
    for (size_t i = 0; i < json_array_size(groups); i++) dense += int_of(json_array_get(groups, i), "bytes");
    json_decref(doc);
    /* the reserve (256 MiB), the dense groups, the KV cache (4 layers x 256 tokens x 2 x 128 x 2 bytes) */
    long long vram = (256ll << 20) + dense + 4 * 256 * 2 * 128 * 2 + 4096;
    snprintf(prof, sizeof prof, "%s/small-gpu.json", scratch());
    FILE *f = fopen(prof, "w");
    REQUIRE(f);
    fprintf(f, "{\"schema\": \"strata-hw-profile\", \"version\": 1,\n"
               " \"cpu\": {\"arch\": \"x86_64\", \"model\": \"test CPU\", \"logical_cores\": 2, \"physical_cores\": 2},\n"
               " \"memory\": {\"total_bytes\": \"16 GiB\", \"available_bytes\": \"16 GiB\", \"swap_total_bytes\": 0,\n"
               "            \"swap_free_bytes\": 0, \"cgroup\": null},\n"
               " \"storage\": {\"path\": \"/models\", \"fs_type\": \"ext4\", \"rotational\": false, \"o_direct\": true},\n"
               " \"gpus\": [{\"name\": \"small GPU\", \"type\": \"discrete\", \"vendor_id\": 4318,\n"
               "           \"vram_total_bytes\": %lld, \"vram_used_bytes\": 0, \"vram_free_bytes\": %lld,\n"
               "           \"vram_bytes_per_s\": 3e11, \"h2d_bytes_per_s\": 1e8}],\n"
               " \"measured\": {\"ram_read_1t_bytes_per_s\": 1e10, \"ram_read_all_bytes_per_s\": 2e10, \"ram_threads\": 2,\n"
               "              \"disk_read_bytes_per_s\": 1e9, \"cpu_q4_k_weights_per_s\": 5e9,\n"
               "              \"cpu_q4_k_from_ram_bytes_per_s\": 6e9}}\n",
            vram, vram);
    fclose(f);
    snprintf(args, sizeof args, "plan '%s' --hw '%s' -c 256 --json --export llama.cpp", m, prof);
    doc = plan_json(args);
    REQUIRE(doc);
    const json_t *p = json_object_get(doc, "plan");
    const char *label = json_string_value(json_object_get(p, "label"));
    const char *flags = json_string_value(json_object_get(json_object_get(doc, "export"), "flags"));
    CHECK(label && !strcmp(label, "llama.cpp --n-cpu-moe split") &&
              int_of(json_object_get(p, "experts"), "n_cpu_moe") == 4 && flags &&
              !strcmp(flags, "-c 256 -ctk f16 -ctv f16 -ngl 5 -ot exps=CPU --no-mmap --mlock"),
          " %s: %s", label, flags);
    json_decref(doc);
    snprintf(args, sizeof args, "plan '%s' --hw '%s' -c 256 --compare", m, prof);
    CHECK(strata(args, &out, true) == 0 && out && strstr(out, "llama.cpp --n-cpu-moe split") &&
              strstr(out, "experts of blk 0-3 resident in RAM") && strstr(out, "(llama.cpp --n-cpu-moe 4)"),
          " %s", out);
    free(out);
}
