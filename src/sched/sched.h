/* Continuous batching: many generation requests over one model. Each step
 * is one forward pass (strata_decode) holding the next token of every
 * decoding sequence and, in the room left (the model's n_batch), prompt
 * chunks of sequences starting; a request joins as soon as a slot and KV
 * room free up, leaves as soon as it ends, and a step never waits for the
 * slowest sequence. Each request gets a context sized to what it needs
 * (prompt + max_tokens, capped at the model's n_ctx).
 *
 * Threads: sched_submit, sched_cancel, sched_req_* and sched_get_stats may
 * be called from any thread; sched_step from one thread at a time (the
 * server's worker, or the batch command's loop). */
#ifndef STRATA_SCHED_SCHED_H
#define STRATA_SCHED_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "strata.h"

typedef struct sched sched;
typedef struct sched_req sched_req;

typedef struct sched_params {
    uint32_t n_slots;   /* sequences in flight at most (-np); 0: 1 */
    uint32_t max_queue; /* requests waiting for a slot at most; 0: 4 x n_slots */
} sched_params;

typedef struct sched_request_params {
    const int32_t *prompt;     /* copied; BOS and template tokens already in */
    size_t n_prompt;           /* >= 1 */
    uint32_t max_tokens;       /* tokens to generate at most; 0: until the context is full */
    strata_sampler_params sampling;
    const char *const *stop;   /* stop strings (copied; NULL entries and "" ignored) */
    size_t n_stop;
    bool ignore_eog;           /* keep going past end-of-generation tokens */
} sched_request_params;

typedef enum sched_finish {
    SCHED_RUNNING = 0,
    SCHED_STOP,      /* an end-of-generation token or a stop string ("stop") */
    SCHED_LENGTH,    /* max_tokens or the context's end ("length") */
    SCHED_CANCELLED, /* sched_cancel or sched_shutdown */
    SCHED_ERROR,     /* the forward pass failed: message in sched_progress.error */
} sched_finish;

/* OpenAI's finish_reason for a finished request ("stop", "length"; NULL while running). */
const char *sched_finish_reason(sched_finish f);

typedef enum sched_submit_result {
    SCHED_OK = 0,
    SCHED_FULL,     /* the queue is full (HTTP 503) */
    SCHED_TOO_LONG, /* prompt (+1) longer than the model's context (HTTP 400) */
    SCHED_INVALID,  /* bad parameters: a token outside the vocabulary, an empty prompt (HTTP 400) */
    SCHED_CLOSED,   /* shutting down (HTTP 503) */
    SCHED_NO_MEMORY, /* the memory budget cannot hold the request's buffers (HTTP 413) */
} sched_submit_result;

strata_status sched_new(strata_model *m, const sched_params *p, sched **out, strata_error *err);
/* Cancels what still runs and frees the scheduler; requests not yet
 * released stay valid until sched_req_release. */
void sched_free(sched *s);

/* Queues a request; *out is the caller's handle (sched_req_release). Its
 * prompt's copy is counted in the model's memory account (STRATA_MEM_SAMPLER:
 * it starts the token history, grown to the context the request needs when
 * it starts), its text too (STRATA_MEM_TEXT). On a
 * result other than SCHED_OK, *out is NULL and msg (when non-NULL, cap
 * bytes) says why in one line. */
sched_submit_result sched_submit(sched *s, const sched_request_params *p, sched_req **out, char *msg, size_t cap);

/* Runs one step: admits queued requests, one forward pass, samples, ends
 * finished requests. Returns false when there was nothing to do (no
 * request running or queued). A failing forward pass ends the requests in
 * it with SCHED_ERROR; the scheduler goes on with the others. */
bool sched_step(sched *s);
/* Blocks until a request is queued or running, or sched_shutdown (the
 * server's worker: `while (sched_wait_work(s)) sched_step(s);`). Returns
 * false on shutdown. */
bool sched_wait_work(sched *s);
/* Stops accepting requests (SCHED_CLOSED), cancels queued and running ones
 * and wakes every waiter. */
void sched_shutdown(sched *s);

/* What a request has produced so far. text is a copy, counted in the
 * model's memory account (sched_progress_free), of the generated text from
 * byte `from` on (text held back because it may begin a stop string is not
 * included until resolved); NULL when the budget or memory could not hold
 * it (finish is then SCHED_ERROR, error says why). */
typedef struct sched_progress {
    char *text;
    strata_model *m;         /* whose account holds text */
    size_t len;              /* of text */
    size_t total_len;        /* bytes of text produced so far, from 0 */
    uint32_t n_prompt, n_gen; /* tokens */
    sched_finish finish;
    char error[STRATA_ERROR_MAX];
} sched_progress;

/* Waits until the request has text past byte `from` or has finished, at
 * most timeout_ms (< 0: no limit; 0: just look), then fills *p. */
void sched_req_wait(sched_req *r, size_t from, int timeout_ms, sched_progress *p);
/* Frees p->text (and gives its memory back to the account). */
void sched_progress_free(sched_progress *p);
/* Ends a request early (a client that went away): its slot and context
 * free at the next step. */
void sched_cancel(sched_req *r);
/* The caller is done with the handle (cancels the request if it runs). */
void sched_req_release(sched_req *r);

typedef struct sched_stats {
    uint64_t prompt_tokens, decode_tokens; /* tokens evaluated: prompts', and sampled ones fed back */
    uint64_t gen_tokens;                  /* tokens generated (sampled and kept in an answer) */
    double prompt_seconds, gen_seconds;   /* step time on prompt and decode tokens (a step holding
                                             both shared by token counts) */
    uint64_t steps;
    uint32_t running, queued;             /* requests now */
    uint64_t requests_done;
    uint64_t kv_used, kv_total;           /* bytes of the model's KV reserve */
    strata_model_stats model;             /* the model's, as of the last step (safe to read
                                             while another thread runs a step) */
} sched_stats;

void sched_get_stats(sched *s, sched_stats *out);

#endif
