/* The planner as a pure function: invariants checked over hundreds of
 * random models and machines (seeded, so a failure names a reproducible
 * case), and concrete plans whose numbers are computed here by hand. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../tools/synth/synth.h"
#include "engine/engine.h"
#include "hw/hw.h"
#include "plan/inputs.h"
#include "store/store.h"
#include "plan/plan.h"
#include "plan/plan_experts.h"
#include "plan/plan_text.h"
#include "plan/routing.h"
#include "test.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)
#define N_CASES 300

/* ---- random inputs ---- */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rnd(rng *r) /* splitmix64 */
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double unif(rng *r) { return (double)(rnd(r) >> 11) * 0x1.0p-53; }
static uint64_t between(rng *r, uint64_t lo, uint64_t hi) { return lo + rnd(r) % (hi - lo + 1); }
static double log_unif(rng *r, double lo, double hi) { return lo * pow(hi / lo, unif(r)); }
static bool coin(rng *r, double p) { return unif(r) < p; }

static uint64_t model_bytes(const plan_model *m)
{
    uint64_t t = 0;
    for (uint32_t g = 0; g < m->n_groups; g++) t += m->groups[g].bytes;
    return t;
}

static void set_group(plan_group *g, uint32_t i, uint32_t n_layers, uint64_t bytes, double bytes_per_weight)
{
    if (i < n_layers) snprintf(g->name, sizeof g->name, "blk.%u", i);
    else snprintf(g->name, sizeof g->name, "output");
    g->bytes = bytes;
    g->weight_bytes = bytes > 4096 ? bytes - bytes % 4096 / 2 : bytes; /* alignment padding */
    g->elems = (uint64_t)fmax(1, (double)g->weight_bytes / bytes_per_weight);
}

/* 1..80 layers of 4 KiB..2 GiB each (varying up to +-25 %), an output group,
 * KV and buffer coefficients over their realistic ranges and beyond. */
static void random_model(rng *r, plan_model *m)
{
    memset(m, 0, sizeof *m);
    uint32_t layers = (uint32_t)between(r, 1, 80);
    m->n_groups = layers + 1;
    m->groups = calloc(m->n_groups, sizeof *m->groups);
    double layer = log_unif(r, 4 * KiB, 2 * GiB), var = 0.5 * unif(r), bpw = log_unif(r, 0.25, 4);
    for (uint32_t g = 0; g < layers; g++)
        set_group(&m->groups[g], g, layers, (uint64_t)fmax(1, layer * (1 + var * (unif(r) - 0.5))), bpw);
    set_group(&m->groups[layers], layers, layers, (uint64_t)log_unif(r, 1 * KiB, 4 * GiB), bpw);
    snprintf(m->name, sizeof m->name, "random %u layers", layers);
    static const uint32_t ctxs[] = {0, 128, 300, 2048, 4096, 8192, 32768, 131072};
    m->context_length = ctxs[between(r, 0, sizeof ctxs / sizeof ctxs[0] - 1)];
    m->kv_bytes_per_token = (uint64_t)log_unif(r, 64, 2 * MiB);
    m->kv_bytes_per_token_q8 = m->kv_bytes_per_token * 17 / 32;
    m->kv_bytes_per_token_q4 = m->kv_bytes_per_token * 9 / 32;
    m->buffer_fixed = between(r, 0, 64 * MiB);
    m->buffer_per_ctx = between(r, 0, 4 * KiB);
    m->buffer_per_batch = between(r, 0, 256 * KiB);
    m->batch = coin(r, 0.5) ? 256 : (uint32_t)between(r, 1, 1024);
    m->store_fixed = between(r, 0, 8 * MiB);
    m->process_reserve = 8 * MiB + between(r, 0, 8 * MiB);
    m->embd_row_bytes = between(r, 64, 64 * KiB);
    /* a mixture of experts a third of the time: units from 1/50 of a layer to
     * twice one, 2-64 per layer, a quarter or fewer used */
    if (coin(r, 0.3)) {
        m->n_expert_sets = layers;
        m->experts = calloc(layers, sizeof *m->experts);
        double unit = fmax(4096, layer * log_unif(r, 0.02, 2));
        uint32_t n = (uint32_t)between(r, 2, 64), used = (uint32_t)between(r, 1, n / 4 ? n / 4 : 1);
        for (uint32_t g = 0; g < layers; g++) {
            plan_expert_set *e = &m->experts[g];
            if (coin(r, 0.1)) continue; /* a dense layer among MoE layers */
            e->n_expert = n;
            e->n_used = used;
            e->unit_bytes = (uint64_t)(unit * (1 + 0.2 * unif(r)));
            e->unit_weight_bytes = e->unit_bytes - e->unit_bytes % 4096 / 2;
            e->unit_elems = (uint64_t)fmax(1, (double)e->unit_weight_bytes / bpw);
        }
    }
}

static void free_model(plan_model *m)
{
    free(m->groups);
    for (uint32_t g = 0; m->experts && g < m->n_expert_sets; g++) free(m->experts[g].chances);
    free(m->experts);
    m->groups = NULL;
    m->experts = NULL;
}

static const plan_expert_set *eset(const plan_model *m, uint32_t g)
{
    return g < m->n_expert_sets && m->experts[g].n_expert ? &m->experts[g] : NULL;
}

/* Budgets from tiny to huge (half the time near the model's size, where the
 * choices are interesting), 0..2 GPUs, bandwidths over wide ranges. */
static void random_machine(rng *r, const plan_model *m, plan_machine *hw)
{
    memset(hw, 0, sizeof *hw);
    double total = (double)model_bytes(m);
    hw->ram_budget = coin(r, 0.5) ? (uint64_t)log_unif(r, 1 * MiB, 4096.0 * GiB)
                                  : (uint64_t)(total * log_unif(r, 0.02, 3) + (double)between(r, 0, 256 * MiB));
    hw->ram_bw = log_unif(r, 1e9, 400e9);
    hw->disk_bw = log_unif(r, 50e6, 15e9);
    hw->cpu_rate = log_unif(r, 1e8, 1e12);
    hw->disk_free = coin(r, 0.5) ? 0 : (uint64_t)log_unif(r, 1 * GiB, 8192.0 * GiB);
    hw->n_gpus = (int)between(r, 0, 2);
    for (int d = 0; d < hw->n_gpus; d++) {
        plan_gpu *g = &hw->gpus[d];
        snprintf(g->name, sizeof g->name, "random GPU %d", d);
        g->vram = coin(r, 0.5) ? (uint64_t)log_unif(r, 64 * MiB, 192.0 * GiB) : (uint64_t)(total * log_unif(r, 0.05, 2));
        g->vram_bw = coin(r, 0.25) ? 0 : log_unif(r, 50e9, 4e12);
        g->link_bw = coin(r, 0.2) ? 0 : log_unif(r, 1e9, 128e9);
    }
    hw->swap_on = coin(r, 0.3);
    hw->no_odirect = coin(r, 0.1);
    hw->cgroup_limited = coin(r, 0.2);
    hw->measured = coin(r, 0.8);
}

/* explicit_ctx: a context in 1..the model's (or 8192), else 0 (auto) 30 % of the time. */
static void random_request(rng *r, const plan_model *m, bool explicit_ctx, plan_request *q)
{
    memset(q, 0, sizeof *q);
    uint32_t max_ctx = m->context_length ? m->context_length : 8192;
    q->n_ctx = !explicit_ctx && coin(r, 0.3) ? 0 : (uint32_t)between(r, 1, max_ctx);
    q->kv = (plan_kv)between(r, 0, 2);
    q->n_batch = coin(r, 0.5) ? 0 : (uint32_t)between(r, 1, 4096);
    q->prefetch_depth = (int)between(r, 0, 6);
    q->cpu_only = coin(r, 0.5);
}

/* ---- independent recomputation ---- */

static uint64_t kv_tok(const plan_model *m, plan_kv kv)
{
    return kv == PLAN_KV_F16 ? m->kv_bytes_per_token : kv == PLAN_KV_Q8_0 ? m->kv_bytes_per_token_q8
                                                                          : m->kv_bytes_per_token_q4;
}

static uint64_t engine_buffers(const plan_model *m, uint32_t n_ctx)
{
    return m->buffer_fixed + m->buffer_per_ctx * n_ctx + m->buffer_per_batch * (m->batch < n_ctx ? m->batch : n_ctx);
}

static int depth_of(const plan_request *q) { return q->prefetch_depth > 0 ? q->prefetch_depth : 2; }

/* The least RAM any placement of groups [first, n) needs under the store's
 * ring rule (resident groups plus min(streamed, depth + 1) slots the size of
 * the largest streamed group): all resident, or for each slot size c every
 * group above c resident and the rest streamed (streaming fewer than depth + 1
 * groups never beats all resident). */
static uint64_t min_placement(const plan_model *m, uint32_t first, int depth)
{
    uint64_t best = 0;
    for (uint32_t g = first; g < m->n_groups; g++) best += m->groups[g].bytes;
    for (uint32_t c = first; c < m->n_groups; c++) {
        uint64_t cap = m->groups[c].bytes, forced = 0, streamed = 0;
        for (uint32_t g = first; g < m->n_groups; g++) {
            if (m->groups[g].bytes > cap) forced += m->groups[g].bytes;
            else streamed++;
        }
        uint64_t need = forced + (streamed < (uint64_t)depth + 1 ? streamed : (uint64_t)depth + 1) * cap;
        if (need < best) best = need;
    }
    return best;
}

/* Recomputes each tier's bytes from the plan's tiers and the model's groups
 * (not from plan.ram / plan.gpu alone) and checks every budget. Returns
 * false after reporting the first problem. */
/* Whether a plan computes anything on a GPU (groups there, or weights over the link). */
static bool uses_gpu(const plan *p)
{
    bool gpu = p->over_link;
    for (uint32_t g = 0; p->tier && g < p->n_groups; g++)
        gpu = gpu || p->tier[g] >= 0 || p->site[g] != PLAN_SITE_CPU || p->prefill_site[g] != PLAN_SITE_CPU;
    return gpu;
}

static bool check_budgets(const plan_model *m, const plan_machine *hw, const plan_request *q, const plan *p,
                          const char *what, int n)
{
    if (!p->feasible) return true;
    int fails = test_failures();
    uint64_t ram_res = 0, disk_max = 0, n_disk = 0, gpu_w[PLAN_MAX_GPUS] = {0}, gpu_kv = 0;
    uint64_t units = 0, unit_max = 0, split_bytes = 0;
    for (uint32_t g = 0; g < m->n_groups; g++) {
        int t = p->tier[g];
        uint64_t b = m->groups[g].bytes;
        const plan_expert_set *e = eset(m, g);
        if (e && t >= 0 && g >= p->n_cpu_moe) b += e->n_expert * e->unit_bytes; /* its experts go with it */
        else if (e) { /* the CPU computes them: in the expert cache, or resident (--n-cpu-moe split) */
            units += e->n_expert;
            split_bytes += e->n_expert * e->unit_bytes;
            if (e->unit_bytes > unit_max) unit_max = e->unit_bytes;
        }
        if (t == TIER_RAM) ram_res += b;
        else if (t == TIER_DISK) {
            n_disk++;
            if (b > disk_max) disk_max = b;
        } else if (t >= 0 && t < hw->n_gpus) gpu_w[t] += b;
        else CHECK(false, " case %d %s: group %u has tier %d", n, what, g, t);
    }
    uint64_t least = units < 2 ? units : 2;
    CHECK(p->expert_units == units && (!units || p->expert_slot_bytes == unit_max) && p->expert_slots >= least &&
              p->expert_slots <= units && (!p->moe_split || p->expert_slots == units),
          " case %d %s: expert cache of %u of %u units of %llu (%llu units of up to %llu on the CPU)", n, what,
          p->expert_slots, p->expert_units, (unsigned long long)p->expert_slot_bytes, (unsigned long long)units,
          (unsigned long long)unit_max);
    uint64_t slots = n_disk < (uint64_t)depth_of(q) + 1 ? n_disk : (uint64_t)depth_of(q) + 1;
    CHECK(p->n_slots == slots && (n_disk == 0 || p->slot_bytes >= disk_max),
          " case %d %s: %u slots of %llu for %llu streamed groups (largest %llu)", n, what, p->n_slots,
          (unsigned long long)p->slot_bytes, (unsigned long long)n_disk, (unsigned long long)disk_max);
    for (int d = 0; d < PLAN_MAX_GPUS; d++) gpu_kv += p->gpu[d].kv;
    uint64_t kv_total = kv_tok(m, p->kv) * p->n_ctx;
    CHECK(gpu_kv <= kv_total, " case %d %s: %llu bytes of KV on GPUs, %llu in all", n, what,
          (unsigned long long)gpu_kv, (unsigned long long)kv_total);
    uint64_t ram_w = ram_res + slots * p->slot_bytes + (p->moe_split ? split_bytes : p->expert_slots * unit_max);
    uint64_t ram_kv = kv_total - gpu_kv;
    uint64_t buf = engine_buffers(m, p->n_ctx), over = m->process_reserve + m->store_fixed;
    uint64_t total = ram_w + ram_kv + buf + over;
    CHECK(total <= hw->ram_budget, " case %d %s: RAM %llu > budget %llu", n, what, (unsigned long long)total,
          (unsigned long long)hw->ram_budget);
    /* what the plan reports is what it uses */
    CHECK(p->ram.weights == ram_w && p->ram.kv == ram_kv && p->ram.buffers == buf && p->ram.overhead == over,
          " case %d %s: RAM reported %llu/%llu/%llu/%llu, recomputed %llu/%llu/%llu/%llu", n, what,
          (unsigned long long)p->ram.weights, (unsigned long long)p->ram.kv, (unsigned long long)p->ram.buffers,
          (unsigned long long)p->ram.overhead, (unsigned long long)ram_w, (unsigned long long)ram_kv,
          (unsigned long long)buf, (unsigned long long)over);
    /* weights streamed over the link stay in RAM / on disk; GPU 0 holds two groups in flight */
    uint64_t largest = 0;
    for (uint32_t g = 0; g < m->n_groups; g++) {
        const plan_expert_set *e = eset(m, g);
        uint64_t b = m->groups[g].bytes + (e ? (e->n_used < e->n_expert ? e->n_used : e->n_expert) * e->unit_bytes : 0);
        if (b > largest) largest = b;
    }
    if (p->over_link) gpu_w[0] = (m->n_groups < 2 ? m->n_groups : 2) * largest;
    /* groups streamed over the link in either phase (not all of them): a ring of two slots of the largest */
    uint64_t largest_link = 0;
    for (uint32_t g = 0; g < m->n_groups && !p->over_link; g++) {
        bool link = p->site[g] == PLAN_SITE_LINK || p->prefill_site[g] == PLAN_SITE_LINK;
        CHECK(!link || p->tier[g] < 0, " case %d %s: group %u streamed over the link from GPU %d", n, what, g,
              p->tier[g]);
        if (link && m->groups[g].bytes > largest_link) largest_link = m->groups[g].bytes;
    }
    gpu_w[0] += 2 * largest_link;
    for (int d = 0; d < PLAN_MAX_GPUS; d++) {
        const plan_tier_bytes *t = &p->gpu[d];
        if (d >= hw->n_gpus) {
            CHECK(!t->weights && !t->kv && !t->buffers, " case %d %s: GPU %d does not exist", n, what, d);
            continue;
        }
        CHECK(t->weights == gpu_w[d], " case %d %s: GPU %d weights %llu, its groups %llu", n, what, d,
              (unsigned long long)t->weights, (unsigned long long)gpu_w[d]);
        uint64_t used = gpu_w[d] + t->kv + t->buffers;
        CHECK(used <= hw->gpus[d].vram, " case %d %s: GPU %d needs %llu > VRAM %llu", n, what, d,
              (unsigned long long)used, (unsigned long long)hw->gpus[d].vram);
    }
    return test_failures() == fails;
}

static double score(const plan *p, const plan_request *q) { return q->n_batch >= 32 ? p->prefill_tps : p->decode_tps; }

/* ---- invariants ---- */

TEST(test_plan_never_exceeds_budgets)
{
    rng r = {1};
    int feasible = 0, streamed = 0, on_gpu = 0;
    for (int n = 0; n < N_CASES; n++) {
        plan_model m;
        plan_machine hw;
        plan_request q;
        random_model(&r, &m);
        random_machine(&r, &m, &hw);
        random_request(&r, &m, false, &q);
        plan_result res;
        plan_compute(&m, &hw, &q, &res);
        bool ok = check_budgets(&m, &hw, &q, &res.chosen, "chosen", n);
        for (int i = 0; i < res.n_alts && ok; i++) ok = check_budgets(&m, &hw, &q, &res.alts[i], res.alts[i].label, n);
        if (res.chosen.feasible) {
            feasible++;
            streamed += plan_can_run(&res.chosen) == 1;
            for (uint32_t g = 0; g < m.n_groups; g++)
                if (res.chosen.tier[g] >= 0) {
                    on_gpu++;
                    break;
                }
        }
        plan_result_free(&res);
        free_model(&m);
        if (!ok) break;
    }
    /* the random cases cover every kind of plan */
    CHECK(feasible > N_CASES / 4 && feasible < N_CASES && streamed > 10 && on_gpu > 10,
          " %d feasible, %d streaming, %d on a GPU", feasible, streamed, on_gpu);
}

/* Plans with *knob set to each of values[0..8) (ascending) in turn: a
 * larger value never makes the plan infeasible or predict slower. Returns
 * how many steps made it faster. */
static int check_never_slower(const plan_model *m, plan_machine *hw, const plan_request *q, int n, uint64_t *knob,
                              const uint64_t values[8], const char *what)
{
    bool prev_ok = false;
    double prev = 0;
    int faster = 0;
    for (int i = 0; i < 8; i++) {
        *knob = values[i];
        plan_result res;
        plan_compute(m, hw, q, &res);
        bool ok = res.chosen.feasible;
        double s = ok ? score(&res.chosen, q) : 0;
        CHECK(ok || !prev_ok, " case %d: feasible with %llu %s, not with %llu", n,
              (unsigned long long)values[i - 1], what, (unsigned long long)values[i]);
        CHECK(!prev_ok || s >= prev * (1 - 1e-12), " case %d: %.6g tok/s with %llu %s, %.6g with %llu", n, prev,
              (unsigned long long)values[i - 1], what, s, (unsigned long long)values[i]);
        faster += prev_ok && s > prev * (1 + 1e-9);
        prev_ok = ok;
        prev = s;
        plan_result_free(&res);
    }
    return faster;
}

/* Same model, machine and request (explicit context): raising the RAM
 * budget never makes the plan infeasible or predict slower. */
TEST(test_plan_more_memory_never_slower)
{
    rng r = {2};
    int changed = 0;
    for (int n = 0; n < N_CASES && !test_failures(); n++) {
        plan_model m;
        plan_machine hw;
        plan_request q;
        random_model(&r, &m);
        random_machine(&r, &m, &hw);
        random_request(&r, &m, true, &q);
        double total = (double)model_bytes(&m);
        uint64_t budgets[8];
        for (int i = 0; i < 8; i++) budgets[i] = (uint64_t)(total * log_unif(&r, 0.01, 2)) + between(&r, 0, 512 * MiB);
        for (int i = 1; i < 8; i++) /* insertion sort */
            for (int j = i; j > 0 && budgets[j] < budgets[j - 1]; j--) {
                uint64_t t = budgets[j];
                budgets[j] = budgets[j - 1];
                budgets[j - 1] = t;
            }
        changed += check_never_slower(&m, &hw, &q, n, &hw.ram_budget, budgets, "bytes of RAM");
        free_model(&m);
    }
    CHECK(changed > 20, " more memory made a difference only %d times", changed);
}

/* Raising a GPU's memory never predicts slower either. */
TEST(test_plan_more_vram_never_slower)
{
    rng r = {3};
    int changed = 0;
    for (int n = 0; n < N_CASES && !test_failures(); n++) {
        plan_model m;
        plan_machine hw;
        plan_request q;
        random_model(&r, &m);
        random_machine(&r, &m, &hw);
        random_request(&r, &m, true, &q);
        q.cpu_only = false;
        if (hw.n_gpus == 0) hw.n_gpus = 1, hw.gpus[0] = (plan_gpu){.name = "gpu", .vram_bw = log_unif(&r, 50e9, 4e12), .link_bw = 16e9};
        double total = (double)model_bytes(&m);
        uint64_t vram[8];
        for (int i = 0; i < 8; i++) vram[i] = (uint64_t)(total * 0.3 * i) + (uint64_t)i * 64 * MiB;
        changed += check_never_slower(&m, &hw, &q, n, &hw.gpus[0].vram, vram, "bytes of VRAM");
        free_model(&m);
    }
    CHECK(changed > 20, " more VRAM made a difference only %d times", changed);
}

/* Every group (and the KV cache, the buffers, the embedding row) grown by
 * its own factor >= 1: the plan is never faster and never newly feasible. */
TEST(test_plan_bigger_model_never_faster)
{
    rng r = {4};
    int slower = 0;
    for (int n = 0; n < N_CASES && !test_failures(); n++) {
        plan_model m, big;
        plan_machine hw;
        plan_request q;
        random_model(&r, &m);
        random_machine(&r, &m, &hw);
        random_request(&r, &m, true, &q);
        big = m;
        big.groups = malloc(m.n_groups * sizeof *big.groups);
        for (uint32_t g = 0; g < m.n_groups; g++) {
            double f = coin(&r, 0.3) ? 1 : 1 + unif(&r) * 2;
            big.groups[g] = m.groups[g];
            big.groups[g].bytes = (uint64_t)((double)m.groups[g].bytes * f);
            big.groups[g].weight_bytes = (uint64_t)((double)m.groups[g].weight_bytes * f);
            big.groups[g].elems = (uint64_t)((double)m.groups[g].elems * f);
        }
        if (m.n_expert_sets) {
            big.experts = malloc(m.n_expert_sets * sizeof *big.experts);
            for (uint32_t g = 0; g < m.n_expert_sets; g++) {
                double f = coin(&r, 0.3) ? 1 : 1 + unif(&r) * 2;
                big.experts[g] = m.experts[g];
                big.experts[g].unit_bytes = (uint64_t)((double)m.experts[g].unit_bytes * f);
                big.experts[g].unit_weight_bytes = (uint64_t)((double)m.experts[g].unit_weight_bytes * f);
                big.experts[g].unit_elems = (uint64_t)((double)m.experts[g].unit_elems * f);
            }
        }
        double f = 1 + unif(&r);
        big.kv_bytes_per_token = (uint64_t)((double)m.kv_bytes_per_token * f);
        big.kv_bytes_per_token_q8 = (uint64_t)((double)m.kv_bytes_per_token_q8 * f);
        big.kv_bytes_per_token_q4 = (uint64_t)((double)m.kv_bytes_per_token_q4 * f);
        big.buffer_fixed += between(&r, 0, 16 * MiB);
        big.buffer_per_batch += between(&r, 0, 16 * KiB);
        big.embd_row_bytes *= 2;
        plan_result a, b;
        plan_compute(&m, &hw, &q, &a);
        plan_compute(&big, &hw, &q, &b);
        CHECK(a.chosen.feasible || !b.chosen.feasible, " case %d: only the bigger model fits", n);
        if (a.chosen.feasible && b.chosen.feasible) {
            CHECK(score(&b.chosen, &q) <= score(&a.chosen, &q) * (1 + 1e-12),
                  " case %d: bigger model %.6g tok/s (%s), smaller %.6g (%s)", n, score(&b.chosen, &q),
                  b.chosen.label, score(&a.chosen, &q), a.chosen.label);
            slower += score(&b.chosen, &q) < score(&a.chosen, &q) * (1 - 1e-9);
        }
        plan_result_free(&a);
        plan_result_free(&b);
        free_model(&m);
        free(big.groups);
        if (m.n_expert_sets) free(big.experts);
    }
    CHECK(slower > N_CASES / 10, " the bigger model was slower only %d times", slower);
}

/* Without a GPU, a plan exists exactly when the fixed part plus the least
 * any placement needs fits the budget; otherwise the chosen plan is
 * infeasible with a reason and `--can-run` says 2. */
TEST(test_plan_impossible_never_planned)
{
    rng r = {5};
    int impossible = 0, possible = 0;
    for (int n = 0; n < N_CASES && !test_failures(); n++) {
        plan_model m;
        plan_machine hw;
        plan_request q;
        random_model(&r, &m);
        random_machine(&r, &m, &hw);
        random_request(&r, &m, true, &q);
        q.kv = PLAN_KV_F16;
        if (coin(&r, 0.5)) hw.n_gpus = 0;
        else q.cpu_only = true;
        uint64_t units = 0, unit = 0; /* the least expert cache: 2 units of the largest (1 when only 1) */
        for (uint32_t g = 0; g < m.n_groups; g++)
            if (eset(&m, g)) {
                units += m.experts[g].n_expert;
                if (m.experts[g].unit_bytes > unit) unit = m.experts[g].unit_bytes;
            }
        uint64_t need = m.process_reserve + m.store_fixed + engine_buffers(&m, q.n_ctx) +
                        kv_tok(&m, q.kv) * q.n_ctx + min_placement(&m, 0, depth_of(&q)) +
                        (units < 2 ? units : 2) * unit;
        plan_result res;
        plan_compute(&m, &hw, &q, &res);
        if (need > hw.ram_budget && !uses_gpu(&res.chosen)) {
            impossible++;
            CHECK(!res.chosen.feasible && res.chosen.reason[0] && plan_can_run(&res.chosen) == 2,
                  " case %d: needs %llu, budget %llu, yet planned (%s)", n, (unsigned long long)need,
                  (unsigned long long)hw.ram_budget, res.chosen.label);
            for (int i = 0; i < res.n_alts; i++) /* only GPU plans can do better */
                CHECK(!res.alts[i].feasible || res.alts[i].kv != q.kv || res.alts[i].n_ctx != q.n_ctx ||
                          uses_gpu(&res.alts[i]),
                      " case %d: alternative '%s' planned", n, res.alts[i].label);
        } else {
            possible++;
            CHECK(res.chosen.feasible && plan_can_run(&res.chosen) < 2, " case %d: needs %llu of %llu, yet: %s", n,
                  (unsigned long long)need, (unsigned long long)hw.ram_budget, res.chosen.reason);
        }
        plan_result_free(&res);
        free_model(&m);
    }
    CHECK(impossible > 20 && possible > 20, " %d impossible, %d possible cases", impossible, possible);
}

static bool same_plan(const plan *a, const plan *b, uint32_t n_groups)
{
    if (a->feasible != b->feasible || strcmp(a->label, b->label) || strcmp(a->reason, b->reason) ||
        strcmp(a->rejected, b->rejected) || a->n_ctx != b->n_ctx || a->kv != b->kv)
        return false;
    if (!a->feasible) return true;
    return !memcmp(a->tier, b->tier, n_groups) && !memcmp(&a->ram, &b->ram, sizeof a->ram) &&
           !memcmp(a->gpu, b->gpu, sizeof a->gpu) && a->slot_bytes == b->slot_bytes && a->n_slots == b->n_slots &&
           a->disk_bytes_per_token == b->disk_bytes_per_token && a->ram_bytes_per_token == b->ram_bytes_per_token &&
           a->decode_tps == b->decode_tps && a->prefill_tps == b->prefill_tps && !strcmp(a->bottleneck, b->bottleneck);
}

TEST(test_plan_deterministic)
{
    rng r = {6};
    for (int n = 0; n < N_CASES && !test_failures(); n++) {
        plan_model m;
        plan_machine hw;
        plan_request q;
        random_model(&r, &m);
        random_machine(&r, &m, &hw);
        random_request(&r, &m, false, &q);
        plan_result a, b;
        plan_compute(&m, &hw, &q, &a);
        plan_compute(&m, &hw, &q, &b);
        CHECK(same_plan(&a.chosen, &b.chosen, m.n_groups), " case %d: the chosen plan differs", n);
        CHECK(a.n_alts == b.n_alts && a.n_warnings == b.n_warnings, " case %d", n);
        for (int i = 0; i < a.n_alts && i < b.n_alts; i++)
            CHECK(same_plan(&a.alts[i], &b.alts[i], m.n_groups), " case %d: alternative %d differs", n, i);
        for (int i = 0; i < a.n_warnings && i < b.n_warnings; i++)
            CHECK(!strcmp(a.warnings[i], b.warnings[i]), " case %d: warning %d differs", n, i);
        plan_result_free(&a);
        plan_result_free(&b);
        free_model(&m);
    }
}

/* A CPU-only request (what `run` asks) gets a plan the engine can execute:
 * f16 KV cache, the requested context, and either nothing on a GPU or a
 * GPU plan the engine runs (GPU 0 only; a layer split with the KV cache on
 * the GPU, a layer's experts with it, or the weights over the link). */
TEST(test_plan_cpu_only_runnable)
{
    rng r = {7};
    int feasible = 0, gpu_plans = 0;
    for (int n = 0; n < N_CASES && !test_failures(); n++) {
        plan_model m;
        plan_machine hw;
        plan_request q;
        random_model(&r, &m);
        random_machine(&r, &m, &hw);
        random_request(&r, &m, false, &q);
        q.cpu_only = true;
        q.kv = PLAN_KV_F16;
        plan_result res;
        plan_compute(&m, &hw, &q, &res);
        const plan *p = &res.chosen;
        if (p->feasible) {
            feasible++;
            bool other_gpu = false;
            for (uint32_t g = 0; g < m.n_groups; g++) other_gpu |= p->tier[g] > 0;
            for (int d = 1; d < PLAN_MAX_GPUS; d++) other_gpu |= p->gpu[d].weights || p->gpu[d].kv;
            CHECK(p->runnable && p->kv == PLAN_KV_F16 && !other_gpu, " case %d: '%s' kv %s", n, p->label,
                  plan_kv_name(p->kv));
            CHECK(uses_gpu(p) || (p->link_bytes_per_token == 0 && p->vram_bytes_per_token == 0 && !p->gpu[0].weights),
                  " case %d: '%s' reads VRAM", n, p->label);
            /* layers a decoded token runs on the GPU keep their KV caches there (a prompt batch may stream
             * more to the GPU, their caches in RAM, not a model with experts; the output group has none) */
            bool layers_on_cpu = true;
            for (uint32_t g = 0; g + 1 < m.n_groups; g++) layers_on_cpu &= p->site[g] == PLAN_SITE_CPU;
            CHECK(!uses_gpu(p) || (!p->moe_split && (p->over_link || p->gpu[0].kv > 0 || p->ram.kv == 0 ||
                                                     (layers_on_cpu && !m.n_expert_sets))),
                  " case %d: '%s' is not a GPU plan the engine runs", n, p->label);
            gpu_plans += uses_gpu(p);
            CHECK(!q.n_ctx || p->n_ctx == q.n_ctx, " case %d: context %u, asked %u", n, p->n_ctx, q.n_ctx);
            CHECK(!strncmp(p->label, "all resident", 12) || !strncmp(p->label, "partial residency", 17) ||
                      !strcmp(p->label, "dense resident + expert cache") ||
                      !strcmp(p->label, "GPU/CPU layer split, KV on GPU") ||
                      !strcmp(p->label, "GPU resident + streamed over the link + CPU") ||
                      !strcmp(p->label, "weights streamed over the GPU link"),
                  " case %d: '%s'", n, p->label);
        } else {
            CHECK(p->reason[0] && plan_can_run(p) == 2, " case %d", n);
        }
        plan_result_free(&res);
        free_model(&m);
    }
    CHECK(feasible > 20, " only %d feasible", feasible);
    printf("    %d feasible, %d of them on the GPU\n", feasible, gpu_plans);
}

/* Plans survive `plan --json` -> `run --plan`: the same tiers and context. */
TEST(test_plan_json_round_trip)
{
    rng r = {8};
    for (int n = 0; n < 100 && !test_failures(); n++) {
        plan_model m;
        plan_machine hw;
        plan_request q;
        random_model(&r, &m);
        random_machine(&r, &m, &hw);
        random_request(&r, &m, false, &q);
        q.cpu_only = true;
        q.kv = PLAN_KV_F16;
        plan_result res;
        plan_compute(&m, &hw, &q, &res);
        json_t *doc = plan_result_to_json(&m, &hw, &res);
        CHECK(doc != NULL, " case %d: no JSON", n);
        plan back;
        strata_error e = {0};
        strata_status st = doc ? plan_from_json(doc, &m, &back, &e) : STRATA_E_FORMAT;
        if (res.chosen.feasible) {
            CHECK(st == STRATA_OK, " case %d: %s", n, e.message);
            if (st == STRATA_OK) {
                CHECK(back.n_ctx == res.chosen.n_ctx && !memcmp(back.tier, res.chosen.tier, m.n_groups), " case %d", n);
                plan_free(&back);
            }
        } else {
            CHECK(st != STRATA_OK && strstr(e.message, "plan"), " case %d: an infeasible plan was read back", n);
        }
        json_decref(doc);
        plan_result_free(&res);
        free_model(&m);
    }
}

/* ---- concrete plans, numbers by hand ---- */

/* n_layers layers of layer_bytes (weights 7/8 of it, 2 weights per byte),
 * an output group, f16 KV of 512 bytes per token (q8 272, q4 144), 2 MiB
 * process reserve, 1 MiB store row buffer, 512 KiB engine buffers. */
static void simple_model(plan_model *m, uint32_t n_layers, uint64_t per_layer, uint64_t output_bytes)
{
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "simple");
    m->n_groups = n_layers + 1;
    m->groups = calloc(m->n_groups, sizeof *m->groups);
    for (uint32_t g = 0; g <= n_layers; g++) {
        plan_group *gr = &m->groups[g];
        if (g < n_layers) snprintf(gr->name, sizeof gr->name, "blk.%u", g);
        else snprintf(gr->name, sizeof gr->name, "output");
        gr->bytes = g < n_layers ? per_layer : output_bytes;
        gr->weight_bytes = gr->bytes / 8 * 7;
        gr->elems = 2 * gr->weight_bytes;
    }
    m->context_length = 1024;
    m->kv_bytes_per_token = 512;
    m->kv_bytes_per_token_q8 = 272;
    m->kv_bytes_per_token_q4 = 144;
    m->buffer_fixed = 512 * KiB;
    m->batch = 256;
    m->store_fixed = 1 * MiB;
    m->process_reserve = 2 * MiB;
    m->embd_row_bytes = 4096;
}

static plan_machine cpu_machine(uint64_t budget)
{
    return (plan_machine){.ram_budget = budget, .ram_bw = 100e9, .disk_bw = 2e9, .cpu_rate = 1e11, .measured = true};
}

static bool near(double a, double b) { return fabs(a - b) <= 1e-9 * fabs(b); }

TEST(test_plan_fits_entirely)
{
    plan_model m;
    simple_model(&m, 8, 4 * MiB, 2 * MiB);
    plan_machine hw = cpu_machine(1 * GiB);
    plan_request q = {.cpu_only = true};
    plan_result r;
    plan_compute(&m, &hw, &q, &r);
    const plan *p = &r.chosen;
    REQUIRE(p->feasible, " %s", p->reason);
    CHECK(!strcmp(p->label, "all resident") && plan_can_run(p) == 0, " '%s'", p->label);
    CHECK(p->n_ctx == 1024 && p->kv == PLAN_KV_F16 && p->runnable);
    CHECK(p->n_slots == 0 && p->ram.weights == 34 * MiB && p->ram.kv == 512 * KiB);
    CHECK(p->ram.buffers == 512 * KiB && p->ram.overhead == 3 * MiB);
    /* only the embedding rows come from disk, and they cost no time */
    CHECK(p->disk_bytes_per_token == 4096 && p->t_disk == 0, " disk %llu", (unsigned long long)p->disk_bytes_per_token);
    /* RAM: every weight plus the KV cache up to position 128 */
    uint64_t w = 34 * MiB / 8 * 7, ram = w + 512 * PLAN_DECODE_POS;
    CHECK(p->ram_bytes_per_token == ram, " %llu", (unsigned long long)p->ram_bytes_per_token);
    double t_ram = (double)ram / 100e9, t_cpu = 2.0 * (double)w / 1e11;
    CHECK(near(p->t_ram, t_ram) && near(p->t_compute, t_cpu));
    CHECK(near(p->decode_tps, 1 / fmax(t_ram, t_cpu)) && !strcmp(p->bottleneck, "compute"), " %.6g tok/s, %s",
          p->decode_tps, p->bottleneck);
    /* prefill: 256 tokens per pass, compute scales, the weights are read once */
    CHECK(near(p->prefill_tps, 256 / fmax(256 * t_cpu, t_ram)));
    char s[256];
    plan_placement_summary(&m, p, s, sizeof s);
    CHECK(!strcmp(s, "blk 0-7 resident; output resident; token_embd rows gathered"), " '%s'", s);
    char flags[256], note[256];
    plan_export_llamacpp(&m, p, flags, sizeof flags, note, sizeof note);
    CHECK(!strcmp(flags, "-c 1024 -ctk f16 -ctv f16 -ngl 0 --no-mmap --mlock"), " '%s'", flags);
    CHECK(r.n_warnings == 0, " %s", r.warnings[0]);
    plan_result_free(&r);
    free_model(&m);
}

/* The engine's calibrated rate replaces the kernels' for weights the CPU
 * computes on, plus its per-layer cost for every group the CPU runs (8
 * layers and the output group here); the KV cache still reads at RAM
 * speed. */
TEST(test_plan_engine_rate_and_layer_cost)
{
    plan_model m;
    simple_model(&m, 8, 4 * MiB, 2 * MiB);
    plan_machine hw = cpu_machine(1 * GiB);
    hw.cpu_rate = 1e13; /* compute out of the way */
    hw.engine_bw = 20e9;
    hw.engine_layer_s = 50e-6;
    plan_request q = {.cpu_only = true};
    plan_result r;
    plan_compute(&m, &hw, &q, &r);
    const plan *p = &r.chosen;
    REQUIRE(p->feasible, " %s", p->reason);
    uint64_t w = 34 * MiB / 8 * 7, kv = 512 * PLAN_DECODE_POS;
    double t_ram = (double)w / 20e9 + 9 * 50e-6 + (double)kv / 100e9;
    CHECK(near(p->t_ram, t_ram), " %.9g vs %.9g", p->t_ram, t_ram);
    CHECK(near(p->decode_tps, 1 / t_ram) && !strcmp(p->bottleneck, "RAM bandwidth"), " %s", p->bottleneck);
    plan_result_free(&r);
    free_model(&m);
}

/* 16 layers of 4 MiB and a 4 MiB output (68 MiB) under a 34 MiB budget:
 * fixed part 2 + 1 MiB overhead, 512 KiB buffers, 512 KiB KV = 4 MiB, so
 * 30 MiB for weights: a ring of 3 slots x 4 MiB leaves 18 MiB, enough for
 * blk 0-3 resident (16 MiB). blk 4-15 and the output (52 MiB) are streamed
 * each token: disk-bound at 2 GB/s / (52 MiB + one 4 KiB embedding row). */
TEST(test_plan_twice_the_budget_streams)
{
    plan_model m;
    simple_model(&m, 16, 4 * MiB, 4 * MiB);
    plan_machine hw = cpu_machine(34 * MiB);
    plan_request q = {.n_ctx = 1024, .cpu_only = true};
    plan_result r;
    plan_compute(&m, &hw, &q, &r);
    const plan *p = &r.chosen;
    REQUIRE(p->feasible, " %s", p->reason);
    CHECK(!strcmp(p->label, "partial residency (streaming)") && plan_can_run(p) == 1, " '%s'", p->label);
    for (uint32_t g = 0; g < m.n_groups; g++)
        CHECK(p->tier[g] == (g < 4 ? TIER_RAM : TIER_DISK), " group %u tier %d", g, p->tier[g]);
    CHECK(p->n_slots == 3 && p->slot_bytes == 4 * MiB && p->ram.weights == 28 * MiB);
    uint64_t disk = 52 * MiB + 4096;
    CHECK(p->disk_bytes_per_token == disk, " %llu", (unsigned long long)p->disk_bytes_per_token);
    CHECK(!strcmp(p->bottleneck, "disk") && near(p->decode_tps, 2e9 / (double)disk), " %.6g tok/s, %s",
          p->decode_tps, p->bottleneck);
    /* prefill: 256 tokens per pass over the streamed layers; compute (2 x 59.5 M
     * weights at 1e11/s per token) binds first */
    double t_cpu = 2.0 * (double)(68 * MiB / 8 * 7) / 1e11;
    CHECK(near(p->prefill_tps, 256 / fmax(256 * t_cpu, (double)disk / 2e9)) && 256 * t_cpu > (double)disk / 2e9,
          " %.6g", p->prefill_tps);
    char s[256];
    plan_placement_summary(&m, p, s, sizeof s);
    CHECK(!strcmp(s, "blk 0-3 resident, blk 4-15 streamed; output streamed; token_embd rows gathered"), " '%s'", s);
    char flags[256], note[256];
    plan_export_llamacpp(&m, p, flags, sizeof flags, note, sizeof note);
    CHECK(!strcmp(flags, "-c 1024 -ctk f16 -ctv f16 -ngl 0") && strstr(note, "cannot stream 12 layers"), " '%s' (%s)",
          flags, note);
    /* the alternatives: a smaller context and quantized KV caches, each with a verdict */
    CHECK(r.n_alts == 4, " %d alternatives", r.n_alts);
    for (int i = 0; i < r.n_alts; i++) CHECK(r.alts[i].rejected[0], " alternative %d has no verdict", i);
    plan_result_free(&r);

    /* one byte less than the least it needs (4 MiB fixed + 3 slots) cannot run */
    hw.ram_budget = 4 * MiB + 12 * MiB - 1;
    plan_compute(&m, &hw, &q, &r);
    CHECK(!r.chosen.feasible && plan_can_run(&r.chosen) == 2 && strstr(r.chosen.reason, "16.0 MiB"), " %s",
          r.chosen.reason);
    plan_result_free(&r);
    hw.ram_budget = 16 * MiB;
    plan_compute(&m, &hw, &q, &r);
    CHECK(r.chosen.feasible && plan_can_run(&r.chosen) == 1 && r.chosen.ram.weights == 12 * MiB, " %s",
          r.chosen.reason);
    plan_result_free(&r);
    free_model(&m);
}

/* Without -c the context is the model's, else the largest multiple of 32
 * tokens that fits, with a warning: 4 layers and an output of 1 MiB, 4 KiB
 * of KV per token, 3.5 MiB fixed (2 MiB process, 1 MiB row buffer, 512 KiB
 * buffers) and at least 3 ring slots of 1 MiB: 17 MiB leave 10.5 MiB of KV,
 * 2688 tokens (everything streamed: the ring fills the rest). */
TEST(test_plan_auto_context)
{
    plan_model m;
    simple_model(&m, 4, 1 * MiB, 1 * MiB);
    m.context_length = 8192;
    m.kv_bytes_per_token = 4 * KiB;
    plan_machine hw = cpu_machine(17 * MiB);
    plan_request q = {.cpu_only = true};
    plan_result r;
    plan_compute(&m, &hw, &q, &r);
    CHECK(r.chosen.feasible && r.chosen.n_ctx == 2688 && !strcmp(r.chosen.label, "partial residency (streaming)") &&
              r.chosen.ram.kv == 2688 * 4 * KiB,
          " ctx %u, %s", r.chosen.n_ctx, r.chosen.label);
    CHECK(r.n_warnings == 1 && strstr(r.warnings[0], "context reduced from 8192 to 2688"), " %s", r.warnings[0]);
    plan_result_free(&r);
    /* a byte less: 2687.99 tokens, so 2656 (the next multiple of 32 down) */
    hw.ram_budget = 17 * MiB - 1;
    plan_compute(&m, &hw, &q, &r);
    CHECK(r.chosen.feasible && r.chosen.n_ctx == 2656, " ctx %u", r.chosen.n_ctx);
    plan_result_free(&r);
    /* issue 15: not halved once and given up: 32 tokens (128 KiB of KV) fit in 6.625 MiB */
    hw.ram_budget = 6 * MiB + 640 * KiB;
    plan_compute(&m, &hw, &q, &r);
    CHECK(r.chosen.feasible && r.chosen.n_ctx == 32 && strstr(r.warnings[0], "from 8192 to 32 tokens"), " %u: %s",
          r.chosen.n_ctx, r.chosen.reason);
    plan_result_free(&r);
    /* below that nothing fits: the message names the context it tried */
    hw.ram_budget = 6 * MiB + 640 * KiB - 1;
    plan_compute(&m, &hw, &q, &r);
    CHECK(!r.chosen.feasible && strstr(r.chosen.reason, "needs at least 6.62 MiB of memory at context 32 even "
                                                        "streaming every layer"),
          " %s", r.chosen.reason);
    plan_result_free(&r);
    /* a context given that does not fit: the reason names one that does */
    hw.ram_budget = 17 * MiB;
    q.n_ctx = 4096;
    plan_compute(&m, &hw, &q, &r);
    CHECK(!r.chosen.feasible && strstr(r.chosen.reason, "at context 4096") && strstr(r.chosen.reason, "(-c 2688 fits)"),
          " %s", r.chosen.reason);
    plan_result_free(&r);
    free_model(&m);
}

/* ---- mixture of experts ---- */

/* simple_model's layers (7/8 of their bytes are weights, 2 per byte), each
 * with n_expert experts of unit_bytes (a slot; 7/8 of it tensor data), n_used
 * of them per token. */
static void moe_model(plan_model *m, uint32_t n_layers, uint64_t per_layer, uint64_t output_bytes, uint32_t n_expert,
                      uint32_t n_used, uint64_t unit_bytes)
{
    simple_model(m, n_layers, per_layer, output_bytes);
    m->n_expert_sets = n_layers;
    m->experts = calloc(n_layers, sizeof *m->experts);
    for (uint32_t g = 0; g < n_layers; g++)
        m->experts[g] = (plan_expert_set){.n_expert = n_expert, .n_used = n_used, .unit_bytes = unit_bytes,
                                          .unit_weight_bytes = unit_bytes / 8 * 7, .unit_elems = unit_bytes / 8 * 14};
}

static const plan *find_label(const plan_result *r, const char *label)
{
    for (int i = 0; i < r->n_alts; i++)
        if (!strcmp(r->alts[i].label, label)) return &r->alts[i];
    return NULL;
}

/* 4 layers of 2 MiB and a 2 MiB output (10 MiB dense), 8 experts of 1 MiB
 * per layer (32 units), 2 used per token, 4 MiB fixed (simple_model at
 * context 1024). A budget of 24 MiB leaves W = 20 MiB for weights: the
 * dense groups fit next to the least cache (2 units), so they are all
 * resident and the cache gets the other 10 MiB: exactly 10 units.
 * Uniform routing, LRU: one token uses 4 x 2 = 8 units, two tokens
 * 32 (1 - (6/8)^2) = 14 distinct ones on average: a unit survives one
 * token, so a request hits when the previous token chose it too: 2/8. A
 * token reads 4 x 2 x 1 MiB x (1 - 1/4) = 6 MiB of experts from disk.
 * (Not 10/32: LRU evicts a unit once 10 others were used after it.)
 * LFU, the default, keeps 9 units (all slots but an eighth, at least one):
 * 9 of the 32 equally likely units hit. */
TEST(test_plan_moe_dense_resident_expert_cache)
{
    plan_model m;
    moe_model(&m, 4, 2 * MiB, 2 * MiB, 8, 2, 1 * MiB);
    plan_machine hw = cpu_machine(24 * MiB);
    plan_request q = {.n_ctx = 1024, .cpu_only = true, .moe_lru = true};
    plan_result r;
    plan_compute(&m, &hw, &q, &r);
    const plan *p = &r.chosen;
    REQUIRE(p->feasible, " %s", p->reason);
    CHECK(!strcmp(p->label, "dense resident + expert cache") && plan_can_run(p) == 1 && p->runnable, " '%s'",
          p->label);
    for (uint32_t g = 0; g < m.n_groups; g++) CHECK(p->tier[g] == TIER_RAM, " group %u", g);
    CHECK(p->expert_units == 32 && p->expert_slots == 10 && p->expert_slot_bytes == 1 * MiB && p->n_slots == 0,
          " %u of %u units, %u slots", p->expert_slots, p->expert_units, p->n_slots);
    CHECK(p->ram.weights == 20 * MiB, " %llu", (unsigned long long)p->ram.weights);
    uint64_t experts = (uint64_t)(4 * 2 * (double)MiB * (1 - 2.0 / 8));
    CHECK(experts == 6 * MiB && p->expert_disk_bytes_per_token == experts && p->disk_bytes_per_token == experts + 4096,
          " %llu", (unsigned long long)p->disk_bytes_per_token);
    CHECK(near(p->expert_hit_rate, 2.0 / 8) && !strcmp(p->expert_hit_source, "uniform routing, LRU"), " %.9g",
          p->expert_hit_rate);
    /* compute and RAM: the dense weights and 2 experts' data per layer */
    uint64_t w = 10 * MiB / 8 * 7 + 4 * 2 * (1 * MiB / 8 * 7);
    CHECK(p->ram_bytes_per_token == w + 512 * PLAN_DECODE_POS, " %llu", (unsigned long long)p->ram_bytes_per_token);
    CHECK(near(p->t_compute, 2.0 * (double)w / 1e11) && near(p->t_disk, (double)(experts + 4096) / 2e9));
    CHECK(near(p->decode_tps, 2e9 / (double)(experts + 4096)) && !strcmp(p->bottleneck, "disk"), " %.6g %s",
          p->decode_tps, p->bottleneck);
    /* prefill: 256 tokens reach 8 (1 - (6/8)^256) ~ 8 experts per layer, each read once per pass */
    double batch = 8 * (1 - pow(0.75, 256)), misses = 4 * batch * (double)MiB * 0.75;
    double t_pass = fmax(256 * 2.0 * (double)w / 1e11, ((double)(experts + 4096) + misses - 6.0 * MiB) / 2e9);
    CHECK(fabs(p->prefill_tps - 256 / t_pass) < 1e-6 * p->prefill_tps, " %.9g vs %.9g", p->prefill_tps, 256 / t_pass);
    char s[256];
    plan_placement_summary(&m, p, s, sizeof s);
    CHECK(!strcmp(s, "blk 0-3 resident; output resident; expert cache 10 of 32 units; token_embd rows gathered"),
          " '%s'", s);
    char flags[256], note[256];
    plan_export_llamacpp(&m, p, flags, sizeof flags, note, sizeof note);
    CHECK(!strcmp(flags, "-c 1024 -ctk f16 -ctv f16 -ngl 0") && strstr(note, "cannot cache experts"), " '%s' (%s)",
          flags, note);
    /* the alternatives: all resident does not fit; everything streamed with the least cache is slower;
     * "dense resident + expert cache" is the chosen plan itself and listed once */
    const plan *all = find_label(&r, "all resident"), *streamed = find_label(&r, "all streamed + least expert cache");
    int dense = 0;
    for (int i = 0; i < r.n_alts; i++) dense += !strcmp(r.alts[i].label, "dense resident + expert cache");
    REQUIRE(all && streamed && dense == 1);
    /* all resident: 10 MiB + 32 units = 42 MiB of weights + 4 MiB fixed */
    CHECK(!all->feasible && strstr(all->reason, "needs at least 46.0 MiB") && strstr(all->rejected, "does not fit"),
          " %s", all->reason);
    /* everything streamed: 3 ring slots of 2 MiB, 2 units (fewer than a token uses: no hits); a token reads
     * 10 MiB of layers and 4 x 2 x 1 MiB of experts */
    CHECK(streamed->feasible && streamed->n_slots == 3 && streamed->expert_slots == 2 &&
              streamed->ram.weights == 8 * MiB && streamed->disk_bytes_per_token == 18 * MiB + 4096 &&
              strstr(streamed->rejected, "slower"),
          " %u slots, %u units, %llu", streamed->n_slots, streamed->expert_slots,
          (unsigned long long)streamed->disk_bytes_per_token);
    plan_result_free(&r);

    /* a unit's worth of budget less one byte: 9 units; one more: 10 still (whole units) */
    hw.ram_budget = 24 * MiB - 1;
    plan_compute(&m, &hw, &q, &r);
    CHECK(r.chosen.feasible && r.chosen.expert_slots == 9, " %u", r.chosen.expert_slots);
    plan_result_free(&r);
    hw.ram_budget = 25 * MiB - 1;
    plan_compute(&m, &hw, &q, &r);
    CHECK(r.chosen.feasible && r.chosen.expert_slots == 10, " %u", r.chosen.expert_slots);
    plan_result_free(&r);
    /* 16 units: three tokens use 32 (1 - (6/8)^3) = 18.5 > 16 units, two 14: a unit survives two
     * tokens, a request hits with 1 - (6/8)^2 = 7/16 */
    hw.ram_budget = 30 * MiB;
    plan_compute(&m, &hw, &q, &r);
    CHECK(r.chosen.feasible && r.chosen.expert_slots == 16 && near(r.chosen.expert_hit_rate, 7.0 / 16) &&
              r.chosen.expert_disk_bytes_per_token == 4 * 2 * MiB * 9 / 16,
          " %u units, hit %.9g", r.chosen.expert_slots, r.chosen.expert_hit_rate);
    plan_result_free(&r);
    /* 7 units, fewer than one token uses (8): every unit is evicted before its layer comes again */
    hw.ram_budget = 21 * MiB;
    plan_compute(&m, &hw, &q, &r);
    CHECK(r.chosen.feasible && r.chosen.expert_slots == 7 && r.chosen.expert_hit_rate == 0 &&
              r.chosen.expert_disk_bytes_per_token == 8 * MiB,
          " %u units, hit %.9g", r.chosen.expert_slots, r.chosen.expert_hit_rate);
    plan_result_free(&r);

    /* every unit fits: all resident, nothing read but the embedding row */
    hw.ram_budget = 46 * MiB;
    plan_compute(&m, &hw, &q, &r);
    CHECK(r.chosen.feasible && !strcmp(r.chosen.label, "all resident") && plan_can_run(&r.chosen) == 0 &&
              r.chosen.expert_slots == 32 && r.chosen.disk_bytes_per_token == 4096 &&
              !strcmp(r.chosen.expert_hit_source, "all resident"),
          " %s %u", r.chosen.label, r.chosen.expert_slots);
    plan_export_llamacpp(&m, &r.chosen, flags, sizeof flags, note, sizeof note);
    CHECK(!strcmp(flags, "-c 1024 -ctk f16 -ctv f16 -ngl 0 --no-mmap --mlock"), " '%s'", flags);
    CHECK(find_label(&r, "dense resident + expert cache") == NULL, " listed although the same as all resident");
    plan_result_free(&r);
    q.moe_lru = false; /* the 10-unit cache again, under LFU */
    hw.ram_budget = 24 * MiB;
    plan_compute(&m, &hw, &q, &r);
    p = &r.chosen;
    CHECK(near(p->expert_hit_rate, 9.0 / 32) && !strcmp(p->expert_hit_source, "uniform routing, LFU") &&
              p->expert_disk_bytes_per_token == (uint64_t)llround(4 * 2 * (double)MiB * (1 - 9.0 / 32)),
          " LFU: %.9g, %llu", p->expert_hit_rate, (unsigned long long)p->expert_disk_bytes_per_token);
    plan_result_free(&r);
    free_model(&m);
}

/* Measured routing (plan_model_set_routing): in every layer experts 0 and 1
 * took all T = 1000 tokens' picks, the other 6 none. The counts have no
 * binomial noise (every token or none), so they are trusted as they are:
 * a hot unit's chance is 1, a cold one's half a pick in T, 0.0005. The
 * 10-unit cache of test_plan_moe_dense_resident_expert_cache:
 *  - LRU: j tokens touch 8 + 24 (1 - 0.9995^j) units, at most 10 while
 *    j <= 173; a cold request hits with 1 - 0.9995^173;
 *  - LFU keeps 9 units: the 8 hot ones and a share 1/24 of the 24 cold
 *    ones: a layer asks 2 + 6 x 0.0005 per token and hits on
 *    2 + 6 x 0.0005 / 24 of it (uniform routing: 9/32). That is less
 *    than LRU's, which LFU's transient slots get: LFU's estimate is the
 *    better of the two. */
TEST(test_plan_moe_measured_routing)
{
    plan_model m;
    moe_model(&m, 4, 2 * MiB, 2 * MiB, 8, 2, 1 * MiB);
    uint32_t picks[4][8] = {{1000, 1000}, {1000, 1000}, {1000, 1000}, {1000, 1000}};
    plan_routing r = {.n_layers = 4, .n_expert = 8, .n_used = 2, .tokens = 1000, .picks = &picks[0][0]};
    plan_routing wrong = r;
    wrong.n_expert = 4;
    CHECK(!plan_model_set_routing(&m, &wrong) && m.routing_tokens == 0 && !m.experts[0].chances);
    REQUIRE(plan_model_set_routing(&m, &r) && m.routing_tokens == 1000);
    plan_machine hw = cpu_machine(24 * MiB);
    plan_request q = {.n_ctx = 1024, .cpu_only = true};
    plan_result res;
    plan_compute(&m, &hw, &q, &res);
    const plan *p = &res.chosen;
    REQUIRE(p->feasible && p->expert_slots == 10, " %s, %u units", p->reason, p->expert_slots);
    double asked = 2 + 6 * 0.0005, kept = (2 + 6 * 0.0005 / 24) / asked,
           lru = (2 + 6 * 0.0005 * (1 - pow(0.9995, 173))) / asked;
    CHECK(kept < lru && near(p->expert_hit_rate, lru) && !strcmp(p->expert_hit_source, "measured routing, LFU"),
          " %.9g vs %.9g", p->expert_hit_rate, lru);
    CHECK(fabs((double)p->expert_disk_bytes_per_token - 4 * 2 * (double)MiB * (1 - lru)) < 1, " %llu",
          (unsigned long long)p->expert_disk_bytes_per_token);
    /* a prompt batch of 256 tokens reaches the 2 hot units and 6 (1 - 0.9995^256) cold ones per layer,
     * each read unless cached: the cold ones are, with 1 - 0.9995^173 each (not the token's hit rate,
     * which the hot units make 0.9986) */
    double batch_misses = 6 * (1 - pow(0.9995, 256)) * pow(0.9995, 173);
    double batch_disk = p->disk_bytes_per_token + 4 * (batch_misses - 2 * (1 - lru)) * (double)MiB;
    CHECK(near(p->tb_disk, batch_disk / 2e9), " %.9g s vs %.9g s", p->tb_disk, batch_disk / 2e9);
    plan_result_free(&res);
    q.moe_lru = true;
    plan_compute(&m, &hw, &q, &res);
    CHECK(near(res.chosen.expert_hit_rate, lru) && !strcmp(res.chosen.expert_hit_source, "measured routing, LRU"),
          " %.9g vs %.9g", res.chosen.expert_hit_rate, lru);
    plan_result_free(&res);
    free_model(&m);
}

/* Poisson(lam): P(X > c) and P(X = c). */
static void poisson_tail(double lam, int c, double *above, double *at)
{
    double pmf = exp(-lam), cdf = pmf;
    for (int i = 1; i <= c; i++) cdf += pmf *= lam / i;
    *at = pmf;
    *above = 1 - cdf;
}

/* LFU learns popularity from counts that halve after 4 pins per unit:
 * with 32 units and 8 pins a token they hold H = 1.5 x 4 x 32 / 8 = 24
 * tokens, so a unit of chance p is counted Poisson(24 p) times. Each layer
 * has 4 units of chance 0.3 and 4 of 0.2 (2 picks a token). The 9 stable
 * slots of the 10-unit cache keep the units counted more than c times and
 * a share f of those counted c times, filling 9 in expectation; a perfect
 * LFU would keep 9 of the 0.3 units (hit 9 x 0.3 / 8 = 0.3375). LRU (one
 * token: 8 units; two: 16 (0.51 + 0.36) > 10) hits p^2 / p: 0.26, less. */
/* The model of the LFU tests: 4 layers of 8 experts (2 used a token),
 * each with 4 units of chance 0.3 and 4 of 0.2, and its plan (q) at a
 * budget whose cache holds 10 units; false if it does not. */
static bool popular_plan(plan_model *m, const plan_request *q, plan_result *r)
{
    moe_model(m, 4, 2 * MiB, 2 * MiB, 8, 2, 1 * MiB);
    for (uint32_t g = 0; g < 4; g++) {
        if (!(m->experts[g].chances = calloc(2, sizeof *m->experts[g].chances))) return false;
        m->experts[g].chances[0] = (struct plan_unit_chance){0.3, 4};
        m->experts[g].chances[1] = (struct plan_unit_chance){0.2, 4};
        m->experts[g].n_chances = 2;
    }
    m->routing_tokens = 1000;
    plan_machine hw = cpu_machine(24 * MiB);
    plan_compute(m, &hw, q, r);
    if (r->chosen.feasible && r->chosen.expert_slots == 10) return true;
    test_fail(__FILE__, __LINE__, "popular_plan", " %s, %u units", r->chosen.reason, r->chosen.expert_slots);
    return false;
}

/* LFU's threshold on popular_model's 10-unit cache: its 9 stable slots
 * keep the 32 units counted more than c times and a share f (returned) of
 * those counted c times; above[i], at[i]: P(X > c), P(X = c) of the 0.3
 * (i = 0) and 0.2 units. */
static double popular_lfu_share(double above[2], double at[2])
{
    double f = -1;
    for (int c = 0; c < 100 && f < 0; c++) {
        poisson_tail(24 * 0.3, c, &above[0], &at[0]);
        poisson_tail(24 * 0.2, c, &above[1], &at[1]);
        if (16 * (above[0] + above[1]) <= 9) f = (9 - 16 * (above[0] + above[1])) / (16 * (at[0] + at[1]));
    }
    return f;
}

TEST(test_plan_moe_lfu_learns_popularity)
{
    plan_model m;
    plan_request q = {.n_ctx = 1024, .cpu_only = true};
    plan_result r;
    if (!popular_plan(&m, &q, &r)) return;
    double above[2], at[2], f = popular_lfu_share(above, at);
    double hit = (16 * 0.3 * (above[0] + f * at[0]) + 16 * 0.2 * (above[1] + f * at[1])) / 8;
    CHECK(hit > 0.26 && hit < 0.3375 && near(r.chosen.expert_hit_rate, hit), " %.9g vs %.9g", r.chosen.expert_hit_rate,
          hit);
    plan_result_free(&r);
    free_model(&m);
}

/* The estimate works out each unit group's chance of being cached once
 * per plan (the hit-rate functions only read it; before, every call
 * walked the Poisson terms again). The model of
 * test_plan_moe_lfu_learns_popularity: under LFU a unit of chance p is
 * kept with P(Poisson(24 p) > c) + f P(= c); under LRU (the cache keeps
 * one token: 8 of 10 units, two would need 13.9) with p itself. A layer
 * whose experts a GPU computes has no groups in the tables. */
TEST(test_plan_moe_estimate_tables)
{
    plan_model m;
    plan_request q = {.n_ctx = 1024, .cpu_only = true};
    plan_result r;
    if (!popular_plan(&m, &q, &r)) return;
    double above[2], at[2], f = popular_lfu_share(above, at);
    expert_estimate x = plan_experts_estimate(&m, &r.chosen);
    REQUIRE(x.lfu_kept && x.n_sets == 4 && x.first[4] == 8 && x.tokens == 1, " %u tokens", x.tokens);
    for (uint32_t g = 0; g < 4; g++) {
        CHECK(x.first[g] == 2 * g && !x.lfu_loses[g], " set %u", g);
        for (uint32_t i = 0; i < 2; i++)
            CHECK(near(x.lfu_kept[2 * g + i], above[i] + f * at[i]) && near(x.lru_kept[2 * g + i], i ? 0.2 : 0.3),
                  " set %u group %u: %.9g, %.9g", g, i, x.lfu_kept[2 * g + i], x.lru_kept[2 * g + i]);
        CHECK(near(plan_experts_hit_rate(&m, g, &r.chosen, &q, &x), r.chosen.expert_hit_rate));
    }
    plan_experts_estimate_free(&x);
    CHECK(!x.first && !x.lru_kept && !x.lfu_kept && !x.lfu_loses);
    int8_t cpu = r.chosen.tier[1];
    r.chosen.tier[1] = 0; /* layer 1's experts on GPU 0 */
    x = plan_experts_estimate(&m, &r.chosen);
    REQUIRE(x.first);
    CHECK(x.first[1] == 2 && x.first[2] == 2 && x.first[4] == 6, " %u %u %u", x.first[1], x.first[2], x.first[4]);
    plan_experts_estimate_free(&x);
    r.chosen.tier[1] = cpu;
    plan_result_free(&r);
    free_model(&m);
}

/* Below the dense part next to 2 units the dense groups stream, as the
 * store places them: W = 11 MiB, 9 MiB for the dense groups: 3 ring slots
 * of 2 MiB and blk 0 resident; the cache gets 11 - 2 - 6 = 3 units. At
 * 12 MiB of budget less one byte below the least (4 MiB fixed + 3 slots +
 * 2 units) nothing runs, and the reason says what it needs. (LRU.) */
TEST(test_plan_moe_streaming_and_least_cache)
{
    plan_model m;
    moe_model(&m, 4, 2 * MiB, 2 * MiB, 8, 2, 1 * MiB);
    plan_machine hw = cpu_machine(15 * MiB);
    plan_request q = {.n_ctx = 1024, .cpu_only = true, .moe_lru = true};
    plan_result r;
    plan_compute(&m, &hw, &q, &r);
    const plan *p = &r.chosen;
    REQUIRE(p->feasible, " %s", p->reason);
    CHECK(!strcmp(p->label, "partial residency (streaming) + expert cache"), " '%s'", p->label);
    for (uint32_t g = 0; g < m.n_groups; g++) CHECK(p->tier[g] == (g == 0 ? TIER_RAM : TIER_DISK), " group %u", g);
    CHECK(p->n_slots == 3 && p->slot_bytes == 2 * MiB && p->expert_slots == 3 && p->ram.weights == 11 * MiB,
          " %u slots, %u units", p->n_slots, p->expert_slots);
    /* 3 units, fewer than a token uses: no hits */
    CHECK(p->disk_bytes_per_token == 8 * MiB + 8 * MiB + 4096, " %llu", (unsigned long long)p->disk_bytes_per_token);
    /* the dense-resident alternative does not fit (10 MiB + 2 units > 11 MiB) */
    const plan *dense = find_label(&r, "dense resident + expert cache");
    CHECK(dense && !dense->feasible && strstr(dense->reason, "every dense layer resident and 2 expert units"), " %s",
          dense ? dense->reason : "missing");
    plan_result_free(&r);
    /* the least: 4 MiB fixed, 3 slots of 2 MiB, 2 units */
    hw.ram_budget = 12 * MiB;
    plan_compute(&m, &hw, &q, &r);
    CHECK(r.chosen.feasible && r.chosen.expert_slots == 2 && r.chosen.n_slots == 3, " %s", r.chosen.reason);
    plan_result_free(&r);
    hw.ram_budget = 12 * MiB - 1;
    plan_compute(&m, &hw, &q, &r);
    CHECK(!r.chosen.feasible && plan_can_run(&r.chosen) == 2 &&
              strstr(r.chosen.reason, "needs at least 12.0 MiB of memory at context 1024 streaming every layer and 2 "
                                      "expert units"),
          " %s", r.chosen.reason);
    plan_result_free(&r);
    free_model(&m);
}

/* --moe-hit-rate: the stated rate replaces uniform routing's (not for a cache
 * that holds every unit); on a model without experts, a warning. */
TEST(test_plan_moe_stated_hit_rate)
{
    plan_model m;
    moe_model(&m, 4, 2 * MiB, 2 * MiB, 8, 2, 1 * MiB);
    plan_machine hw = cpu_machine(24 * MiB);
    plan_request q = {.n_ctx = 1024, .cpu_only = true, .moe_hit_rate_set = true, .moe_hit_rate = 0.75};
    plan_result r;
    plan_compute(&m, &hw, &q, &r);
    CHECK(r.chosen.feasible && r.chosen.expert_slots == 10 && !strcmp(r.chosen.expert_hit_source, "stated") &&
              r.chosen.expert_hit_rate == 0.75 && r.chosen.expert_disk_bytes_per_token == 2 * MiB,
          " %llu", (unsigned long long)r.chosen.expert_disk_bytes_per_token);
    json_t *j = plan_to_json(&m, &r.chosen), *e = json_object_get(j, "experts");
    CHECK(json_integer_value(json_object_get(e, "units")) == 32 &&
              json_integer_value(json_object_get(e, "cached_units")) == 10 &&
              json_real_value(json_object_get(e, "hit_rate")) == 0.75 &&
              !strcmp(json_string_value(json_object_get(e, "hit_rate_source")), "stated") &&
              json_integer_value(json_object_get(e, "disk_bytes_per_token")) == 2 * MiB,
          " experts JSON");
    json_decref(j);
    plan_result_free(&r);
    q.moe_hit_rate = 0;
    plan_compute(&m, &hw, &q, &r);
    CHECK(r.chosen.expert_disk_bytes_per_token == 8 * MiB, " %llu",
          (unsigned long long)r.chosen.expert_disk_bytes_per_token);
    plan_result_free(&r);
    hw.ram_budget = 46 * MiB;
    plan_compute(&m, &hw, &q, &r);
    CHECK(r.chosen.expert_hit_rate == 1 && r.chosen.expert_disk_bytes_per_token == 0);
    plan_result_free(&r);
    free_model(&m);
    plan_model dense;
    simple_model(&dense, 4, 1 * MiB, 1 * MiB);
    plan_compute(&dense, &hw, &q, &r);
    CHECK(r.n_warnings == 1 && strstr(r.warnings[0], "--moe-hit-rate) is ignored"), " %s", r.warnings[0]);
    json_t *dj = plan_to_json(&dense, &r.chosen);
    CHECK(json_object_get(dj, "experts") == NULL, " a dense model's plan has no experts");
    json_decref(dj);
    plan_result_free(&r);
    free_model(&dense);
}

/* Experts on the GPU, run by the engine: with room for everything, a
 * request `run` makes (cpu_only) gets the layer split with every layer, its
 * experts and the KV cache in VRAM. A token reads the dense weights and the
 * 2 experts it is routed to in each of 4 layers (7/8 of 1 MiB each); a
 * batch of 256 is routed to all 8 of each layer, each read once. Over the link, a token sends the dense groups and its 2 experts
 * per layer (whole units), and that plan runs too. */
TEST(test_plan_moe_on_the_gpu_runnable)
{
    plan_model m;
    moe_model(&m, 4, 2 * MiB, 2 * MiB, 8, 2, 1 * MiB);
    plan_machine hw = cpu_machine(1 * GiB);
    hw.n_gpus = 1;
    hw.gpus[0] = (plan_gpu){.name = "test GPU", .vram = 1 * GiB, .vram_bw = 1e12, .link_bw = 16e9};
    plan_request q = {.n_ctx = 1024, .cpu_only = true};
    plan_result r;
    plan_compute(&m, &hw, &q, &r);
    const plan *p = &r.chosen;
    REQUIRE(p->feasible, " %s", p->reason);
    CHECK(!strcmp(p->label, "GPU/CPU layer split, KV on GPU") && p->runnable && !p->moe_split, " '%s'", p->label);
    for (uint32_t g = 0; g < m.n_groups; g++) CHECK(p->tier[g] == 0, " group %u", g);
    uint64_t dense_w = 0, unit_w = 1 * MiB / 8 * 7;
    for (uint32_t g = 0; g < m.n_groups; g++) dense_w += m.groups[g].weight_bytes;
    CHECK(p->expert_units == 0 && p->gpu[0].weights == 10 * MiB + 32 * MiB, " %u units, %llu on the GPU",
          p->expert_units, (unsigned long long)p->gpu[0].weights);
    CHECK(p->vram_bytes_per_token == dense_w + 4 * 2 * unit_w + PLAN_DECODE_POS * m.kv_bytes_per_token, " %llu",
          (unsigned long long)p->vram_bytes_per_token);
    /* a prompt batch: the same plan's VRAM time as the model without experts, plus every expert read once */
    plan_model dense;
    simple_model(&dense, 4, 2 * MiB, 2 * MiB);
    plan_result rd;
    plan_compute(&dense, &hw, &q, &rd);
    CHECK(rd.chosen.feasible && near(p->tb_vram - rd.chosen.tb_vram, 4 * 8 * (double)unit_w / 1e12), " %.9g",
          p->tb_vram - rd.chosen.tb_vram);
    plan_result_free(&rd);
    /* a measured round trip: each of the 4 layers waits for the host's routing once a pass */
    hw.gpus[0].round_trip_s = 50e-6;
    plan_compute(&m, &hw, &q, &rd);
    CHECK(rd.chosen.feasible && !strcmp(rd.chosen.label, p->label) && near(rd.chosen.gpu_wait_s, 4 * 50e-6) &&
              near(rd.chosen.t_vram - p->t_vram, 4 * 50e-6) && near(rd.chosen.tb_vram - p->tb_vram, 4 * 50e-6),
          " %.9g s waits, %.9g s more a token", rd.chosen.gpu_wait_s, rd.chosen.t_vram - p->t_vram);
    plan_result_free(&rd);
    hw.gpus[0].round_trip_s = 0;
    free_model(&dense);
    const plan *link = find_label(&r, "weights streamed over the GPU link");
    uint64_t dense_bytes = 0;
    for (uint32_t g = 0; g < m.n_groups; g++) dense_bytes += m.groups[g].bytes;
    CHECK(link && link->feasible && link->runnable && link->link_bytes_per_token == dense_bytes + 4 * 2 * MiB,
          " the link plan: %s, %llu bytes a token", link ? link->reason : "missing",
          link ? (unsigned long long)link->link_bytes_per_token : 0ull);
    plan_result_free(&r);
    free_model(&m);
}

/* llama.cpp's static split on a GPU: everything on the GPU but the experts
 * of the first N layers, resident in RAM. The GPU holds its 256 MiB reserve,
 * the dense groups (10 MiB), the KV cache (512 KiB) and the experts of two
 * layers (16 MiB): N = 2, 16 MiB of experts in RAM; the CPU computes 2 x 2
 * experts' data per token. */
TEST(test_plan_moe_n_cpu_moe_split)
{
    plan_model m;
    moe_model(&m, 4, 2 * MiB, 2 * MiB, 8, 2, 1 * MiB);
    plan_machine hw = cpu_machine(1 * GiB);
    hw.n_gpus = 1;
    hw.gpus[0] = (plan_gpu){.name = "test GPU", .vram = 256 * MiB + 10 * MiB + 512 * KiB + 16 * MiB, .vram_bw = 1e12,
                            .link_bw = 16e9};
    plan_request q = {.n_ctx = 1024};
    plan_result r;
    plan_compute(&m, &hw, &q, &r);
    const plan *p = find_label(&r, "llama.cpp --n-cpu-moe split");
    REQUIRE(p && p->feasible, " %s", p ? p->reason : "missing");
    CHECK(p->moe_split && p->n_cpu_moe == 2 && !p->runnable, " N = %u", p->n_cpu_moe);
    for (uint32_t g = 0; g < m.n_groups; g++) CHECK(p->tier[g] == 0, " group %u", g);
    CHECK(p->gpu[0].weights == 26 * MiB && p->gpu[0].kv == 512 * KiB && p->ram.weights == 16 * MiB,
          " GPU %llu, RAM %llu", (unsigned long long)p->gpu[0].weights, (unsigned long long)p->ram.weights);
    CHECK(p->expert_units == 16 && p->expert_slots == 16 && plan_can_run(p) == 0 && p->disk_bytes_per_token == 4096);
    uint64_t cpu_w = 2 * 2 * (1 * MiB / 8 * 7);
    CHECK(near(p->t_compute, 2.0 * (double)cpu_w / 1e11), " %.9g", p->t_compute);
    char flags[256], note[256], s[256];
    plan_export_llamacpp(&m, p, flags, sizeof flags, note, sizeof note);
    CHECK(!strcmp(flags, "-c 1024 -ctk f16 -ctv f16 -ngl 5 --n-cpu-moe 2 --no-mmap --mlock") &&
              strstr(note, "static split"),
          " '%s' (%s)", flags, note);
    plan_placement_summary(&m, p, s, sizeof s);
    CHECK(!strcmp(s, "blk 0-3 on GPU 0; output on GPU; experts of blk 0-1 resident in RAM; token_embd rows gathered"),
          " '%s'", s);
    plan_result_free(&r);
    /* for `run`: refused, with the rule --compare's footnote states too (not "dense layers") */
    q.cpu_only = true;
    plan_compute(&m, &hw, &q, &r);
    p = find_label(&r, "llama.cpp --n-cpu-moe split");
    CHECK(p && strstr(p->rejected, "does not run this GPU plan (" PLAN_ENGINE_GPU_RULE ")") &&
              strstr(PLAN_ENGINE_GPU_RULE, "experts with it") && !strstr(PLAN_ENGINE_GPU_RULE, "dense"),
          " '%s'", p ? p->rejected : "missing");
    plan_result_free(&r);
    q.cpu_only = false;
    /* no room for any layer's experts: all of them on the CPU, -ot exps=CPU */
    hw.gpus[0].vram = 256 * MiB + 10 * MiB + 512 * KiB + 8 * MiB - 1;
    plan_compute(&m, &hw, &q, &r);
    p = find_label(&r, "llama.cpp --n-cpu-moe split");
    REQUIRE(p && p->feasible, " %s", p ? p->reason : "missing");
    plan_export_llamacpp(&m, p, flags, sizeof flags, note, sizeof note);
    CHECK(p->n_cpu_moe == 4 && !strcmp(flags, "-c 1024 -ctk f16 -ctv f16 -ngl 5 -ot exps=CPU --no-mmap --mlock"),
          " %u: '%s'", p->n_cpu_moe, flags);
    plan_result_free(&r);
    /* not even the dense part fits */
    hw.gpus[0].vram = 256 * MiB + 10 * MiB;
    plan_compute(&m, &hw, &q, &r);
    p = find_label(&r, "llama.cpp --n-cpu-moe split");
    CHECK(p && !p->feasible && strstr(p->reason, "does not fit on the GPUs"), " %s", p ? p->reason : "missing");
    plan_result_free(&r);
    free_model(&m);
}

/* The planner's inputs for a real MoE file (qwen3moe fixture: 8 experts, 2
 * used): a layer's group is its dense part, read whole per token; its
 * experts are an expert set whose unit is one expert's share of the
 * stacked tensors (what compute reads per routed expert), in a slot of at
 * least that (aligned for direct I/O). */
TEST(test_plan_moe_fixture_inputs)
{
    const char *path = test_fixture("arch/qwen3moe-q4_k_m.gguf");
    if (!path) return;
    gguf_file *f = NULL;
    model_spec *spec = NULL;
    plan_model m;
    strata_error e;
    REQUIRE(gguf_open(path, &f, &e) == STRATA_OK && model_spec_from_gguf(f, path, &spec, &e) == STRATA_OK &&
                plan_model_from_engine(f, spec, 1, 0, 0, &m, &e) == STRATA_OK,
            " %s", e.message);
    REQUIRE(m.n_expert_sets == 3 && m.n_groups == 4, " %u sets, %u groups", m.n_expert_sets, m.n_groups);
    for (uint32_t l = 0; l < 3; l++) {
        char prefix[16];
        snprintf(prefix, sizeof prefix, "blk.%u.", l);
        uint64_t dense = 0, dense_elems = 0, experts = 0, expert_elems = 0;
        for (uint64_t i = 0; i < f->n_tensors; i++) {
            const gguf_tensor *t = &f->tensors[i];
            if (strncmp(t->name, prefix, strlen(prefix))) continue;
            if (strstr(t->name, "_exps.")) experts += t->n_bytes, expert_elems += t->n_elems;
            else dense += t->n_bytes, dense_elems += t->n_elems;
        }
        const plan_expert_set *x = &m.experts[l];
        CHECK(m.groups[l].weight_bytes == dense && m.groups[l].elems == dense_elems && m.groups[l].bytes >= dense &&
                  m.groups[l].bytes < dense + experts,
              " blk.%u: group %llu bytes, reads %llu; dense %llu", l, (unsigned long long)m.groups[l].bytes,
              (unsigned long long)m.groups[l].weight_bytes, (unsigned long long)dense);
        CHECK(x->n_expert == 8 && x->n_used == 2 && x->unit_weight_bytes == experts / 8 &&
                  x->unit_elems == expert_elems / 8 && x->unit_bytes >= x->unit_weight_bytes &&
                  x->unit_bytes <= x->unit_weight_bytes + 3 * 2 * 4096,
              " blk.%u: unit %llu (slot %llu), experts %llu", l, (unsigned long long)x->unit_weight_bytes,
              (unsigned long long)x->unit_bytes, (unsigned long long)experts);
    }
    plan_model_free(&m);
    model_spec_free(spec);
    gguf_close(f);
}

/* What the planner predicts is what the store does: a Qwen3-MoE-shaped
 * model (4 layers, 8 experts of 2 used, Q4_K_M mix: units of different
 * sizes) planned under budgets from the least to everything, then the real
 * store opened under the same budget with the plan's choice: the same expert
 * cache, ring and resident bytes; an infeasible plan is one the store
 * refuses. */
TEST(test_plan_moe_matches_store)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/moe.gguf", test_tmpdir());
    synth_options o = {.arch = "qwen3moe", .shape = {256, 768, 4, 4, 2, 512, 512}, .n_expert = 8,
                       .n_expert_used = 2, .mix = MIX_Q4_K_M, .type = GGML_TYPE_Q4_K, .seed = 11, .threads = 2,
                       .output = path};
    strata_error e;
    REQUIRE(synth_write(&o, &e) == STRATA_OK, " %s", e.message);
    gguf_file *f = NULL;
    model_spec *spec = NULL;
    plan_model pm;
    REQUIRE(gguf_open(path, &f, &e) == STRATA_OK && model_spec_from_gguf(f, path, &spec, &e) == STRATA_OK &&
                plan_model_from_engine(f, spec, 1, 0, 0, &pm, &e) == STRATA_OK,
            " %s", e.message);
    engine_params ep = {.n_ctx = 256, .n_threads = 1};
    engine_desc d;
    REQUIRE(engine_describe(f, spec, &ep, &d, &e) == STRATA_OK, " %s", e.message);
    REQUIRE(pm.n_expert_sets == 4 && d.n_expert_sets == 4, " %u sets", pm.n_expert_sets);
    uint64_t dense = 0, experts = 0;
    for (uint32_t g = 0; g < pm.n_groups; g++) dense += pm.groups[g].bytes;
    for (uint32_t g = 0; g < pm.n_expert_sets; g++) {
        CHECK(pm.experts[g].n_expert == 8 && pm.experts[g].n_used == 2 && pm.experts[g].unit_bytes > 0 &&
                  pm.experts[g].unit_weight_bytes < pm.experts[g].unit_bytes,
              " set %u", g);
        experts += pm.experts[g].n_expert * pm.experts[g].unit_bytes;
    }
    /* groups exclude the experts: the dense part is a small share */
    CHECK(dense < experts, " dense %llu, experts %llu", (unsigned long long)dense, (unsigned long long)experts);
    uint64_t fixed = engine_process_reserve(f) + d.buffer_bytes + store_row_buffer_bytes(f);
    plan_request q = {.n_ctx = 256, .cpu_only = true};
    int feasible = 0, infeasible = 0, cached = 0;
    for (int i = 0; i <= 40; i++) {
        plan_machine hw = cpu_machine(fixed + (dense + experts) * (uint64_t)i / 32 + (uint64_t)i * 777);
        plan_result r;
        plan_compute(&pm, &hw, &q, &r);
        const plan *p = &r.chosen;
        bool *resident = calloc(pm.n_groups, sizeof *resident);
        for (uint32_t g = 0; p->feasible && g < pm.n_groups; g++) resident[g] = p->tier[g] == TIER_RAM;
        /* the plan's placement under what `run` gives the store: the budget less the process reserve, the
         * KV cache and the buffers (an infeasible plan: everything resident, which does not fit) */
        store_config sc = {.budget = hw.ram_budget - engine_process_reserve(f) - d.buffer_bytes, .prefetch_depth = 2,
                           .io_threads = 1, .resident = p->feasible ? resident : NULL,
                           .expert_slots = p->feasible ? p->expert_slots : 0,
                           .n_expert_sets = d.n_expert_sets, .expert_sets = d.expert_sets};
        store *st = NULL;
        strata_status rc = store_open(f, d.n_groups, d.groups, &sc, &st, NULL, &e);
        if (p->feasible) {
            feasible++;
            cached += p->expert_slots < p->expert_units;
            CHECK(p->ram.kv + p->ram.buffers == d.buffer_bytes, " budget %d: KV + buffers %llu, engine %llu", i,
                  (unsigned long long)(p->ram.kv + p->ram.buffers), (unsigned long long)d.buffer_bytes);
            CHECK(rc == STRATA_OK, " budget %d: the store refuses the plan: %s", i, e.message);
            if (rc == STRATA_OK) {
                store_stats ss = store_get_stats(st);
                uint64_t res = 0;
                for (uint32_t g = 0; g < pm.n_groups; g++) res += resident[g] ? pm.groups[g].bytes : 0;
                CHECK(ss.expert_units == p->expert_units && ss.expert_slots == p->expert_slots &&
                          ss.expert_cache_bytes == (uint64_t)p->expert_slots * p->expert_slot_bytes &&
                          ss.n_slots == p->n_slots && ss.slot_bytes == (uint64_t)p->n_slots * p->slot_bytes &&
                          ss.resident_bytes == res,
                      " budget %d (%s): store %u of %u units, %u slots of %llu; plan %u of %u, %u of %llu", i,
                      p->label, ss.expert_slots, ss.expert_units, ss.n_slots, (unsigned long long)ss.slot_bytes,
                      p->expert_slots, p->expert_units, p->n_slots, (unsigned long long)p->slot_bytes);
            }
        } else {
            infeasible++;
            CHECK(rc == STRATA_E_NOMEM, " budget %d: the plan is infeasible (%s), the store opens (%d)", i, p->reason,
                  rc);
        }
        store_close(st);
        free(resident);
        plan_result_free(&r);
    }
    CHECK(feasible > 20 && infeasible > 0 && cached > 10, " %d feasible, %d not, %d with a partial cache", feasible,
          infeasible, cached);
    engine_desc_free(&d);
    plan_model_free(&pm);
    model_spec_free(spec);
    gguf_close(f);
}

/* The planner's view of a 13B llama (40 layers, embedding 5120, ffn 13824,
 * vocab 32000, MHA: 2 x 40 x 5120 x 2 bytes of f16 KV per token) at
 * bits_per_weight, on the hypothetical 24 GB GPU profile. */
static void model_13b(plan_model *m, double layer_bpw, double output_bpw)
{
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "13B-shaped");
    m->n_groups = 41;
    m->groups = calloc(41, sizeof *m->groups);
    uint64_t layer_elems = 4ull * 5120 * 5120 + 3ull * 5120 * 13824, out_elems = 5120ull * 32000;
    for (uint32_t g = 0; g < 41; g++) {
        plan_group *gr = &m->groups[g];
        if (g < 40) snprintf(gr->name, sizeof gr->name, "blk.%u", g);
        else snprintf(gr->name, sizeof gr->name, "output");
        gr->elems = g < 40 ? layer_elems : out_elems;
        gr->weight_bytes = (uint64_t)((double)gr->elems * (g < 40 ? layer_bpw : output_bpw) / 8);
        gr->bytes = (gr->weight_bytes + 4095) / 4096 * 4096;
    }
    m->context_length = 4096;
    m->kv_bytes_per_token = 2ull * 40 * 5120 * 2;
    m->kv_bytes_per_token_q8 = m->kv_bytes_per_token * 17 / 32;
    m->kv_bytes_per_token_q4 = m->kv_bytes_per_token * 9 / 32;
    m->buffer_fixed = 64 * MiB;
    m->buffer_per_ctx = 4 * 4096;
    m->buffer_per_batch = 256 * KiB;
    m->batch = 256;
    m->store_fixed = 4 * MiB;
    m->process_reserve = 16 * MiB;
    m->embd_row_bytes = 5120 * 2;
}

static bool load_24g(plan_machine *pm)
{
    hw_profile *hp = calloc(1, sizeof *hp);
    strata_error e;
    bool ok = hp && hw_profile_load("tests/data/hw/profiles/hypothetical-24g.json", hp, &e) == STRATA_OK;
    if (!ok) test_fail(__FILE__, __LINE__, "load", " %s", hp ? e.message : "out of memory");
    else plan_machine_from_profile(hp, 0, 0, pm);
    free(hp);
    return ok;
}

static uint64_t sum_bytes(const plan_model *m, const plan *p, int tier, bool weights)
{
    uint64_t s = 0;
    for (uint32_t g = 0; g < m->n_groups; g++)
        if (p->tier[g] == tier) s += weights ? m->groups[g].weight_bytes : m->groups[g].bytes;
    return s;
}

static const plan *find_alt(const plan_result *r, const char *label)
{
    for (int i = 0; i < r->n_alts; i++)
        if (!strcmp(r->alts[i].label, label)) return &r->alts[i];
    return NULL;
}

/* Q4_K_M (4.85 / 6.56 bits per weight, ~7.8 GB): everything fits on the GPU. */
TEST(test_plan_24g_gpu_13b_q4)
{
    plan_machine hw;
    if (!load_24g(&hw)) return;
    CHECK(hw.n_gpus == 1 && hw.gpus[0].vram == 24 * GiB && hw.gpus[0].link_bw == 25e9 && hw.ram_bw == 60e9);
    CHECK(hw.ram_budget == 54 * GiB, " budget %llu", (unsigned long long)hw.ram_budget); /* 60 GiB - 10 % */
    plan_model m;
    model_13b(&m, 4.85, 6.56);
    plan_request q = {0};
    plan_result r;
    plan_compute(&m, &hw, &q, &r);
    const plan *p = &r.chosen;
    REQUIRE(p->feasible, " %s", p->reason);
    REQUIRE(check_budgets(&m, &hw, &q, p, "chosen", 0));
    CHECK(p->n_ctx == 4096 && !strcmp(p->label, "GPU/CPU layer split, KV on GPU") && p->runnable, " '%s' ctx %u",
          p->label, p->n_ctx);
    CHECK(sum_bytes(&m, p, 0, false) == model_bytes(&m), " not every group is on the GPU");
    uint64_t w = sum_bytes(&m, p, 0, true), kv = m.kv_bytes_per_token * PLAN_DECODE_POS;
    /* the sites' times add up: KV on the GPU reads it from VRAM; KV in RAM
     * adds the CPU's attention (its RAM reads) after the GPU's layers */
    double kv_gpu = 300e9 / (double)(w + kv), kv_ram = 1 / ((double)w / 300e9 + (double)kv / 60e9);
    CHECK(near(p->decode_tps, kv_gpu) && p->gpu[0].kv == m.kv_bytes_per_token * 4096 && p->ram.kv == 0 &&
              !strcmp(p->bottleneck, "VRAM bandwidth"),
          " %.6g tok/s (%s)", p->decode_tps, p->bottleneck);
    const plan *a = find_alt(&r, "GPU/CPU layer split, KV in RAM");
    CHECK(a && a->feasible && near(a->decode_tps, kv_ram) && !a->runnable, " KV in RAM: %s %.6g tok/s",
          a ? a->reason : "missing", a ? a->decode_tps : 0);
    a = find_alt(&r, "weights streamed over the GPU link");
    CHECK(a && a->feasible && a->decode_tps < p->decode_tps, " over the link: %s", a ? a->reason : "missing");
    /* the profile gives neither VRAM bandwidth nor a CPU rate: guesses, said so */
    bool vram_warned = false, measure_warned = false;
    for (int i = 0; i < r.n_warnings; i++) {
        vram_warned |= strstr(r.warnings[i], "GPU 0 memory bandwidth unknown: assuming 300 GB/s") != NULL;
        measure_warned |= strstr(r.warnings[i], "not measured") != NULL;
    }
    CHECK(vram_warned && measure_warned && !hw.measured, " no warning about the guesses");
    char flags[256], note[256];
    plan_export_llamacpp(&m, p, flags, sizeof flags, note, sizeof note);
    CHECK(strstr(flags, "-ngl 41 ") && !strstr(flags, "-nkvo") && strstr(flags, "-c 4096"), " '%s'", flags);
    /* the same machine with the GPU off (`run --gpu none`): all resident in
     * 54 GiB, bound by compute at the guessed 4e9 weights/s */
    plan_result c;
    plan_machine cpu = hw;
    cpu.n_gpus = 0;
    q.cpu_only = true;
    plan_compute(&m, &cpu, &q, &c);
    CHECK(c.chosen.feasible && !strcmp(c.chosen.label, "all resident") && !strcmp(c.chosen.bottleneck, "compute") &&
              near(c.chosen.decode_tps, 4e9 / (40.0 * (double)m.groups[0].elems + (double)m.groups[40].elems)) &&
              c.chosen.decode_tps < p->decode_tps / 3,
          " CPU: %s %.3g tok/s", c.chosen.label, c.chosen.decode_tps);
    plan_result_free(&c);
    plan_result_free(&r);
    free_model(&m);
}

/* F16 (~26 GB): the first layers on the GPU, the rest resident in RAM. */
TEST(test_plan_24g_gpu_13b_f16_split)
{
    plan_machine hw;
    if (!load_24g(&hw)) return;
    plan_model m;
    model_13b(&m, 16, 16);
    plan_request q = {.n_ctx = 4096};
    plan_result r;
    plan_compute(&m, &hw, &q, &r);
    const plan *p = &r.chosen;
    REQUIRE(p->feasible, " %s", p->reason);
    REQUIRE(check_budgets(&m, &hw, &q, p, "chosen", 0));
    uint32_t on_gpu = 0;
    while (on_gpu < m.n_groups && p->tier[on_gpu] == 0) on_gpu++;
    for (uint32_t g = on_gpu; g < m.n_groups; g++) CHECK(p->tier[g] == TIER_RAM, " group %u tier %d", g, p->tier[g]);
    CHECK(on_gpu >= 20 && on_gpu < 40, " %u layers on the GPU", on_gpu);
    CHECK(plan_can_run(p) == 0 && strstr(p->label, "GPU/CPU layer split"), " '%s'", p->label);
    /* GPU: room = 24 GiB - 10 % reserve; the layers there fill it */
    uint64_t room = 24 * GiB - 24 * GiB / 10;
    uint64_t next = m.groups[on_gpu].bytes + (p->gpu[0].kv ? m.kv_bytes_per_token * 4096 / 40 : 0);
    CHECK(p->gpu[0].weights + p->gpu[0].kv <= room && p->gpu[0].weights + p->gpu[0].kv + next > room,
          " the split does not fill the GPU");
    double t_vram = (double)(sum_bytes(&m, p, 0, true) + (p->gpu[0].kv ? m.kv_bytes_per_token * PLAN_DECODE_POS : 0)) / 300e9;
    CHECK(near(p->t_vram, t_vram), " %.6g vs %.6g", p->t_vram, t_vram);
    char flags[256], note[256];
    plan_export_llamacpp(&m, p, flags, sizeof flags, note, sizeof note);
    char want[32];
    snprintf(want, sizeof want, "-ngl %u", on_gpu);
    CHECK(strstr(flags, want) && strstr(flags, "--no-mmap"), " '%s'", flags);
    plan_result_free(&r);
    free_model(&m);
}


/* A 70B-shaped Q4_K_M model (80 layers of ~0.5 GB, ~40 GB) on the same
 * profile: more than the GPU holds. With the CPU rate unmeasured (guessed
 * at 4e9 weights/s: 0.21 s a layer), a layer streamed to the GPU (copied
 * from RAM at 60 GB/s into the staging, then over the 25 GB/s link: 29 ms)
 * beats the CPU, and a resident one (1.7 ms of VRAM reads) beats both: the
 * mixed plan keeps as many layers resident as leave room for the others'
 * KV caches and a ring of two slots, and streams the rest. Sending every
 * weight over the link is the alternative. The weights stay resident in
 * RAM (54 GiB budget). */
TEST(test_plan_24g_70b_over_link)
{
    plan_machine hw;
    if (!load_24g(&hw)) return;
    plan_model m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "70B-shaped");
    m.n_groups = 81;
    m.groups = calloc(81, sizeof *m.groups);
    uint64_t layer_elems = 2ull * 8192 * 8192 + 2ull * 8192 * 1024 + 3ull * 8192 * 28672;
    for (uint32_t g = 0; g < 81; g++) {
        plan_group *gr = &m.groups[g];
        if (g < 80) snprintf(gr->name, sizeof gr->name, "blk.%u", g);
        else snprintf(gr->name, sizeof gr->name, "output");
        gr->elems = g < 80 ? layer_elems : 8192ull * 32000;
        gr->weight_bytes = (uint64_t)((double)gr->elems * (g < 80 ? 4.85 : 6.56) / 8);
        gr->bytes = (gr->weight_bytes + 4095) / 4096 * 4096;
    }
    m.context_length = 4096;
    m.kv_bytes_per_token = 2ull * 80 * 1024 * 2; /* GQA: 8 KV heads of 128 */
    m.kv_bytes_per_token_q8 = m.kv_bytes_per_token * 17 / 32;
    m.kv_bytes_per_token_q4 = m.kv_bytes_per_token * 9 / 32;
    m.buffer_fixed = 64 * MiB;
    m.batch = 256;
    m.process_reserve = 16 * MiB;
    m.embd_row_bytes = 8192 * 2;
    plan_request q = {0};
    plan_result r;
    plan_compute(&m, &hw, &q, &r);
    const plan *p = &r.chosen;
    REQUIRE(p->feasible, " %s", p->reason);
    REQUIRE(check_budgets(&m, &hw, &q, p, "chosen", 0));
    CHECK(!strcmp(p->label, "GPU resident + streamed over the link + CPU") && p->runnable && !p->phase_sites,
          " '%s'", p->label);
    /* k resident layers with their KV caches, the other 80 - k layers' KV caches and two slots of a layer
     * within 24 GiB less the 10 % reserve */
    uint64_t layer = m.groups[0].bytes, kv_layer = 2 * 1024 * 2 * 4096ull, room = 24 * GiB - 24 * GiB / 10, k = 0;
    while ((k + 1) * (layer + kv_layer) + (80 - k - 1) * kv_layer + 2 * layer <= room) k++;
    CHECK(k == 40, " %llu resident layers fit", (unsigned long long)k);
    for (uint32_t g = 0; g < 81; g++)
        CHECK(g < k ? p->tier[g] == 0 && p->site[g] == PLAN_SITE_GPU
                    : p->tier[g] == TIER_RAM && p->site[g] == PLAN_SITE_LINK && p->prefill_site[g] == PLAN_SITE_LINK,
              " group %u: tier %d site %u", g, p->tier[g], p->site[g]);
    /* a token: the resident layers' VRAM reads (weights, KV at position 128), then each streamed group's copy
     * (RAM into the staging, then the link), every one but the first hidden behind its predecessor's
     * 1.7 ms compute, which it exceeds: their sum, plus the last group's (the output's) compute */
    double t_res = 0, t_x = 0, kv_read = 2 * 1024 * 2 * 128.0;
    for (uint32_t g = 0; g < 81; g++)
        if (g < k) t_res += ((double)m.groups[g].weight_bytes + kv_read) / 300e9;
        else t_x += (double)m.groups[g].bytes / 25e9 + (double)m.groups[g].bytes / 60e9;
    double t_mixed = t_res + t_x + (double)m.groups[80].weight_bytes / 300e9;
    CHECK(near(p->decode_tps, 1 / t_mixed) && !strcmp(p->bottleneck, "GPU link"), " %.6g tok/s, expected %.6g (%s)",
          p->decode_tps, 1 / t_mixed, p->bottleneck);
    /* every weight over the link: its KV caches in RAM */
    const plan *all = find_alt(&r, "weights streamed over the GPU link");
    REQUIRE(all && all->feasible && all->over_link && all->runnable);
    uint64_t bytes = model_bytes(&m), w = 0;
    for (uint32_t g = 0; g < 81; g++) {
        w += m.groups[g].weight_bytes;
        CHECK(all->tier[g] == TIER_RAM && all->site[g] == PLAN_SITE_LINK, " group %u tier %d", g, all->tier[g]);
    }
    CHECK(all->ram.weights == bytes && all->gpu[0].weights == 2 * m.groups[0].bytes && plan_can_run(all) == 0);
    double t_link = (double)bytes / 25e9, t_vram = (double)w / 300e9,
           t_ram = (double)(bytes + m.kv_bytes_per_token * PLAN_DECODE_POS) / 60e9;
    CHECK(all->link_bytes_per_token == bytes && near(all->t_link, t_link) && near(all->t_vram, t_vram) &&
              near(all->t_ram, t_ram) && all->t_compute == 0,
          " link %.4g vram %.4g ram %.4g compute %.4g", all->t_link, all->t_vram, all->t_ram, all->t_compute);
    /* the streamed groups' copies (RAM, then the link: the first unhidden, each later one less its
     * predecessor's compute) and their computes, then the CPU's share of the token, reading the KV cache
     * from RAM, adds to it */
    double t_kv = (double)(m.kv_bytes_per_token * PLAN_DECODE_POS) / 60e9;
    double t_all = t_link + (double)bytes / 60e9 + (double)m.groups[80].weight_bytes / 300e9 + t_kv;
    CHECK(!strcmp(all->bottleneck, "GPU link") && near(all->decode_tps, 1 / t_all) && all->decode_tps < p->decode_tps,
          " %s %.6g, expected %.6g", all->bottleneck, all->decode_tps, 1 / t_all);
    /* the layer split keeps the GPU full and computes the rest on the CPU */
    const plan *split = find_alt(&r, "GPU/CPU layer split, KV in RAM");
    CHECK(split && split->feasible && split->tier[0] == 0 && split->tier[80] == TIER_RAM &&
              !strcmp(split->bottleneck, "compute") && split->decode_tps < p->decode_tps,
          " split: %s", split ? split->bottleneck : "missing");
    char s[512], flags[256], note[256];
    plan_placement_summary(&m, all, s, sizeof s);
    CHECK(!strcmp(s, "blk 0-79 resident; output resident; token_embd rows gathered; weights cross the link to GPU 0 "
                     "every token"), " '%s'", s);
    plan_export_llamacpp(&m, all, flags, sizeof flags, note, sizeof note);
    CHECK(!strcmp(flags, "-c 4096 -ctk f16 -ctv f16 -ngl 0 --no-mmap --mlock") && strstr(note, "GPU link"), " '%s' (%s)",
          flags, note);
    /* the mixed plan for llama.cpp: the resident layers on the GPU */
    plan_export_llamacpp(&m, p, flags, sizeof flags, note, sizeof note);
    CHECK(!strcmp(flags, "-c 4096 -ctk f16 -ctv f16 -ngl 40 --no-mmap --mlock") && strstr(note, "GPU link"),
          " '%s' (%s)", flags, note);
    /* in JSON, and read back by `run --plan`, which streams every group over the link */
    json_t *doc = plan_result_to_json(&m, &hw, &r);
    REQUIRE(doc);
    json_t *alts = json_object_get(doc, "alternatives");
    for (size_t i = 0; i < json_array_size(alts); i++)
        if (!strcmp(json_string_value(json_object_get(json_array_get(alts, i), "label")),
                    "weights streamed over the GPU link"))
            json_object_set(doc, "plan", json_array_get(alts, i));
    CHECK(json_is_true(json_object_get(json_object_get(doc, "plan"), "weights_over_link")));
    plan back;
    strata_error e = {0};
    CHECK(plan_from_json(doc, &m, &back, &e) == STRATA_OK && back.over_link && back.tier[0] == TIER_RAM &&
              back.site[0] == PLAN_SITE_LINK,
          " %s", e.message);
    plan_free(&back);
    json_decref(doc);
    plan_result_free(&r);
    free_model(&m);
}

/* `run --plan` refuses a plan made for another model with the same layer
 * names (the group sizes differ), and damaged documents, naming the field. */
TEST(test_plan_from_json_rejects)
{
    plan_model m, other;
    simple_model(&m, 4, 1 * MiB, 1 * MiB);
    simple_model(&other, 4, 2 * MiB, 1 * MiB);
    plan_machine hw = cpu_machine(1 * GiB);
    plan_request q = {.cpu_only = true};
    plan_result r;
    plan_compute(&m, &hw, &q, &r);
    json_t *doc = plan_result_to_json(&m, &hw, &r);
    REQUIRE(doc);
    plan back;
    strata_error e = {0};
    CHECK(plan_from_json(doc, &other, &back, &e) == STRATA_E_FORMAT && strstr(e.message, "plan.groups[0].bytes") &&
              strstr(e.message, "another model"),
          " %s", e.message);
    plan_model fewer;
    simple_model(&fewer, 3, 1 * MiB, 1 * MiB);
    CHECK(plan_from_json(doc, &fewer, &back, &e) == STRATA_E_FORMAT && strstr(e.message, "3 layers") == NULL &&
              strstr(e.message, "\"plan.groups\" does not match this model's 4 groups"),
          " %s", e.message);
    json_t *pl = json_object_get(doc, "plan");
    json_object_set_new(pl, "kv_type", json_string("q8_0")); /* the engine runs quantized KV caches */
    CHECK(plan_from_json(doc, &m, &back, &e) == STRATA_OK && back.kv == PLAN_KV_Q8_0, " %s", e.message);
    plan_free(&back);
    json_object_set_new(pl, "kv_type", json_string("q9_9"));
    CHECK(plan_from_json(doc, &m, &back, &e) == STRATA_E_FORMAT && strstr(e.message, "plan.kv_type"), " %s",
          e.message);
    json_object_set_new(pl, "kv_type", json_string("f16"));
    json_object_set_new(pl, "n_ctx", json_integer(0));
    CHECK(plan_from_json(doc, &m, &back, &e) == STRATA_E_FORMAT && strstr(e.message, "plan.n_ctx"), " %s", e.message);
    json_object_set_new(pl, "n_ctx", json_integer(1024));
    json_object_set_new(json_array_get(json_object_get(pl, "groups"), 2), "tier", json_string("gpu"));
    CHECK(plan_from_json(doc, &m, &back, &e) == STRATA_E_FORMAT && strstr(e.message, "plan.groups[2]"), " %s",
          e.message);
    json_object_set_new(json_array_get(json_object_get(pl, "groups"), 2), "tier", json_string("disk"));
    CHECK(plan_from_json(doc, &m, &back, &e) == STRATA_OK && back.tier[2] == TIER_DISK && back.tier[1] == TIER_RAM,
          " %s", e.message);
    plan_free(&back);
    json_decref(doc);
    plan_result_free(&r);
    /* a CPU-only request for a q8_0 KV cache: planned and runnable (the engine runs it) */
    q.kv = PLAN_KV_Q8_0;
    plan_compute(&m, &hw, &q, &r);
    CHECK(r.chosen.feasible && r.chosen.runnable && r.chosen.kv == PLAN_KV_Q8_0, " %s", r.chosen.reason);
    plan_result_free(&r);
    free_model(&m);
    free_model(&other);
    free_model(&fewer);
}
