/* Internal to src/sched: one request's state. The step thread runs it
 * (context, sampler, detokenizer: under the scheduler's lock); its output
 * (text, end) is guarded by the request's own lock, which waiters hold. */
#ifndef STRATA_SCHED_SCHED_REQ_H
#define STRATA_SCHED_SCHED_REQ_H

#include "sched/sched.h"

/* A request with one reference for the caller and one for the scheduler;
 * n_ctx is the model's (a context takes what the request needs of it). Its
 * buffers are counted in m's account; NULL with err set when refused
 * (STRATA_E_NOMEM) or out of memory. */
sched_req *req_new(const sched_request_params *p, strata_model *m, uint32_t n_ctx, strata_error *err);
void req_unref(sched_req *q);
void req_cancel(sched_req *q);
bool req_cancelled(sched_req *q);

/* Its context, sampler and detokenizer, and its token history grown to
 * the context; STRATA_E_NOMEM when the KV reserve or the memory budget has
 * no room for them now (err says which, when it is the budget). */
strata_status req_start(sched_req *q, strata_model *m, strata_error *err);
/* True once the prompt is in and a sampled token waits to be evaluated. */
bool req_decoding(const sched_req *q);
/* Writes its next entries (the sampled token, or up to `room` prompt
 * tokens, the last asking for logits) to b; returns how many. They count
 * as done: a failing step ends the request. */
uint32_t req_fill(sched_req *q, strata_batch_entry *b, uint32_t room);
/* Samples from its logits row, keeps the token's text (*kept: a token was
 * added to the answer): SCHED_RUNNING to go on, or why it ends. */
sched_finish req_take_logits(sched_req *q, strata_model *m, float *logits, const int32_t *eog, uint32_t n_eog,
                             bool *kept);
/* Ends it: releases its context and wakes its waiters. */
void req_finish(sched_req *q, sched_finish f, const char *error);

#endif
