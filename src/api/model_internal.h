/* Internal to src/api: the model object shared by its files. */
#ifndef STRATA_API_MODEL_INTERNAL_H
#define STRATA_API_MODEL_INTERNAL_H

#include "engine/engine.h"
#include "gguf/gguf.h"
#include "model/model_spec.h"
#include "strata.h"
#include "tokenizer/tokenizer.h"
#include "util/account.h"

struct strata_model {
    gguf_file *file;
    model_spec *spec;
    tokenizer *tok;
    engine *eng;
    mem_account *acct; /* every byte the model allocates (util/account.h) */
    bool *resident;    /* the plan's choice per store group, or NULL */
    uint8_t *sites;    /* the plan's engine_site per group when it uses the GPU, or NULL; then
                          [n_groups] more: its sites for prompt batches */
    double predicted_tps, predicted_disk_bw;
    bool predicted_measured;
    uint64_t planned_budget; /* the planner's default budget when none was given */
    char summary[1600];
};

/* Places the weights by the planner (or p->plan_file) and sets the store's
 * resident groups and the context in *ep. */
strata_status model_plan(strata_model *m, const char *path, const strata_model_params *p, int threads,
                         engine_params *ep, strata_error *err);

/* Peak memory of tokenizing `len` bytes of text (taken from the account as
 * the prompt's before the work). */
uint64_t model_tokenize_work(size_t len);

#endif
