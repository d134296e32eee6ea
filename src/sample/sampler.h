/* Token sampling from logits: repetition penalty, top-k, top-p, min-p and
 * temperature, in llama.cpp's order (penalties, top-k, top-p, min-p,
 * temperature, draw); temperature <= 0 is greedy. Same seed, same logits,
 * same history => same token. */
#ifndef STRATA_SAMPLE_SAMPLER_H
#define STRATA_SAMPLE_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "strata.h"

typedef struct sampler sampler;

/* params are the public strata_sampler_params (strata.h). */
sampler *sampler_new(const strata_sampler_params *p, uint32_t n_vocab);
/* The bytes sampler_new allocates for a vocabulary of n_vocab (its
 * candidate list is one entry per token). */
uint64_t sampler_bytes(uint32_t n_vocab);
void sampler_free(sampler *s);
int32_t sampler_sample(sampler *s, const float *logits, const int32_t *history, size_t n_history);

#endif
