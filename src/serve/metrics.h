/* GET /metrics: the Prometheus text exposition format, from the
 * scheduler's and the weight store's counters. Names follow llama-server's
 * (llamacpp:prompt_tokens_total ...) with the prefix "strata:"; metrics
 * llama-server lacks (streaming, disk, memory) use the same prefix.
 * docs/serve.md describes each. */
#ifndef STRATA_SERVE_METRICS_H
#define STRATA_SERVE_METRICS_H

#include <stdint.h>

#include "sched/sched.h"
#include "strata.h"

/* What the server adds to the counters. */
typedef struct metrics_server {
    double uptime_s;           /* since the model was ready */
    uint64_t mem_budget;       /* bytes (0: none) */
    uint64_t http_requests;    /* HTTP requests answered, all endpoints */
    uint64_t http_errors;      /* of them with a status >= 400 */
    uint64_t rejected_full;    /* generation requests refused with 503 (queue full) */
    uint32_t n_slots;          /* sequences in flight at most (-np) */
} metrics_server;

/* The exposition text (malloc'd, free()); NULL when out of memory. */
char *metrics_text(const sched_stats *s, const strata_model_stats *m, const metrics_server *srv);

#endif
