/* --routing-skew: expert routing with a known distribution in a random-
 * weight MoE model.
 *
 * With random weights the router sees hidden states with a large component
 * shared by all tokens, so which experts are popular is an accident of the
 * seed (in a 12-layer model with 128 experts, 8 used, 13 experts took over
 * 80 % of the picks). This file makes routing a property of the file. The
 * first CD = 32 + E dimensions of the residual stream (E = n_expert) become
 * routing carriers that the token embedding writes:
 *
 *   dims [0, 32)        1.0 in every token: the bias carrier
 *   dims [32, 32 + E)   Gumbel(0, 1) noise, drawn per token
 *
 * Rows [0, 32) of attn_output and of every expert's ffn_down are zero, so no
 * layer writes the bias carrier; rows [32, 32 + E) are scaled by
 * PERTURB / sqrt(n_layers), so the layers add a small context-dependent
 * perturbation to the noise (std about PERTURB = 0.4 by the last layer,
 * against the Gumbel's 1.28; it also breaks the ties quantizing the
 * embedding makes). Router row e of layer L reads only the carriers:
 *
 *   GAIN * (b_L(e) / 32 on dims [0, 32), 1 on noise dim 32 + P_L(e)),
 *   b_L(e) = -ALPHA * ln(rank_L(e))
 *
 * with rank_L and P_L permutations of the experts drawn per layer from the
 * seed. After the RMS norm (a positive scale per token, which top-k ignores)
 * layer L's top-k are the k largest b_L(e) + g(P_L(e)) (+ the perturbation):
 * Gumbel-max sampling without replacement. A token's first expert has rank
 * r with probability r^-ALPHA / sum_s s^-ALPHA, each further one likewise
 * among those left (Plackett-Luce); ALPHA 0 is uniform. Each layer has its
 * own hot experts and the same skew. Routing is mostly decided by the token
 * (as measured in trained MoE models), a little by the context; a stream of
 * varied tokens (sampling, not greedy decoding of a random model, which
 * loops) shows the distribution.
 *
 * Every value depends only on (seed, layer, expert) or (seed, token), so
 * rows are generated one at a time, in any order, on any thread. */
#include <math.h>
#include <string.h>

#include "synth.h"

#define BIAS_DIMS 32  /* one quantization block of 32: a constant quantizes exactly */
#define GAIN 0.5f     /* router logits of order 1 after the norm (sets only the mixing weights) */
#define PERTURB 0.4   /* std of what all layers together add to a noise dimension */

uint64_t synth_routing_dims(uint64_t n_expert) { return BIAS_DIMS + n_expert; }

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* uniform on (0, 1), never 0 or 1 */
static double uniform(uint64_t *x) { return ((double)(splitmix64(x) >> 11) + 0.5) * 0x1p-53; }

/* Where expert e stands in layer L's permutation `which` (0: popularity
 * rank - 1, 1: noise dimension): a Fisher-Yates shuffle of n from the seed,
 * recomputed per row (n steps; routers have n rows). */
static uint64_t perm_at(uint64_t seed, int layer, int which, uint64_t n, uint64_t e)
{
    uint32_t p[1024]; /* synth_resolve caps n_expert at 1024 */
    uint64_t x = seed ^ 0x5bd1e9955bd1e995ull ^ ((uint64_t)layer * 0x9e3779b97f4a7c15ull) ^
                 ((uint64_t)which << 60);
    for (uint64_t i = 0; i < n; i++) p[i] = (uint32_t)i;
    for (uint64_t i = n - 1; i > 0; i--) {
        uint64_t j = splitmix64(&x) % (i + 1);
        uint32_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    return p[e];
}

static void embedding_row(const synth_options *o, uint64_t token, float *v)
{
    uint64_t E = o->n_expert, x = o->seed ^ 0xa0761d6478bd642full ^ (token * 0xe7037ed1a0b428dbull);
    for (uint64_t i = 0; i < BIAS_DIMS; i++) v[i] = 1.0f;
    for (uint64_t i = 0; i < E; i++) v[BIAS_DIMS + i] = (float)-log(-log(uniform(&x)));
}

static void router_row(const synth_options *o, int layer, uint64_t e, float *v, uint64_t n)
{
    uint64_t E = o->n_expert, rank = perm_at(o->seed, layer, 0, E, e) + 1, dim = perm_at(o->seed, layer, 1, E, e);
    float bias = (float)(-o->routing_skew * log((double)rank));
    memset(v, 0, n * sizeof(float));
    for (uint64_t i = 0; i < BIAS_DIMS; i++) v[i] = GAIN * bias / BIAS_DIMS;
    v[BIAS_DIMS + dim] = GAIN;
}

/* Output projections into the residual stream (rows are output dimensions). */
static bool writes_residual(const char *role)
{
    return !strcmp(role, "attn_output") || !strncmp(role, "ffn_down", 8);
}

void synth_routing_row(const synth_options *o, const char *role, int layer, uint64_t ne1, uint64_t row, float *v,
                       uint64_t n)
{
    if (!o->routing) return;
    if (!strcmp(role, "token_embd")) embedding_row(o, row, v);
    else if (!strcmp(role, "ffn_gate_inp")) router_row(o, layer, row, v, n);
    else if (layer >= 0 && writes_residual(role) && row % ne1 < synth_routing_dims(o->n_expert)) {
        /* a layer's output has a variance of about 1 per dimension */
        float scale = row % ne1 < BIAS_DIMS ? 0.0f : (float)(PERTURB / sqrt((double)o->shape.n_layers));
        for (uint64_t i = 0; i < n; i++) v[i] *= scale;
    }
}
