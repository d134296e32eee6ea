/* Public API: samplers, their memory counted in the model's account. */
#include <stdlib.h>

#include "api/model_internal.h"
#include "sample/sampler.h"
#include "strata.h"
#include "util/account.h"
#include "util/error.h"

struct strata_sampler {
    sampler *s;
    mem_account *acct; /* the model's: holds `bytes` of ACCT_SAMPLER for s */
    uint64_t bytes;
};

strata_sampler_params strata_sampler_default_params(void)
{
    return (strata_sampler_params){.temp = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
                                   .repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = 0};
}

strata_sampler *strata_sampler_new(const strata_sampler_params *params, strata_model *m, strata_error *err)
{
    strata_error local;
    if (!err) err = &local;
    uint32_t n_vocab = strata_model_n_vocab(m);
    uint64_t bytes = sampler_bytes(n_vocab);
    if (acct_take(m->acct, ACCT_RAM, ACCT_SAMPLER, bytes, err)) return NULL; /* before it exists */
    strata_sampler *w = calloc(1, sizeof *w);
    if (w && !(w->s = sampler_new(params, n_vocab))) {
        free(w);
        w = NULL;
    }
    if (!w) {
        acct_give(m->acct, ACCT_RAM, ACCT_SAMPLER, bytes);
        err_set(err, STRATA_E_NOMEM, "out of memory for a sampler of %u tokens", n_vocab);
        return NULL;
    }
    w->acct = m->acct;
    w->bytes = bytes;
    return w;
}

int32_t strata_sample(strata_sampler *s, const float *logits, const int32_t *history, size_t n_history)
{
    return sampler_sample(s->s, logits, history, n_history);
}

void strata_sampler_free(strata_sampler *s)
{
    if (!s) return;
    sampler_free(s->s);
    acct_give(s->acct, ACCT_RAM, ACCT_SAMPLER, s->bytes);
    free(s);
}
