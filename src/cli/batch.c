/* strata batch: many prompts, N sequences in flight (continuous batching,
 * src/sched), results as JSONL in input order. The model's KV reserve is
 * sized to what the prompts need: N contexts of the longest prompt plus
 * its tokens to generate. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/args.h"
#include "cli/batch_input.h"
#include "cli/batch_job.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/run_opts.h"
#include "cli/run_report.h"
#include "strata.h"
#include "util/fmt.h"
#include "util/outfile.h"

#define MAX_PROMPT_FILE (256u << 20)
#define BATCH_MAX_PARALLEL 256 /* sequences in flight at most (tokens of one forward pass) */
#define BATCH_DEFAULT_PARALLEL 8

static const char batch_usage[] =
    "usage: strata batch -m MODEL -f PROMPTS -o OUT.jsonl [-np N] [options]\n"
    "\n"
    "Generates for every prompt of PROMPTS with N sequences in flight: each forward\n"
    "pass holds the next token of every running sequence (and prompt chunks of new\n"
    "ones), so each weight is read once for all of them, streamed layers included.\n"
    "Results go to OUT.jsonl in input order, one JSON object per prompt:\n"
    "  {\"id\", \"prompt\", \"text\", \"tokens_prompt\", \"tokens_generated\", \"finish_reason\"}\n"
    "(\"stop\": an end-of-generation token; \"length\": -n tokens or the context's end).\n"
    "The file appears whole or not at all. A line with the totals and aggregate tok/s\n"
    "goes to stderr.\n"
    "\n"
    "PROMPTS: one prompt per line; or JSONL when its first non-empty line is a JSON\n"
    "object: {\"prompt\": TEXT, \"id\": ID, \"n_predict\": N} per line (\"id\" a string or\n"
    "integer, default the line number; \"n_predict\" or \"max_tokens\" overrides -n).\n"
    "Empty lines are skipped in both forms. Every prompt gets the model's BOS token\n"
    "and the same sampling settings and seed (a prompt's result does not depend on\n"
    "the others).\n"
    "\n"
    "  -f, --file FILE      the prompts (at most 256 MiB)\n"
    "  -o, --output FILE    the results (JSONL)\n"
    "  -np, --parallel N    sequences in flight (default 8, at most the number of prompts;\n"
    "                       1 to 256)\n"
    "  -n, --n-predict N    tokens to generate per prompt (default 128; -1: until the\n"
    "                       context is full)\n"
    "  -c, --ctx-size N     each sequence's context (default: the longest prompt plus its\n"
    "                       tokens to generate, rounded up to 32, at most the model's);\n"
    "                       the model reserves KV cache for N of them\n"
    "  --chat               each prompt is a user message: format it with the chat template\n"
    "                       (implied by -sys and --chat-template)\n";

static const char *const batch_help[] = {batch_usage, gen_opts_usage, NULL};

typedef struct batch_opts {
    gen_opts g;
    const char *prompt_file, *out_file;
    uint64_t n_parallel; /* 0: the default */
    bool chat;
} batch_opts;

static int batch_value(batch_opts *o, const char *f, const char *v)
{
    if (!strcmp(f, "-np") || !strcmp(f, "--parallel"))
        return arg_u64("batch", f, v, 1, BATCH_MAX_PARALLEL, &o->n_parallel) ? 1 : -1;
    const char **s = !strcmp(f, "-f") || !strcmp(f, "--file")     ? &o->prompt_file
                     : !strcmp(f, "-o") || !strcmp(f, "--output") ? &o->out_file
                                                                  : NULL;
    if (s) *s = v;
    return s != NULL;
}

/* 0: parsed; -1: --help printed; 2: usage error (reported). */
static int parse_batch_args(int argc, char **argv, batch_opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(batch_usage, stdout);
            fputs(gen_opts_usage, stdout);
            return -1;
        }
        if (!strcmp(f, "--chat")) o->chat = true;
        else if (gen_opts_flag(&o->g, f)) continue;
        else if (i + 1 >= argc) {
            arg_no_value("batch", batch_help, f);
            return 2;
        } else {
            const char *v = argv[++i];
            int r = gen_opts_value(&o->g, f, v);
            if (r == 0) r = batch_value(o, f, v);
            if (r < 0) return 2;
            if (r == 0) {
                arg_unknown("batch", batch_help, f);
                return 2;
            }
        }
    }
    if (!o->g.model || !o->prompt_file || !o->out_file) {
        fprintf(stderr, "strata batch: need -m MODEL, -f PROMPTS and -o OUT.jsonl (see strata batch --help)\n");
        return 2;
    }
    if (o->g.system_prompt || o->g.chat_template) o->chat = true;
    return 0;
}

/* The file is read and parsed before the model, and its account, exist
 * (the model counts the parsed prompts once open): with --mem, what that
 * takes at its peak must fit the budget first. The peak: the file's text,
 * a copy of every line, and per line its item (twice while the items'
 * array grows) and the copy's allocator header. */
#define ITEM_PEAK_BYTES (2 * sizeof(batch_item) + 32)

static uint64_t parse_peak_bytes(const char *text, size_t len)
{
    uint64_t lines = 1;
    for (const char *p = text, *end = text + len; (p = memchr(p, '\n', (size_t)(end - p))); p++) lines++;
    return 2 * (uint64_t)len + lines * ITEM_PEAK_BYTES;
}

static bool fits_budget(const batch_opts *o, uint64_t bytes, const char *what)
{
    if (!o->g.mem_given || bytes <= o->g.mp.mem_budget) return true;
    char a[32], b[32];
    fprintf(stderr, "strata batch: -f %s: %s %s, more than the --mem budget of %s\n", o->prompt_file, what,
            fmt_bytes(bytes, a, sizeof a), fmt_bytes(o->g.mp.mem_budget, b, sizeof b));
    return false;
}

/* The prompts of the file; false (reported) when unreadable, malformed,
 * empty or too large for the budget. */
static bool read_prompts(const batch_opts *o, batch_input *in)
{
    struct stat sb;
    bool regular = stat(o->prompt_file, &sb) == 0 && S_ISREG(sb.st_mode);
    if (regular && !fits_budget(o, (uint64_t)sb.st_size, "the file holds")) return false;
    size_t len;
    char *text = cli_read_text_file("batch", "-f", o->prompt_file, MAX_PROMPT_FILE, &len);
    if (!text) return false;
    if (!fits_budget(o, parse_peak_bytes(text, len), "reading its prompts takes up to")) {
        free(text);
        return false;
    }
    bool ok = batch_input_parse(o->prompt_file, text, len, in);
    free(text);
    if (ok && in->n == 0) {
        fprintf(stderr, "strata batch: -f %s: no prompts (every line is empty)\n", o->prompt_file);
        batch_input_free(in);
        ok = false;
    }
    return ok;
}

int cmd_batch(int argc, char **argv)
{
    batch_opts o = {0};
    gen_opts_init(&o.g, "batch", 128, 1);
    int rc = parse_batch_args(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    strata_error err;
    if (outfile_check(o.out_file, &err)) { /* before the work */
        fprintf(stderr, "strata batch: -o %s\n", err.message);
        return 1;
    }
    batch_input in;
    if (!read_prompts(&o, &in)) return 1;
    batch_job job = {
        .g = &o.g,
        .in = &in,
        .prompt_file = o.prompt_file,
        .out_file = o.out_file,
        .chat = o.chat,
        .n_parallel = o.n_parallel ? (uint32_t)o.n_parallel
                      : in.n < BATCH_DEFAULT_PARALLEL ? (uint32_t)in.n
                                                     : BATCH_DEFAULT_PARALLEL,
    };
    rc = batch_job_run(&job);
    batch_input_free(&in);
    return rc;
}
