/* The continuous-batching scheduler (sched.h): a queue of requests, slots
 * running them, and the step that builds one batch of every running
 * sequence's next token plus prompt chunks, runs it, and samples. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sched/sched.h"
#include "sched/sched_req.h"

struct sched {
    strata_model *m;
    uint32_t n_slots, max_queue, n_vocab, n_batch;
    pthread_mutex_t mu;         /* guards the queue, slots and stats */
    pthread_cond_t work;        /* a request was queued, or shutdown */
    sched_req **queue;          /* [max_queue] ring: waiting requests, oldest at q_head */
    uint32_t q_head, n_queued;
    sched_req **slot;           /* [n_slots] running requests (NULL: free) */
    uint32_t n_running;
    bool closed;
    strata_batch_entry *batch;  /* [n_batch] the step's entries */
    sched_req **batch_req;      /* [n_batch] the request of each entry */
    float *logits;              /* [n_slots][n_vocab] rows of the entries that ask (the model's account) */
    int32_t *eog;               /* [n_eog] the end-of-generation tokens (the model's account) */
    uint32_t n_eog;
    sched_stats st;
};

const char *sched_finish_reason(sched_finish f)
{
    return f == SCHED_STOP ? "stop" : f == SCHED_RUNNING ? NULL : f == SCHED_LENGTH ? "length"
                               : f == SCHED_CANCELLED ? "cancelled" : "error";
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Counted first, so the list is as long as it needs (a few tokens). */
static bool collect_eog(sched *s, strata_error *err)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->n_vocab; i++) n += strata_token_is_eog(s->m, (int32_t)i);
    s->eog = strata_mem_alloc(s->m, STRATA_MEM_SAMPLER, (n ? n : 1) * sizeof *s->eog, err);
    if (!s->eog) return false;
    for (uint32_t i = 0; i < s->n_vocab; i++)
        if (strata_token_is_eog(s->m, (int32_t)i)) s->eog[s->n_eog++] = (int32_t)i;
    return true;
}

static size_t logits_bytes(const sched *s) { return (size_t)s->n_slots * s->n_vocab * sizeof *s->logits; }

strata_status sched_new(strata_model *m, const sched_params *p, sched **out, strata_error *err)
{
    *out = NULL;
    sched *s = calloc(1, sizeof *s);
    if (!s) return STRATA_E_NOMEM;
    s->m = m;
    s->n_slots = p->n_slots ? p->n_slots : 1;
    s->max_queue = p->max_queue ? p->max_queue : 4 * s->n_slots;
    s->n_vocab = strata_model_n_vocab(m);
    s->n_batch = strata_model_n_batch(m);
    s->st.kv_total = strata_model_kv_free(m);
    strata_model_get_stats(m, &s->st.model);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    s->queue = calloc(s->max_queue, sizeof *s->queue);
    s->slot = calloc(s->n_slots, sizeof *s->slot);
    s->batch = calloc(s->n_batch, sizeof *s->batch);
    s->batch_req = calloc(s->n_batch, sizeof *s->batch_req);
    strata_error e = {.status = STRATA_E_NOMEM, .message = "out of memory"};
    bool ok = s->queue && s->slot && s->batch && s->batch_req;
    ok = ok && (s->logits = strata_mem_alloc(m, STRATA_MEM_LOGITS, logits_bytes(s), &e)) && collect_eog(s, &e);
    if (!ok) {
        if (err) {
            err->status = STRATA_E_NOMEM;
            snprintf(err->message, sizeof err->message, "a scheduler of %u slots (%u x %u logits): %.400s",
                     s->n_slots, s->n_slots, s->n_vocab, e.message);
        }
        sched_free(s);
        return STRATA_E_NOMEM;
    }
    *out = s;
    return STRATA_OK;
}

/* ---- admission ---- */

static sched_submit_result check_request(const sched *s, const sched_request_params *p, char *msg, size_t cap)
{
    uint32_t n_ctx = strata_model_n_ctx(s->m);
    if (!p->prompt || p->n_prompt == 0) {
        snprintf(msg, cap, "the prompt is empty");
        return SCHED_INVALID;
    }
    if (p->n_prompt >= n_ctx) {
        snprintf(msg, cap, "the prompt has %zu tokens; the context holds %u (prompt and answer)", p->n_prompt, n_ctx);
        return SCHED_TOO_LONG;
    }
    for (size_t i = 0; i < p->n_prompt; i++)
        if (p->prompt[i] < 0 || (uint32_t)p->prompt[i] >= s->n_vocab) {
            snprintf(msg, cap, "prompt token %zu (%d) is outside the vocabulary (%u)", i, p->prompt[i], s->n_vocab);
            return SCHED_INVALID;
        }
    return SCHED_OK;
}

sched_submit_result sched_submit(sched *s, const sched_request_params *p, sched_req **out, char *msg, size_t cap)
{
    char dummy[8];
    if (!msg) msg = dummy, cap = sizeof dummy;
    *out = NULL;
    sched_submit_result r = check_request(s, p, msg, cap);
    if (r) return r;
    strata_error err;
    sched_req *q = req_new(p, s->m, strata_model_n_ctx(s->m), &err);
    if (!q) { /* the budget (or memory) cannot hold its prompt's copy */
        snprintf(msg, cap, "%s", err.message);
        return SCHED_NO_MEMORY;
    }
    pthread_mutex_lock(&s->mu);
    if (s->closed || s->n_queued == s->max_queue) {
        r = s->closed ? SCHED_CLOSED : SCHED_FULL;
        snprintf(msg, cap, s->closed ? "the server is shutting down" : "%u requests are waiting already; retry later",
                 s->n_queued);
    } else {
        s->queue[(s->q_head + s->n_queued++) % s->max_queue] = q;
        pthread_cond_signal(&s->work);
    }
    pthread_mutex_unlock(&s->mu);
    if (r) {
        req_unref(q); /* the scheduler's reference */
        req_unref(q); /* the caller's */
        return r;
    }
    *out = q;
    return SCHED_OK;
}

/* Frees a finished request's slot (its context returns its KV room). */
static void end_slot(sched *s, uint32_t i, sched_finish f, const char *error)
{
    sched_req *q = s->slot[i];
    req_finish(q, f, error);
    s->slot[i] = NULL;
    s->n_running--;
    s->st.requests_done++;
    req_unref(q);
}

static sched_req *queue_pop(sched *s)
{
    sched_req *q = s->queue[s->q_head];
    s->q_head = (s->q_head + 1) % s->max_queue;
    s->n_queued--;
    return q;
}

/* Queued requests cancelled while waiting leave without running. */
static void drop_cancelled_queued(sched *s)
{
    for (uint32_t k = s->n_queued; k > 0; k--) {
        sched_req *q = queue_pop(s);
        if (!req_cancelled(q) && !s->closed) {
            s->queue[(s->q_head + s->n_queued++) % s->max_queue] = q;
            continue;
        }
        req_finish(q, SCHED_CANCELLED, NULL);
        s->st.requests_done++;
        req_unref(q);
    }
}

/* Moves queued requests into free slots, oldest first, while the KV
 * reserve has room for their contexts. */
static void admit(sched *s)
{
    drop_cancelled_queued(s);
    for (uint32_t i = 0; i < s->n_slots && s->n_queued; i++) {
        if (s->slot[i]) continue;
        strata_error err = {0};
        sched_req *q = s->queue[s->q_head];
        strata_status st = req_start(q, s->m, &err);
        /* no KV room now (the reserve, or the GPU's sets of caches): wait */
        if (st == STRATA_E_NOMEM && s->n_running) return;
        queue_pop(s);
        s->slot[i] = q;
        s->n_running++;
        if (st) end_slot(s, i, SCHED_ERROR, err.message);
    }
}

/* ---- one step ---- */

/* The step's entries: first the next token of every decoding sequence,
 * then prompt chunks in the room left. Returns the number of entries;
 * *prompt_tokens counts the prompt's. */
static uint32_t build_batch(sched *s, uint32_t *prompt_tokens)
{
    uint32_t n = 0;
    *prompt_tokens = 0;
    for (uint32_t i = 0; i < s->n_slots; i++)
        if (s->slot[i] && req_decoding(s->slot[i])) {
            s->batch_req[n] = s->slot[i];
            n += req_fill(s->slot[i], s->batch + n, 1);
        }
    for (uint32_t i = 0; i < s->n_slots && n < s->n_batch; i++)
        if (s->slot[i] && !req_decoding(s->slot[i])) {
            uint32_t k = req_fill(s->slot[i], s->batch + n, s->n_batch - n);
            for (uint32_t j = 0; j < k; j++) s->batch_req[n + j] = s->slot[i];
            n += k;
            *prompt_tokens += k;
        }
    return n;
}

/* Ends q if it still holds a slot. */
static void end_req(sched *s, const sched_req *q, sched_finish f, const char *error)
{
    for (uint32_t i = 0; i < s->n_slots; i++)
        if (s->slot[i] == q) end_slot(s, i, f, error);
}

/* Samples for the entries that asked for logits; ends finished requests. */
static void after_decode(sched *s, uint32_t n)
{
    uint32_t row = 0;
    for (uint32_t t = 0; t < n; t++) {
        sched_req *q = s->batch_req[t];
        if (!s->batch[t].logits) continue;
        bool kept = false;
        sched_finish f = req_take_logits(q, s->m, s->logits + (size_t)row++ * s->n_vocab, s->eog, s->n_eog, &kept);
        s->st.gen_tokens += kept;
        if (f != SCHED_RUNNING) end_req(s, q, f, NULL);
    }
}

/* Running requests cancelled (a client gone, shutdown) end now. */
static void drop_cancelled_running(sched *s)
{
    for (uint32_t i = 0; i < s->n_slots; i++)
        if (s->slot[i] && (s->closed || req_cancelled(s->slot[i]))) end_slot(s, i, SCHED_CANCELLED, NULL);
}

bool sched_step(sched *s)
{
    pthread_mutex_lock(&s->mu);
    drop_cancelled_running(s);
    admit(s);
    uint32_t n_prompt = 0, n = build_batch(s, &n_prompt);
    pthread_mutex_unlock(&s->mu);
    if (n == 0) return false;
    strata_error err = {0};
    double t0 = now_s();
    strata_status st = strata_decode(s->m, s->batch, n, s->logits, &err);
    double dt = now_s() - t0;
    pthread_mutex_lock(&s->mu);
    s->st.steps++;
    s->st.prompt_tokens += n_prompt;
    s->st.decode_tokens += n - n_prompt;
    /* a step holding both shares its time by tokens */
    s->st.prompt_seconds += dt * n_prompt / n;
    s->st.gen_seconds += dt * (n - n_prompt) / n;
    if (st) {
        for (uint32_t t = 0; t < n; t++) end_req(s, s->batch_req[t], SCHED_ERROR, err.message);
    } else {
        after_decode(s, n);
    }
    strata_model_get_stats(s->m, &s->st.model);
    pthread_mutex_unlock(&s->mu);
    return true;
}

bool sched_wait_work(sched *s)
{
    pthread_mutex_lock(&s->mu);
    while (!s->closed && !s->n_queued && !s->n_running) pthread_cond_wait(&s->work, &s->mu);
    bool open = !s->closed;
    pthread_mutex_unlock(&s->mu);
    return open;
}

void sched_shutdown(sched *s)
{
    pthread_mutex_lock(&s->mu);
    s->closed = true;
    drop_cancelled_queued(s); /* every queued one, now that it is closed */
    for (uint32_t i = 0; i < s->n_slots; i++)
        if (s->slot[i]) req_cancel(s->slot[i]);
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->mu);
}

void sched_free(sched *s)
{
    if (!s) return;
    s->closed = true;
    if (s->queue) drop_cancelled_queued(s);
    for (uint32_t i = 0; s->slot && i < s->n_slots; i++)
        if (s->slot[i]) end_slot(s, i, SCHED_CANCELLED, NULL);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work);
    free(s->queue);
    free(s->slot);
    free(s->batch);
    free(s->batch_req);
    strata_mem_free(s->m, STRATA_MEM_LOGITS, s->logits, s->logits ? logits_bytes(s) : 0);
    strata_mem_free(s->m, STRATA_MEM_SAMPLER, s->eog, (s->n_eog ? s->n_eog : 1) * sizeof *s->eog);
    free(s);
}

void sched_get_stats(sched *s, sched_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    out->running = s->n_running;
    out->queued = s->n_queued;
    out->kv_used = out->kv_total - strata_model_kv_free(s->m);
    pthread_mutex_unlock(&s->mu);
}
