/* strata plan MODEL: where every tensor should live on this (or a
 * hypothetical) machine, and how fast it will run. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "gguf/gguf.h"
#include "model/model_spec.h"
#include "plan/inputs.h"
#include "plan/plan_batch.h"
#include "plan/plan_text.h"
#include "util/fmt.h"

static const char plan_usage[] =
    "usage: strata plan MODEL [options]   (or -m MODEL)\n"
    "\n"
    "Decides where the model's weights and KV cache live (GPU, RAM, or streamed from\n"
    "disk) under the memory budget, and predicts prefill and decode speed from the\n"
    "machine's measured bandwidths (docs/cost-model.md), naming the bottleneck.\n"
    "\n"
    "  -m, --model FILE     the model (instead of the positional MODEL)\n"
    "  -c, --ctx-size N     context length (default: the model's, reduced to fit)\n"
    "  --batch, --batch-size B  tokens per step for the prefill prediction (default 256;\n"
    "                       32 or more optimizes prefill speed instead of decode)\n"
    "  -np, --parallel N|auto  N sequences decoding together (strata batch / serve -np N):\n"
    "                       the placement holds N sequences' KV caches next to the weights\n"
    "                       (-c tokens each; default 512, or the model's context if smaller)\n"
    "                       and the speed is the aggregate decode tok/s of a step of N tokens;\n"
    "                       auto: the largest N whose KV caches fit (at most 256 per step)\n"
    "  -t, --threads N      threads the prediction is for (default: one per usable core,\n"
    "                       as run); the engine is calibrated at N once (a few seconds)\n"
    "  --kv-type T          KV cache type: f16 (default), q8_0 or q4_0\n"
    "  --moe-hit-rate X     mixture of experts: the expert cache's hit rate, 0 to 1\n"
    "                       (default: estimated for uniform routing and an LRU cache)\n"
    "  --mem SIZE           RAM budget (default: usable memory minus 10%, at least\n"
    "                       256 MiB, at most a quarter); SIZE: a decimal number and\n"
    "                       K, M, G or T (powers of 1024), bytes without a unit; at\n"
    "                       least 1M. More than this process can use (its cgroup's\n"
    "                       limit, the available memory) is clamped with a warning\n"
    "  --strict-mem         refuse a --mem above what this process can use\n"
    "  --hw PROFILE.json    plan for this machine profile (`strata detect --json`\n"
    "                       format, e.g. an edited one) instead of this machine\n"
    "  --compare            list the alternatives considered and why each lost\n"
    "  --json               print the plan as one JSON object (read by `run --plan`)\n"
    "  --can-run            only say whether it runs (with --json: the plan); the exit\n"
    "                       status tells (below)\n"
    "  --export llama.cpp   print equivalent llama.cpp flags (with --json: under \"export\";\n"
    "                       with --can-run: after the verdict line)\n"
    "  -h, --help           show this help\n"
    "\n"
    "exit status: 0 runs entirely in memory (without --can-run: a plan was made),\n"
    "1 runs with weights streamed from disk (--can-run only), 2 cannot run,\n"
    "3 error (bad option, unreadable model or profile).\n";

#define PLAN_EXIT_ERROR 3
static const char *const plan_help[] = {plan_usage, NULL};

typedef struct plan_args {
    const char *model, *hw_file, *export_to;
    uint64_t mem;
    int threads;         /* -t N; 0: the default (one per usable physical core) */
    plan_request req;
    uint32_t n_parallel; /* -np N; 0: not asked */
    bool parallel_auto;  /* -np auto */
    bool compare, json, can_run, strict_mem;
} plan_args;

/* The model: a positional path and/or -m PATH (the same path when both). */
static bool set_model(plan_args *a, const char *v)
{
    if (a->model && strcmp(a->model, v)) {
        fprintf(stderr, "strata plan: more than one model given ('%s' and '%s')\n", a->model, v);
        return false;
    }
    a->model = v;
    return true;
}

static bool kv_type_opt(plan_args *a, const char *v)
{
    if (!strcmp(v, "f16")) a->req.kv = PLAN_KV_F16;
    else if (!strcmp(v, "q8_0")) a->req.kv = PLAN_KV_Q8_0;
    else if (!strcmp(v, "q4_0")) a->req.kv = PLAN_KV_Q4_0;
    else {
        fprintf(stderr, "strata plan: --kv-type '%s': expected f16, q8_0 or q4_0\n", v);
        return false;
    }
    return true;
}

/* -np N (1 to 256) or auto. */
static bool parallel_opt(plan_args *a, const char *f, const char *v)
{
    uint64_t u = 0;
    if (!strcmp(v, "auto")) {
        a->parallel_auto = true;
        return true;
    }
    if ((v[0] < '0' || v[0] > '9') && v[0]) {
        fprintf(stderr, "strata plan: %s '%s': expected a number of sequences or auto\n", f, v);
        return false;
    }
    if (!arg_u64("plan", f, v, 1, PLAN_BATCH_MAX, &u)) return false;
    a->n_parallel = (uint32_t)u;
    a->parallel_auto = false;
    return true;
}

/* An option with a value: false on a bad value or an unknown option (reported). */
static bool value_opt(plan_args *a, const char *f, const char *v)
{
    uint64_t u = 0;
    bool ok = true;
    if (!strcmp(f, "-m") || !strcmp(f, "--model")) return set_model(a, v);
    if (!strcmp(f, "-c") || !strcmp(f, "--ctx-size")) {
        ok = arg_u64("plan", f, v, 1, 1u << 24, &u);
        a->req.n_ctx = (uint32_t)u;
    } else if (!strcmp(f, "--batch") || !strcmp(f, "--batch-size")) {
        ok = arg_u64("plan", f, v, 1, 1u << 16, &u);
        a->req.n_batch = (uint32_t)u;
    } else if (!strcmp(f, "--mem")) {
        ok = arg_size("plan", f, v, &a->mem);
    } else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) {
        ok = arg_u64("plan", f, v, 1, 1024, &u);
        a->threads = (int)u;
    } else if (!strcmp(f, "-np") || !strcmp(f, "--parallel")) {
        ok = parallel_opt(a, f, v);
    } else if (!strcmp(f, "--kv-type")) {
        ok = kv_type_opt(a, v);
    } else if (!strcmp(f, "--moe-hit-rate")) {
        ok = arg_float("plan", f, v, 0, 1, &a->req.moe_hit_rate);
        a->req.moe_hit_rate_set = true;
    } else if (!strcmp(f, "--hw")) {
        a->hw_file = v;
    } else if (!strcmp(f, "--export")) {
        if (strcmp(v, "llama.cpp")) fprintf(stderr, "strata plan: --export '%s': only llama.cpp is supported\n", v);
        ok = !strcmp(v, "llama.cpp");
        a->export_to = v;
    } else {
        arg_unknown("plan", plan_help, f);
        return false;
    }
    return ok;
}

/* 0: parsed; -1: --help printed; PLAN_EXIT_ERROR: usage error (reported). */
static int parse_plan_args(int argc, char **argv, plan_args *a)
{
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(plan_usage, stdout);
            return -1;
        }
        if (!strcmp(f, "--compare")) a->compare = true;
        else if (!strcmp(f, "--json")) a->json = true;
        else if (!strcmp(f, "--can-run")) a->can_run = true;
        else if (!strcmp(f, "--strict-mem")) a->strict_mem = true;
        else if (f[0] != '-' || !f[1]) {
            if (!set_model(a, f)) return PLAN_EXIT_ERROR;
        } else if (i + 1 >= argc) {
            arg_no_value("plan", plan_help, f);
            return PLAN_EXIT_ERROR;
        } else if (!value_opt(a, f, argv[++i])) {
            return PLAN_EXIT_ERROR;
        }
    }
    if (!a->model) {
        fputs(plan_usage, stderr);
        return PLAN_EXIT_ERROR;
    }
    return 0;
}

static void print_tier_line(const char *name, const plan_tier_bytes *t)
{
    char w[32], k[32], b[32], o[32];
    printf("  %-10s weights %10s   KV cache %10s   buffers %10s   overhead %10s\n", name, fmt_bytes(t->weights, w, 32),
           fmt_bytes(t->kv, k, 32), fmt_bytes(t->buffers, b, 32), fmt_bytes(t->overhead, o, 32));
}

/* The experts' part: where they live, the hit rate assumed and whence, and
 * what the misses read per token. */
static void print_experts(const plan *p)
{
    char a[32], b[32];
    if (p->moe_split) {
        printf("  %-10s of the first %u layers resident in RAM (llama.cpp --n-cpu-moe %u), the rest on the GPU\n",
               "experts", p->n_cpu_moe, p->n_cpu_moe);
        return;
    }
    if (!p->expert_units) return;
    if (p->expert_slots >= p->expert_units) {
        printf("  %-10s all %u units resident (%s each, included in RAM weights)\n", "experts", p->expert_units,
               fmt_bytes(p->expert_slot_bytes, a, 32));
        return;
    }
    bool stated = p->expert_hit_source && !strcmp(p->expert_hit_source, "stated");
    printf("  %-10s cache of %u of %u units, %s each (included in RAM weights); hit rate %.1f%% (%s); "
           "misses read %s per token\n", "experts", p->expert_slots, p->expert_units,
           fmt_bytes(p->expert_slot_bytes, a, 32), 100 * p->expert_hit_rate,
           stated ? "stated with --moe-hit-rate" : p->expert_hit_source,
           fmt_bytes(p->expert_disk_bytes_per_token, b, 32));
}

/* Where everything lives and what memory it takes (the disk line: what a
 * forward pass reads). */
static void print_placement(const plan_model *m, const plan_machine *hw, const plan *p)
{
    char a[32], s[1024];
    plan_placement_summary(m, p, s, sizeof s);
    printf("plan        %s, context %u, KV cache %s\n", p->label, p->n_ctx, plan_kv_name(p->kv));
    printf("placement   %s\n", s);
    printf("memory      budget %s\n", fmt_bytes(hw->ram_budget, a, 32));
    for (int d = 0; d < PLAN_MAX_GPUS; d++)
        if (p->gpu[d].weights || p->gpu[d].kv) {
            char name[16];
            snprintf(name, sizeof name, "GPU %d", d);
            print_tier_line(name, &p->gpu[d]);
        }
    print_tier_line("RAM", &p->ram);
    if (p->n_slots) printf("  %-10s %u slots of %s (included in RAM weights)\n", "streaming", p->n_slots,
                           fmt_bytes(p->slot_bytes, a, 32));
    printf("  %-10s %s read per token\n", "disk", fmt_bytes(p->disk_bytes_per_token, a, 32));
    print_experts(p);
}

/* One sequence: decode and prefill speed, and the per-token terms. */
static void print_speed(const plan_machine *hw, const plan_machine_notes *notes, const plan *p)
{
    char b[32], c[32], rate[48];
    printf("speed       decode %.2f tok/s, prefill %.1f tok/s; bottleneck: %s\n", p->decode_tps, p->prefill_tps,
           p->bottleneck);
    printf("per token   compute %.1f ms (%s) | RAM %s, %.1f ms at %.1f GB/s | disk %s, %.1f ms at %.2f GB/s",
           1e3 * p->t_compute, fmt_rate(hw->cpu_rate, "weights/s", rate, sizeof rate),
           fmt_bytes(p->ram_bytes_per_token, b, 32), 1e3 * p->t_ram, hw->ram_bw / 1e9,
           fmt_bytes(p->disk_bytes_per_token, c, 32), 1e3 * p->t_disk, hw->disk_bw / 1e9);
    if (notes->disk[0]) printf(" (%s)", notes->disk);
    if (p->vram_bytes_per_token) printf(" | VRAM %.1f ms | link %.1f ms", 1e3 * p->t_vram, 1e3 * p->t_link);
    printf("\n");
    if (hw->engine_bw > 0)
        printf("threads     %d (engine %s)\n", hw->threads,
               hw->threads_scaled ? "rates scaled from a calibration at another thread count"
               : notes->calibrated_now ? "calibrated at this thread count now"
                                       : "calibrated at this thread count");
}

/* N sequences: the aggregate decode speed of a step of N tokens, its
 * terms, and for -np auto why N (and what smaller N would give). */
static void print_batch(const plan_model *m, const plan_machine *hw, const plan_machine_notes *notes,
                        const plan_args *a, const plan_batch *b)
{
    const plan *p = &b->r.chosen;
    char kv[32];
    uint64_t per_seq = p->ram.kv;
    for (int d = 0; d < PLAN_MAX_GPUS; d++) per_seq += p->gpu[d].kv;
    per_seq /= b->n_seq;
    if (a->parallel_auto)
        printf("batch       -np %u: the most sequences whose KV caches fit next to the weights%s\n", b->n_seq,
               b->n_seq == PLAN_BATCH_MAX || b->n_seq == m->batch ? " (the most one forward pass holds)" : "");
    printf("sequences   %u of context %u, KV cache %s each\n", b->n_seq, b->n_ctx, fmt_bytes(per_seq, kv, 32));
    printf("speed       decode %.2f tok/s aggregate (%.3f per sequence), a step %.1f ms; bottleneck: %s\n",
           b->decode_tps, b->seq_tps, 1e3 * b->step_s, b->bottleneck);
    printf("per step    compute %.1f ms | RAM %.1f ms at %.1f GB/s | disk %.1f ms at %.2f GB/s", 1e3 * p->tb_compute,
           1e3 * p->tb_ram, hw->ram_bw / 1e9, 1e3 * p->tb_disk, hw->disk_bw / 1e9);
    if (notes->disk[0]) printf(" (%s)", notes->disk);
    if (p->vram_bytes_per_token) printf(" | VRAM %.1f ms | link %.1f ms", 1e3 * p->tb_vram, 1e3 * p->tb_link);
    printf("\n");
}

/* -np auto: the aggregate at powers of two below the chosen N. */
static void print_scaling(const plan_model *m, const plan_machine *hw, const plan_request *req, const plan_batch *b)
{
    printf("scaling    ");
    for (uint32_t n = 1; n < b->n_seq; n *= 2) {
        plan_batch x;
        plan_batch_compute(m, hw, req, n, &x);
        printf(" -np %u: %.2f,", n, x.decode_tps);
        plan_batch_free(&x);
    }
    printf(" -np %u: %.2f tok/s\n", b->n_seq, b->decode_tps);
}

static void print_compare(const plan_result *r)
{
    printf("\nalternatives considered\n");
    for (int i = 0; i < r->n_alts; i++) {
        const plan *a = &r->alts[i];
        if (a->feasible)
            printf("  %-45s ctx %-6u decode %8.2f tok/s  prefill %8.1f tok/s  %s\n", a->label, a->n_ctx, a->decode_tps,
                   a->prefill_tps, a->rejected);
        else
            printf("  %-45s ctx %-6u %s\n", a->label, a->n_ctx, a->rejected);
    }
}

/* --export llama.cpp as JSON: {"tool", "flags", "note"}. */
static json_t *export_json(const plan_model *m, const plan *p)
{
    char flags[256], note[256];
    plan_export_llamacpp(m, p, flags, sizeof flags, note, sizeof note);
    return json_pack("{s:s, s:s, s:s}", "tool", "llama.cpp", "flags", flags, "note", note);
}

static void print_export(const plan_model *m, const plan *p)
{
    char flags[256], note[256];
    plan_export_llamacpp(m, p, flags, sizeof flags, note, sizeof note);
    printf("llama.cpp   %s\n            (%s)\n", flags, note);
}

/* --json: the plan as one object, with the export under "export" (null when
 * the plan is infeasible); with --can-run the exit status is the verdict. */
/* -np: {"n_parallel", "auto", "ctx_per_sequence", "aggregate_decode_tokens_per_s",
 * "per_sequence_tokens_per_s", "step_seconds", "bottleneck"}; null when infeasible. */
static json_t *batch_json(const plan_args *a, const plan_batch *b)
{
    if (!b->feasible) return json_null();
    return json_pack("{s:I, s:b, s:I, s:f, s:f, s:f, s:s}", "n_parallel", (json_int_t)b->n_seq, "auto",
                     a->parallel_auto, "ctx_per_sequence", (json_int_t)b->n_ctx, "aggregate_decode_tokens_per_s",
                     b->decode_tps, "per_sequence_tokens_per_s", b->seq_tps, "step_seconds", b->step_s, "bottleneck",
                     b->bottleneck);
}

static int report_json(const plan_args *a, const plan_model *m, const plan_machine *hw,
                       const plan_machine_notes *notes, const plan_result *r, const plan_batch *b)
{
    json_t *j = plan_result_to_json(m, hw, r);
    if (j && b) json_object_set_new(j, "batch", batch_json(a, b));
    json_t *mach = json_object_get(j, "machine");
    if (json_is_object(mach)) {
        json_object_set_new(mach, "disk_source", notes->disk[0] ? json_string(notes->disk) : json_null());
        json_object_set_new(mach, "profile_note", notes->profile[0] ? json_string(notes->profile) : json_null());
    }
    if (j && a->export_to)
        json_object_set_new(j, "export", r->chosen.feasible ? export_json(m, &r->chosen) : json_null());
    char *text = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    if (text) printf("%s\n", text);
    free(text);
    json_decref(j);
    if (!text) return PLAN_EXIT_ERROR;
    return a->can_run ? plan_can_run(&r->chosen) : 0;
}

/* --can-run: the verdict line (then the export when asked and feasible);
 * the exit status is the verdict. */
static int report_can_run(const plan_args *a, const plan_model *m, const plan_result *r)
{
    int rc = plan_can_run(&r->chosen);
    printf("%s\n", rc == 0 ? "yes: runs entirely in memory" : rc == 1 ? "yes: runs with weights streamed from disk"
                                                                       : r->chosen.reason);
    if (a->export_to && r->chosen.feasible) print_export(m, &r->chosen);
    return rc;
}

/* b: the plan of -np N sequences (r is b->r), or NULL. */
static int report(const plan_args *a, const plan_model *m1, const plan_machine *hw, const plan_machine_notes *notes,
                  const plan_result *r, const plan_batch *b)
{
    plan_model bm = b ? plan_batch_model(m1, b->n_seq) : *m1; /* with the KV of every sequence */
    const plan_model *m = &bm;
    if (a->json) return report_json(a, m, hw, notes, r, b);
    if (a->can_run) return report_can_run(a, m, r);
    printf("model       %s\n", a->model);
    if (notes->profile[0]) printf("machine     %s\n", notes->profile);
    if (!r->chosen.feasible) {
        printf("cannot run: %s\n", r->chosen.reason);
    } else {
        print_placement(m, hw, &r->chosen);
        if (!b) print_speed(hw, notes, &r->chosen);
        else print_batch(m1, hw, notes, a, b);
        if (b && a->parallel_auto) print_scaling(m1, hw, &a->req, b);
    }
    for (int i = 0; i < r->n_warnings; i++) printf("warning     %s\n", r->warnings[i]);
    if (a->compare) print_compare(r);
    if (a->export_to && r->chosen.feasible) {
        printf("\n");
        print_export(m, &r->chosen);
    }
    return r->chosen.feasible ? 0 : 2;
}

/* One sequence (plan_compute), or -np N / auto (plan_batch.h). */
static int plan_and_report(const plan_args *a, const plan_model *m, const plan_machine *hw,
                           const plan_machine_notes *notes)
{
    int rc;
    if (a->n_parallel || a->parallel_auto) {
        plan_batch b;
        uint32_t most = m->batch && m->batch < PLAN_BATCH_MAX ? m->batch : PLAN_BATCH_MAX;
        if (a->parallel_auto) plan_batch_recommend(m, hw, &a->req, most, &b);
        else plan_batch_compute(m, hw, &a->req, a->n_parallel, &b);
        rc = report(a, m, hw, notes, &b.r, &b);
        plan_batch_free(&b);
    } else {
        plan_result r;
        plan_compute(m, hw, &a->req, &r);
        rc = report(a, m, hw, notes, &r, NULL);
        plan_result_free(&r);
    }
    return rc;
}

int cmd_plan(int argc, char **argv)
{
    plan_args a = {0};
    int rc = parse_plan_args(argc, argv, &a);
    if (rc) return rc < 0 ? 0 : rc;
    /* This machine: plans that `run` can execute (CPU engine), GPU plans shown
     * with --compare. A --hw profile: the best plan, GPU tiers included. */
    a.req.cpu_only = a.hw_file == NULL;
    strata_error err;
    gguf_file *f = NULL;
    model_spec *spec = NULL;
    hw_profile *hw = calloc(1, sizeof *hw);
    plan_model m = {0};
    plan_machine_notes notes;
    memset(&notes, 0, sizeof notes);
    /* the model as run would open it, with its threads (scratch grows with them) */
    if (!hw || gguf_open(a.model, &f, &err) || model_spec_from_gguf(f, a.model, &spec, &err) ||
        plan_machine_profile(a.hw_file, a.model, !a.json && !a.can_run, true, a.mem, a.threads, hw, &notes, &err) ||
        plan_model_from_engine(f, spec, a.threads ? a.threads : hw_default_threads(&hw->cpu), &m, &err)) {
        fprintf(stderr, "strata plan: %s\n", hw ? err.message : "out of memory");
        rc = PLAN_EXIT_ERROR;
    } else {
        /* on this machine, a --mem above what the process can use is clamped */
        bool binds = hw_memory_cgroup_binds(&hw->mem);
        const hw_cgroup *cg = &hw->mem.cgroup;
        cli_memory mem = {a.hw_file ? 0 : hw->mem.usable, binds ? cg->limit : 0, binds ? cg->usage - cg->reclaimable : 0};
        if (a.mem && !cli_clamp_budget("plan", &mem, a.strict_mem, &a.mem)) {
            rc = PLAN_EXIT_ERROR;
        } else {
            plan_machine pm;
            plan_machine_from_profile(hw, a.mem, a.threads, &pm);
            rc = plan_and_report(&a, &m, &pm, &notes);
        }
    }
    plan_model_free(&m);
    model_spec_free(spec);
    gguf_close(f);
    free(hw);
    return rc;
}
