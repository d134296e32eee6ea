/* Expert cache estimates (plan_experts.h). Under uniform routing every
 * unit has the chance k / n and the formulas reduce to the closed forms
 * n (1 - (1 - k/n)^j) units touched by j tokens, an LRU hit rate of
 * 1 - (1 - k/n)^tokens, and an LFU hit rate of stable slots / units. With
 * measured routing, units are independent draws at their own chances (the
 * independent reference model: it ignores that neighbouring tokens reuse
 * experts, so LRU's estimate is low, not high). */
#include "plan/plan_experts.h"

#include <math.h>
#include <stdlib.h>

#include "store/store.h"

typedef struct plan_unit_chance unit_chance;

static uint32_t used_of(const plan_expert_set *e) { return e->n_used < e->n_expert ? e->n_used : e->n_expert; }

/* The set's units grouped by chance: the measured groups, or `one` group
 * of every unit at k / n. Returns the groups' count. */
static uint32_t chances_of(const plan_expert_set *e, const unit_chance **out, unit_chance *one)
{
    if (e->n_chances && e->chances) {
        *out = e->chances;
        return e->n_chances;
    }
    *one = (unit_chance){(double)used_of(e) / e->n_expert, e->n_expert};
    *out = one;
    return 1;
}

bool plan_experts_on_gpu(const plan *p, uint32_t g) { return p->tier[g] >= 0 && g >= p->n_cpu_moe; }

/* Layer g's expert set when the CPU computes it, else NULL. */
static const plan_expert_set *cpu_set(const plan_model *m, const plan *p, uint32_t g)
{
    if (g >= m->n_expert_sets || g >= m->n_groups || !m->experts || !m->experts[g].n_expert) return NULL;
    return plan_experts_on_gpu(p, g) ? NULL : &m->experts[g];
}

/* The distinct units of the CPU's sets that j tokens are routed to: the
 * sum over units of 1 - (1 - chance)^j. */
static double units_in_tokens(const plan_model *m, const plan *p, double j)
{
    double d = 0;
    for (uint32_t g = 0; g < m->n_expert_sets; g++) {
        const plan_expert_set *e = cpu_set(m, p, g);
        unit_chance one;
        const unit_chance *c;
        for (uint32_t i = 0, n = e ? chances_of(e, &c, &one) : 0; i < n; i++)
            d += c[i].units * (1 - pow(1 - c[i].chance, j));
    }
    return d;
}

/* How many tokens an LRU cache of expert_slots units keeps a unit: the
 * largest j whose tokens are routed to at most that many distinct units
 * (a unit is evicted once that many others were used after it; a layer
 * asks for its experts once per token). */
static uint32_t lru_tokens(const plan_model *m, const plan *p)
{
    double c = p->expert_slots;
    if (units_in_tokens(m, p, 1) > c) return 0;
    uint32_t lo = 1, hi = 2; /* lo fits, hi is tried */
    while (hi < (1u << 24) && units_in_tokens(m, p, hi) <= c) lo = hi, hi *= 2;
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (units_in_tokens(m, p, mid) <= c) lo = mid;
        else hi = mid;
    }
    return lo;
}

/* The tokens of routing an LFU cache's counts hold: a count halves after
 * STORE_EXPERT_LFU_AGING pins per unit, all units together, so it spans
 * that many tokens' pins (period), from one to two periods' worth: 1.5 on
 * average. */
static double lfu_history(const plan_model *m, const plan *p)
{
    double units = 0, pins = 0; /* of the CPU's sets; pins: per token */
    for (uint32_t g = 0; g < m->n_expert_sets; g++) {
        const plan_expert_set *e = cpu_set(m, p, g);
        if (e) units += e->n_expert, pins += used_of(e);
    }
    double h = pins > 0 ? 1.5 * STORE_EXPERT_LFU_AGING * units / pins : 0;
    return h < 600 ? h : 600; /* far beyond any cache's aging; exp(-h) stays a double */
}

/* Poisson probabilities of a count c of mean lam, walked up from c = 0
 * (pmf: P(X = c), above: P(X > c)). */
typedef struct poisson_walk {
    double lam, pmf, above;
} poisson_walk;

static poisson_walk poisson_at_0(double lam) { return (poisson_walk){lam, exp(-lam), 1 - exp(-lam)}; }

static void poisson_next(poisson_walk *w, uint32_t c)
{
    w->pmf *= w->lam / (c + 1); /* P(X = c + 1) */
    w->above -= w->pmf;
    if (w->above < 0) w->above = 0;
}

/* LFU keeps in its stable slots (all but the transient ones,
 * expert_cache.c) the units its counts rank highest, and it counts them
 * over a finite history: a unit of chance p is counted Poisson(history x
 * p) times, so a popular unit is sometimes ranked below a less popular
 * one. The threshold: the count c and share f at which the expected units
 * kept, sum of P(X > c) + f P(X = c), fill the stable slots. (Knowing the
 * chances exactly would keep the most likely units; on bench-moe's model
 * that overstated the hit rate by 5 to 7 points.) */
static void lfu_keeps(const plan_model *m, const plan *p, expert_estimate *x)
{
    x->history = lfu_history(m, p);
    x->keep_count = 0;
    x->keep_share = 1;
    uint32_t n = 0;
    for (uint32_t g = 0; g < m->n_expert_sets; g++) {
        const plan_expert_set *e = cpu_set(m, p, g);
        n += e ? (e->n_chances && e->chances ? e->n_chances : 1) : 0;
    }
    unit_chance *all = malloc((n ? n : 1) * sizeof *all); /* [n] every CPU set's groups */
    poisson_walk *w = malloc((n ? n : 1) * sizeof *w);   /* [n] their counts' walk */
    if (!all || !w) {
        free(all);
        free(w);
        return;
    }
    n = 0;
    for (uint32_t g = 0; g < m->n_expert_sets; g++) {
        const plan_expert_set *e = cpu_set(m, p, g);
        unit_chance one;
        const unit_chance *c;
        for (uint32_t i = 0, k = e ? chances_of(e, &c, &one) : 0; i < k; i++) all[n++] = c[i];
    }
    for (uint32_t i = 0; i < n; i++) w[i] = poisson_at_0(x->history * all[i].chance);
    double stable = (double)(p->expert_slots - store_expert_lfu_transient(p->expert_slots));
    for (uint32_t c = 0;; c++) {
        double above = 0, at = 0; /* units expected counted more than c times, exactly c times */
        for (uint32_t i = 0; i < n; i++) above += all[i].units * w[i].above, at += all[i].units * w[i].pmf;
        if (above <= stable || c >= 100000) {
            x->keep_count = c;
            x->keep_share = at > 0 ? fmin(1, (stable - above) / at) : 1;
            break;
        }
        for (uint32_t i = 0; i < n; i++) poisson_next(&w[i], c);
    }
    free(all);
    free(w);
}

/* The chance that LFU holds a unit of this chance in its stable slots. */
static double lfu_kept(const expert_estimate *x, double chance)
{
    poisson_walk w = poisson_at_0(x->history * chance);
    for (uint32_t c = 0; c < x->keep_count; c++) poisson_next(&w, c);
    return w.above + x->keep_share * w.pmf;
}

expert_estimate plan_experts_estimate(const plan_model *m, const plan *p)
{
    expert_estimate x = {.keep_share = 1};
    if (!p->expert_units || p->expert_slots >= p->expert_units) return x;
    x.tokens = lru_tokens(m, p);
    lfu_keeps(m, p, &x);
    return x;
}

/* Under LRU, a unit of this chance is still cached when its layer chose it
 * within the last x->tokens tokens. */
static double lru_kept(const expert_estimate *x, double chance) { return 1 - pow(1 - chance, x->tokens); }

/* Whether the set's hits are LRU's: the policy, or LFU whose transient
 * slots (an LRU) hold more of the set's requests than its stable ones. */
static bool hits_by_recency(const plan_expert_set *e, const plan_request *req, const expert_estimate *x)
{
    if (req->moe_lru) return true;
    unit_chance one;
    const unit_chance *c;
    double lru = 0, kept = 0;
    for (uint32_t i = 0, n = chances_of(e, &c, &one); i < n; i++) {
        double r = c[i].chance * c[i].units; /* this group's requests per token */
        lru += r * lru_kept(x, c[i].chance);
        kept += r * lfu_kept(x, c[i].chance);
    }
    return kept < lru;
}

/* The chance a unit of this chance is cached when asked for: 1 when the
 * cache holds every unit, the stated rate, else the policy's. */
static double unit_hit(const plan *p, const plan_request *req, const expert_estimate *x, bool recency, double chance)
{
    if (p->expert_slots >= p->expert_units) return 1;
    if (req->moe_hit_rate_set) return req->moe_hit_rate < 0 ? 0 : req->moe_hit_rate > 1 ? 1 : req->moe_hit_rate;
    return recency ? lru_kept(x, chance) : lfu_kept(x, chance);
}

/* A set's hit rate with the policy's per-unit rule decided (recency). */
static double hit_rate_by(const plan_expert_set *e, const plan *p, const plan_request *req, const expert_estimate *x,
                          bool recency)
{
    unit_chance one;
    const unit_chance *c;
    double asked = 0, hits = 0;
    for (uint32_t i = 0, n = chances_of(e, &c, &one); i < n; i++) {
        double r = c[i].chance * c[i].units; /* this group's requests per token */
        asked += r;
        hits += r * unit_hit(p, req, x, recency, c[i].chance);
    }
    return asked > 0 ? hits / asked : 1;
}

double plan_experts_hit_rate(const plan_expert_set *e, const plan *p, const plan_request *req,
                             const expert_estimate *x)
{
    return hit_rate_by(e, p, req, x, hits_by_recency(e, req, x));
}

double plan_experts_batch_misses(const plan_expert_set *e, const plan *p, const plan_request *req,
                                 const expert_estimate *x, double B)
{
    bool recency = hits_by_recency(e, req, x);
    unit_chance one;
    const unit_chance *c;
    double misses = 0;
    for (uint32_t i = 0, n = chances_of(e, &c, &one); i < n; i++)
        misses += c[i].units * (1 - pow(1 - c[i].chance, B)) * (1 - unit_hit(p, req, x, recency, c[i].chance));
    double token = used_of(e) * (1 - hit_rate_by(e, p, req, x, recency));
    return misses > token ? misses : token;
}

double plan_experts_in_batch(const plan_expert_set *e, double B)
{
    unit_chance one;
    const unit_chance *c;
    double d = 0, k = used_of(e);
    for (uint32_t i = 0, n = chances_of(e, &c, &one); i < n; i++) d += c[i].units * (1 - pow(1 - c[i].chance, B));
    return d > k ? d : k;
}
