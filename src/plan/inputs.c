#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/engine.h"
#include "plan/calibrate.h"
#include "plan/inputs.h"
#include "store/store.h"
#include "util/error.h"

/* Guesses used when nothing was measured (and the plan says so). */
#define GUESS_RAM_BW 10e9
#define GUESS_DISK_BW 0.5e9
#define GUESS_CPU_RATE 4e9
#define MEASURE_DISK_BYTES (256ull << 20) /* as `strata detect --measure` */

_Static_assert(PLAN_EXPERT_MIN_SLOTS == STORE_EXPERT_MIN_SLOTS, "the planner replicates the store's least expert cache");
_Static_assert((int)PLAN_WT_COUNT == (int)HW_ENGINE_TYPES && (int)PLAN_WT_F32 == (int)HW_ENGINE_F32,
               "the planner prices the types the calibration measures, in its order");

/* The type whose calibrated rate prices a tensor's bytes; -1: Q4_K's rate
 * (the other block types, close to it per byte). */
static int priced_type(uint32_t ggml_type)
{
    switch (ggml_type) {
    case GGML_TYPE_Q6_K: return PLAN_WT_Q6_K;
    case GGML_TYPE_Q8_0: return PLAN_WT_Q8_0;
    case GGML_TYPE_F16:
    case GGML_TYPE_BF16: return PLAN_WT_F16;
    case GGML_TYPE_F32: return PLAN_WT_F32;
    default: return -1;
    }
}


/* The engine's groups (a layer's stacked experts excluded: they are its
 * expert set) and, for a mixture of experts, the expert sets. */
static strata_status describe_groups(const gguf_file *f, const model_hparams *hp, const engine_desc *d, plan_model *m,
                                     strata_error *err)
{
    m->n_groups = d->n_groups;
    if (!(m->groups = calloc(d->n_groups ? d->n_groups : 1, sizeof *m->groups)))
        return err_set(err, STRATA_E_NOMEM, "out of memory");
    for (uint32_t g = 0; g < d->n_groups; g++) {
        plan_group *pg = &m->groups[g];
        if (g + 1 < d->n_groups) snprintf(pg->name, sizeof pg->name, "blk.%u", g);
        else snprintf(pg->name, sizeof pg->name, "output");
        strata_status st = store_group_bytes(f, &d->groups[g], &pg->bytes, err);
        if (st) return st;
        pg->no_gpu = !engine_gpu_runs_group(d, g);
        for (uint32_t i = 0; i < d->groups[g].n; i++) {
            const gguf_tensor *t = d->groups[g].tensors[i];
            if (!t) continue;
            pg->weight_bytes += t->n_bytes;
            pg->elems += t->n_elems;
            if (priced_type(t->type) >= 0) pg->type_bytes[priced_type(t->type)] += t->n_bytes;
        }
    }
    uint32_t n_sets = d->n_expert_sets < d->n_groups ? d->n_expert_sets : d->n_groups;
    if (!n_sets) return STRATA_OK;
    if (!(m->experts = calloc(n_sets, sizeof *m->experts))) return err_set(err, STRATA_E_NOMEM, "out of memory");
    m->n_expert_sets = n_sets;
    for (uint32_t l = 0; l < n_sets; l++) {
        const store_expert_set *es = &d->expert_sets[l];
        plan_expert_set *pe = &m->experts[l];
        if (!es->n || !es->n_experts) continue;
        strata_status st = store_expert_unit_bytes(es, &pe->unit_bytes, err);
        if (st) return st;
        pe->n_expert = es->n_experts;
        pe->n_used = (uint32_t)(hp->n_expert_used < es->n_experts ? hp->n_expert_used : es->n_experts);
        for (uint32_t i = 0; i < es->n; i++) {
            const gguf_tensor *t = es->tensors[i];
            if (!t) continue;
            pe->unit_weight_bytes += t->n_bytes / es->n_experts;
            pe->unit_elems += t->n_elems / es->n_experts;
        }
    }
    return STRATA_OK;
}

strata_status plan_model_from_engine(const gguf_file *f, const model_spec *spec, int n_threads, uint32_t n_ctx,
                                     uint32_t n_batch, plan_model *m, strata_error *err)
{
    memset(m, 0, sizeof *m);
    engine_params ep = {.n_threads = n_threads, .n_ctx = n_ctx, .n_batch = n_batch}; /* and the F16 KV cache */
    engine_desc d;
    strata_status st = engine_describe(f, spec, &ep, &d, err);
    if (!st) {
        snprintf(m->name, sizeof m->name, "%s", spec->hp.name[0] ? spec->hp.name : spec->hp.arch);
        m->context_length = (uint32_t)spec->hp.context_length;
        m->kv_bytes_per_token = d.kv_per_token[ENGINE_KV_F16]; /* the engine's default cache */
        m->kv_bytes_per_token_q8 = d.kv_per_token[ENGINE_KV_Q8_0];
        m->kv_bytes_per_token_q4 = d.kv_per_token[ENGINE_KV_Q4_0];
        m->kv_quant_refused = spec->hp.head_dim_k % 32 != 0; /* the engine's rule (kv_type_of) */
        m->batch = d.n_batch;
        m->buffer_fixed = d.fixed;
        m->buffer_per_ctx = d.per_ctx;
        m->buffer_per_batch = d.per_batch;
        m->store_fixed = store_row_buffer_bytes(f);
        m->process_reserve = engine_process_reserve(f);
        const gguf_tensor *embd = gguf_find_tensor(f, "token_embd.weight");
        m->embd_row_bytes = embd ? ggml_row_bytes(embd->type, embd->ne[0]) : 0;
        st = describe_groups(f, &spec->hp, &d, m, err);
    }
    engine_desc_free(&d);
    if (st) plan_model_free(m);
    return st;
}

void plan_model_free(plan_model *m)
{
    free(m->groups);
    for (uint32_t l = 0; m->experts && l < m->n_expert_sets; l++) free(m->experts[l].chances);
    free(m->experts);
    m->groups = NULL;
    m->experts = NULL;
    m->n_groups = m->n_expert_sets = 0;
}

/* Cores a thread count really uses: threads beyond the physical cores add
 * no throughput. */
static double effective_threads(const hw_profile *p, int threads)
{
    int cores = hw_default_threads(&p->cpu);
    return threads < 1 ? 1 : threads > cores && cores > 0 ? cores : threads;
}

/* The calibration nearest `threads` (the exact one when there is one). */
static const hw_engine_calib *nearest_calib(const hw_measured *m, int threads)
{
    const hw_engine_calib *best = NULL;
    for (int i = 0; i < m->n_engine && i < HW_MAX_ENGINE_CALIB; i++) {
        const hw_engine_calib *c = &m->engine[i];
        if (c->type_bw[HW_ENGINE_Q4_K] > 0 && (!best || abs(c->threads - threads) < abs(best->threads - threads)))
            best = c;
    }
    return best;
}

/* The engine's rates at `threads`: the calibration made there, else the
 * nearest one scaled by the cores each uses (rates proportional to the
 * threads that run, never above the RAM's read bandwidth; the fixed costs
 * kept as they are). */
static void engine_rates(const hw_profile *p, int threads, plan_machine *out)
{
    const hw_engine_calib *c = nearest_calib(&p->measured, threads);
    if (!c) return;
    double scale = effective_threads(p, threads) / effective_threads(p, c->threads);
    double cap = p->measured.ram_bw_all > 0 ? p->measured.ram_bw_all : 1e15;
    out->threads_scaled = c->threads != threads && scale != 1;
    for (int k = 0; k < PLAN_WT_COUNT; k++) {
        double r = c->type_bw[k] * scale;
        out->engine_type_bw[k] = r > cap ? cap : r;
        out->engine_tile_bw[k] = c->tile_bw[k] * scale; /* compute: no RAM cap (a byte serves many tokens) */
    }
    out->engine_bw = out->engine_type_bw[PLAN_WT_Q4_K];
    out->engine_layer_s = c->layer_s;
    out->engine_token_s = c->token_s;
    out->engine_width_s = c->width_s;
}

/* Host-to-device copies over a PCIe link that was not measured (a what-if
 * profile): 3/4 of the link's raw rate per lane after line coding (gen 1:
 * 0.25 GB/s, 2: 0.5, 3: 0.985, 4: 1.97, 5: 3.94, 6: 7.56), the share
 * pinned copies reach (the H200's gen5 x16 copied at 46.5 of 63 GB/s).
 * A GPU at rest trains its link down to gen 1, so the generation is the
 * most it supports. 0 (and *gen, *width 0): the link is unknown. */
static double pcie_estimate(const hw_pcie *l, int *gen, int *width)
{
    static const double lane[] = {0, 0.25e9, 0.5e9, 0.985e9, 1.969e9, 3.938e9, 7.563e9};
    *gen = l->max_gen > l->gen ? l->max_gen : l->gen;
    *width = l->width > 0 ? l->width : l->max_width;
    if (*gen < 1 || *gen > 6 || *width < 1) {
        *gen = *width = 0;
        return 0;
    }
    return 0.75 * lane[*gen] * *width;
}

void plan_machine_from_profile(const hw_profile *p, uint64_t budget, int threads, plan_machine *out)
{
    memset(out, 0, sizeof *out);
    const hw_measured *ms = &p->measured;
    out->threads = threads > 0 ? threads : hw_default_threads(&p->cpu);
    out->ram_budget = budget ? budget : hw_default_budget(p->mem.usable);
    out->measured = ms->done && ms->ram_bw_all > 0 && ms->disk_bw > 0 && ms->cpu_rate > 0 && ms->kernel_ram_bw > 0;
    out->ram_bw = ms->ram_bw_all > 0 ? ms->ram_bw_all : GUESS_RAM_BW;
    out->disk_bw = ms->disk_bw > 0 ? ms->disk_bw : GUESS_DISK_BW;
    /* the kernels' rates, measured with all ram_threads threads, are not
     * scaled: without an engine calibration (its rates are) they are only a
     * rough bound, and halving them for -t 1 made a small model's
     * prediction 20x too slow on a busy machine where one thread ran as
     * fast as two */
    out->cpu_rate = ms->cpu_rate > 0 ? ms->cpu_rate : GUESS_CPU_RATE;
    /* kernels reach a fraction of the raw read bandwidth; 0.6 when not measured */
    out->kernel_ram_bw = ms->kernel_ram_bw > 0 ? ms->kernel_ram_bw : 0.6 * out->ram_bw;
    engine_rates(p, out->threads, out);
    out->disk_free = p->storage.free_bytes;
    out->cache_bytes = p->cpu.cache_l3;
    out->swap_on = p->mem.swap_total > 0;
    out->no_odirect = p->storage.o_direct == HW_NO;
    out->cgroup_limited = p->mem.cgroup.limit != HW_NO_LIMIT && p->mem.cgroup.version > 0;
    for (int i = 0; i < p->n_gpus && out->n_gpus < PLAN_MAX_GPUS; i++)
        if (plan_gpu_from_hw(&p->gpus[i], &out->gpus[out->n_gpus])) out->n_gpus++;
}

bool plan_software_gpus(void)
{
    const char *s = getenv("STRATA_PLAN_SOFTWARE_GPU");
    return s && !strcmp(s, "1");
}

bool plan_gpu_from_hw(const hw_gpu *g, plan_gpu *o)
{
    /* software devices are not GPUs (but for tests: plan_software_gpus) */
    if ((g->type == HW_GPU_CPU && !plan_software_gpus()) || g->vram_total == 0) return false;
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%.63s", g->name);
    o->vram = g->has_budget ? g->vram_budget : g->vram_free ? g->vram_free : g->vram_total;
    /* a layer's weights are read by the product shaders: their measured
     * rate on Q4_K (most of a Q4_K_M model) when there is one */
    o->vram_bw = g->mv_q4_k_bw > 0 ? g->mv_q4_k_bw : g->vram_bw;
    o->link_bw = g->h2d_bw > 0 ? g->h2d_bw : pcie_estimate(&g->pcie, &o->link_pcie_gen, &o->link_pcie_width);
    o->mm_flops = g->mm_q4_k_flops; /* 0: the planner estimates it, with a warning */
    o->round_trip_s = g->round_trip_s;
    return true;
}

bool plan_calibrate_into(hw_profile *p, int threads)
{
    strata_error e;
    hw_engine_calib c;
    if (threads <= 0) threads = hw_default_threads(&p->cpu);
    if (plan_calibrate_engine(threads, NULL, &c, &e) != STRATA_OK) {
        hw_warn(p, "engine calibration at %d thread%s failed: %s", threads, threads == 1 ? "" : "s", e.message);
        return false;
    }
    hw_engine_calib_put(&p->measured, &c);
    return true;
}

/* Whether the profile has a calibration at `threads` with the tile rates
 * (one saved before them would price prompts and batches as before). */
static bool calibrated_at(const hw_measured *m, int threads)
{
    const hw_engine_calib *c = hw_engine_calib_at(m, threads);
    return c && c->tile_bw[HW_ENGINE_Q4_K] > 0;
}

/* The model's directory: where the measurement's temporary file goes (the
 * model file itself is never read to plan). */
static void model_dir(const char *model_path, char *dir, size_t len)
{
    struct stat sb;
    const char *slash = model_path ? strrchr(model_path, '/') : NULL;
    if (!model_path || !*model_path) snprintf(dir, len, ".");
    else if (stat(model_path, &sb) == 0 && S_ISDIR(sb.st_mode)) snprintf(dir, len, "%s", model_path);
    else if (!slash) snprintf(dir, len, ".");
    else if (slash == model_path) snprintf(dir, len, "/");
    else snprintf(dir, len, "%.*s", (int)(slash - model_path), model_path);
}

/* This machine's bandwidths now (RAM, CPU, engine, disk: a temporary file
 * in the model's directory), saved to `path` when there is one (*saved: why
 * not, when that failed); false when nothing could be measured. */
static bool measure_now(hw_profile *p, const char *model_path, bool probe_gpus, int threads, const char *path,
                        strata_error *saved)
{
    hw_measure_opts mo = {.min_seconds = 0.3, .no_gpu = !probe_gpus, .no_disk = true};
    strata_error ignored;
    if (hw_measure(p, &mo, &ignored) != STRATA_OK) return false;
    char dir[HW_PATH_MAX];
    model_dir(model_path, dir, sizeof dir);
    hw_measured *m = &p->measured;
    strata_error e = {0};
    m->disk_bw = hw_measure_dir_read_bw(dir, MEASURE_DISK_BYTES, &e);
    if (m->disk_bw > 0) {
        m->disk_bytes = MEASURE_DISK_BYTES;
        snprintf(m->disk_path, sizeof m->disk_path, "%s", dir);
    } else {
        m->disk_bw = 0;
        hw_warn(p, "disk bandwidth not measured: %s", e.message);
    }
    plan_calibrate_into(p, 0);
    if (threads > 0 && threads != hw_default_threads(&p->cpu)) plan_calibrate_into(p, threads);
    if (path) hw_profile_save(p, path, saved);
    return true;
}

/* The disk figure: what runs reached streaming from this device on this
 * machine, else the saved (or just made) O_DIRECT measurement, else none
 * (plan_machine_from_profile guesses). */
static void choose_disk(hw_profile *p, const char *profile_path, plan_machine_notes *n)
{
    const char *dev = p->storage.device;
    char rates[HW_PATH_MAX + 32];
    strata_error ignored;
    hw_stream_rate r;
    if (profile_path && hw_stream_rates_path(profile_path, rates, sizeof rates, &ignored) == STRATA_OK &&
        hw_stream_rate_get(rates, p->fingerprint, dev, &r)) {
        p->measured.disk_bw = r.bytes_per_s;
        if (r.runs > 1) snprintf(n->disk, sizeof n->disk, "measured by %u runs on %.64s", r.runs, dev);
        else snprintf(n->disk, sizeof n->disk, "measured by a run on %.64s", dev);
        return;
    }
    if (!p->measured.done || p->measured.disk_bw <= 0) {
        snprintf(n->disk, sizeof n->disk, "guess: run `strata detect --measure`");
        return;
    }
    char mdev[64] = "";
    if (n->measured_now) snprintf(mdev, sizeof mdev, "%s", dev);
    else hw_storage_device_of(p->measured.disk_path, mdev, sizeof mdev);
    const char *how = n->measured_now ? "measured now" : "detect --measure";
    if (!mdev[0]) snprintf(n->disk, sizeof n->disk, "%s", how);
    else if (!dev[0] || !strcmp(mdev, dev)) snprintf(n->disk, sizeof n->disk, "%s on %.64s", how, mdev);
    else snprintf(n->disk, sizeof n->disk, "%s on %.40s; the model is on %.40s", how, mdev, dev);
}

/* Measuring takes a 256 MiB RAM buffer, a calibration that writes and runs
 * models of about 480 MB together (src/plan/calibrate.c), one after the
 * buffer is freed, and a disk read: a run whose budget (or whose machine or
 * cgroup) gives it less than this plans with estimates rather than overrun
 * its memory, and says so; a missing calibration at a thread count is not
 * made then either. */
#define MEASURE_MIN_MEMORY (768ull << 20)

strata_status plan_machine_profile(const char *hw_file, const char *model_path, bool probe_gpus, bool measure,
                                   uint64_t mem_cap, int threads, hw_profile *out, plan_machine_notes *notes,
                                   strata_error *err)
{
    plan_machine_notes own;
    plan_machine_notes *n = notes ? notes : &own;
    memset(n, 0, sizeof *n);
    if (hw_file) {
        strata_status st = hw_profile_load(hw_file, out, err);
        n->cache = HW_CACHE_FRESH;
        snprintf(n->disk, sizeof n->disk, "%s", out->measured.disk_bw > 0 ? "the profile" : "guess");
        return st;
    }
    hw_probe_opts po = {.path = model_path, .no_gpu_libs = !probe_gpus, .no_odirect_test = true};
    strata_status st = hw_probe(&po, out, err);
    if (st) return st;
    char path[1024], why[400] = "";
    strata_error ignored;
    bool have_path = hw_profile_default_path(path, sizeof path, &ignored) == STRATA_OK;
    n->cache = have_path ? hw_profile_reuse(out, path, why, sizeof why, &ignored) : HW_CACHE_MISSING;
    /* measuring and calibrating need room: the budget's, the machine's or the cgroup's */
    uint64_t room = mem_cap && (!out->mem.usable || mem_cap < out->mem.usable) ? mem_cap : out->mem.usable;
    bool fits = !room || room >= MEASURE_MIN_MEMORY;
    if (n->cache != HW_CACHE_FRESH) {
        const char *what = n->cache == HW_CACHE_MISSING ? "no saved profile (`strata detect --measure`)" : why;
        strata_error saved = {0};
        n->measured_now =
            measure && fits && measure_now(out, model_path, probe_gpus, threads, have_path ? path : NULL, &saved);
        char not_saved[200]; /* a cache that cannot be written: every plan measures again, say why */
        snprintf(not_saved, sizeof not_saved, "measured now, not saved (%.160s)", saved.message);
        snprintf(n->profile, sizeof n->profile, "%.270s: %s", what,
                 !fits                ? "bandwidths are guesses (too little memory to measure them in)"
                 : !n->measured_now  ? "bandwidths are guesses"
                 : saved.status      ? not_saved
                 : have_path         ? "measured now and saved"
                                     : "measured now");
    } else if (measure && fits && threads > 0 && !calibrated_at(&out->measured, threads) &&
               plan_calibrate_into(out, threads)) {
        /* the saved profile has no calibration at this thread count (or one
         * from before the tile rates): made now, kept */
        n->calibrated_now = true;
        if (have_path) hw_profile_save(out, path, &ignored);
    }
    choose_disk(out, have_path ? path : NULL, n);
    return STRATA_OK;
}
