/* What `strata run` and `strata chat` share: the options that open a model
 * (planned under a memory budget) and sample from it, the chat template
 * choice, and stdout that reports write errors. */
#ifndef STRATA_CLI_RUN_OPTS_H
#define STRATA_CLI_RUN_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "strata.h"

#define RUN_DEFAULT_BATCH 256 /* prompt tokens per forward pass (the engine's default too) */

typedef struct gen_opts {
    const char *cmd; /* "run" or "chat", in messages */
    const char *model;
    uint64_t n_predict, n_predict_min;
    strata_model_params mp;
    strata_sampler_params sp;
    bool seed_given, mem_given, stats, ignore_eos, strict_mem;
    const char *chat_template; /* --chat-template NAME, or NULL: the model's */
    const char *system_prompt; /* -sys TEXT, or NULL */
    strata_machine machine;
} gen_opts;

/* Defaults: planned placement, batch RUN_DEFAULT_BATCH, the samplers'
 * defaults; n_predict tokens per answer unless -n (at least n_min). */
void gen_opts_init(gen_opts *o, const char *cmd, uint64_t n_predict, uint64_t n_min);
/* A flag without a value (--kv-f32, --reference, --stats, --ignore-eos):
 * true if it is one. */
bool gen_opts_flag(gen_opts *o, const char *flag);
/* A flag with a value: 1 handled, 0 not a shared flag, -1 a bad value (the
 * error is printed). */
int gen_opts_value(gen_opts *o, const char *flag, const char *value);
/* The shared options' lines for --help. */
extern const char gen_opts_usage[];
/* -c as run and chat take it (batch sizes contexts its own way). */
extern const char gen_opts_ctx_usage[];

/* Completes the defaults (seed from the clock, threads and budget from this
 * machine) and opens the model; prints a one-line error and returns NULL on
 * failure. *load_s: seconds spent opening. */
strata_model *gen_open_model(gen_opts *o, double *load_s);

/* The model's trained context (from its header), 0 when unknown or unreadable. */
uint64_t gen_trained_ctx(const char *path);

/* The chat template for m (--chat-template, else the model's); prints a
 * one-line error naming the known templates and returns NULL when there is
 * none. */
const char *gen_chat_template(const gen_opts *o, const strata_model *m);

/* stdout for generated text: every write is flushed (text streams as it
 * comes) and the first failure is reported once ("strata CMD: stdout: ..."). */
typedef struct text_out {
    const char *cmd;
    char last; /* last byte written; 0: none */
    bool failed;
} text_out;

bool out_text(text_out *o, const char *s, size_t n);
/* Ends stdout with a newline when something was written without one, then
 * checks that everything reached it. False after any write error. */
bool out_finish(text_out *o);

#endif
