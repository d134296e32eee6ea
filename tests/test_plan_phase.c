/* The planner's GPU sites (issue 12): layers resident in VRAM, streamed
 * over the link, or on the CPU, chosen per phase (a decoded token, a
 * prompt batch) from the stated rates. Each expected site vector and
 * speed below is worked out by hand from the rates in the comments, with
 * the cost model of docs/cost-model.md:
 *   resident layer     max(bytes read / VRAM bw, B x 2 x weights / GPU FLOP/s)
 *   streamed layer     the same compute, plus its transfer (RAM -> staging at
 *                      RAM bw, then the link) less the previous streamed
 *                      layer's compute
 *   CPU layer          max(weights x B / CPU rate, bytes / RAM bw)
 * The model: 8 layers of 400e6 weights in 200e6 bytes, an output group of
 * 100e6 weights in 50e6 bytes, a KV cache of 4096 bytes per token and
 * layer, context 512; the GPU's FLOP/s unmeasured: 20 per byte/s of VRAM
 * bandwidth. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hw/hw.h"
#include "plan/inputs.h"
#include "plan/plan.h"
#include "plan/plan_text.h"
#include "test.h"

#define N_LAYERS 8
#define N_GROUPS (N_LAYERS + 1)
#define LAYER_BYTES 200e6
#define LAYER_ELEMS 400e6
#define OUT_BYTES 50e6
#define OUT_ELEMS 100e6
#define KV_LAYER_TOK 4096u /* bytes per token and layer */
#define CTX 512u

static void phase_model(plan_model *m)
{
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "phase");
    m->n_groups = N_GROUPS;
    m->groups = calloc(N_GROUPS, sizeof *m->groups);
    for (uint32_t g = 0; g < N_GROUPS; g++) {
        plan_group *gr = &m->groups[g];
        if (g < N_LAYERS) snprintf(gr->name, sizeof gr->name, "blk.%u", g);
        else snprintf(gr->name, sizeof gr->name, "output");
        gr->bytes = gr->weight_bytes = (uint64_t)(g < N_LAYERS ? LAYER_BYTES : OUT_BYTES);
        gr->elems = (uint64_t)(g < N_LAYERS ? LAYER_ELEMS : OUT_ELEMS);
    }
    m->context_length = CTX;
    m->kv_bytes_per_token = m->kv_bytes_per_token_q8 = m->kv_bytes_per_token_q4 = N_LAYERS * KV_LAYER_TOK;
    m->buffer_fixed = 16u << 20;
    m->batch = 512;
    m->process_reserve = 16u << 20;
    m->embd_row_bytes = 8192;
}

/* Everything fits in RAM; no engine calibration (the raw rates apply). */
static plan_machine phase_machine(double ram_bw, double cpu_rate, uint64_t vram, double vram_bw, double link_bw)
{
    plan_machine hw = {.ram_budget = 64ull << 30, .ram_bw = ram_bw, .kernel_ram_bw = ram_bw, .disk_bw = 2e9,
                       .cpu_rate = cpu_rate, .measured = true, .n_gpus = 1};
    hw.gpus[0] = (plan_gpu){.name = "what-if GPU", .vram = vram, .vram_bw = vram_bw, .link_bw = link_bw};
    return hw;
}

static bool near(double a, double b) { return fabs(a - b) <= 1e-9 * fabs(b); }

/* "c" cpu, "v" GPU 0 resident, "l" over the link, one letter a group. */
static void sites_text(const uint8_t *sites, char out[N_GROUPS + 1])
{
    for (uint32_t g = 0; g < N_GROUPS; g++)
        out[g] = sites[g] == PLAN_SITE_GPU ? 'v' : sites[g] == PLAN_SITE_LINK ? 'l' : 'c';
    out[N_GROUPS] = '\0';
}

static bool sites_are(const plan *p, const char *decode, const char *prefill)
{
    char d[N_GROUPS + 1], f[N_GROUPS + 1];
    sites_text(p->site, d);
    sites_text(p->prefill_site, f);
    CHECK(!strcmp(d, decode) && !strcmp(f, prefill), " '%s': decode %s, prefill %s; expected %s, %s", p->label, d, f,
          decode, prefill);
    return !strcmp(d, decode) && !strcmp(f, prefill);
}

/* (a) 64 GiB of VRAM at 1 TB/s: a resident layer reads 200e6 bytes in
 * 0.2 ms; streamed it would cross the 25 GB/s link (8 ms), on the CPU it
 * would take 400e6 / 20e9 = 20 ms. Every group on the GPU, both phases. */
TEST(test_plan_phase_all_gpu_when_vram_is_big)
{
    plan_model m;
    phase_model(&m);
    plan_machine hw = phase_machine(50e9, 20e9, 64ull << 30, 1e12, 25e9);
    plan_request q = {.n_ctx = CTX, .n_batch = 512};
    plan_result r;
    plan_compute(&m, &hw, &q, &r);
    const plan *p = &r.chosen;
    REQUIRE(p->feasible, " %s", p->reason);
    CHECK(!strcmp(p->label, "GPU/CPU layer split, KV on GPU") && p->runnable && !p->phase_sites, " '%s'", p->label);
    sites_are(p, "vvvvvvvvv", "vvvvvvvvv");
    plan_result_free(&r);
    free(m.groups);
}

/* (b) A fast link and a slow CPU: 50 GB/s link, 100 GB/s RAM, 4e9
 * weights/s. A streamed layer costs its copy, 200e6 / 100e9 + 200e6 / 50e9
 * = 6 ms (its 0.2 ms compute hides nothing much), a CPU layer 100 ms, a
 * resident one 0.2 ms: as many resident as leave room for the ring (two
 * slots of a layer) and the streamed layers' KV caches (2 MiB each), the
 * rest streamed. 1.5 GiB of VRAM less the 256 MiB reserve leaves
 * 1342177280 bytes: k resident layers need k x (200e6 + 2 MiB) +
 * (8 - k) x 2 MiB + 400e6, which fits for k = 4 (1216.8e6), not 5
 * (1416.8e6). The output (50e6 bytes) streams too: it fits the ring. */
TEST(test_plan_phase_mixed_resident_and_streamed)
{
    plan_model m;
    phase_model(&m);
    plan_machine hw = phase_machine(100e9, 4e9, 1536ull << 20, 1e12, 50e9);
    plan_request q = {.n_ctx = CTX};
    plan_result r;
    plan_compute(&m, &hw, &q, &r);
    const plan *p = &r.chosen;
    REQUIRE(p->feasible, " %s", p->reason);
    CHECK(!strcmp(p->label, "GPU resident + streamed over the link + CPU") && p->runnable && !p->phase_sites,
          " '%s'", p->label);
    sites_are(p, "vvvvlllll", "vvvvlllll");
    /* a token: 4 resident layers reading their weights and 128 positions of KV at 1 TB/s; then the streamed
     * groups, whose copies (6 ms a layer, 50e6 / 100e9 + 50e6 / 50e9 = 1.5 ms the output) each exceed the
     * previous group's compute: the copies' sum plus the last group's compute (50e6 / 1e12); the KV caches
     * are all in VRAM, so the CPU reads nothing */
    double resident = 4 * (LAYER_BYTES + KV_LAYER_TOK * 128.0) / 1e12;
    double copies = 4 * (LAYER_BYTES / 100e9 + LAYER_BYTES / 50e9) + OUT_BYTES / 100e9 + OUT_BYTES / 50e9;
    double t = resident + copies + OUT_BYTES / 1e12;
    CHECK(near(p->decode_tps, 1 / t) && !strcmp(p->bottleneck, "GPU link"), " %.6g tok/s, expected %.6g (%s)",
          p->decode_tps, 1 / t, p->bottleneck);
    /* sending every group over the link is slower, the CPU slower still */
    for (int i = 0; i < r.n_alts; i++)
        if (r.alts[i].feasible && strcmp(r.alts[i].label, p->label))
            CHECK(r.alts[i].decode_tps < p->decode_tps, " '%s' %.4g tok/s", r.alts[i].label, r.alts[i].decode_tps);
    plan_result_free(&r);
    free(m.groups);
}

/* A prompt batch of B tokens (at least 98: a layer's compute on the GPU
 * then hides the next one's 13 ms copy) on machine (c), every group
 * streamed to the GPU while decoding on the CPU: the first copy, each
 * group's compute on the GPU, and the CPU's attention for the 8 layers,
 * whose KV caches stay in RAM: the B tokens of a prompt's first batch read
 * B (B + 1) / 2 positions of 4096 bytes a layer at 400 GB/s. */
static double prompt_step_seconds(double B)
{
    double flops = 20 * 300e9, x0 = LAYER_BYTES / 16e9 + LAYER_BYTES / 400e9;
    return x0 + N_LAYERS * (B * 2 * LAYER_ELEMS / flops) + B * 2 * OUT_ELEMS / flops +
           N_LAYERS * KV_LAYER_TOK * (B * (B + 1) / 2) / 400e9;
}

/* (c) A fast CPU (1e12 weights/s, 400 GB/s RAM), a moderate link (16
 * GB/s), a GPU of 300 GB/s with room for two layers in flight (718435456
 * bytes: 450e6 next to its 256 MiB reserve), prompt batches of 512:
 *   decoding, a layer takes max(400e6 / 1e12, 200e6 / 400e9) = 0.5 ms on
 *   the CPU, 200e6 / 300e9 = 0.67 ms resident on the GPU, 200e6 / 16e9 +
 *   200e6 / 400e9 = 13 ms streamed: every group on the CPU;
 *   for 512 tokens, a layer takes 512 x 0.4 ms = 204.8 ms on the CPU but
 *   512 x 2 x 400e6 / 6e12 = 68.3 ms on the GPU (its 13 ms copy hidden
 *   behind the previous layer's compute): every group streamed (the output:
 *   51.2 ms on the CPU, 17.1 ms on the GPU). */
TEST(test_plan_phase_cpu_decode_gpu_prefill)
{
    plan_model m;
    phase_model(&m);
    plan_machine hw = phase_machine(400e9, 1e12, 718435456ull, 300e9, 16e9);
    plan_request q = {.n_ctx = CTX, .n_batch = 512, .rank_by_decode = true};
    plan_result r;
    plan_compute(&m, &hw, &q, &r);
    const plan *p = &r.chosen;
    REQUIRE(p->feasible, " %s", p->reason);
    CHECK(p->runnable && p->phase_sites && p->gpu[0].weights == 2 * (uint64_t)LAYER_BYTES && p->gpu[0].kv == 0,
          " '%s' GPU weights %llu kv %llu", p->label, (unsigned long long)p->gpu[0].weights,
          (unsigned long long)p->gpu[0].kv);
    sites_are(p, "ccccccccc", "lllllllll");
    /* a batch: the first copy (13 ms), then each group's compute (the later copies hidden), and the CPU's
     * share: its attention for the 8 layers (prompt_step_seconds) */
    double step = prompt_step_seconds(512);
    CHECK(near(p->prefill_tps, 512 / step), " prefill %.6g tok/s, expected %.6g", p->prefill_tps, 512 / step);
    /* decoding is the CPU plan's: the CPU reads 8 x 200e6 + 50e6 bytes and the KV cache at 400 GB/s */
    double t = (8 * LAYER_BYTES + OUT_BYTES + N_LAYERS * KV_LAYER_TOK * 128.0) / 400e9;
    CHECK(near(p->decode_tps, 1 / t), " decode %.6g tok/s, expected %.6g", p->decode_tps, 1 / t);
    char s[1024];
    plan_prefill_summary(&m, p, s, sizeof s);
    CHECK(strstr(s, "blk 0-7, output streamed over the link to GPU 0") != NULL, " '%s'", s);
    /* saved and read back by `run --plan`: both site vectors */
    json_t *doc = plan_result_to_json(&m, &hw, &r);
    plan back;
    strata_error e = {0};
    REQUIRE(plan_from_json(doc, &m, &back, &e) == STRATA_OK, " %s", e.message);
    CHECK(back.phase_sites && !memcmp(back.site, p->site, N_GROUPS) &&
          !memcmp(back.prefill_site, p->prefill_site, N_GROUPS));
    plan_free(&back);
    /* a group on the CPU when decoding may be streamed for a batch, not resident: refused, naming the field */
    json_t *g0 = json_array_get(json_object_get(json_object_get(doc, "plan"), "groups"), 0);
    json_object_set_new(g0, "prefill_site", json_string("gpu"));
    CHECK(plan_from_json(doc, &m, &back, &e) == STRATA_E_FORMAT && strstr(e.message, "groups[0].prefill_site"),
          " %s", e.message);
    json_object_set_new(g0, "prefill_site", json_string("fpga"));
    CHECK(plan_from_json(doc, &m, &back, &e) == STRATA_E_FORMAT && strstr(e.message, "groups[0].site"), " %s",
          e.message);
    json_object_set_new(g0, "prefill_site", json_string("link"));
    /* not a boolean: refused, not read as false */
    json_object_set_new(json_object_get(doc, "plan"), "weights_over_link", json_string("yes"));
    CHECK(plan_from_json(doc, &m, &back, &e) == STRATA_E_FORMAT && strstr(e.message, "weights_over_link"), " %s",
          e.message);
    json_decref(doc);
    plan_result_free(&r);
    /* batches of 16 tokens run where tokens decode: no phase sites */
    q.n_batch = 16;
    plan_compute(&m, &hw, &q, &r);
    REQUIRE(r.chosen.feasible);
    sites_are(&r.chosen, "ccccccccc", "ccccccccc");
    plan_result_free(&r);
    free(m.groups);
}

static bool warns(const plan_result *r, const char *needle)
{
    for (int i = 0; i < r->n_warnings; i++)
        if (strstr(r->warnings[i], needle)) return true;
    return false;
}

/* (d) A saved profile that states GPU 0's prompt-batch rate
 * (matmul_q4_k_flop_per_s, as `detect --measure` writes it): the
 * hypothetical 24 GB GPU (300 GB/s, everything resident, its KV too) at
 * 50e12 FLOP/s. A 512-token batch: a layer's 512 x 2 x 400e6 FLOP take
 * 8.192 ms (its 200e6 bytes 0.67 ms), the output's 512 x 2 x 100e6
 * 2.048 ms: 512 / 67.584 ms = 7575.76 tok/s, and no estimate warning.
 * Without the field, the estimate (20 x 300e9 = 6e12 FLOP/s: 68.27 ms a
 * layer, 17.07 ms the output) and its warning. */
TEST(test_plan_phase_measured_prompt_rate)
{
    hw_profile *hp = calloc(1, sizeof *hp);
    REQUIRE(hp);
    strata_error e = {0};
    REQUIRE(hw_profile_load("tests/data/hw/profiles/hypothetical-24g.json", hp, &e) == STRATA_OK, " %s",
            e.message);
    hp->gpus[0].vram_bw = 300e9;
    hp->gpus[0].mm_q4_k_flops = 50e12;
    char *text = hw_profile_to_json(hp); /* through the saved form, as `plan --hw` reads it */
    REQUIRE(text && hw_profile_from_json(text, "saved.json", hp, &e) == STRATA_OK, " %s", e.message);
    free(text);
    plan_machine hw;
    plan_machine_from_profile(hp, 0, 0, &hw);
    CHECK(hw.n_gpus == 1 && hw.gpus[0].mm_flops == 50e12, " %.6g FLOP/s", hw.gpus[0].mm_flops);
    plan_model m;
    phase_model(&m);
    plan_request q = {.n_ctx = CTX, .n_batch = 512};
    plan_result r;
    plan_compute(&m, &hw, &q, &r);
    REQUIRE(r.chosen.feasible, " %s", r.chosen.reason);
    sites_are(&r.chosen, "vvvvvvvvv", "vvvvvvvvv");
    double step = 8 * 8.192e-3 + 2.048e-3;
    CHECK(near(r.chosen.prefill_tps, 512 / step), " prefill %.6g tok/s, expected %.6g", r.chosen.prefill_tps,
          512 / step);
    CHECK(!warns(&r, "prompt-batch compute"), " warned of an estimate");
    plan_result_free(&r);
    /* the same profile without the rate: estimated, and said so */
    hp->gpus[0].mm_q4_k_flops = 0;
    plan_machine_from_profile(hp, 0, 0, &hw);
    plan_compute(&m, &hw, &q, &r);
    REQUIRE(r.chosen.feasible, " %s", r.chosen.reason);
    step = 8 * (512 * 2 * 400e6 / 6e12) + 512 * 2 * 100e6 / 6e12;
    CHECK(near(r.chosen.prefill_tps, 512 / step), " prefill %.6g tok/s, expected %.6g", r.chosen.prefill_tps,
          512 / step);
    CHECK(warns(&r, "prompt-batch compute unmeasured: assuming 6 TFLOP/s"), " no estimate warning");
    plan_result_free(&r);
    free(m.groups);
    free(hp);
}

/* (e) Machine (c) with 1 GB of RAM: most layers stream from disk (2 GB/s:
 * 100 ms a layer). For a batch of 512 a layer still computes faster
 * streamed to the GPU (68.3 ms, or its 100 ms disk read) than on the CPU
 * (204.8 ms), so the CPU plan streams its prompt batches over the link;
 * but a group streamed from disk is read from disk whatever computes it:
 * no plan predicts a batch faster than the disk delivers its groups. */
TEST(test_plan_phase_prefill_reads_disk_groups)
{
    plan_model m;
    phase_model(&m);
    plan_machine hw = phase_machine(400e9, 1e12, 718435456ull, 300e9, 16e9);
    hw.ram_budget = 1000000000ull;
    plan_request q = {.n_ctx = CTX, .n_batch = 512};
    plan_result r;
    plan_compute(&m, &hw, &q, &r);
    int streamed_from_disk = 0;
    for (int i = 0; i < r.n_alts; i++) {
        const plan *a = &r.alts[i];
        if (!a->feasible) continue;
        double disk = 0;
        for (uint32_t g = 0; g < N_GROUPS; g++)
            if (a->tier[g] == TIER_DISK) {
                disk += (double)m.groups[g].bytes;
                streamed_from_disk += a->prefill_site[g] == PLAN_SITE_LINK;
            }
        double bound = disk > 0 ? 512 / (disk / hw.disk_bw) : INFINITY;
        CHECK(a->prefill_tps <= bound * (1 + 1e-9), " '%s': prefill %.6g tok/s, above the disk's %.6g", a->label,
              a->prefill_tps, bound);
    }
    CHECK(streamed_from_disk > 0, " no plan streams a group on disk to the GPU for a batch");
    plan_result_free(&r);
    free(m.groups);
}

/* (f) A run's request (rank_by_decode): its batch sets the prompt-batch
 * sites and prediction, the decode speed chooses the plan. A GPU of
 * 1.2e9 bytes (less its 256 MiB reserve: four layers and their KV caches)
 * reading at 1 TB/s but computing prompt batches at 1e12 FLOP/s, a CPU
 * reading at 50 GB/s at 1e12 weights/s. Decoding, a layer takes 0.2 ms
 * resident, 4 ms on the CPU: the split with four layers resident is
 * fastest. A 512-token batch: 512 x 2 x 400e6 / 1e12 = 409.6 ms a layer
 * on the GPU, 512 x 400e6 / 1e12 = 204.8 ms on the CPU: ranked by
 * prefill, the CPU plan wins; ranked by decode (a run's), the split. */
TEST(test_plan_phase_run_request_ranks_by_decode)
{
    plan_model m;
    phase_model(&m);
    plan_machine hw = phase_machine(50e9, 1e12, 1200000000ull, 1e12, 16e9);
    hw.gpus[0].mm_flops = 1e12;
    plan_request q = {.n_ctx = CTX, .n_batch = 512};
    plan_result r;
    plan_compute(&m, &hw, &q, &r);
    REQUIRE(r.chosen.feasible, " %s", r.chosen.reason);
    sites_are(&r.chosen, "ccccccccc", "ccccccccc");
    double cpu_prefill = r.chosen.prefill_tps;
    plan_result_free(&r);
    q.rank_by_decode = true;
    plan_compute(&m, &hw, &q, &r);
    REQUIRE(r.chosen.feasible, " %s", r.chosen.reason);
    sites_are(&r.chosen, "vvvvccccc", "vvvvccccc");
    CHECK(r.chosen.prefill_tps < cpu_prefill, " the split's prefill %.6g tok/s, the CPU plan's %.6g",
          r.chosen.prefill_tps, cpu_prefill);
    plan_result_free(&r);
    free(m.groups);
}

/* (g) The CPU's attention for the layers a prompt batch streams to the GPU
 * (they decode on the CPU, their KV caches in RAM) is priced: on machine
 * (c), ranked as a run ranks (by decode), the step of B tokens grows with
 * B (B + 1) / 2 by that attention, besides the GPU's compute linear in B
 * (prompt_step_seconds). Unpriced, the step would be linear in B. */
TEST(test_plan_phase_prompt_only_layers_attend_on_the_cpu)
{
    plan_model m;
    phase_model(&m);
    plan_machine hw = phase_machine(400e9, 1e12, 718435456ull, 300e9, 16e9);
    const double batches[] = {128, 256, 512};
    for (int i = 0; i < 3; i++) {
        plan_request q = {.n_ctx = CTX, .n_batch = (uint32_t)batches[i], .rank_by_decode = true};
        plan_result r;
        plan_compute(&m, &hw, &q, &r);
        REQUIRE(r.chosen.feasible, " %s", r.chosen.reason);
        sites_are(&r.chosen, "ccccccccc", "lllllllll");
        double B = batches[i], step = prompt_step_seconds(B);
        CHECK(near(r.chosen.prefill_tps, B / step), " B %.0f: prefill %.6g tok/s, expected %.6g", B,
              r.chosen.prefill_tps, B / step);
        double attn = N_LAYERS * KV_LAYER_TOK * (B * (B + 1) / 2) / 400e9;
        CHECK(near(r.chosen.tb_ram, attn), " B %.0f: the CPU's step %.6g s, its attention %.6g s", B, r.chosen.tb_ram,
              attn);
        plan_result_free(&r);
    }
    free(m.groups);
}
