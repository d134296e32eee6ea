/* The expert cache (see expert_cache.h). A unit's slices lie in three
 * places of the file (one per stacked tensor); each is read aligned into
 * the unit's slot, at a fixed offset per tensor. The reads a call starts
 * are gathered and queued at its end, merged where slices are adjacent in
 * the file (experts e and e+1 both missing: one request per tensor). */
#include <stdlib.h>
#include <string.h>

#include "store/coalesce.h"
#include "store/expert_cache.h"
#include "store/layout.h"
#include "util/error.h"

#define MAX_SET_TENSORS 4

typedef struct cache_slot {
    int32_t key;      /* unit held (set * max_experts + id), -1: free */
    uint32_t pins;
    uint64_t last_use; /* tick of the last pin */
    bool prefetched;  /* read by a prefetch and not pinned since */
    io_ticket ticket; /* its reads; checked when the data is first asked for */
    const void *ptrs[MAX_SET_TENSORS]; /* the unit's slices in the slot */
    io_part parts[MAX_SET_TENSORS];    /* each slice's read, while it is in flight */
} cache_slot;

typedef struct set_info {
    store_expert_set set;
    uint64_t slice[MAX_SET_TENSORS];   /* bytes of one expert's slice of tensor j */
    uint64_t sub_off[MAX_SET_TENSORS]; /* where tensor j's slice is read to in a slot */
    store_expert_stats stats;
} set_info;

struct expert_cache {
    io_engine *io;
    uint64_t chunk;
    uint32_t n_sets, max_experts;
    set_info *sets;
    int32_t *where;    /* [n_sets * max_experts]: the slot of each unit, -1 */
    uint32_t *freq;    /* [n_sets * max_experts]: pins, halved every STORE_EXPERT_LFU_AGING x units pins */
    cache_slot *slots; /* [n_slots] */
    uint8_t *mem;      /* [n_slots][slot_bytes] */
    uint32_t n_slots, units;
    uint32_t cap;         /* slots at open: the most a resize restores */
    uint32_t n_transient; /* LFU: the last slots, for units not frequent enough to keep */
    uint64_t slot_bytes, tick, since_aging;
    store_expert_policy policy;
    read_batch batch; /* reads of the call in progress, queued at its end */
};

static uint64_t align_up(uint64_t x) { return (x + STORE_ALIGN - 1) / STORE_ALIGN * STORE_ALIGN; }

/* Each slice widened to the alignment spans at most align_up(slice) + one
 * alignment unit, whatever its offset. */
static strata_status describe_set(const store_expert_set *s, set_info *out, strata_error *err)
{
    memset(out, 0, sizeof *out);
    out->set = *s;
    if (s->n > MAX_SET_TENSORS) return err_set(err, STRATA_E_INVALID, "store: an expert set has %u tensors", s->n);
    uint64_t off = 0;
    for (uint32_t j = 0; j < s->n; j++) {
        const gguf_tensor *t = s->tensors[j];
        if (!t) continue;
        if (t->ne[2] != s->n_experts || t->n_bytes % s->n_experts)
            return err_set(err, STRATA_E_FORMAT, "tensor '%s' is not %u stacked experts", t->name, s->n_experts);
        out->slice[j] = t->n_bytes / s->n_experts;
        out->sub_off[j] = off;
        off += align_up(out->slice[j]) + STORE_ALIGN;
    }
    return STRATA_OK;
}

static uint64_t set_unit_bytes(const set_info *si)
{
    uint64_t b = 0;
    for (uint32_t j = 0; j < si->set.n; j++)
        if (si->set.tensors[j]) b += align_up(si->slice[j]) + STORE_ALIGN;
    return b;
}

strata_status store_expert_unit_bytes(const store_expert_set *set, uint64_t *bytes, strata_error *err)
{
    set_info si;
    strata_status st = describe_set(set, &si, err);
    *bytes = st ? 0 : set_unit_bytes(&si);
    return st;
}

strata_status expert_cache_geometry(uint32_t n_sets, const store_expert_set *sets, uint64_t *slot_bytes,
                                    uint32_t *units, strata_error *err)
{
    *slot_bytes = 0;
    *units = 0;
    for (uint32_t i = 0; i < n_sets; i++) {
        if (!sets[i].n) continue;
        uint64_t b;
        strata_status st = store_expert_unit_bytes(&sets[i], &b, err);
        if (st) return st;
        if (b > *slot_bytes) *slot_bytes = b;
        *units += sets[i].n_experts;
    }
    return STRATA_OK;
}

/* ---- slots ---- */

static int32_t key_of(const expert_cache *c, uint32_t set, int32_t id) { return (int32_t)(set * c->max_experts) + id; }

static bool in_flight(cache_slot *s) { return atomic_load(&s->ticket.pending) > 0; }

/* Gathers the reads of unit (set, id) into slot i: each slice widened to
 * the alignment; one larger than a chunk is queued at once in chunks read
 * in parallel. A prefetch's are speculative (behind every read a step
 * waits for). */
static void read_unit(expert_cache *c, uint32_t i, uint32_t set, int32_t id, bool prefetch)
{
    const set_info *si = &c->sets[set];
    cache_slot *s = &c->slots[i];
    uint8_t *buf = c->mem + (uint64_t)i * c->slot_bytes;
    uint64_t start[MAX_SET_TENSORS], len[MAX_SET_TENSORS];
    int n = 0;
    for (uint32_t j = 0; j < si->set.n; j++) {
        const gguf_tensor *t = si->set.tensors[j];
        s->ptrs[j] = NULL;
        if (!t) continue;
        uint64_t off = t->file_offset + (uint64_t)id * si->slice[j];
        start[j] = off / STORE_ALIGN * STORE_ALIGN;
        len[j] = align_up(off + si->slice[j]) - start[j];
        s->ptrs[j] = buf + si->sub_off[j] + (off - start[j]);
        n += (int)((len[j] + c->chunk - 1) / c->chunk);
    }
    atomic_store(&s->ticket.error, 0);
    atomic_store(&s->ticket.pending, n);
    for (uint32_t j = 0; j < si->set.n; j++) {
        const gguf_tensor *t = si->set.tensors[j];
        if (t && len[j] <= c->chunk) {
            s->parts[j] = (io_part){buf + si->sub_off[j], start[j], len[j], &s->ticket, NULL};
            read_batch_add(&c->batch, c->io, &s->parts[j], t->split, prefetch);
            continue;
        }
        for (uint64_t o = 0; t && o < len[j]; o += c->chunk) {
            io_request rq = {buf + si->sub_off[j] + o, t->split, start[j] + o,
                             len[j] - o < c->chunk ? len[j] - o : c->chunk, &s->ticket, false, prefetch, NULL};
            io_submit(c->io, &rq, 1);
        }
    }
}

static void assign(expert_cache *c, uint32_t i, uint32_t set, int32_t id, bool prefetch)
{
    cache_slot *s = &c->slots[i];
    s->key = key_of(c, set, id);
    s->prefetched = prefetch;
    s->last_use = ++c->tick;
    c->where[s->key] = (int32_t)i;
    read_unit(c, i, set, id, prefetch);
}

static void evict(expert_cache *c, uint32_t i)
{
    cache_slot *s = &c->slots[i];
    if (s->key < 0) return;
    if (in_flight(s)) read_batch_flush(&c->batch, c->io); /* its reads may be gathered, not yet queued */
    io_wait(c->io, &s->ticket); /* no read may land in a reassigned slot */
    if (s->prefetched) c->sets[(uint32_t)s->key / c->max_experts].stats.prefetch_wasted++;
    c->where[s->key] = -1;
    s->key = -1;
    s->prefetched = false;
}

/* Whether slot a is a better victim than slot b: less often used (LFU's
 * kept part), else used less recently. */
static bool better_victim(const expert_cache *c, const cache_slot *a, const cache_slot *b, bool by_freq)
{
    if (by_freq && c->freq[a->key] != c->freq[b->key]) return c->freq[a->key] < c->freq[b->key];
    return a->last_use < b->last_use;
}

/* The victim among slots [from, to) free of pins: a free one, else the
 * best, preferring units whose reads are done; -1 if all are pinned. */
static int32_t victim_in(expert_cache *c, uint32_t from, uint32_t to, bool by_freq)
{
    int32_t best = -1, busy = -1;
    for (uint32_t i = from; i < to; i++) {
        cache_slot *s = &c->slots[i];
        if (s->pins) continue;
        if (s->key < 0) return (int32_t)i;
        int32_t *pick = in_flight(s) ? &busy : &best;
        if (*pick < 0 || better_victim(c, s, &c->slots[*pick], by_freq)) *pick = (int32_t)i;
    }
    return best >= 0 ? best : busy;
}

/* The slot for unit `key`. LRU: the least recently used. LFU: the kept
 * slots (all but the last n_transient) hold the most frequently used units;
 * a unit used less often than the least frequent of them is read into a
 * transient slot instead (LRU among those), so a cache smaller than what a
 * token reads keeps a stable set instead of cycling everything through. */
static int32_t victim(expert_cache *c, int32_t key)
{
    uint32_t kept = c->n_slots - c->n_transient;
    if (c->policy == STORE_EXPERT_LRU || !c->n_transient) return victim_in(c, 0, c->n_slots, false);
    int32_t v = victim_in(c, 0, kept, true), t = victim_in(c, kept, c->n_slots, false);
    if (v >= 0 && (c->slots[v].key < 0 || t < 0 || c->freq[key] > c->freq[c->slots[v].key])) return v;
    return t;
}

static void count_use(expert_cache *c, int32_t key)
{
    c->freq[key]++;
    if (++c->since_aging >= STORE_EXPERT_LFU_AGING * c->units) { /* aging: old popularity fades */
        for (uint64_t k = 0; k < (uint64_t)c->n_sets * c->max_experts; k++) c->freq[k] /= 2;
        c->since_aging = 0;
    }
}

/* ---- open / close ---- */

static strata_status load_all(expert_cache *c, strata_error *err)
{
    uint32_t i = 0;
    for (uint32_t set = 0; set < c->n_sets; set++)
        for (uint32_t x = 0; x < c->sets[set].set.n_experts && c->sets[set].set.n; x++) assign(c, i++, set, (int32_t)x, false);
    read_batch_flush(&c->batch, c->io);
    strata_status st = STRATA_OK;
    for (uint32_t k = 0; k < i; k++) {
        io_wait(c->io, &c->slots[k].ticket);
        if (!st) st = io_ticket_error(c->io, &c->slots[k].ticket, err);
    }
    return st;
}

strata_status expert_cache_open(io_engine *io, uint32_t n_sets, const store_expert_set *sets, uint8_t *mem,
                                uint64_t slot_bytes, uint32_t n_slots, store_expert_policy policy,
                                expert_cache **out, strata_error *err)
{
    *out = NULL;
    expert_cache *c = calloc(1, sizeof *c);
    if (!c) return err_set(err, STRATA_E_NOMEM, "out of memory");
    *c = (expert_cache){.io = io, .chunk = 4u << 20, .n_sets = n_sets, .mem = mem, .slot_bytes = slot_bytes,
                        .n_slots = n_slots, .cap = n_slots, .policy = policy};
    c->batch.max_bytes = c->chunk;
    if (policy == STORE_EXPERT_LFU) c->n_transient = store_expert_lfu_transient(n_slots);
    for (uint32_t i = 0; i < n_sets; i++) c->max_experts = sets[i].n_experts > c->max_experts ? sets[i].n_experts : c->max_experts;
    uint64_t keys = (uint64_t)n_sets * c->max_experts;
    c->sets = calloc(n_sets ? n_sets : 1, sizeof *c->sets);
    c->where = malloc((keys ? keys : 1) * sizeof *c->where);
    c->freq = calloc(keys ? keys : 1, sizeof *c->freq);
    c->slots = calloc(n_slots ? n_slots : 1, sizeof *c->slots);
    strata_status st = c->sets && c->where && c->freq && c->slots ? STRATA_OK : err_set(err, STRATA_E_NOMEM, "out of memory");
    for (uint64_t k = 0; k < keys && !st; k++) c->where[k] = -1;
    for (uint32_t i = 0; i < n_slots && !st; i++) c->slots[i].key = -1;
    for (uint32_t i = 0; i < n_sets && !st; i++)
        if (!(st = describe_set(&sets[i], &c->sets[i], err)) && sets[i].n) c->units += sets[i].n_experts;
    if (!st && n_slots >= c->units) st = load_all(c, err);
    if (st) {
        expert_cache_close(c);
        return st;
    }
    *out = c;
    return STRATA_OK;
}

uint32_t store_expert_lfu_transient(uint32_t n_slots)
{
    if (n_slots < 4) return 0;
    return n_slots / 8 > 1 ? n_slots / 8 : 1;
}

bool expert_cache_resize(expert_cache *c, uint32_t n)
{
    if (n < 1 || n > c->cap) return false;
    for (uint32_t i = 0; i < c->n_slots; i++)
        if (c->slots[i].pins) return false;
    for (uint32_t i = n; i < c->n_slots; i++) evict(c, i);
    for (uint32_t i = c->n_slots; i < n; i++) c->slots[i] = (cache_slot){.key = -1};
    c->n_slots = n;
    c->n_transient = c->policy == STORE_EXPERT_LFU ? store_expert_lfu_transient(n) : 0;
    return true;
}

void expert_cache_close(expert_cache *c)
{
    if (!c) return;
    read_batch_flush(&c->batch, c->io);
    for (uint32_t i = 0; c->slots && i < c->n_slots; i++) io_wait(c->io, &c->slots[i].ticket);
    free(c->sets);
    free(c->where);
    free(c->freq);
    free(c->slots);
    free(c);
}

/* ---- steps ---- */

strata_status expert_cache_pin(expert_cache *c, uint32_t set, const int32_t *ids, uint32_t n, uint32_t *taken,
                               strata_error *err)
{
    *taken = 0;
    if (set >= c->n_sets || !c->sets[set].set.n)
        return err_set(err, STRATA_E_INVALID, "store: layer %u has no experts", set);
    set_info *si = &c->sets[set];
    for (uint32_t i = 0; i < n; i++) {
        if (ids[i] < 0 || (uint32_t)ids[i] >= si->set.n_experts) {
            read_batch_flush(&c->batch, c->io);
            return err_set(err, STRATA_E_INVALID, "store: expert %d of layer %u does not exist", ids[i], set);
        }
        int32_t key = key_of(c, set, ids[i]), slot = c->where[key];
        if (slot >= 0) {
            cache_slot *s = &c->slots[slot];
            si->stats.hits++;
            si->stats.prefetch_used += s->prefetched;
            if (s->prefetched) io_promote(c->io, &s->ticket); /* its reads still queued are needed now */
            s->prefetched = false;
            s->last_use = ++c->tick;
        } else {
            if ((slot = victim(c, key)) < 0) break;
            evict(c, (uint32_t)slot);
            assign(c, (uint32_t)slot, set, ids[i], false);
            si->stats.misses++;
        }
        c->slots[slot].pins++;
        count_use(c, key);
        (*taken)++;
    }
    read_batch_flush(&c->batch, c->io);
    return STRATA_OK;
}

static cache_slot *pinned_slot(expert_cache *c, uint32_t set, int32_t id)
{
    if (set >= c->n_sets || id < 0 || (uint32_t)id >= c->max_experts) return NULL;
    int32_t slot = c->where[key_of(c, set, id)];
    return slot >= 0 && c->slots[slot].pins ? &c->slots[slot] : NULL;
}

bool expert_cache_ready(expert_cache *c, uint32_t set, int32_t id)
{
    cache_slot *s = pinned_slot(c, set, id);
    return s && !in_flight(s);
}

strata_status expert_cache_data(expert_cache *c, uint32_t set, int32_t id, const void *const **data, double *wait_s,
                                strata_error *err)
{
    cache_slot *s = pinned_slot(c, set, id);
    if (!s) return err_set(err, STRATA_E_INVALID, "store: expert %d of layer %u is not pinned", id, set);
    *wait_s += io_wait(c->io, &s->ticket);
    strata_status st = io_ticket_error(c->io, &s->ticket, err);
    if (st) { /* the slot holds no valid unit: forget it */
        c->where[s->key] = -1;
        s->key = -1;
        s->pins = 0;
        return st;
    }
    *data = s->ptrs;
    return STRATA_OK;
}

void expert_cache_unpin(expert_cache *c, uint32_t set, const int32_t *ids, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        cache_slot *s = pinned_slot(c, set, ids[i]);
        if (s) s->pins--;
    }
}

void expert_cache_prefetch(expert_cache *c, uint32_t set, const int32_t *ids, uint32_t n)
{
    if (set >= c->n_sets || !c->sets[set].set.n || c->n_slots >= c->units) return;
    for (uint32_t i = 0; i < n; i++) {
        if (ids[i] < 0 || (uint32_t)ids[i] >= c->sets[set].set.n_experts || c->where[key_of(c, set, ids[i])] >= 0)
            continue;
        int32_t slot = victim(c, key_of(c, set, ids[i]));
        if (slot < 0 || in_flight(&c->slots[slot])) break; /* never wait for a hint */
        evict(c, (uint32_t)slot);
        assign(c, (uint32_t)slot, set, ids[i], true);
        c->sets[set].stats.prefetch_issued++;
    }
    read_batch_flush(&c->batch, c->io);
}

store_expert_stats expert_cache_set_stats(const expert_cache *c, uint32_t set)
{
    return set < c->n_sets ? c->sets[set].stats : (store_expert_stats){0};
}

store_expert_stats expert_cache_totals(const expert_cache *c)
{
    store_expert_stats t = {0};
    for (uint32_t i = 0; i < c->n_sets; i++) {
        const store_expert_stats *s = &c->sets[i].stats;
        t.hits += s->hits;
        t.misses += s->misses;
        t.prefetch_issued += s->prefetch_issued;
        t.prefetch_used += s->prefetch_used;
        t.prefetch_wasted += s->prefetch_wasted;
    }
    return t;
}
