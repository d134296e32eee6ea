/* The endpoints that only report: /health, /v1/models, /metrics. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve/metrics.h"
#include "serve/openai_response.h"
#include "serve/server_internal.h"

/* A malloc'd copy of a constant text. */
static char *copy(const char *text)
{
    size_t n = strlen(text) + 1;
    char *c = malloc(n);
    if (c) memcpy(c, text, n);
    return c;
}

enum MHD_Result serve_health(server *s, struct MHD_Connection *c)
{
    bool ready = atomic_load(&s->ready);
    return http_reply_json(s, c, ready ? 200 : 503,
                           copy(ready ? "{\"status\":\"ok\"}" : "{\"status\":\"loading model\"}"));
}

enum MHD_Result serve_models(server *s, struct MHD_Connection *c)
{
    return http_reply_json(s, c, 200, oai_models_json(s->cfg.model_id, (int64_t)time(NULL)));
}

enum MHD_Result serve_metrics(server *s, struct MHD_Connection *c)
{
    sched_stats st;
    sched_get_stats(s->sched, &st); /* the model's counters too: a step may be running */
    strata_mem_account a; /* the account has its own lock: read now, not as of the last step */
    strata_model_mem_account(s->model, STRATA_MEM_RAM, &a);
    st.model.accounted_bytes = a.total;
    metrics_server srv = {.uptime_s = server_now() - s->t_ready,
                          .mem_budget = strata_model_budget(s->model),
                          .http_requests = atomic_load(&s->n_http),
                          .http_errors = atomic_load(&s->n_errors),
                          .rejected_full = atomic_load(&s->n_rejected),
                          .n_slots = s->cfg.sched.n_slots ? s->cfg.sched.n_slots : 1};
    return http_reply(s, c, 200, "text/plain; version=0.0.4; charset=utf-8", metrics_text(&st, &st.model, &srv));
}
