/* Prometheus text for GET /metrics. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "serve/metrics.h"

#define METRICS_CAP 16384 /* the whole text: about 35 metrics of 3 lines, under 200 bytes each */

typedef struct text_buf {
    char *buf; /* [METRICS_CAP] */
    size_t len;
} text_buf;

/* One metric: its HELP and TYPE lines and its value. */
static void metric(text_buf *t, const char *type, const char *name, const char *help, double value)
{
    if (t->len >= METRICS_CAP) return;
    int n = snprintf(t->buf + t->len, METRICS_CAP - t->len, "# HELP strata:%s %s\n# TYPE strata:%s %s\nstrata:%s %.17g\n",
                     name, help, name, type, name, value);
    if (n > 0) t->len += (size_t)n < METRICS_CAP - t->len ? (size_t)n : METRICS_CAP - t->len;
}

static double ratio(double a, double b) { return b > 0 ? a / b : 0; }

static void token_metrics(text_buf *t, const sched_stats *s)
{
    metric(t, "counter", "prompt_tokens_total", "Prompt tokens evaluated.", (double)s->prompt_tokens);
    metric(t, "counter", "prompt_seconds_total", "Seconds of forward passes spent on prompt tokens (a pass shared by token counts).",
           s->prompt_seconds);
    metric(t, "counter", "tokens_predicted_total", "Tokens generated.", (double)s->gen_tokens);
    metric(t, "counter", "tokens_predicted_seconds_total", "Seconds of forward passes spent on generated tokens (a pass shared by token counts).",
           s->gen_seconds);
    metric(t, "counter", "tokens_decoded_total", "Generated tokens evaluated to continue their sequence.",
           (double)s->decode_tokens);
    metric(t, "counter", "n_decode_total", "Forward passes (scheduler steps).", (double)s->steps);
    metric(t, "gauge", "prompt_tokens_seconds", "Prompt throughput: prompt tokens per second of their share of passes.",
           ratio((double)s->prompt_tokens, s->prompt_seconds));
    metric(t, "gauge", "predicted_tokens_seconds", "Generation throughput: tokens decoded per second, all sequences.",
           ratio((double)s->decode_tokens, s->gen_seconds));
    metric(t, "counter", "requests_total", "Generation requests finished (any way).", (double)s->requests_done);
    metric(t, "gauge", "requests_processing", "Requests holding a sequence now.", s->running);
    metric(t, "gauge", "requests_deferred", "Requests waiting in the queue for a sequence.", s->queued);
}

static void memory_metrics(text_buf *t, const sched_stats *s, const strata_model_stats *m, const metrics_server *srv)
{
    metric(t, "gauge", "kv_cache_usage_ratio", "Fraction of the KV cache reserve held by sequences.",
           ratio((double)s->kv_used, (double)s->kv_total));
    metric(t, "gauge", "kv_cache_bytes", "Bytes of the KV cache reserve held by sequences.", (double)s->kv_used);
    metric(t, "gauge", "kv_cache_reserve_bytes", "Bytes of the KV cache reserve (n_parallel x context).",
           (double)s->kv_total);
    metric(t, "gauge", "memory_accounted_bytes", "Memory strata accounts: weights, streaming slots, KV, buffers.",
           (double)m->accounted_bytes);
    metric(t, "gauge", "memory_budget_bytes", "The memory budget (--mem; 0: none).", (double)srv->mem_budget);
    metric(t, "gauge", "resident_weight_bytes", "Weight bytes kept in memory.", (double)m->resident_bytes);
}

static void stream_metrics(text_buf *t, const sched_stats *s, const strata_model_stats *m, const metrics_server *srv)
{
    metric(t, "gauge", "streamed_layers", "Groups of tensors streamed from disk per forward pass.", m->streamed_layers);
    metric(t, "gauge", "pass_streamed_bytes", "Weight bytes streamed from disk per forward pass.",
           (double)m->pass_bytes);
    metric(t, "counter", "streamed_bytes_total", "Weight bytes read from disk.", (double)m->bytes_read);
    metric(t, "gauge", "streamed_bytes_per_token", "Weight bytes read from disk per token evaluated (prompt and generated).",
           ratio((double)m->bytes_read, (double)(s->prompt_tokens + s->decode_tokens)));
    metric(t, "counter", "io_busy_seconds_total", "Seconds reader threads spent reading (summed over readers).",
           m->io_busy_s);
    metric(t, "counter", "io_wait_seconds_total", "Seconds compute waited for reads.", m->io_wait_s);
    metric(t, "gauge", "disk_busy_ratio", "Reader busy seconds per second of uptime (summed over readers).",
           ratio(m->io_busy_s, srv->uptime_s));
    metric(t, "gauge", "io_wait_ratio", "Fraction of forward-pass time spent waiting for reads.",
           ratio(m->io_wait_s, s->prompt_seconds + s->gen_seconds));
    metric(t, "gauge", "gpu_layers", "Layers running on the GPU.", m->gpu_layers);
    if (m->experts) {
        metric(t, "counter", "expert_hits_total", "Expert uses found in the expert cache.", (double)m->expert_hits);
        metric(t, "counter", "expert_misses_total", "Expert uses read from disk.", (double)m->expert_misses);
    }
}

static void server_metrics(text_buf *t, const metrics_server *srv)
{
    metric(t, "gauge", "n_slots", "Sequences in flight at most (-np).", srv->n_slots);
    metric(t, "counter", "http_requests_total", "HTTP requests answered.", (double)srv->http_requests);
    metric(t, "counter", "http_errors_total", "HTTP requests answered with a status of 400 or more.",
           (double)srv->http_errors);
    metric(t, "counter", "requests_rejected_total", "Generation requests refused because the queue was full.",
           (double)srv->rejected_full);
    metric(t, "gauge", "uptime_seconds", "Seconds since the model was ready.", srv->uptime_s);
}

char *metrics_text(const sched_stats *s, const strata_model_stats *m, const metrics_server *srv)
{
    text_buf t = {malloc(METRICS_CAP), 0};
    if (!t.buf) return NULL;
    token_metrics(&t, s);
    memory_metrics(&t, s, m, srv);
    stream_metrics(&t, s, m, srv);
    server_metrics(&t, srv);
    return t.buf;
}
