/* Loading the resident groups at open: every group's runs are cut into
 * large aligned reads that go straight into the group's final buffer (huge
 * pages, faulted in by the kernel without a pass of zeros from here: see
 * mem.c), and a window of them stays in flight across the I/O threads, the
 * next group's buffer faulted in and its reads queued while the current
 * one's are read, so the disk never waits between groups.
 * Each read comes from the page cache when all of it is cached there (a warm
 * file loads at memory speed), else with O_DIRECT.
 * With the watchdog, each group's room check and fault keep loaders of
 * other processes out, and what they claimed but have not faulted yet
 * counts as taken (load_claim.c): two runs started together do not plan
 * the same room. */
#include <inttypes.h>
#include <stdio.h>

#include "store/store_internal.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/fmt.h"

#define LOAD_CHUNK (8u << 20) /* bytes per read at least (the streaming chunk when larger) */
/* Reads queued at most: deep enough (512 MiB) that a whole group is queued
 * while the next one's buffer is faulted in (the I/O threads read 4 at a
 * time whatever the depth). */
#define LOAD_WINDOW 64u

/* The reads in flight, oldest first. */
typedef struct loader {
    store *s;
    io_ticket tickets[LOAD_WINDOW]; /* [LOAD_WINDOW] ring: one read each */
    uint64_t lengths[LOAD_WINDOW];  /* [LOAD_WINDOW] its bytes */
    uint32_t head, n;
    uint64_t chunk, done;
    bool progress;                  /* the progress bar (resident groups at open) */
    bool views;                     /* resident groups as views of the page cache (view.c), not copies */
    load_claims claims;             /* with the watchdog: other loaders' claims, this one's */
    uint64_t others;                /* memory other loaders claimed and have not faulted yet */
    double t0, shown;
} loader;

static loader loader_for(store *s, bool progress)
{
    loader L = {.s = s, .progress = progress, .t0 = clock_seconds(), .claims = {.fd = -1}};
    L.chunk = s->cfg.io_chunk > LOAD_CHUNK ? s->cfg.io_chunk : LOAD_CHUNK;
    if (s->cfg.load_chunk) L.chunk = (s->cfg.load_chunk + STORE_ALIGN - 1) / STORE_ALIGN * STORE_ALIGN;
    L.views = s->cfg.map_resident && store_views_possible(s);
    return L;
}

static void show_progress(loader *L)
{
    double now = clock_seconds(), dt = now - L->t0, rate = dt > 0 ? (double)L->done / dt : 0;
    bool last = L->done == L->s->resident_bytes;
    if (!last && now - L->shown < 0.1) return;
    L->shown = now;
    char a[32], b[32];
    fprintf(stderr, "\rloading weights: %s / %s  %.2f GB/s  ETA %.0f s   %s", fmt_bytes(L->done, a, sizeof a),
            fmt_bytes(L->s->resident_bytes, b, sizeof b), rate / 1e9,
            rate > 0 ? (double)(L->s->resident_bytes - L->done) / rate : 0.0, last ? "\n" : "");
}

/* Waits for the oldest read in flight. */
static strata_status retire(loader *L, strata_error *err)
{
    io_ticket *t = &L->tickets[L->head];
    io_wait(L->s->io, t);
    L->done += L->lengths[L->head];
    L->head = (L->head + 1) % LOAD_WINDOW;
    L->n--;
    if (L->progress) show_progress(L);
    return io_ticket_error(L->s->io, t, err);
}

/* Waits for every read in flight (all of them, even after an error: no
 * read may land in memory the caller frees). */
static strata_status drain_all(loader *L, strata_error *err)
{
    strata_status first = STRATA_OK;
    while (L->n) {
        strata_status st = retire(L, first ? NULL : err);
        if (!first) first = st;
    }
    return first;
}

/* Queues one read of a group: [offset, offset+length) of split into dst,
 * or (dst NULL) into the page cache under the file's view. */
static strata_status submit(loader *L, uint8_t *dst, uint32_t split, uint64_t offset, uint64_t length,
                            strata_error *err)
{
    strata_status st = L->n == LOAD_WINDOW ? retire(L, err) : STRATA_OK;
    if (st) return st;
    uint32_t i = (L->head + L->n++) % LOAD_WINDOW;
    io_ticket *t = &L->tickets[i];
    atomic_store(&t->pending, 1);
    atomic_store(&t->error, 0);
    L->lengths[i] = length;
    io_request rq = {dst, split, offset, length, t, true, false, NULL};
    io_submit(L->s->io, &rq, 1);
    return STRATA_OK;
}

/* Queues all the reads of a layout into buf (NULL: the view's pages). */
static strata_status submit_layout(loader *L, const group_layout *l, uint8_t *buf, strata_error *err)
{
    strata_status st = STRATA_OK;
    for (uint32_t r = 0; r < l->n_runs && !st; r++) {
        const store_run *run = &l->runs[r];
        for (uint64_t o = 0; o < run->length && !st; o += L->chunk) {
            uint64_t len = run->length - o < L->chunk ? run->length - o : L->chunk;
            st = submit(L, buf ? buf + run->buf_offset + o : NULL, run->split, run->file_offset + o, len, err);
        }
    }
    return st;
}

/* Memory ran short while loading (another process took it: two runs
 * started together plan the same headroom): groups from g on are left to
 * streaming, the ring made for them. They stay "home": the watchdog
 * brings them back when memory returns. No read is in flight. */
static strata_status leave_to_streaming(store *s, uint32_t from, uint64_t headroom, uint64_t others,
                                        strata_error *err)
{
    char a[32], b[32];
    uint64_t freed = 0, left = 0;
    headroom = headroom > others ? headroom - others : 0;
    /* The slots need room: groups loaded last give theirs back first. */
    uint64_t later = s->cfg.later_bytes;
    while (from > 0 && headroom + freed < store_ring_growth_from(s, from) + later)
        if (s->groups[--from].resident) freed += s->groups[from].layout.bytes;
    uint64_t ring = store_ring_growth_from(s, from) + later, need = ring > freed ? ring - freed : 0;
    /* Two runs started together: the other one's watchdog gives memory
     * back once it runs; wait for the slots rather than be OOM-killed. */
    if (need && !store_watchdog_wait_room(s, need + others, 10.0, &headroom))
        return err_set(err, STRATA_E_NOMEM, "memory pressure: %s for streaming slots and the KV cache did not become free in 10 s "
                       "(headroom %s): another process holds the memory", fmt_bytes(need, a, sizeof a),
                       fmt_bytes(headroom, b, sizeof b));
    uint32_t n = 0;
    for (uint32_t g = from; g < s->n_groups; g++)
        if (s->groups[g].resident) {
            store_group_release(s, g, true);
            s->groups[g].resident = false;
            left += s->groups[g].layout.bytes;
            n++;
        }
    s->resident_bytes -= left;
    store_reshape_ring(s);
    if (s->rs.log)
        fprintf(stderr, "strata: memory pressure while loading: %" PRIu32 " layer%s (%s) left to streaming; "
                "headroom %s\n", n, n == 1 ? "" : "s", fmt_bytes(left, a, sizeof a), fmt_bytes(headroom, b, sizeof b));
    return s->rs.broken ? err_set(err, s->rs.broken, "out of memory for streaming slots") : STRATA_OK;
}

/* Whether group g fits: its bytes, the caller's later memory and, should
 * loading stop after it, the ring. Buffers are faulted in as they are
 * mapped, so the headroom shows every group mapped before, whether its
 * reads are done or not. No room: *stop, every read in flight waited for
 * (leaving to streaming unmaps buffers). */
static strata_status room_for(loader *L, uint32_t g, bool *stop, uint64_t *headroom, strata_error *err)
{
    store *s = L->s;
    uint64_t need = s->groups[g].layout.bytes + s->cfg.later_bytes + store_ring_growth_from(s, g + 1) + L->others;
    *stop = !store_watchdog_room(s, need, headroom);
    return *stop ? drain_all(L, err) : STRATA_OK;
}

/* Group g's memory: a buffer faulted in (*buf), or for a view the
 * account's charge (its pages come as its reads land). */
static bool take_memory(loader *L, uint32_t g, uint8_t **buf)
{
    if (L->views) return store_view_take(L->s, g);
    return (*buf = store_map(L->s, L->s->groups[g].layout.bytes)) != NULL;
}

/* Room for group g, then its memory taken (or, without room, the rest
 * left to streaming): no other loader checks in between. */
static strata_status claim_group(loader *L, uint32_t g, bool *stop, uint8_t **buf, strata_error *err)
{
    store *s = L->s;
    uint64_t headroom, bytes = s->groups[g].layout.bytes;
    load_claims_lock(&L->claims);
    L->others = load_claims_others(&L->claims);
    strata_status st = room_for(L, g, stop, &headroom, err);
    if (!st && *stop) {
        if (s->cfg.progress && L->done) fputc('\n', stderr);
        st = leave_to_streaming(s, g, headroom, L->others, err);
    } else if (!st && !take_memory(L, g, buf))
        st = err_set(err, STRATA_E_NOMEM, "out of memory for %" PRIu64 " resident bytes", bytes);
    load_claims_unlock(&L->claims);
    return st;
}

/* One resident group: room, its buffer, its reads queued. */
static strata_status load_group(loader *L, uint32_t g, bool *stop, strata_error *err)
{
    uint8_t *buf = NULL;
    strata_status st = claim_group(L, g, stop, &buf, err);
    if (st || *stop) return st;
    if (L->views) store_view_set_ptrs(L->s, g);
    else store_set_ptrs(L->s, g, buf);
    return submit_layout(L, &L->s->groups[g].layout, buf, err);
}

strata_status store_load_resident(store *s, strata_error *err)
{
    loader L = loader_for(s, s->cfg.progress);
    /* claims count against the real headroom only (a test's own pressure
     * source takes none, unless it names its own file) */
    const store_watchdog_config *wc = s->cfg.watchdog_cfg;
    if (s->wd && (!wc || !wc->source || wc->claims_path)) load_claims_open(&L.claims, wc ? wc->claims_path : NULL);
    load_claims_lock(&L.claims); /* this load's later memory, claimed for others to see */
    load_claims_set(&L.claims, s->cfg.later_bytes, true);
    load_claims_unlock(&L.claims);
    strata_status st = STRATA_OK;
    bool stop = false;
    for (uint32_t g = 0; g < s->n_groups && !st && !stop; g++)
        if (s->groups[g].resident) st = load_group(&L, g, &stop, err);
    strata_status last = drain_all(&L, st ? NULL : err);
    /* every byte loaded is faulted in (and counts in the headroom others
     * see); what is not yet is the caller's later memory */
    load_claims_lock(&L.claims);
    load_claims_set(&L.claims, st || last ? 0 : s->cfg.later_bytes, false);
    load_claims_unlock(&L.claims);
    load_claims_close(&L.claims);
    s->load_s = clock_seconds() - L.t0;
    s->load_bytes = L.done;
    s->load_views = L.views;
    return st ? st : last;
}

strata_status store_read_tensors(store *s, const store_group *g, void *buf, uint64_t buf_bytes, const void **data,
                                 strata_error *err)
{
    group_layout l;
    strata_status st = layout_build(s->f, g->tensors, g->n, &l, err);
    if (st) return st;
    if ((uintptr_t)buf % STORE_ALIGN || buf_bytes < l.bytes)
        st = err_set(err, STRATA_E_INVALID, "store_read_tensors: the buffer must be 4 KiB-aligned and hold %" PRIu64
                     " bytes", l.bytes);
    loader L = loader_for(s, false);
    if (!st) st = submit_layout(&L, &l, buf, err);
    strata_status last = drain_all(&L, st ? NULL : err);
    if (!st) st = last;
    for (uint32_t i = 0; i < g->n && !st; i++)
        data[i] = l.tensor_offset[i] == UINT64_MAX ? NULL : (uint8_t *)buf + l.tensor_offset[i];
    layout_free(&l);
    return st;
}
