#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan/plan_text.h"
#include "util/error.h"
#include "util/json_util.h"

bool plan_model_has_experts(const plan_model *m)
{
    for (uint32_t g = 0; g < m->n_expert_sets; g++)
        if (m->experts && m->experts[g].n_expert) return true;
    return false;
}

static const char *tier_word(int8_t t) { return t == TIER_DISK ? "streamed" : t == TIER_RAM ? "resident" : "on GPU"; }

/* Where a streamed group computes, when not every group crosses the link. */
static const char *link_word(const plan *p, uint8_t site)
{
    return site == PLAN_SITE_LINK && !p->over_link ? ", over the link to GPU 0" : "";
}

/* Appends "blk A-B word" for runs of layers with the same tier and site. */
void plan_placement_summary(const plan_model *m, const plan *p, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    uint32_t n_layers = m->n_groups ? m->n_groups - 1 : 0;
    for (uint32_t g = 0; g < n_layers;) {
        uint32_t e = g;
        while (e + 1 < n_layers && p->tier[e + 1] == p->tier[g] && p->site[e + 1] == p->site[g]) e++;
        char gpu[16] = "";
        if (p->tier[g] >= 0) snprintf(gpu, sizeof gpu, " %d", p->tier[g]);
        len += (size_t)snprintf(buf + len, len < cap ? cap - len : 0, "%sblk %u%s%.0u %s%s%s", len ? ", " : "", g,
                                e > g ? "-" : "", e > g ? e : 0, tier_word(p->tier[g]), gpu, link_word(p, p->site[g]));
        g = e + 1;
    }
    if (m->n_groups)
        len += (size_t)snprintf(buf + len, len < cap ? cap - len : 0, "%soutput %s%s", len ? "; " : "",
                                tier_word(p->tier[m->n_groups - 1]), link_word(p, p->site[m->n_groups - 1]));
    if (p->moe_split && p->n_cpu_moe)
        len += (size_t)snprintf(buf + len, len < cap ? cap - len : 0, "; experts of blk 0%s%.0u resident in RAM",
                                p->n_cpu_moe > 1 ? "-" : "", p->n_cpu_moe > 1 ? p->n_cpu_moe - 1 : 0);
    else if (p->expert_units && p->expert_slots >= p->expert_units)
        len += (size_t)snprintf(buf + len, len < cap ? cap - len : 0, "; experts resident");
    else if (p->expert_units)
        len += (size_t)snprintf(buf + len, len < cap ? cap - len : 0, "; expert cache %u of %u units",
                                p->expert_slots, p->expert_units);
    if (m->n_groups)
        len += (size_t)snprintf(buf + len, len < cap ? cap - len : 0, "%stoken_embd rows gathered", len ? "; " : "");
    if (p->over_link)
        snprintf(buf + len, len < cap ? cap - len : 0, "; weights cross the link to GPU 0 every token");
}

static const char *const SITE_NAMES[] = {[PLAN_SITE_CPU] = "cpu", [PLAN_SITE_GPU] = "gpu", [PLAN_SITE_LINK] = "link"};

void plan_prefill_summary(const plan_model *m, const plan *p, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    for (uint32_t g = 0; g < m->n_groups;) {
        if (p->prefill_site[g] == p->site[g]) {
            g++;
            continue;
        }
        uint32_t e = g;
        while (e + 1 < m->n_groups - 1 && p->prefill_site[e + 1] != p->site[e + 1]) e++;
        if (g + 1 == m->n_groups) len += (size_t)snprintf(buf + len, len < cap ? cap - len : 0, "%soutput",
                                                          len ? ", " : "");
        else len += (size_t)snprintf(buf + len, len < cap ? cap - len : 0, "%sblk %u%s%.0u", len ? ", " : "", g,
                                     e > g ? "-" : "", e > g ? e : 0);
        g = e + 1;
    }
    snprintf(buf + len, len < cap ? cap - len : 0, " streamed over the link to GPU 0 (on the CPU when decoding) "
             "for steps of %u+ tokens", PLAN_PREFILL_MIN_BATCH);
}

static json_t *tier_json(const plan_tier_bytes *t)
{
    return json_pack("{s:I, s:I, s:I, s:I}", "weights", (json_int_t)t->weights, "kv_cache", (json_int_t)t->kv,
                     "buffers", (json_int_t)t->buffers, "overhead", (json_int_t)t->overhead);
}

json_t *plan_to_json(const plan_model *m, const plan *p)
{
    json_t *o = json_pack("{s:s, s:b, s:b}", "label", p->label, "feasible", p->feasible, "runnable", p->runnable);
    if (!p->feasible) {
        json_object_set_new(o, "reason", json_string(p->reason));
        return o;
    }
    char summary[1024];
    plan_placement_summary(m, p, summary, sizeof summary);
    json_t *groups = json_array(), *gpus = json_array();
    for (uint32_t g = 0; g < m->n_groups; g++)
        json_array_append_new(groups, json_pack("{s:s, s:s, s:i, s:I, s:s, s:s}", "name", m->groups[g].name, "tier",
                                                p->tier[g] == TIER_DISK ? "disk" : p->tier[g] == TIER_RAM ? "ram" : "gpu",
                                                "gpu", p->tier[g] >= 0 ? p->tier[g] : -1, "bytes",
                                                (json_int_t)m->groups[g].bytes, "site", SITE_NAMES[p->site[g]],
                                                "prefill_site", SITE_NAMES[p->prefill_site[g]]));
    for (int d = 0; d < PLAN_MAX_GPUS; d++)
        if (p->gpu[d].weights || p->gpu[d].kv || p->gpu[d].buffers) {
            json_t *t = tier_json(&p->gpu[d]);
            json_object_set_new(t, "index", json_integer(d));
            json_array_append_new(gpus, t);
        }
    json_object_update_new(o, json_pack("{s:i, s:s, s:s, s:o, s:o, s:o, s:I, s:i, s:I, s:I, s:I}", "n_ctx",
                                        (int)p->n_ctx, "kv_type", plan_kv_name(p->kv), "placement", summary, "groups",
                                        groups, "ram", tier_json(&p->ram), "gpus", gpus, "slot_bytes",
                                        (json_int_t)p->slot_bytes, "n_slots", (int)p->n_slots,
                                        "disk_bytes_per_token", (json_int_t)p->disk_bytes_per_token,
                                        "ram_bytes_per_token", (json_int_t)p->ram_bytes_per_token,
                                        "vram_bytes_per_token", (json_int_t)p->vram_bytes_per_token));
    json_object_set_new(o, "weights_over_link", json_boolean(p->over_link));
    if (p->phase_sites) {
        char pf[1024];
        plan_prefill_summary(m, p, pf, sizeof pf);
        json_object_set_new(o, "prefill_placement", json_string(pf));
        json_object_set_new(o, "prefill_min_batch", json_integer(PLAN_PREFILL_MIN_BATCH));
    }
    if (plan_model_has_experts(m))
        json_object_set_new(o, "experts", json_pack("{s:I, s:I, s:I, s:f, s:s?, s:I, s:I, s:I}", "units",
                                                    (json_int_t)p->expert_units, "cached_units",
                                                    (json_int_t)p->expert_slots, "unit_slot_bytes",
                                                    (json_int_t)p->expert_slot_bytes, "hit_rate", p->expert_hit_rate,
                                                    "hit_rate_source", p->expert_hit_source, "disk_bytes_per_token",
                                                    (json_int_t)p->expert_disk_bytes_per_token, "n_cpu_moe",
                                                    (json_int_t)p->n_cpu_moe, "routing_tokens",
                                                    (json_int_t)m->routing_tokens));
    json_object_update_new(o, json_pack("{s:f, s:f, s:s, s:{s:f, s:f, s:f, s:f, s:f}}", "decode_tokens_per_s",
                                        p->decode_tps, "prefill_tokens_per_s", p->prefill_tps, "bottleneck",
                                        p->bottleneck, "seconds_per_token", "compute", p->t_compute, "ram", p->t_ram,
                                        "disk", p->t_disk, "link", p->t_link, "vram", p->t_vram));
    return o;
}

json_t *plan_result_to_json(const plan_model *m, const plan_machine *hw, const plan_result *r)
{
    json_t *alts = json_array(), *warn = json_array();
    for (int i = 0; i < r->n_alts; i++) {
        json_t *a = plan_to_json(m, &r->alts[i]);
        json_object_set_new(a, "verdict", json_string(r->alts[i].rejected));
        json_array_append_new(alts, a);
    }
    for (int i = 0; i < r->n_warnings; i++) json_array_append_new(warn, json_string(r->warnings[i]));
    /* the name is the file's general.name: not always UTF-8, which json_pack refuses (the whole plan) */
    return json_pack("{s:s, s:o, s:o, s:o, s:o, s:{s:I, s:f, s:f, s:f, s:b, s:i, s:b}}", "schema", "strata-plan",
                     "model", json_str_lossy(m->name), "plan", plan_to_json(m, &r->chosen), "alternatives", alts, "warnings", warn,
                     "machine", "ram_budget_bytes", (json_int_t)hw->ram_budget, "ram_bytes_per_s", hw->ram_bw,
                     "disk_bytes_per_s", hw->disk_bw, "cpu_weights_per_s", hw->cpu_rate, "measured", hw->measured,
                     "threads", hw->threads, "threads_scaled", hw->threads_scaled);
}

/* The saved prediction: label, speeds and bottleneck (one of the planner's
 * names, else NULL), as `plan --json` wrote them. */
static void saved_prediction(const json_t *p, plan *out)
{
    static const char *const bottlenecks[] = {"disk", "RAM bandwidth", "GPU link", "VRAM bandwidth", "compute"};
    const char *label = json_string_value(json_object_get(p, "label"));
    const char *b = json_string_value(json_object_get(p, "bottleneck"));
    snprintf(out->label, sizeof out->label, "%s", label ? label : "saved plan");
    out->decode_tps = json_number_value(json_object_get(p, "decode_tokens_per_s"));
    out->prefill_tps = json_number_value(json_object_get(p, "prefill_tokens_per_s"));
    for (size_t i = 0; b && i < sizeof bottlenecks / sizeof *bottlenecks; i++)
        if (!strcmp(b, bottlenecks[i])) out->bottleneck = bottlenecks[i];
}

/* A site name of a saved group ("cpu", "gpu", "link"); absent: `def`. */
static bool site_of(const json_t *v, uint8_t def, uint8_t *out)
{
    *out = def;
    if (!v) return true;
    const char *s = json_string_value(v);
    for (uint8_t i = 0; s && i < sizeof SITE_NAMES / sizeof *SITE_NAMES; i++)
        if (!strcmp(s, SITE_NAMES[i])) {
            *out = i;
            return true;
        }
    return false;
}

/* Group g's sites as saved (a file without them: where its tier and
 * weights_over_link put it), checked against its tier: "gpu" exactly on
 * the GPU tier, "link" for weights in RAM or on disk, and a prompt batch's
 * site the decode site or, for a group the CPU decodes, "link". */
static strata_status group_sites(const json_t *e, uint32_t g, plan *out, strata_error *err)
{
    uint8_t def = out->tier[g] >= 0 ? PLAN_SITE_GPU : out->over_link ? PLAN_SITE_LINK : PLAN_SITE_CPU;
    if (!site_of(json_object_get(e, "site"), def, &out->site[g]) ||
        !site_of(json_object_get(e, "prefill_site"), out->site[g], &out->prefill_site[g]))
        return err_set(err, STRATA_E_FORMAT, "plan: \"plan.groups[%u].site\" and \"prefill_site\" must be \"cpu\", "
                       "\"gpu\" or \"link\"", g);
    if ((out->site[g] == PLAN_SITE_GPU) != (out->tier[g] >= 0))
        return err_set(err, STRATA_E_FORMAT, "plan: \"plan.groups[%u]\": \"site\": \"gpu\" goes with \"tier\": "
                       "\"gpu\" and only with it", g);
    if (out->over_link && out->site[g] == PLAN_SITE_CPU)
        return err_set(err, STRATA_E_FORMAT, "plan: \"plan.groups[%u]\" is on the CPU, but \"weights_over_link\" "
                       "sends every group over the link", g);
    if (out->prefill_site[g] != out->site[g] &&
        (out->site[g] != PLAN_SITE_CPU || out->prefill_site[g] != PLAN_SITE_LINK))
        return err_set(err, STRATA_E_FORMAT, "plan: \"plan.groups[%u].prefill_site\" may differ from its \"site\" "
                       "only as \"link\" for a group on the \"cpu\"", g);
    out->phase_sites |= out->prefill_site[g] != out->site[g];
    return STRATA_OK;
}

strata_status plan_from_json(const json_t *doc, const plan_model *m, plan *out, strata_error *err)
{
    memset(out, 0, sizeof *out);
    const json_t *p = json_object_get(doc, "plan");
    const json_t *groups = json_object_get(p, "groups");
    if (!json_is_object(p) || !json_is_true(json_object_get(p, "feasible")))
        return err_set(err, STRATA_E_FORMAT, "plan: no feasible \"plan\" object");
    if (!json_is_array(groups) || json_array_size(groups) != m->n_groups)
        return err_set(err, STRATA_E_FORMAT, "plan: \"plan.groups\" does not match this model's %u groups", m->n_groups);
    json_int_t ctx = json_integer_value(json_object_get(p, "n_ctx"));
    const char *kv = json_string_value(json_object_get(p, "kv_type"));
    if (ctx < 1 || ctx > (1 << 24)) return err_set(err, STRATA_E_FORMAT, "plan: \"plan.n_ctx\" is missing or out of range");
    out->kv = PLAN_KV_F16;
    while (kv && strcmp(kv, plan_kv_name(out->kv)) && out->kv < PLAN_KV_Q4_0) out->kv++;
    if (!kv || strcmp(kv, plan_kv_name(out->kv)))
        return err_set(err, STRATA_E_FORMAT, "plan: \"plan.kv_type\" must be f16, q8_0 or q4_0");
    if (json_is_false(json_object_get(p, "runnable")))
        return err_set(err, STRATA_E_UNSUPPORTED, "plan: \"plan\" is a plan for GPU execution (\"%.60s\"), which the "
                       "engine does not run yet", json_string_value(json_object_get(p, "label")) ?
                       json_string_value(json_object_get(p, "label")) : "?");
    const json_t *over_link = json_object_get(p, "weights_over_link");
    if (over_link && !json_is_boolean(over_link))
        return err_set(err, STRATA_E_FORMAT, "plan: \"plan.weights_over_link\" must be true or false");
    out->n_groups = m->n_groups;
    if (!plan_alloc_groups(out, m->n_groups)) return err_set(err, STRATA_E_NOMEM, "out of memory");
    out->n_ctx = (uint32_t)ctx;
    out->feasible = true;
    saved_prediction(p, out);
    for (uint32_t g = 0; g < m->n_groups; g++) {
        const json_t *e = json_array_get(groups, g);
        const char *name = json_string_value(json_object_get(e, "name"));
        const char *tier = json_string_value(json_object_get(e, "tier"));
        if (!name || strcmp(name, m->groups[g].name) || !tier ||
            (strcmp(tier, "ram") && strcmp(tier, "disk") && strcmp(tier, "gpu"))) {
            plan_free(out);
            return err_set(err, STRATA_E_FORMAT, "plan: \"plan.groups[%u]\" must be {\"name\": \"%s\", \"tier\": "
                           "\"ram\", \"disk\" or \"gpu\"}", g, m->groups[g].name);
        }
        const json_t *gpu = json_object_get(e, "gpu");
        if (!strcmp(tier, "gpu") && (!json_is_integer(gpu) || json_integer_value(gpu) < 0)) {
            plan_free(out);
            return err_set(err, STRATA_E_FORMAT, "plan: \"plan.groups[%u]\" is on the GPU without a \"gpu\" index",
                           g);
        }
        if (!strcmp(tier, "gpu") && json_integer_value(gpu) != 0) {
            plan_free(out);
            return err_set(err, STRATA_E_UNSUPPORTED, "plan: \"plan.groups[%u]\" is on GPU %lld: the engine runs "
                           "one GPU (\"gpu\": 0)", g, (long long)json_integer_value(gpu));
        }
        /* the same layer names and count, but not the same tensors: a plan for another model */
        const json_t *bytes = json_object_get(e, "bytes");
        if (!json_is_integer(bytes) || (uint64_t)json_integer_value(bytes) != m->groups[g].bytes) {
            plan_free(out);
            return err_set(err, STRATA_E_FORMAT, "plan: \"plan.groups[%u].bytes\" is %lld, but this model's %s has "
                           "%llu bytes: the plan was made for another model", g,
                           (long long)json_integer_value(bytes), m->groups[g].name,
                           (unsigned long long)m->groups[g].bytes);
        }
        out->tier[g] = !strcmp(tier, "gpu") ? 0 : strcmp(tier, "ram") ? TIER_DISK : TIER_RAM;
    }
    out->over_link = json_is_true(over_link);
    strata_status st = STRATA_OK;
    for (uint32_t g = 0; g < m->n_groups && !st; g++) st = group_sites(json_array_get(groups, g), g, out, err);
    if (st) plan_free(out);
    return st;
}

void plan_export_llamacpp(const plan_model *m, const plan *p, char *flags, size_t cap, char *note, size_t note_cap)
{
    uint32_t gpu_layers = 0, streamed = 0, linked = 0, n_layers = m->n_groups ? m->n_groups - 1 : 0;
    bool kv_on_gpu = false, cache = p->expert_slots < p->expert_units;
    for (uint32_t g = 0; g + 1 < m->n_groups; g++) {
        gpu_layers += p->tier[g] >= 0;
        streamed += p->tier[g] == TIER_DISK;
        linked += p->site[g] == PLAN_SITE_LINK;
    }
    for (int d = 0; d < PLAN_MAX_GPUS; d++) kv_on_gpu |= p->gpu[d].kv > 0;
    uint32_t ngl = gpu_layers + (m->n_groups && p->tier[m->n_groups - 1] >= 0);
    /* the --n-cpu-moe split: the experts of the first N layers on the CPU (all of them: -ot exps=CPU) */
    char moe[48] = "";
    if (p->moe_split && p->n_cpu_moe >= n_layers && n_layers) snprintf(moe, sizeof moe, " -ot exps=CPU");
    else if (p->moe_split && p->n_cpu_moe) snprintf(moe, sizeof moe, " --n-cpu-moe %u", p->n_cpu_moe);
    /* -nkvo: layers on the GPU, their KV cache in RAM */
    snprintf(flags, cap, "-c %u -ctk %s -ctv %s -ngl %u%s%s%s", p->n_ctx, plan_kv_name(p->kv), plan_kv_name(p->kv),
             ngl, ngl && !kv_on_gpu ? " -nkvo" : "", moe, streamed || cache ? "" : " --no-mmap --mlock");
    size_t len;
    if (p->over_link)
        len = (size_t)snprintf(note, note_cap, "llama.cpp cannot stream the weights over the GPU link for every "
                               "decoded token: with -ngl 0 it sends them to the GPU for large prompt batches only");
    else if (linked)
        len = (size_t)snprintf(note, note_cap, "llama.cpp cannot stream the %u layers that do not fit in VRAM over the "
                               "GPU link for every decoded token: with -ngl %u the CPU computes them", linked, ngl);
    else if (streamed)
        len = (size_t)snprintf(note, note_cap, "llama.cpp cannot stream %u layers from disk under a memory bound: "
                               "with mmap it leaves them to the page cache, which thrashes when the model exceeds "
                               "free RAM%s", streamed, cache ? "; nor cache experts one by one" : "");
    else if (cache)
        len = (size_t)snprintf(note, note_cap, "llama.cpp cannot cache experts one by one under a memory bound: with "
                               "mmap the page cache decides which experts stay, and thrashes when the model exceeds "
                               "free RAM");
    else if (p->moe_split)
        len = (size_t)snprintf(note, note_cap, "llama.cpp's static split: everything on the GPU but the experts of "
                               "%u of %u layers, which stay in RAM", p->n_cpu_moe, n_layers);
    else
        len = (size_t)snprintf(note, note_cap, "everything fits in memory: llama.cpp can run this plan as is");
    if (p->phase_sites && len < note_cap)
        len += (size_t)snprintf(note + len, note_cap - len, "; like this plan, llama.cpp sends the CPU's layers to "
                                "the GPU for large prompt batches");
    if (p->kv != PLAN_KV_F16 && len < note_cap)
        snprintf(note + len, note_cap - len, "; a quantized V cache needs flash attention (-fa)");
}
