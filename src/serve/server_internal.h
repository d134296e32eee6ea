/* What the server's files share: the server object and the reply helpers. */
#ifndef STRATA_SERVE_SERVER_INTERNAL_H
#define STRATA_SERVE_SERVER_INTERNAL_H

#include "serve/mhd.h"
#include <pthread.h>
#include <stdatomic.h>

#include "serve/openai_request.h"
#include "serve/server.h"

struct server {
    server_config cfg;
    char *model_id;             /* cfg.model_id as UTF-8 (a file name may not be: JSON needs it) */
    struct MHD_Daemon *daemon;
    uint16_t port;
    atomic_bool ready;          /* model and scheduler set */
    strata_model *model;
    sched *sched;
    const char *tmpl;           /* chat template name */
    pthread_t worker;
    bool worker_started;
    double t_ready;             /* clock seconds when ready */
    atomic_uint_fast64_t n_http, n_errors, n_rejected, n_ids;
    atomic_uint_fast64_t n_holding; /* requests holding memory in the account (held > 0) */
};

double server_now(void);

/* A request's buffers (body, parse, text, the response) are counted in the
 * model's memory account (STRATA_MEM_TEXT) before they exist, and given
 * back when the request ends; *held is what one request holds. A request
 * the budget cannot hold is refused with serve_refusal_status and the
 * account's message. Nothing is counted before the model is ready. */
strata_status serve_hold(server *s, uint64_t *held, uint64_t bytes, strata_error *err);
void serve_give(server *s, uint64_t *held, uint64_t bytes); /* bytes <= *held */
/* The HTTP status of a refusal by the budget, for a request that holds
 * memory itself (`holding`) or not: 503 (retry later; the reply says
 * Retry-After) while other requests hold memory they will give back, 413
 * when nothing else does (the request alone is more than the budget). */
int serve_refusal_status(server *s, bool holding);

/* The HTTP daemon (http.c): binds cfg.host:cfg.port, sets s->daemon and
 * s->port; http_quiesce stops accepting connections. */
strata_status http_start(server *s, strata_error *err);
void http_quiesce(server *s);

/* Replies (each counts the request; status >= 400 counts an error). The
 * body is taken (free()d); NULL (out of memory) sends a 500. */
enum MHD_Result http_reply(server *s, struct MHD_Connection *c, int status, const char *type, char *body);
enum MHD_Result http_reply_json(server *s, struct MHD_Connection *c, int status, char *json);
/* An OpenAI-style error object. */
enum MHD_Result http_reply_error(server *s, struct MHD_Connection *c, int status, const char *message,
                                 const char *param);

/* GET /health, /v1/models, /metrics. */
enum MHD_Result serve_health(server *s, struct MHD_Connection *c);
enum MHD_Result serve_models(server *s, struct MHD_Connection *c);
enum MHD_Result serve_metrics(server *s, struct MHD_Connection *c);
/* POST /v1/chat/completions and /v1/completions with body[0..len). */
enum MHD_Result serve_completion(server *s, struct MHD_Connection *c, oai_kind kind, const char *body, size_t len,
                                 uint64_t *held);

#endif
