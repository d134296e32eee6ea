/* Placement search and the cost model. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan/plan.h"
#include "store/placement.h"
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

typedef struct candidate {
    const char *label;
    uint32_t n_ctx;
    plan_kv kv;
    bool use_gpu, kv_on_gpu, over_link;
} candidate;

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
            uint64_t kv = c->kv_on_gpu ? kv_layer_tok(m, c->kv, g) * c->n_ctx : 0;
            if (m->groups[g].bytes + kv > room) break;
            room -= m->groups[g].bytes + kv;
            p->tier[g] = (int8_t)d;
            p->gpu[d].weights += m->groups[g].bytes;
            p->gpu[d].kv += kv;
        }
        if (g > first) p->gpu[d].buffers = reserve; /* only a GPU in use needs it */
    }
    return g;
}

/* Weights streamed over the link live in RAM (or stream from disk through
 * it) and cross to GPU 0 every token, which holds two groups in flight next
 * to its reserve. */
static bool reserve_link(const plan_model *m, const plan_machine *hw, plan *p)
{
    uint64_t largest = 0;
    for (uint32_t g = 0; g < m->n_groups; g++)
        if (m->groups[g].bytes > largest) largest = m->groups[g].bytes;
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

/* The CPU groups [first, n): resident in RAM or streamed, by the store's rule. */
static bool place_cpu(const plan_model *m, const plan_machine *hw, const plan_request *req, uint32_t first,
                      uint64_t fixed, plan *p)
{
    uint32_t n = m->n_groups - first;
    p->ram.buffers = buffers(m, p->n_ctx);
    p->ram.overhead = m->process_reserve + m->store_fixed;
    uint64_t *bytes = malloc((n ? n : 1) * sizeof *bytes);
    if (!bytes) return false;
    for (uint32_t i = 0; i < n; i++) bytes[i] = m->groups[first + i].bytes;
    placement pl = {0};
    /* placement_choose reads a budget of 0 as unlimited: 1 byte means nothing fits */
    uint64_t budget = hw->ram_budget > fixed ? hw->ram_budget - fixed : 1;
    bool ok = n == 0 ? fixed <= hw->ram_budget
                     : placement_choose(n, bytes, budget, req->prefetch_depth, false, &pl) && hw->ram_budget > fixed;
    if (ok) {
        for (uint32_t i = 0; i < n; i++) p->tier[first + i] = pl.resident[i] ? TIER_RAM : TIER_DISK;
        p->ram.weights = pl.resident_bytes + pl.n_slots * pl.slot_bytes;
        p->slot_bytes = pl.slot_bytes;
        p->n_slots = pl.n_slots;
    } else {
        char a[32], b[32];
        text(p->reason, "needs at least %s of memory%s; the budget is %s", fmt_bytes(fixed + pl.min_bytes, a, 32),
             n ? " even streaming every layer" : "", fmt_bytes(hw->ram_budget, b, 32));
    }
    free(pl.resident);
    free(bytes);
    return ok;
}

/* Bytes each tier moves per decoded token, and the times they take. */
static void cost(const plan_model *m, const plan_machine *hw, const plan_request *req, const candidate *c, plan *p)
{
    uint64_t cpu_elems = 0, cpu_weight_bytes = 0, gpu_read[PLAN_MAX_GPUS] = {0}, kv_gpu_tok = 0, cpu_groups = 0;
    /* attention reads the KV cache up to the position the prediction is made at */
    uint64_t pos = c->n_ctx < PLAN_DECODE_POS ? c->n_ctx : PLAN_DECODE_POS;
    for (uint32_t g = 0; g < m->n_groups; g++) {
        const plan_group *gr = &m->groups[g];
        int8_t t = p->tier[g];
        if (t >= 0) {
            uint64_t kv = c->kv_on_gpu ? kv_layer_tok(m, c->kv, g) : 0;
            gpu_read[t] += gr->weight_bytes + kv * pos;
            kv_gpu_tok += kv;
            continue;
        }
        if (c->over_link) { /* from RAM across the link, computed on GPU 0 */
            gpu_read[0] += gr->weight_bytes;
            p->link_bytes_per_token += gr->bytes;
            p->ram_bytes_per_token += gr->bytes;
        } else {
            cpu_elems += gr->elems;
            cpu_weight_bytes += gr->weight_bytes;
            cpu_groups++;
            p->ram_bytes_per_token += gr->weight_bytes;
        }
        if (t == TIER_DISK) p->disk_bytes_per_token += gr->bytes;
    }
    p->ram_bytes_per_token += (kv_per_token(m, c->kv) - kv_gpu_tok) * pos;
    p->disk_bytes_per_token += m->embd_row_bytes;
    /* layers run one after the other, on whichever device holds them */
    p->t_vram = 0;
    for (int d = 0; d < hw->n_gpus && d < PLAN_MAX_GPUS; d++) {
        p->vram_bytes_per_token += gpu_read[d];
        p->t_vram += (double)gpu_read[d] / vram_bw(&hw->gpus[d]);
    }
    double link_bw = hw->n_gpus && hw->gpus[0].link_bw > 0 ? hw->gpus[0].link_bw : LINK_BW_GUESS;
    p->t_compute = hw->cpu_rate > 0 ? (double)cpu_elems / hw->cpu_rate : 0;
    /* weights the CPU computes on stream through the kernels at their measured
     * rate from RAM; the rest (KV cache, weights bound for the GPU) at the
     * raw read bandwidth */
    double kernel_bw = hw->engine_bw > 0 ? hw->engine_bw : hw->kernel_ram_bw > 0 ? hw->kernel_ram_bw : hw->ram_bw;
    double layers_s = hw->engine_bw > 0 ? (double)cpu_groups * hw->engine_layer_s : 0;
    p->t_ram = hw->ram_bw > 0 ? (double)cpu_weight_bytes / kernel_bw + layers_s +
                                    (double)(p->ram_bytes_per_token - cpu_weight_bytes) / hw->ram_bw
                              : 0;
    p->t_disk = hw->disk_bw > 0 && p->disk_bytes_per_token > m->embd_row_bytes
                    ? (double)p->disk_bytes_per_token / hw->disk_bw : 0;
    p->t_link = (double)p->link_bytes_per_token / link_bw;
    const struct { double t; const char *name; } terms[] = {
        {p->t_compute, "compute"}, {p->t_ram, "RAM bandwidth"}, {p->t_disk, "disk"},
        {p->t_link, "GPU link"}, {p->t_vram, "VRAM bandwidth"},
    };
    double t = 0;
    p->bottleneck = "compute";
    for (size_t i = 0; i < sizeof terms / sizeof terms[0]; i++)
        if (terms[i].t > t) t = terms[i].t, p->bottleneck = terms[i].name;
    p->decode_tps = t > 0 ? 1.0 / t : 0;
    /* Prefill: B tokens share each pass over the weights; compute scales with B. */
    double B = req->n_batch ? req->n_batch : 256;
    double tb = fmax(B * p->t_compute, fmax(p->t_ram, fmax(p->t_disk, fmax(p->t_link, p->t_vram))));
    p->prefill_tps = tb > 0 ? B / tb : 0;
}

/* One placement: the first `gpu_limit` groups on the GPUs as far as they
 * fit (layer splits), the rest in RAM or streamed. Returns the number of
 * groups placed on GPUs. */
static uint32_t evaluate(const plan_model *m, const plan_machine *hw, const plan_request *req, const candidate *c,
                         uint32_t gpu_limit, plan *p)
{
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", c->label);
    p->n_ctx = c->n_ctx;
    p->kv = c->kv;
    p->n_groups = m->n_groups;
    p->over_link = c->over_link;
    p->tier = malloc(m->n_groups ? m->n_groups : 1);
    if (!p->tier) {
        text(p->reason, "out of memory");
        return 0;
    }
    for (uint32_t g = 0; g < m->n_groups; g++) p->tier[g] = TIER_RAM;
    uint32_t on_gpu = c->use_gpu && !c->over_link ? assign_gpus(m, hw, c, gpu_limit, p) : 0;
    uint64_t kv_total = kv_per_token(m, c->kv) * c->n_ctx, kv_gpu = 0;
    for (int d = 0; d < PLAN_MAX_GPUS; d++) kv_gpu += p->gpu[d].kv;
    p->ram.kv = kv_total - kv_gpu;
    p->feasible = (!c->over_link || reserve_link(m, hw, p)) &&
                  place_cpu(m, hw, req, on_gpu, ram_fixed(m, c, p->ram.kv), p);
    p->runnable = !c->use_gpu && c->kv == PLAN_KV_F16;
    if (p->feasible) cost(m, hw, req, c, p);
    return on_gpu;
}

static double score(const plan *p, bool prefill) { return prefill ? p->prefill_tps : p->decode_tps; }

/* A layer split: every number of leading groups on the GPUs that fits is
 * tried (so more VRAM never predicts slower: with a slow GPU, filling it
 * is not always best), and the fastest kept. */
static void evaluate_split(const plan_model *m, const plan_machine *hw, const plan_request *req, const candidate *c,
                           bool prefill, plan *out)
{
    plan best = {0}, last = {0};
    bool have = false;
    for (uint32_t k = 1; k <= m->n_groups; k++) {
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
        if (t.feasible && (!have || score(&t, prefill) > score(&best, prefill))) {
            plan_free(&best);
            best = t;
            have = true;
        } else {
            plan_free(&last);
            last = t;
        }
    }
    if (have) {
        plan_free(&last);
        *out = best;
    } else {
        plan_free(&best);
        *out = last;
    }
}

static void evaluate_candidate(const plan_model *m, const plan_machine *hw, const plan_request *req,
                               const candidate *c, bool prefill, plan *out)
{
    if (c->use_gpu && !c->over_link && m->n_groups) evaluate_split(m, hw, req, c, prefill, out);
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

/* The model's context, halved until the CPU plan fits (not below 256). */
static uint32_t auto_context(const plan_model *m, const plan_machine *hw, const plan_request *req, plan_result *r)
{
    uint32_t ctx = m->context_length ? m->context_length : 2048;
    bool ok;
    for (;;) {
        candidate c = {"probe", ctx, req->kv, false, false, false};
        plan p;
        evaluate(m, hw, req, &c, 0, &p);
        ok = p.feasible;
        plan_free(&p);
        if (ok || ctx / 2 < MIN_AUTO_CTX) break;
        ctx /= 2;
    }
    if (ok && ctx != m->context_length && m->context_length)
        warn(r, "context reduced from %u to %u tokens to fit the memory budget", m->context_length, ctx);
    return ctx;
}

static int add_candidates(const plan_model *m, const plan_machine *hw, const plan_request *req, uint32_t ctx,
                          candidate *c)
{
    int n = 0;
    c[n++] = (candidate){"CPU: resident + streamed", ctx, req->kv, false, false, false};
    if (ctx >= 2 * MIN_AUTO_CTX) c[n++] = (candidate){"smaller context (half)", ctx / 2, req->kv, false, false, false};
    if (req->kv != PLAN_KV_Q8_0) c[n++] = (candidate){"q8_0 KV cache", ctx, PLAN_KV_Q8_0, false, false, false};
    if (req->kv != PLAN_KV_Q4_0) c[n++] = (candidate){"q4_0 KV cache", ctx, PLAN_KV_Q4_0, false, false, false};
    if (hw->n_gpus > 0) {
        c[n++] = (candidate){"GPU/CPU layer split, KV on GPU", ctx, req->kv, true, true, false};
        c[n++] = (candidate){"GPU/CPU layer split, KV in RAM", ctx, req->kv, true, false, false};
        c[n++] = (candidate){"weights streamed over the GPU link", ctx, req->kv, true, false, true};
    }
    (void)m;
    return n;
}

static void label_cpu_plan(plan *p)
{
    bool streamed = false;
    for (uint32_t g = 0; g < p->n_groups; g++) streamed |= p->tier[g] == TIER_DISK;
    if (!strncmp(p->label, "CPU", 3))
        snprintf(p->label, sizeof p->label, "%s", streamed ? "partial residency (streaming)" : "all resident");
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
        else if (a->kv != req_kv) snprintf(a->rejected, PLAN_TEXT, "KV cache type other than requested; the engine "
                                                                       "runs f16 KV caches only (for now)");
        else if (cpu_only && !a->runnable)
            snprintf(a->rejected, PLAN_TEXT, "%s", a->kv != PLAN_KV_F16 ? "the engine runs f16 KV caches only (for now)"
                                                                         : "GPU execution is not implemented yet");
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
}

void plan_compute(const plan_model *m, const plan_machine *hw, const plan_request *req_in, plan_result *r)
{
    memset(r, 0, sizeof *r);
    plan_request req = *req_in;
    if (req.prefetch_depth <= 0) req.prefetch_depth = DEFAULT_DEPTH;
    bool prefill = req.n_batch >= 32;
    uint32_t ctx = req.n_ctx ? req.n_ctx : auto_context(m, hw, &req, r);
    candidate c[PLAN_MAX_ALTS];
    r->n_alts = add_candidates(m, hw, &req, ctx, c);
    int best = -1;
    for (int i = 0; i < r->n_alts; i++) {
        plan *a = &r->alts[i];
        evaluate_candidate(m, hw, &req, &c[i], prefill, a);
        label_cpu_plan(a);
        /* quantized KV caches are alternatives unless asked for; GPU plans are
         * chosen only for planning (the engine runs on the CPU today) */
        bool eligible = a->feasible && a->n_ctx == ctx && a->kv == req.kv && (!req.cpu_only || a->runnable);
        if (eligible && (best < 0 || score(a, prefill) > score(&r->alts[best], prefill))) best = i;
    }
    explain_rejections(r, best, ctx, req.kv, req.cpu_only, prefill);
    machine_warnings(hw, r);
    if (best >= 0) {
        r->chosen = r->alts[best];
        r->chosen.tier = malloc(m->n_groups ? m->n_groups : 1);
        if (r->chosen.tier) memcpy(r->chosen.tier, r->alts[best].tier, m->n_groups);
    } else {
        r->chosen = r->alts[0];
        r->chosen.tier = NULL;
        if (r->chosen.feasible) /* fits, but not what the request allows (a CPU-only request for a quantized KV cache) */
            memcpy(r->chosen.reason, r->alts[0].rejected, PLAN_TEXT);
        r->chosen.feasible = false;
        if (!r->chosen.reason[0]) snprintf(r->chosen.reason, PLAN_TEXT, "no placement fits");
    }
}

void plan_free(plan *p)
{
    free(p->tier);
    p->tier = NULL;
}

void plan_result_free(plan_result *r)
{
    plan_free(&r->chosen);
    for (int i = 0; i < r->n_alts; i++) plan_free(&r->alts[i]);
}

int plan_can_run(const plan *p)
{
    if (!p->feasible) return 2;
    for (uint32_t g = 0; g < p->n_groups; g++)
        if (p->tier[g] == TIER_DISK) return 1;
    return 0;
}
