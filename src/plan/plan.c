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
    bool use_gpu, kv_on_gpu, stream_over_link;
} candidate;

/* Groups in execution order go to the GPUs while VRAM lasts (their KV too
 * when kv_on_gpu). Returns the number of groups placed. */
static uint32_t assign_gpus(const plan_model *m, const plan_machine *hw, const candidate *c, plan *p)
{
    uint32_t g = 0;
    uint64_t kv_layer = m->n_groups > 1 ? kv_per_token(m, c->kv) * c->n_ctx / (m->n_groups - 1) : 0;
    for (int d = 0; d < hw->n_gpus && g < m->n_groups; d++) {
        /* compute buffers and the driver's own needs: 10%, at least 256 MiB */
        uint64_t reserve = hw->gpus[d].vram / 10 > (256ull << 20) ? hw->gpus[d].vram / 10 : 256ull << 20;
        uint64_t room = hw->gpus[d].vram > reserve ? hw->gpus[d].vram - reserve : 0;
        p->gpu[d].buffers = reserve;
        for (; g < m->n_groups; g++) {
            uint64_t need = (c->stream_over_link ? 0 : m->groups[g].bytes) + (c->kv_on_gpu ? kv_layer : 0);
            if (need > room) break;
            room -= need;
            p->tier[g] = (int8_t)d;
            p->gpu[d].weights += c->stream_over_link ? 0 : m->groups[g].bytes;
            p->gpu[d].kv += c->kv_on_gpu ? kv_layer : 0;
        }
    }
    return g;
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
    if (n == 0) return fixed <= hw->ram_budget;
    uint64_t *bytes = malloc(n * sizeof *bytes);
    if (!bytes) return false;
    for (uint32_t i = 0; i < n; i++) bytes[i] = m->groups[first + i].bytes;
    placement pl;
    /* placement_choose reads a budget of 0 as unlimited: 1 byte means nothing fits */
    uint64_t budget = hw->ram_budget > fixed ? hw->ram_budget - fixed : 1;
    bool ok = placement_choose(n, bytes, budget, req->prefetch_depth, false, &pl);
    if (ok) {
        for (uint32_t i = 0; i < n; i++) p->tier[first + i] = pl.resident[i] ? TIER_RAM : TIER_DISK;
        p->ram.weights = pl.resident_bytes + pl.n_slots * pl.slot_bytes;
        p->slot_bytes = pl.slot_bytes;
        p->n_slots = pl.n_slots;
    } else {
        char a[32], b[32];
        text(p->reason, "needs at least %s of memory even streaming every layer; the budget is %s",
             fmt_bytes(fixed + pl.min_bytes, a, 32), fmt_bytes(hw->ram_budget, b, 32));
    }
    free(pl.resident);
    free(bytes);
    return ok;
}

/* Bytes each tier moves per decoded token, and the times they take. */
static void cost(const plan_model *m, const plan_machine *hw, const plan_request *req, const candidate *c, plan *p)
{
    uint64_t cpu_elems = 0, gpu_read = 0, kv_tok = kv_per_token(m, c->kv);
    for (uint32_t g = 0; g < m->n_groups; g++) {
        const plan_group *gr = &m->groups[g];
        if (p->tier[g] >= 0) {
            gpu_read += gr->weight_bytes;
            if (c->stream_over_link) p->link_bytes_per_token += gr->bytes;
            continue;
        }
        cpu_elems += gr->elems;
        p->ram_bytes_per_token += gr->weight_bytes;
        if (p->tier[g] == TIER_DISK) p->disk_bytes_per_token += gr->bytes;
    }
    uint64_t kv_read = kv_tok * PLAN_DECODE_POS;
    if (c->kv_on_gpu) gpu_read += kv_read;
    else p->ram_bytes_per_token += kv_read;
    p->disk_bytes_per_token += m->embd_row_bytes;
    p->vram_bytes_per_token = gpu_read;
    double vram_bw = hw->n_gpus && hw->gpus[0].vram_bw > 0 ? hw->gpus[0].vram_bw : VRAM_BW_GUESS;
    double link_bw = hw->n_gpus && hw->gpus[0].link_bw > 0 ? hw->gpus[0].link_bw : 0;
    p->t_compute = hw->cpu_rate > 0 ? (double)cpu_elems / hw->cpu_rate : 0;
    p->t_ram = hw->ram_bw > 0 ? (double)p->ram_bytes_per_token / hw->ram_bw : 0;
    p->t_disk = hw->disk_bw > 0 && p->disk_bytes_per_token > m->embd_row_bytes
                    ? (double)p->disk_bytes_per_token / hw->disk_bw : 0;
    p->t_vram = gpu_read ? (double)gpu_read / vram_bw : 0;
    p->t_link = link_bw > 0 ? (double)p->link_bytes_per_token / link_bw : 0;
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

static bool evaluate(const plan_model *m, const plan_machine *hw, const plan_request *req, const candidate *c,
                     plan *p)
{
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", c->label);
    p->n_ctx = c->n_ctx;
    p->kv = c->kv;
    p->n_groups = m->n_groups;
    p->tier = malloc(m->n_groups ? m->n_groups : 1);
    if (!p->tier) return false;
    for (uint32_t g = 0; g < m->n_groups; g++) p->tier[g] = TIER_RAM;
    uint32_t on_gpu = c->use_gpu ? assign_gpus(m, hw, c, p) : 0;
    uint64_t kv_total = kv_per_token(m, c->kv) * c->n_ctx, kv_gpu = 0;
    for (int d = 0; d < PLAN_MAX_GPUS; d++) kv_gpu += p->gpu[d].kv;
    p->ram.kv = kv_total - kv_gpu;
    p->feasible = place_cpu(m, hw, req, on_gpu, ram_fixed(m, c, p->ram.kv), p);
    p->runnable = !c->use_gpu && c->kv == PLAN_KV_F16;
    if (p->feasible) cost(m, hw, req, c, p);
    return p->feasible;
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
    for (;;) {
        candidate c = {"probe", ctx, req->kv, false, false, false};
        plan p;
        bool ok = evaluate(m, hw, req, &c, &p);
        plan_free(&p);
        if (ok || ctx / 2 < MIN_AUTO_CTX) break;
        ctx /= 2;
    }
    if (ctx != m->context_length && m->context_length)
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

static double score(const plan *p, bool prefill) { return prefill ? p->prefill_tps : p->decode_tps; }

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
            snprintf(a->rejected, PLAN_TEXT, "slower: %.3g vs %.3g tok/s", score(a, prefill),
                     score(&r->alts[best], prefill));
    }
}

static void machine_warnings(const plan_machine *hw, plan_result *r)
{
    if (hw->swap_on) warn(r, "swap is on: memory pressure from other programs can page strata out");
    if (hw->no_odirect) warn(r, "O_DIRECT is not available where the model lives: streaming uses the page cache");
    if (hw->cgroup_limited) warn(r, "a cgroup memory limit applies: the budget respects it");
    if (!hw->measured) warn(r, "bandwidths are not measured: run `strata detect --measure` for real predictions");
    if (hw->n_gpus && hw->gpus[0].vram_bw <= 0) warn(r, "GPU memory bandwidth unknown: assuming 300 GB/s");
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
        evaluate(m, hw, &req, &c[i], a);
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
