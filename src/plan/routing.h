/* Measured expert routing of a model file (mixture of experts): how many
 * tokens of a short calibration each layer routed to each expert. The
 * planner turns it into each unit's chance of being routed to by one token
 * (plan_expert_set.chances), which its cache hit-rate estimates use instead
 * of assuming uniform routing. Measured once per file and kept in the
 * cache directory (<XDG_CACHE_HOME or ~/.cache>/strata/routing/), keyed by
 * the file's path, and checked against the size and modification time of
 * each of its files (a split model's every part). */
#ifndef STRATA_PLAN_ROUTING_H
#define STRATA_PLAN_ROUTING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "plan/plan.h"
#include "strata.h"

typedef struct plan_routing {
    uint32_t n_layers, n_expert, n_used;
    uint32_t tokens;  /* tokens routed */
    uint32_t *picks;  /* [n_layers][n_expert] times layer l routed a token to expert x */
} plan_routing;

/* Loads model_path's routing from the cache: *found false when there is
 * none, or when the entry is not this file's (changed since) or is not
 * well formed (the caller measures again and the entry is replaced). */
strata_status plan_routing_load(const char *model_path, plan_routing *out, bool *found, strata_error *err);
strata_status plan_routing_save(const char *model_path, const plan_routing *r, strata_error *err);
void plan_routing_free(plan_routing *r);

/* Sets each expert set's unit chances from r: expert x of layer l is
 * routed to by a token with the chance picks / tokens, the picks drawn
 * toward the layer's mean as far as the calibration's noise says they
 * should be (routing.c: trust). False when r does not match the model's
 * layers, experts or experts per token, or routed no token in a layer
 * with experts (m unchanged), or memory ran out. */
bool plan_model_set_routing(plan_model *m, const plan_routing *r);

#endif
