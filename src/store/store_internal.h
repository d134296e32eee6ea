/* The store's state, shared by store.c (open, the ring, acquire/release),
 * reshape.c (moving groups between resident and streamed under memory
 * pressure) and watchdog.c (the thread that asks for it). */
#ifndef STRATA_STORE_STORE_INTERNAL_H
#define STRATA_STORE_STORE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/expert_cache.h"
#include "store/io.h"
#include "store/layout.h"
#include "store/store.h"
#include "util/account.h"

typedef struct group_state {
    group_layout layout;
    bool resident;
    bool home;           /* resident at open: the budget allows it (grow goes no further) */
    uint8_t *buf;        /* resident: its buffer (store_map), NULL for a view; streamed: the slot's while assigned */
    bool view;           /* resident as a view of the file's pages in the page cache (view.c), not a copy */
    uint8_t *incoming;   /* promoted, read and waiting for a safe point (reshape.c) */
    const void **ptrs;
    int slot;            /* streamed: slot holding it, or -1 */
} group_state;

typedef struct slot {
    uint8_t *buf;        /* [slot_bytes], store_map */
    int group;           /* -1: free */
    io_ticket ticket;
} slot;

/* Requests of the watchdog and what reshaping did (reshape.c). */
typedef struct reshape_state {
    uint64_t want_free;      /* a shrink waiting for a safe point: bytes to free (0: none) */
    uint64_t want_headroom;  /* the headroom that asked for it (log line) */
    double want_t;           /* when that headroom was seen (clock_seconds) */
    bool want_grow;          /* promoted groups' buffers wait in group_state.incoming */
    bool log;                /* a line on stderr at each change */
    uint32_t shrinks, grows;
    uint64_t bytes_demoted, bytes_promoted; /* group bytes moved, summed */
    uint64_t freed;          /* net bytes returned to the system, summed over shrinks */
    double reaction_last_s, reaction_max_s; /* pressure seen -> memory unmapped */
    uint64_t promote_read;   /* bytes read by promotions (not streaming) */
    strata_status broken;    /* the ring could not be rebuilt: acquire fails with this */
    uint32_t want_expert_slots; /* the expert cache's size asked for (0: no change); applied by acquire */
    uint32_t expert_acct_slots; /* expert slots the account counts (>= the cache's while a grow waits) */
    uint32_t expert_home;    /* expert slots at open: growing goes no further */
    uint32_t expert_shrinks, expert_grows;
    bool psi_trigger;        /* the watchdog sleeps on a PSI trigger (else it samples alone) */
    uint64_t psi_wakeups;    /* times a PSI event woke it */
} reshape_state;

struct store_watchdog;

struct store {
    const gguf_file *f;
    store_config cfg;
    io_engine *io;
    uint32_t n_groups;
    group_state *groups;
    uint32_t *order;     /* streamed groups in execution order [n_groups] */
    uint32_t n_order, fetch_next;
    slot *slots;         /* [depth + 1]: room for the most slots a ring has */
    uint32_t n_slots, head; /* head: the slot holding the next group expected */
    uint64_t slot_bytes, resident_bytes, pass_bytes;
    mem_account *acct;       /* every byte the store maps (cfg.account, or its own) */
    bool own_acct;
    char refused[512];       /* the account's message for the last refused mapping */
    uint8_t *row_buf;
    uint64_t row_buf_bytes;
    double wait_s;
    expert_cache *experts;   /* NULL without experts */
    uint8_t *expert_mem;     /* [expert_slots][expert_slot_bytes] */
    uint32_t expert_units, expert_slots;
    uint64_t expert_slot_bytes;
    io_stats io_base; /* I/O done while loading resident groups, excluded from streaming stats */
    double load_s;    /* loading the resident groups (load.c): its time and bytes */
    uint64_t load_bytes;
    bool load_views;  /* the resident groups loaded as views of the page cache */
    /* Placement and ring change only under `lock` with no group held, so a
     * group's data never moves while the forward pass uses it. */
    pthread_mutex_t lock;
    uint32_t held;           /* groups acquired and not yet released */
    reshape_state rs;
    struct store_watchdog *wd; /* NULL: none running */
};

/* Anonymous mappings for group buffers and slots (mem.c): unmapping
 * returns the memory to the system at once, which free() may not (glibc
 * keeps freed chunks below its dynamic mmap threshold). Taken from the
 * account first (NULL, s->refused set, when it does not fit), then faulted
 * in. store_map / store_unmap: resident weights (ACCT_WEIGHTS). */
void *store_map_as(store *s, acct_cat c, uint64_t bytes);
void store_unmap_as(store *s, acct_cat c, void *p, uint64_t bytes);
void *store_map(store *s, uint64_t bytes);
void store_unmap(store *s, void *p, uint64_t bytes);
/* The store's part of the account: weights, slots, expert cache. */
uint64_t store_accounted(const store *s);
/* The account the store maps through: cfg.account, else one of its own
 * with cfg.budget. */
strata_status store_account_open(store *s, strata_error *err);
/* The bytes the store may hold for weights, slots and experts: what it
 * holds plus the account's room (0: no budget). */
uint64_t store_weight_budget(const store *s);
/* The same without the account (the caller takes mem_len first). */
void *mem_map(uint64_t bytes);
void mem_unmap(void *p, uint64_t bytes);
uint64_t mem_len(uint64_t bytes);

/* view.c: resident groups as views of the page cache (--mmap). Possible
 * when every file split is mapped; take: the account's charge (false,
 * s->refused set, when it does not fit); set_ptrs: the tensors point into
 * the file's mapping. release: any resident group's memory given back (a
 * view's pages dropped from the cache too when drop_cache). */
bool store_views_possible(const store *s);
bool store_view_take(store *s, uint32_t g);
void store_view_set_ptrs(store *s, uint32_t g);
void store_group_release(store *s, uint32_t g, bool drop_cache);

/* load.c: reads the resident groups (those marked resident by placement)
 * into their buffers, several reads in flight; leaves the rest to streaming
 * when the watchdog finds no room. */
strata_status store_load_resident(store *s, strata_error *err);

/* load_claim.c: memory claimed by loaders of other processes (see there).
 * Open, claim (loading), then per group: lock, read others' claims, check
 * and fault, unlock; claim (done), close. */
typedef struct load_claims {
    int fd;      /* the shared file; -1: none (no claims seen or made) */
    bool locked;
} load_claims;
void load_claims_open(load_claims *c, const char *path); /* path NULL: the per-user file in /dev/shm */
void load_claims_lock(load_claims *c);
void load_claims_unlock(load_claims *c);
uint64_t load_claims_others(const load_claims *c);       /* live, unexpired claims of other processes */
/* This process's claim: while loading (kept until done), or done (kept a
 * few seconds, for the caller to fault its later memory in). */
void load_claims_set(const load_claims *c, uint64_t bytes, bool loading);
void load_claims_close(load_claims *c);

/* store.c: the ring, emptied (reads waited for) and rebuilt for the
 * groups streamed now; slots are refilled at the next acquire. */
void store_ring_rebuild(store *s);
/* Queues group g's reads into buf (its layout). */
void store_submit_group(store *s, uint32_t g, uint8_t *buf, io_ticket *t);
/* Points group g's tensors into buf. */
void store_set_ptrs(store *s, uint32_t g, uint8_t *buf);

/* reshape.c: the account's reclaimer (a take beyond the budget by the
 * caller): demotes resident groups for `bytes`, at once when no group is
 * acquired. */
uint64_t store_reclaim(void *ctx, uint64_t bytes);
/* reshape.c: applies waiting requests; lock held, no group held. */
void store_reshape_apply(store *s);
/* reshape.c: resizes the expert cache as asked; lock held, no group held,
 * and in the thread that computes (store_acquire): the expert cache is
 * that thread's alone. */
void store_reshape_apply_experts(store *s);
/* Frees every promoted buffer not applied (close). */
void store_reshape_discard(store *s);

/* reshape.c: the ring made for the groups streamed now (after load
 * left some groups to streaming). */
void store_reshape_ring(store *s);
/* The ring bytes streaming the resident groups from `from` on would add. */
uint64_t store_ring_growth_from(const store *s, uint32_t from);

/* watchdog.c: created before the resident groups load (the load asks it
 * for room), its thread started after; stop joins and frees it. */
strata_status store_watchdog_create(store *s, strata_error *err);
/* Whether `bytes` more keep the headroom above the low-water mark (true
 * without a watchdog or a sample); *headroom as sampled. */
bool store_watchdog_room(store *s, uint64_t bytes, uint64_t *headroom);
/* Waits (up to timeout_s) until the headroom holds `bytes`; false when it
 * never did. True at once without a watchdog or a sample. */
bool store_watchdog_wait_room(store *s, uint64_t bytes, double timeout_s, uint64_t *headroom);
strata_status store_watchdog_start(store *s, strata_error *err);
/* Records (under the store's lock) whether a PSI trigger is registered,
 * and counts a wakeup by one. */
void store_watchdog_note(store *s, bool trigger, bool wakeup);
void store_watchdog_stop(store *s);

#endif
