/* The expert routing a plan assumes (mixture of experts): measured by
 * running the model's routers on a short built-in prompt, once per model
 * file, then kept in the cache (plan/routing.h). */
#ifndef STRATA_API_ROUTING_CALIB_H
#define STRATA_API_ROUTING_CALIB_H

#include "plan/plan.h"
#include "strata.h"

#define ROUTING_CALIB_TOKENS 128 /* the prompt's tokens: 128 x n_used picks per layer */

/* Sets pm's routing (plan_model_set_routing) from the cache, measuring it
 * first when the cache has none for this file, or one that is damaged,
 * stale or does not fit the model's experts (a line on stderr says so;
 * the run takes the plan's threads and memory budget, at most this
 * machine's default: here_budget, the default the plan's own probe of this
 * machine gave, or 0 for a plan for another machine's profile, which has
 * none: this machine is probed then). Nothing to do for
 * a model without experts, or when p states a hit rate or asks for
 * uniform routing. A measurement that cannot be made or saved is not an
 * error: `note` says why and the plan assumes uniform routing. */
strata_status routing_for_plan(const char *model_path, const strata_plan_params *p, uint64_t here_budget,
                               plan_model *pm, char *note, size_t note_len, strata_error *err);

/* The cached routing only (never measures): for runs, whose predicted
 * speed then uses the routing `strata plan` measured. */
void routing_from_cache(const char *model_path, plan_model *pm);

#endif
