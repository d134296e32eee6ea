/* Public API: plans (`strata plan`) over src/plan, for this machine or a
 * profile file. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/plan_internal.h"
#include "api/routing_calib.h"
#include "plan/plan_text.h"
#include "util/error.h"

_Static_assert(STRATA_PLAN_MAX_PARALLEL == PLAN_BATCH_MAX, "the public limit is the planner's");

static plan_kv kv_of(strata_kv_type t)
{
    return t == STRATA_KV_Q8_0 ? PLAN_KV_Q8_0 : t == STRATA_KV_Q4_0 ? PLAN_KV_Q4_0 : PLAN_KV_F16;
}

/* The model as the engine would run it with the plan's threads, and the
 * machine (this one, measured if need be, or the profile file); *here_budget:
 * this machine's default budget, 0 for a profile's machine. */
static strata_status inputs(strata_plan *s, const char *path, const strata_plan_params *p, uint64_t *here_budget,
                            strata_error *err)
{
    gguf_file *f = NULL;
    model_spec *spec = NULL;
    hw_profile *hw = calloc(1, sizeof *hw); /* large: keep it off the stack */
    strata_status st = hw ? STRATA_OK : err_set(err, STRATA_E_NOMEM, "out of memory");
    if (!st) st = gguf_open(path, &f, err);
    if (!st) st = model_spec_from_gguf(f, path, &spec, err);
    if (!st)
        st = plan_machine_profile(p->profile_file, path, p->probe_gpus, true, p->mem_budget, p->n_threads, hw,
                                  &s->notes, err);
    /* scratch grows with the threads: the model as run would open it */
    if (!st) st = plan_model_from_engine(f, spec, p->n_threads ? p->n_threads : hw_default_threads(&hw->cpu),
                                         p->n_ctx, p->n_batch, &s->model, err); /* buffers as `run -c -b` has them */
    if (!st) plan_machine_from_profile(hw, p->mem_budget, p->n_threads, &s->machine);
    *here_budget = !st && !p->profile_file ? hw_default_budget(hw->mem.usable) : 0;
    model_spec_free(spec);
    gguf_close(f);
    free(hw);
    return st;
}

strata_status strata_plan_make(const char *model_path, const strata_plan_params *p, strata_plan **out,
                               strata_error *err)
{
    *out = NULL;
    strata_plan *s = calloc(1, sizeof *s);
    if (!s) return err_set(err, STRATA_E_NOMEM, "out of memory");
    snprintf(s->model_path, sizeof s->model_path, "%s", model_path);
    uint64_t here_budget = 0;
    strata_status st = inputs(s, model_path, p, &here_budget, err);
    if (!st && s->model.kv_quant_refused && (p->kv_type == STRATA_KV_Q8_0 || p->kv_type == STRATA_KV_Q4_0))
        st = err_set(err, STRATA_E_UNSUPPORTED, "%s: a %s KV cache needs a head dimension that is a multiple of 32; "
                     "this model's is not (use f16)", model_path, p->kv_type == STRATA_KV_Q8_0 ? "q8_0" : "q4_0");
    if (!st)
        st = routing_for_plan(model_path, p, here_budget, &s->model, s->routing_note, sizeof s->routing_note, err);
    if (st) {
        strata_plan_free(s);
        return st;
    }
    /* this machine: plans the CPU engine runs; a profile: the best plan, GPU tiers included */
    s->req = (plan_request){.n_ctx = p->n_ctx, .n_batch = p->n_batch, .kv = kv_of(p->kv_type),
                            .cpu_only = p->profile_file == NULL, .moe_hit_rate_set = p->moe_hit_rate_set,
                            .moe_hit_rate = p->moe_hit_rate};
    s->batched = p->n_parallel > 1 || p->parallel_auto;
    s->parallel_auto = p->parallel_auto;
    s->view = s->model;
    if (s->batched) {
        uint32_t most = s->model.batch && s->model.batch < PLAN_BATCH_MAX ? s->model.batch : PLAN_BATCH_MAX;
        if (p->parallel_auto) plan_batch_recommend(&s->model, &s->machine, &s->req, most, &s->batch);
        else plan_batch_compute(&s->model, &s->machine, &s->req, p->n_parallel, &s->batch);
        s->view = plan_batch_model(&s->model, s->batch.n_seq);
    } else {
        plan_compute(&s->model, &s->machine, &s->req, &s->single);
    }
    *out = s;
    return STRATA_OK;
}

void strata_plan_free(strata_plan *p)
{
    if (!p) return;
    if (p->batched) plan_batch_free(&p->batch);
    else plan_result_free(&p->single);
    plan_model_free(&p->model);
    free(p);
}

int strata_plan_verdict(const strata_plan *p) { return plan_can_run(&plan_api_result(p)->chosen); }

const char *strata_plan_reason(const strata_plan *p)
{
    const plan *c = &plan_api_result(p)->chosen;
    return c->feasible ? "" : c->reason;
}

double strata_plan_decode_tps(const strata_plan *p)
{
    if (p->batched) return p->batch.feasible ? p->batch.decode_tps : 0;
    return p->single.chosen.feasible ? p->single.chosen.decode_tps : 0;
}

/* The llama.cpp export as JSON: {"tool", "flags", "note"}. */
static json_t *export_json(const plan_model *m, const plan *p)
{
    char flags[256], note[256];
    plan_export_llamacpp(m, p, flags, sizeof flags, note, sizeof note);
    return json_pack("{s:s, s:s, s:s}", "tool", "llama.cpp", "flags", flags, "note", note);
}

/* -np: {"n_parallel", "auto", "ctx_per_sequence", "aggregate_decode_tokens_per_s",
 * "per_sequence_tokens_per_s", "step_seconds", "bottleneck"}; null when infeasible. */
static json_t *batch_json(const strata_plan *p)
{
    const plan_batch *b = &p->batch;
    if (!b->feasible) return json_null();
    return json_pack("{s:I, s:b, s:I, s:f, s:f, s:f, s:s}", "n_parallel", (json_int_t)b->n_seq, "auto",
                     p->parallel_auto, "ctx_per_sequence", (json_int_t)b->n_ctx, "aggregate_decode_tokens_per_s",
                     b->decode_tps, "per_sequence_tokens_per_s", b->seq_tps, "step_seconds", b->step_s, "bottleneck",
                     b->bottleneck);
}

char *strata_plan_json(const strata_plan *p, unsigned flags)
{
    const plan_result *r = plan_api_result(p);
    json_t *j = plan_result_to_json(&p->view, &p->machine, r);
    if (j && p->batched) json_object_set_new(j, "batch", batch_json(p));
    json_t *mach = json_object_get(j, "machine");
    if (json_is_object(mach)) {
        json_object_set_new(mach, "disk_source", p->notes.disk[0] ? json_string(p->notes.disk) : json_null());
        json_object_set_new(mach, "profile_note", p->notes.profile[0] ? json_string(p->notes.profile) : json_null());
        json_object_set_new(mach, "routing_note", p->routing_note[0] ? json_string(p->routing_note) : json_null());
    }
    if (j && (flags & STRATA_PLAN_EXPORT))
        json_object_set_new(j, "export", r->chosen.feasible ? export_json(&p->view, &r->chosen) : json_null());
    char *text = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    return text;
}
