/* The planner's CPU cost model and memory model against independent truth:
 * the engine's own allocation counters at load, per-type rates and fixed
 * costs priced as the formula of docs/cost-model.md says (numbers worked
 * out here by hand), the thread count changing the prediction, and the
 * profile keeping one engine calibration per thread count. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tools/synth/synth.h"
#include "engine/engine.h"
#include "engine/engine_internal.h"
#include "hw/hw.h"
#include "plan/inputs.h"
#include "plan/plan.h"
#include "test.h"

#define MiB (1024ull * 1024ull)

static bool close_to(double a, double b) { return fabs(a - b) <= 1e-9 * fabs(b); }

/* ---- the memory model against what the engine allocates ---- */

static const char *synth_model(const char *name, const synth_options *base)
{
    static char paths[4][1100];
    static int n;
    if (n == 4) return NULL;
    char *path = paths[n++];
    snprintf(path, sizeof paths[0], "%s/%s.gguf", test_tmpdir(), name);
    synth_options o = *base;
    o.output = path;
    strata_error e;
    if (synth_write(&o, &e) != STRATA_OK) {
        test_fail(__FILE__, __LINE__, "synth", " %s", e.message);
        return NULL;
    }
    return path;
}

/* The planner's memory model (from engine_describe, no kernels bound) and
 * the bytes the engine really allocates when it opens (its scratch counter
 * and KV reserve: every buffer goes through them) agree exactly, at
 * contexts, batches, thread counts and KV types the model was not derived
 * at, for a dense model and a mixture of experts. */
static void check_memory_model(const char *path)
{
    gguf_file *f = NULL;
    model_spec *spec = NULL;
    strata_error e;
    REQUIRE(gguf_open(path, &f, &e) == STRATA_OK && model_spec_from_gguf(f, path, &spec, &e) == STRATA_OK,
            " %s", e.message);
    static const struct { uint32_t ctx, batch; int threads; strata_kv_type kv; plan_kv pkv; } cases[] = {
        {96, 32, 1, STRATA_KV_F16, PLAN_KV_F16}, {300, 7, 3, STRATA_KV_Q8_0, PLAN_KV_Q8_0},
        {512, 512, 2, STRATA_KV_Q4_0, PLAN_KV_Q4_0}, {40, 256, 4, STRATA_KV_F16, PLAN_KV_F16},
        {2048, 2048, 2, STRATA_KV_F16, PLAN_KV_F16}, /* beyond the models' 1024-token context, as `run -c -b` */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        plan_model m;
        REQUIRE(plan_model_from_engine(f, spec, cases[i].threads, cases[i].ctx, cases[i].batch, &m, &e) == STRATA_OK,
                " %s", e.message);
        engine_params ep = {.n_ctx = cases[i].ctx, .n_batch = cases[i].batch, .n_threads = cases[i].threads,
                            .kv_type_k = cases[i].kv, .kv_type_v = cases[i].kv};
        engine *en = NULL;
        strata_status st = engine_open(f, spec, &ep, &en, &e);
        CHECK(st == STRATA_OK, " %s", e.message);
        if (st == STRATA_OK) {
            uint32_t B = cases[i].batch < cases[i].ctx ? cases[i].batch : cases[i].ctx;
            CHECK(m.batch == B, " case %zu: the plan's batch %u, the engine's %u", i, m.batch, B);
            uint64_t kv = cases[i].pkv == PLAN_KV_Q8_0   ? m.kv_bytes_per_token_q8
                          : cases[i].pkv == PLAN_KV_Q4_0 ? m.kv_bytes_per_token_q4
                                                         : m.kv_bytes_per_token;
            uint64_t model = m.buffer_fixed + m.buffer_per_ctx * cases[i].ctx + m.buffer_per_batch * B;
            CHECK(en->scratch_bytes == model, " case %zu: engine %llu, model %llu", i,
                  (unsigned long long)en->scratch_bytes, (unsigned long long)model);
            CHECK(en->kv_reserve == kv * cases[i].ctx, " case %zu: KV %llu vs %llu", i,
                  (unsigned long long)en->kv_reserve, (unsigned long long)(kv * cases[i].ctx));
            engine_free(en);
        }
        plan_model_free(&m);
    }
    model_spec_free(spec);
    gguf_close(f);
}

TEST(test_plan_memory_model_matches_engine)
{
    synth_options dense = {.shape = {256, 704, 3, 4, 2, 512, 1024}, .type = GGML_TYPE_Q8_0, .seed = 3, .threads = 2};
    synth_options moe = {.arch = "qwen3moe", .shape = {256, 768, 2, 4, 2, 512, 1024}, .n_expert = 4,
                         .n_expert_used = 2, .mix = MIX_Q4_K_M, .type = GGML_TYPE_Q4_K, .seed = 4, .threads = 2};
    const char *a = synth_model("mem-dense", &dense), *b = synth_model("mem-moe", &moe);
    if (a) check_memory_model(a);
    if (b) check_memory_model(b);
}

/* ---- the CPU cost model ---- */

/* n layers of `layer` bytes (all weights: no padding) and an output group,
 * resident; KV and buffers small. */
static void cost_model(plan_model *m, uint32_t n, uint64_t layer, uint64_t output)
{
    memset(m, 0, sizeof *m);
    m->n_groups = n + 1;
    m->groups = calloc(m->n_groups, sizeof *m->groups);
    for (uint32_t g = 0; m->groups && g <= n; g++) {
        m->groups[g].bytes = m->groups[g].weight_bytes = g < n ? layer : output;
        m->groups[g].elems = m->groups[g].bytes * 2;
    }
    m->context_length = 256;
    m->kv_bytes_per_token = m->kv_bytes_per_token_q8 = m->kv_bytes_per_token_q4 = 1024;
    m->batch = 256;
}

static plan_machine calibrated(void)
{
    plan_machine hw = {.ram_budget = 64ull << 30, .ram_bw = 50e9, .disk_bw = 2e9, .cpu_rate = 1e13, .measured = true,
                       .engine_bw = 20e9, .engine_layer_s = 5e-6, .engine_token_s = 30e-6, .threads = 2};
    hw.engine_type_bw[PLAN_WT_Q4_K] = 20e9;
    hw.engine_type_bw[PLAN_WT_Q6_K] = 25e9;
    hw.engine_type_bw[PLAN_WT_Q8_0] = 40e9;
    return hw;
}

/* Each type at its own rate, the untyped rest at Q4_K's, plus a fixed cost
 * per group and per token; the KV cache at the raw RAM bandwidth. */
TEST(test_plan_cost_per_type_rates)
{
    plan_model m;
    cost_model(&m, 4, 64 * MiB, 32 * MiB);
    REQUIRE(m.groups);
    for (uint32_t g = 0; g < 4; g++) m.groups[g].type_bytes[PLAN_WT_Q8_0] = 16 * MiB; /* a quarter of each layer */
    m.groups[4].type_bytes[PLAN_WT_Q6_K] = 32 * MiB;                                 /* the output projection */
    plan_machine hw = calibrated();
    plan_request q = {.cpu_only = true, .n_ctx = 256};
    plan_result r;
    plan_compute(&m, &hw, &q, &r);
    const plan *p = &r.chosen;
    REQUIRE(p->feasible, " %s", p->reason);
    double t = 4 * (48.0 * MiB / 20e9 + 16.0 * MiB / 40e9) + 32.0 * MiB / 25e9 + 5 * 5e-6 + 30e-6 +
               1024.0 * PLAN_DECODE_POS / 50e9;
    CHECK(close_to(p->t_ram, t), " %.9g vs %.9g", p->t_ram, t);
    CHECK(close_to(p->decode_tps, 1 / t) && !strcmp(p->bottleneck, "RAM bandwidth"), " %s", p->bottleneck);
    /* the same model all Q4_K is slower: Q8_0 and Q6_K bytes are cheaper here */
    plan_model q4;
    cost_model(&q4, 4, 64 * MiB, 32 * MiB);
    plan_result r4;
    plan_compute(&q4, &hw, &q, &r4);
    CHECK(r4.chosen.decode_tps < p->decode_tps, " %.3f vs %.3f", r4.chosen.decode_tps, p->decode_tps);
    plan_result_free(&r4);
    /* the width cost: per layer (not the output group), sqrt of its weights' elements */
    hw.engine_width_s = 2e-8;
    plan_compute(&m, &hw, &q, &r4);
    double wide = t + 4 * sqrt(2.0 * 64 * MiB) * 2e-8;
    CHECK(r4.chosen.feasible && close_to(r4.chosen.t_ram, wide), " %.9g vs %.9g", r4.chosen.t_ram, wide);
    plan_result_free(&r4);
    plan_result_free(&r);
    free(q4.groups);
    free(m.groups);
}

/* A step of B tokens (prefill, B sequences decoding) with the tile kernels
 * calibrated: the decode step's pass over the weights plus B x each type's
 * bytes at its tile rate (types without one at Q4_K's); without the tile
 * calibration, B x the compute term, as before. */
TEST(test_plan_cost_tile_rates_price_many_token_steps)
{
    plan_model m;
    cost_model(&m, 4, 64 * MiB, 32 * MiB);
    REQUIRE(m.groups);
    for (uint32_t g = 0; g < 4; g++) m.groups[g].type_bytes[PLAN_WT_Q8_0] = 16 * MiB;
    m.groups[4].type_bytes[PLAN_WT_F16] = 32 * MiB; /* no tile rate of its own: Q4_K's */
    plan_machine hw = calibrated();
    plan_request q = {.cpu_only = true, .n_ctx = 256, .n_batch = 64};
    plan_result r;
    plan_compute(&m, &hw, &q, &r);
    REQUIRE(r.chosen.feasible, " %s", r.chosen.reason);
    double untiled = 64 / fmax(64 * r.chosen.t_compute, r.chosen.tb_ram);
    CHECK(close_to(r.chosen.prefill_tps, untiled), " %.6g vs %.6g", r.chosen.prefill_tps, untiled);
    plan_result_free(&r);
    hw.engine_tile_bw[PLAN_WT_Q4_K] = 100e9;
    hw.engine_tile_bw[PLAN_WT_Q8_0] = 50e9;
    plan_compute(&m, &hw, &q, &r);
    const plan *p = &r.chosen;
    REQUIRE(p->feasible, " %s", p->reason);
    double per_token = 4 * (48.0 * MiB / 100e9 + 16.0 * MiB / 50e9) + 32.0 * MiB / 100e9;
    double step = p->t_ram + 64 * per_token;
    CHECK(close_to(p->tb_compute, step) && close_to(p->prefill_tps, 64 / step), " step %.9g vs %.9g, %.4g tok/s",
          p->tb_compute, step, p->prefill_tps);
    plan_result_free(&r);
    free(m.groups);
}

/* A model whose weights fit in half the last-level cache is priced at the
 * in-cache compute rate plus the fixed costs (stories260K's case), not at
 * the rate of weights streaming from RAM; one that does not fit is not. */
TEST(test_plan_cost_weights_in_cache)
{
    plan_model m;
    cost_model(&m, 5, 200 * 1024, 100 * 1024); /* 1.1 MB */
    REQUIRE(m.groups);
    plan_machine hw = calibrated();
    hw.cpu_rate = 50e9;
    hw.cache_bytes = 32 * MiB;
    plan_request q = {.cpu_only = true, .n_ctx = 256};
    plan_result r;
    plan_compute(&m, &hw, &q, &r);
    const plan *p = &r.chosen;
    REQUIRE(p->feasible, " %s", p->reason);
    double elems = 2.0 * (5 * 200 * 1024 + 100 * 1024), t = elems / 50e9 + 6 * 5e-6 + 30e-6;
    CHECK(close_to(p->t_compute, t) && !strcmp(p->bottleneck, "compute"), " %.9g vs %.9g (%s)", p->t_compute, t,
          p->bottleneck);
    CHECK(close_to(p->t_ram, 1024.0 * PLAN_DECODE_POS / 50e9), " %.9g", p->t_ram);
    plan_result_free(&r);
    hw.cache_bytes = 2 * MiB; /* 1.1 MB of weights is more than half of it */
    plan_compute(&m, &hw, &q, &r);
    CHECK(r.chosen.feasible && !strcmp(r.chosen.bottleneck, "RAM bandwidth"), " %s", r.chosen.bottleneck);
    plan_result_free(&r);
    free(m.groups);
}

/* ---- thread counts ---- */

/* The hypothetical 16-thread, 8-core profile with engine calibrations at
 * the given thread counts (Q4_K rate 4 GB/s per thread, Q8_0 twice that). */
static void profile_with_calibrations(hw_profile *p, const int *threads, int n)
{
    strata_error e;
    REQUIRE(hw_profile_load("tests/data/hw/profiles/hypothetical-24g.json", p, &e) == STRATA_OK, " %s", e.message);
    p->measured.n_engine = 0;
    p->measured.cpu_rate = 1e13; /* in-cache compute out of the way: the engine's rates decide */
    for (int i = 0; i < n; i++) {
        hw_engine_calib c = {.threads = threads[i], .layer_s = 1e-5, .token_s = 2e-5, .width_s = 3e-8};
        c.type_bw[HW_ENGINE_Q4_K] = 4e9 * threads[i];
        c.type_bw[HW_ENGINE_Q8_0] = 8e9 * threads[i];
        hw_engine_calib_put(&p->measured, &c);
    }
}

/* The rates are the calibration at the thread count asked for, else the
 * nearest one scaled by the cores each uses (never past the physical
 * cores, nor the RAM's bandwidth); the fixed costs are kept. */
TEST(test_plan_threads_scale_rates)
{
    hw_profile *p = calloc(1, sizeof *p);
    REQUIRE(p);
    const int calib[] = {4};
    profile_with_calibrations(p, calib, 1);
    plan_machine m;
    plan_machine_from_profile(p, 0, 4, &m);
    CHECK(m.threads == 4 && !m.threads_scaled && m.engine_bw == 16e9 && m.engine_type_bw[PLAN_WT_Q8_0] == 32e9);
    CHECK(m.engine_layer_s == 1e-5 && m.engine_token_s == 2e-5 && m.engine_width_s == 3e-8);
    plan_machine_from_profile(p, 0, 2, &m);
    CHECK(m.threads_scaled && close_to(m.engine_bw, 8e9) && close_to(m.engine_type_bw[PLAN_WT_Q8_0], 16e9),
          " %.4g", m.engine_bw);
    CHECK(m.engine_layer_s == 1e-5 && m.engine_token_s == 2e-5);
    /* 16 threads on 8 physical cores: the rate of 8 (twice 4's), capped by RAM (60 GB/s) for Q8_0 */
    plan_machine_from_profile(p, 0, 16, &m);
    CHECK(close_to(m.engine_bw, 32e9) && close_to(m.engine_type_bw[PLAN_WT_Q8_0], 60e9), " %.4g %.4g", m.engine_bw,
          m.engine_type_bw[PLAN_WT_Q8_0]);
    /* a calibration made at 2 threads is used as it is */
    const int two[] = {4, 2};
    profile_with_calibrations(p, two, 2);
    p->measured.engine[1].type_bw[HW_ENGINE_Q4_K] = 5e9; /* not 4's halved */
    plan_machine_from_profile(p, 0, 2, &m);
    CHECK(!m.threads_scaled && m.engine_bw == 5e9, " %.4g", m.engine_bw);
    free(p);
}

/* `strata plan -t N` on a profile: the prediction follows N, and the JSON
 * says for which thread count and that the rates were scaled. */
TEST(test_plan_cli_threads_change_prediction)
{
    hw_profile *p = calloc(1, sizeof *p);
    REQUIRE(p);
    const int calib[] = {8};
    profile_with_calibrations(p, calib, 1);
    p->n_gpus = 0; /* CPU plans */
    char prof[1100], mpath[1100];
    snprintf(prof, sizeof prof, "%s/threads.json", test_tmpdir());
    strata_error e;
    REQUIRE(hw_profile_save(p, prof, &e) == STRATA_OK, " %s", e.message);
    free(p);
    synth_options o = {.shape = {512, 1408, 4, 8, 4, 512, 512}, .type = GGML_TYPE_Q4_K, .seed = 9, .threads = 2,
                       .output = mpath};
    snprintf(mpath, sizeof mpath, "%s/threads.gguf", test_tmpdir());
    REQUIRE(synth_write(&o, &e) == STRATA_OK, " %s", e.message);
    double tps[3] = {0};
    const int threads[3] = {2, 4, 8};
    for (int i = 0; i < 3; i++) {
        char cmd[3000], *out = NULL;
        snprintf(cmd, sizeof cmd, "XDG_CACHE_HOME='%s/cache' %s plan '%s' --hw '%s' -c 256 -t %d --json", test_tmpdir(),
                 test_strata_bin(), mpath, prof, threads[i]);
        int rc = test_run(cmd, &out, false);
        json_error_t je;
        json_t *doc = rc == 0 && out ? json_loads(out, 0, &je) : NULL;
        CHECK(doc, " rc %d: %s", rc, out ? out : "");
        if (doc) {
            json_t *mach = json_object_get(doc, "machine");
            tps[i] = json_number_value(json_object_get(json_object_get(doc, "plan"), "decode_tokens_per_s"));
            CHECK(json_integer_value(json_object_get(mach, "threads")) == threads[i]);
            CHECK(json_is_true(json_object_get(mach, "threads_scaled")) == (threads[i] != 8), " -t %d", threads[i]);
        }
        json_decref(doc);
        free(out);
    }
    CHECK(tps[0] > 0 && tps[0] < tps[1] && tps[1] < tps[2], " %.2f %.2f %.2f", tps[0], tps[1], tps[2]);
    char cmd[3000], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s plan '%s' --hw '%s' -t 0", test_strata_bin(), mpath, prof);
    CHECK(test_run(cmd, &out, true) == 3 && out && strstr(out, "-t"), " %s", out ? out : "");
    free(out);
}

/* ---- the profile's calibrations ---- */

/* One per thread count: a second at the same count replaces the first;
 * when full, the oldest goes; they survive the JSON round trip; a
 * calibration without a Q4_K rate is refused, naming the field. */
TEST(test_plan_engine_calibrations_in_profile)
{
    hw_profile *p = calloc(1, sizeof *p), *q = calloc(1, sizeof *q);
    REQUIRE(p && q);
    const int calib[] = {1, 2, 2};
    profile_with_calibrations(p, calib, 3);
    CHECK(p->measured.n_engine == 2 && hw_engine_calib_at(&p->measured, 2) &&
          hw_engine_calib_at(&p->measured, 2)->type_bw[HW_ENGINE_Q4_K] == 8e9 && !hw_engine_calib_at(&p->measured, 3));
    for (int t = 3; t <= HW_MAX_ENGINE_CALIB + 1; t++) {
        hw_engine_calib c = {.threads = t};
        c.type_bw[HW_ENGINE_Q4_K] = 1e9 * t;
        hw_engine_calib_put(&p->measured, &c);
    }
    CHECK(p->measured.n_engine == HW_MAX_ENGINE_CALIB && !hw_engine_calib_at(&p->measured, 1) &&
          hw_engine_calib_at(&p->measured, HW_MAX_ENGINE_CALIB + 1));
    char path[1100], why[256] = "";
    snprintf(path, sizeof path, "%s/calib.json", test_tmpdir());
    strata_error e;
    REQUIRE(hw_profile_save(p, path, &e) == STRATA_OK, " %s", e.message);
    REQUIRE(hw_profile_load(path, q, &e) == STRATA_OK, " %s", e.message);
    CHECK(hw_profile_equal(p, q, why, sizeof why), " %s", why);
    /* a calibration without its Q4_K rate */
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    fputs("{\"schema\": \"strata-hw-profile\", \"version\": 1, \"cpu\": {\"logical_cores\": 2},\n"
          " \"measured\": {\"ram_read_all_bytes_per_s\": 2e10, \"engine\": [{\"threads\": 2, \"bytes_per_s\": "
          "{\"q8_0\": 3e10}}]}}\n", f);
    fclose(f);
    CHECK(hw_profile_load(path, q, &e) != STRATA_OK && strstr(e.message, "measured.engine[0].bytes_per_s") &&
          strstr(e.message, "q4_k"), " %s", e.message);
    free(p);
    free(q);
}

/* A GPU whose host-to-device copies were not measured (a what-if profile)
 * is priced from its PCIe link: 3/4 of the per-lane rate after line coding
 * (PCIe 3.0: 8 GT/s x 128/130 = 0.985 GB/s; 4.0: 1.969 GB/s) times the
 * lanes; a link trained down at rest counts at its highest generation; no
 * link known: the fixed guess, and the plan says which. */
TEST(test_plan_link_from_pcie)
{
    hw_profile *p = calloc(1, sizeof *p);
    REQUIRE(p);
    p->n_gpus = 1;
    p->gpus[0].type = HW_GPU_DISCRETE;
    p->gpus[0].vram_total = 8ull << 30;
    p->gpus[0].pcie = (hw_pcie){.gen = 3, .width = 8, .max_gen = 3, .max_width = 16};
    plan_machine m;
    plan_machine_from_profile(p, 1ull << 30, 2, &m);
    CHECK(m.n_gpus == 1 && close_to(m.gpus[0].link_bw, 0.75 * 0.985e9 * 8) && m.gpus[0].link_pcie_gen == 3 &&
              m.gpus[0].link_pcie_width == 8,
          " %.4g B/s, gen%d x%d", m.gpus[0].link_bw, m.gpus[0].link_pcie_gen, m.gpus[0].link_pcie_width);
    plan_model none = {0};
    plan_request q = {.n_ctx = 256};
    plan_result r;
    plan_compute(&none, &m, &q, &r);
    bool said = false;
    for (int i = 0; i < r.n_warnings; i++)
        said = said || strstr(r.warnings[i], "5.9 GB/s estimated from its PCIe gen3 x8 link");
    CHECK(said, " the plan does not say the link was estimated");
    plan_result_free(&r);
    p->gpus[0].pcie = (hw_pcie){.gen = 1, .width = 16, .max_gen = 4, .max_width = 16}; /* at rest */
    plan_machine_from_profile(p, 1ull << 30, 2, &m);
    CHECK(close_to(m.gpus[0].link_bw, 0.75 * 1.969e9 * 16), " %.4g", m.gpus[0].link_bw);
    p->gpus[0].h2d_bw = 20e9; /* measured: used as it is */
    plan_machine_from_profile(p, 1ull << 30, 2, &m);
    CHECK(m.gpus[0].link_bw == 20e9 && m.gpus[0].link_pcie_gen == 0);
    p->gpus[0].h2d_bw = 0;
    p->gpus[0].pcie = (hw_pcie){0};
    plan_machine_from_profile(p, 1ull << 30, 2, &m);
    CHECK(m.gpus[0].link_bw == 0 && m.gpus[0].link_pcie_gen == 0);
    free(p);
}
