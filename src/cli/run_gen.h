/* The generation loop `strata run` and `strata chat` share: evaluate
 * tokens, sample, stream the text, stop at an end-of-generation token, the
 * token limit, a full context or a request to stop. */
#ifndef STRATA_CLI_RUN_GEN_H
#define STRATA_CLI_RUN_GEN_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli/run_opts.h"
#include "cli/run_report.h"
#include "strata.h"

typedef struct gen_ctx {
    strata_model *m;
    const gen_opts *o;
    strata_sampler *smp;
    /* the buffers below are counted in the model's memory account */
    int32_t *eog;    /* [n_eog] end-of-generation ids (masked under --ignore-eos) */
    size_t n_eog;
    int32_t *hist;   /* [n_ctx + 1] the tokens in the context, then at most one more sampled */
    size_t n_hist;
    float *logits;   /* [n_vocab] after the last evaluated token */
    strata_detok *dt; /* the text of the answer being generated */
    text_out out;
    run_report *rep;
    volatile sig_atomic_t *stop; /* set (by a signal handler): end the answer; may be NULL */
    bool keep_last;  /* evaluate the last token of an answer too (a chat continues after it) */
} gen_ctx;

typedef enum gen_end {
    GEN_LIMIT,    /* n tokens generated */
    GEN_EOG,      /* the model ended its turn */
    GEN_CTX_FULL, /* no room left in the context */
    GEN_STOPPED,  /* *stop was set */
    GEN_ERROR,    /* reported on stderr */
} gen_end;

/* Prints a one-line error and returns false when the memory budget (the
 * message names the buffer) or memory cannot hold the loop's buffers. */
bool gen_init(gen_ctx *g, strata_model *m, const gen_opts *o, run_report *rep);
void gen_free(gen_ctx *g);

/* Evaluates toks[0..n) at the next positions (appending them to the
 * history); with --stats a line per forward pass of at most o->mp.n_batch
 * tokens. Prints the error and returns false on failure. */
bool gen_eval(gen_ctx *g, const int32_t *toks, size_t n);

/* Passes tokens already in the context (a prompt) through the detokenizer
 * the answer continues, writing their text when `show`. Like llama-cli,
 * the prompt is shown as the model read it, and the answer's first token
 * keeps its leading space (it continues the prompt's text); without this,
 * an answer starts as text of its own (SentencePiece's leading space
 * dropped). False on a write error or out of memory. */
bool gen_echo(gen_ctx *g, const int32_t *toks, size_t n, bool show);

/* Generates up to n tokens after the evaluated ones, streaming their text
 * to stdout; appends it to *answer when answer is non-NULL (its buffer is
 * counted in the model's account as STRATA_MEM_TEXT: gen_text_free). The
 * token that ends the turn is not evaluated. */
typedef struct gen_text {
    char *text; /* [cap] NUL-terminated, text[0..len) */
    size_t len, cap;
} gen_text;
gen_end gen_answer(gen_ctx *g, uint64_t n, gen_text *answer);
/* Appends text[0..n) (doubling the buffer through m's account); false with
 * err set, t unchanged, when the budget or memory cannot hold it. t NULL:
 * nothing kept. */
bool gen_text_add(strata_model *m, gen_text *t, const char *text, size_t n, strata_error *err);
void gen_text_free(strata_model *m, gen_text *t);

#endif
