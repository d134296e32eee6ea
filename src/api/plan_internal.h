/* The public plan's insides, for the files of src/api that implement it. */
#ifndef STRATA_API_PLAN_INTERNAL_H
#define STRATA_API_PLAN_INTERNAL_H

#include "plan/inputs.h"
#include "plan/plan_batch.h"
#include "strata.h"

struct strata_plan {
    char model_path[1024];
    plan_model model;         /* one sequence (owns the groups) */
    plan_model view;          /* what the placement holds: model, or with the KV of batch.n_seq
                                 sequences (sharing model's groups) */
    plan_machine machine;
    plan_machine_notes notes;
    char routing_note[512];   /* why the measured expert routing is not used ("" when it is, or not asked for) */
    plan_request req;
    bool batched;             /* n_parallel > 1 or parallel_auto: batch, else single */
    bool parallel_auto;
    plan_result single;
    plan_batch batch;
};

/* The result the plan reports: single's, or the batch's. */
static inline const plan_result *plan_api_result(const strata_plan *p) { return p->batched ? &p->batch.r : &p->single; }

#endif
