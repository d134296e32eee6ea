/* POST /v1/chat/completions and /v1/completions: parse, tokenize, queue on
 * the scheduler, and answer as one object or as server-sent events. A
 * client that goes away cancels its request at once: the non-streaming
 * wait polls the connection's socket, a stream ends when a write fails or
 * the socket hangs up, and the response's free callback releases the
 * request (sched_req_release cancels what still runs). */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve/openai_response.h"
#include "serve/server_internal.h"

#define WAIT_SLICE_MS 100 /* waits for text this long, then checks the client and the server */

/* What an answer shares, owned by it. */
typedef struct answer {
    char id[48];
    oai_meta meta;
    int fd; /* the connection's socket: polled for a hang-up */
} answer;

static void answer_init(server *s, struct MHD_Connection *c, oai_kind kind, answer *a)
{
    uint64_t n = atomic_fetch_add(&s->n_ids, 1);
    snprintf(a->id, sizeof a->id, "%s-%llx%05llx", kind == OAI_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)time(NULL), (unsigned long long)(n & 0xFFFFF));
    a->meta = (oai_meta){kind, a->id, s->cfg.model_id, (int64_t)time(NULL)};
    const union MHD_ConnectionInfo *ci = mhd.get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    a->fd = ci ? ci->connect_fd : -1;
}

/* The client closed its end (or the socket failed). */
static bool peer_gone(int fd)
{
    if (fd < 0) return false;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

/* ---- from the request to the scheduler ---- */

/* A prompt given as token ids, checked against the vocabulary; used as
 * the request holds it (no copy: the scheduler copies it). */
static strata_status given_tokens(server *s, const oai_request *r, strata_error *err)
{
    uint32_t n_vocab = strata_model_n_vocab(s->model);
    for (size_t i = 0; i < r->n_prompt_tokens; i++)
        if ((uint32_t)r->prompt_tokens[i] >= n_vocab) {
            snprintf(err->message, sizeof err->message, "'prompt[%zu]' = %d is not a token id of this model (%u tokens)",
                     i, (int)r->prompt_tokens[i], n_vocab);
            return err->status = STRATA_E_INVALID;
        }
    return STRATA_OK;
}

/* The tokens of a prompt given as text, or of the chat's messages. */
static strata_status tokenize(server *s, const oai_request *r, int32_t **toks, size_t *n, strata_error *err)
{
    if (r->kind == OAI_COMPLETION) return strata_tokenize(s->model, r->prompt, r->prompt_len, true, toks, n, err);
    strata_chat_message *msgs = malloc(r->n_messages * sizeof *msgs); /* [n_messages], at most OAI_MAX_MESSAGES */
    if (!msgs) {
        snprintf(err->message, sizeof err->message, "out of memory");
        return STRATA_E_NOMEM;
    }
    for (size_t i = 0; i < r->n_messages; i++) msgs[i] = (strata_chat_message){r->messages[i].role, r->messages[i].content};
    strata_status st = strata_chat_tokenize(s->model, s->tmpl, msgs, r->n_messages, 0, true, toks, n, err);
    free(msgs);
    return st;
}

/* The prompt's tokens: the request's own when given as ids, else
 * tokenized (*owned: to free, counted in the account as the prompt). */
static strata_status prompt_tokens(server *s, const oai_request *r, int32_t **toks, size_t *n, bool *owned,
                                   strata_error *err)
{
    *owned = false;
    if (r->kind == OAI_COMPLETION && r->prompt_tokens) {
        *toks = r->prompt_tokens;
        *n = r->n_prompt_tokens;
        return given_tokens(s, r, err);
    }
    strata_status st = tokenize(s, r, toks, n, err);
    /* the tokens are ours from here: counted until they are freed */
    if (!st && (st = strata_mem_take(s->model, STRATA_MEM_PROMPT, *n * sizeof **toks, err))) free(*toks);
    *owned = st == STRATA_OK;
    return st;
}

static void free_tokens(server *s, int32_t *toks, size_t n, bool owned)
{
    if (!owned) return;
    strata_mem_give(s->model, STRATA_MEM_PROMPT, n * sizeof *toks);
    free(toks);
}

static int submit_status(server *s, sched_submit_result r)
{
    return r == SCHED_TOO_LONG || r == SCHED_INVALID ? 400 : r == SCHED_NO_MEMORY ? serve_refusal_status(s, true) : 503;
}

/* Tokenizes and queues the request; on failure replies with the error
 * and returns NULL (*res: the reply's result). */
static sched_req *submit(server *s, struct MHD_Connection *c, oai_request *r, enum MHD_Result *res)
{
    strata_error err = {0};
    int32_t *toks = NULL;
    size_t n = 0;
    bool owned;
    if (prompt_tokens(s, r, &toks, &n, &owned, &err)) {
        *res = http_reply_error(s, c, err.status == STRATA_E_NOMEM ? serve_refusal_status(s, true) : 400, err.message,
                                r->kind == OAI_CHAT ? "messages" : "prompt");
        return NULL;
    }
    if (!r->seed_given && !s->cfg.seed_given) r->sampling.seed = (uint64_t)time(NULL) ^ (atomic_load(&s->n_ids) << 32);
    uint32_t max = r->max_tokens ? r->max_tokens : r->unlimited ? 0 : s->cfg.max_tokens;
    sched_request_params p = {.prompt = toks, .n_prompt = n, .max_tokens = max, .sampling = r->sampling,
                              .stop = (const char *const *)r->stop, .n_stop = r->n_stop, .ignore_eog = r->ignore_eos || s->cfg.ignore_eos};
    sched_req *q = NULL;
    char msg[STRATA_ERROR_MAX] = "";
    sched_submit_result sr = n ? sched_submit(s->sched, &p, &q, msg, sizeof msg) : SCHED_INVALID;
    free_tokens(s, toks, n, owned);
    if (sr == SCHED_OK) return q;
    if (sr == SCHED_FULL) atomic_fetch_add(&s->n_rejected, 1);
    if (!msg[0]) snprintf(msg, sizeof msg, "the prompt is empty");
    *res = http_reply_error(s, c, submit_status(s, sr), msg, sr != SCHED_TOO_LONG ? NULL : r->kind == OAI_CHAT ? "messages" : "prompt");
    return NULL;
}

/* ---- one object ---- */

/* Generated text gathered until the end. */
typedef struct text_acc {
    strata_model *m; /* whose account holds buf (text) */
    char *buf;       /* [cap], buf[0..len) */
    size_t len, cap;
} text_acc;

static bool acc_add(text_acc *a, const char *s, size_t n, strata_error *err)
{
    char *b = strata_mem_grow(a->m, STRATA_MEM_TEXT, a->buf, &a->cap, a->len + n + 1, err);
    if (!b) return false;
    a->buf = b;
    if (n) memcpy(a->buf + a->len, s, n);
    a->len += n;
    a->buf[a->len] = '\0';
    return true;
}

/* The JSON of an answer of len bytes at most: each byte escaped (\u00XX)
 * or replaced by U+FFFD, the cleaned copy, and the object around it. */
static uint64_t reply_bound(size_t len) { return 10 * (uint64_t)len + 4096; }

static enum MHD_Result finish_reply(server *s, struct MHD_Connection *c, const answer *a, const text_acc *t,
                                    const sched_progress *p, uint64_t *held)
{
    if (p->finish == SCHED_ERROR) return http_reply_error(s, c, 500, p->error, NULL);
    if (p->finish == SCHED_CANCELLED) return http_reply_error(s, c, 503, "the server is shutting down", NULL);
    strata_error err;
    if (serve_hold(s, held, reply_bound(t->len), &err)) /* until the request ends: the server sends it */
        return http_reply_error(s, c, serve_refusal_status(s, *held > 0), err.message, NULL);
    oai_usage u = {p->n_prompt, p->n_gen};
    return http_reply_json(s, c, 200, oai_completion_json(&a->meta, t->buf ? t->buf : "", t->len,
                                                          sched_finish_reason(p->finish), &u));
}

static enum MHD_Result wait_whole(server *s, struct MHD_Connection *c, const answer *a, sched_req *q,
                                  uint64_t *held)
{
    text_acc t = {.m = s->model};
    sched_progress p;
    enum MHD_Result res;
    for (;;) {
        strata_error err;
        sched_req_wait(q, t.len, WAIT_SLICE_MS, &p);
        bool ok = acc_add(&t, p.text, p.len, &err);
        sched_progress_free(&p);
        if (!ok) {
            res = http_reply_error(s, c, serve_refusal_status(s, *held > 0), err.message, NULL);
            break;
        }
        if (p.finish != SCHED_RUNNING) {
            res = finish_reply(s, c, a, &t, &p, held);
            break;
        }
        if (peer_gone(a->fd)) { /* nobody to answer: free the sequence now */
            sched_cancel(q);
            res = MHD_NO;
            break;
        }
    }
    sched_req_release(q);
    strata_mem_free(s->model, STRATA_MEM_TEXT, t.buf, t.cap);
    return res;
}

/* ---- server-sent events ---- */

typedef struct stream {
    answer a;
    server *s;        /* whose requests' memory decides a refusal's status */
    strata_model *m;  /* whose account holds out and the events being built (text) */
    sched_req *q;
    bool include_usage;
    size_t from;      /* bytes of generated text taken from the request */
    char *out;        /* [out_len] events not yet handed to libmicrohttpd, from out_off on (the account's) */
    size_t out_len, out_off;
    char hold[4];     /* [hold_len] an incomplete UTF-8 sequence waiting for its end */
    size_t hold_len;
    bool done;        /* the last event is in out */
    strata_error err; /* why the budget refused a buffer of the stream */
} stream;

/* Appends an event (taken) to the pending output. */
static bool put(stream *st, char *ev)
{
    if (!ev) return false;
    size_t n = strlen(ev), left = st->out_len - st->out_off;
    char *b = strata_mem_alloc(st->m, STRATA_MEM_TEXT, left + n, &st->err); /* [what is pending + the event] */
    if (!b) {
        free(ev);
        return false;
    }
    if (left) memcpy(b, st->out + st->out_off, left);
    memcpy(b + left, ev, n);
    free(ev);
    strata_mem_free(st->m, STRATA_MEM_TEXT, st->out, st->out_len);
    st->out = b;
    st->out_len = left + n;
    st->out_off = 0;
    return true;
}

/* A content event for the new text, with any held UTF-8 bytes in front;
 * an incomplete sequence at its end waits (unless `last`). */
static bool put_text(stream *st, const char *text, size_t len, bool last)
{
    size_t n = st->hold_len + len;
    /* the joined copy and the event's JSON, taken before they are built */
    if (strata_mem_take(st->m, STRATA_MEM_TEXT, n + 1 + reply_bound(n), &st->err)) return false;
    char *joined = malloc(n + 1); /* [held bytes + new text + NUL] */
    bool ok = joined != NULL;
    if (ok) {
        memcpy(joined, st->hold, st->hold_len);
        if (len) memcpy(joined + st->hold_len, text, len);
        size_t keep = last ? n : oai_utf8_complete(joined, n);
        st->hold_len = n - keep;
        memcpy(st->hold, joined + keep, st->hold_len);
        ok = !keep || put(st, oai_chunk_event(&st->a.meta, false, joined, keep, NULL));
    }
    free(joined);
    strata_mem_give(st->m, STRATA_MEM_TEXT, n + 1 + reply_bound(n));
    return ok;
}

static bool put_end(stream *st, const sched_progress *p)
{
    st->done = true;
    if (p->finish == SCHED_ERROR || p->finish == SCHED_CANCELLED) {
        const char *why = p->finish == SCHED_ERROR ? p->error : "the server is shutting down";
        return put(st, oai_error_event(p->finish == SCHED_ERROR ? 500 : 503, why));
    }
    oai_usage u = {p->n_prompt, p->n_gen};
    bool ok = put_text(st, "", 0, true) &&
              put(st, oai_chunk_event(&st->a.meta, false, NULL, 0, sched_finish_reason(p->finish)));
    if (ok && st->include_usage) ok = put(st, oai_usage_event(&st->a.meta, &u));
    return ok && put(st, strdup(OAI_SSE_DONE));
}

/* Waits for the next text or the end; false when the client went away or
 * memory ran out (the stream ends). */
static bool stream_next(stream *st)
{
    while (st->out_off == st->out_len && !st->done) {
        if (peer_gone(st->a.fd)) return false;
        sched_progress p;
        sched_req_wait(st->q, st->from, WAIT_SLICE_MS, &p);
        st->from += p.len;
        st->err.message[0] = '\0';
        bool ok = !p.len || put_text(st, p.text, p.len, false);
        sched_progress_free(&p);
        if (ok && p.finish != SCHED_RUNNING) ok = put_end(st, &p);
        if (!ok && st->err.message[0] && !st->done) { /* the budget: say so in the stream, and end it */
            st->done = true;
            ok = put(st, oai_error_event(serve_refusal_status(st->s, true), st->err.message));
        }
        if (!ok) return false;
    }
    return true;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    stream *st = cls;
    if (!stream_next(st)) return MHD_CONTENT_READER_END_WITH_ERROR;
    if (st->out_off == st->out_len) return MHD_CONTENT_READER_END_OF_STREAM;
    size_t n = st->out_len - st->out_off < max ? st->out_len - st->out_off : max;
    memcpy(buf, st->out + st->out_off, n);
    st->out_off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    stream *st = cls;
    sched_req_release(st->q); /* cancels a request still running: its sequence frees at the next step */
    strata_mem_free(st->m, STRATA_MEM_TEXT, st->out, st->out_len);
    free(st);
}

static enum MHD_Result start_stream(server *s, struct MHD_Connection *c, const answer *a, sched_req *q,
                                    bool include_usage)
{
    stream *st = calloc(1, sizeof *st);
    if (st) st->s = s, st->m = s->model;
    if (!st || !put(st, oai_chunk_event(&a->meta, true, a->meta.kind == OAI_CHAT ? "" : NULL, 0, NULL))) {
        bool budget = st && st->err.message[0];
        enum MHD_Result r = budget ? http_reply_error(s, c, serve_refusal_status(s, true), st->err.message, NULL)
                                   : http_reply(s, c, 500, "application/json", NULL);
        if (st) strata_mem_free(s->model, STRATA_MEM_TEXT, st->out, st->out_len);
        free(st);
        sched_req_release(q);
        return r;
    }
    st->a = *a;
    st->a.meta.id = st->a.id; /* the copy's own */
    st->q = q;
    st->include_usage = include_usage;
    struct MHD_Response *resp = mhd.create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st, stream_free);
    if (!resp) {
        stream_free(st);
        return MHD_NO;
    }
    mhd.add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    mhd.add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    atomic_fetch_add(&s->n_http, 1);
    enum MHD_Result res = mhd.queue_response(c, MHD_HTTP_OK, resp);
    mhd.destroy_response(resp);
    return res;
}

/* Parses the body with its parse's memory taken first (the bound, of
 * which the request's copies stay held until it ends). */
static bool parse(server *s, struct MHD_Connection *c, oai_kind kind, const char *body, size_t len, uint64_t *held,
                  oai_request *r, enum MHD_Result *res)
{
    strata_error err;
    uint64_t bound = oai_parse_bound(body, len);
    if (serve_hold(s, held, bound, &err)) { /* an empty body, or one received before the model was ready, holds nothing */
        *res = http_reply_error(s, c, serve_refusal_status(s, *held > 0), err.message, NULL);
        return false;
    }
    char msg[STRATA_ERROR_MAX];
    const char *param;
    bool ok = oai_request_parse(body, len, kind, &s->cfg.sampling, r, msg, sizeof msg, &param);
    uint64_t copies = ok ? oai_request_bytes(r) : 0;
    serve_give(s, held, copies < bound ? bound - copies : 0);
    if (!ok) *res = http_reply_error(s, c, 400, msg, param);
    return ok;
}

enum MHD_Result serve_completion(server *s, struct MHD_Connection *c, oai_kind kind, const char *body, size_t len,
                                 uint64_t *held)
{
    oai_request r;
    enum MHD_Result res = MHD_NO;
    if (!parse(s, c, kind, body, len, held, &r, &res)) return res;
    sched_req *q = submit(s, c, &r, &res);
    if (q) {
        answer a;
        answer_init(s, c, kind, &a);
        res = r.stream ? start_stream(s, c, &a, q, r.include_usage) : wait_whole(s, c, &a, q, held);
    }
    oai_request_free(&r);
    return res;
}
