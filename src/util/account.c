/* The memory account's counters and its budget check (account.h). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/account.h"
#include "util/error.h"
#include "util/fmt.h"

struct mem_account {
    pthread_mutex_t mu;
    uint64_t used[ACCT_N_TIERS][ACCT_N_CATS];
    uint64_t cat_peak[ACCT_N_TIERS][ACCT_N_CATS];
    uint64_t total[ACCT_N_TIERS], budget[ACCT_N_TIERS], peak[ACCT_N_TIERS];
    uint64_t refusals;
    acct_reclaim_fn reclaim;
    void *reclaim_ctx;
};

static const char *const cat_names[ACCT_N_CATS] = {
    [ACCT_PROCESS] = "process",     [ACCT_WEIGHTS] = "weights",       [ACCT_SLOTS] = "stream slots",
    [ACCT_EXPERTS] = "expert cache", [ACCT_KV] = "KV cache",          [ACCT_KV_RESERVE] = "KV reserve",
    [ACCT_SCRATCH] = "scratch",     [ACCT_PROMPT] = "prompt",         [ACCT_LOGITS] = "logits",
    [ACCT_SAMPLER] = "sampler",     [ACCT_TEXT] = "text",             [ACCT_OTHER] = "other",
};

const char *acct_cat_name(acct_cat c) { return c < ACCT_N_CATS ? cat_names[c] : "?"; }
const char *acct_tier_name(acct_tier t) { return t == ACCT_VRAM ? "VRAM" : "RAM"; }

mem_account *acct_new(uint64_t ram_budget)
{
    mem_account *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    pthread_mutex_init(&a->mu, NULL);
    a->budget[ACCT_RAM] = ram_budget;
    return a;
}

void acct_free(mem_account *a)
{
    if (!a) return;
    pthread_mutex_destroy(&a->mu);
    free(a);
}

void acct_set_budget(mem_account *a, acct_tier t, uint64_t bytes)
{
    pthread_mutex_lock(&a->mu);
    a->budget[t] = bytes;
    pthread_mutex_unlock(&a->mu);
}

uint64_t acct_budget(const mem_account *a, acct_tier t) { return a->budget[t]; }

/* "weights 30.0 MiB, KV cache 10.0 MiB, ..." of the categories holding
 * memory; lock held. */
static void holders(const mem_account *a, acct_tier t, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (int c = 0; c < ACCT_N_CATS && len < cap; c++) {
        if (!a->used[t][c]) continue;
        char b[32];
        int n = snprintf(out + len, cap - len, "%s%s %s", len ? ", " : "", cat_names[c],
                         fmt_bytes(a->used[t][c], b, sizeof b));
        if (n < 0) break;
        len += (size_t)n;
    }
}

void acct_set_reclaim(mem_account *a, acct_reclaim_fn fn, void *ctx)
{
    pthread_mutex_lock(&a->mu);
    a->reclaim = fn;
    a->reclaim_ctx = ctx;
    pthread_mutex_unlock(&a->mu);
}

static bool fits(const mem_account *a, acct_tier t, uint64_t bytes)
{
    uint64_t b = a->budget[t], tot = a->total[t];
    return !b || (tot <= b && bytes <= b - tot);
}

/* The store's own categories: it maps them under its lock, and reclaiming
 * takes that lock. */
static bool may_reclaim(acct_cat c) { return c != ACCT_WEIGHTS && c != ACCT_SLOTS && c != ACCT_EXPERTS; }

strata_status acct_take(mem_account *a, acct_tier t, acct_cat c, uint64_t bytes, strata_error *err)
{
    pthread_mutex_lock(&a->mu);
    if (!fits(a, t, bytes) && a->reclaim && may_reclaim(c) && t == ACCT_RAM) {
        acct_reclaim_fn fn = a->reclaim;
        void *ctx = a->reclaim_ctx;
        uint64_t short_by = a->total[t] + bytes - a->budget[t];
        pthread_mutex_unlock(&a->mu);
        fn(ctx, short_by);
        pthread_mutex_lock(&a->mu);
    }
    uint64_t b = a->budget[t], tot = a->total[t];
    if (!fits(a, t, bytes)) {
        char need[32], bud[32], held[32], who[256];
        holders(a, t, who, sizeof who);
        a->refusals++;
        pthread_mutex_unlock(&a->mu);
        return err_set(err, STRATA_E_NOMEM, "memory budget: %s of %s would exceed the %s budget of %s (%s held%s%s%s)",
                       fmt_bytes(bytes, need, sizeof need), cat_names[c], acct_tier_name(t),
                       fmt_bytes(b, bud, sizeof bud), fmt_bytes(tot, held, sizeof held), who[0] ? ": " : "", who,
                       t == ACCT_RAM ? "; raise --mem, or lower -c / -np / the prompt" : "");
    }
    a->used[t][c] += bytes;
    a->total[t] += bytes;
    if (a->total[t] > a->peak[t]) a->peak[t] = a->total[t];
    if (a->used[t][c] > a->cat_peak[t][c]) a->cat_peak[t][c] = a->used[t][c];
    pthread_mutex_unlock(&a->mu);
    return STRATA_OK;
}

void acct_give(mem_account *a, acct_tier t, acct_cat c, uint64_t bytes)
{
    pthread_mutex_lock(&a->mu);
    if (bytes > a->used[t][c]) bytes = a->used[t][c];
    a->used[t][c] -= bytes;
    a->total[t] -= bytes;
    pthread_mutex_unlock(&a->mu);
}

bool acct_move(mem_account *a, acct_tier t, acct_cat from, acct_cat to, uint64_t bytes)
{
    pthread_mutex_lock(&a->mu);
    bool ok = a->used[t][from] >= bytes;
    if (ok) {
        a->used[t][from] -= bytes;
        a->used[t][to] += bytes;
        if (a->used[t][to] > a->cat_peak[t][to]) a->cat_peak[t][to] = a->used[t][to];
    }
    pthread_mutex_unlock(&a->mu);
    return ok;
}

/* Reads under the lock: a counter is 64 bits, but a snapshot should be of
 * one moment. */
uint64_t acct_used(const mem_account *a, acct_tier t)
{
    acct_snapshot s;
    acct_snapshot_get(a, t, &s);
    return s.total;
}

uint64_t acct_cat_used(const mem_account *a, acct_tier t, acct_cat c)
{
    acct_snapshot s;
    acct_snapshot_get(a, t, &s);
    return s.used[c];
}

uint64_t acct_peak(const mem_account *a, acct_tier t)
{
    acct_snapshot s;
    acct_snapshot_get(a, t, &s);
    return s.peak;
}

uint64_t acct_room(const mem_account *a, acct_tier t)
{
    acct_snapshot s;
    acct_snapshot_get(a, t, &s);
    if (!s.budget) return UINT64_MAX;
    return s.budget > s.total ? s.budget - s.total : 0;
}

uint64_t acct_refusals(const mem_account *a)
{
    pthread_mutex_lock((pthread_mutex_t *)&a->mu);
    uint64_t n = a->refusals;
    pthread_mutex_unlock((pthread_mutex_t *)&a->mu);
    return n;
}

void acct_snapshot_get(const mem_account *a, acct_tier t, acct_snapshot *out)
{
    pthread_mutex_t *mu = (pthread_mutex_t *)&a->mu; /* the counters are const to readers, not the lock */
    pthread_mutex_lock(mu);
    memcpy(out->used, a->used[t], sizeof out->used);
    memcpy(out->cat_peak, a->cat_peak[t], sizeof out->cat_peak);
    out->total = a->total[t];
    out->budget = a->budget[t];
    out->peak = a->peak[t];
    pthread_mutex_unlock(mu);
}
