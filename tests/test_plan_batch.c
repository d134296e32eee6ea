/* The planner for N sequences decoding together (src/plan/plan_batch.h):
 * the aggregate prediction against the formula computed here, monotone in
 * N, and the recommended N the largest whose KV caches fit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../tools/synth/synth.h"
#include "plan/inputs.h"
#include "plan/plan_batch.h"
#include "test.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)

/* n_layers groups of per_layer bytes and an output group of as much, 7/8 of
 * each tensor data, 2 weights a byte; kv bytes per token (f16; q8_0 17/32). */
static void layered_model(plan_model *m, uint32_t n_layers, uint64_t per_layer, uint64_t kv)
{
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "layered");
    m->n_groups = n_layers + 1;
    m->groups = calloc(m->n_groups, sizeof *m->groups);
    for (uint32_t g = 0; g < m->n_groups; g++) {
        plan_group *gr = &m->groups[g];
        snprintf(gr->name, sizeof gr->name, g < n_layers ? "blk.%u" : "output", g);
        gr->bytes = per_layer;
        gr->weight_bytes = per_layer / 8 * 7;
        gr->elems = 2 * gr->weight_bytes;
    }
    m->context_length = 4096;
    m->kv_bytes_per_token = kv;
    m->kv_bytes_per_token_q8 = kv * 17 / 32;
    m->kv_bytes_per_token_q4 = kv * 9 / 32;
    m->buffer_fixed = 512 * KiB;
    m->batch = 256;
    m->store_fixed = 1 * MiB;
    m->process_reserve = 2 * MiB;
    m->embd_row_bytes = 4096;
}

static plan_machine machine(uint64_t budget)
{
    return (plan_machine){.ram_budget = budget, .ram_bw = 20e9, .disk_bw = 2e9, .cpu_rate = 4e10, .measured = true};
}

static bool near(double a, double b) { return fabs(a - b) <= 1e-9 * fabs(b); }

/* The prediction is the formula: N / max(N x compute, weights + N KV reads
 * from RAM, disk), on the placement that holds N contexts' KV. */
static void check_formula(const plan_model *m, const plan_machine *hw, uint32_t n, uint32_t ctx)
{
    plan_request q = {.n_ctx = ctx, .cpu_only = true};
    plan_batch b;
    plan_batch_compute(m, hw, &q, n, &b);
    const plan *p = &b.r.chosen;
    if (!b.feasible || b.n_seq != n || b.n_ctx != ctx) {
        test_fail(__FILE__, __LINE__, "feasible", " N %u: %s", n, p->reason);
        plan_batch_free(&b);
        return;
    }
    CHECK(p->ram.kv == (uint64_t)n * ctx * m->kv_bytes_per_token, " N %u: KV %llu", n,
          (unsigned long long)p->ram.kv);
    uint64_t elems = 0, weights = 0, disk = m->embd_row_bytes;
    for (uint32_t g = 0; g < m->n_groups; g++) {
        elems += m->groups[g].elems;
        weights += m->groups[g].weight_bytes;
        if (p->tier[g] == TIER_DISK) disk += m->groups[g].bytes;
    }
    double pos = ctx < PLAN_DECODE_POS ? ctx : PLAN_DECODE_POS;
    double compute = n * (double)elems / hw->cpu_rate;
    double ram = (double)weights / hw->ram_bw + n * (double)m->kv_bytes_per_token * pos / hw->ram_bw;
    double t_disk = disk > m->embd_row_bytes ? (double)disk / hw->disk_bw : 0;
    double step = fmax(compute, fmax(ram, t_disk));
    CHECK(near(b.step_s, step) && near(b.decode_tps, n / step) && near(b.seq_tps, 1 / step),
          " N %u: step %.9g s predicted, %.9g by the formula", n, b.step_s, step);
    plan_batch_free(&b);
}

TEST(test_plan_batch_formula)
{
    plan_model m;
    layered_model(&m, 16, 8 * MiB, 8 * KiB);
    plan_machine streamed = machine(80 * MiB), resident = machine(1024 * MiB);
    for (uint32_t n = 1; n <= 16; n *= 2) {
        check_formula(&m, &streamed, n, 256);
        check_formula(&m, &resident, n, 256);
    }
    free(m.groups);
}

/* Streaming every layer: the disk read is shared, so 16 sequences reach
 * nearly 16 times one, until compute binds. */
TEST(test_plan_batch_streaming_scales)
{
    plan_model m;
    layered_model(&m, 32, 32 * MiB, 32 * KiB);
    plan_machine hw = machine(150 * MiB);
    hw.cpu_rate = 1e11;
    plan_request q = {.n_ctx = 128, .kv = PLAN_KV_Q8_0, .cpu_only = true};
    plan_batch one, sixteen;
    plan_batch_compute(&m, &hw, &q, 1, &one);
    plan_batch_compute(&m, &hw, &q, 16, &sixteen);
    REQUIRE(one.feasible && sixteen.feasible, " %s / %s", one.r.chosen.reason, sixteen.r.chosen.reason);
    CHECK(!strcmp(one.bottleneck, "disk") && !strcmp(sixteen.bottleneck, "disk"), " %s, %s", one.bottleneck,
          sixteen.bottleneck);
    CHECK(sixteen.decode_tps >= 10 * one.decode_tps, " %.3f vs %.3f tok/s", sixteen.decode_tps, one.decode_tps);
    CHECK(sixteen.r.chosen.ram.kv == 16ull * 128 * m.kv_bytes_per_token_q8);
    plan_batch_free(&one);
    plan_batch_free(&sixteen);
    free(m.groups);
}

/* More sequences never predict less aggregate throughput, where the
 * placement does not change (everything streamed, everything resident). */
TEST(test_plan_batch_monotone)
{
    plan_model m;
    layered_model(&m, 8, 16 * MiB, 64 * KiB);
    uint64_t budgets[] = {64 * MiB, 4096 * MiB};
    for (size_t k = 0; k < 2; k++) {
        plan_machine hw = machine(budgets[k]);
        plan_request q = {.n_ctx = 64, .cpu_only = true};
        double last = 0;
        for (uint32_t n = 1; n <= 64; n++) {
            plan_batch b;
            plan_batch_compute(&m, &hw, &q, n, &b);
            if (!b.feasible) {
                plan_batch_free(&b);
                break;
            }
            CHECK(b.decode_tps >= last * (1 - 1e-12), " budget %llu MiB: N %u %.4f < %.4f tok/s",
                  (unsigned long long)(budgets[k] / MiB), n, b.decode_tps, last);
            CHECK(b.seq_tps <= b.decode_tps / n * (1 + 1e-12));
            last = b.decode_tps;
            plan_batch_free(&b);
        }
        CHECK(last > 0);
    }
    free(m.groups);
}

/* The recommended N: its KV caches fit next to the weights, N + 1 would
 * not; budgets from streaming everything to holding it all. */
TEST(test_plan_batch_recommend_fits)
{
    plan_model m;
    layered_model(&m, 8, 16 * MiB, 256 * KiB);
    plan_request q = {.n_ctx = 256, .cpu_only = true};
    int checked = 0;
    for (uint64_t budget = 40 * MiB; budget <= 1200 * MiB; budget += 37 * MiB) {
        plan_machine hw = machine(budget);
        plan_batch b;
        uint32_t n = plan_batch_recommend(&m, &hw, &q, 256, &b);
        if (!n) {
            CHECK(!b.feasible && b.r.chosen.reason[0], " budget %llu", (unsigned long long)budget);
            plan_batch_free(&b);
            continue;
        }
        const plan *p = &b.r.chosen;
        uint64_t used = p->ram.weights + p->ram.kv + p->ram.buffers + p->ram.overhead;
        CHECK(b.feasible && b.n_seq == n && p->ram.kv == (uint64_t)n * 256 * m.kv_bytes_per_token &&
                  used <= budget,
              " budget %llu: N %u, uses %llu", (unsigned long long)budget, n, (unsigned long long)used);
        plan_batch c;
        plan_batch_compute(&m, &hw, &q, n + 1, &c);
        CHECK(n == 256 || !c.feasible, " budget %llu: N %u recommended but %u fits", (unsigned long long)budget, n,
              n + 1);
        plan_batch_free(&c);
        plan_batch_free(&b);
        checked++;
    }
    CHECK(checked > 20, " %d budgets", checked);
    free(m.groups);
}

/* On a synthesized model (the planner's inputs from the engine and the
 * store): the prediction is the formula with every layer resident and with
 * half of the weights streamed; nothing fits in 1 byte. */
TEST(test_plan_batch_synth_model)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/b.gguf", test_tmpdir());
    synth_options o = {.shape = {256, 768, 8, 4, 2, 512, 512}, .mix = MIX_Q4_K_M, .type = GGML_TYPE_Q4_K,
                       .seed = 5, .threads = 2, .output = path};
    strata_error e;
    REQUIRE(synth_write(&o, &e) == STRATA_OK, " %s", e.message);
    gguf_file *f = NULL;
    model_spec *spec = NULL;
    plan_model pm;
    REQUIRE(gguf_open(path, &f, &e) == STRATA_OK && model_spec_from_gguf(f, path, &spec, &e) == STRATA_OK &&
                plan_model_from_engine(f, spec, 1, 0, 0, &pm, &e) == STRATA_OK,
            " %s", e.message);
    uint64_t weights = 0;
    for (uint32_t g = 0; g < pm.n_groups; g++) weights += pm.groups[g].bytes;
    const uint32_t ctx = 64;
    uint64_t fixed = pm.process_reserve + pm.store_fixed + pm.buffer_fixed + pm.buffer_per_ctx * ctx +
                     pm.buffer_per_batch * (pm.batch < ctx ? pm.batch : ctx) + 16ull * ctx * pm.kv_bytes_per_token;
    plan_machine all = machine(fixed + 2 * weights), half = machine(fixed + weights / 2);
    for (uint32_t n = 1; n <= 16; n *= 4) {
        check_formula(&pm, &all, n, ctx);
        check_formula(&pm, &half, n, ctx);
    }
    plan_batch b;
    plan_request q = {.n_ctx = ctx, .cpu_only = true};
    plan_batch_compute(&pm, &half, &q, 16, &b);
    CHECK(b.feasible && plan_can_run(&b.r.chosen) == 1, " %s", b.r.chosen.reason);
    plan_batch_free(&b);
    plan_machine none = machine(1);
    CHECK(plan_batch_recommend(&pm, &none, &q, 16, &b) == 0 && !b.feasible && strstr(b.r.chosen.reason, "needs"),
          " %s", b.r.chosen.reason);
    plan_batch_free(&b);
    plan_model_free(&pm);
    model_spec_free(spec);
    gguf_close(f);
}
