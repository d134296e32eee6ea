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
/* Greedy picks the lowest id among equal largest logits, wherever they
 * lie (the vectorized scan's lanes, its tail), with or without a penalty. */
TEST(test_sampler_greedy_first_of_ties)
{
    enum { N = 1003 };
    static float logits[N];
    const int32_t at[][2] = {{7, 900}, {1002, 1002}, {0, 8}, {999, 1001}, {5, 13}};
    for (size_t c = 0; c < sizeof at / sizeof *at; c++) {
        for (int i = 0; i < N; i++) logits[i] = (float)(i % 17) - 20.0f;
        logits[at[c][0]] = logits[at[c][1]] = 3.5f;
        strata_sampler_params p = plain(0, 1);
        sampler *s = sampler_new(&p, N);
        CHECK(sampler_sample(s, logits, NULL, 0) == at[c][0], " case %zu", c);
        sampler_free(s);
        p.repeat_penalty = 2.0f; /* the first one penalized: 1.75 */
        s = sampler_new(&p, N);
        int32_t hist[1] = {at[c][0]};
        int32_t want = at[c][0] == at[c][1] ? -1 : at[c][1];
        if (want >= 0) CHECK(sampler_sample(s, logits, hist, 1) == want, " case %zu penalized", c);
        sampler_free(s);
    }
}

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

/* top-k over a large vocabulary (with ties at the cut) draws exactly what
 * the untruncated sampler draws from the same logits with every token but
 * those k set to -inf: the k kept, their order (ties to the lower id) and
 * their probabilities are the same, so the same seed gives the same tokens. */
TEST(test_sampler_top_k_keeps_the_k_best)
{
    enum { N = 5000, K = 40 };
    static float logits[N], cut[N];
    uint64_t x = 12345;
    for (int i = 0; i < N; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        logits[i] = (float)((x >> 40) % 64) / 8.0f; /* 64 levels: many ties */
    }
    /* the K best by (logit descending, id ascending), found by counting */
    for (int i = 0; i < N; i++) {
        int ahead = 0;
        for (int j = 0; j < N; j++) ahead += logits[j] > logits[i] || (logits[j] == logits[i] && j < i);
        cut[i] = ahead < K ? logits[i] : -INFINITY;
    }
    strata_sampler_params p = plain(0.7f, 9);
    p.top_k = K;
    sampler *a = sampler_new(&p, N);
    p.top_k = 0;
    sampler *b = sampler_new(&p, N);
    for (int i = 0; i < 300; i++) {
        int32_t ta = sampler_sample(a, logits, NULL, 0), tb = sampler_sample(b, cut, NULL, 0);
        CHECK(ta == tb && cut[ta] > -INFINITY, " draw %d: top-k %d, reference %d", i, ta, tb);
    }
    sampler_free(a);
    sampler_free(b);
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

/* Frequencies of N draws from `logits` (4 tokens) against softmax(logits/t). */
static void check_frequencies(const float *logits, float t, const int32_t *hist, size_t n_hist, float penalty,
                              const double *expect)
{
    strata_sampler_params p = plain(t, 11);
    p.repeat_penalty = penalty;
    sampler *s = sampler_new(&p, 4);
    int count[4] = {0};
    const int N = 20000;
    for (int i = 0; i < N; i++) count[sampler_sample(s, logits, hist, n_hist)]++;
    for (int i = 0; i < 4; i++)
        CHECK(fabs((double)count[i] / N - expect[i]) < 0.015, " t %.2f penalty %.1f token %d: %.3f vs %.3f", t,
              penalty, i, (double)count[i] / N, expect[i]);
    sampler_free(s);
}

static void softmax_at(const float *logits, double t, double *out)
{
    double z = 0;
    for (int i = 0; i < 4; i++) z += (out[i] = exp(logits[i] / t));
    for (int i = 0; i < 4; i++) out[i] /= z;
}

/* Temperature divides the logits before the softmax: at 0.5 the top token
 * (p 0.58 at t 1) takes 0.83 of the draws, at 2 only 0.41. */
TEST(test_sampler_temperature_scales_logits)
{
    const float logits[4] = {0, 1, 2, 0.5f};
    const float temps[3] = {0.5f, 2.0f, 0.25f};
    for (int k = 0; k < 3; k++) {
        double expect[4];
        softmax_at(logits, temps[k], expect);
        check_frequencies(logits, temps[k], NULL, 0, 1, expect);
    }
    double cold[4], hot[4];
    softmax_at(logits, 0.5, cold);
    softmax_at(logits, 2.0, hot);
    CHECK(cold[2] > 0.8 && hot[2] < 0.45, " the expectations themselves differ: %.3f %.3f", cold[2], hot[2]);
}

/* Greedy pick with repeat penalty 2 and token 0 in the history. */
static int32_t greedy_penalized(const float *logits, uint32_t n, const int32_t *hist, size_t n_hist, int last_n)
{
    strata_sampler_params p = plain(0, 1);
    p.repeat_penalty = 2;
    p.repeat_last_n = last_n;
    sampler *s = sampler_new(&p, n);
    int32_t t = sampler_sample(s, logits, hist, n_hist);
    sampler_free(s);
    return t;
}

/* llama.cpp / CTRL: a seen token's logit is divided by the penalty when
 * positive and multiplied when negative (both make it less likely). With
 * penalty 2, token 0's logit -1 becomes exactly -2 (between -1.99 and
 * -2.01), and 3 becomes exactly 1.5 (between 1.49 and 1.51). */
TEST(test_sampler_repeat_penalty_exact_values)
{
    const int32_t seen0[1] = {0};
    const float neg_a[4] = {-1, -1.99f, -5, -6}, neg_b[4] = {-1, -2.01f, -5, -6};
    CHECK(greedy_penalized(neg_a, 4, seen0, 1, 64) == 1, " -1 x 2 = -2 < -1.99");
    CHECK(greedy_penalized(neg_b, 4, seen0, 1, 64) == 0, " -1 x 2 = -2 > -2.01");
    const float pos_a[4] = {3, 1.49f, -5, -6}, pos_b[4] = {3, 1.51f, -5, -6};
    CHECK(greedy_penalized(pos_a, 4, seen0, 1, 64) == 0, " 3 / 2 = 1.5 > 1.49");
    CHECK(greedy_penalized(pos_b, 4, seen0, 1, 64) == 1, " 3 / 2 = 1.5 < 1.51");
    /* once per distinct token, however often it repeats: -1 -> -2, not -4 */
    const int32_t seen000[3] = {0, 0, 0};
    CHECK(greedy_penalized(neg_b, 4, seen000, 3, 64) == 0, " penalized once");
    /* only the last repeat_last_n ids count: token 0 is outside the window */
    const int32_t old0[3] = {0, 2, 3};
    CHECK(greedy_penalized(neg_a, 4, old0, 3, 2) == 0, " token 0 outside the last 2");
    CHECK(greedy_penalized(neg_a, 4, old0, 3, 3) == 1, " token 0 inside the last 3");
}

/* A penalized negative-logit token becomes less likely: logits {-1, -1}
 * with token 0 seen and penalty 2 give p(0) = e^-2 / (e^-2 + e^-1) = 0.269
 * (dividing instead would raise it to 0.622). */
TEST(test_sampler_repeat_penalty_negative_less_likely)
{
    const float logits[4] = {-1, -1, -30, -30};
    const int32_t seen0[1] = {0};
    double expect[4] = {exp(-2.0), exp(-1.0), 0, 0}, z = expect[0] + expect[1];
    expect[0] /= z;
    expect[1] /= z;
    check_frequencies(logits, 1, seen0, 1, 2, expect);
    CHECK(expect[0] < 0.27 && expect[0] > 0.26);
}
