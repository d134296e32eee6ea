/* Public API: the model's memory account (util/account.h). */
#include "api/model_internal.h"
#include "strata.h"
#include "util/account.h"

_Static_assert((int)STRATA_MEM_N_CATEGORIES == (int)ACCT_N_CATS && (int)STRATA_MEM_OTHER == (int)ACCT_OTHER &&
                   (int)STRATA_MEM_LOGITS == (int)ACCT_LOGITS && (int)STRATA_MEM_KV == (int)ACCT_KV &&
                   (int)STRATA_MEM_SAMPLER == (int)ACCT_SAMPLER && (int)STRATA_MEM_TEXT == (int)ACCT_TEXT,
               "strata_mem_category mirrors acct_cat");
_Static_assert((int)STRATA_MEM_N_TIERS == (int)ACCT_N_TIERS, "strata_mem_tier mirrors acct_tier");

void strata_model_mem_account(const strata_model *m, strata_mem_tier tier, strata_mem_account *out)
{
    acct_snapshot s;
    acct_snapshot_get(m->acct, (acct_tier)tier, &s);
    for (int c = 0; c < ACCT_N_CATS; c++) {
        out->used[c] = s.used[c];
        out->peak_used[c] = s.cat_peak[c];
    }
    out->total = s.total;
    out->budget = s.budget;
    out->peak = s.peak;
}

const char *strata_mem_category_name(strata_mem_category c) { return acct_cat_name((acct_cat)c); }

void *strata_mem_alloc(strata_model *m, strata_mem_category c, size_t bytes, strata_error *err)
{
    return acct_alloc(m->acct, (acct_cat)c, bytes, err);
}

void strata_mem_free(strata_model *m, strata_mem_category c, void *p, size_t bytes)
{
    acct_release(m->acct, (acct_cat)c, p, bytes);
}

void *strata_mem_realloc(strata_model *m, strata_mem_category c, void *p, size_t old_bytes, size_t bytes,
                         strata_error *err)
{
    return acct_realloc(m->acct, (acct_cat)c, p, old_bytes, bytes, err);
}

void *strata_mem_grow(strata_model *m, strata_mem_category c, void *buf, size_t *cap, size_t need,
                      strata_error *err)
{
    if (need <= *cap) return buf;
    size_t want = *cap ? *cap : 256;
    while (want < need) want = want > SIZE_MAX / 2 ? need : want * 2;
    void *p = strata_mem_realloc(m, c, buf, *cap, want, err);
    if (p) *cap = want;
    return p;
}

strata_status strata_mem_take(strata_model *m, strata_mem_category c, size_t bytes, strata_error *err)
{
    return acct_take(m->acct, ACCT_RAM, (acct_cat)c, bytes, err);
}

void strata_mem_give(strata_model *m, strata_mem_category c, size_t bytes)
{
    acct_give(m->acct, ACCT_RAM, (acct_cat)c, bytes);
}
