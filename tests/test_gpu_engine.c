/* The engine with layers on a Vulkan device (lavapipe in CI, a CPU
 * implementation of Vulkan: these are correctness tests, not GPU speed):
 * the fixtures' logits within the fast path's bounds of llama.cpp's golden
 * or the f32ref, stories260K's greedy text exactly, every split point
 * between GPU and CPU layers, and the device-memory cap. */
#include <stdio.h>
#include <string.h>

#include "backend/vulkan/vkb.h"
#include "conformance.h"
#include "strata.h"
#include "test.h"

#define CONF_GPU(n) \
    ((conf_mode){.kernels = CONF_KERNELS_FAST, .kv = CONF_KV_F16, .n_threads = 2, .gpu = true, .gpu_layers = (n)})

/* True when Vulkan device 0 opens; else the test is skipped, saying why. */
static bool have_device(void)
{
    vkb *v = NULL;
    strata_error err = {0};
    if (vkb_open(0, true, &v, &err) != STRATA_OK) {
        test_skip("no Vulkan device (install mesa-vulkan-drivers for lavapipe): %s", err.message);
        return false;
    }
    vkb_close(v);
    return true;
}

/* Opens a fixture model with up to max_layers layers on device 0. */
static strata_model *open_gpu(const char *name, uint32_t max_layers, uint64_t gpu_mem)
{
    const char *path = test_fixture(name);
    if (!path) return NULL;
    strata_model_params p = strata_model_default_params();
    p.gpu = STRATA_GPU_DEVICE;
    p.gpu_layers_max = max_layers;
    p.gpu_mem = gpu_mem;
    p.n_ctx = 64;
    p.n_threads = 2;
    strata_model *m = NULL;
    strata_error err;
    if (strata_model_open(path, &p, &m, &err) != STRATA_OK) {
        CHECK(false, " %s: %s", name, err.message);
        return NULL;
    }
    return m;
}

/* Types the shaders run: every layer and the output go to the GPU. */
static const char *const gpu_types[] = {"f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k_m", "q5_k_m", "q6_k"};
#define N_GPU_TYPES (sizeof gpu_types / sizeof gpu_types[0])

TEST(test_gpu_synth_conformance)
{
    if (!have_device()) return;
    static const conf_bounds b = CONF_BOUNDS_DEFAULT;
    for (size_t i = 0; i < N_GPU_TYPES; i++) {
        char base[64], file[80];
        snprintf(base, sizeof base, "synth-%s", gpu_types[i]);
        snprintf(file, sizeof file, "%s.gguf", base);
        strata_model *m = open_gpu(file, 0, 0);
        if (!m) return;
        strata_model_stats s;
        strata_model_get_stats(m, &s);
        CHECK(s.gpu_layers == 4 && s.gpu_output, " %s: %u layers on the GPU (output %d): %s", base, s.gpu_layers,
              s.gpu_output, s.gpu_note);
        strata_model_free(m);
        conf_check(base, CONF_GPU(0), &b);
    }
}

/* Types without shaders keep their layers on the CPU, and still run. */
TEST(test_gpu_unsupported_type_stays_on_cpu)
{
    if (!have_device()) return;
    strata_model *m = open_gpu("synth-iq4_xs.gguf", 0, 0);
    if (!m) return;
    strata_model_stats s;
    strata_model_get_stats(m, &s);
    CHECK(s.gpu_layers == 0, " %u layers on the GPU", s.gpu_layers);
    strata_model_free(m);
    static const conf_bounds b = CONF_BOUNDS_DEFAULT;
    conf_check("synth-iq4_xs", CONF_GPU(0), &b);
}

TEST(test_gpu_arch_conformance)
{
    if (!have_device()) return;
    static const conf_bounds def = CONF_BOUNDS_DEFAULT;
    static const conf_bounds gemma = {.ref_max = 1e-3, .fast = {0.03, 0.15}, .fast_vs = CONF_VS_GOLDEN,
                                      .greedy = CONF_GREEDY_NEAR, .greedy_gap = 0.3};
    const char *arch[] = {"arch/llama31-q4_k_m", "arch/qwen2-q4_k_m", "arch/qwen3-q4_k_m", "arch/phi3-q4_k_m"};
    for (size_t i = 0; i < sizeof arch / sizeof arch[0]; i++) conf_check(arch[i], CONF_GPU(0), &def);
    conf_check("arch/gemma3-q4_k_m", CONF_GPU(0), &gemma);
}

/* A trained model: greedy decoding on the GPU reproduces llama.cpp's text. */
TEST(test_gpu_stories_greedy)
{
    if (!have_device()) return;
    static const conf_bounds b = {.ref_max = 1e-3, .fast = {0.03, 0.03}, .fast_vs = CONF_VS_GOLDEN,
                                  .greedy = CONF_GREEDY_EXACT};
    conf_check("stories260K", CONF_GPU(0), &b);
}

/* Every split point: the first n layers on the GPU, the rest (and, below
 * all layers, the output) on the CPU. */
TEST(test_gpu_split_points)
{
    if (!have_device()) return;
    static const conf_bounds b = {.ref_max = 1e-3, .fast = {0.02, 0.1}, .fast_vs = CONF_VS_EITHER,
                                  .greedy = CONF_GREEDY_NEAR, .greedy_gap = 0.2};
    for (uint32_t n = 1; n <= 4; n++) {
        strata_model *m = open_gpu("synth-q4_k_m.gguf", n, 0);
        if (!m) return;
        strata_model_stats s;
        strata_model_get_stats(m, &s);
        CHECK(s.gpu_layers == n && s.gpu_output == (n == 4), " -ngl %u: %u layers, output %d", n, s.gpu_layers,
              s.gpu_output);
        strata_model_free(m);
        conf_check("synth-q4_k_m", CONF_GPU(n), &b);
    }
}

/* --gpu-mem caps what the device holds; a cap below one layer keeps the
 * run on the CPU, saying so. */
TEST(test_gpu_memory_cap)
{
    if (!have_device()) return;
    const uint64_t cap = 3u << 20; /* activations ~0.9 MiB + about two of synth-q8_0's 0.9 MiB layers */
    strata_model *m = open_gpu("synth-q8_0.gguf", 0, cap);
    if (!m) return;
    strata_model_stats s;
    strata_model_get_stats(m, &s);
    CHECK(s.gpu_layers > 0 && s.gpu_layers < 4 && s.gpu_bytes <= cap, " %u layers, %llu device bytes (cap %llu)",
          s.gpu_layers, (unsigned long long)s.gpu_bytes, (unsigned long long)cap);
    CHECK(strstr(s.gpu_note, "layers fit") != NULL, " note: %s", s.gpu_note);
    strata_model_free(m);
    m = open_gpu("synth-q8_0.gguf", 0, 4096);
    if (!m) return;
    strata_model_get_stats(m, &s);
    CHECK(s.gpu_layers == 0 && s.gpu_name[0] == 0 && strstr(s.gpu_note, "fits"), " %u layers: %s", s.gpu_layers,
          s.gpu_note);
    strata_model_free(m);
}
