/* Public API: samplers. */
#include "sample/sampler.h"
#include "strata.h"

strata_sampler_params strata_sampler_default_params(void)
{
    return (strata_sampler_params){.temp = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
                                   .repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = 0};
}

strata_sampler *strata_sampler_new(const strata_sampler_params *params, const strata_model *m)
{
    return (strata_sampler *)sampler_new(params, strata_model_n_vocab(m));
}

int32_t strata_sample(strata_sampler *s, const float *logits, const int32_t *history, size_t n_history)
{
    return sampler_sample((sampler *)s, logits, history, n_history);
}

void strata_sampler_free(strata_sampler *s) { sampler_free((sampler *)s); }
