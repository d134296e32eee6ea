/* Samplers on hand-made logits, checked against the definitions. */
#include <math.h>
#include <string.h>

#include "sample/sampler.h"
#include "test.h"

static strata_sampler_params plain(float temp, uint64_t seed)
{
    return (strata_sampler_params){.temp = temp, .top_k = 0, .top_p = 1, .min_p = 0, .repeat_penalty = 1,
                                   .repeat_last_n = 64, .seed = seed};
}

TEST(test_sampler_greedy_and_penalty)
{
    float logits[5] = {1, 3, 2, -1, 0};
    strata_sampler_params p = plain(0, 1);
    sampler *s = sampler_new(&p, 5);
    CHECK(sampler_sample(s, logits, NULL, 0) == 1);
    sampler_free(s);
    p.repeat_penalty = 2; /* 3 -> 1.5 < 2: token 2 wins once token 1 was seen */
    s = sampler_new(&p, 5);
    int32_t hist[3] = {1, 1, 4};
    CHECK(sampler_sample(s, logits, hist, 3) == 2);
    sampler_free(s);
}

/* With temperature 1 and no truncation, frequencies follow softmax. */
TEST(test_sampler_distribution_follows_softmax)
{
    float logits[4] = {0, 1, 2, 0.5f};
    double z = 1 + exp(1) + exp(2) + exp(0.5), expect[4] = {1 / z, exp(1) / z, exp(2) / z, exp(0.5) / z};
    strata_sampler_params p = plain(1, 7);
    sampler *s = sampler_new(&p, 4);
    int count[4] = {0};
    const int N = 20000;
    for (int i = 0; i < N; i++) count[sampler_sample(s, logits, NULL, 0)]++;
    for (int i = 0; i < 4; i++)
        CHECK(fabs((double)count[i] / N - expect[i]) < 0.015, " token %d: %.3f vs %.3f", i, (double)count[i] / N,
              expect[i]);
    sampler_free(s);
}

TEST(test_sampler_truncation_rules)
{
    float logits[4] = {0, 1, 2, 0.5f}; /* probabilities 0.08 0.21 0.58 0.13 */
    strata_sampler_params p = plain(1, 3);
    p.top_k = 2;
    sampler *s = sampler_new(&p, 4);
    for (int i = 0; i < 500; i++) {
        int32_t t = sampler_sample(s, logits, NULL, 0);
        CHECK(t == 1 || t == 2, " top-k 2 gave %d", t);
    }
    sampler_free(s);
    p = plain(1, 3);
    p.top_p = 0.55f; /* the top token alone has 0.58 */
    s = sampler_new(&p, 4);
    for (int i = 0; i < 200; i++) CHECK(sampler_sample(s, logits, NULL, 0) == 2);
    sampler_free(s);
    p = plain(1, 3);
    p.min_p = 0.3f; /* keeps p >= 0.17: tokens 2 and 1 */
    s = sampler_new(&p, 4);
    for (int i = 0; i < 500; i++) {
        int32_t t = sampler_sample(s, logits, NULL, 0);
        CHECK(t == 1 || t == 2, " min-p gave %d", t);
    }
    sampler_free(s);
}

TEST(test_sampler_same_seed_same_sequence)
{
    float logits[6] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f};
    strata_sampler_params p = plain(1, 99);
    sampler *a = sampler_new(&p, 6), *b = sampler_new(&p, 6);
    p.seed = 100;
    sampler *c = sampler_new(&p, 6);
    int same = 1, differ = 0;
    for (int i = 0; i < 100; i++) {
        int32_t x = sampler_sample(a, logits, NULL, 0), y = sampler_sample(b, logits, NULL, 0);
        same &= x == y;
        differ += x != sampler_sample(c, logits, NULL, 0);
    }
    CHECK(same && differ > 10);
    sampler_free(a);
    sampler_free(b);
    sampler_free(c);
}
