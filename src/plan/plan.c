/* Placement search and the cost model. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan/plan.h"
#include "plan/placement.h"
#include "plan/plan_experts.h"
#include "store/store.h"
#include "util/fmt.h"

#define DEFAULT_DEPTH 2
#define MIN_AUTO_CTX 256
#define VRAM_BW_GUESS 300e9 /* when a profile gives no GPU memory bandwidth */
#define LINK_BW_GUESS 8e9   /* nor a host-to-device bandwidth (PCIe 3.0 x8 / 4.0 x4) */

static uint64_t kv_per_token(const plan_model *m, plan_kv kv)
{
    return kv == PLAN_KV_Q8_0 ? m->kv_bytes_per_token_q8 : kv == PLAN_KV_Q4_0 ? m->kv_bytes_per_token_q4
                                                                               : m->kv_bytes_per_token;
}

const char *plan_kv_name(plan_kv kv) { return kv == PLAN_KV_Q8_0 ? "q8_0" : kv == PLAN_KV_Q4_0 ? "q4_0" : "f16"; }

static void text(char *dst, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text(char *dst, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, PLAN_TEXT, fmt, ap);
    va_end(ap);
}

/* ---- one candidate ---- */

/* How a mixture of experts is placed (ignored without experts). */
typedef enum moe_mode {
    MOE_STORE = 0,      /* the store's rule: the dense groups placed next to the least expert cache, the
                           cache gets what remains */
    MOE_ALL_RESIDENT,   /* every dense group and every expert unit in RAM */
    MOE_DENSE_RESIDENT, /* every dense group in RAM, the cache gets what remains */
    MOE_ALL_STREAMED,   /* every dense group streamed, the least expert cache */
    MOE_CPU_SPLIT,      /* llama.cpp --n-cpu-moe N: the model on the GPUs but the experts of the first N
                           layers, resident in RAM */
} moe_mode;

typedef struct candidate {
    const char *label;
    uint32_t n_ctx;
    plan_kv kv;
    bool use_gpu, kv_on_gpu, over_link;
    moe_mode moe;
    uint32_t n_cpu_moe; /* MOE_CPU_SPLIT */
    bool mixed;         /* after the resident layers, the GPU streams over the link the groups it runs faster
                           than the CPU (their KV caches in VRAM), the CPU runs the rest */
} candidate;

/* Layer g's experts, or NULL. */
static const plan_expert_set *expert_set(const plan_model *m, uint32_t g)
{
    return g < m->n_expert_sets && m->experts && m->experts[g].n_expert ? &m->experts[g] : NULL;
}

static bool has_experts(const plan_model *m)
{
    for (uint32_t g = 0; g < m->n_expert_sets; g++)
        if (expert_set(m, g)) return true;
    return false;
}

static uint64_t set_bytes(const plan_expert_set *e) { return (uint64_t)e->n_expert * e->unit_bytes; }
static uint32_t set_used(const plan_expert_set *e) { return e->n_used < e->n_expert ? e->n_used : e->n_expert; }

/* What group g occupies on a GPU: its bytes, and its experts' unless the
 * candidate keeps them on the CPU. */
static uint64_t gpu_group_bytes(const plan_model *m, const candidate *c, uint32_t g)
{
    const plan_expert_set *e = expert_set(m, g);
    return m->groups[g].bytes + (e && !(c->moe == MOE_CPU_SPLIT && g < c->n_cpu_moe) ? set_bytes(e) : 0);
}

/* The KV bytes per token of group g: the model's total split over its
 * layers (the remainder spread so that the parts add up exactly); the
 * output group has none. */
static uint64_t kv_layer_tok(const plan_model *m, plan_kv kv, uint32_t g)
{
    uint64_t n_layers = m->n_groups - 1, t = kv_per_token(m, kv);
    return g < n_layers ? t * (g + 1) / n_layers - t * g / n_layers : 0;
}

/* What a GPU keeps for compute buffers and the driver: 10%, at least 256 MiB. */
static uint64_t gpu_reserve(uint64_t vram) { return vram / 10 > (256ull << 20) ? vram / 10 : 256ull << 20; }

static double vram_bw(const plan_gpu *g) { return g->vram_bw > 0 ? g->vram_bw : VRAM_BW_GUESS; }
static double link_bw(const plan_machine *hw)
{
    return hw->n_gpus && hw->gpus[0].link_bw > 0 ? hw->gpus[0].link_bw : LINK_BW_GUESS;
}
static double gpu_flops(const plan_gpu *g)
{
    return g->mm_flops > 0 ? g->mm_flops : PLAN_GPU_FLOP_PER_BYTE * vram_bw(g);
}

/* The first `limit` groups in execution order go to the GPUs while VRAM
 * lasts (their KV too when kv_on_gpu), the fastest GPU first: then more
 * memory on any GPU never moves a layer to a slower device. Returns the
 * number placed. */
static uint32_t assign_gpus(const plan_model *m, const plan_machine *hw, const candidate *c, uint32_t limit, plan *p)
{
    int order[PLAN_MAX_GPUS], n_gpus = hw->n_gpus < PLAN_MAX_GPUS ? hw->n_gpus : PLAN_MAX_GPUS;
    for (int i = 0; i < n_gpus; i++) { /* stable insertion sort by bandwidth, descending */
        int j = i;
        for (; j > 0 && vram_bw(&hw->gpus[order[j - 1]]) < vram_bw(&hw->gpus[i]); j--) order[j] = order[j - 1];
        order[j] = i;
    }
    uint32_t g = 0;
    for (int i = 0; i < n_gpus && g < limit; i++) {
        int d = order[i];
        uint64_t reserve = gpu_reserve(hw->gpus[d].vram);
        uint64_t room = hw->gpus[d].vram > reserve ? hw->gpus[d].vram - reserve : 0;
        uint32_t first = g;
        for (; g < limit; g++) {
            uint64_t kv = c->kv_on_gpu ? kv_layer_tok(m, c->kv, g) * c->n_ctx : 0, bytes = gpu_group_bytes(m, c, g);
            if (bytes + kv > room || m->groups[g].no_gpu) break;
            room -= bytes + kv;
            p->tier[g] = (int8_t)d;
            p->gpu[d].weights += bytes;
            p->gpu[d].kv += kv;
        }
        if (g > first) p->gpu[d].buffers = reserve; /* only a GPU in use needs it */
    }
    return g;
}

/* What crosses the link for group g per token: the group and the experts
 * a token is routed to. */
static uint64_t link_group_bytes(const plan_model *m, uint32_t g)
{
    const plan_expert_set *e = expert_set(m, g);
    return m->groups[g].bytes + (e ? set_used(e) * e->unit_bytes : 0);
}

/* Weights streamed over the link live in RAM (or stream from disk through
 * it) and cross to GPU 0 every token, which holds two groups (with their
 * routed experts) in flight next to its reserve. */
static bool reserve_link(const plan_model *m, const plan_machine *hw, plan *p)
{
    uint64_t largest = 0;
    for (uint32_t g = 0; g < m->n_groups; g++)
        if (link_group_bytes(m, g) > largest) largest = link_group_bytes(m, g);
    uint64_t inflight = (m->n_groups < 2 ? m->n_groups : 2) * largest;
    uint64_t vram = hw->n_gpus ? hw->gpus[0].vram : 0, reserve = gpu_reserve(vram);
    if (!hw->n_gpus || vram < reserve || vram - reserve < inflight) {
        char a[32], b[32];
        text(p->reason, "GPU 0 has %s of memory; two layers in flight need %s next to its reserve",
             fmt_bytes(vram, a, 32), fmt_bytes(inflight + reserve, b, 32));
        return false;
    }
    p->gpu[0].weights = inflight;
    p->gpu[0].buffers = reserve;
    return true;
}

static uint64_t buffers(const plan_model *m, uint32_t n_ctx)
{
    uint32_t batch = m->batch < n_ctx ? m->batch : n_ctx;
    return m->buffer_fixed + m->buffer_per_ctx * n_ctx + m->buffer_per_batch * batch;
}

static uint64_t ram_fixed(const plan_model *m, const candidate *c, uint64_t kv_in_ram)
{
    return m->process_reserve + m->store_fixed + buffers(m, c->n_ctx) + kv_in_ram;
}

/* The experts the CPU computes: units, the largest unit slot, and their
 * bytes at their own unit sizes (what the --n-cpu-moe split keeps). */
static void cpu_experts(const plan_model *m, const plan *p, uint32_t *units, uint64_t *slot, uint64_t *bytes)
{
    *units = 0;
    *slot = *bytes = 0;
    for (uint32_t g = 0; g < m->n_expert_sets && g < m->n_groups; g++) {
        const plan_expert_set *e = expert_set(m, g);
        if (!e || plan_experts_on_gpu(p, g)) continue;
        *units += e->n_expert;
        *bytes += set_bytes(e);
        if (e->unit_bytes > *slot) *slot = e->unit_bytes;
    }
}

/* The CPU's share of the weights: groups [first, n) resident in RAM or
 * streamed through the ring, by the placement rule (placement.h), and the
 * experts of the layers the CPU computes in the expert cache: the dense
 * groups are placed under the weight budget W less the units the candidate
 * reserves (the least cache: PLAN_EXPERT_MIN_SLOTS units; all of them for
 * MOE_ALL_RESIDENT); the ring's slots are as large as the largest streamed
 * group (as the store builds its ring); the cache gets min(units, what
 * remains / slot) (placement_expert_slots, as an engine without a plan). */
static bool place_cpu(const plan_model *m, const plan_machine *hw, const plan_request *req, const candidate *c,
                      uint32_t first, uint64_t fixed, plan *p)
{
    uint32_t n = m->n_groups - first, units;
    uint64_t U, split_bytes;
    cpu_experts(m, p, &units, &U, &split_bytes);
    uint32_t min_units = units < PLAN_EXPERT_MIN_SLOTS ? units : PLAN_EXPERT_MIN_SLOTS;
    moe_mode mode = units ? c->moe : MOE_STORE;
    uint64_t reserved = mode == MOE_ALL_RESIDENT ? (uint64_t)units * U
                        : mode == MOE_CPU_SPLIT  ? split_bytes
                                                 : (uint64_t)min_units * U;
    p->ram.buffers = buffers(m, p->n_ctx);
    p->ram.overhead = m->process_reserve + m->store_fixed;
    uint64_t *bytes = malloc((n ? n : 1) * sizeof *bytes);
    if (!bytes) return false;
    uint64_t dense = 0;
    for (uint32_t i = 0; i < n; i++) dense += bytes[i] = m->groups[first + i].bytes;
    placement pl = {0};
    /* W: the weight budget; placement_choose reads a budget of 0 as unlimited: 1 byte means nothing fits */
    uint64_t W = hw->ram_budget > fixed ? hw->ram_budget - fixed : 0;
    uint64_t dense_budget = W > reserved ? W - reserved : 1;
    bool force_resident = mode == MOE_ALL_RESIDENT || mode == MOE_DENSE_RESIDENT || mode == MOE_CPU_SPLIT;
    bool ok;
    if (n == 0) ok = fixed <= hw->ram_budget && reserved <= W;
    else if (force_resident) {
        ok = placement_choose(n, bytes, 0, req->prefetch_depth, false, &pl) && dense + reserved <= W;
        pl.min_bytes = dense;
    } else {
        ok = placement_choose(n, bytes, dense_budget, req->prefetch_depth, mode == MOE_ALL_STREAMED, &pl) &&
             W > reserved;
    }
    if (ok) {
        uint64_t largest_streamed = 0;
        for (uint32_t i = 0; i < n; i++) {
            p->tier[first + i] = pl.resident[i] ? TIER_RAM : TIER_DISK;
            if (!pl.resident[i] && bytes[i] > largest_streamed) largest_streamed = bytes[i];
        }
        p->slot_bytes = pl.n_slots ? largest_streamed : 0;
        p->n_slots = pl.n_slots;
        uint64_t used = pl.resident_bytes + (uint64_t)p->n_slots * p->slot_bytes;
        uint32_t slots = units;
        if (mode == MOE_ALL_STREAMED) slots = min_units;
        else if (mode == MOE_STORE || mode == MOE_DENSE_RESIDENT) {
            slots = W ? placement_expert_slots(W, used, U, units, min_units) : min_units;
        }
        p->expert_units = units;
        p->expert_slots = slots;
        p->expert_slot_bytes = U;
        p->ram.weights = used + (mode == MOE_CPU_SPLIT ? split_bytes : (uint64_t)slots * U);
    } else {
        char a[32], b[32], how[80] = "";
        if (mode == MOE_ALL_RESIDENT) snprintf(how, sizeof how, " to hold every layer and expert");
        else if (mode == MOE_CPU_SPLIT) snprintf(how, sizeof how, " to hold the experts of %u layers", c->n_cpu_moe);
        else if (units)
            snprintf(how, sizeof how, "%s and %u expert unit%s", mode == MOE_DENSE_RESIDENT ? " with every dense layer "
                     "resident" : n ? " streaming every layer" : "", min_units, min_units == 1 ? "" : "s");
        else if (n) snprintf(how, sizeof how, " even streaming every layer");
        text(p->reason, "needs at least %s of memory at context %u%s; the budget is %s",
             fmt_bytes(fixed + pl.min_bytes + reserved, a, 32), p->n_ctx, how, fmt_bytes(hw->ram_budget, b, 32));
    }
    free(pl.resident);
    free(bytes);
    return ok;
}

/* Seconds over `bytes` of weights, each type at its rate[type], the rest
 * (and every type without a rate of its own) at `bw`. */
static double typed_seconds(const double rate[PLAN_WT_COUNT], uint64_t bytes, const uint64_t type_bytes[PLAN_WT_COUNT],
                            double bw)
{
    double t = 0;
    uint64_t priced = 0;
    for (int k = 0; k < PLAN_WT_COUNT; k++) {
        if (!type_bytes[k] || priced + type_bytes[k] > bytes) continue;
        t += (double)type_bytes[k] / (rate[k] > 0 ? rate[k] : bw);
        priced += type_bytes[k];
    }
    return t + (double)(bytes - priced) / bw;
}

/* Seconds the CPU takes over `bytes` of resident weights per token: each
 * type the calibration priced at its own rate, the rest at `bw`. */
static double cpu_weights_seconds(const plan_machine *hw, uint64_t bytes, const uint64_t type_bytes[PLAN_WT_COUNT],
                                  double bw)
{
    return hw->engine_bw > 0 ? typed_seconds(hw->engine_type_bw, bytes, type_bytes, bw) : (double)bytes / bw;
}

/* Seconds one more token adds to a many-token step over `bytes` of the
 * CPU's weights (the tile kernels' calibrated rates; types without one at
 * Q4_K's); 0 without that calibration. */
static double cpu_tile_seconds(const plan_machine *hw, uint64_t bytes, const uint64_t type_bytes[PLAN_WT_COUNT])
{
    double q4 = hw->engine_tile_bw[PLAN_WT_Q4_K];
    return q4 > 0 ? typed_seconds(hw->engine_tile_bw, bytes, type_bytes, q4) : 0;
}

/* Whether the weights the CPU computes on stay in its last-level cache
 * between tokens (a model of a few MB such as stories260K): all of them
 * resident, and with the KV cache a token reads at most half the cache. */
static bool weights_in_cache(const plan_machine *hw, const plan *p, uint64_t cpu_weight_bytes, uint64_t kv_read)
{
    if (!hw->cache_bytes || !cpu_weight_bytes || cpu_weight_bytes + kv_read > hw->cache_bytes / 2) return false;
    for (uint32_t g = 0; g < p->n_groups; g++)
        if (p->tier[g] == TIER_DISK || p->site[g] == PLAN_SITE_LINK) return false;
    return !p->expert_units || p->expert_slots >= p->expert_units;
}

/* ---- the CPU's share of a pass ---- */

typedef struct cpu_share {
    uint64_t elems, weight_bytes, groups;
    uint64_t type_bytes[PLAN_WT_COUNT];
    double width; /* sum over its layers of sqrt(elems): their width (engine_width_s) */
} cpu_share;

static void share_add_group(cpu_share *s, const plan_model *m, uint32_t g)
{
    const plan_group *gr = &m->groups[g];
    s->elems += gr->elems;
    if (g + 1 < m->n_groups) s->width += sqrt((double)gr->elems); /* a layer (the last group: output) */
    s->weight_bytes += gr->weight_bytes;
    for (int k = 0; k < PLAN_WT_COUNT; k++) s->type_bytes[k] += gr->type_bytes[k];
    s->groups++;
}

static double kernel_bw_of(const plan_machine *hw)
{
    return hw->engine_bw > 0 ? hw->engine_bw : hw->kernel_ram_bw > 0 ? hw->kernel_ram_bw : hw->ram_bw;
}

/* The CPU's share of a decoded token: *t_compute at the in-cache rate (with
 * the engine's per-group and per-token costs when the weights stay in
 * cache), *t_ram its weights through the kernels at their measured rate
 * from RAM and `other` bytes (KV cache, weights bound for the GPU) at the
 * raw read bandwidth. */
static void cpu_pass_seconds(const plan_machine *hw, const cpu_share *s, uint64_t other, bool in_cache,
                             double *t_compute, double *t_ram)
{
    double fixed_s = hw->engine_bw > 0 && s->groups ? (double)s->groups * hw->engine_layer_s + hw->engine_token_s +
                                                          s->width * hw->engine_width_s
                                                    : 0;
    *t_compute = hw->cpu_rate > 0 ? (double)s->elems / hw->cpu_rate : 0;
    if (in_cache) { /* nothing comes from RAM but the KV cache: the CPU's work is the time */
        *t_compute += fixed_s;
        *t_ram = hw->ram_bw > 0 ? (double)other / hw->ram_bw : 0;
    } else {
        *t_ram = hw->ram_bw > 0 ? cpu_weights_seconds(hw, s->weight_bytes, s->type_bytes, kernel_bw_of(hw)) +
                                      fixed_s + (double)other / hw->ram_bw
                                : 0;
    }
}

/* A step of B tokens over the CPU's share: B tokens share each pass over
 * the weights. With the tile kernels calibrated, a step costs the decode
 * step's pass over the weights plus B x their time per token; without,
 * compute scales with B. */
static double cpu_step_compute(const plan_machine *hw, const cpu_share *s, double t_compute, double tb_ram,
                               bool in_cache, double B)
{
    double tile = cpu_tile_seconds(hw, s->weight_bytes, s->type_bytes);
    return tile > 0 ? (in_cache ? t_compute : tb_ram) + B * tile : B * t_compute;
}

/* ---- GPU sites ---- */

/* Seconds group g takes on a GPU for a step of B tokens: its weights (and
 * kv bytes of KV cache) read once, or its products' 2 x elems FLOP per
 * token, whichever takes longer. */
static double gpu_group_seconds(const plan_group *gr, uint64_t kv, double B, const plan_gpu *gpu)
{
    double read = (double)(gr->weight_bytes + kv) / vram_bw(gpu);
    double math = B * 2.0 * (double)gr->elems / gpu_flops(gpu);
    return read > math ? read : math;
}

/* What streaming group g costs before GPU 0 can compute it: the host's copy
 * from RAM into the staging (at RAM bandwidth), then the copy over the link. */
static double link_transfer_seconds(const plan_machine *hw, const plan_group *gr)
{
    return (double)gr->bytes / link_bw(hw) + (hw->ram_bw > 0 ? (double)gr->bytes / hw->ram_bw : 0);
}

/* Group g's read from disk, when its tier streams it from there. */
static double group_disk_seconds(const plan_machine *hw, const plan_model *m, uint32_t g, int8_t tier)
{
    return tier == TIER_DISK && hw->disk_bw > 0 ? (double)m->groups[g].bytes / hw->disk_bw : 0;
}

/* Seconds group g takes on the CPU for a step of B tokens, on its own: its
 * weights from RAM (or disk) and its compute. */
static double cpu_group_seconds(const plan_machine *hw, const plan_model *m, uint32_t g, int8_t tier, double B)
{
    cpu_share s = {0};
    share_add_group(&s, m, g);
    double t_compute, t_ram;
    cpu_pass_seconds(hw, &s, 0, false, &t_compute, &t_ram);
    if (hw->engine_bw > 0) t_ram -= hw->engine_token_s; /* a token's, not a group's */
    double compute = cpu_step_compute(hw, &s, t_compute, t_ram, false, B), t = compute > t_ram ? compute : t_ram;
    double disk = group_disk_seconds(hw, m, g, tier);
    return t > disk ? t : disk;
}

/* Seconds group g takes streamed to GPU 0 for a step of B tokens when its
 * copy overlaps the previous streamed group's compute (a run of them). */
static double link_group_seconds(const plan_machine *hw, const plan_model *m, uint32_t g, uint64_t kv, double B)
{
    double compute = gpu_group_seconds(&m->groups[g], kv, B, &hw->gpus[0]);
    double x = link_transfer_seconds(hw, &m->groups[g]);
    return compute > x ? compute : x;
}

/* The groups a pass of B tokens streams over the link (sites[g] ==
 * PLAN_SITE_LINK), in order: each costs its compute on GPU 0 plus the part
 * of its transfer not hidden behind the previous group's compute (the
 * ring of PLAN_GPU_STREAM_DEPTH >= 2 entries copies a group while the one
 * before it computes, when that one is streamed too; depth 1 hides
 * nothing). Returns the sum; *transfer, *compute: the transfers' and the
 * computes' sums. kv_pos: positions of KV cache a streamed layer reads on
 * the GPU (0: its cache is elsewhere). */
static double stream_seconds(const plan_model *m, const plan_machine *hw, const candidate *c, const uint8_t *sites,
                             double B, uint64_t kv_pos, double *transfer, double *compute)
{
    double t = 0, prev = 0;
    bool prev_streamed = false;
    *transfer = *compute = 0;
    for (uint32_t g = 0; g < m->n_groups && hw->n_gpus; g++) {
        if (sites[g] != PLAN_SITE_LINK) {
            prev_streamed = false;
            continue;
        }
        double run = gpu_group_seconds(&m->groups[g], kv_layer_tok(m, c->kv, g) * kv_pos, B, &hw->gpus[0]);
        double x = link_transfer_seconds(hw, &m->groups[g]);
        double hidden = prev_streamed && PLAN_GPU_STREAM_DEPTH >= 2 ? prev : 0;
        t += run + (x > hidden ? x - hidden : 0);
        *transfer += x;
        *compute += run;
        prev = run;
        prev_streamed = true;
    }
    return t;
}

/* The layers resident on GPUs for a step of B tokens (their KV caches, at
 * kv_pos positions, there when kv_on_gpu). */
static double resident_step_seconds(const plan_model *m, const plan_machine *hw, const candidate *c, const plan *p,
                                    double B, uint64_t kv_pos)
{
    double t = 0;
    for (uint32_t g = 0; g < m->n_groups; g++)
        if (p->site[g] == PLAN_SITE_GPU)
            t += gpu_group_seconds(&m->groups[g], c->kv_on_gpu ? kv_layer_tok(m, c->kv, g) * kv_pos : 0, B,
                                   &hw->gpus[p->tier[g]]);
    return t;
}

/* A token's time on a plan that uses a GPU: the layers run one after the
 * other, so each site's time adds up: the CPU's layers (their compute, RAM
 * and disk reads overlapping as on a CPU plan), the GPU's resident layers
 * (their VRAM reads), and the layers streamed over the link (stream:
 * stream_seconds, with their transfers' and computes' sums). t_vram_link,
 * t_ram_link: the VRAM and RAM reads of the streamed weights (in t_vram,
 * t_ram). Sets the bottleneck to the site that takes longest. */
static double gpu_token_seconds(plan *p, double stream, double transfer, double compute, double t_vram_link,
                                double t_ram_link)
{
    double cpu = p->t_compute, resident = p->t_vram - t_vram_link, ram = p->t_ram - t_ram_link;
    const char *cpu_name = "compute";
    if (ram > cpu) cpu = ram, cpu_name = "RAM bandwidth";
    if (p->t_disk > cpu) cpu = p->t_disk, cpu_name = "disk";
    const char *stream_name = transfer > compute ? "GPU link" : "VRAM bandwidth";
    p->bottleneck = cpu >= resident && cpu >= stream ? cpu_name : resident >= stream ? "VRAM bandwidth" : stream_name;
    return cpu + (resident > 0 ? resident : 0) + stream;
}

static bool any_site(const plan *p, const uint8_t *sites, plan_site s)
{
    for (uint32_t g = 0; g < p->n_groups; g++)
        if (sites[g] == s) return true;
    return false;
}

static bool sites_use_gpu(const plan *p, const uint8_t *sites)
{
    return any_site(p, sites, PLAN_SITE_GPU) || any_site(p, sites, PLAN_SITE_LINK);
}

/* The largest of a pass's times on each resource (they overlap: the pass
 * takes the longest), *name the resource ("compute" when all are 0). */
static double slowest_term(double compute, double ram, double disk, double link, double vram, const char **name)
{
    const struct { double t; const char *name; } terms[] = {
        {compute, "compute"}, {ram, "RAM bandwidth"}, {disk, "disk"}, {link, "GPU link"}, {vram, "VRAM bandwidth"},
    };
    double t = 0;
    *name = "compute";
    for (size_t i = 0; i < sizeof terms / sizeof terms[0]; i++)
        if (terms[i].t > t) t = terms[i].t, *name = terms[i].name;
    return t;
}

/* ---- the cost of a placement: bytes each tier moves per decoded token, the times they take ---- */

/* What a decoded token reads where (cost() gathers it; the prompt batch
 * starts from it). */
typedef struct token_reads {
    uint64_t pos;                     /* KV positions attention reads: PLAN_DECODE_POS, at most the context */
    uint64_t gpu_read[PLAN_MAX_GPUS]; /* bytes each GPU reads */
    uint64_t kv_gpu_tok;              /* KV bytes per position in VRAM */
    uint64_t link_vram;               /* of gpu_read[0]: weights streamed over the link */
    uint64_t expert_link;             /* routed experts' bytes crossing the link */
    cpu_share share, pf_share;        /* the CPU's groups when decoding, and for a prompt batch */
    uint64_t other;                   /* RAM bytes besides the CPU's weights: KV cache, weights bound for the GPU */
    bool in_cache;                    /* the CPU's weights stay in its cache (weights_in_cache) */
} token_reads;

/* Group g's reads for a decoded token on its decode site: VRAM (its KV
 * too when there), the link, RAM (the CPU's share), disk. */
static void add_group_reads(const plan_model *m, const candidate *c, uint32_t g, token_reads *r, plan *p)
{
    const plan_group *gr = &m->groups[g];
    int8_t t = p->tier[g];
    if (p->site[g] == PLAN_SITE_GPU) {
        uint64_t kv = c->kv_on_gpu ? kv_layer_tok(m, c->kv, g) : 0;
        r->gpu_read[t] += gr->weight_bytes + kv * r->pos;
        r->kv_gpu_tok += kv;
        return;
    }
    if (p->site[g] == PLAN_SITE_LINK) { /* from RAM across the link, computed on GPU 0 */
        uint64_t kv = c->kv_on_gpu ? kv_layer_tok(m, c->kv, g) : 0; /* the mixed plan's: in VRAM */
        r->gpu_read[0] += gr->weight_bytes + kv * r->pos;
        r->link_vram += gr->weight_bytes + kv * r->pos;
        r->kv_gpu_tok += kv;
        p->link_bytes_per_token += gr->bytes;
        p->ram_bytes_per_token += gr->bytes;
    } else {
        share_add_group(&r->share, m, g);
        if (p->prefill_site[g] == PLAN_SITE_CPU) share_add_group(&r->pf_share, m, g);
        p->ram_bytes_per_token += gr->weight_bytes;
    }
    if (t == TIER_DISK) p->disk_bytes_per_token += gr->bytes;
}

/* The decoded token's time on each resource (t_vram with the GPUs' host
 * waits, t_compute, t_ram, t_disk, t_link): layers run one after the
 * other, on whichever device holds them. Sets r->in_cache and r->other. */
static void decode_resource_seconds(const plan_model *m, const plan_machine *hw, const candidate *c, token_reads *r,
                                    plan *p)
{
    p->t_vram = 0;
    for (int d = 0; d < hw->n_gpus && d < PLAN_MAX_GPUS; d++) {
        p->vram_bytes_per_token += r->gpu_read[d];
        p->t_vram += (double)r->gpu_read[d] / vram_bw(&hw->gpus[d]);
    }
    p->t_vram += p->gpu_wait_s;
    r->in_cache = weights_in_cache(hw, p, r->share.weight_bytes, r->pos * kv_per_token(m, c->kv));
    r->other = p->ram_bytes_per_token - r->share.weight_bytes;
    cpu_pass_seconds(hw, &r->share, r->other, r->in_cache, &p->t_compute, &p->t_ram);
    p->t_disk = hw->disk_bw > 0 && p->disk_bytes_per_token > m->embd_row_bytes
                    ? (double)p->disk_bytes_per_token / hw->disk_bw : 0;
    p->t_link = (double)p->link_bytes_per_token / link_bw(hw);
}

/* A decoded token's seconds on a plan that uses a GPU for it: the sites
 * add up (gpu_token_seconds), with the experts streamed over the link
 * crossing it and read on GPU 0 apart from their layers. */
static double gpu_decode_seconds(const plan_model *m, const plan_machine *hw, const candidate *c,
                                 const token_reads *r, plan *p)
{
    double expert_link_s = (double)r->expert_link / link_bw(hw);
    double transfer, compute;
    double stream = stream_seconds(m, hw, c, p->site, 1, c->kv_on_gpu ? r->pos : 0, &transfer, &compute);
    double link_weights_vram = hw->n_gpus ? (double)r->link_vram / vram_bw(&hw->gpus[0]) : 0;
    /* what stream_seconds does not price: the routed experts over the link, and KV reads of an all-link plan */
    double rest = link_weights_vram - compute > 0 ? link_weights_vram - compute : 0;
    return gpu_token_seconds(p, stream + expert_link_s + rest, transfer + expert_link_s, compute + rest,
                             link_weights_vram, hw->ram_bw > 0 ? (double)p->link_bytes_per_token / hw->ram_bw : 0);
}

/* Sets decode_tps and the bottleneck: on a GPU plan the sites' sum, on a
 * CPU plan the slowest resource. */
static void price_decode(const plan_model *m, const plan_machine *hw, const candidate *c, token_reads *r, plan *p)
{
    decode_resource_seconds(m, hw, c, r, p);
    p->bottleneck = "compute";
    double t = sites_use_gpu(p, p->site)
                   ? gpu_decode_seconds(m, hw, c, r, p)
                   : slowest_term(p->t_compute, p->t_ram, p->t_disk, p->t_link, p->t_vram, &p->bottleneck);
    p->decode_tps = t > 0 ? 1.0 / t : 0;
}

/* What a batch of B tokens adds over one token's experts: the batch is
 * routed to more of them, each read once. Bytes from disk, from RAM
 * through the kernels (ram) or raw into the staging (raw), over the link;
 * seconds of VRAM reads. */
typedef struct batch_extra {
    double disk, ram, raw, link, vram_s;
    double used_vram_s; /* the experts one token reads on the GPUs (in t_vram, not in a GPU step's groups) */
} batch_extra;

static batch_extra batch_expert_reads(const plan_model *m, const plan_machine *hw, const plan_request *req,
                                      const candidate *c, const plan *p, const expert_estimate *kept, double B)
{
    batch_extra x = {0};
    for (uint32_t g = 0; g < m->n_expert_sets && g < m->n_groups; g++) {
        const plan_expert_set *e = expert_set(m, g);
        if (!e) continue;
        double more = plan_experts_in_batch(e, B) - set_used(e);
        if (plan_experts_on_gpu(p, g)) {
            x.vram_s += more * (double)e->unit_weight_bytes / vram_bw(&hw->gpus[p->tier[g]]);
            x.used_vram_s += (double)set_used(e) * (double)e->unit_weight_bytes / vram_bw(&hw->gpus[p->tier[g]]);
            continue;
        }
        double token_misses = set_used(e) * (1 - plan_experts_hit_rate(m, g, p, req, kept));
        x.disk += (plan_experts_batch_misses(m, g, p, req, kept, B) - token_misses) * (double)e->unit_bytes;
        if (c->over_link) x.link += more * (double)e->unit_bytes, x.raw += more * (double)e->unit_bytes;
        else x.ram += more * (double)e->unit_weight_bytes;
    }
    return x;
}

/* The KV bytes per position of the layers a prompt batch streams to the
 * GPU while they decode on the CPU: their caches stay in RAM, and the CPU
 * attends for them (`attend` in forward.c). */
static uint64_t prompt_only_kv_tok(const plan_model *m, const candidate *c, const plan *p)
{
    uint64_t kv = 0;
    for (uint32_t g = 0; g < m->n_groups; g++)
        if (p->site[g] == PLAN_SITE_CPU && p->prefill_site[g] == PLAN_SITE_LINK) kv += kv_layer_tok(m, c->kv, g);
    return kv;
}

/* Seconds the CPU attends for those layers in a batch of B tokens, a
 * prompt's first (positions 0 to B - 1, each token reading the cache up
 * to its own): B (B + 1) / 2 positions of their KV caches, read at the RAM
 * rate a decoded token's attention is priced at. It grows with the square
 * of the batch, as the CPU's attention does. */
static double prompt_only_attention_seconds(const plan_machine *hw, uint64_t kv_tok, double B)
{
    return hw->ram_bw > 0 ? (double)kv_tok * (B * (B + 1) / 2) / hw->ram_bw : 0;
}

/* The CPU's part of a prompt batch of B tokens on a plan that uses a GPU
 * for it: its groups of the prefill sites (compute, RAM and disk
 * overlapping: tb_compute, tb_ram, tb_disk), then its attention for the
 * layers streamed for the batch only (between their GPU products: added,
 * and in tb_ram). Sets the step's CPU figures and bottleneck; returns its
 * seconds. */
static double gpu_step_cpu_seconds(const plan_model *m, const plan_machine *hw, const candidate *c,
                                   const token_reads *r, const batch_extra *x, double tb_disk, double B, plan *p)
{
    /* the CPU reads neither the streamed groups nor, for the batch, the ones moved to the GPU; those
     * layers' KV caches it reads as it attends for them */
    uint64_t pf_kv = prompt_only_kv_tok(m, c, p), other = r->other - p->link_bytes_per_token - pf_kv * r->pos;
    double cpu_attn = prompt_only_attention_seconds(hw, pf_kv, B), t_compute, t_ram;
    cpu_pass_seconds(hw, &r->pf_share, other, r->in_cache, &t_compute, &t_ram);
    double tb_ram = t_ram + (hw->ram_bw > 0 ? x->ram / kernel_bw_of(hw) + x->raw / hw->ram_bw : 0);
    p->tb_compute = r->pf_share.groups ? cpu_step_compute(hw, &r->pf_share, t_compute, tb_ram, r->in_cache, B) : 0;
    p->tb_ram = tb_ram + cpu_attn;
    p->tb_disk = tb_disk;
    double cpu = p->tb_compute;
    p->step_bottleneck = "compute";
    if (tb_ram > cpu) cpu = tb_ram, p->step_bottleneck = "RAM bandwidth";
    if (tb_disk > cpu) cpu = tb_disk, p->step_bottleneck = "disk";
    return cpu + cpu_attn;
}

/* A prompt batch of B tokens on a plan that uses a GPU for it: the CPU's
 * part (gpu_step_cpu_seconds), then the resident layers, then the
 * streamed ones, each transfer once per batch, and the experts' added VRAM
 * and link seconds and the GPUs' host waits. Sets the step's figures and bottleneck; returns its
 * seconds. */
static double gpu_prefill_seconds(const plan_model *m, const plan_machine *hw, const candidate *c,
                                  const token_reads *r, const batch_extra *x, double tb_disk, double B, plan *p)
{
    double cpu = gpu_step_cpu_seconds(m, hw, c, r, x, tb_disk, B, p);
    double extra =
        x->vram_s + x->used_vram_s + p->gpu_wait_s + (double)r->expert_link / link_bw(hw) + x->link / link_bw(hw);
    double transfer, compute;
    double stream = stream_seconds(m, hw, c, p->prefill_site, B, 0, &transfer, &compute);
    double resident = resident_step_seconds(m, hw, c, p, B, r->pos);
    p->tb_link = transfer;
    p->tb_vram = resident + compute + extra;
    if (resident + extra > cpu && resident + extra >= stream) p->step_bottleneck = "VRAM bandwidth";
    else if (stream > cpu && stream > resident + extra) p->step_bottleneck = transfer > compute ? "GPU link"
                                                                                                : "VRAM bandwidth";
    return cpu + resident + stream + extra;
}

/* A prompt batch of B tokens on a CPU plan: B tokens share each pass over
 * the weights (cpu_step_compute); the resources overlap. */
static double cpu_prefill_seconds(const plan_machine *hw, const token_reads *r, const batch_extra *x, double tb_disk,
                                  double B, plan *p)
{
    double tb_ram = p->t_ram + (hw->ram_bw > 0 ? x->ram / kernel_bw_of(hw) + x->raw / hw->ram_bw : 0);
    p->tb_compute = cpu_step_compute(hw, &r->share, p->t_compute, tb_ram, r->in_cache, B);
    p->tb_ram = tb_ram;
    p->tb_disk = tb_disk;
    p->tb_link = p->t_link + x->link / link_bw(hw);
    p->tb_vram = p->t_vram + x->vram_s;
    return slowest_term(p->tb_compute, p->tb_ram, p->tb_disk, p->tb_link, p->tb_vram, &p->step_bottleneck);
}

/* Sets prefill_tps (and the step's figures): a batch of the request's
 * n_batch tokens. A group on disk is read from disk whichever site
 * computes it. */
static void price_prefill(const plan_model *m, const plan_machine *hw, const plan_request *req, const candidate *c,
                          const token_reads *r, const expert_estimate *kept, plan *p)
{
    double B = req->n_batch ? req->n_batch : 256;
    batch_extra x = batch_expert_reads(m, hw, req, c, p, kept, B);
    double disk_b = (double)p->disk_bytes_per_token + x.disk;
    double tb_disk = hw->disk_bw > 0 && disk_b > (double)m->embd_row_bytes ? disk_b / hw->disk_bw : 0;
    double tb = sites_use_gpu(p, p->prefill_site) ? gpu_prefill_seconds(m, hw, c, r, &x, tb_disk, B, p)
                                                  : cpu_prefill_seconds(hw, r, &x, tb_disk, B, p);
    p->prefill_tps = tb > 0 ? B / tb : 0;
}

/* The plan's bytes per token on each tier and its decode and prefill
 * predictions. */
static void cost(const plan_model *m, const plan_machine *hw, const plan_request *req, const candidate *c, plan *p)
{
    token_reads r = {.pos = c->n_ctx < PLAN_DECODE_POS ? c->n_ctx : PLAN_DECODE_POS};
    for (uint32_t g = 0; g < m->n_groups; g++) add_group_reads(m, c, g, &r, p);
    /* experts: a token reads the n_used it is routed to; those not cached come from disk */
    expert_estimate kept = req->moe_hit_rate_set ? (expert_estimate){0} : plan_experts_estimate(m, p);
    p->expert_hit_source = !p->expert_units                     ? NULL
                           : p->expert_slots >= p->expert_units ? "all resident"
                           : req->moe_hit_rate_set              ? "stated"
                           : m->routing_tokens                  ? (req->moe_lru ? "measured routing, LRU"
                                                                                 : "measured routing, LFU")
                           : req->moe_lru                       ? "uniform routing, LRU"
                                                                : "uniform routing, LFU";
    double expert_disk = 0, requests = 0, hits = 0;
    p->gpu_wait_s = 0;
    for (uint32_t g = 0; g < m->n_expert_sets && g < m->n_groups; g++) {
        const plan_expert_set *e = expert_set(m, g);
        if (!e) continue;
        uint64_t used = set_used(e), w = used * e->unit_weight_bytes;
        if (hw->n_gpus && (plan_experts_on_gpu(p, g) || c->over_link)) /* routed on the host between the GPU's ops */
            p->gpu_wait_s += hw->gpus[plan_experts_on_gpu(p, g) ? p->tier[g] : 0].round_trip_s;
        if (plan_experts_on_gpu(p, g)) {
            r.gpu_read[p->tier[g]] += w;
            continue;
        }
        double hit = plan_experts_hit_rate(m, g, p, req, &kept);
        requests += (double)used;
        hits += hit * (double)used;
        expert_disk += (1 - hit) * (double)(used * e->unit_bytes);
        if (c->over_link) {
            r.gpu_read[0] += w;
            r.link_vram += w;
            r.expert_link += used * e->unit_bytes;
            p->link_bytes_per_token += used * e->unit_bytes;
            p->ram_bytes_per_token += used * e->unit_bytes;
        } else {
            r.share.elems += used * e->unit_elems;
            r.share.weight_bytes += w;
            r.share.groups += p->tier[g] >= 0; /* its layer runs elsewhere: one more step on the CPU */
            p->ram_bytes_per_token += w;
        }
    }
    if (!p->phase_sites) r.pf_share = r.share; /* the experts' part too (a model with experts keeps one site vector) */
    p->expert_hit_rate = requests > 0 ? hits / requests : 1;
    p->expert_disk_bytes_per_token = (uint64_t)llround(expert_disk);
    p->disk_bytes_per_token += p->expert_disk_bytes_per_token;
    p->ram_bytes_per_token += (kv_per_token(m, c->kv) - r.kv_gpu_tok) * r.pos;
    p->disk_bytes_per_token += m->embd_row_bytes;
    price_decode(m, hw, c, &r, p);
    price_prefill(m, hw, req, c, &r, &kept, p);
    plan_experts_estimate_free(&kept);
}

/* Whether the engine executes a GPU plan as planned: one GPU (GPU 0), and
 * either a layer split with the GPU layers' KV caches on the GPU (the
 * engine keeps them there; with the mixed candidate the streamed layers'
 * too; a layer with experts takes them all along, not llama.cpp's
 * --n-cpu-moe split), or every group streamed over the link (a layer's
 * chosen experts only) with the KV caches fitting on GPU 0 next to the two
 * groups in flight (the engine keeps a streamed layer's KV cache in VRAM).
 * A CPU plan streaming groups to the GPU for prompt batches only keeps
 * every KV cache in RAM (not with experts: untested). */
static bool gpu_runnable(const plan_model *m, const plan_machine *hw, const candidate *c, const plan *p)
{
    if (!plan_uses_gpu(p)) return true;
    if (!hw->n_gpus || (m->n_expert_sets && !c->use_gpu)) return false;
    for (uint32_t g = 0; g < p->n_groups; g++)
        if (p->tier[g] > 0) return false;
    if (!c->over_link) return (!c->use_gpu || c->kv_on_gpu) && !p->moe_split;
    uint64_t vram = hw->gpus[0].vram, used = p->gpu[0].weights + p->gpu[0].buffers;
    return vram >= used && vram - used >= kv_per_token(m, c->kv) * c->n_ctx;
}

/* GPU 0's memory left next to its reserve and what the plan put there. */
static uint64_t gpu0_room(const plan_machine *hw, const plan *p)
{
    uint64_t vram = hw->gpus[0].vram, used = gpu_reserve(vram) + p->gpu[0].weights + p->gpu[0].kv;
    return vram > used ? vram - used : 0;
}

/* The largest group the plan streams over the link in either phase (the
 * ring's slot: PLAN_GPU_STREAM_DEPTH of them sit on GPU 0). */
static uint64_t largest_streamed(const plan_model *m, const plan *p)
{
    uint64_t largest = 0;
    for (uint32_t g = 0; g < m->n_groups; g++)
        if ((p->site[g] == PLAN_SITE_LINK || p->prefill_site[g] == PLAN_SITE_LINK) && m->groups[g].bytes > largest)
            largest = m->groups[g].bytes;
    return largest;
}

/* Group g streamed over the link to GPU 0 in the phases asked (decode
 * with prefill, or prefill alone), when what it adds to GPU 0 fits: the
 * ring grown to its size, and its KV cache (kv bytes: a decoding layer's
 * is in VRAM). Returns whether it was. */
static bool stream_group(const plan_model *m, const plan_machine *hw, uint32_t g, uint64_t kv, bool decode, plan *p)
{
    uint64_t room = gpu0_room(hw, p), largest = largest_streamed(m, p), bytes = m->groups[g].bytes;
    uint64_t ring = bytes > largest ? PLAN_GPU_STREAM_DEPTH * (bytes - largest) : 0;
    if (ring + kv > room || m->groups[g].no_gpu) return false;
    p->gpu[0].weights += ring;
    p->gpu[0].kv += kv;
    p->gpu[0].buffers = gpu_reserve(hw->gpus[0].vram);
    p->prefill_site[g] = PLAN_SITE_LINK;
    if (decode) p->site[g] = PLAN_SITE_LINK;
    else p->phase_sites = true;
    return true;
}

/* The mixed candidate: after the resident groups [0, first), each group
 * a decoded token computes faster streamed to GPU 0 (its copy overlapping
 * the previous group's compute) than on the CPU is streamed, its KV cache
 * in VRAM, while GPU 0 has room; the CPU computes the rest. */
static void choose_link_groups(const plan_model *m, const plan_machine *hw, const candidate *c, uint32_t first,
                               plan *p)
{
    uint64_t pos = c->n_ctx < PLAN_DECODE_POS ? c->n_ctx : PLAN_DECODE_POS;
    for (uint32_t g = first; g < m->n_groups && hw->n_gpus; g++) {
        uint64_t kv = kv_layer_tok(m, c->kv, g);
        if (link_group_seconds(hw, m, g, kv * pos, 1) < cpu_group_seconds(hw, m, g, TIER_RAM, 1))
            stream_group(m, hw, g, kv * c->n_ctx, true, p);
    }
}

/* Site choice per phase: a prompt batch of B tokens (the request's, at
 * least PLAN_PREFILL_MIN_BATCH) streams to GPU 0 each group the CPU
 * computes when decoding that the batch runs faster on GPU 0, the
 * transfer amortized over the batch (a group on disk is read from there
 * either way), while the ring fits (its KV cache stays in RAM: the engine
 * attends there). Dense models on GPU 0 only. */
static void choose_prefill_sites(const plan_model *m, const plan_machine *hw, const plan_request *req, plan *p)
{
    double B = req->n_batch ? req->n_batch : 256;
    if (!hw->n_gpus || has_experts(m) || B < PLAN_PREFILL_MIN_BATCH) return;
    for (int d = 1; d < PLAN_MAX_GPUS; d++)
        if (p->gpu[d].weights) return;
    for (uint32_t g = 0; g < m->n_groups; g++)
        if (p->site[g] == PLAN_SITE_CPU &&
            fmax(link_group_seconds(hw, m, g, 0, B), group_disk_seconds(hw, m, g, p->tier[g])) <
                cpu_group_seconds(hw, m, g, p->tier[g], B))
            stream_group(m, hw, g, 0, false, p);
}

/* One placement: the first `gpu_limit` groups on the GPUs as far as they
 * fit (layer splits), the rest in RAM or streamed; the mixed candidate
 * streams some of the rest to GPU 0. Returns the number of groups placed
 * on GPUs. */
static uint32_t evaluate(const plan_model *m, const plan_machine *hw, const plan_request *req, const candidate *c,
                         uint32_t gpu_limit, plan *p)
{
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", c->label);
    p->n_ctx = c->n_ctx;
    p->kv = c->kv;
    p->n_groups = m->n_groups;
    p->over_link = c->over_link;
    p->moe_split = c->moe == MOE_CPU_SPLIT;
    p->n_cpu_moe = p->moe_split ? c->n_cpu_moe : 0;
    if (!plan_alloc_groups(p, m->n_groups)) {
        text(p->reason, "out of memory");
        return 0;
    }
    uint32_t on_gpu = c->use_gpu && !c->over_link ? assign_gpus(m, hw, c, gpu_limit, p) : 0;
    for (uint32_t g = 0; g < m->n_groups; g++)
        p->site[g] = p->prefill_site[g] = p->tier[g] >= 0 ? PLAN_SITE_GPU : c->over_link ? PLAN_SITE_LINK
                                                                                          : PLAN_SITE_CPU;
    if (c->mixed) choose_link_groups(m, hw, c, on_gpu, p);
    uint64_t kv_total = kv_per_token(m, c->kv) * c->n_ctx, kv_gpu = 0;
    for (int d = 0; d < PLAN_MAX_GPUS; d++) kv_gpu += p->gpu[d].kv;
    p->ram.kv = kv_total - kv_gpu;
    if (p->moe_split && on_gpu < m->n_groups) {
        char a[32];
        uint64_t need = 0;
        for (uint32_t g = 0; g < m->n_groups; g++) need += gpu_group_bytes(m, c, g);
        text(p->reason, "the model without the experts of %u layers (%s) does not fit on the GPUs next to their "
             "reserve", c->n_cpu_moe, fmt_bytes(need, a, 32));
        return on_gpu;
    }
    p->feasible = (!c->over_link || reserve_link(m, hw, p)) &&
                  place_cpu(m, hw, req, c, on_gpu, ram_fixed(m, c, p->ram.kv), p);
    if (p->feasible) choose_prefill_sites(m, hw, req, p);
    /* the engine runs every plan_kv type (f16, q8_0, q4_0) on the CPU; GPU plans as gpu_runnable says */
    p->runnable = gpu_runnable(m, hw, c, p);
    if (p->feasible) cost(m, hw, req, c, p);
    return on_gpu;
}

static double score(const plan *p, bool prefill) { return prefill ? p->prefill_tps : p->decode_tps; }

/* Whether a scores above b; on a tie (two plans that run the scored phase
 * alike, e.g. a CPU plan streaming its prompt batches to the GPU and one
 * streaming everything), the faster in the other phase. */
static bool faster(const plan *a, const plan *b, bool prefill)
{
    double x = score(a, prefill), y = score(b, prefill);
    if (fabs(x - y) > 1e-9 * fmax(x, y)) return x > y;
    return score(a, !prefill) > score(b, !prefill);
}

/* Of candidates tried in turn: *best the fastest feasible one (*have once
 * there is one), *last the latest infeasible one (its reason); t is taken. */
static void keep_faster(plan *best, plan *last, bool *have, plan *t, bool prefill)
{
    if (t->feasible && (!*have || faster(t, best, prefill))) {
        plan_free(best);
        *best = *t;
        *have = true;
    } else {
        plan_free(last);
        *last = *t;
    }
}

/* A layer split: every number of leading groups on the GPUs that fits is
 * tried (so more VRAM never predicts slower: with a slow GPU, filling it
 * is not always best), and the fastest kept. */
static void evaluate_split(const plan_model *m, const plan_machine *hw, const plan_request *req, const candidate *c,
                           bool prefill, plan *out)
{
    plan best = {0}, last = {0};
    bool have = false;
    for (uint32_t k = c->mixed ? 0 : 1; k <= m->n_groups; k++) {
        plan t;
        uint32_t placed = evaluate(m, hw, req, c, k, &t);
        if (placed < k) { /* group k-1 fits on no GPU */
            if (k == 1) {
                char a[32];
                t.feasible = false;
                text(t.reason, "the first layer (%s) fits on no GPU next to its reserve",
                     fmt_bytes(m->groups[0].bytes, a, 32));
                plan_free(&last);
                last = t;
            } else {
                plan_free(&t);
            }
            break;
        }
        keep_faster(&best, &last, &have, &t, prefill);
    }
    *out = have ? best : last;
    plan_free(have ? &last : &best);
}

/* llama.cpp's static split: everything on the GPUs but the experts of the
 * first N layers, which stay resident in RAM (--n-cpu-moe N). Every N is
 * tried and the fastest kept (ties: the fewest layers on the CPU). */
static void evaluate_moe_split(const plan_model *m, const plan_machine *hw, const plan_request *req,
                               const candidate *c0, bool prefill, plan *out)
{
    plan best = {0}, last = {0};
    bool have = false;
    uint32_t n_layers = m->n_groups ? m->n_groups - 1 : 0;
    for (uint32_t n = 0; n <= n_layers; n++) {
        candidate c = *c0;
        c.n_cpu_moe = n;
        plan t;
        evaluate(m, hw, req, &c, m->n_groups, &t);
        keep_faster(&best, &last, &have, &t, prefill);
    }
    *out = have ? best : last;
    plan_free(have ? &last : &best);
}

static void evaluate_candidate(const plan_model *m, const plan_machine *hw, const plan_request *req,
                               const candidate *c, bool prefill, plan *out)
{
    if (c->moe == MOE_CPU_SPLIT) evaluate_moe_split(m, hw, req, c, prefill, out);
    else if (c->use_gpu && !c->over_link && m->n_groups) evaluate_split(m, hw, req, c, prefill, out);
    else evaluate(m, hw, req, c, m->n_groups, out);
}

/* ---- the search ---- */

static void warn(plan_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(plan_result *r, const char *fmt, ...)
{
    if (r->n_warnings == PLAN_MAX_WARNINGS) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->warnings[r->n_warnings++], PLAN_TEXT, fmt, ap);
    va_end(ap);
}

static bool fits_at(const plan_model *m, const plan_machine *hw, const plan_request *req, uint32_t ctx)
{
    candidate c = {"probe", ctx, req->kv, false, false, false, MOE_STORE, 0, false};
    plan p;
    evaluate(m, hw, req, &c, 0, &p);
    bool ok = p.feasible;
    plan_free(&p);
    return ok;
}

/* The largest context up to `from` whose CPU plan fits: `from` itself, else
 * the largest multiple of PLAN_MIN_AUTO_CTX below it (the memory a plan
 * needs grows with the context, so a binary search finds it); 0 when not
 * even PLAN_MIN_AUTO_CTX tokens fit. */
static uint32_t largest_context(const plan_model *m, const plan_machine *hw, const plan_request *req, uint32_t from)
{
    if (fits_at(m, hw, req, from)) return from;
    uint32_t lo = 0, hi = (from - 1) / PLAN_MIN_AUTO_CTX + 1; /* lo fits (0: none known), hi does not */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (fits_at(m, hw, req, mid * PLAN_MIN_AUTO_CTX)) lo = mid;
        else hi = mid;
    }
    return lo * PLAN_MIN_AUTO_CTX;
}

/* The model's context (2048 if it has none), else the largest that fits. */
static uint32_t auto_context(const plan_model *m, const plan_machine *hw, const plan_request *req, plan_result *r)
{
    uint32_t want = m->context_length ? m->context_length : 2048;
    uint32_t ctx = largest_context(m, hw, req, want);
    if (!ctx) return want < PLAN_MIN_AUTO_CTX ? want : PLAN_MIN_AUTO_CTX; /* its reason names the context */
    if (ctx != want)
        warn(r, "context reduced from %u to %u tokens, the most that fit the memory budget", want, ctx);
    return ctx;
}

static int add_candidates(const plan_model *m, const plan_machine *hw, const plan_request *req, uint32_t ctx,
                          candidate *c)
{
    int n = 0;
    c[n++] = (candidate){"CPU: resident + streamed", ctx, req->kv, false, false, false, MOE_STORE, 0, false};
    if (has_experts(m)) {
        c[n++] = (candidate){"all resident", ctx, req->kv, false, false, false, MOE_ALL_RESIDENT, 0, false};
        c[n++] = (candidate){"dense resident + expert cache", ctx, req->kv, false, false, false, MOE_DENSE_RESIDENT, 0,
                             false};
        c[n++] = (candidate){"all streamed + least expert cache", ctx, req->kv, false, false, false,
                             MOE_ALL_STREAMED, 0, false};
    }
    if (ctx >= 2 * MIN_AUTO_CTX)
        c[n++] = (candidate){"smaller context (half)", ctx / 2, req->kv, false, false, false, MOE_STORE, 0, false};
    if (req->kv != PLAN_KV_Q8_0 && !m->kv_quant_refused)
        c[n++] = (candidate){"q8_0 KV cache", ctx, PLAN_KV_Q8_0, false, false, false, MOE_STORE, 0, false};
    if (req->kv != PLAN_KV_Q4_0 && !m->kv_quant_refused)
        c[n++] = (candidate){"q4_0 KV cache", ctx, PLAN_KV_Q4_0, false, false, false, MOE_STORE, 0, false};
    if (hw->n_gpus > 0) {
        c[n++] = (candidate){"GPU/CPU layer split, KV on GPU", ctx, req->kv, true, true, false, MOE_STORE, 0, false};
        c[n++] = (candidate){"GPU/CPU layer split, KV in RAM", ctx, req->kv, true, false, false, MOE_STORE, 0, false};
        c[n++] = (candidate){"weights streamed over the GPU link", ctx, req->kv, true, false, true, MOE_STORE, 0,
                             false};
        if (!has_experts(m))
            c[n++] = (candidate){"GPU resident + streamed over the link + CPU", ctx, req->kv, true, true, false,
                                 MOE_STORE, 0, true};
        if (has_experts(m))
            c[n++] = (candidate){"llama.cpp --n-cpu-moe split", ctx, req->kv, true, true, false, MOE_CPU_SPLIT, 0,
                                 false};
    }
    return n;
}

/* The store's rule names its outcome; with experts, the cache too. */
static void label_cpu_plan(plan *p)
{
    if (strncmp(p->label, "CPU", 3)) return;
    bool streamed = false;
    for (uint32_t g = 0; g < p->n_groups; g++) streamed |= p->tier[g] == TIER_DISK;
    bool cache = p->expert_slots < p->expert_units;
    snprintf(p->label, sizeof p->label, "%s", streamed ? (cache ? "partial residency (streaming) + expert cache"
                                                                : "partial residency (streaming)")
                                              : cache ? "dense resident + expert cache" : "all resident");
}

/* Whether two feasible plans place everything alike (then only one is listed). */
static bool same_placement(const plan *a, const plan *b)
{
    return a->feasible && b->feasible && a->n_ctx == b->n_ctx && a->kv == b->kv && a->n_groups == b->n_groups &&
           !memcmp(a->tier, b->tier, a->n_groups) && a->expert_slots == b->expert_slots &&
           a->n_cpu_moe == b->n_cpu_moe && a->over_link == b->over_link && !memcmp(a->site, b->site, a->n_groups) &&
           !memcmp(a->prefill_site, b->prefill_site, a->n_groups);
}

/* Whether an alternative already listed places everything as p does. */
static bool listed(const plan_result *r, const plan *p)
{
    for (int i = 0; i < r->n_alts; i++)
        if (same_placement(&r->alts[i], p)) return true;
    return false;
}

static void explain_rejections(plan_result *r, int best, uint32_t ctx, plan_kv req_kv, bool cpu_only, bool prefill)
{
    for (int i = 0; i < r->n_alts; i++) {
        plan *a = &r->alts[i];
        if (i == best) snprintf(a->rejected, PLAN_TEXT, "chosen");
        else if (!a->feasible) {
            char why[PLAN_TEXT];
            memcpy(why, a->reason, sizeof why);
            snprintf(a->rejected, PLAN_TEXT, "does not fit: %.180s", why);
        }
        else if (a->n_ctx != ctx) snprintf(a->rejected, PLAN_TEXT, "shorter context than requested (%u)", ctx);
        else if (a->kv != req_kv)
            snprintf(a->rejected, PLAN_TEXT, "KV cache type other than requested (--kv-type %s asks for it)",
                     plan_kv_name(a->kv));
        else if (cpu_only && !a->runnable) snprintf(a->rejected, PLAN_TEXT, "the engine does not run this GPU plan ("
                                                    PLAN_ENGINE_GPU_RULE ")");
        else if (best >= 0)
            snprintf(a->rejected, PLAN_TEXT, "slower: %.1f vs %.1f tok/s", score(a, prefill),
                     score(&r->alts[best], prefill));
    }
}

static void machine_warnings(const plan_machine *hw, plan_result *r)
{
    if (hw->swap_on) warn(r, "swap is on: memory pressure from other programs can page strata out");
    if (hw->no_odirect) warn(r, "O_DIRECT is not available where the model lives: streaming uses the page cache");
    if (hw->cgroup_limited) warn(r, "a cgroup memory limit applies: the budget respects it");
    if (!hw->measured) warn(r, "bandwidths are not measured: run `strata detect --measure` for real predictions");
    for (int d = 0; d < hw->n_gpus; d++)
        if (hw->gpus[d].vram_bw <= 0) {
            warn(r, "GPU %d memory bandwidth unknown: assuming %.0f GB/s", d, VRAM_BW_GUESS / 1e9);
            break;
        }
    if (hw->n_gpus && hw->gpus[0].link_bw <= 0)
        warn(r, "GPU 0 host-to-device bandwidth unknown: assuming %.0f GB/s", LINK_BW_GUESS / 1e9);
    else if (hw->n_gpus && hw->gpus[0].link_pcie_gen)
        warn(r, "GPU 0 host-to-device bandwidth not measured: %.1f GB/s estimated from its PCIe gen%d x%d link",
             hw->gpus[0].link_bw / 1e9, hw->gpus[0].link_pcie_gen, hw->gpus[0].link_pcie_width);
    if (hw->n_gpus && hw->gpus[0].mm_flops <= 0)
        warn(r, "GPU 0 prompt-batch compute unmeasured: assuming %.0f TFLOP/s (%.0f FLOP per byte/s of its memory "
             "bandwidth)", gpu_flops(&hw->gpus[0]) / 1e12, PLAN_GPU_FLOP_PER_BYTE);
}

void plan_compute(const plan_model *m, const plan_machine *hw, const plan_request *req_in, plan_result *r)
{
    memset(r, 0, sizeof *r);
    plan_request req = *req_in;
    if (req.prefetch_depth <= 0) req.prefetch_depth = DEFAULT_DEPTH;
    bool prefill = req.n_batch >= PLAN_PREFILL_MIN_BATCH && !req.rank_by_decode;
    uint32_t ctx = req.n_ctx ? req.n_ctx : auto_context(m, hw, &req, r);
    candidate c[PLAN_MAX_ALTS];
    int n_cand = add_candidates(m, hw, &req, ctx, c), best = -1;
    for (int i = 0; i < n_cand; i++) {
        plan *a = &r->alts[r->n_alts];
        evaluate_candidate(m, hw, &req, &c[i], prefill, a);
        label_cpu_plan(a);
        /* the MoE placements the store's rule may already have made: listed once */
        if ((i > 0 && c[i].moe != MOE_STORE && c[i].moe != MOE_CPU_SPLIT && same_placement(a, &r->alts[0])) ||
            (c[i].mixed && listed(r, a))) { /* the mixed candidate streaming nothing: a layer split */
            plan_free(a);
            continue;
        }
        r->n_alts++;
        /* quantized KV caches are alternatives unless asked for; GPU plans are
         * chosen only for planning (the engine runs on the CPU today) */
        bool eligible = a->feasible && a->n_ctx == ctx && a->kv == req.kv && (!req.cpu_only || a->runnable);
        if (eligible && (best < 0 || faster(a, &r->alts[best], prefill))) best = r->n_alts - 1;
    }
    explain_rejections(r, best, ctx, req.kv, req.cpu_only, prefill);
    if (req.moe_hit_rate_set && !has_experts(m))
        warn(r, "the stated expert hit rate (--moe-hit-rate) is ignored: the model has no experts");
    machine_warnings(hw, r);
    if (best >= 0) {
        r->chosen = r->alts[best];
        plan_copy_groups(&r->chosen, &r->alts[best]);
    } else {
        r->chosen = r->alts[0];
        r->chosen.tier = NULL;
        r->chosen.site = r->chosen.prefill_site = NULL;
        if (r->chosen.feasible) /* fits, but not what the request allows (a CPU-only request for a quantized KV cache) */
            memcpy(r->chosen.reason, r->alts[0].rejected, PLAN_TEXT);
        bool fitted = r->chosen.feasible;
        r->chosen.feasible = false;
        if (!r->chosen.reason[0]) snprintf(r->chosen.reason, PLAN_TEXT, "no placement fits");
        /* a context given that does not fit: name the largest that does */
        uint32_t fits = !fitted && req.n_ctx > PLAN_MIN_AUTO_CTX ? largest_context(m, hw, &req, req.n_ctx - 1) : 0;
        size_t len = strlen(r->chosen.reason);
        if (fits && len + 24 < PLAN_TEXT) snprintf(r->chosen.reason + len, PLAN_TEXT - len, " (-c %u fits)", fits);
    }
}

void plan_free(plan *p)
{
    free(p->tier);
    p->tier = NULL;
    p->site = p->prefill_site = NULL;
}

bool plan_alloc_groups(plan *p, uint32_t n)
{
    uint8_t *a = calloc(3 * (size_t)n + 1, 1);
    p->tier = (int8_t *)a;
    p->site = a ? a + n : NULL;
    p->prefill_site = a ? a + 2 * (size_t)n : NULL;
    for (uint32_t g = 0; a && g < n; g++) p->tier[g] = TIER_RAM; /* sites: PLAN_SITE_CPU (0) */
    return a != NULL;
}

bool plan_copy_groups(plan *dst, const plan *src)
{
    if (!plan_alloc_groups(dst, src->n_groups)) return false;
    if (src->tier) memcpy(dst->tier, src->tier, 3 * (size_t)src->n_groups);
    return true;
}

bool plan_uses_gpu(const plan *p)
{
    for (uint32_t g = 0; p->site && g < p->n_groups; g++)
        if (p->site[g] != PLAN_SITE_CPU || p->prefill_site[g] != PLAN_SITE_CPU) return true;
    return false;
}

void plan_result_free(plan_result *r)
{
    plan_free(&r->chosen);
    for (int i = 0; i < r->n_alts; i++) plan_free(&r->alts[i]);
}

int plan_can_run(const plan *p)
{
    if (!p->feasible) return 2;
    if (p->expert_slots < p->expert_units) return 1; /* expert cache misses are read from disk */
    for (uint32_t g = 0; g < p->n_groups; g++)
        if (p->tier[g] == TIER_DISK) return 1;
    return 0;
}
