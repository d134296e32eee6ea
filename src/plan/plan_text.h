/* Plans for people and machines: the compact placement summary, the JSON
 * form (`plan --json`, read back by `run --plan`), and llama.cpp flags. */
#ifndef STRATA_PLAN_PLAN_TEXT_H
#define STRATA_PLAN_PLAN_TEXT_H

#include <jansson.h>
#include <stddef.h>

#include "plan/plan.h"
#include "strata.h"

/* Whether the model has routed experts (expert sets). */
bool plan_model_has_experts(const plan_model *m);

/* "blk 0-11 resident, blk 12-31 streamed; output resident; token_embd rows gathered" */
void plan_placement_summary(const plan_model *m, const plan *p, char *buf, size_t cap);

/* The groups a prompt batch runs elsewhere than a decoded token (plans
 * with phase_sites): "blk 0-31, output streamed over the link to GPU 0 (on
 * the CPU when decoding) for steps of 32+ tokens". */
void plan_prefill_summary(const plan_model *m, const plan *p, char *buf, size_t cap);

json_t *plan_to_json(const plan_model *m, const plan *p);
json_t *plan_result_to_json(const plan_model *m, const plan_machine *hw, const plan_result *r);

/* Reads the chosen plan of a `plan --json` document for this model: the
 * per-group tiers ("gpu" on GPU 0 only: the engine runs one), whether the
 * weights cross the link, context and KV type. Errors name the field. */
strata_status plan_from_json(const json_t *doc, const plan_model *m, plan *out, strata_error *err);

/* llama.cpp flags for the plan, and a note where llama.cpp cannot express it. */
void plan_export_llamacpp(const plan_model *m, const plan *p, char *flags, size_t cap, char *note, size_t note_cap);

#endif
