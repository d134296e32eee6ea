/* Public API: contexts (one sequence's KV cache and position each) over a
 * shared model, and batched decoding across them. */
#include <stdlib.h>

#include "api/model_internal.h"
#include "engine/engine.h"
#include "strata.h"
#include "util/error.h"

struct strata_context {
    strata_model *m;
    engine_seq *seq;
};

strata_status strata_context_new(strata_model *m, uint32_t n_ctx, strata_context **out, strata_error *err)
{
    err_clear(err);
    *out = NULL;
    strata_context *c = calloc(1, sizeof *c);
    if (!c) return err_set(err, STRATA_E_NOMEM, "out of memory");
    strata_status st = engine_seq_new(m->eng, n_ctx, &c->seq, err);
    if (st) {
        free(c);
        return st;
    }
    c->m = m;
    *out = c;
    return STRATA_OK;
}

void strata_context_free(strata_context *c)
{
    if (!c) return;
    engine_seq_free(c->seq);
    free(c);
}

uint32_t strata_context_n_ctx(const strata_context *c) { return engine_seq_n_ctx(c->seq); }
uint32_t strata_context_n_past(const strata_context *c) { return engine_seq_n_past(c->seq); }
void strata_context_reset(strata_context *c) { engine_seq_reset(c->seq); }

strata_status strata_context_eval(strata_context *c, const int32_t *tokens, size_t n, float *logits,
                                  bool all_logits, strata_error *err)
{
    if (n > UINT32_MAX) return err_set(err, STRATA_E_INVALID, "too many tokens");
    return engine_seq_eval(c->seq, tokens, (uint32_t)n, logits, all_logits, err);
}

uint64_t strata_context_bytes(const strata_model *m, uint32_t n_ctx) { return engine_seq_bytes(m->eng, n_ctx); }
uint64_t strata_model_kv_free(const strata_model *m) { return engine_kv_free(m->eng); }
uint32_t strata_model_n_batch(const strata_model *m) { return engine_n_batch(m->eng); }

/* The public entries as the engine's (its own array of n_batch entries). */
strata_status strata_decode(strata_model *m, const strata_batch_entry *entries, size_t n, float *logits,
                            strata_error *err)
{
    uint32_t cap = engine_n_batch(m->eng);
    if (n == 0 || n > cap)
        return err_set(err, STRATA_E_INVALID, "a batch holds 1 to %u tokens, not %zu", cap, n);
    engine_entry *b = malloc(n * sizeof *b); /* [n] */
    if (!b) return err_set(err, STRATA_E_NOMEM, "out of memory");
    strata_status st = STRATA_OK;
    for (size_t i = 0; i < n && !st; i++) {
        const strata_batch_entry *x = &entries[i];
        if (!x->ctx || x->ctx->m != m)
            st = err_set(err, STRATA_E_INVALID, "batch entry %zu: no context of this model", i);
        else
            b[i] = (engine_entry){x->ctx->seq, x->token, x->pos, x->logits};
    }
    if (!st) st = engine_decode(m->eng, b, (uint32_t)n, logits, err);
    free(b);
    return st;
}
