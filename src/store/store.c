/* The tiered weight store: resident groups, and a ring of slots through
 * which the streamed groups pass in execution order. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "kernels/cpu/dequant.h"
#include "store/expert_cache.h"
#include "store/layout.h"
#include "store/store.h"
#include "store/store_internal.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/fmt.h"

#define DEFAULT_IO_THREADS 4 /* four 4 MiB reads in flight saturate NVMe and virtio disks alike */
#define DEFAULT_CHUNK (4u << 20)

/* Queues the reads of group g into buf, in chunks of cfg.io_chunk. */
void store_submit_group(store *s, uint32_t g, uint8_t *buf, io_ticket *t)
{
    const group_layout *l = &s->groups[g].layout;
    uint32_t n = 0;
    for (uint32_t r = 0; r < l->n_runs; r++) n += (uint32_t)((l->runs[r].length + s->cfg.io_chunk - 1) / s->cfg.io_chunk);
    atomic_store(&t->pending, (int)n);
    atomic_store(&t->error, 0);
    io_request rq[64];
    uint32_t k = 0;
    for (uint32_t r = 0; r < l->n_runs; r++) {
        const store_run *run = &l->runs[r];
        for (uint64_t o = 0; o < run->length; o += s->cfg.io_chunk) {
            uint64_t len = run->length - o < s->cfg.io_chunk ? run->length - o : s->cfg.io_chunk;
            rq[k++] = (io_request){buf + run->buf_offset + o, run->split, run->file_offset + o, len, t, false, false,
                                       NULL};
            if (k == 64) io_submit(s->io, rq, k), k = 0;
        }
    }
    if (k) io_submit(s->io, rq, k);
}

void store_set_ptrs(store *s, uint32_t g, uint8_t *buf)
{
    group_state *gs = &s->groups[g];
    gs->buf = buf;
    for (uint32_t i = 0; i < gs->layout.n_tensors; i++)
        gs->ptrs[i] = gs->layout.tensor_offset[i] == UINT64_MAX ? NULL : buf + gs->layout.tensor_offset[i];
}

/* ---- the ring ---- */

/* Assigns the next streamed group in execution order to slot i and starts its reads. */
static void refill(store *s, uint32_t i)
{
    uint32_t g = s->order[s->fetch_next];
    s->fetch_next = (s->fetch_next + 1) % s->n_order;
    s->slots[i].group = (int)g;
    s->groups[g].slot = (int)i;
    store_set_ptrs(s, g, s->slots[i].buf);
    store_submit_group(s, g, s->slots[i].buf, &s->slots[i].ticket);
}

/* Waits for slot i's reads and frees it. */
static void drain(store *s, uint32_t i)
{
    if (s->slots[i].group < 0) return;
    s->wait_s += io_wait(s->io, &s->slots[i].ticket);
    s->groups[s->slots[i].group].slot = -1;
    s->slots[i].group = -1;
}

/* Restarts the ring at group g (after a reset, or any access out of order). */
static void resync(store *s, uint32_t g)
{
    for (uint32_t i = 0; i < s->n_slots; i++) drain(s, i);
    for (uint32_t k = 0; k < s->n_order; k++)
        if (s->order[k] == g) s->fetch_next = k;
    s->head = 0;
    for (uint32_t i = 0; i < s->n_slots; i++) refill(s, i);
}

static strata_status open_ring(store *s, uint32_t n_slots, uint64_t slot_bytes, strata_error *err)
{
    s->order = calloc(s->n_groups, sizeof *s->order);
    s->slots = calloc((size_t)s->cfg.prefetch_depth + 1, sizeof *s->slots);
    if (!s->order || !s->slots) return err_set(err, STRATA_E_NOMEM, "out of memory");
    for (uint32_t g = 0; g < s->n_groups; g++)
        if (!s->groups[g].resident) {
            s->order[s->n_order++] = g;
            s->pass_bytes += s->groups[g].layout.bytes;
        }
    s->n_slots = n_slots;
    s->slot_bytes = slot_bytes;
    for (uint32_t i = 0; i < s->n_slots; i++) {
        s->slots[i].group = -1;
        if (!(s->slots[i].buf = store_map_as(s, ACCT_SLOTS, s->slot_bytes)))
            return err_set(err, STRATA_E_NOMEM, "%s", s->refused[0] ? s->refused : "out of memory for streaming slots");
    }
    if (s->n_slots) resync(s, s->order[0]);
    return STRATA_OK;
}

void store_ring_rebuild(store *s)
{
    for (uint32_t i = 0; i < s->n_slots; i++) drain(s, i);
    s->n_order = 0;
    s->pass_bytes = 0;
    for (uint32_t g = 0; g < s->n_groups; g++)
        if (!s->groups[g].resident) {
            s->order[s->n_order++] = g;
            s->pass_bytes += s->groups[g].layout.bytes;
        }
    s->fetch_next = s->head = 0;
}

/* ---- open / close ---- */

static strata_status build_layouts(store *s, const store_group *groups, uint64_t *bytes, strata_error *err)
{
    for (uint32_t g = 0; g < s->n_groups; g++) {
        group_state *gs = &s->groups[g];
        gs->slot = -1;
        strata_status st = layout_build(s->f, groups[g].tensors, groups[g].n, &gs->layout, err);
        if (st) return st;
        if (!(gs->ptrs = calloc(groups[g].n ? groups[g].n : 1, sizeof *gs->ptrs)))
            return err_set(err, STRATA_E_NOMEM, "out of memory");
        bytes[g] = gs->layout.bytes;
    }
    return STRATA_OK;
}

uint64_t store_row_buffer_bytes(const gguf_file *f)
{
    uint64_t m = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        uint64_t r = ggml_row_bytes(f->tensors[i].type, f->tensors[i].ne[0]);
        if (r > m) m = r;
    }
    return m;
}

store_ring store_ring_for(uint32_t n, const uint64_t *bytes, const bool *resident, bool stream_all, int depth)
{
    store_ring r = {0};
    uint32_t streamed = 0;
    for (uint32_t g = 0; g < n; g++) {
        if (resident ? resident[g] : !stream_all) r.resident_bytes += bytes[g];
        else if (++streamed, bytes[g] > r.slot_bytes) r.slot_bytes = bytes[g];
    }
    r.n_slots = store_ring_slots(streamed, depth);
    return r;
}

uint32_t store_ring_slots(uint32_t streamed, int depth)
{
    uint32_t most = (uint32_t)depth + 1;
    return streamed < most ? streamed : most;
}

/* The expert cache's units given (0: every unit). */
static uint32_t expert_slots_given(const store *s)
{
    uint32_t n = s->cfg.expert_slots;
    return n && n < s->expert_units ? n : s->expert_units;
}

static strata_status open_experts(store *s, strata_error *err)
{
    if (!s->expert_units) return STRATA_OK;
    s->expert_slots = s->rs.expert_home = s->rs.expert_acct_slots = expert_slots_given(s);
    if (!(s->expert_mem = store_map_as(s, ACCT_EXPERTS, (uint64_t)s->expert_slots * s->expert_slot_bytes)))
        return err_set(err, STRATA_E_NOMEM, "%s", s->refused[0] ? s->refused : "out of memory for the expert cache");
    return expert_cache_open(s->io, s->cfg.n_expert_sets, s->cfg.expert_sets, s->expert_mem, s->expert_slot_bytes,
                             s->expert_slots, s->cfg.expert_policy, &s->experts, err);
}

/* Executes the placement given (cfg.resident, cfg.stream_all,
 * cfg.expert_slots) when it fits the budget; plan/placement.c decides it. */
static strata_status place_groups(store *s, const uint64_t *bytes, uint64_t *min_bytes, strata_error *err)
{
    for (uint32_t g = 0; g < s->n_groups; g++)
        s->groups[g].resident = s->groups[g].home = s->cfg.resident ? s->cfg.resident[g] : !s->cfg.stream_all;
    store_ring r = store_ring_for(s->n_groups, bytes, s->cfg.resident, s->cfg.stream_all, s->cfg.prefetch_depth);
    uint64_t need = s->row_buf_bytes + r.resident_bytes + r.n_slots * r.slot_bytes +
                    (uint64_t)expert_slots_given(s) * s->expert_slot_bytes;
    uint64_t avail = store_weight_budget(s);
    if (min_bytes) *min_bytes = need;
    if (avail && need > avail) {
        char a[32], b[32];
        return err_set(err, STRATA_E_NOMEM, "weights need at least %s with prefetch depth %d; %s is available for them",
                       fmt_bytes(need, a, sizeof a), s->cfg.prefetch_depth, fmt_bytes(avail, b, sizeof b));
    }
    s->resident_bytes = r.resident_bytes;
    strata_status st = open_ring(s, r.n_slots, r.slot_bytes, err);
    return st ? st : open_experts(s, err);
}

static void apply_defaults(store_config *c)
{
    if (c->prefetch_depth <= 0) c->prefetch_depth = STORE_DEFAULT_DEPTH;
    if (c->io_threads <= 0) c->io_threads = DEFAULT_IO_THREADS;
    if (c->io_chunk < (1u << 20)) c->io_chunk = DEFAULT_CHUNK;
    c->io_chunk = c->io_chunk / STORE_ALIGN * STORE_ALIGN;
}

strata_status store_open(const gguf_file *f, uint32_t n_groups, const store_group *groups, const store_config *cfg,
                         store **out, uint64_t *min_bytes, strata_error *err)
{
    *out = NULL;
    store *s = calloc(1, sizeof *s);
    uint64_t *bytes = calloc(n_groups ? n_groups : 1, sizeof *bytes);
    if (!s || !bytes) {
        free(s);
        free(bytes);
        return err_set(err, STRATA_E_NOMEM, "out of memory");
    }
    s->f = f;
    pthread_mutex_init(&s->lock, NULL);
    s->cfg = cfg ? *cfg : (store_config){0};
    apply_defaults(&s->cfg);
    s->n_groups = n_groups;
    s->row_buf_bytes = store_row_buffer_bytes(f);
    strata_status st = (s->groups = calloc(n_groups ? n_groups : 1, sizeof *s->groups)) ? STRATA_OK
                       : err_set(err, STRATA_E_NOMEM, "out of memory");
    if (!st) st = build_layouts(s, groups, bytes, err);
    if (!st) st = expert_cache_geometry(s->cfg.n_expert_sets, s->cfg.expert_sets, &s->expert_slot_bytes,
                                        &s->expert_units, err);
    if (!st) st = io_open(f, s->cfg.io_threads, s->cfg.fault, s->cfg.fault_ctx, &s->io, err);
    if (!st) st = store_account_open(s, err);
    if (!st && !(s->row_buf = acct_alloc_aligned(s->acct, ACCT_SLOTS, s->row_buf_bytes, STORE_ALIGN, err)))
        st = STRATA_E_NOMEM;
    if (!st) st = place_groups(s, bytes, min_bytes, err);
    if (!st && s->cfg.watchdog) st = store_watchdog_create(s, err);
    if (!st) st = store_load_resident(s, err);
    if (!st) s->io_base = io_get_stats(s->io);
    if (!st) st = store_watchdog_start(s, err);
    if (!st && !s->own_acct) acct_set_reclaim(s->acct, store_reclaim, s); /* the caller's later takes */
    free(bytes);
    if (st) {
        store_close(s);
        return st;
    }
    *out = s;
    return STRATA_OK;
}

void store_close(store *s)
{
    if (!s) return;
    if (s->acct && !s->own_acct) acct_set_reclaim(s->acct, NULL, NULL);
    store_watchdog_stop(s); /* first: it may be reading promoted groups */
    for (uint32_t i = 0; s->slots && i < s->n_slots; i++) drain(s, i); /* no read may land in freed memory */
    expert_cache_close(s->experts);
    /* views first: their memory is the file's mapping, which io_close unmaps (their
     * pages stay in the page cache for the next run) */
    for (uint32_t g = 0; s->groups && g < s->n_groups; g++)
        if (s->groups[g].resident) store_group_release(s, g, false);
    io_close(s->io);
    if (s->acct) store_unmap_as(s, ACCT_EXPERTS, s->expert_mem, (uint64_t)s->expert_slots * s->expert_slot_bytes);
    for (uint32_t i = 0; s->slots && i < s->n_slots; i++) store_unmap_as(s, ACCT_SLOTS, s->slots[i].buf, s->slot_bytes);
    if (s->groups) store_reshape_discard(s);
    for (uint32_t g = 0; s->groups && g < s->n_groups; g++) {
        free(s->groups[g].ptrs);
        layout_free(&s->groups[g].layout);
    }
    free(s->groups);
    free(s->slots);
    free(s->order);
    if (s->acct) acct_release(s->acct, ACCT_SLOTS, s->row_buf, s->row_buf_bytes);
    if (s->own_acct) acct_free(s->acct);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

strata_status store_expert_geometry(uint32_t n_sets, const store_expert_set *sets, uint64_t *slot_bytes,
                                    uint32_t *units, strata_error *err)
{
    return expert_cache_geometry(n_sets, sets, slot_bytes, units, err);
}

strata_status store_group_bytes(const gguf_file *f, const store_group *g, uint64_t *bytes, strata_error *err)
{
    group_layout l;
    strata_status st = layout_build(f, g->tensors, g->n, &l, err);
    *bytes = st ? 0 : l.bytes;
    layout_free(&l);
    return st;
}

/* ---- acquire / release ---- */

/* The ring part of acquire: waits for streamed group g's slot. */
static strata_status acquire_streamed(store *s, uint32_t g, strata_error *err)
{
    if (s->groups[g].slot < 0) resync(s, g);
    while (s->slots[s->head].group != (int)g) { /* groups the engine skipped */
        drain(s, s->head);
        refill(s, s->head);
        s->head = (s->head + 1) % s->n_slots;
    }
    slot *sl = &s->slots[s->head];
    s->wait_s += io_wait(s->io, &sl->ticket);
    return io_ticket_error(s->io, &sl->ticket, err);
}

strata_status store_acquire(store *s, uint32_t g, const void *const **data, strata_error *err)
{
    if (g >= s->n_groups) return err_set(err, STRATA_E_INVALID, "store: no group %" PRIu32, g);
    group_state *gs = &s->groups[g];
    if (g == 0) {
        strata_status st = io_check_unchanged(s->io, err); /* once per pass */
        if (st) return st;
    }
    pthread_mutex_lock(&s->lock);
    if (!s->held) store_reshape_apply(s); /* a safe point: no group's data is in use */
    if (!s->held) store_reshape_apply_experts(s);
    strata_status st = s->rs.broken ? err_set(err, s->rs.broken, "store: out of memory for streaming slots after "
                                              "a memory-pressure shrink")
                       : gs->resident ? STRATA_OK
                                      : acquire_streamed(s, g, err);
    if (!st) {
        s->held++;
        *data = gs->ptrs;
    }
    pthread_mutex_unlock(&s->lock);
    return st;
}

void store_release(store *s, uint32_t g)
{
    if (g >= s->n_groups) return;
    pthread_mutex_lock(&s->lock);
    if (s->held) s->held--;
    if (!s->groups[g].resident && s->groups[g].slot == (int)s->head) {
        drain(s, s->head);
        refill(s, s->head);
        s->head = (s->head + 1) % s->n_slots;
    }
    pthread_mutex_unlock(&s->lock);
}

strata_status store_gather_rows(store *s, const gguf_tensor *t, const int32_t *rows, uint32_t n, float *out,
                                strata_error *err)
{
    uint64_t row_bytes = ggml_row_bytes(t->type, t->ne[0]);
    strata_status st = STRATA_OK;
    for (uint32_t i = 0; i < n && !st; i++) {
        if (rows[i] < 0 || (uint64_t)rows[i] >= t->ne[1])
            st = err_set(err, STRATA_E_INVALID, "row %d of tensor '%s' is out of range", rows[i], t->name);
        else if (!(st = io_pread(s->io, t->split, t->file_offset + (uint64_t)rows[i] * row_bytes, s->row_buf,
                                 row_bytes, err)))
            st = dequant_row(t->type, s->row_buf, out + (uint64_t)i * t->ne[0], t->ne[0], err);
    }
    return st;
}

strata_status store_read_tensor(store *s, const gguf_tensor *t, uint64_t off, void *dst, uint64_t n,
                                strata_error *err)
{
    if (off > t->n_bytes || n > t->n_bytes - off)
        return err_set(err, STRATA_E_INVALID, "bytes %" PRIu64 "..%" PRIu64 " are outside tensor '%s'", off, off + n,
                       t->name);
    return io_pread(s->io, t->split, t->file_offset + off, dst, n, err);
}

store_stats store_get_stats(store *s)
{
    io_stats io = io_get_stats(s->io);
    store_expert_stats x = s->experts ? expert_cache_totals(s->experts) : (store_expert_stats){0};
    pthread_mutex_lock(&s->lock);
    const reshape_state *r = &s->rs;
    store_stats out = {.resident_bytes = s->resident_bytes, .slot_bytes = s->slot_bytes * s->n_slots,
                       .n_slots = s->n_slots, .n_streamed_groups = s->n_order, .pass_bytes = s->pass_bytes,
                       .accounted_bytes = store_accounted(s),
                       .bytes_read = io.bytes - s->io_base.bytes - r->promote_read,
                       .read_requests = io.requests - s->io_base.requests,
                       .io_busy_s = io.busy_s - s->io_base.busy_s, .io_active_s = io.active_s - s->io_base.active_s, .wait_s = s->wait_s, .direct_io = io.direct,
                       .load_bytes = s->load_bytes, .load_cached_bytes = s->io_base.cached,
                       .load_views = s->load_views, .load_s = s->load_s,
                       .expert_units = s->expert_units, .expert_slots = s->expert_slots,
                       .expert_cache_bytes = (uint64_t)s->expert_slots * s->expert_slot_bytes,
                       .expert_hits = x.hits, .expert_misses = x.misses, .prefetch_issued = x.prefetch_issued,
                       .prefetch_used = x.prefetch_used, .prefetch_wasted = x.prefetch_wasted,
                       .watchdog = s->wd != NULL, .shrinks = r->shrinks, .grows = r->grows,
                       .bytes_demoted = r->bytes_demoted, .bytes_promoted = r->bytes_promoted,
                       .bytes_freed = r->freed, .reaction_last_s = r->reaction_last_s,
                       .reaction_max_s = r->reaction_max_s, .psi_trigger = r->psi_trigger,
                       .expert_shrinks = r->expert_shrinks, .expert_grows = r->expert_grows,
                       .psi_wakeups = r->psi_wakeups};
    for (uint32_t g = 0; g < s->n_groups; g++) out.demoted_groups += s->groups[g].home && !s->groups[g].resident;
    pthread_mutex_unlock(&s->lock);
    return out;
}

store_expert_stats store_get_expert_stats(store *s, uint32_t set)
{
    return s->experts ? expert_cache_set_stats(s->experts, set) : (store_expert_stats){0};
}

/* ---- experts ---- */

strata_status store_experts_pin(store *s, uint32_t set, const int32_t *ids, uint32_t n, uint32_t *taken,
                                strata_error *err)
{
    *taken = 0;
    if (!s->experts) return err_set(err, STRATA_E_INVALID, "store: the model has no experts");
    return expert_cache_pin(s->experts, set, ids, n, taken, err);
}

bool store_expert_ready(store *s, uint32_t set, int32_t id) { return s->experts && expert_cache_ready(s->experts, set, id); }

strata_status store_expert_data(store *s, uint32_t set, int32_t id, const void *const **data, strata_error *err)
{
    if (!s->experts) return err_set(err, STRATA_E_INVALID, "store: the model has no experts");
    return expert_cache_data(s->experts, set, id, data, &s->wait_s, err);
}

void store_experts_unpin(store *s, uint32_t set, const int32_t *ids, uint32_t n)
{
    if (s->experts) expert_cache_unpin(s->experts, set, ids, n);
}

void store_experts_prefetch(store *s, uint32_t set, const int32_t *ids, uint32_t n)
{
    if (s->experts) expert_cache_prefetch(s->experts, set, ids, n);
}

const void *const *store_resident_data(store *s, uint32_t group)
{
    if (group >= s->n_groups) return NULL;
    pthread_mutex_lock(&s->lock);
    const void *const *p = s->groups[group].resident ? s->groups[group].ptrs : NULL;
    pthread_mutex_unlock(&s->lock);
    return p;
}
