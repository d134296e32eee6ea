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

/* The estimate's tables (plan_experts.h): set g's groups at first[g]. */
static bool alloc_tables(const plan_model *m, const plan *p, expert_estimate *x)
{
    x->n_sets = m->n_expert_sets;
    x->first = malloc(((size_t)m->n_expert_sets + 1) * sizeof *x->first);
    x->lfu_loses = calloc(m->n_expert_sets ? m->n_expert_sets : 1, sizeof *x->lfu_loses);
    if (!x->first || !x->lfu_loses) return false;
    uint32_t n = 0;
    for (uint32_t g = 0; g < m->n_expert_sets; g++) {
        const plan_expert_set *e = cpu_set(m, p, g);
        x->first[g] = n;
        n += e ? (e->n_chances && e->chances ? e->n_chances : 1) : 0;
    }
    x->first[m->n_expert_sets] = n;
    x->lru_kept = malloc((n ? n : 1) * sizeof *x->lru_kept);
    x->lfu_kept = malloc((n ? n : 1) * sizeof *x->lfu_kept);
    return x->lru_kept && x->lfu_kept;
}

/* The CPU's sets' groups in the tables' order into all[first[n_sets]]. */
static void gather_groups(const plan_model *m, const plan *p, unit_chance *all)
{
    uint32_t n = 0;
    for (uint32_t g = 0; g < m->n_expert_sets; g++) {
        const plan_expert_set *e = cpu_set(m, p, g);
        unit_chance one;
        const unit_chance *c;
        for (uint32_t i = 0, k = e ? chances_of(e, &c, &one) : 0; i < k; i++) all[n++] = c[i];
    }
}

/* LFU keeps in its stable slots (all but the transient ones,
 * expert_cache.c) the units its counts rank highest, and it counts them
 * over a finite history: a unit of chance p is counted Poisson(history x
 * p) times, so a popular unit is sometimes ranked below a less popular
 * one. The threshold: the count c and share f at which the expected units
 * kept, sum of P(X > c) + f P(X = c), fill the stable slots. (Knowing the
 * chances exactly would keep the most likely units; on bench-moe's model
 * that overstated the hit rate by 5 to 7 points.) The walk that finds it
 * leaves each group's count at c: its chance of being kept, x->lfu_kept. */
static void lfu_keeps(const plan *p, const unit_chance *all, uint32_t n, expert_estimate *x)
{
    poisson_walk *w = malloc((n ? n : 1) * sizeof *w); /* [n] the groups' counts' walk */
    if (!w) {
        free(x->lfu_kept);
        x->lfu_kept = NULL;
        return;
    }
    for (uint32_t i = 0; i < n; i++) w[i] = poisson_at_0(x->history * all[i].chance);
    double stable = (double)(p->expert_slots - store_expert_lfu_transient(p->expert_slots)), share = 1;
    for (uint32_t c = 0;; c++) { /* the walk stops with each group's count at the threshold */
        double above = 0, at = 0; /* units expected counted more than c times, exactly c times */
        for (uint32_t i = 0; i < n; i++) above += all[i].units * w[i].above, at += all[i].units * w[i].pmf;
        if (above <= stable || c >= 100000) {
            share = at > 0 ? fmin(1, (stable - above) / at) : 1;
            break;
        }
        for (uint32_t i = 0; i < n; i++) poisson_next(&w[i], c);
    }
    for (uint32_t i = 0; i < n; i++) x->lfu_kept[i] = w[i].above + share * w[i].pmf;
    free(w);
}

/* Under LRU, a unit of this chance is still cached when its layer chose it
 * within the last x->tokens tokens. */
static double lru_kept(const expert_estimate *x, double chance) { return 1 - pow(1 - chance, x->tokens); }

/* Whether each set's hits are LRU's under LFU: its transient slots (an
 * LRU) hold more of the set's requests than its stable ones. */
static void lfu_losses(const unit_chance *all, expert_estimate *x)
{
    for (uint32_t g = 0; g < x->n_sets; g++) {
        double lru = 0, kept = 0;
        for (uint32_t i = x->first[g]; i < x->first[g + 1]; i++) {
            double r = all[i].chance * all[i].units; /* this group's requests per token */
            lru += r * x->lru_kept[i];
            kept += r * x->lfu_kept[i];
        }
        x->lfu_loses[g] = kept < lru;
    }
}

void plan_experts_estimate_free(expert_estimate *x)
{
    free(x->first);
    free(x->lru_kept);
    free(x->lfu_kept);
    free(x->lfu_loses);
    x->first = NULL, x->lru_kept = x->lfu_kept = NULL, x->lfu_loses = NULL;
}

/* The tables of an estimate whose LRU tokens and LFU history are set;
 * without memory, none (plan_experts.h). */
static void kept_tables(const plan_model *m, const plan *p, expert_estimate *x)
{
    unit_chance *all = NULL; /* [first[n_sets]] every CPU set's groups */
    bool ok = alloc_tables(m, p, x) && (all = malloc((x->first[x->n_sets] ? x->first[x->n_sets] : 1) * sizeof *all));
    if (ok) {
        gather_groups(m, p, all);
        for (uint32_t i = 0; i < x->first[x->n_sets]; i++) x->lru_kept[i] = lru_kept(x, all[i].chance);
        lfu_keeps(p, all, x->first[x->n_sets], x);
        ok = x->lfu_kept != NULL;
    }
    if (ok) lfu_losses(all, x);
    else plan_experts_estimate_free(x);
    free(all);
}

expert_estimate plan_experts_estimate(const plan_model *m, const plan *p)
{
    expert_estimate x = {0};
    if (!p->expert_units || p->expert_slots >= p->expert_units) return x;
    x.tokens = lru_tokens(m, p);
    x.history = lfu_history(m, p);
    kept_tables(m, p, &x);
    return x;
}

/* Whether set g's hits are LRU's: the policy, or LFU's losing to its
 * transient slots. */
static bool hits_by_recency(uint32_t g, const plan_request *req, const expert_estimate *x)
{
    return req->moe_lru || (x->lfu_loses && g < x->n_sets && x->lfu_loses[g]);
}

/* Set g's kept chances under the rule (recency), n groups from its
 * first; NULL without tables (memory ran out) or for a set the CPU does
 * not compute (it has none). */
static const double *kept_of(const expert_estimate *x, uint32_t g, uint32_t n, bool recency)
{
    if (!x->lru_kept || g >= x->n_sets || x->first[g + 1] - x->first[g] != n) return NULL;
    return (recency ? x->lru_kept : x->lfu_kept) + x->first[g];
}

/* The chance a unit of group i is cached when asked for: 1 when the cache
 * holds every unit, the stated rate, else the policy's (kept: the set's
 * kept_of; none: 0, every request a miss). */
static double unit_hit(const plan *p, const plan_request *req, const double *kept, uint32_t i)
{
    if (p->expert_slots >= p->expert_units) return 1;
    if (req->moe_hit_rate_set) return req->moe_hit_rate < 0 ? 0 : req->moe_hit_rate > 1 ? 1 : req->moe_hit_rate;
    return kept ? kept[i] : 0;
}

/* Set g's hit rate with the policy's per-unit rule decided (recency). */
static double hit_rate_by(const plan_model *m, uint32_t g, const plan *p, const plan_request *req,
                          const expert_estimate *x, bool recency)
{
    unit_chance one;
    const unit_chance *c;
    double asked = 0, hits = 0;
    uint32_t n = chances_of(&m->experts[g], &c, &one);
    const double *kept = kept_of(x, g, n, recency);
    for (uint32_t i = 0; i < n; i++) {
        double r = c[i].chance * c[i].units; /* this group's requests per token */
        asked += r;
        hits += r * unit_hit(p, req, kept, i);
    }
    return asked > 0 ? hits / asked : 1;
}

double plan_experts_hit_rate(const plan_model *m, uint32_t g, const plan *p, const plan_request *req,
                             const expert_estimate *x)
{
    return hit_rate_by(m, g, p, req, x, hits_by_recency(g, req, x));
}

double plan_experts_batch_misses(const plan_model *m, uint32_t g, const plan *p, const plan_request *req,
                                 const expert_estimate *x, double B)
{
    const plan_expert_set *e = &m->experts[g];
    bool recency = hits_by_recency(g, req, x);
    unit_chance one;
    const unit_chance *c;
    double misses = 0;
    uint32_t n = chances_of(e, &c, &one);
    const double *kept = kept_of(x, g, n, recency);
    for (uint32_t i = 0; i < n; i++)
        misses += c[i].units * (1 - pow(1 - c[i].chance, B)) * (1 - unit_hit(p, req, kept, i));
    double token = used_of(e) * (1 - hit_rate_by(m, g, p, req, x, recency));
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
