#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "sample/sampler.h"

typedef struct cand {
    int32_t id;
    float logit;
    float p;
} cand;

struct sampler {
    strata_sampler_params p;
    uint32_t n_vocab;
    float *v; /* [n_vocab] the logits, penalized */
    cand *c;  /* [n_vocab] candidates: the top k, or all of them */
    uint64_t rng;
};

sampler *sampler_new(const strata_sampler_params *p, uint32_t n_vocab)
{
    sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *p;
    s->n_vocab = n_vocab;
    s->rng = p->seed ^ 0x853c49e6748fea9bull;
    s->c = malloc((n_vocab ? n_vocab : 1) * sizeof *s->c);
    s->v = malloc((n_vocab ? n_vocab : 1) * sizeof *s->v);
    if (!s->c || !s->v) {
        sampler_free(s);
        return NULL;
    }
    return s;
}

uint64_t sampler_bytes(uint32_t n_vocab)
{
    return sizeof(sampler) + (uint64_t)(n_vocab ? n_vocab : 1) * (sizeof(cand) + sizeof(float));
}

void sampler_free(sampler *s)
{
    if (!s) return;
    free(s->c);
    free(s->v);
    free(s);
}

/* splitmix64 step, then a uniform double in [0, 1). */
static double next_unit(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

static bool penalizes(const sampler *s) { return s->p.repeat_penalty != 1.0f && s->p.repeat_penalty > 0.0f; }

static void penalize(sampler *s, const int32_t *history, size_t n_history)
{
    float pen = s->p.repeat_penalty;
    if (!penalizes(s)) return;
    size_t last = s->p.repeat_last_n < 0 ? n_history : (size_t)s->p.repeat_last_n;
    size_t from = n_history > last ? n_history - last : 0;
    /* each distinct token is penalized once, however often it repeats */
    for (size_t i = from; i < n_history; i++) {
        int32_t id = history[i];
        if (id < 0 || (uint32_t)id >= s->n_vocab) continue;
        bool seen = false;
        for (size_t j = from; j < i && !seen; j++) seen = history[j] == id;
        if (seen) continue;
        float *l = &s->v[id];
        *l = *l > 0 ? *l / pen : *l * pen;
    }
}

static int by_logit_desc(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id - y->id; /* ties: lower id first, deterministic */
}

static bool better(const cand *a, const cand *b) { return by_logit_desc(a, b) < 0; }

/* Restores the heap c[0..k) (the worst candidate at the root) below i. */
static void sift_down(cand *c, size_t k, size_t i)
{
    for (;;) {
        size_t worst = i, l = 2 * i + 1, r = l + 1;
        if (l < k && better(&c[worst], &c[l])) worst = l;
        if (r < k && better(&c[worst], &c[r])) worst = r;
        if (worst == i) return;
        cand t = c[i];
        c[i] = c[worst];
        c[worst] = t;
        i = worst;
    }
}

/* The k best of the n values v as candidates c[0..k), sorted best first:
 * the same candidates in the same order as sorting all n (the order is
 * total: ties go to the lower id), in O(n log k) instead of O(n log n):
 * sorting a 150k vocabulary every token costs milliseconds the disk and
 * the GPU would otherwise idle through. Only the k kept become candidates:
 * a later token beats the worst kept one only with a higher value (its id
 * is higher), one float comparison for most of the vocabulary. */
static void best_first(cand *c, const float *v, size_t n, size_t k)
{
    for (size_t i = 0; i < k; i++) c[i] = (cand){(int32_t)i, v[i], 0};
    for (size_t i = k / 2; i-- > 0;) sift_down(c, k, i);
    for (size_t i = k; i < n; i++)
        if (v[i] > c[0].logit) {
            c[0] = (cand){(int32_t)i, v[i], 0};
            sift_down(c, k, 0);
        }
    qsort(c, k, sizeof *c, by_logit_desc);
}

/* Probabilities of the first n candidates at temperature t (sorted input). */
static void softmax(cand *c, size_t n, float t)
{
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += (c[i].p = expf((c[i].logit - c[0].logit) / t));
    for (size_t i = 0; i < n; i++) c[i].p = (float)(c[i].p / sum);
}

/* How many of the n candidates (sorted best first, already cut to top-k by
 * sampler_sample) top-p and min-p keep. */
static size_t keep_candidates(const sampler *s, cand *c, size_t n)
{
    softmax(c, n, 1.0f);
    if (s->p.top_p > 0 && s->p.top_p < 1) {
        double cum = 0;
        for (size_t i = 0; i < n; i++)
            if ((cum += c[i].p) >= s->p.top_p) {
                n = i + 1;
                break;
            }
    }
    if (s->p.min_p > 0) {
        size_t keep = 1;
        while (keep < n && c[keep].p >= s->p.min_p * c[0].p) keep++;
        n = keep;
    }
    return n;
}

/* The lowest index of the largest of v[0..n) (a NaN is never the largest,
 * unless v[0]). Lane-wise maxima first (`x > m ? x : m` is what a vector
 * max instruction computes), then the first value equal to their largest:
 * a greedy step over a 150k vocabulary runs on one thread every token. */
#define MAX_LANES 8

static uint32_t first_max(const float *v, uint32_t n)
{
    if (!n) return 0;
    float m[MAX_LANES];
    for (int l = 0; l < MAX_LANES; l++) m[l] = v[0];
    uint32_t i = 0;
    for (; i + MAX_LANES <= n; i += MAX_LANES)
        for (int l = 0; l < MAX_LANES; l++) m[l] = v[i + l] > m[l] ? v[i + l] : m[l];
    for (; i < n; i++) m[0] = v[i] > m[0] ? v[i] : m[0];
    float best = m[0];
    for (int l = 1; l < MAX_LANES; l++) best = m[l] > best ? m[l] : best;
    for (i = 0; i < n; i++)
        if (v[i] == best) return i;
    return 0; /* best is v[0], a NaN */
}

int32_t sampler_sample(sampler *s, const float *logits, const int32_t *history, size_t n_history)
{
    if (s->p.temp <= 0 && !(penalizes(s) && n_history)) return (int32_t)first_max(logits, s->n_vocab);
    memcpy(s->v, logits, s->n_vocab * sizeof *s->v);
    penalize(s, history, n_history);
    if (s->p.temp <= 0) return (int32_t)first_max(s->v, s->n_vocab);
    size_t n = s->n_vocab;
    if (s->p.top_k > 0 && (size_t)s->p.top_k < n) {
        best_first(s->c, s->v, n, (size_t)s->p.top_k);
        n = (size_t)s->p.top_k;
    } else {
        for (size_t i = 0; i < n; i++) s->c[i] = (cand){(int32_t)i, s->v[i], 0};
        qsort(s->c, n, sizeof *s->c, by_logit_desc);
    }
    n = keep_candidates(s, s->c, n);
    softmax(s->c, n, s->p.temp);
    double r = next_unit(&s->rng), cum = 0;
    for (size_t i = 0; i < n; i++)
        if ((cum += s->c[i].p) > r) return s->c[i].id;
    return s->c[n - 1].id;
}
