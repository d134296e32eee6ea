/* The routing calibration (routing_calib.h): the model opened as `run`
 * would under the plan's budget (weights that do not fit streamed), one
 * prompt of ROUTING_CALIB_TOKENS tokens evaluated in one pass, and the
 * engine's count of each layer's expert picks kept. */
#include "api/routing_calib.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/model_internal.h"
#include "engine/engine.h"
#include "plan/routing.h"
#include "util/error.h"

/* Plain prose of mixed topics: routers send different kinds of text to
 * different experts, so one topic would skew the counts. Repeated when it
 * tokenizes to fewer tokens than the prompt. */
static const char calib_text[] =
    "The river rose overnight and by morning the lower fields were under water. Farmers moved their animals to "
    "the hill, while the school opened its hall to families from the valley. In the city, the council met to "
    "discuss the budget: roads, the new library, and the cost of heating public buildings through the winter. "
    "A function that sorts a list in place must compare elements and swap them; quicksort picks a pivot, splits "
    "the list around it and sorts each part. Water boils at one hundred degrees Celsius at sea level, and less "
    "on a mountain, where the air pressure is lower. She opened the letter, read it twice, and laughed: after "
    "twelve years her brother was coming home. The orchestra tuned, the lights dimmed, and the first notes of "
    "the symphony filled the hall. 3 + 4 = 7, and 7 x 6 = 42.";

static bool has_experts(const plan_model *pm)
{
    for (uint32_t l = 0; l < pm->n_expert_sets; l++)
        if (pm->experts[l].n_expert) return true;
    return false;
}

/* The prompt: the text's tokens (BOS first, as the vocabulary says), then
 * the text again without it up to ROUTING_CALIB_TOKENS. The file's
 * tokenizer alone, before the model takes its budget (a long text's
 * tokenizing would not fit beside a cache that fills it). */
static strata_status prompt(const char *path, int32_t *out, strata_error *err)
{
    strata_vocab *v = NULL;
    int32_t *first = NULL, *again = NULL;
    size_t n_first = 0, n_again = 0;
    strata_status st = strata_vocab_open(path, &v, err);
    if (!st) st = strata_vocab_tokenize(v, calib_text, sizeof calib_text - 1, true, false, &first, &n_first, err);
    if (!st) st = strata_vocab_tokenize(v, calib_text, sizeof calib_text - 1, false, false, &again, &n_again, err);
    if (!st && (n_first == 0 || n_again == 0)) st = err_set(err, STRATA_E_INVALID, "the calibration text has no tokens");
    for (size_t i = 0; !st && i < ROUTING_CALIB_TOKENS; i++)
        out[i] = i < n_first ? first[i] : again[(i - n_first) % n_again];
    free(first);
    free(again);
    strata_vocab_free(v);
    return st;
}

/* The memory the calibration may take: this machine's default budget
 * (what `run` takes; here: as the plan probed it, 0 when it did not), or
 * the plan's --mem when that is less (a --hw profile's machine may be
 * larger than this one). */
static strata_status budget(const char *path, const strata_plan_params *p, uint64_t here, uint64_t *out,
                            strata_error *err)
{
    if (!here) {
        strata_machine m;
        strata_status st = strata_machine_probe(path, &m, err);
        if (st) return st;
        here = m.default_budget;
    }
    *out = p->mem_budget && p->mem_budget < here ? p->mem_budget : here;
    return STRATA_OK;
}

/* The picks of one prompt's pass into r. */
static strata_status measure(const char *path, const strata_plan_params *p, uint64_t here_budget, plan_routing *r,
                             strata_error *err)
{
    strata_model_params mp = strata_model_default_params();
    strata_status st = budget(path, p, here_budget, &mp.mem_budget, err);
    if (st) return st;
    mp.plan = true; /* weights placed as a run's under this budget: the rest streamed */
    mp.n_threads = p->n_threads;
    mp.n_ctx = ROUTING_CALIB_TOKENS;
    mp.n_batch = ROUTING_CALIB_TOKENS;
    mp.gpu = STRATA_GPU_OFF;
    mp.watchdog = false;
    strata_model *m = NULL;
    int32_t tokens[ROUTING_CALIB_TOKENS];
    size_t n = ROUTING_CALIB_TOKENS;
    st = prompt(path, tokens, err);
    if (!st) st = strata_model_open(path, &mp, &m, err);
    if (!st) st = strata_eval(m, tokens, n, NULL, false, err);
    const uint32_t *picks = st ? NULL : engine_expert_picks(m->eng);
    if (!st && !picks) st = err_set(err, STRATA_E_INVALID, "%s: the engine routed no experts", path);
    if (!st) {
        *r = (plan_routing){.n_layers = engine_n_layers(m->eng), .n_expert = (uint32_t)m->spec->hp.n_expert,
                            .n_used = (uint32_t)m->spec->hp.n_expert_used, .tokens = (uint32_t)n};
        size_t count = (size_t)r->n_layers * r->n_expert;
        if (!(r->picks = malloc(count * sizeof *r->picks))) st = err_set(err, STRATA_E_NOMEM, "out of memory");
        else memcpy(r->picks, picks, count * sizeof *r->picks);
    }
    strata_model_free(m);
    return st;
}

strata_status routing_for_plan(const char *model_path, const strata_plan_params *p, uint64_t here_budget,
                               plan_model *pm, char *note, size_t note_len, strata_error *err)
{
    if (note_len) note[0] = '\0';
    if (!has_experts(pm) || p->moe_hit_rate_set || p->moe_uniform_routing) return STRATA_OK;
    plan_routing r;
    bool found = false; /* a stale or damaged entry is measured again and replaced */
    strata_status st = plan_routing_load(model_path, &r, &found, err);
    if (st) return st;
    if (found && plan_model_set_routing(pm, &r)) {
        plan_routing_free(&r);
        return STRATA_OK;
    }
    plan_routing_free(&r); /* none, or one that does not fit the model's experts */
    strata_error e = {0};
    fprintf(stderr, "strata: measuring how %s routes tokens to experts (a %d-token prompt, once per file)\n",
            model_path, ROUTING_CALIB_TOKENS);
    if (measure(model_path, p, here_budget, &r, &e)) {
        snprintf(note, note_len, "routing not measured (%.400s): uniform routing assumed", e.message);
        return STRATA_OK;
    }
    if (plan_routing_save(model_path, &r, &e))
        snprintf(note, note_len, "the measured routing was not saved: %.400s", e.message);
    if (!plan_model_set_routing(pm, &r))
        snprintf(note, note_len, "the routing measured does not match the model's experts: uniform routing assumed");
    plan_routing_free(&r);
    return STRATA_OK;
}

void routing_from_cache(const char *model_path, plan_model *pm)
{
    plan_routing r;
    bool found = false;
    strata_error e;
    if (!has_experts(pm) || plan_routing_load(model_path, &r, &found, &e) || !found) return;
    plan_model_set_routing(pm, &r);
    plan_routing_free(&r);
}
