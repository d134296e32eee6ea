/* Public API, planning part: `run` places weights with the planner (or a
 * saved plan) before the engine opens. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api/model_internal.h"
#include "api/routing_calib.h"
#include "plan/inputs.h"
#include "plan/plan_batch.h"
#include "plan/plan_text.h"
#include "util/error.h"

/* The budget `run` gives itself by default on this machine. */
static uint64_t default_budget(const char *path)
{
    hw_profile *hw = calloc(1, sizeof *hw);
    plan_machine mach = {0};
    strata_error err;
    if (hw && !plan_machine_profile(NULL, path, false, true, 0, 0, hw, NULL, &err))
        plan_machine_from_profile(hw, 0, 0, &mach);
    free(hw);
    return mach.ram_budget;
}

/* The machine a saved plan was made for: its budget (unless one was given,
 * or the file has none: then this machine's default), its disk bandwidth. */
static void saved_machine(strata_model *m, const char *path, const strata_model_params *p, const json_t *doc)
{
    const json_t *mach = json_object_get(doc, "machine");
    json_int_t budget = json_integer_value(json_object_get(mach, "ram_budget_bytes"));
    m->planned_budget = p->mem_budget ? p->mem_budget : budget > 0 ? (uint64_t)budget : default_budget(path);
    m->predicted_disk_bw = json_number_value(json_object_get(mach, "disk_bytes_per_s"));
    m->predicted_measured = json_is_true(json_object_get(mach, "measured"));
}

static strata_status load_saved_plan(strata_model *m, const char *path, const strata_model_params *p,
                                     const plan_model *pm, plan *out, strata_error *err)
{
    const char *file = p->plan_file;
    struct stat sb;
    if (stat(file, &sb) != 0)
        return err_set(err, STRATA_E_IO, "%s: cannot read the saved plan: %s", file, strerror(errno));
    if (S_ISDIR(sb.st_mode))
        return err_set(err, STRATA_E_INVALID, "%s: a directory, not a saved plan (`strata plan --json`)", file);
    json_error_t je;
    json_t *doc = json_load_file(file, 0, &je);
    if (!doc) return err_set(err, STRATA_E_FORMAT, "%s: line %d: %s", file, je.line, je.text);
    strata_status st = plan_from_json(doc, pm, out, err);
    if (!st && p->n_ctx && p->n_ctx != out->n_ctx) /* never overridden silently (-c) */
        st = err_set(err, STRATA_E_INVALID, "the plan is for a context of %u tokens, -c asks for %u (plan again "
                     "with -c %u, or drop -c)", (unsigned)out->n_ctx, (unsigned)p->n_ctx, (unsigned)p->n_ctx);
    if (!st) saved_machine(m, path, p, doc);
    json_decref(doc);
    if (st && err) {
        char msg[STRATA_ERROR_MAX];
        memcpy(msg, err->message, sizeof msg);
        err_set(err, st, "%s: %.400s", file, msg);
    }
    return st;
}

/* What the plan line adds about the machine: the disk figure when the plan
 * reads weights from disk, and what happened to the saved profile. */
static void machine_note(const plan_machine_notes *n, const plan_machine *mach, const plan *chosen, char *buf,
                         size_t len)
{
    char disk[240] = "";
    if (chosen->feasible && plan_can_run(chosen) == 1)
        snprintf(disk, sizeof disk, "; disk %.2f GB/s (%.160s)", mach->disk_bw / 1e9, n->disk);
    snprintf(buf, len, "%s%s%.480s", disk, n->profile[0] ? "; " : "", n->profile);
}

/* The plan's KV type for the cache the run asks for (the planner models
 * one type for K and V; f32 and mixed types plan as f16). */
static plan_kv plan_kv_of(const strata_model_params *p)
{
    if (p->kv_type_k != p->kv_type_v) return PLAN_KV_F16;
    return p->kv_type_k == STRATA_KV_Q8_0 ? PLAN_KV_Q8_0 : p->kv_type_k == STRATA_KV_Q4_0 ? PLAN_KV_Q4_0 : PLAN_KV_F16;
}

/* The GPU as the run will use it, for the planner: the device the engine
 * opens (engine_gpu_device_of: none when the GPU stays off, or in auto mode
 * when no device is usable), its budget capped by --gpu-mem, its rates
 * measured by `detect --measure` (the saved profile, when it is this
 * machine's and has this device; else the planner's estimates). A
 * software device is no GPU to the planner (plan_gpu_from_hw), and the
 * note says so. An error only for a device asked for by index. */
static strata_status gpu_as_run(plan_machine *mach, const hw_profile *hw, const engine_gpu *eg, char *note,
                                size_t note_len, strata_error *err)
{
    mach->n_gpus = 0;
    engine_gpu_device d;
    strata_error derr = {0};
    if (eg->mode == ENGINE_GPU_OFF) return STRATA_OK;
    strata_status st = engine_gpu_device_of(eg, &d, &derr);
    if (st && eg->mode == ENGINE_GPU_INDEX && err) *err = derr;
    if (st) return eg->mode == ENGINE_GPU_INDEX ? st : STRATA_OK; /* auto: the CPU, as the engine would */
    hw_gpu g = {.type = d.is_cpu ? HW_GPU_CPU : HW_GPU_OTHER, .vulkan_index = d.index, .has_budget = true,
                .vram_budget = d.budget, .vram_total = d.budget};
    snprintf(g.name, sizeof g.name, "%s", d.name);
    char path[1024];
    strata_error ignored;
    bool measured = hw_profile_default_path(path, sizeof path, &ignored) == STRATA_OK &&
                    hw_profile_reuse_gpu(hw, path, &g);
    if (plan_gpu_from_hw(&g, &mach->gpus[0])) mach->n_gpus = 1;
    else snprintf(note, note_len, "; %.120s is a software device, no GPU to plan for", d.name);
    /* a run measures the CPU and the disk when no profile is saved, but not
     * the GPU (that loads its driver in a child process: `detect` does) */
    if (mach->n_gpus && !measured)
        snprintf(note, note_len, "; GPU %.120s not measured, its rates are estimates (`strata detect --measure` "
                 "measures them)", d.name);
    return STRATA_OK;
}

static strata_status compute_plan(strata_model *m, const char *path, const strata_model_params *p, int threads,
                                  const engine_gpu *eg, const plan_model *pm, plan *out, char *note, size_t note_len,
                                  strata_error *err)
{
    hw_profile *hw = calloc(1, sizeof *hw);
    if (!hw) return err_set(err, STRATA_E_NOMEM, "out of memory");
    plan_machine_notes notes;
    char gpu_note[240] = "";
    plan_machine mach;
    strata_status st = plan_machine_profile(NULL, path, false, true, p->mem_budget, threads, hw, &notes, err);
    if (!st) {
        plan_machine_from_profile(hw, p->mem_budget, threads, &mach);
        st = gpu_as_run(&mach, hw, eg, gpu_note, sizeof gpu_note, err);
    }
    if (!st) {
        /* the prompt-batch sites for the batch the engine runs; the plan chosen by decode speed */
        plan_request req = {.n_ctx = p->n_ctx, .n_batch = pm->batch, .rank_by_decode = true,
                            .prefetch_depth = p->prefetch_depth, .cpu_only = true, .kv = plan_kv_of(p),
                            .moe_lru = p->moe_cache == STRATA_MOE_LRU};
        plan_result r;
        plan_compute(pm, &mach, &req, &r);
        if (!r.chosen.feasible) st = err_set(err, STRATA_E_NOMEM, "%s: %s", path, r.chosen.reason);
        machine_note(&notes, &mach, &r.chosen, note, note_len);
        size_t len = strlen(note);
        snprintf(note + len, note_len - len, "%s", gpu_note);
        *out = r.chosen;
        r.chosen.tier = NULL; /* moved to out */
        m->predicted_disk_bw = mach.disk_bw;
        m->predicted_measured = mach.measured;
        m->planned_budget = mach.ram_budget;
        plan_result_free(&r);
    }
    free(hw);
    return st;
}

/* "plan[ FILE]: LABEL, context N: WHERE[; prompt batches: PREFILL]; predicted X tok/s (B-bound)[NOTE]"
 * (PREFILL: the groups prompt batches run elsewhere, when they do; the
 * prediction when known: a saved plan may lack it; NOTE: machine_note). */
static void summarize(strata_model *m, const char *file, const plan_model *pm, const plan *chosen, const char *note)
{
    char where[640], pred[96] = "", prefill[400] = "";
    plan_placement_summary(pm, chosen, where, sizeof where);
    if (chosen->phase_sites) {
        char pf[360];
        plan_prefill_summary(pm, chosen, pf, sizeof pf);
        snprintf(prefill, sizeof prefill, "; prompt batches: %s", pf);
    }
    if (chosen->decode_tps > 0)
        snprintf(pred, sizeof pred, "; predicted %.2f tok/s (%s-bound)", chosen->decode_tps,
                 chosen->bottleneck ? chosen->bottleneck : "?");
    snprintf(m->summary, sizeof m->summary, "plan%s%.200s: %s, context %u: %.400s%.400s%s%.300s", file ? " " : "",
             file ? file : "", chosen->label, chosen->n_ctx, where, prefill, pred, note);
}

uint64_t strata_model_budget(const strata_model *m) { return m->planned_budget; }

_Static_assert(PLAN_PREFILL_MIN_BATCH == ENGINE_PREFILL_MIN_TOKENS,
               "the planner's prompt-batch sites are the ones the engine switches to");
_Static_assert(PLAN_GPU_STREAM_DEPTH == ENGINE_PLAN_STREAM_DEPTH, "the planner prices the ring a plan's run uses");

static uint8_t engine_site_of(uint8_t s)
{
    return s == PLAN_SITE_GPU ? ENGINE_SITE_VRAM : s == PLAN_SITE_LINK ? ENGINE_SITE_STREAMED : ENGINE_SITE_CPU;
}

/* A run whose passes never reach PLAN_PREFILL_MIN_BATCH tokens (its
 * batch, at most its context, is smaller) never runs the prompt-batch
 * sites: they become the decoding ones, so that the engine reserves no
 * ring for them (a saved plan made for larger batches). */
static void prefill_sites_for_batch(plan *chosen, uint32_t batch)
{
    uint32_t pass = batch < chosen->n_ctx ? batch : chosen->n_ctx;
    if (!chosen->phase_sites || pass >= PLAN_PREFILL_MIN_BATCH) return;
    memcpy(chosen->prefill_site, chosen->site, chosen->n_groups);
    chosen->phase_sites = false;
}

/* The engine's sites per group when the plan uses the GPU (resident there,
 * or streamed over the link), a decoded token's then a prompt batch's, in
 * one allocation of 2 x n_groups; *out stays NULL for a CPU plan. */
static strata_status plan_sites(const plan *chosen, uint8_t **out, strata_error *err)
{
    uint32_t n = chosen->n_groups;
    if (!plan_uses_gpu(chosen)) return STRATA_OK;
    if (!(*out = malloc(2 * (size_t)n))) return err_set(err, STRATA_E_NOMEM, "out of memory");
    for (uint32_t g = 0; g < n; g++) {
        (*out)[g] = engine_site_of(chosen->site[g]);
        (*out)[n + g] = engine_site_of(chosen->prefill_site[g]);
    }
    return STRATA_OK;
}

strata_status model_plan(strata_model *m, const char *path, const strata_model_params *p, int threads,
                         engine_params *ep, strata_error *err)
{
    plan_model pm;
    plan chosen = {0};
    char note[800] = "";
    strata_status st = plan_model_from_engine(m->file, m->spec, threads, p->n_ctx, p->n_batch, &pm, err);
    if (!st && !p->plan_file) routing_from_cache(path, &pm); /* the routing `strata plan` measured, if it did */
    /* n_parallel sequences: the weights are placed next to their KV reserve */
    plan_model seqs = !st && p->n_parallel > 1 ? plan_batch_model(&pm, p->n_parallel) : pm;
    bool gpu_on = ep->gpu.mode != ENGINE_GPU_OFF;
    /* -ngl N or --gpu-stream N: the engine places layers by its own rule (engine_gpu), with the GPU out of the
     * plan (as its RAM is: the layers it takes leave the store) */
    bool forced = p->gpu_layers_max || p->gpu_stream;
    engine_gpu planned = ep->gpu;
    if (forced) planned.mode = ENGINE_GPU_OFF;
    if (!st) st = p->plan_file ? load_saved_plan(m, path, p, &pm, &chosen, err)
                               : compute_plan(m, path, p, threads, &planned, &seqs, &chosen, note, sizeof note, err);
    if (!st && plan_uses_gpu(&chosen)) prefill_sites_for_batch(&chosen, pm.batch);
    /* a CPU plan (or one using the GPU for prompt batches only, which this batch never runs): the GPU stays
     * closed, else the engine would place layers there by its own rule */
    if (!st && !forced && !plan_uses_gpu(&chosen)) ep->gpu.mode = ENGINE_GPU_OFF;
    if (!st) st = plan_sites(&chosen, &m->sites, err);
    if (!st && m->sites && !gpu_on)
        st = err_set(err, STRATA_E_INVALID, "%s: the plan runs layers on the GPU, but the GPU is off (--gpu none, "
                     "or no GPU device)", p->plan_file ? p->plan_file : path);
    ep->gpu.sites = m->sites; /* the engine executes the plan's placement exactly */
    ep->gpu.prefill_sites = m->sites ? m->sites + pm.n_groups : NULL;
    if (!st) {
        m->resident = malloc(pm.n_groups);
        if (!m->resident) st = err_set(err, STRATA_E_NOMEM, "out of memory");
    }
    if (!st) {
        for (uint32_t g = 0; g < pm.n_groups; g++) m->resident[g] = chosen.tier[g] == TIER_RAM;
        ep->store.resident = m->resident;
        ep->n_ctx = chosen.n_ctx;
        if (p->kv_type_k == STRATA_KV_DEFAULT && p->kv_type_v == STRATA_KV_DEFAULT && !p->kv_f32 &&
            chosen.kv != PLAN_KV_F16) /* a saved plan's quantized cache */
            ep->kv_type_k = ep->kv_type_v = chosen.kv == PLAN_KV_Q8_0 ? STRATA_KV_Q8_0 : STRATA_KV_Q4_0;
        m->predicted_tps = chosen.decode_tps;
        summarize(m, p->plan_file, &pm, &chosen, note);
    }
    plan_free(&chosen);
    plan_model_free(&pm);
    return st;
}
