/* strata plan MODEL: where every tensor should live on this (or a
 * hypothetical) machine, and how fast it will run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "strata.h"

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
    "                       32 or more optimizes prefill speed instead of decode; with a\n"
    "                       GPU, layers the CPU decodes may stream to it for such steps:\n"
    "                       the \"prefill\" line)\n"
    "  -np, --parallel N|auto  N sequences decoding together (strata batch / serve -np N):\n"
    "                       the placement holds N sequences' KV caches next to the weights\n"
    "                       (-c tokens each; default 512, or the model's context if smaller)\n"
    "                       and the speed is the aggregate decode tok/s of a step of N tokens;\n"
    "                       auto: the largest N whose KV caches fit (at most 256 per step)\n"
    "  -t, --threads N      threads the prediction is for (default: one per usable core,\n"
    "                       as run); the engine is calibrated at N once (a few seconds)\n"
    "  --kv-type T          KV cache type: f16 (default), q8_0 or q4_0\n"
    "  --moe-hit-rate X     mixture of experts: the expert cache's hit rate, 0 to 1\n"
    "                       (default: estimated from the routing, see --moe-routing)\n"
    "  --moe-routing R      the routing that estimate assumes: measured (default: the\n"
    "                       model's routers on a 128-token built-in prompt, once per\n"
    "                       file, a few seconds under --mem or less; cached beside\n"
    "                       the profile) or uniform (every expert equally likely)\n"
    "  --mem SIZE           RAM budget (default: usable memory minus 10%, at least\n"
    "                       256 MiB, at most a quarter); SIZE: a decimal number and\n"
    "                       K, M, G or T (powers of 1024), bytes without a unit; at\n"
    "                       least 1M. More than this process can use (its cgroup's\n"
    "                       limit, the available memory) is clamped with a warning\n"
    "  --strict-mem         refuse a --mem above what this process can use\n"
    "  --hw PROFILE.json    plan for this machine profile (`strata detect --json`\n"
    "                       format, e.g. an edited one) instead of this machine\n"
    "  --compare            list the alternatives considered and why each lost ('*': plans\n"
    "                       strata cannot run)\n"
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
    const char *model, *export_to;
    strata_plan_params p; /* --hw, --mem, -c, --batch, -np, --kv-type, -t, --moe-hit-rate, --moe-routing */
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
    if (!strcmp(v, "f16")) a->p.kv_type = STRATA_KV_F16;
    else if (!strcmp(v, "q8_0")) a->p.kv_type = STRATA_KV_Q8_0;
    else if (!strcmp(v, "q4_0")) a->p.kv_type = STRATA_KV_Q4_0;
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
        a->p.parallel_auto = true;
        return true;
    }
    if ((v[0] < '0' || v[0] > '9') && v[0]) {
        fprintf(stderr, "strata plan: %s '%s': expected a number of sequences or auto\n", f, v);
        return false;
    }
    if (!arg_u64("plan", f, v, 1, STRATA_PLAN_MAX_PARALLEL, &u)) return false;
    a->p.n_parallel = (uint32_t)u;
    a->p.parallel_auto = false;
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
        a->p.n_ctx = (uint32_t)u;
    } else if (!strcmp(f, "--batch") || !strcmp(f, "--batch-size")) {
        ok = arg_u64("plan", f, v, 1, 1u << 16, &u);
        a->p.n_batch = (uint32_t)u;
    } else if (!strcmp(f, "--mem")) {
        ok = arg_size("plan", f, v, &a->p.mem_budget);
    } else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) {
        ok = arg_u64("plan", f, v, 1, 1024, &u);
        a->p.n_threads = (int)u;
    } else if (!strcmp(f, "-np") || !strcmp(f, "--parallel")) {
        ok = parallel_opt(a, f, v);
    } else if (!strcmp(f, "--kv-type")) {
        ok = kv_type_opt(a, v);
    } else if (!strcmp(f, "--moe-hit-rate")) {
        ok = arg_float("plan", f, v, 0, 1, &a->p.moe_hit_rate);
        a->p.moe_hit_rate_set = true;
    } else if (!strcmp(f, "--moe-routing")) {
        ok = !strcmp(v, "measured") || !strcmp(v, "uniform");
        if (!ok) fprintf(stderr, "strata plan: --moe-routing '%s': expected measured or uniform\n", v);
        a->p.moe_uniform_routing = !strcmp(v, "uniform");
    } else if (!strcmp(f, "--hw")) {
        a->p.profile_file = v;
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

/* --json: the plan as one object, with the export under "export" (null when
 * the plan is infeasible); with --can-run the exit status is the verdict. */
static int report_json(const plan_args *a, const strata_plan *p)
{
    char *text = strata_plan_json(p, a->export_to ? STRATA_PLAN_EXPORT : 0);
    if (text) printf("%s\n", text);
    free(text);
    if (!text) {
        fprintf(stderr, "strata plan: the plan could not be rendered as JSON (out of memory)\n");
        return PLAN_EXIT_ERROR;
    }
    return a->can_run ? strata_plan_verdict(p) : 0;
}

/* --can-run: the verdict line (then the export when asked and feasible);
 * the exit status is the verdict. */
static int report_can_run(const plan_args *a, const strata_plan *p)
{
    int rc = strata_plan_verdict(p);
    printf("%s\n", rc == 0 ? "yes: runs entirely in memory" : rc == 1 ? "yes: runs with weights streamed from disk"
                                                                       : strata_plan_reason(p));
    if (a->export_to && rc < 2) strata_plan_print_export(p, stdout);
    return rc;
}

static int report(const plan_args *a, const strata_plan *p)
{
    if (a->json) return report_json(a, p);
    if (a->can_run) return report_can_run(a, p);
    strata_plan_print(p, stdout, (a->compare ? STRATA_PLAN_COMPARE : 0) | (a->export_to ? STRATA_PLAN_EXPORT : 0));
    return strata_plan_verdict(p) < 2 ? 0 : 2;
}

/* On this machine, a --mem above what the process can use is clamped (or
 * refused with --strict-mem); false when refused or the machine unreadable. */
static bool clamp_budget(plan_args *a)
{
    if (a->p.profile_file || !a->p.mem_budget) return true;
    strata_machine m;
    strata_error err;
    if (strata_machine_probe(a->model, &m, &err) != STRATA_OK) {
        fprintf(stderr, "strata plan: %s\n", err.message);
        return false;
    }
    cli_memory mem = {m.usable_memory, m.cgroup_limit, m.cgroup_held};
    return cli_clamp_budget("plan", &mem, a->strict_mem, &a->p.mem_budget);
}

int cmd_plan(int argc, char **argv)
{
    plan_args a = {0};
    int rc = parse_plan_args(argc, argv, &a);
    if (rc) return rc < 0 ? 0 : rc;
    /* this machine's GPUs are listed in the human report (not in JSON, nor for --can-run) */
    a.p.probe_gpus = !a.json && !a.can_run;
    strata_error err;
    strata_model_info *info = NULL;
    strata_plan *p = NULL;
    /* an unreadable model is reported before the budget is looked at */
    if (strata_model_info_open(a.model, &info, &err) != STRATA_OK) {
        fprintf(stderr, "strata plan: %s\n", err.message);
        return PLAN_EXIT_ERROR;
    }
    strata_model_info_free(info);
    if (!clamp_budget(&a)) return PLAN_EXIT_ERROR;
    if (strata_plan_make(a.model, &a.p, &p, &err) != STRATA_OK) {
        fprintf(stderr, "strata plan: %s\n", err.message);
        return PLAN_EXIT_ERROR;
    }
    rc = report(&a, p);
    strata_plan_free(p);
    return rc;
}
