/* strata run: evaluate a prompt and stream generated text. Uses only the
 * public API (include/strata.h) and util/outfile.h for --logits-out. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/run_gen.h"
#include "cli/run_opts.h"
#include "cli/run_report.h"
#include "strata.h"
#include "util/error.h"
#include "util/outfile.h"

#define MAX_PROMPT_FILE (64u << 20)
#define EXIT_INTERRUPTED 130 /* 128 + SIGINT, as shells report it */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static const char run_usage[] =
    "usage: strata run -m MODEL (-p TEXT | -f FILE) [options]\n"
    "\n"
    "Evaluates the prompt (with the model's BOS token in front) and streams the\n"
    "generated text to stdout after the prompt; a statistics line goes to stderr at\n"
    "the end. Generation stops at the model's end-of-generation token, after -n\n"
    "tokens, or when the context is full; Ctrl-C stops it early (the statistics line\n"
    "is still printed; exit status 130).\n"
    "\n"
    "  -p, --prompt TEXT    prompt text\n"
    "  -f, --file FILE      read the prompt from FILE (at most 64 MiB)\n"
    "  -n, --n-predict N    tokens to generate (default 128; -1: until the context\n"
    "                       is full; 0: only evaluate the prompt)\n"
    "  --chat               the prompt is a user message: format it with the chat template\n"
    "                       (implied by -sys and --chat-template)\n"
    "  --no-display-prompt  do not echo the prompt before the generated text\n"
    "  --logits-out FILE    write the logits after every prompt position (float32 LE,\n"
    "                       [prompt tokens][vocab]) and exit without generating\n";

static const char *const run_help[] = {run_usage, gen_opts_ctx_usage, gen_opts_usage, NULL};

typedef struct run_opts {
    gen_opts g;
    const char *prompt, *prompt_file, *logits_out;
    bool chat, no_display_prompt;
} run_opts;

static bool run_flag(run_opts *o, const char *f)
{
    bool *b = !strcmp(f, "--chat") ? &o->chat : !strcmp(f, "--no-display-prompt") ? &o->no_display_prompt : NULL;
    if (b) *b = true;
    return b != NULL;
}

static bool run_value(run_opts *o, const char *f, const char *v)
{
    const char **s = !strcmp(f, "-p") || !strcmp(f, "--prompt") ? &o->prompt
                     : !strcmp(f, "-f") || !strcmp(f, "--file") ? &o->prompt_file
                     : !strcmp(f, "--logits-out")                ? &o->logits_out
                                                                 : NULL;
    if (s) *s = v;
    return s != NULL;
}

static int parse_run_args(int argc, char **argv, run_opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(run_usage, stdout);
            fputs(gen_opts_ctx_usage, stdout);
            fputs(gen_opts_usage, stdout);
            exit(0);
        }
        if (gen_opts_flag(&o->g, f) || run_flag(o, f)) continue;
        if (i + 1 >= argc) {
            arg_no_value("run", run_help, f);
            return 2;
        }
        const char *v = argv[++i];
        int r = gen_opts_value(&o->g, f, v);
        if (r < 0) return 2;
        if (r == 0 && !run_value(o, f, v)) {
            arg_no_value("run", run_help, f);
            return 2;
        }
    }
    if (!o->g.model || (!o->prompt == !o->prompt_file)) {
        fprintf(stderr, "strata run: need -m MODEL and exactly one of -p TEXT or -f FILE (see strata run --help)\n");
        return 2;
    }
    if (o->g.system_prompt || o->g.chat_template) o->chat = true;
    return 0;
}

/* Writes all prompt logits through a temporary file renamed when complete
 * (a device or a FIFO is written directly, never replaced: util/outfile.h). */
static int write_logits(const char *path, const float *logits, size_t count)
{
    outfile f;
    strata_error err;
    strata_status st = outfile_open(&f, path, &err);
    if (!st && fwrite(logits, sizeof(float), count, f.fp) != count) {
        st = err_set(&err, STRATA_E_IO, "%s: write failed: %s", outfile_name(&f), strerror(errno));
        outfile_abort(&f);
    } else if (!st) {
        st = outfile_commit(&f, &err);
    }
    if (st) fprintf(stderr, "strata run: --logits-out %s\n", err.message);
    return st ? 1 : 0;
}

/* The prompt's tokens: plain text, or (--chat) a user message after the
 * optional system message, formatted with the chat template. */
static int prompt_tokens(strata_model *m, const run_opts *o, const char *prompt, size_t len, int32_t **toks,
                         size_t *n)
{
    strata_error err;
    strata_status st;
    if (o->chat) {
        const char *tmpl = gen_chat_template(&o->g, m);
        if (!tmpl) return 1;
        strata_chat_message msgs[2];
        size_t k = 0;
        if (o->g.system_prompt) msgs[k++] = (strata_chat_message){"system", o->g.system_prompt};
        msgs[k++] = (strata_chat_message){"user", prompt};
        st = strata_chat_tokenize(m, tmpl, msgs, k, 0, true, toks, n, &err);
    } else {
        st = strata_tokenize(m, prompt, len, true, toks, n, &err);
    }
    if (st) fprintf(stderr, "strata run: %s\n", err.message);
    return st ? 1 : 0;
}

static int logits_only(strata_model *m, const run_opts *o, const int32_t *toks, size_t n)
{
    strata_error err;
    if (outfile_check(o->logits_out, &err)) { /* before the work */
        fprintf(stderr, "strata run: --logits-out %s\n", err.message);
        return 1;
    }
    size_t count = n * (size_t)strata_model_n_vocab(m);
    /* through the account: refused before it is touched when the budget
     * cannot hold every position's logits */
    float *logits = strata_mem_alloc(m, STRATA_MEM_LOGITS, count * sizeof *logits, &err);
    if (!logits) {
        fprintf(stderr, "strata run: --logits-out: %zu positions' logits: %s\n", n, err.message);
        return 1;
    }
    int rc = strata_eval(m, toks, n, logits, true, &err) != STRATA_OK;
    if (rc) fprintf(stderr, "strata run: %s\n", err.message);
    else rc = write_logits(o->logits_out, logits, count);
    strata_mem_free(m, STRATA_MEM_LOGITS, logits, count * sizeof *logits);
    return rc;
}

/* Like llama-cli, the prompt comes first on stdout, then its continuation;
 * a chat answer comes on a line of its own after the user's message (not
 * the template around it). */
static bool echo_prompt(gen_ctx *g, const run_opts *o, const char *prompt, size_t len, const int32_t *toks,
                        size_t n)
{
    if (!o->chat) return gen_echo(g, toks, n, !o->no_display_prompt);
    if (o->no_display_prompt) return true;
    return out_text(&g->out, prompt, len) && (g->out.last == '\n' || out_text(&g->out, "\n", 1));
}

static int generate(strata_model *m, const run_opts *o, const char *prompt, size_t len, const int32_t *toks,
                    size_t n, run_report *rep)
{
    gen_ctx g;
    if (!gen_init(&g, m, &o->g, rep)) return 1;
    g.stop = &interrupted;
    bool ok = echo_prompt(&g, o, prompt, len, toks, n);
    double t0 = report_now();
    ok = ok && gen_eval(&g, toks, n);
    rep->prompt_s = report_now() - t0;
    rep->n_prompt = n;
    gen_end e = ok ? gen_answer(&g, o->g.n_predict, NULL) : GEN_ERROR;
    if (e == GEN_CTX_FULL)
        fprintf(stderr, "\nstrata run: the context of %u tokens is full; stopping\n", strata_model_n_ctx(m));
    if (interrupted && e != GEN_ERROR) fprintf(stderr, "\nstrata run: interrupted\n");
    ok = out_finish(&g.out) && e != GEN_ERROR;
    gen_free(&g);
    return !ok ? 1 : interrupted ? EXIT_INTERRUPTED : 0;
}

/* Ctrl-C (SIGINT) during generation ends it after the current token: the
 * statistics line is printed and the exit status is 130. SA_RESTART: writes
 * to stdout go on. */
static void catch_sigint(void)
{
    struct sigaction sa = {.sa_handler = on_sigint, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
}

static int run_model(strata_model *m, const run_opts *o, const char *prompt, size_t len, run_report *rep)
{
    int32_t *toks = NULL;
    size_t n = 0;
    uint32_t ctx = strata_model_n_ctx(m);
    size_t longest = strata_max_token_bytes(m); /* the text no context holds, refused before tokenizing */
    if (longest && len / longest > (size_t)ctx + 1) {
        fprintf(stderr, "strata run: the prompt is at least %zu tokens (%zu bytes, tokens of %zu bytes at most); "
                "the context holds %u (raise -c)\n", len / longest, len, longest, ctx);
        return 1;
    }
    strata_error err;
    /* the prompt's text, read before the model was open, is counted now */
    if (strata_mem_take(m, STRATA_MEM_TEXT, len, &err)) {
        fprintf(stderr, "strata run: the prompt's %zu bytes: %s\n", len, err.message);
        return 1;
    }
    if (prompt_tokens(m, o, prompt, len, &toks, &n)) {
        strata_mem_give(m, STRATA_MEM_TEXT, len);
        return 1;
    }
    if (strata_mem_take(m, STRATA_MEM_PROMPT, n * sizeof *toks, &err)) {
        fprintf(stderr, "strata run: the prompt's %zu tokens: %s\n", n, err.message);
        strata_mem_give(m, STRATA_MEM_TEXT, len);
        free(toks);
        return 1;
    }
    int rc = 1;
    if (n == 0 || n > ctx)
        fprintf(stderr, "strata run: the prompt is %zu tokens; the context holds %u (raise -c)\n", n, ctx);
    else if (o->logits_out)
        rc = logits_only(m, o, toks, n);
    else {
        catch_sigint();
        rc = generate(m, o, prompt, len, toks, n, rep);
    }
    strata_mem_give(m, STRATA_MEM_PROMPT, n * sizeof *toks);
    strata_mem_give(m, STRATA_MEM_TEXT, len);
    free(toks);
    return rc;
}

/* Streaming that a later plan can learn from: at least 16 MiB read per
 * token (large reads: the disk's bandwidth, not its latency), 64 MiB in all
 * over 4 tokens and a quarter of a second (not the ring's first fill alone),
 * O_DIRECT (not the page cache), dense weights (expert misses are small
 * reads), and the disk the bottleneck: compute waited for reads at least a
 * fifth of the decode time (with the disk faster than compute, prefetching
 * hides the reads and the decode rate says nothing about the disk). Then
 * decode ran at the disk's pace, and bytes / decode time is the rate a plan
 * should count on: it is recorded for later plans on this machine. */
#define RECORD_MIN_PER_TOKEN (16ull << 20)
#define RECORD_MIN_BYTES (64ull << 20)
#define RECORD_MIN_WAIT 0.2
#define RECORD_MIN_PASSES 4
#define RECORD_MIN_SECONDS 0.25

static void record_stream_rate(const run_report *r, const strata_model *m, const char *model, bool verbose)
{
    strata_model_stats s;
    strata_model_get_stats(m, &s);
    double wait = s.io_wait_s - r->at_start.io_wait_s;
    uint64_t passes = r->n_gen > 1 ? r->n_gen - 1 : 1;
    if (!s.direct_io || !s.streamed_layers || s.expert_slots < s.experts || passes < RECORD_MIN_PASSES ||
        r->gen_s < RECORD_MIN_SECONDS || r->gen_bytes < RECORD_MIN_BYTES ||
        r->gen_bytes / passes < RECORD_MIN_PER_TOKEN || wait < RECORD_MIN_WAIT * r->gen_s)
        return;
    strata_error err;
    if (strata_machine_record_stream_rate(model, r->gen_bytes, r->gen_s, &err) != STRATA_OK) {
        if (verbose) fprintf(stderr, "strata: streaming rate not recorded: %s\n", err.message);
    } else if (verbose) {
        fprintf(stderr, "strata: streaming rate %.2f GB/s recorded for later plans\n",
                (double)r->gen_bytes / r->gen_s / 1e9);
    }
}

int cmd_run(int argc, char **argv)
{
    run_opts o = {0};
    gen_opts_init(&o.g, "run", 128, 0);
    int rc = parse_run_args(argc, argv, &o);
    if (rc) return rc;
    size_t len = o.prompt ? strlen(o.prompt) : 0;
    char *file_prompt = o.prompt_file ? cli_read_text_file("run", "-f", o.prompt_file, MAX_PROMPT_FILE, &len) : NULL;
    if (o.prompt_file && !file_prompt) return 1;
    run_report rep = {0};
    strata_model *m = gen_open_model(&o.g, &rep.load_s);
    if (!m) {
        free(file_prompt);
        return 1;
    }
    rep.seed = o.g.sp.seed;
    rep.disk_bw = o.g.machine.disk_bw;
    rep.per_layer = o.g.stats;
    rep.moe_cache = o.g.mp.moe_cache;
    rep.moe_prefetch = o.g.mp.moe_prefetch;
    rc = run_model(m, &o, file_prompt ? file_prompt : o.prompt, len, &rep);
    if ((!rc || rc == EXIT_INTERRUPTED) && !o.logits_out) {
        report_summary(&rep, m);
        record_stream_rate(&rep, m, o.g.model, o.g.stats);
    }
    strata_model_free(m);
    free(file_prompt);
    return rc;
}
