/* The engine with layers on a Vulkan device (lavapipe in CI, a CPU
 * implementation of Vulkan: these are correctness tests, not GPU speed):
 * the fixtures' logits within the fast path's bounds of llama.cpp's golden
 * or the f32ref, stories260K's greedy text exactly, every split point
 * between GPU and CPU layers, the device-memory cap, sliding-window layers
 * past their window against the CPU, the fallback when the driver runs out
 * of memory, and the ops fused or not (STRATA_VK_FUSE=0) agreeing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tools/synth/synth.h"
#include "conformance.h"
#include "greedy_helpers.h"
#include "sched/sched.h"
#include "gpu_helpers.h"
#include "strata.h"
#include "test.h"

#define CONF_GPU(n) \
    ((conf_mode){.kernels = CONF_KERNELS_FAST, .kv = CONF_KV_F16, .n_threads = 2, .gpu = true, .gpu_layers = (n)})

/* Opens a fixture model with up to max_layers layers on device 0. */
static strata_model *open_gpu(const char *name, uint32_t max_layers, uint64_t gpu_mem)
{
    const char *path = test_fixture(name);
    return path ? gpu_test_open(path, max_layers, gpu_mem, 0) : NULL;
}

/* Types the shaders run: every layer and the output go to the GPU. */
static const char *const gpu_types[] = {"f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k_m", "q5_k_m", "q6_k"};
#define N_GPU_TYPES (sizeof gpu_types / sizeof gpu_types[0])

TEST(test_gpu_synth_conformance)
{
    if (!gpu_test_device()) return;
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
    if (!gpu_test_device()) return;
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
    if (!gpu_test_device()) return;
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
    if (!gpu_test_device()) return;
    static const conf_bounds b = {.ref_max = 1e-3, .fast = {0.03, 0.03}, .fast_vs = CONF_VS_GOLDEN,
                                  .greedy = CONF_GREEDY_EXACT};
    conf_check("stories260K", CONF_GPU(0), &b);
}

/* Every split point: the first n layers on the GPU, the rest (and, below
 * all layers, the output) on the CPU. */
TEST(test_gpu_split_points)
{
    if (!gpu_test_device()) return;
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
    if (!gpu_test_device()) return;
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

/* Logits of a token sequence: a prompt of n_prompt tokens (all logits),
 * then the rest one at a time (decode), [n][n_vocab] into out. */
static bool eval_sequence(strata_model *m, const int32_t *tok, size_t n, size_t n_prompt, float *out)
{
    strata_error err;
    uint32_t nv = strata_model_n_vocab(m);
    if (strata_eval(m, tok, n_prompt, out, true, &err) != STRATA_OK) {
        CHECK(false, " prompt: %s", err.message);
        return false;
    }
    for (size_t i = n_prompt; i < n; i++)
        if (strata_eval(m, tok + i, 1, out + i * nv, false, &err) != STRATA_OK) {
            CHECK(false, " token %zu: %s", i, err.message);
            return false;
        }
    return true;
}

/* max and mean |a - b| over n values */
static void diff(const float *a, const float *b, size_t n, double *max, double *mean)
{
    *max = *mean = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        *max = d > *max || isnan(d) ? (isnan(d) ? INFINITY : d) : *max;
        *mean += d / (double)n;
    }
}

/* Gemma 3's sliding window on the GPU past the window: a gemma3-shaped
 * model with a 16-token window on 5 layers of 6, batches of 8 (the GPU's
 * window caches are rings of 16 + 2 x 8 slots that wrap many times over
 * 100 tokens), logits of a 40-token prompt and 60 decoded tokens against
 * the CPU's sliding cache (reference kernels: f32 products, as the GPU). */
TEST(test_gpu_sliding_window_past_the_window)
{
    if (!gpu_test_device()) return;
    char path[512];
    snprintf(path, sizeof path, "%s/gpu-gemma3-swa.gguf", test_tmpdir());
    synth_options o = {.arch = "gemma3", .shape = {256, 512, 6, 4, 2, 512, 256}, .n_swa = 16,
                       .type = GGML_TYPE_Q8_0, .seed = 7, .threads = 2, .output = path};
    strata_error err;
    REQUIRE(synth_write(&o, &err) == STRATA_OK, " %s", err.message);
    enum { N = 100, PROMPT = 40 };
    int32_t tok[N];
    uint64_t r = 12345;
    for (int i = 0; i < N; i++) tok[i] = (int32_t)((r = r * 6364136223846793005ull + 1442695040888963407ull) >> 33) % 512;
    float *lg[2] = {malloc((size_t)N * 512 * sizeof(float)), malloc((size_t)N * 512 * sizeof(float))};
    REQUIRE(lg[0] && lg[1]);
    for (int gpu = 0; gpu < 2; gpu++) {
        strata_model_params p = strata_model_default_params();
        p.n_ctx = 128;
        p.n_batch = 8;
        p.n_threads = 2;
        p.reference_kernels = !gpu;
        p.gpu = gpu ? STRATA_GPU_DEVICE : STRATA_GPU_OFF;
        strata_model *m = NULL;
        if (strata_model_open(path, &p, &m, &err) != STRATA_OK) {
            CHECK(false, " gpu %d: %s", gpu, err.message);
            break;
        }
        strata_model_stats st;
        strata_model_get_stats(m, &st);
        CHECK(!gpu || (st.gpu_layers == 6 && st.gpu_output), " %u layers on the GPU: %s", st.gpu_layers, st.gpu_note);
        bool ok = eval_sequence(m, tok, N, PROMPT, lg[gpu]);
        strata_model_free(m);
        if (!ok) break;
        if (gpu) {
            double mx, mean, mx_late, mean_late;
            diff(lg[0], lg[1], (size_t)N * 512, &mx, &mean);
            diff(lg[0] + 50 * 512, lg[1] + 50 * 512, (size_t)(N - 50) * 512, &mx_late, &mean_late);
            /* a stale or missing key moves logits by O(1) */
            CHECK(mx <= 0.02 && mean <= 2e-3, " GPU vs CPU over %d tokens: max %.3g, mean %.3g", N, mx, mean);
            printf("    gemma3, window 16, %d tokens: GPU vs CPU max |d| %.3g, mean %.3g (from token 50: %.3g, %.3g)\n",
                   N, mx, mean, mx_late, mean_late);
        }
    }
    free(lg[0]), free(lg[1]);
    remove(path);
}

/* A driver out of device memory while the layers are placed (simulated:
 * STRATA_VK_FAIL_ABOVE): fewer layers, or the CPU, with a note; the run
 * itself is unchanged. */
TEST(test_gpu_allocation_failure_falls_back)
{
    if (!gpu_test_device()) return;
    static const conf_bounds b = CONF_BOUNDS_DEFAULT;
    setenv("STRATA_VK_FAIL_ABOVE", "2500000", 1); /* the activations and a layer or two of synth-q8_0 */
    strata_model *m = open_gpu("synth-q8_0.gguf", 0, 0);
    if (m) {
        strata_model_stats s;
        strata_model_get_stats(m, &s);
        CHECK(s.gpu_layers > 0 && s.gpu_layers < 4 && !s.gpu_output && s.gpu_note[0], " %u layers: %s",
              s.gpu_layers, s.gpu_note);
        printf("    driver out of memory above 2.5 MB: %u layers on the GPU (%s)\n", s.gpu_layers, s.gpu_note);
        strata_model_free(m);
        conf_check("synth-q8_0", CONF_GPU(0), &b);
    }
    setenv("STRATA_VK_FAIL_ABOVE", "1000", 1); /* not even the activations */
    m = open_gpu("synth-q8_0.gguf", 0, 0);
    if (m) {
        strata_model_stats s;
        strata_model_get_stats(m, &s);
        CHECK(s.gpu_layers == 0 && s.gpu_note[0], " %u layers: %s", s.gpu_layers, s.gpu_note);
        printf("    driver out of memory above 1000 bytes: %u layers (%s)\n", s.gpu_layers, s.gpu_note);
        strata_model_free(m);
    }
    unsetenv("STRATA_VK_FAIL_ABOVE");
}

/* The fused ops (decode: norm into the products, the residual add, gate
 * and up with the activation; RoPE with the KV stores) against every op on
 * its own: the same logits up to f32 rounding, on a Q4_K_M model (the
 * factored decode paths) and a Q8_0 one (the generic ones), prompt and
 * decode. */
TEST(test_gpu_fused_ops_match_unfused)
{
    if (!gpu_test_device()) return;
    const char *models[] = {"synth-q4_k_m.gguf", "synth-q8_0.gguf", "arch/qwen2-q4_k_m.gguf"};
    for (size_t k = 0; k < sizeof models / sizeof *models; k++) {
        const char *path = test_fixture(models[k]);
        if (!path) return;
        enum { N = 24, PROMPT = 8 };
        float *lg[2] = {NULL, NULL};
        uint32_t nv = 0;
        for (int fuse = 0; fuse < 2; fuse++) {
            if (!fuse) setenv("STRATA_VK_FUSE", "0", 1);
            strata_model *m = open_gpu(models[k], 0, 0);
            unsetenv("STRATA_VK_FUSE");
            if (!m) break;
            nv = strata_model_n_vocab(m);
            int32_t tok[N];
            for (int i = 0; i < N; i++) tok[i] = (int32_t)((i * 7919u + 13u) % nv);
            lg[fuse] = malloc((size_t)N * nv * sizeof(float));
            bool ok = lg[fuse] && eval_sequence(m, tok, N, PROMPT, lg[fuse]);
            strata_model_free(m);
            if (!ok) break;
        }
        if (lg[0] && lg[1]) {
            double mx, mean;
            diff(lg[0], lg[1], (size_t)N * nv, &mx, &mean);
            CHECK(mx <= 2e-3, " %s: fused vs unfused max |d| %.3g (mean %.3g)", models[k], mx, mean);
            printf("    %s: fused vs unfused max |d| %.3g, mean %.3g\n", models[k], mx, mean);
        }
        free(lg[0]), free(lg[1]);
    }
}

/* Logits of two prompts evaluated alone on their own contexts, then in one
 * batch on two others (one's prompt and the other's next token): the
 * device keeps a KV cache per context. */
static void batch_vs_alone(strata_model *m, float tol)
{
    uint32_t V = strata_model_n_vocab(m);
    int32_t pa[5] = {1, 7, 30, 2, 9}, pb[4] = {1, 99, 5, 64};
    float *alone = malloc(2 * (size_t)V * sizeof(float)), *got = malloc(2 * (size_t)V * sizeof(float));
    strata_error err = {0};
    strata_context *x = NULL, *y = NULL;
    REQUIRE(strata_context_new(m, 32, &x, &err) == STRATA_OK && strata_context_new(m, 32, &y, &err) == STRATA_OK,
            " %s", err.message);
    CHECK(strata_context_eval(x, pa, 5, alone, false, &err) == STRATA_OK, " %s", err.message);
    CHECK(strata_context_eval(y, pb, 4, NULL, false, &err) == STRATA_OK, " %s", err.message);
    CHECK(strata_context_eval(y, &pa[1], 1, alone + V, false, &err) == STRATA_OK, " %s", err.message);
    strata_context_reset(x);
    strata_context_reset(y);
    CHECK(strata_context_eval(y, pb, 4, NULL, false, &err) == STRATA_OK, " %s", err.message);
    strata_batch_entry b[6] = {{y, pa[1], 4, true}};
    for (int i = 0; i < 5; i++) b[1 + i] = (strata_batch_entry){x, pa[i], (uint32_t)i, i == 4};
    CHECK(strata_decode(m, b, 6, got, &err) == STRATA_OK, " %s", err.message);
    float d0 = 0, d1 = 0;
    for (uint32_t v = 0; v < V; v++) {
        d0 = fmaxf(d0, fabsf(got[v] - alone[V + v]));
        d1 = fmaxf(d1, fabsf(got[V + v] - alone[v]));
    }
    CHECK(d0 <= tol && d1 <= tol, " the batch's logits differ from alone by %g and %g", d0, d1);
    strata_context_free(x);
    strata_context_free(y);
    free(alone);
    free(got);
}

/* With layers on the GPU, every context has its KV caches on the device (a
 * set per context the model reserves: -np): a batch of several sequences
 * gives each the logits it gets alone (the same shaders; batched products
 * may round differently), a context beyond the sets waits, and the
 * scheduler's greedy answers equal those alone. All layers on the GPU, and
 * a split with the last layers on the CPU. */
TEST(test_gpu_contexts_batched)
{
    if (!gpu_test_device()) return;
    for (int split = 0; split < 2; split++) {
        const char *path = test_fixture("synth-q8_0.gguf");
        if (!path) return;
        strata_model_params mp = strata_model_default_params();
        mp.gpu = STRATA_GPU_DEVICE;
        mp.gpu_layers_max = split ? 2 : 0;
        mp.n_ctx = 32;
        mp.n_threads = 2;
        mp.n_parallel = 3;
        strata_model *m = NULL;
        strata_error err = {0};
        REQUIRE(strata_model_open(path, &mp, &m, &err) == STRATA_OK, " %s", err.message);
        strata_model_stats st;
        strata_model_get_stats(m, &st);
        CHECK(split ? st.gpu_layers == 2 : st.gpu_output, " %u layers on the GPU", st.gpu_layers);
        batch_vs_alone(m, 1e-3f);
        strata_context *c[4] = {0};
        for (int i = 0; i < 3; i++)
            CHECK(strata_context_new(m, 32, &c[i], &err) == STRATA_OK, " %s", err.message);
        CHECK(strata_context_new(m, 8, &c[3], &err) == STRATA_E_NOMEM && !c[3], " %s", err.message);
        for (int i = 0; i < 4; i++) strata_context_free(c[i]);
        int32_t prompt[4][4] = {{1, 7, 30, 2}, {1, 99, 5, 64}, {1, 3, 3, 3}, {1, 200, 17, 45}};
        char *alone[4];
        for (int r = 0; r < 4; r++) alone[r] = greedy_text(m, prompt[r], 4, 6);
        sched *s = NULL;
        sched_params sp = {.n_slots = 3};
        REQUIRE(sched_new(m, &sp, &s, &err) == STRATA_OK, " %s", err.message);
        sched_req *q[4];
        for (int r = 0; r < 4; r++) {
            sched_request_params rp = {.prompt = prompt[r], .n_prompt = 4, .max_tokens = 6,
                                       .sampling = strata_sampler_default_params()};
            rp.sampling.temp = 0;
            CHECK(sched_submit(s, &rp, &q[r], NULL, 0) == SCHED_OK);
        }
        while (sched_step(s)) {
        }
        for (int r = 0; r < 4; r++) {
            sched_progress p;
            sched_req_wait(q[r], 0, 0, &p);
            CHECK((p.finish == SCHED_LENGTH || p.finish == SCHED_STOP) && p.text && !strcmp(p.text, alone[r]),
                  " split %d request %d: finish %d, '%s' alone '%s' %s", split, r, (int)p.finish, p.text, alone[r],
                  p.error);
            free(p.text);
            free(alone[r]);
            sched_req_release(q[r]);
        }
        sched_free(s);
        strata_model_free(m);
    }
}
