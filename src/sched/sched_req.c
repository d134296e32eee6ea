/* A request of the scheduler: prompt in, tokens sampled one per step, text
 * released as it comes, except what may begin a stop string. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sched/sched_req.h"

struct sched_req {
    pthread_mutex_t mu;
    pthread_cond_t changed;  /* text released, or the end */
    int refs;                /* the caller's handle and the scheduler's */
    strata_model *m;         /* whose account holds hist and text */
    /* what was asked */
    int32_t *hist;           /* [hist_cap] the prompt, then the tokens sampled (the prompt alone
                                until it starts: then the context it needs + 1) */
    size_t n_prompt, n_hist, hist_cap;
    uint32_t n_ctx_model, max_tokens;
    strata_sampler_params sp;
    char **stop;             /* [n_stop] */
    size_t n_stop, max_stop; /* the longest stop string's bytes */
    bool ignore_eog;
    /* run by the step thread */
    strata_context *ctx;
    strata_sampler *smp;
    strata_detok *dt;
    size_t n_fed;            /* prompt tokens evaluated (or in the step) */
    int32_t next;            /* the token sampled, to evaluate next; -1: none */
    /* output, under mu */
    char *text;              /* [cap] generated text; [0, released) is final */
    size_t len, cap, released;
    uint32_t n_gen;
    bool cancelled, cut;     /* cut: a stop string ended the text */
    sched_finish finish;
    char error[STRATA_ERROR_MAX];
};

static bool copy_stops(sched_req *q, const sched_request_params *p)
{
    q->stop = calloc(p->n_stop ? p->n_stop : 1, sizeof *q->stop);
    if (!q->stop) return false;
    for (size_t i = 0; i < p->n_stop; i++) {
        if (!p->stop[i] || !p->stop[i][0]) continue;
        if (!(q->stop[q->n_stop] = strdup(p->stop[i]))) return false;
        size_t n = strlen(p->stop[i]);
        if (n > q->max_stop) q->max_stop = n;
        q->n_stop++;
    }
    return true;
}

sched_req *req_new(const sched_request_params *p, strata_model *m, uint32_t n_ctx, strata_error *err)
{
    sched_req *q = calloc(1, sizeof *q);
    if (!q) {
        snprintf(err->message, sizeof err->message, "out of memory");
        err->status = STRATA_E_NOMEM;
        return NULL;
    }
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->changed, NULL);
    q->refs = 2;
    q->m = m;
    q->n_ctx_model = n_ctx;
    q->max_tokens = p->max_tokens;
    q->sp = p->sampling;
    q->ignore_eog = p->ignore_eog;
    q->n_prompt = q->n_hist = p->n_prompt;
    q->next = -1;
    /* the prompt for now: a queued request holds no more (req_start grows it) */
    q->hist = strata_mem_alloc(m, STRATA_MEM_SAMPLER, p->n_prompt * sizeof *q->hist, err);
    if (q->hist) {
        memcpy(q->hist, p->prompt, p->n_prompt * sizeof *q->hist);
        q->hist_cap = p->n_prompt;
    }
    bool stops = q->hist && copy_stops(q, p);
    if (q->hist && !stops) {
        snprintf(err->message, sizeof err->message, "out of memory");
        err->status = STRATA_E_NOMEM;
    }
    if (!stops) {
        q->refs = 1;
        req_unref(q);
        return NULL;
    }
    return q;
}

static void release_run_state(sched_req *q)
{
    strata_context_free(q->ctx);
    strata_sampler_free(q->smp);
    strata_detok_free(q->dt);
    q->ctx = NULL;
    q->smp = NULL;
    q->dt = NULL;
}

void req_unref(sched_req *q)
{
    pthread_mutex_lock(&q->mu);
    bool last = --q->refs == 0;
    pthread_mutex_unlock(&q->mu);
    if (!last) return;
    release_run_state(q);
    for (size_t i = 0; i < q->n_stop; i++) free(q->stop[i]);
    free(q->stop);
    strata_mem_free(q->m, STRATA_MEM_SAMPLER, q->hist, q->hist_cap * sizeof *q->hist);
    strata_mem_free(q->m, STRATA_MEM_TEXT, q->text, q->cap);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->changed);
    free(q);
}

void req_cancel(sched_req *q)
{
    pthread_mutex_lock(&q->mu);
    q->cancelled = true;
    pthread_mutex_unlock(&q->mu);
}

bool req_cancelled(sched_req *q)
{
    pthread_mutex_lock(&q->mu);
    bool c = q->cancelled;
    pthread_mutex_unlock(&q->mu);
    return c;
}

/* The context holds the prompt and the answer, no more than the model's. */
static uint32_t ctx_need(const sched_req *q)
{
    uint64_t need = q->n_prompt + (q->max_tokens ? q->max_tokens : q->n_ctx_model);
    return need < q->n_ctx_model ? (uint32_t)need : q->n_ctx_model;
}

/* The history's room for the context's tokens and one sampled that no
 * longer fits. */
static strata_status grow_hist(sched_req *q, strata_error *err)
{
    size_t cap = (size_t)ctx_need(q) + 1;
    if (cap <= q->hist_cap) return STRATA_OK;
    int32_t *h = strata_mem_realloc(q->m, STRATA_MEM_SAMPLER, q->hist, q->hist_cap * sizeof *h, cap * sizeof *h, err);
    if (!h) return STRATA_E_NOMEM;
    q->hist = h;
    q->hist_cap = cap;
    return STRATA_OK;
}

strata_status req_start(sched_req *q, strata_model *m, strata_error *err)
{
    if (strata_context_bytes(m, ctx_need(q)) > strata_model_kv_free(m)) return STRATA_E_NOMEM;
    strata_status st = grow_hist(q, err);
    if (!st) st = strata_context_new(m, ctx_need(q), &q->ctx, err);
    if (st) return st;
    q->smp = strata_sampler_new(&q->sp, m, err);
    q->dt = q->smp ? strata_detok_new(m) : NULL;
    if (!q->smp || !q->dt) {
        release_run_state(q);
        if (q->smp) snprintf(err->message, sizeof err->message, "out of memory");
        return q->smp ? STRATA_E_IO : STRATA_E_NOMEM; /* a budget refusal waits for room; the rest ends it */
    }
    /* the detokenizer sees the prompt first, so the answer's first token is
     * spelled as it is after it (a leading space kept) */
    for (size_t i = 0; i < q->n_prompt; i++) {
        size_t k;
        strata_detok_push(q->dt, q->hist[i], &k);
    }
    return STRATA_OK;
}

bool req_decoding(const sched_req *q) { return q->next >= 0; }

uint32_t req_fill(sched_req *q, strata_batch_entry *b, uint32_t room)
{
    uint32_t pos = strata_context_n_past(q->ctx);
    if (q->next >= 0) {
        b[0] = (strata_batch_entry){q->ctx, q->next, pos, true};
        q->next = -1;
        return 1;
    }
    size_t left = q->n_prompt - q->n_fed;
    uint32_t k = left < room ? (uint32_t)left : room;
    for (uint32_t j = 0; j < k; j++)
        b[j] = (strata_batch_entry){q->ctx, q->hist[q->n_fed + j], pos + j, q->n_fed + j + 1 == q->n_prompt};
    q->n_fed += k;
    return k;
}

/* ---- text and stop strings ---- */

/* Under q->mu; on failure err says why (the budget, or out of memory). */
static bool append_text(sched_req *q, const char *t, size_t n, strata_error *err)
{
    if (!t || !n) return true;
    char *p = strata_mem_grow(q->m, STRATA_MEM_TEXT, q->text, &q->cap, q->len + n + 1, err);
    if (!p) return false;
    q->text = p;
    memcpy(q->text + q->len, t, n);
    q->len += n;
    q->text[q->len] = '\0';
    return true;
}

/* Cuts the text at the first stop string after what is released: true if
 * one was found. Otherwise releases all but the longest tail that could
 * begin one. */
static bool apply_stops(sched_req *q, bool final)
{
    size_t best = q->len;
    for (size_t i = 0; i < q->n_stop; i++) {
        const char *hit = q->text ? strstr(q->text + q->released, q->stop[i]) : NULL;
        if (hit && (size_t)(hit - q->text) < best) best = (size_t)(hit - q->text);
    }
    if (best < q->len) {
        q->len = q->released = best;
        q->text[best] = '\0';
        q->cut = true;
        return true;
    }
    size_t hold = 0;
    for (size_t i = 0; i < q->n_stop && !final; i++)
        for (size_t k = strlen(q->stop[i]) - 1; k > hold; k--)
            if (k <= q->len - q->released && !memcmp(q->text + q->len - k, q->stop[i], k)) {
                hold = k;
                break;
            }
    q->released = q->len - hold;
    return false;
}

/* Adds the token's text; SCHED_STOP when a stop string ends it. */
static sched_finish keep_token_text(sched_req *q, const char *t, size_t n)
{
    pthread_mutex_lock(&q->mu);
    sched_finish f = SCHED_RUNNING;
    strata_error err;
    if (!append_text(q, t, n, &err)) {
        f = SCHED_ERROR;
        snprintf(q->error, sizeof q->error, "the answer's text: %.480s", err.message);
    } else if (apply_stops(q, false)) {
        f = SCHED_STOP;
    }
    q->n_gen++;
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->mu);
    return f;
}

sched_finish req_take_logits(sched_req *q, strata_model *m, float *logits, const int32_t *eog, uint32_t n_eog,
                             bool *kept)
{
    if (q->ignore_eog)
        for (uint32_t i = 0; i < n_eog; i++) logits[eog[i]] = -INFINITY;
    int32_t tok = strata_sample(q->smp, logits, q->hist, q->n_hist);
    if (!q->ignore_eog && strata_token_is_eog(m, tok)) return SCHED_STOP;
    q->hist[q->n_hist++] = tok;
    *kept = true;
    size_t k = 0;
    const char *t = strata_detok_push(q->dt, tok, &k);
    sched_finish f = keep_token_text(q, t, k);
    if (f != SCHED_RUNNING) return f;
    if (q->max_tokens && q->n_hist - q->n_prompt >= q->max_tokens) return SCHED_LENGTH;
    if (strata_context_n_past(q->ctx) >= strata_context_n_ctx(q->ctx)) return SCHED_LENGTH;
    q->next = tok;
    return SCHED_RUNNING;
}

void req_finish(sched_req *q, sched_finish f, const char *error)
{
    size_t k = 0;
    const char *rest = q->dt && f != SCHED_ERROR ? strata_detok_finish(q->dt, &k) : NULL;
    pthread_mutex_lock(&q->mu);
    strata_error err;
    if (!q->cut) { /* the detokenizer's held bytes, and the held tail released */
        if (!append_text(q, rest, k, &err)) {
            f = SCHED_ERROR;
            error = err.message;
        }
        if (apply_stops(q, true) && f != SCHED_ERROR) f = SCHED_STOP;
    }
    q->finish = f;
    if (error) snprintf(q->error, sizeof q->error, "%s", error);
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->mu);
    release_run_state(q);
}

/* ---- the caller's side ---- */

static void deadline_in(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

void sched_req_wait(sched_req *r, size_t from, int timeout_ms, sched_progress *p)
{
    struct timespec until;
    if (timeout_ms > 0) deadline_in(&until, timeout_ms);
    pthread_mutex_lock(&r->mu);
    while (timeout_ms != 0 && r->released <= from && r->finish == SCHED_RUNNING) {
        if (timeout_ms < 0) pthread_cond_wait(&r->changed, &r->mu);
        else if (pthread_cond_timedwait(&r->changed, &r->mu, &until)) break;
    }
    memset(p, 0, sizeof *p);
    size_t n = r->released > from ? r->released - from : 0;
    strata_error err;
    p->m = r->m;
    p->text = strata_mem_alloc(r->m, STRATA_MEM_TEXT, n + 1, &err); /* zeroed: NUL-terminated */
    if (p->text) {
        if (n) memcpy(p->text, r->text + from, n);
        p->len = n;
    }
    p->total_len = r->released;
    p->n_prompt = (uint32_t)r->n_prompt;
    p->n_gen = r->n_gen;
    p->finish = p->text ? r->finish : SCHED_ERROR;
    snprintf(p->error, sizeof p->error, "%s", p->text ? r->error : err.message);
    pthread_mutex_unlock(&r->mu);
}

void sched_progress_free(sched_progress *p)
{
    if (p->text) strata_mem_free(p->m, STRATA_MEM_TEXT, p->text, p->len + 1);
    p->text = NULL;
}

void sched_cancel(sched_req *r) { req_cancel(r); }

void sched_req_release(sched_req *r)
{
    if (!r) return;
    req_cancel(r);
    req_unref(r);
}
