/* strata run: evaluate a prompt and stream generated text. Uses only the
 * public API (include/strata.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/run_report.h"
#include "strata.h"

#define MAX_PROMPT_FILE (64u << 20)

static const char run_usage[] =
    "usage: strata run -m MODEL (-p TEXT | -f FILE) [options]\n"
    "\n"
    "Evaluates the prompt (with the model's BOS token in front) and streams the\n"
    "generated text to stdout; a statistics line goes to stderr at the end.\n"
    "\n"
    "  -m, --model FILE     GGUF model (llama architecture)\n"
    "  -p, --prompt TEXT    prompt text\n"
    "  -f, --file FILE      read the prompt from FILE\n"
    "  -n, --n-predict N    tokens to generate (default 128; 0: only evaluate the prompt)\n"
    "  -c, --ctx-size N     context length (default: the model's)\n"
    "  -t, --threads N      threads (default: one per core)\n"
    "  -b, --batch N        prompt tokens per forward pass (default 256)\n"
    "  --temp X             temperature (default 0.8; 0: greedy)\n"
    "  --top-k K            keep the K most likely tokens (default 40; 0: off)\n"
    "  --top-p P            keep the smallest set of probability >= P (default 0.95; 1: off)\n"
    "  --min-p P            drop tokens below P x the top probability (default 0.05; 0: off)\n"
    "  --repeat-penalty X   penalize the last 64 tokens (default 1.0: off)\n"
    "  --seed S             sampling seed (default: from the clock; printed in the statistics)\n"
    "  --mem SIZE           memory budget for weights, KV cache and buffers, e.g. 1.5G;\n"
    "                       weights that do not fit are streamed from disk (default:\n"
    "                       what `strata detect` calls usable, minus 10%% / 256 MiB)\n"
    "  --prefetch N         streamed layers read ahead of compute (default 2)\n"
    "  --io-threads N       streaming reader threads (default 4)\n"
    "  --stats              per-token line on stderr: bytes read, I/O, compute, wait\n"
    "  --plan FILE          run a plan saved with `strata plan --json` (default: plan now,\n"
    "                       for this machine and the budget)\n"
    "  --kv-f32             F32 KV cache (default F16)\n"
    "  --reference          scalar reference kernels (exact, slow)\n"
    "  --logits-out FILE    write the logits after every prompt position (float32 LE,\n"
    "                       [prompt tokens][vocab]) and exit without generating\n"
    "  -h, --help           show this help\n";

typedef struct run_opts {
    const char *model, *prompt, *prompt_file, *logits_out;
    uint64_t n_predict;
    strata_model_params mp;
    strata_sampler_params sp;
    bool seed_given, mem_given, stats;
    strata_machine machine;
} run_opts;

/* Options that take a number. Returns 1 if handled, 0 if not this kind, -1 on a bad value. */
static int numeric_opt(run_opts *o, const char *f, const char *v)
{
    uint64_t u;
    double x;
    if (!strcmp(f, "-n") || !strcmp(f, "--n-predict")) return arg_u64("run", f, v, 0, 1u << 30, &o->n_predict) ? 1 : -1;
    if (!strcmp(f, "-c") || !strcmp(f, "--ctx-size")) {
        if (!arg_u64("run", f, v, 1, 1u << 24, &u)) return -1;
        o->mp.n_ctx = (uint32_t)u;
    } else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) {
        if (!arg_u64("run", f, v, 1, 256, &u)) return -1;
        o->mp.n_threads = (int)u;
    } else if (!strcmp(f, "-b") || !strcmp(f, "--batch")) {
        if (!arg_u64("run", f, v, 1, 1u << 16, &u)) return -1;
        o->mp.n_batch = (uint32_t)u;
    } else if (!strcmp(f, "--mem")) {
        if (!arg_size("run", f, v, &o->mp.mem_budget)) return -1;
        o->mem_given = true;
    } else if (!strcmp(f, "--prefetch") || !strcmp(f, "--io-threads")) {
        if (!arg_u64("run", f, v, 1, 64, &u)) return -1;
        *(f[2] == 'p' ? &o->mp.prefetch_depth : &o->mp.io_threads) = (int)u;
    } else if (!strcmp(f, "--top-k")) {
        if (!arg_u64("run", f, v, 0, 1u << 30, &u)) return -1;
        o->sp.top_k = (int32_t)u;
    } else if (!strcmp(f, "--seed")) {
        if (!arg_u64("run", f, v, 0, UINT64_MAX, &o->sp.seed)) return -1;
        o->seed_given = true;
    } else if (!strcmp(f, "--temp")) {
        if (!arg_float("run", f, v, 0, 100, &x)) return -1;
        o->sp.temp = (float)x;
    } else if (!strcmp(f, "--top-p") || !strcmp(f, "--min-p")) {
        if (!arg_float("run", f, v, 0, 1, &x)) return -1;
        *(f[2] == 't' ? &o->sp.top_p : &o->sp.min_p) = (float)x;
    } else if (!strcmp(f, "--repeat-penalty")) {
        if (!arg_float("run", f, v, 0.01, 100, &x)) return -1;
        o->sp.repeat_penalty = (float)x;
    } else {
        return 0;
    }
    return 1;
}

static int parse_run_args(int argc, char **argv, run_opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(run_usage, stdout);
            exit(0);
        }
        if (!strcmp(f, "--kv-f32")) { o->mp.kv_f32 = true; continue; }
        if (!strcmp(f, "--reference")) { o->mp.reference_kernels = true; continue; }
        if (!strcmp(f, "--stats")) { o->stats = true; continue; }
        if (i + 1 >= argc) {
            fprintf(stderr, "strata run: %s: %s\n", f, f[0] == '-' ? "missing value" : "unexpected argument");
            return 2;
        }
        const char *v = argv[++i];
        int r = numeric_opt(o, f, v);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(f, "-m") || !strcmp(f, "--model")) o->model = v;
        else if (!strcmp(f, "-p") || !strcmp(f, "--prompt")) o->prompt = v;
        else if (!strcmp(f, "-f") || !strcmp(f, "--file")) o->prompt_file = v;
        else if (!strcmp(f, "--logits-out")) o->logits_out = v;
        else if (!strcmp(f, "--plan")) o->mp.plan_file = v;
        else {
            fprintf(stderr, "strata run: unknown option '%s' (see strata run --help)\n", f);
            return 2;
        }
    }
    if (!o->model || (!o->prompt == !o->prompt_file)) {
        fprintf(stderr, "strata run: need -m MODEL and exactly one of -p TEXT or -f FILE (see strata run --help)\n");
        return 2;
    }
    return 0;
}

static char *read_prompt_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "strata run: -f %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(MAX_PROMPT_FILE + 1);
    size_t n = buf ? fread(buf, 1, MAX_PROMPT_FILE + 1, fp) : 0;
    bool bad = !buf || ferror(fp) || n > MAX_PROMPT_FILE;
    fclose(fp);
    if (bad) {
        fprintf(stderr, "strata run: -f %s: %s\n", path, !buf ? "out of memory" : n > MAX_PROMPT_FILE ? "larger than 64 MiB" : "read error");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Writes all prompt logits through FILE.tmp, renamed when complete. */
static int write_logits(const char *path, const float *logits, size_t count)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = fopen(tmp, "wb");
    bool ok = fp && fwrite(logits, sizeof(float), count, fp) == count;
    if (fp && fclose(fp) != 0) ok = false;
    if (ok && rename(tmp, path) == 0) return 0;
    fprintf(stderr, "strata run: --logits-out %s: %s\n", path, strerror(errno));
    unlink(tmp);
    return 1;
}

/* Samples and evaluates up to n_predict tokens, streaming their text. */
static int generate(strata_model *m, const run_opts *o, int32_t *hist, size_t n_hist, float *logits,
                    run_report *rep)
{
    strata_sampler *smp = strata_sampler_new(&o->sp, m);
    strata_detok *dt = strata_detok_new(m);
    int rc = smp && dt ? 0 : 1;
    strata_error err;
    report_phase_begin(rep, m);
    for (uint64_t i = 0; i < o->n_predict && !rc; i++) {
        int32_t tok = strata_sample(smp, logits, hist, n_hist);
        if (strata_token_is_eog(m, tok)) break;
        size_t len;
        const char *text = strata_detok_push(dt, tok, &len);
        if (text) fwrite(text, 1, len, stdout);
        fflush(stdout);
        hist[n_hist++] = tok;
        rep->n_gen++;
        if (i + 1 == o->n_predict) break;
        if (strata_model_n_past(m) >= strata_model_n_ctx(m)) {
            fprintf(stderr, "\nstrata run: context of %u tokens is full; stopping\n", strata_model_n_ctx(m));
            break;
        }
        double t0 = report_now();
        if (strata_eval(m, &tok, 1, logits, false, &err)) {
            fprintf(stderr, "\nstrata run: %s\n", err.message);
            rc = 1;
        } else if (o->stats) {
            report_token(rep, m, rep->n_gen, report_now() - t0);
        }
    }
    size_t len;
    const char *rest = dt ? strata_detok_finish(dt, &len) : NULL;
    if (rest) fwrite(rest, 1, len, stdout);
    fflush(stdout);
    report_phase_end(rep, m);
    strata_detok_free(dt);
    strata_sampler_free(smp);
    return rc;
}

static int run_model(strata_model *m, const run_opts *o, const char *prompt, size_t prompt_len, run_report *rep)
{
    strata_error err;
    int32_t *toks = NULL;
    size_t n = 0;
    if (strata_tokenize(m, prompt, prompt_len, true, &toks, &n, &err)) {
        fprintf(stderr, "strata run: %s\n", err.message);
        return 1;
    }
    uint32_t ctx = strata_model_n_ctx(m), vocab = strata_model_n_vocab(m);
    int rc = 1;
    size_t hist_cap = n + o->n_predict + 1;
    int32_t *hist = n > 0 && n <= ctx ? malloc(hist_cap * sizeof *hist) : NULL;
    float *logits = hist ? malloc((o->logits_out ? n : 1) * (size_t)vocab * sizeof(float)) : NULL;
    if (n == 0 || n > ctx) {
        fprintf(stderr, "strata run: the prompt is %zu tokens; the context holds %u (raise -c)\n", n, ctx);
    } else if (!logits) {
        fprintf(stderr, "strata run: out of memory\n");
    } else {
        memcpy(hist, toks, n * sizeof *hist);
        double t0 = report_now();
        rc = strata_eval(m, toks, n, logits, o->logits_out != NULL, &err) != STRATA_OK;
        rep->prompt_s = report_now() - t0;
        rep->n_prompt = n;
        if (rc) fprintf(stderr, "strata run: %s\n", err.message);
        else if (o->logits_out) rc = write_logits(o->logits_out, logits, n * (size_t)vocab);
        else rc = generate(m, o, hist, n, logits, rep);
    }
    free(logits);
    free(hist);
    free(toks);
    return rc;
}

/* Defaults that depend on the machine: threads and the memory budget. */
static void machine_defaults(run_opts *o)
{
    strata_error err;
    if (strata_machine_probe(o->model, &o->machine, &err) != STRATA_OK) return; /* open reports the problem */
    if (!o->mp.n_threads) o->mp.n_threads = o->machine.physical_cores;
    if (!o->mem_given) o->mp.mem_budget = o->machine.default_budget;
}

int cmd_run(int argc, char **argv)
{
    run_opts o = {.n_predict = 128, .mp = strata_model_default_params(), .sp = strata_sampler_default_params()};
    o.mp.plan = true;
    int rc = parse_run_args(argc, argv, &o);
    if (rc) return rc;
    if (!o.seed_given) o.sp.seed = (uint64_t)time(NULL);
    size_t prompt_len = o.prompt ? strlen(o.prompt) : 0;
    char *file_prompt = o.prompt_file ? read_prompt_file(o.prompt_file, &prompt_len) : NULL;
    if (o.prompt_file && !file_prompt) return 1;
    machine_defaults(&o);
    o.mp.progress = isatty(STDERR_FILENO);
    run_report rep = {.seed = o.sp.seed, .disk_bw = o.machine.disk_bw};
    double t0 = report_now();
    strata_error err;
    strata_model *m;
    if (strata_model_open(o.model, &o.mp, &m, &err)) {
        fprintf(stderr, "strata run: %s\n", err.message);
        free(file_prompt);
        return 1;
    }
    rep.load_s = report_now() - t0;
    report_placement(m, o.model, o.mp.mem_budget);
    rc = run_model(m, &o, file_prompt ? file_prompt : o.prompt, prompt_len, &rep);
    if (!rc && !o.logits_out) report_summary(&rep, m);
    strata_model_free(m);
    free(file_prompt);
    return rc;
}
