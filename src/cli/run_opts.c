/* Options shared by `strata run` and `strata chat`, opening the model, the
 * chat template choice, and checked stdout. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/cli_util.h"
#include "cli/run_opts.h"
#include "cli/run_report.h"

const char gen_opts_ctx_usage[] =
    "  -c, --ctx-size N     context length (default and 0: the model's trained context;\n"
    "                       more than that warns)\n";

const char gen_opts_usage[] =
    "  -m, --model FILE     GGUF model (llama, qwen2, qwen3, phi3, gemma3)\n"
    "  -t, --threads N      threads (default: one per usable core; more than those warns)\n"
    "  -b, --batch, --batch-size N  prompt tokens per forward pass (default 256); the plan is\n"
    "                       made for it: its prompt-batch sites (plan's \"prefill\") need 32+\n"
    "  --temp X             temperature (default 0.8; 0: greedy)\n"
    "  --top-k K            keep the K most likely tokens (default 40; 0: off)\n"
    "  --top-p P            keep the smallest set of probability >= P (default 0.95; 1: off)\n"
    "  --min-p P            drop tokens below P x the top probability (default 0.05; 0: off)\n"
    "  --repeat-penalty X   penalize the last 64 tokens (default 1.0: off)\n"
    "  -s, --seed S         sampling seed (default: from the clock; printed in the statistics)\n"
    "  --ignore-eos         do not stop at end-of-generation tokens (they are never sampled)\n"
    "  -sys, --system-prompt TEXT  system message of the chat\n"
    "  --chat-template NAME chat template instead of the model's (tokenizer.chat_template):\n"
    "                       chatml, llama2, llama3, mistral-v1, mistral-v3, mistral-v3-tekken,\n"
    "                       mistral-v7, mistral-v7-tekken, phi3, gemma, deepseek, deepseek2,\n"
    "                       deepseek3, zephyr, vicuna\n"
    "  --mem SIZE           memory budget for weights, KV cache and buffers, e.g. 1.5G;\n"
    "                       weights that do not fit are streamed from disk (default:\n"
    "                       what `strata detect` calls usable, minus 10%, at least\n"
    "                       256 MiB, at most a quarter);\n"
    "                       SIZE: a decimal number and K, M, G or T (powers of 1024),\n"
    "                       bytes without a unit; at least 1M. More than this process can\n"
    "                       use (its cgroup's limit, the available memory) is clamped\n"
    "                       with a warning\n"
    "  --strict-mem         refuse a --mem above what this process can use\n"
    "  --no-watchdog        keep the placement fixed: under a budget a watchdog moves\n"
    "                       resident layers to streaming when memory runs short (another\n"
    "                       process takes it) and back when it returns (the output is the same)\n"
    "  --mmap, --no-mmap    resident weights as the file's pages in the page cache, mapped\n"
    "                       (no copy: a file already cached loads at once), or copies in\n"
    "                       strata's own memory read with O_DIRECT (default); the budget\n"
    "                       counts them the same\n"
    "  --prefetch N         streamed layers read ahead of compute (default 2)\n"
    "  --io-threads N       streaming reader threads (default 4)\n"
    "  --stats              a line per forward pass on stderr: bytes read, I/O, compute, wait;\n"
    "                       for a mixture of experts, the expert cache's hits per layer;\n"
    "                       at the end, the memory account (RAM, VRAM) by category, and\n"
    "                       per decode token the CPU threads' parallel jobs and the time\n"
    "                       outside them (one thread: what limits more threads)\n"
    "  --moe-cache lru|lfu  experts the cache evicts first: least recently used, or least\n"
    "                       often used (default; counts fade with age, and a stable set is kept)\n"
    "  --moe-prefetch none|prev|router  experts read ahead for the next layer while this\n"
    "                       one computes: none, those the previous token chose there, or\n"
    "                       those its router picks for the current state (default)\n"
    "  --plan FILE          run a plan saved with `strata plan --json` (default: plan now,\n"
    "                       for this machine and the budget); a plan's GPU layers (resident,\n"
    "                       streamed, and those streamed for prompts of 32+ tokens only) run\n"
    "                       as planned\n"
    "  --gpu auto|none|N    run layers in VRAM on a GPU (Vulkan): auto (default) takes the\n"
    "                       first discrete or integrated GPU if there is one, N the loader's\n"
    "                       device N (software devices too), none only the CPU; the plan is\n"
    "                       made for that GPU (its memory, its rates from `detect --measure`)\n"
    "                       and run as made: its layers on the GPU, none for a CPU plan (a\n"
    "                       software device is no GPU to plan for); a layer with experts goes\n"
    "                       with all of them (chosen there, from the router's logits)\n"
    "  --gpu-mem SIZE       device memory the GPU may use, e.g. 4G (default: its budget)\n"
    "  -ngl, --n-gpu-layers N  at most N layers on the GPU, from the first on, as many as fit,\n"
    "                       instead of the plan's (0: none)\n"
    "  --gpu-stream N       layers that do not fit in VRAM are streamed from RAM to the GPU\n"
    "                       every token through N staging buffers (1-8; 2 overlaps a layer's\n"
    "                       copy with the previous one's compute) instead of running on the CPU\n"
    "                       (a layer with experts: its chosen experts only, after its router);\n"
    "                       like -ngl, the GPU's layers are then placed so, not by the plan\n"
    "  -ctk, --cache-type-k TYPE  K cache type: f16 (default), f32, q8_0 or q4_0 (q8_0: 34\n"
    "                       bytes per 32 values, q4_0: 18, f16: 64; a quantized cache needs a\n"
    "                       head dimension that is a multiple of 32; GPU layers keep f16)\n"
    "  -ctv, --cache-type-v TYPE  V cache type, the same choices\n"
    "  --kv-type TYPE       both K and V cache types\n"
    "  --kv-f32             F32 KV cache (--kv-type f32)\n"
    "  --reference          scalar reference kernels (exact, slow)\n"
    "  -h, --help           show this help\n";

void gen_opts_init(gen_opts *o, const char *cmd, uint64_t n_predict, uint64_t n_min)
{
    *o = (gen_opts){.cmd = cmd, .n_predict = n_predict, .n_predict_min = n_min,
                    .mp = strata_model_default_params(), .sp = strata_sampler_default_params()};
    o->mp.plan = true;
    o->mp.n_batch = RUN_DEFAULT_BATCH;
    o->mp.gpu = STRATA_GPU_AUTO;
}

bool gen_opts_flag(gen_opts *o, const char *f)
{
    if (!strcmp(f, "--kv-f32")) {
        o->mp.kv_type_k = o->mp.kv_type_v = STRATA_KV_F32;
        return true;
    }
    if (!strcmp(f, "--no-watchdog")) {
        o->mp.watchdog = false;
        return true;
    }
    if (!strcmp(f, "--mmap") || !strcmp(f, "--no-mmap")) {
        o->mp.mmap = f[2] == 'm';
        return true;
    }
    bool *b = !strcmp(f, "--reference")    ? &o->mp.reference_kernels
              : !strcmp(f, "--stats")      ? &o->stats
              : !strcmp(f, "--ignore-eos") ? &o->ignore_eos
              : !strcmp(f, "--strict-mem") ? &o->strict_mem
                                           : NULL;
    if (b) *b = true;
    return b != NULL;
}

/* --gpu auto|none|N */
static bool gpu_opt(gen_opts *o, const char *v)
{
    uint64_t u;
    if (!strcmp(v, "auto")) o->mp.gpu = STRATA_GPU_AUTO;
    else if (!strcmp(v, "none")) o->mp.gpu = STRATA_GPU_OFF;
    else if (v[0] >= '0' && v[0] <= '9' && arg_u64(o->cmd, "--gpu", v, 0, 255, &u)) {
        o->mp.gpu = STRATA_GPU_DEVICE;
        o->mp.gpu_index = (int)u;
    } else {
        if (v[0] < '0' || v[0] > '9') fprintf(stderr, "strata %s: --gpu '%s': expected auto, none or a device number\n", o->cmd, v);
        return false;
    }
    return true;
}

/* --moe-cache and --moe-prefetch: one of a few words. */
static int moe_opt(gen_opts *o, const char *f, const char *v)
{
    static const char *const cache[] = {"lru", "lfu", NULL}, *const prefetch[] = {"none", "prev", "router", NULL};
    bool is_cache = !strcmp(f, "--moe-cache");
    if (!is_cache && strcmp(f, "--moe-prefetch")) return 0;
    const char *const *words = is_cache ? cache : prefetch;
    for (int i = 0; words[i]; i++)
        if (!strcmp(v, words[i])) {
            if (is_cache) o->mp.moe_cache = (strata_moe_cache)i;
            else o->mp.moe_prefetch = (strata_moe_prefetch)i;
            return 1;
        }
    fprintf(stderr, "strata %s: %s '%s': expected %s\n", o->cmd, f, v, is_cache ? "lru or lfu" : "none, prev or router");
    return -1;
}

/* -ctk / --cache-type-k, -ctv / --cache-type-v, --kv-type: f32, f16, q8_0 or q4_0. */
static int kv_opt(gen_opts *o, const char *f, const char *v)
{
    bool k = !strcmp(f, "-ctk") || !strcmp(f, "--cache-type-k"), vv = !strcmp(f, "-ctv") || !strcmp(f, "--cache-type-v");
    bool both = !strcmp(f, "--kv-type");
    if (!k && !vv && !both) return 0;
    static const struct {
        const char *name;
        strata_kv_type type;
    } types[] = {{"f16", STRATA_KV_F16}, {"f32", STRATA_KV_F32}, {"q8_0", STRATA_KV_Q8_0}, {"q4_0", STRATA_KV_Q4_0}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(v, types[i].name)) {
            if (k || both) o->mp.kv_type_k = types[i].type;
            if (vv || both) o->mp.kv_type_v = types[i].type;
            return 1;
        }
    fprintf(stderr, "strata %s: %s '%s': expected f16, f32, q8_0 or q4_0\n", o->cmd, f, v);
    return -1;
}

/* Integer-valued flags of the model and engine. */
static int engine_opt(gen_opts *o, const char *f, const char *v)
{
    uint64_t u;
    const char *c = o->cmd;
    if (!strcmp(f, "-n") || !strcmp(f, "--n-predict")) {
        if (!strcmp(v, "-1")) o->n_predict = UINT64_MAX; /* until the context is full */
        else if (!arg_u64(c, f, v, o->n_predict_min, 1u << 30, &o->n_predict)) return -1;
    } else if (!strcmp(f, "-c") || !strcmp(f, "--ctx-size")) {
        if (!arg_u64(c, f, v, 0, 1u << 24, &u)) return -1;
        o->mp.n_ctx = (uint32_t)u;
    } else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) {
        if (!arg_u64(c, f, v, 1, 256, &u)) return -1;
        o->mp.n_threads = (int)u;
    } else if (!strcmp(f, "-b") || !strcmp(f, "--batch") || !strcmp(f, "--batch-size")) {
        if (!arg_u64(c, f, v, 1, 1u << 16, &u)) return -1;
        o->mp.n_batch = (uint32_t)u;
    } else if (!strcmp(f, "--mem")) {
        if (!arg_size(c, f, v, &o->mp.mem_budget)) return -1;
        o->mem_given = true;
    } else if (!strcmp(f, "--gpu-mem")) {
        if (!arg_size(c, f, v, &o->mp.gpu_mem)) return -1;
    } else if (!strcmp(f, "-ngl") || !strcmp(f, "--n-gpu-layers")) {
        if (!arg_u64(c, f, v, 0, 1u << 20, &u)) return -1;
        o->mp.gpu_layers_max = (uint32_t)u;
        if (u == 0) o->mp.gpu = STRATA_GPU_OFF;
    } else if (!strcmp(f, "--gpu")) {
        return gpu_opt(o, v) ? 1 : -1;
    } else if (!strcmp(f, "--gpu-stream")) {
        if (!arg_u64(c, f, v, 0, 8, &u)) return -1;
        o->mp.gpu_stream = (uint32_t)u;
    } else if (!strcmp(f, "--prefetch") || !strcmp(f, "--io-threads")) {
        if (!arg_u64(c, f, v, 1, 64, &u)) return -1;
        *(f[2] == 'p' ? &o->mp.prefetch_depth : &o->mp.io_threads) = (int)u;
    } else {
        return 0;
    }
    return 1;
}

static int sampling_opt(gen_opts *o, const char *f, const char *v)
{
    uint64_t u;
    double x;
    const char *c = o->cmd;
    if (!strcmp(f, "--top-k")) {
        if (!arg_u64(c, f, v, 0, 1u << 30, &u)) return -1;
        o->sp.top_k = (int32_t)u;
    } else if (!strcmp(f, "-s") || !strcmp(f, "--seed")) {
        if (!arg_u64(c, f, v, 0, UINT64_MAX, &o->sp.seed)) return -1;
        o->seed_given = true;
    } else if (!strcmp(f, "--temp")) {
        if (!arg_float(c, f, v, 0, 100, &x)) return -1;
        o->sp.temp = (float)x;
    } else if (!strcmp(f, "--top-p") || !strcmp(f, "--min-p")) {
        if (!arg_float(c, f, v, 0, 1, &x)) return -1;
        *(f[2] == 't' ? &o->sp.top_p : &o->sp.min_p) = (float)x;
    } else if (!strcmp(f, "--repeat-penalty")) {
        if (!arg_float(c, f, v, 0.01, 100, &x)) return -1;
        o->sp.repeat_penalty = (float)x;
    } else {
        return 0;
    }
    return 1;
}

int gen_opts_value(gen_opts *o, const char *f, const char *v)
{
    int r = engine_opt(o, f, v);
    if (!r) r = sampling_opt(o, f, v);
    if (!r) r = moe_opt(o, f, v);
    if (!r) r = kv_opt(o, f, v);
    if (r) return r;
    const char **s = !strcmp(f, "-m") || !strcmp(f, "--model")                ? &o->model
                     : !strcmp(f, "--plan")                                    ? &o->mp.plan_file
                     : !strcmp(f, "--chat-template")                           ? &o->chat_template
                     : !strcmp(f, "-sys") || !strcmp(f, "--system-prompt")     ? &o->system_prompt
                                                                               : NULL;
    if (s) *s = v;
    return s != NULL;
}

/* Defaults that depend on the machine: threads and the memory budget. */
static void machine_defaults(gen_opts *o)
{
    strata_error err;
    if (strata_machine_probe(o->model, &o->machine, &err) != STRATA_OK) return; /* open reports the problem */
    int cores = o->machine.physical_cores;
    if (!o->mp.n_threads) o->mp.n_threads = cores;
    else if (cores > 0 && o->mp.n_threads > cores)
        fprintf(stderr, "strata %s: warning: -t %d is more than the %d usable cores (threads will share them)\n",
                o->cmd, o->mp.n_threads, cores);
    /* --plan FILE without --mem: the saved plan's budget (the model reads it) */
    if (!o->mem_given && !o->mp.plan_file) o->mp.mem_budget = o->machine.default_budget;
}

uint64_t gen_trained_ctx(const char *path)
{
    strata_error err;
    strata_model_info *info;
    if (strata_model_info_open(path, &info, &err) != STRATA_OK) return 0; /* open reports the problem */
    char *text = strata_model_info_json(info, false);
    strata_model_info_free(info);
    json_t *doc = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    json_int_t n = json_integer_value(json_object_get(doc, "context_length"));
    json_decref(doc);
    return n > 0 ? (uint64_t)n : 0;
}

static void check_ctx(const gen_opts *o)
{
    uint64_t trained = o->mp.n_ctx ? gen_trained_ctx(o->model) : 0;
    if (trained && o->mp.n_ctx > trained)
        fprintf(stderr, "strata %s: warning: -c %u is more than the model's trained context (%" PRIu64 " tokens); "
                        "quality may drop beyond it\n", o->cmd, o->mp.n_ctx, trained);
}

strata_model *gen_open_model(gen_opts *o, double *load_s)
{
    check_ctx(o);
    if (!o->seed_given) o->sp.seed = (uint64_t)time(NULL);
    machine_defaults(o);
    cli_memory mem = {o->machine.usable_memory, o->machine.cgroup_limit, o->machine.cgroup_held};
    if (o->mem_given && !cli_clamp_budget(o->cmd, &mem, o->strict_mem, &o->mp.mem_budget)) return NULL;
    o->mp.progress = isatty(STDERR_FILENO);
    double t0 = report_now();
    strata_error err;
    strata_model *m;
    if (strata_model_open(o->model, &o->mp, &m, &err)) {
        fprintf(stderr, "strata %s: %s\n", o->cmd, err.message);
        return NULL;
    }
    *load_s = report_now() - t0;
    report_placement(m, o->model, o->mp.mem_budget);
    return m;
}

const char *gen_chat_template(const gen_opts *o, const strata_model *m)
{
    strata_error err;
    const char *name;
    if (!strata_model_chat_template_name(m, o->chat_template, &name, &err)) return name;
    if (o->chat_template) fprintf(stderr, "strata %s: --chat-template: %s\n", o->cmd, err.message);
    else fprintf(stderr, "strata %s: %s: %s (--chat-template NAME)\n", o->cmd, o->model, err.message);
    return NULL;
}

static bool out_failed(text_out *o)
{
    if (!o->failed) fprintf(stderr, "\nstrata %s: stdout: %s\n", o->cmd, strerror(errno ? errno : EIO));
    o->failed = true;
    return false;
}

bool out_text(text_out *o, const char *s, size_t n)
{
    if (o->failed) return false;
    errno = 0;
    if ((n && fwrite(s, 1, n, stdout) != n) || fflush(stdout) != 0) return out_failed(o);
    if (n) o->last = s[n - 1];
    return true;
}

bool out_finish(text_out *o)
{
    if (o->last && o->last != '\n' && !out_text(o, "\n", 1)) return false;
    errno = 0;
    if (o->failed || fflush(stdout) != 0 || ferror(stdout)) return o->failed ? false : out_failed(o);
    return true;
}
