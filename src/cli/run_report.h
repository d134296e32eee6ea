/* What `strata run` tells the user on stderr: the placement chosen, per-token
 * streaming statistics (--stats) and the closing statistics line. */
#ifndef STRATA_CLI_RUN_REPORT_H
#define STRATA_CLI_RUN_REPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "strata.h"

typedef struct run_report {
    double load_s, prompt_s, gen_s;
    size_t n_prompt, n_gen;
    unsigned long long seed;
    double disk_bw;              /* measured, bytes/s; 0 unknown */
    strata_model_stats at_start; /* of the generation phase */
    strata_model_stats at_end;   /* of the generation phase */
    strata_model_stats last;     /* at the previous token (--stats) */
    double phase_t0;
    unsigned long long gen_bytes;
    double gen_active_s;          /* of gen_s, the time a read was in progress */
    bool per_layer;              /* --stats: the expert cache per layer and the watchdog line at the end */
    strata_moe_cache moe_cache;
    strata_moe_prefetch moe_prefetch;
} run_report;

double report_now(void);
/* The plan line with the plan's budget (`budget` when the model has no
 * plan), the GPU line, and a line when the page cache is used for streaming. */
void report_placement(const strata_model *m, const char *path, unsigned long long budget);
void report_phase_begin(run_report *r, const strata_model *m);
void report_phase_end(run_report *r, const strata_model *m);
/* --stats: one line per forward pass, e.g. "token 3" or "prompt batch 1"
 * (n_tokens shown when more than one token went through it). */
void report_pass(run_report *r, const strata_model *m, const char *what, size_t index, size_t n_tokens,
                 double eval_s);
void report_summary(const run_report *r, const strata_model *m);
/* --stats: the memory account's line per tier (each category now, and its
 * peak where it held more). */
void report_memory(const strata_model *m);

#endif
