/* Shrinking and growing the resident set under memory pressure: resident
 * groups are demoted to streaming (their buffers unmapped) and promoted
 * back (read into new buffers, then switched in). Placement never changes
 * the math, so the output is the same whatever moves when.
 *
 * A change happens under the store's lock with no group acquired (a safe
 * point: no group's data is in use), either at once in the caller or at
 * the next store_acquire. The ring is rebuilt for the new streamed set:
 * min(depth + 1, streamed) slots of the largest streamed group.
 *
 * The expert cache (mixture of experts) gives its slots first when memory
 * runs short (down to STORE_EXPERT_MIN_SLOTS; the planner fills it last,
 * with what the dense groups leave), and gets them back last. Its memory
 * is one mapping: dropped slots are given back with MADV_DONTNEED (the
 * pages go, the addresses stay), and slots regained fault in as reads
 * land in them. It is resized only in the thread that computes, at
 * store_acquire with nothing pinned. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "store/store_internal.h"
#include "util/clock.h"
#include "util/fmt.h"

/* The ring a streamed set needs: its slot count and slot size. */
typedef struct ring_shape {
    uint32_t n_slots;
    uint64_t slot_bytes;
} ring_shape;

static uint64_t ring_bytes(ring_shape r) { return (uint64_t)r.n_slots * r.slot_bytes; }

static uint32_t slots_for(const store *s, uint32_t streamed) { return store_ring_slots(streamed, s->cfg.prefetch_depth); }

/* The streamed groups now, as a shape and a count. */
static ring_shape current_streamed(const store *s, uint32_t *count)
{
    ring_shape r = {0, 0};
    *count = 0;
    for (uint32_t g = 0; g < s->n_groups; g++)
        if (!s->groups[g].resident) {
            ++*count;
            if (s->groups[g].layout.bytes > r.slot_bytes) r.slot_bytes = s->groups[g].layout.bytes;
        }
    r.n_slots = slots_for(s, *count);
    return r;
}

/* Resident groups in the order shrink takes them: the layers from the
 * last back (the first ones keep the early passes fast; any order is
 * correct), the last group (the output) at the end. */
static uint32_t demote_order(const store *s, uint32_t *out /* [n_groups] */)
{
    uint32_t n = 0, last = s->n_groups - 1;
    for (uint32_t g = last; g-- > 0;)
        if (s->groups[g].resident && s->groups[g].layout.bytes) out[n++] = g;
    if (s->groups[last].resident && s->groups[last].layout.bytes) out[n++] = last;
    return n;
}

/* How many of cand[0..n) to demote to free `want` bytes net of the ring:
 * the fewest that do, else those that free the most (0 when none frees
 * anything: demoting one group into a new ring of one slot frees nothing). */
static uint32_t plan_demotion(const store *s, const uint32_t *cand, uint32_t n, uint64_t want, uint64_t *freed)
{
    uint32_t streamed;
    ring_shape now = current_streamed(s, &streamed), r = now;
    uint64_t moved = 0;
    int64_t best = 0;
    uint32_t best_k = 0;
    for (uint32_t k = 1; k <= n; k++) {
        uint64_t b = s->groups[cand[k - 1]].layout.bytes;
        moved += b;
        if (b > r.slot_bytes) r.slot_bytes = b;
        r.n_slots = slots_for(s, streamed + k);
        int64_t net = (int64_t)(moved + ring_bytes(now)) - (int64_t)ring_bytes(r);
        if (net > best) best = net, best_k = k;
        if (net > 0 && (uint64_t)net >= want) break;
    }
    *freed = (uint64_t)best;
    return best_k;
}

/* Makes the ring `want`: slots of another size are remapped, extra ones
 * unmapped, missing ones mapped. All slots are drained. */
static void resize_slots(store *s, ring_shape want)
{
    if (want.slot_bytes != s->slot_bytes || !want.n_slots) {
        for (uint32_t i = 0; i < s->n_slots; i++) store_unmap_as(s, ACCT_SLOTS, s->slots[i].buf, s->slot_bytes);
        s->n_slots = 0;
        s->slot_bytes = want.slot_bytes;
    }
    while (s->n_slots > want.n_slots) {
        s->n_slots--;
        store_unmap_as(s, ACCT_SLOTS, s->slots[s->n_slots].buf, s->slot_bytes);
    }
    while (s->n_slots < want.n_slots) {
        slot *sl = &s->slots[s->n_slots];
        *sl = (slot){.group = -1};
        if (!(sl->buf = store_map_as(s, ACCT_SLOTS, s->slot_bytes))) {
            s->rs.broken = STRATA_E_NOMEM; /* no ring: acquire reports it */
            return;
        }
        s->n_slots++;
    }
    for (uint32_t i = 0; i < s->n_slots; i++) s->slots[i].group = -1;
    s->head = 0;
}

uint64_t store_ring_growth_from(const store *s, uint32_t from)
{
    uint32_t streamed;
    ring_shape now = current_streamed(s, &streamed), r = now;
    for (uint32_t g = from; g < s->n_groups; g++)
        if (s->groups[g].resident) {
            streamed++;
            if (s->groups[g].layout.bytes > r.slot_bytes) r.slot_bytes = s->groups[g].layout.bytes;
        }
    r.n_slots = slots_for(s, streamed);
    return ring_bytes(r) > ring_bytes(now) ? ring_bytes(r) - ring_bytes(now) : 0;
}

void store_reshape_ring(store *s)
{
    store_ring_rebuild(s);
    uint32_t streamed;
    resize_slots(s, current_streamed(s, &streamed));
}

static void log_change(const store *s, const char *what, uint32_t n, uint64_t moved, const char *extra,
                       uint64_t headroom)
{
    if (!s->rs.log) return;
    char a[32], b[32];
    fprintf(stderr, "strata: memory pressure: moved %" PRIu32 " layer%s (%s) %s%s; headroom %s\n", n,
            n == 1 ? "" : "s", fmt_bytes(moved, a, sizeof a), what, extra, fmt_bytes(headroom, b, sizeof b));
}

static void demote(store *s, uint64_t want)
{
    uint32_t *cand = malloc(s->n_groups * sizeof *cand); /* [n_groups] */
    if (!cand) return;
    uint64_t planned, moved = 0, before = store_accounted(s);
    uint32_t k = plan_demotion(s, cand, demote_order(s, cand), want, &planned);
    for (uint32_t i = 0; i < k; i++) {
        group_state *gs = &s->groups[cand[i]];
        store_group_release(s, cand[i], true);
        gs->resident = false;
        gs->slot = -1;
        moved += gs->layout.bytes;
    }
    free(cand);
    if (!k) return;
    s->resident_bytes -= moved;
    store_ring_rebuild(s);
    uint32_t streamed;
    resize_slots(s, current_streamed(s, &streamed));
    reshape_state *r = &s->rs;
    uint64_t after = store_accounted(s), freed = before > after ? before - after : 0;
    r->shrinks++;
    r->bytes_demoted += moved;
    r->freed += freed;
    char extra[96] = "";
    if (r->want_t > 0) {
        r->reaction_last_s = clock_seconds() - r->want_t;
        if (r->reaction_last_s > r->reaction_max_s) r->reaction_max_s = r->reaction_last_s;
        char f[32];
        snprintf(extra, sizeof extra, ", %s freed %.0f ms after the pressure was seen", fmt_bytes(freed, f, sizeof f),
                 1e3 * r->reaction_last_s);
    }
    log_change(s, "to streaming", k, moved, extra, r->want_headroom + freed);
}

static void promote(store *s)
{
    uint64_t moved = 0;
    uint32_t n = 0;
    for (uint32_t g = 0; g < s->n_groups; g++) {
        group_state *gs = &s->groups[g];
        if (!gs->incoming) continue;
        gs->resident = true;
        store_set_ptrs(s, g, gs->incoming);
        gs->incoming = NULL;
        moved += gs->layout.bytes;
        n++;
    }
    if (!n) return;
    s->resident_bytes += moved;
    store_ring_rebuild(s);
    uint32_t streamed;
    resize_slots(s, current_streamed(s, &streamed));
    s->rs.grows++;
    s->rs.bytes_promoted += moved;
    log_change(s, "back to memory", n, moved, "", s->rs.want_headroom);
}

void store_reshape_apply(store *s)
{
    reshape_state *r = &s->rs;
    if (r->want_grow) promote(s);
    if (r->want_free) demote(s, r->want_free);
    r->want_grow = false;
    r->want_free = 0;
}

void store_reshape_discard(store *s)
{
    for (uint32_t g = 0; g < s->n_groups; g++) {
        store_unmap(s, s->groups[g].incoming, s->groups[g].layout.bytes);
        s->groups[g].incoming = NULL;
    }
    s->rs.want_grow = false;
}

/* Applies at once when no group is in use, else leaves it to acquire. */
static void apply_if_safe(store *s)
{
    if (!s->held) store_reshape_apply(s);
}

/* ---- the expert cache ---- */

static uint32_t expert_target(const store *s)
{
    return s->rs.want_expert_slots ? s->rs.want_expert_slots : s->expert_slots;
}

/* The expert cache's part of a shrink: slots down to the minimum, as many
 * as `bytes` asks for. Returns the bytes asked of it; lock held. */
static uint64_t plan_expert_shrink(store *s, uint64_t bytes)
{
    uint32_t cur = expert_target(s), min = STORE_EXPERT_MIN_SLOTS < s->expert_units ? STORE_EXPERT_MIN_SLOTS
                                                                                   : s->expert_units;
    uint64_t sb = s->expert_slot_bytes;
    if (!s->experts || cur <= min || !sb || !bytes) return 0;
    uint64_t k = bytes / sb + (bytes % sb != 0);
    if (k > cur - min) k = cur - min;
    s->rs.want_expert_slots = cur - (uint32_t)k;
    return k * sb;
}

/* The expert cache's part of a grow, within `bytes`: slots back up to its
 * size at open, taken from the account now (lock held). */
static uint64_t plan_expert_grow(store *s, uint64_t bytes)
{
    reshape_state *r = &s->rs;
    uint32_t cur = expert_target(s);
    uint64_t sb = s->expert_slot_bytes;
    if (!s->experts || cur >= r->expert_home || !sb) return 0;
    uint64_t k = bytes / sb;
    if (k > r->expert_home - cur) k = r->expert_home - cur;
    uint32_t want = cur + (uint32_t)k;
    uint64_t take = want > r->expert_acct_slots ? (uint64_t)(want - r->expert_acct_slots) * sb : 0;
    if (!k || acct_take(s->acct, ACCT_RAM, ACCT_EXPERTS, take, NULL)) return 0;
    if (want > r->expert_acct_slots) r->expert_acct_slots = want;
    r->want_expert_slots = want;
    return take;
}

void store_reshape_apply_experts(store *s)
{
    reshape_state *r = &s->rs;
    uint32_t old = s->expert_slots, want = r->want_expert_slots;
    if (!s->experts || !want) return;
    if (want != old && !expert_cache_resize(s->experts, want)) return; /* a unit pinned: the next acquire */
    uint64_t sb = s->expert_slot_bytes;
    if (want < old) madvise(s->expert_mem + (uint64_t)want * sb, (uint64_t)(old - want) * sb, MADV_DONTNEED);
    if (r->expert_acct_slots > want) {
        acct_give(s->acct, ACCT_RAM, ACCT_EXPERTS, (uint64_t)(r->expert_acct_slots - want) * sb);
        r->expert_acct_slots = want;
    }
    s->expert_slots = want;
    r->want_expert_slots = 0;
    if (want == old) return;
    char a[32], extra[96] = "";
    if (want < old) {
        r->expert_shrinks++;
        r->freed += (uint64_t)(old - want) * sb;
        if (r->want_t > 0) {
            r->reaction_last_s = clock_seconds() - r->want_t;
            if (r->reaction_last_s > r->reaction_max_s) r->reaction_max_s = r->reaction_last_s;
            snprintf(extra, sizeof extra, " %.0f ms after the pressure was seen", 1e3 * r->reaction_last_s);
            r->want_t = 0;
        }
    } else {
        r->expert_grows++;
    }
    if (s->rs.log)
        fprintf(stderr, "strata: memory pressure: expert cache %" PRIu32 " -> %" PRIu32 " experts (%s %s)%s\n", old,
                want, fmt_bytes((uint64_t)(old > want ? old - want : want - old) * sb, a, sizeof a),
                want < old ? "freed" : "back", extra);
}

uint64_t store_shrink(store *s, uint64_t bytes, uint64_t headroom, double seen_at)
{
    uint32_t *cand = malloc(s->n_groups * sizeof *cand); /* [n_groups] */
    if (!cand || !bytes) {
        free(cand);
        return 0;
    }
    pthread_mutex_lock(&s->lock);
    store_reshape_discard(s); /* promotions not switched in yet: memory is short again */
    reshape_state *r = &s->rs;
    bool waiting = r->want_free || r->want_expert_slots;
    uint64_t experts = plan_expert_shrink(s, bytes), rest = bytes > experts ? bytes - experts : 0, planned = 0;
    uint32_t k = rest ? plan_demotion(s, cand, demote_order(s, cand), rest, &planned) : 0;
    if ((k || experts) && !waiting) r->want_t = seen_at; /* the first pressure seen waits longest */
    if (k) {
        r->want_free = rest > r->want_free ? rest : r->want_free;
        r->want_headroom = headroom;
        apply_if_safe(s);
    }
    pthread_mutex_unlock(&s->lock);
    free(cand);
    return (k ? planned : 0) + experts;
}

/* How many of the streamed home groups cand[0..n) (first ones first) to
 * promote within `budget` bytes net of the ring they leave; *cost set. */
static uint32_t plan_promotion(const store *s, const uint32_t *cand, uint32_t n, uint64_t budget, uint64_t *cost)
{
    uint32_t streamed;
    ring_shape now = current_streamed(s, &streamed);
    uint64_t *tail = calloc((size_t)n + 1, sizeof *tail); /* [n + 1]: largest of cand[k..n) */
    if (!tail) return 0;
    for (uint32_t k = n; k-- > 0;) {
        uint64_t b = s->groups[cand[k]].layout.bytes;
        tail[k] = b > tail[k + 1] ? b : tail[k + 1];
    }
    uint64_t others = 0; /* the largest streamed group that is no candidate */
    for (uint32_t g = 0, i = 0; g < s->n_groups; g++) {
        if (i < n && cand[i] == g) i++;
        else if (!s->groups[g].resident && s->groups[g].layout.bytes > others) others = s->groups[g].layout.bytes;
    }
    uint32_t best = 0;
    uint64_t moved = 0;
    *cost = 0;
    for (uint32_t k = 1; k <= n; k++) {
        moved += s->groups[cand[k - 1]].layout.bytes;
        ring_shape r = {slots_for(s, streamed - k), tail[k] > others ? tail[k] : others};
        int64_t net = (int64_t)(moved + ring_bytes(r)) - (int64_t)ring_bytes(now);
        if (net <= 0 || (uint64_t)net <= budget) best = k, *cost = net > 0 ? (uint64_t)net : 0;
    }
    free(tail);
    return best;
}

/* Reads group g into a new mapping, taken from the account first; NULL on
 * failure (nothing kept). */
static uint8_t *read_group(store *s, uint32_t g)
{
    uint64_t bytes = s->groups[g].layout.bytes;
    uint8_t *buf = store_map(s, bytes);
    if (!buf) return NULL;
    io_ticket t;
    store_submit_group(s, g, buf, &t);
    io_wait(s->io, &t);
    if (atomic_load(&t.error)) {
        store_unmap(s, buf, bytes);
        return NULL;
    }
    return buf;
}

uint64_t store_reclaim(void *ctx, uint64_t bytes)
{
    store *s = ctx;
    uint32_t *cand = malloc(s->n_groups * sizeof *cand); /* [n_groups] */
    uint64_t can = 0;
    if (!cand) return 0;
    pthread_mutex_lock(&s->lock);
    plan_demotion(s, cand, demote_order(s, cand), bytes, &can);
    pthread_mutex_unlock(&s->lock);
    free(cand);
    if (can < bytes) return 0; /* streaming all it can would not make the room: keep the weights */
    return store_shrink(s, bytes, acct_room(s->acct, ACCT_RAM), 0);
}

uint64_t store_grow(store *s, uint64_t bytes, uint64_t headroom)
{
    uint64_t room = acct_room(s->acct, ACCT_RAM); /* the budget binds too: others hold part of it now */
    if (bytes > room) bytes = room;
    uint32_t *cand = malloc(s->n_groups * sizeof *cand); /* [n_groups] */
    uint8_t **bufs = calloc(s->n_groups, sizeof *bufs);   /* [n_groups] */
    uint32_t n = 0, k = 0;
    uint64_t cost = 0, read = 0;
    if (cand && bufs) {
        pthread_mutex_lock(&s->lock);
        if (!s->rs.want_free && !s->rs.want_grow)
            for (uint32_t g = 0; g < s->n_groups; g++)
                if (s->groups[g].home && !s->groups[g].resident && s->groups[g].layout.bytes) cand[n++] = g;
        k = plan_promotion(s, cand, n, bytes, &cost);
        pthread_mutex_unlock(&s->lock);
    }
    /* The reads run here, outside the lock: these groups' layouts never
     * change and only this thread promotes. */
    bool ok = true;
    for (uint32_t i = 0; i < k && ok; i++) ok = (bufs[i] = read_group(s, cand[i])) != NULL;
    if (k) {
        pthread_mutex_lock(&s->lock);
        for (uint32_t i = 0; i < k; i++) {
            uint64_t b = s->groups[cand[i]].layout.bytes;
            read += bufs[i] ? b : 0;
            if (ok) s->groups[cand[i]].incoming = bufs[i];
            else store_unmap(s, bufs[i], b);
        }
        s->rs.promote_read += read;
        if (ok) {
            s->rs.want_grow = true;
            s->rs.want_headroom = headroom > cost ? headroom - cost : 0;
            apply_if_safe(s);
        }
        pthread_mutex_unlock(&s->lock);
    }
    free(cand);
    free(bufs);
    if (!ok) return 0;
    pthread_mutex_lock(&s->lock); /* the expert cache last: the dense groups serve every token */
    uint64_t experts = !s->rs.want_free && bytes > cost ? plan_expert_grow(s, bytes - cost) : 0;
    pthread_mutex_unlock(&s->lock);
    return cost + experts;
}
