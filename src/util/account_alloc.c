/* Heap buffers through the memory account: taken before they exist. */
#include <stdlib.h>
#include <string.h>

#include "util/account.h"
#include "util/error.h"

void *acct_alloc(mem_account *a, acct_cat c, uint64_t bytes, strata_error *err)
{
    return acct_alloc_aligned(a, c, bytes, 64, err);
}

void *acct_alloc_aligned(mem_account *a, acct_cat c, uint64_t bytes, size_t align, strata_error *err)
{
    if (a && acct_take(a, ACCT_RAM, c, bytes, err)) return NULL; /* refused: nothing allocated or touched */
    void *p = NULL;
    if (bytes > SIZE_MAX / 2 || posix_memalign(&p, align, bytes ? (size_t)bytes : align) != 0) {
        if (a) acct_give(a, ACCT_RAM, c, bytes);
        err_set(err, STRATA_E_NOMEM, "out of memory for %llu bytes of %s", (unsigned long long)bytes,
                acct_cat_name(c));
        return NULL;
    }
    /* Faulted in at once: a budget the machine cannot honour then fails
     * here rather than mid-generation. */
    memset(p, 0, (size_t)bytes);
    return p;
}

void acct_release(mem_account *a, acct_cat c, void *p, uint64_t bytes)
{
    if (!p) return;
    free(p);
    if (a) acct_give(a, ACCT_RAM, c, bytes);
}

void *acct_realloc(mem_account *a, acct_cat c, void *p, uint64_t old, uint64_t bytes, strata_error *err)
{
    if (bytes > old && a && acct_take(a, ACCT_RAM, c, bytes - old, err)) return NULL; /* p untouched */
    void *q = bytes > SIZE_MAX / 2 ? NULL : realloc(p, bytes ? (size_t)bytes : 1);
    if (!q) {
        if (bytes > old && a) acct_give(a, ACCT_RAM, c, bytes - old);
        err_set(err, STRATA_E_NOMEM, "out of memory for %llu bytes of %s", (unsigned long long)bytes,
                acct_cat_name(c));
        return NULL;
    }
    if (bytes > old) memset((char *)q + old, 0, (size_t)(bytes - old)); /* faulted in, like acct_alloc */
    else if (a) acct_give(a, ACCT_RAM, c, old - bytes);
    return q;
}
