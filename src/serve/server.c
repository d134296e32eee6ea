/* The server object: binding, the model and its scheduler's worker, and
 * the orderly stop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve/openai_response.h"
#include "serve/server_internal.h"
#include "util/error.h"

double server_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

strata_status server_start(const server_config *c, server **out, strata_error *err)
{
    server *s = calloc(1, sizeof *s);
    if (!s) return err_set(err, STRATA_E_NOMEM, "out of memory");
    s->cfg = *c;
    if (!s->cfg.host) s->cfg.host = "127.0.0.1";
    if (!s->cfg.body_limit) s->cfg.body_limit = SERVER_BODY_LIMIT;
    size_t n;
    const char *id = s->cfg.model_id ? s->cfg.model_id : "";
    if (!(s->model_id = oai_utf8_clean(id, strlen(id), &n))) {
        free(s);
        return err_set(err, STRATA_E_NOMEM, "out of memory");
    }
    s->cfg.model_id = s->model_id;
    strata_status st = http_start(s, err);
    if (st) {
        free(s->model_id);
        free(s);
        return st;
    }
    *out = s;
    return STRATA_OK;
}

uint16_t server_port(const server *s) { return s->port; }

strata_status serve_hold(server *s, uint64_t *held, uint64_t bytes, strata_error *err)
{
    if (!bytes || !atomic_load(&s->ready)) return STRATA_OK; /* no model, no account yet */
    strata_status st = strata_mem_take(s->model, STRATA_MEM_TEXT, bytes, err);
    if (st) return st;
    if (!*held) atomic_fetch_add(&s->n_holding, 1);
    *held += bytes;
    return STRATA_OK;
}

void serve_give(server *s, uint64_t *held, uint64_t bytes)
{
    if (bytes > *held) bytes = *held;
    if (!bytes) return;
    strata_mem_give(s->model, STRATA_MEM_TEXT, bytes);
    *held -= bytes;
    if (!*held) atomic_fetch_sub(&s->n_holding, 1);
}

int serve_refusal_status(server *s, bool holding)
{
    uint64_t n = atomic_load(&s->n_holding);
    uint64_t others = holding && n ? n - 1 : n; /* a caller unsure it holds anything must not wrap 0 to 2^64-1 */
    return others ? 503 : 413;
}

static void *worker_main(void *arg)
{
    server *s = arg;
    while (sched_wait_work(s->sched)) sched_step(s->sched);
    return NULL;
}

strata_status server_set_model(server *s, strata_model *m, const char *tmpl, strata_error *err)
{
    s->model = m;
    s->tmpl = tmpl;
    strata_status st = sched_new(m, &s->cfg.sched, &s->sched, err);
    if (st) return st;
    if (pthread_create(&s->worker, NULL, worker_main, s) != 0)
        return err_set(err, STRATA_E_NOMEM, "cannot start the scheduler's thread");
    s->worker_started = true;
    s->t_ready = server_now();
    atomic_store(&s->ready, true);
    return STRATA_OK;
}

void server_stop(server *s)
{
    if (!s) return;
    http_quiesce(s);
    if (s->sched) sched_shutdown(s->sched);
    if (s->worker_started) pthread_join(s->worker, NULL);
    /* connections see their requests cancelled, answer and end */
    if (s->daemon) mhd.stop_daemon(s->daemon);
    atomic_store(&s->ready, false);
    sched_free(s->sched);
    strata_model_free(s->model);
    free(s->model_id);
    free(s);
}
