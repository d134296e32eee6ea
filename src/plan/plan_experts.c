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

static int by_chance_desc(const void *a, const void *b)
{
    double x = ((const unit_chance *)a)->chance, y = ((const unit_chance *)b)->chance;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* LFU keeps the units routed to most often in all but its transient
 * slots (expert_cache.c): walking the CPU's units from the most likely
 * down, the chance at which the stable slots run out, and the share of
 * the units at that chance they still hold. */
static void lfu_keeps(const plan_model *m, const plan *p, expert_estimate *x)
{
    x->keep_chance = 0;
    x->keep_share = 1;
    uint32_t n = 0;
    for (uint32_t g = 0; g < m->n_expert_sets; g++) {
        const plan_expert_set *e = cpu_set(m, p, g);
        n += e ? (e->n_chances && e->chances ? e->n_chances : 1) : 0;
    }
    unit_chance *all = malloc((n ? n : 1) * sizeof *all); /* [n] every CPU set's groups */
    if (!all) return;
    n = 0;
    for (uint32_t g = 0; g < m->n_expert_sets; g++) {
        const plan_expert_set *e = cpu_set(m, p, g);
        unit_chance one;
        const unit_chance *c;
        for (uint32_t i = 0, k = e ? chances_of(e, &c, &one) : 0; i < k; i++) all[n++] = c[i];
    }
    qsort(all, n, sizeof *all, by_chance_desc);
    double stable = (double)(p->expert_slots - store_expert_lfu_transient(p->expert_slots)), held = 0;
    for (uint32_t i = 0; i < n;) {
        double tied = 0;
        uint32_t j = i;
        for (; j < n && all[j].chance == all[i].chance; j++) tied += all[j].units;
        if (held + tied > stable) {
            x->keep_chance = all[i].chance;
            x->keep_share = tied > 0 ? (stable - held) / tied : 1;
            break;
        }
        held += tied;
        i = j;
    }
    free(all);
}

expert_estimate plan_experts_estimate(const plan_model *m, const plan *p)
{
    expert_estimate x = {.keep_share = 1};
    if (!p->expert_units || p->expert_slots >= p->expert_units) return x;
    x.tokens = lru_tokens(m, p);
    lfu_keeps(m, p, &x);
    return x;
}

double plan_experts_hit_rate(const plan_expert_set *e, const plan *p, const plan_request *req,
                             const expert_estimate *x)
{
    if (p->expert_slots >= p->expert_units) return 1;
    if (req->moe_hit_rate_set) return req->moe_hit_rate < 0 ? 0 : req->moe_hit_rate > 1 ? 1 : req->moe_hit_rate;
    unit_chance one;
    const unit_chance *c;
    uint32_t n = chances_of(e, &c, &one);
    double asked = 0, lru = 0, kept = 0;
    for (uint32_t i = 0; i < n; i++) {
        double r = c[i].chance * c[i].units; /* this group's requests per token */
        asked += r;
        lru += r * (1 - pow(1 - c[i].chance, x->tokens));
        kept += r * (c[i].chance > x->keep_chance ? 1 : c[i].chance == x->keep_chance ? x->keep_share : 0);
    }
    if (asked <= 0) return 1;
    lru /= asked;
    kept /= asked;
    return req->moe_lru || kept < lru ? lru : kept;
}

double plan_experts_in_batch(const plan_expert_set *e, double B)
{
    unit_chance one;
    const unit_chance *c;
    double d = 0, k = used_of(e);
    for (uint32_t i = 0, n = chances_of(e, &c, &one); i < n; i++) d += c[i].units * (1 - pow(1 - c[i].chance, B));
    return d > k ? d : k;
}
