/* Resident groups as views of the model file's pages in the page cache
 * (--mmap) instead of copies in the process's own memory: nothing is
 * copied and nothing is zeroed, and a file already in the page cache is
 * resident at once. Loading faults each group's ranges of the file's
 * mapping in (io.c's populate requests, reading what is not cached with
 * readahead). The account charges a view as it charges a copy: the budget
 * holds the pages either way. Giving a view back unmaps its pages and
 * drops them from the cache.
 * Why not the default: a copy belongs to the process, so the budget, the
 * cgroup's limit and the watchdog see it as held. A view's pages are page
 * cache: charged to whichever cgroup first read them, counted as
 * reclaimable, and taken by the kernel when memory runs short (to be read
 * back from the file on use) before the watchdog sees any pressure. */
#include <stdio.h>

#include "store/store_internal.h"

/* The run of layout l whose part of the buffer holds buf_offset. */
static const store_run *run_of(const group_layout *l, uint64_t buf_offset)
{
    for (uint32_t r = 0; r < l->n_runs; r++)
        if (buf_offset >= l->runs[r].buf_offset && buf_offset < l->runs[r].buf_offset + l->runs[r].length)
            return &l->runs[r];
    return NULL;
}

bool store_views_possible(const store *s)
{
    for (uint32_t i = 0; i < s->f->n_splits; i++)
        if (!io_view(s->io, i)) return false;
    return true;
}

bool store_view_take(store *s, uint32_t g)
{
    strata_error err;
    if (acct_take(s->acct, ACCT_RAM, ACCT_WEIGHTS, mem_len(s->groups[g].layout.bytes), &err)) {
        snprintf(s->refused, sizeof s->refused, "%s", err.message);
        return false;
    }
    return true;
}

void store_view_set_ptrs(store *s, uint32_t g)
{
    group_state *gs = &s->groups[g];
    gs->buf = NULL;
    gs->view = true;
    for (uint32_t i = 0; i < gs->layout.n_tensors; i++) {
        uint64_t at = gs->layout.tensor_offset[i];
        const store_run *r = at == UINT64_MAX ? NULL : run_of(&gs->layout, at);
        gs->ptrs[i] = r ? io_view(s->io, r->split) + r->file_offset + (at - r->buf_offset) : NULL;
    }
}

void store_group_release(store *s, uint32_t g, bool drop_cache)
{
    group_state *gs = &s->groups[g];
    if (!gs->view) {
        store_unmap(s, gs->buf, gs->layout.bytes); /* NULL: not loaded yet */
    } else {
        for (uint32_t r = 0; drop_cache && r < gs->layout.n_runs; r++)
            io_drop_view(s->io, gs->layout.runs[r].split, gs->layout.runs[r].file_offset, gs->layout.runs[r].length);
        acct_give(s->acct, ACCT_RAM, ACCT_WEIGHTS, mem_len(gs->layout.bytes));
    }
    gs->buf = NULL;
    gs->view = false;
}
