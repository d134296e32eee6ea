/* RAM->VRAM streaming on a Vulkan device (lavapipe in CI): layers that do
 * not fit in the device memory cap come from host RAM every token through
 * the staging ring and run the same shaders as resident layers, so their
 * logits equal those of every layer resident bit for bit, at several caps
 * and ring depths, with random host delays around the transfers
 * (STRATA_VK_STREAM_DELAY_US); and the device memory vkb itself counted at
 * its peak never exceeds the cap. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tools/synth/synth.h"
#include "backend/vulkan/vkb_internal.h"
#include "gpu_helpers.h"
#include "strata.h"
#include "test.h"

enum { N_TOK = 24, N_PROMPT = 8 };

/* A llama-shaped model of 10 layers (more than any ring holds). */
static bool write_model(const char *name, uint32_t type, char *path, size_t n)
{
    snprintf(path, n, "%s/%s", test_tmpdir(), name);
    synth_options o = {.shape = {256, 512, 10, 4, 2, 512, 256}, .type = type, .seed = 11, .threads = 2,
                       .output = path};
    strata_error err;
    if (synth_write(&o, &err) != STRATA_OK) {
        CHECK(false, " synth: %s", err.message);
        return false;
    }
    return true;
}

/* Logits of a prompt of N_PROMPT tokens, then N_TOK - N_PROMPT decoded one
 * at a time, [N_TOK][n_vocab] (NULL on failure), and the GPU's stats. */
static float *run(const char *path, uint64_t cap, uint32_t depth, strata_model_stats *s)
{
    strata_model *m = gpu_test_open(path, 0, cap, depth);
    if (!m) return NULL;
    strata_error err = {0};
    float *out = gpu_test_eval(m, N_TOK, N_PROMPT, &err);
    bool ok = out != NULL;
    CHECK(ok, " eval (cap %llu, depth %u): %s", (unsigned long long)cap, depth, err.message);
    strata_model_get_stats(m, s);
    /* the model's account holds what vkb counted on the device, by what it is; the ring's
     * staging (host-visible) in RAM, and vkb's own copy staging (two halves) as RAM scratch */
    strata_mem_account vram, ram;
    strata_model_mem_account(m, STRATA_MEM_VRAM, &vram);
    strata_model_mem_account(m, STRATA_MEM_RAM, &ram);
    CHECK(vram.total == s->gpu_bytes && vram.used[STRATA_MEM_SCRATCH] > 0 && vram.used[STRATA_MEM_KV] > 0 &&
              (vram.used[STRATA_MEM_SLOTS] > 0) == (s->gpu_streamed > 0) &&
              (vram.used[STRATA_MEM_WEIGHTS] > 0) == (s->gpu_streamed < 11) &&
              ram.used[STRATA_MEM_SLOTS] >= vram.used[STRATA_MEM_SLOTS] &&
              ram.used[STRATA_MEM_SCRATCH] >= 2ull * VKB_STAGING_BYTES,
          " VRAM account %llu (weights %llu, slots %llu, KV %llu), device %llu; RAM slots %llu, scratch %llu",
          (unsigned long long)vram.total, (unsigned long long)vram.used[STRATA_MEM_WEIGHTS],
          (unsigned long long)vram.used[STRATA_MEM_SLOTS], (unsigned long long)vram.used[STRATA_MEM_KV],
          (unsigned long long)s->gpu_bytes, (unsigned long long)ram.used[STRATA_MEM_SLOTS],
          (unsigned long long)ram.used[STRATA_MEM_SCRATCH]);
    strata_model_free(m);
    return out;
}

static void streamed_equals_resident(uint32_t type, const char *name)
{
    char path[512];
    if (!write_model(name, type, path, sizeof path)) return;
    strata_model_stats all;
    float *ref = run(path, 0, 0, &all);
    if (!ref) return;
    REQUIRE(all.gpu_layers == 10 && all.gpu_output && !all.gpu_streamed, " resident: %u layers, %u streamed",
            all.gpu_layers, all.gpu_streamed);
    size_t n = (size_t)N_TOK * 512;
    /* caps as fractions of everything resident, ring depths; random host delays of up to 0.4 or 2 ms */
    const struct { double frac; uint32_t depth; } cases[] = {{0.75, 1}, {0.75, 2}, {0.75, 3}, {0.55, 1},
                                                             {0.55, 2}, {0.55, 3}, {0.4, 1}, {0.4, 2}};
    const char *delays[] = {NULL, "400", "2000"};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        uint64_t cap = (uint64_t)(cases[c].frac * (double)all.gpu_bytes);
        const uint32_t depth = cases[c].depth;
        const char *delay = delays[c % 3];
        if (delay) setenv("STRATA_VK_STREAM_DELAY_US", delay, 1);
        strata_model_stats s;
        float *lg = run(path, cap, depth, &s);
        unsetenv("STRATA_VK_STREAM_DELAY_US");
        if (!lg) continue;
        CHECK(s.gpu_layers == 10 && s.gpu_output, " %s cap %llu depth %u: %u layers on the GPU", name,
              (unsigned long long)cap, depth, s.gpu_layers);
        CHECK(s.gpu_streamed > depth, " %s cap %llu depth %u: %u streamed, the ring does not wrap", name,
              (unsigned long long)cap, depth, s.gpu_streamed);
        CHECK(s.gpu_peak_bytes <= cap && s.gpu_peak_bytes > 0, " %s: device peak %llu > cap %llu", name,
              (unsigned long long)s.gpu_peak_bytes, (unsigned long long)cap);
        size_t first = n;
        for (size_t i = 0; i < n && first == n; i++)
            if (memcmp(&lg[i], &ref[i], sizeof(float)) != 0) first = i;
        CHECK(first == n, " %s cap %llu depth %u delay %s: logit %zu (token %zu) %.9g, resident %.9g", name,
              (unsigned long long)cap, depth, delay ? delay : "0", first, first / 512,
              first < n ? lg[first] : 0.0, first < n ? ref[first] : 0.0);
        printf("    %s cap %llu (%.0f %%) depth %u delay %s us: %u of 11 groups streamed, peak %llu bytes\n", name,
               (unsigned long long)cap, cases[c].frac * 100, depth, delay ? delay : "0", s.gpu_streamed,
               (unsigned long long)s.gpu_peak_bytes);
        free(lg);
    }
    free(ref);
}

TEST(test_gpu_stream_bit_identical_q8_0)
{
    if (!gpu_test_device()) return;
    streamed_equals_resident(GGML_TYPE_Q8_0, "gpu-stream-q8_0.gguf");
}

TEST(test_gpu_stream_bit_identical_q4_k)
{
    if (!gpu_test_device()) return;
    streamed_equals_resident(GGML_TYPE_Q4_K, "gpu-stream-q4_k.gguf");
}

/* Without --gpu-stream the same cap keeps the layers that do not fit on
 * the CPU (today's split), and a depth beyond the ring's is refused. */
TEST(test_gpu_stream_off_and_bad_depth)
{
    if (!gpu_test_device()) return;
    char path[512];
    if (!write_model("gpu-stream-off.gguf", GGML_TYPE_Q8_0, path, sizeof path)) return;
    strata_model_stats all, s;
    float *a = run(path, 0, 0, &all);
    free(a);
    if (!a) return;
    float *b = run(path, all.gpu_bytes / 2, 0, &s);
    free(b);
    CHECK(s.gpu_layers > 0 && s.gpu_layers < 10 && !s.gpu_streamed, " %u layers, %u streamed", s.gpu_layers,
          s.gpu_streamed);
    strata_model_params p = strata_model_default_params();
    p.gpu = STRATA_GPU_DEVICE;
    p.gpu_stream = 9;
    strata_model *m = NULL;
    strata_error err;
    CHECK(strata_model_open(path, &p, &m, &err) != STRATA_OK && strstr(err.message, "stream depth"), " %s",
          err.message);
    strata_model_free(m);
}
