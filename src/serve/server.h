/* `strata serve`'s server: an OpenAI-compatible HTTP API (libmicrohttpd,
 * one thread per connection) over one model and its scheduler, whose
 * steps run on a worker thread (`while (sched_wait_work(s)) sched_step(s);`).
 * The server binds first and answers /health with 503 while the model
 * loads; server_set_model makes it ready. docs/serve.md describes the API. */
#ifndef STRATA_SERVE_SERVER_H
#define STRATA_SERVE_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sched/sched.h"
#include "strata.h"

#define SERVER_BODY_LIMIT (1u << 20) /* request bodies above 1 MiB are refused (413) */

typedef struct server_config {
    const char *host;         /* address to bind (numeric or a name); NULL: 127.0.0.1 */
    uint16_t port;            /* 0: any free port (server_port says which) */
    const char *api_key;      /* NULL: no authentication */
    const char *model_id;     /* GET /v1/models and the "model" of answers */
    strata_sampler_params sampling; /* defaults of requests that do not say */
    bool seed_given;          /* sampling.seed for every request without one (else random) */
    uint32_t max_tokens;      /* default per request; 0: until the context is full */
    bool ignore_eos;          /* every request generates past end-of-generation tokens */
    sched_params sched;
    size_t body_limit;        /* 0: SERVER_BODY_LIMIT */
} server_config;

typedef struct server server;

/* Binds host:port and starts answering (generation endpoints: 503 until
 * the model is set). The config's strings must outlive the server. */
strata_status server_start(const server_config *c, server **out, strata_error *err);
uint16_t server_port(const server *s);
/* The model is ready: the server takes it (freed by server_stop), starts
 * the scheduler and its worker; tmpl is the chat template's name. */
strata_status server_set_model(server *s, strata_model *m, const char *tmpl, strata_error *err);
/* Stops accepting connections, cancels what runs (sched_shutdown), waits
 * for the connections to end and frees everything, the model included. */
void server_stop(server *s);

#endif
