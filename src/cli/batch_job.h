/* One `strata batch` run: size the contexts, open the model, tokenize,
 * schedule every prompt (src/sched), write the results and the totals. */
#ifndef STRATA_CLI_BATCH_JOB_H
#define STRATA_CLI_BATCH_JOB_H

#include <stdbool.h>
#include <stdint.h>

#include "cli/batch_input.h"
#include "cli/run_opts.h"
#include "sched/sched.h"
#include "strata.h"

typedef struct batch_job {
    gen_opts *g;
    const batch_input *in;
    const char *prompt_file, *out_file;
    bool chat;
    uint32_t n_parallel;
} batch_job;

/* One prompt's result. */
typedef struct batch_result {
    char *text;        /* generated text (a sched_progress's: freed by batch_result_free) */
    size_t len;
    uint32_t n_prompt, n_gen;
    const char *finish; /* "stop", "length" */
} batch_result;

/* Totals for the closing line. */
typedef struct batch_totals {
    double wall_s, prompt_s, gen_s;   /* the scheduling loop; steps with prompt tokens; decode-only steps */
    uint64_t prompt_tokens, gen_tokens, decode_tokens, steps;
    uint64_t bytes_read;              /* streamed from disk during the loop */
    uint64_t kv_total;                /* the KV reserve */
} batch_totals;

/* Returns the exit status (0, or 1 after a one-line error). */
int batch_job_run(batch_job *job);

/* Writes the results as JSONL in input order, atomically (util/outfile.h). */
int batch_write_results(const batch_job *job, const batch_result *res);
/* The closing line on stderr. */
void batch_print_totals(const batch_job *job, const batch_totals *t);

#endif
