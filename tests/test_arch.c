/* The architecture table and what it adds to the forward pass: RoPE
 * pairing and scaling, the GeGLU activation, sliding-window attention, and
 * the errors for unknown architectures and missing hyper-parameters. The
 * conformance of each architecture against llama.cpp is in
 * test_arch_conformance.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/ops.h"
#include "engine/weights.h"
#include "gguf/gguf.h"
#include "kernels/cpu/geglu.h"
#include "model/arch.h"
#include "model/model_spec.h"
#include "plan/inputs.h"
#include "strata.h"
#include "test.h"

/* A quarter turn on every pair: (a, b) -> (-b, a). */
static void quarter_turn_table(float *cs, int pairs)
{
    for (int i = 0; i < pairs; i++) {
        cs[2 * i] = 0.0f;
        cs[2 * i + 1] = 1.0f;
    }
}

TEST(test_arch_rope_pairing)
{
    float cs[8], adj[8], neox[8];
    quarter_turn_table(cs, 4);
    for (int i = 0; i < 8; i++) adj[i] = neox[i] = (float)(i + 1);
    op_rope(adj, cs, 8, false);
    op_rope(neox, cs, 8, true);
    /* adjacent: (1,2) -> (-2,1), (3,4) -> (-4,3), ... */
    const float want_adj[8] = {-2, 1, -4, 3, -6, 5, -8, 7};
    /* neox: element i with i+4: (1,5) -> (-5,1), (2,6) -> (-6,2), ... */
    const float want_neox[8] = {-5, -6, -7, -8, 1, 2, 3, 4};
    for (int i = 0; i < 8; i++) {
        CHECK(fabsf(adj[i] - want_adj[i]) < 1e-6f, " adjacent [%d] = %g, want %g", i, adj[i], want_adj[i]);
        CHECK(fabsf(neox[i] - want_neox[i]) < 1e-6f, " neox [%d] = %g, want %g", i, neox[i], want_neox[i]);
    }
    /* a partial rotation (dim 4 of a longer head) leaves the rest alone */
    float part[6] = {1, 2, 3, 4, 5, 6};
    op_rope(part, cs, 4, true);
    const float want_part[6] = {-3, -4, 1, 2, 5, 6};
    for (int i = 0; i < 6; i++) CHECK(part[i] == want_part[i], " partial [%d] = %g", i, part[i]);
}

/* Angles written from the definitions: pair i at position p turns by
 * p * base^(-2i/dim) (Su et al.), divided by a Llama-3.1 factor, times the
 * linear scale. */
TEST(test_arch_rope_angles)
{
    const float factors[4] = {1.0f, 2.0f, 4.0f, 8.0f};
    rope_cfg r = {.dim = 8, .base = 10000.0f, .freq_scale = 0.5f, .factors = factors};
    float cs[8];
    op_rope_table(cs, &r, 7);
    const double inv_freq[4] = {1.0, 0.1, 0.01, 0.001}; /* 10000^(-2i/8) */
    for (int i = 0; i < 4; i++) {
        double theta = 7.0 * inv_freq[i] / factors[i] * 0.5;
        CHECK(fabs(cs[2 * i] - cos(theta)) < 1e-6 && fabs(cs[2 * i + 1] - sin(theta)) < 1e-6,
              " pair %d: (%g, %g), want angle %g", i, cs[2 * i], cs[2 * i + 1], theta);
    }
}

/* YaRN: pairs below the correction range keep the original frequency
 * (extrapolation), pairs above it are interpolated by freq_scale, and
 * everything is scaled by 1 + 0.1 ln(1/freq_scale). */
TEST(test_arch_rope_yarn)
{
    rope_cfg r = {.dim = 16, .base = 10000.0f, .freq_scale = 0.25f, .ext_factor = 1.0f, .attn_factor = 1.0f,
                  .corr_low = 2.0f, .corr_high = 5.0f};
    float cs[16];
    op_rope_table(cs, &r, 3);
    double mscale = 1.0 + 0.1 * log(4.0);
    double first = 3.0, last = 3.0 * pow(10000.0, -14.0 / 16.0) * 0.25; /* pair 0 extrapolated, pair 7 interpolated */
    CHECK(fabs(cs[0] - cos(first) * mscale) < 1e-5 && fabs(cs[1] - sin(first) * mscale) < 1e-5, " pair 0: %g %g",
          cs[0], cs[1]);
    CHECK(fabs(cs[14] - cos(last) * mscale) < 1e-5 && fabs(cs[15] - sin(last) * mscale) < 1e-5, " pair 7: %g %g",
          cs[14], cs[15]);
    double hyp = hypot(cs[6], cs[7]); /* pair 3 blends, and keeps the scale */
    CHECK(fabs(hyp - mscale) < 1e-5, " pair 3 magnitude %g, want %g", hyp, mscale);
}

/* GELU (tanh form) through f16 rounding, as llama.cpp computes it. */
TEST(test_arch_geglu)
{
    const float x[6] = {-20.0f, -1.0f, 0.0f, 0.5f, 1.0f, 20.0f};
    /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) in double */
    float g[6], up[6] = {1, 1, 1, 1, 2, 1};
    memcpy(g, x, sizeof g);
    geglu_f16(g, up, 6);
    for (int i = 0; i < 6; i++) {
        double v = x[i], want = 0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v))) * up[i];
        double tol = 1e-3 * fmax(1.0, fabs(want)); /* f16 keeps 11 bits */
        CHECK(fabs(g[i] - want) <= tol, " gelu(%g) * %g = %g, want %g", x[i], up[i], g[i], want);
    }
    CHECK(g[0] == 0.0f && g[5] == 20.0f, " saturation: %g %g", g[0], g[5]);
}

/* A sliding-window model evaluated one token at a time (the window cache
 * slides many times) gives exactly the logits of one batch. */
TEST(test_arch_sliding_window_batches)
{
    const char *path = test_fixture("arch/gemma3-q4_k_m.gguf");
    if (!path) return;
    const int32_t toks[16] = {1, 403, 407, 261, 378, 383, 286, 261, 370, 400, 428, 395, 392, 412, 444, 426};
    float *out[2] = {NULL, NULL};
    uint32_t batches[2] = {16, 1};
    uint32_t nv = 0;
    for (int i = 0; i < 2; i++) {
        strata_model_params p = strata_model_default_params();
        p.n_batch = batches[i];
        p.n_ctx = 64;
        p.n_threads = 2;
        strata_model *m = NULL;
        strata_error err;
        REQUIRE(strata_model_open(path, &p, &m, &err) == STRATA_OK, " %s", err.message);
        nv = strata_model_n_vocab(m);
        out[i] = malloc(16 * (size_t)nv * sizeof(float));
        REQUIRE(out[i] != NULL);
        strata_status st = strata_eval(m, toks, 16, out[i], true, &err);
        CHECK(st == STRATA_OK, " batch %u: %s", batches[i], err.message);
        strata_model_free(m);
    }
    size_t n = 16 * (size_t)nv, differ = 0;
    for (size_t i = 0; i < n; i++) differ += out[0][i] != out[1][i];
    CHECK(nv == 512 && differ == 0, " %zu of %zu logits differ between batch 16 and batch 1", differ, n);
    free(out[0]);
    free(out[1]);
}

/* A fixture's header and spec; false when the fixture is absent (skipped)
 * or cannot be read (failed). */
static bool open_fixture(const char *name, gguf_file **f, model_spec **spec)
{
    const char *path = test_fixture(name);
    strata_error err;
    *f = NULL;
    *spec = NULL;
    if (!path) return false;
    if (gguf_open(path, f, &err) == STRATA_OK && model_spec_from_gguf(*f, path, spec, &err) == STRATA_OK) return true;
    CHECK(false, " %s: %s", name, err.message);
    gguf_close(*f);
    return false;
}

/* The KV cache of a window layer holds the window plus two batches, not the
 * context: gemma3 fixture = 5 window layers (window 4) + 1 global layer,
 * 2 KV heads x 128 dims, F16. */
TEST(test_arch_sliding_window_kv_bytes)
{
    gguf_file *f = NULL;
    model_spec *spec = NULL;
    strata_error err;
    if (!open_fixture("arch/gemma3-q4_k_m.gguf", &f, &spec)) return;
    engine_params p = {.n_ctx = 512, .n_batch = 8, .n_threads = 1};
    engine_desc d;
    CHECK(engine_describe(f, spec, &p, &d, &err) == STRATA_OK, " %s", err.message);
    uint64_t slots = 5 * (4 + 2 * 8) + 512, want = 2 * slots * 2 * 128 * 2;
    CHECK(d.kv_bytes == want, " KV cache %llu bytes, want %llu", (unsigned long long)d.kv_bytes,
          (unsigned long long)want);
    engine_desc_free(&d);
    model_spec_free(spec);
    gguf_close(f);
}

/* A header-only model file with the given architecture and sizes. */
static const char *write_header(const char *arch, bool with_layers)
{
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s.gguf", test_tmpdir(), arch);
    char key[128];
    gguf_writer *w = gguf_writer_new();
    strata_error err;
    strata_status st = gguf_writer_set_str(w, "general.architecture", arch, &err);
    snprintf(key, sizeof key, "%s.embedding_length", arch);
    if (!st) st = gguf_writer_set_u32(w, key, 64, &err);
    snprintf(key, sizeof key, "%s.attention.head_count", arch);
    if (!st) st = gguf_writer_set_u32(w, key, 4, &err);
    snprintf(key, sizeof key, "%s.feed_forward_length", arch);
    if (!st) st = gguf_writer_set_u32(w, key, 128, &err);
    snprintf(key, sizeof key, "%s.block_count", arch);
    if (!st && with_layers) st = gguf_writer_set_u32(w, key, 2, &err);
    if (!st) st = gguf_writer_open(w, path, &err);
    if (!st) st = gguf_writer_close(w, &err);
    gguf_writer_free(w);
    return st ? NULL : path;
}

static void bind_error(const char *arch, bool with_layers, char *msg, size_t cap)
{
    const char *path = write_header(arch, with_layers);
    gguf_file *f = NULL;
    model_spec *spec = NULL;
    model_weights w = {0};
    strata_error err = {0};
    snprintf(msg, cap, "(no error)");
    if (!path || gguf_open(path, &f, &err) || model_spec_from_gguf(f, path, &spec, &err) ||
        weights_bind(f, spec, path, &w, &err))
        snprintf(msg, cap, "%s", err.message);
    weights_free(&w);
    model_spec_free(spec);
    gguf_close(f);
}

TEST(test_arch_errors)
{
    char msg[STRATA_ERROR_MAX];
    bind_error("bert", true, msg, sizeof msg);
    CHECK(strstr(msg, "architecture 'bert' is not supported") && strstr(msg, "qwen2") && strstr(msg, "gemma3"),
          " %s", msg);
    bind_error("qwen3", false, msg, sizeof msg);
    CHECK(strstr(msg, "qwen3.block_count") != NULL, " %s", msg);
    bind_error("phi3", true, msg, sizeof msg); /* sizes present, tensors absent */
    CHECK(strstr(msg, "no tensor 'blk.0.attn_norm.weight'") && strstr(msg, "phi3.gguf"), " %s", msg);
}

/* Which slots each family needs: the table's rules, spot-checked. */
TEST(test_arch_slot_rules)
{
    const arch_desc *phi3 = arch_find("phi3"), *qwen2 = arch_find("qwen2"), *gemma3 = arch_find("gemma3");
    REQUIRE(phi3 && qwen2 && gemma3 && arch_find("llama") && arch_find("qwen3") && arch_find("qwen3moe"));
    CHECK(arch_find("gpt2") == NULL);
    CHECK(arch_layer_need(phi3, false, LS_QKV) == NEED_REQUIRED && arch_layer_need(phi3, false, LS_Q) == NEED_NONE);
    CHECK(arch_layer_need(phi3, false, LS_GATE) == NEED_NONE && arch_layer_need(phi3, false, LS_UP) == NEED_REQUIRED);
    CHECK(arch_layer_need(qwen2, false, LS_Q_BIAS) == NEED_REQUIRED);
    CHECK(arch_layer_need(arch_find("llama"), false, LS_Q_BIAS) == NEED_OPTIONAL);
    CHECK(arch_layer_need(gemma3, false, LS_POST_FFN_NORM) == NEED_REQUIRED &&
          arch_layer_need(gemma3, false, LS_K_NORM) == NEED_REQUIRED);
    CHECK(arch_layer_need(arch_find("llama"), true, LS_GATE_EXPS) == NEED_REQUIRED &&
          arch_layer_need(arch_find("llama"), true, LS_GATE) == NEED_NONE);
    char name[64];
    arch_layer_tensor_name(LS_POST_FFN_NORM, 5, name, sizeof name);
    CHECK(!strcmp(name, "blk.5.post_ffw_norm.weight"), " %s", name);
}

/* Mixture-of-experts files bind with their stacked expert tensors, and
 * give bit for bit the same logits whether the weights are resident or
 * streamed, and whether the prompt goes in one batch or token by token
 * (tokens are grouped by expert, each expert's rows are independent). */
static float *moe_logits(const char *path, uint32_t n_batch, bool stream, const int32_t *toks, uint32_t n)
{
    gguf_file *f = NULL;
    model_spec *spec = NULL;
    engine *e = NULL;
    strata_error err;
    float *out = NULL;
    if (gguf_open(path, &f, &err) || model_spec_from_gguf(f, path, &spec, &err)) {
        CHECK(false, " %s", err.message);
    } else {
        engine_params p = {.n_ctx = 64, .n_batch = n_batch, .n_threads = 2, .store = {.stream_all = stream}};
        out = malloc((size_t)n * spec->hp.vocab_size * sizeof(float));
        strata_status st = engine_open(f, spec, &p, &e, &err);
        if (!st) st = engine_eval(e, toks, n, out, true, &err);
        CHECK(st == STRATA_OK, " %s: %s", path, err.message);
        if (st) free(out), out = NULL;
    }
    engine_free(e);
    model_spec_free(spec);
    gguf_close(f);
    return out;
}

TEST(test_arch_moe_placement_and_batching_agree)
{
    const char *names[2] = {"arch/mixtral-q4_k_m.gguf", "arch/qwen3moe-q4_k_m.gguf"};
    const int32_t toks[12] = {1, 403, 407, 261, 378, 383, 286, 261, 370, 400, 428, 395};
    for (int i = 0; i < 2; i++) {
        const char *path = test_fixture(names[i]);
        if (!path) return;
        float *base = moe_logits(path, 16, false, toks, 12), *streamed = moe_logits(path, 16, true, toks, 12);
        float *single = moe_logits(path, 1, false, toks, 12);
        REQUIRE(base && streamed && single);
        size_t n = 12 * 512, d_stream = 0, d_single = 0;
        for (size_t j = 0; j < n; j++) {
            d_stream += base[j] != streamed[j];
            d_single += base[j] != single[j];
        }
        CHECK(d_stream == 0 && d_single == 0, " %s: %zu logits differ streamed, %zu token by token (of %zu)",
              names[i], d_stream, d_single, n);
        free(base);
        free(streamed);
        free(single);
    }
}

/* The planner counts, of stacked experts, the share a decoded token reads:
 * n_used of n_expert (qwen3moe fixture: 2 of 8) in the layer's expert set;
 * dense tensors in full in its group.
 * The layer's group, what the store holds or streams whole, is the dense
 * part: experts are cached one by one. */
TEST(test_arch_moe_plan_reads_used_experts)
{
    gguf_file *f = NULL;
    model_spec *spec = NULL;
    strata_error err;
    if (!open_fixture("arch/qwen3moe-q4_k_m.gguf", &f, &spec)) return;
    uint64_t dense = 0, experts = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        if (strncmp(t->name, "blk.0.", 6)) continue;
        if (strstr(t->name, "_exps.")) experts += t->n_bytes;
        else dense += t->n_bytes;
    }
    plan_model m;
    REQUIRE(plan_model_from_engine(f, spec, 1, 0, 0, &m, &err) == STRATA_OK, " %s", err.message);
    CHECK(experts > 0 && m.groups[0].weight_bytes == dense && m.n_expert_sets == 3 &&
              m.experts[0].n_used * m.experts[0].unit_weight_bytes == experts / 8 * 2,
          " blk.0 reads %llu dense + %u x %llu of experts, want %llu + %llu / 4",
          (unsigned long long)m.groups[0].weight_bytes, m.experts[0].n_used,
          (unsigned long long)m.experts[0].unit_weight_bytes, (unsigned long long)dense, (unsigned long long)experts);
    CHECK(m.groups[0].bytes >= dense && m.groups[0].bytes < dense + experts,
          " blk.0's group is %llu bytes: the dense part (%llu), its experts cached apart",
          (unsigned long long)m.groups[0].bytes, (unsigned long long)dense);
    plan_model_free(&m);
    model_spec_free(spec);
    gguf_close(f);
}

/* inspect names the experts: count, used, width, one expert's bytes
 * (qwen3moe fixture: 8 of which 2 used, 256 wide; Q4_K gate/up 256 x 256
 * = 36 KiB each, Q4_K down 36 KiB: 108 KiB). */
TEST(test_arch_inspect_experts)
{
    const char *path = test_fixture("arch/qwen3moe-q4_k_m.gguf");
    if (!path) return;
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "'%s' inspect '%s'", test_strata_bin(), path);
    CHECK(test_run(cmd, &out, true) == 0 && strstr(out, "experts     8, 2 used per token, FFN 256 wide; one expert 108 KiB"),
          " %s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "'%s' inspect --json '%s'", test_strata_bin(), path);
    CHECK(test_run(cmd, &out, true) == 0 && strstr(out, "\"n_ff_exp\": 256"), " %s", out ? out : "");
    free(out);
}
