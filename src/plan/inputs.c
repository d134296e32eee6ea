#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "plan/calibrate.h"
#include "plan/inputs.h"
#include "store/store.h"
#include "util/error.h"

#define CTX_A 512u
#define CTX_B 1024u
#define BATCH 256u /* the engine's default batch */
/* Guesses used when nothing was measured (and the plan says so). */
#define GUESS_RAM_BW 10e9
#define GUESS_DISK_BW 0.5e9
#define GUESS_CPU_RATE 4e9
#define STREAM_PROBE_SECONDS 1.0

_Static_assert(PLAN_EXPERT_MIN_SLOTS == STORE_EXPERT_MIN_SLOTS, "the planner replicates the store's least expert cache");


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
        for (uint32_t i = 0; i < d->groups[g].n; i++) {
            const gguf_tensor *t = d->groups[g].tensors[i];
            if (!t) continue;
            pg->weight_bytes += t->n_bytes;
            pg->elems += t->n_elems;
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

strata_status plan_model_from_engine(const gguf_file *f, const model_spec *spec, int n_threads, plan_model *m,
                                     strata_error *err)
{
    memset(m, 0, sizeof *m);
    /* three points separate the parts growing with the context and the batch */
    /* the engine's default F16 KV cache */
    engine_params pa = {.n_ctx = CTX_A, .n_batch = BATCH, .n_threads = n_threads};
    engine_params pb = pa, pc = pa;
    pb.n_ctx = CTX_B;
    pc.n_batch = BATCH / 2;
    engine_desc a, b, c;
    memset(&b, 0, sizeof b);
    memset(&c, 0, sizeof c);
    strata_status st = engine_describe(f, spec, &pa, &a, err);
    if (!st) st = engine_describe(f, spec, &pb, &b, err);
    if (!st) st = engine_describe(f, spec, &pc, &c, err);
    if (!st) {
        snprintf(m->name, sizeof m->name, "%s", spec->hp.name[0] ? spec->hp.name : spec->hp.arch);
        m->context_length = (uint32_t)spec->hp.context_length;
        m->kv_bytes_per_token = a.kv_bytes / a.n_ctx;
        m->kv_bytes_per_token_q8 = model_kv_bytes_per_token(spec, GGML_TYPE_Q8_0);
        m->kv_bytes_per_token_q4 = model_kv_bytes_per_token(spec, GGML_TYPE_Q4_0);
        uint64_t sa = a.buffer_bytes - a.kv_bytes, sb = b.buffer_bytes - b.kv_bytes, sc = c.buffer_bytes - c.kv_bytes;
        m->batch = BATCH;
        m->buffer_per_ctx = (sb - sa) / (CTX_B - CTX_A);
        m->buffer_per_batch = (sa - sc) / (BATCH - BATCH / 2);
        m->buffer_fixed = sa - m->buffer_per_ctx * CTX_A - m->buffer_per_batch * BATCH;
        m->store_fixed = store_row_buffer_bytes(f);
        m->process_reserve = engine_process_reserve(f);
        const gguf_tensor *embd = gguf_find_tensor(f, "token_embd.weight");
        m->embd_row_bytes = embd ? ggml_row_bytes(embd->type, embd->ne[0]) : 0;
        st = describe_groups(f, &spec->hp, &a, m, err);
    }
    engine_desc_free(&a);
    engine_desc_free(&b);
    engine_desc_free(&c);
    if (st) plan_model_free(m);
    return st;
}

void plan_model_free(plan_model *m)
{
    free(m->groups);
    free(m->experts);
    m->groups = NULL;
    m->experts = NULL;
    m->n_groups = m->n_expert_sets = 0;
}

void plan_machine_from_profile(const hw_profile *p, uint64_t budget, plan_machine *out)
{
    memset(out, 0, sizeof *out);
    const hw_measured *ms = &p->measured;
    out->ram_budget = budget ? budget : hw_default_budget(p->mem.usable);
    out->measured = ms->done && ms->ram_bw_all > 0 && ms->disk_bw > 0 && ms->cpu_rate > 0 && ms->kernel_ram_bw > 0;
    out->ram_bw = ms->ram_bw_all > 0 ? ms->ram_bw_all : GUESS_RAM_BW;
    out->disk_bw = ms->disk_bw > 0 ? ms->disk_bw : GUESS_DISK_BW;
    out->cpu_rate = ms->cpu_rate > 0 ? ms->cpu_rate : GUESS_CPU_RATE;
    /* kernels reach a fraction of the raw read bandwidth; 0.6 when not measured */
    out->kernel_ram_bw = ms->kernel_ram_bw > 0 ? ms->kernel_ram_bw : 0.6 * out->ram_bw;
    out->engine_bw = ms->engine_bw;
    out->engine_layer_s = ms->engine_layer_s;
    out->disk_free = p->storage.free_bytes;
    out->swap_on = p->mem.swap_total > 0;
    out->no_odirect = p->storage.o_direct == HW_NO;
    out->cgroup_limited = p->mem.cgroup.limit != HW_NO_LIMIT && p->mem.cgroup.version > 0;
    for (int i = 0; i < p->n_gpus && out->n_gpus < PLAN_MAX_GPUS; i++) {
        const hw_gpu *g = &p->gpus[i];
        if (g->type == HW_GPU_CPU || g->vram_total == 0) continue; /* software devices are not GPUs */
        plan_gpu *o = &out->gpus[out->n_gpus++];
        snprintf(o->name, sizeof o->name, "%s", g->name);
        o->vram = g->has_budget ? g->vram_budget : g->vram_free ? g->vram_free : g->vram_total;
        o->vram_bw = g->vram_bw;
        o->link_bw = g->h2d_bw;
    }
}

void plan_calibrate_into(hw_profile *p)
{
    uint32_t n = p->cpu.physical_cores;
    if (p->cpu.usable_cores && (n == 0 || p->cpu.usable_cores < n)) n = p->cpu.usable_cores;
    strata_error ignored;
    p->measured.engine_bw = plan_calibrate_engine(n ? (int)n : 1, NULL, &p->measured.engine_layer_s, &ignored);
    if (p->measured.engine_bw <= 0) hw_warn(p, "engine calibration failed: %s", ignored.message);
}

strata_status plan_machine_profile(const char *hw_file, const char *model_path, bool probe_gpus, bool measure,
                                   hw_profile *out, strata_error *err)
{
    if (hw_file) return hw_profile_load(hw_file, out, err);
    hw_probe_opts po = {.path = model_path, .no_gpu_libs = !probe_gpus, .no_odirect_test = true};
    strata_status st = hw_probe(&po, out, err);
    if (st) return st;
    char path[1024];
    strata_error ignored;
    if (hw_profile_default_path(path, sizeof path, &ignored) != STRATA_OK) return STRATA_OK;
    hw_cache_state cache = hw_profile_reuse_measured(out, path, &ignored);
    if (cache == HW_CACHE_FRESH || !measure) return STRATA_OK;
    hw_measure_opts mo = {.min_seconds = 0.3, .no_gpu = !probe_gpus};
    if (hw_measure(out, &mo, err) != STRATA_OK) return STRATA_OK; /* plan with guesses, and say so */
    plan_calibrate_into(out);
    hw_profile_save(out, path, &ignored);
    return STRATA_OK;
}

double plan_measure_stream(const gguf_file *f, const model_spec *spec, double seconds, strata_error *err)
{
    engine_params p = {.n_ctx = CTX_A};
    engine_desc d;
    double bw = 0;
    if (engine_describe(f, spec, &p, &d, err) == STRATA_OK)
        bw = store_measure_stream_bw(f, d.n_groups, d.groups, seconds, err);
    engine_desc_free(&d);
    return bw;
}

bool plan_streams(const plan *p)
{
    return p->feasible && plan_can_run(p) == 1;
}

void plan_compute_live(const gguf_file *f, const model_spec *spec, const plan_model *m, plan_machine *mach,
                       const plan_request *req, plan_result *r)
{
    plan_compute(m, mach, req, r);
    if (!plan_streams(&r->chosen)) return;
    strata_error ignored;
    double bw = plan_measure_stream(f, spec, STREAM_PROBE_SECONDS, &ignored);
    if (bw <= 0) return;
    mach->disk_bw = bw;
    plan_result_free(r);
    plan_compute(m, mach, req, r);
}
