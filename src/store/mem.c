/* Group buffers and ring slots as anonymous mappings: a demoted group's
 * memory goes back to the system at munmap (free() would keep it in the
 * heap below glibc's dynamic mmap threshold, and ASan quarantines it). */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "store/store_internal.h"
#include "util/error.h"

#define HUGE_PAGE (2u << 20)
#define PAGE 4096u

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

static uint64_t round_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* A mapping of len bytes starting on an `align` boundary (the slack around
 * it unmapped). */
static void *map_aligned(uint64_t len, uint64_t align)
{
    uint64_t span = len + (align > PAGE ? align : 0);
    uint8_t *p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    uint8_t *a = (uint8_t *)round_up((uintptr_t)p, align);
    if (a > p) munmap(p, (size_t)(a - p));
    if (p + span > a + len) munmap(a + len, (size_t)(p + span - (a + len)));
    return a;
}

uint64_t mem_len(uint64_t bytes) { return round_up(bytes ? bytes : PAGE, PAGE); }

/* Faults every page of [p, p+len) in: the kernel zeroes them (as any first
 * touch does) and charges them to the process now, without a second pass
 * of zeros from here (memset where the kernel lacks MADV_POPULATE_WRITE,
 * before 5.14). */
static void populate(void *p, uint64_t len)
{
    if (madvise(p, len, MADV_POPULATE_WRITE) != 0) memset(p, 0, len);
}

/* Faulting in is the kernel zeroing pages and, in a virtual machine, the
 * host backing them: on this workplace's VM (free page reporting) fresh
 * memory faults in at 0.45 GB/s per vCPU, 1.0 with two. So a large buffer
 * is faulted in by several threads at once, a part each on 2 MiB bounds. */
#define PARALLEL_MIN (64u << 20) /* smaller buffers: one thread */
#define PARALLEL_MAX 8

typedef struct fault_part {
    uint8_t *p;
    uint64_t len;
} fault_part;

static void *populate_part(void *arg)
{
    fault_part *f = arg;
    populate(f->p, f->len);
    return NULL;
}

static void populate_parallel(uint8_t *p, uint64_t len)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int n = len < PARALLEL_MIN || cpus < 2 ? 1 : cpus < PARALLEL_MAX ? (int)cpus : PARALLEL_MAX;
    fault_part parts[PARALLEL_MAX];   /* [n] */
    pthread_t threads[PARALLEL_MAX]; /* [n]: part 0 is this thread's */
    bool started[PARALLEL_MAX] = {false};
    uint64_t step = (len / (uint64_t)n + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE, at = 0;
    int k = 0;
    for (; k < n && at < len; k++, at += step)
        parts[k] = (fault_part){p + at, len - at < step ? len - at : step};
    for (int i = 1; i < k; i++) started[i] = pthread_create(&threads[i], NULL, populate_part, &parts[i]) == 0;
    populate(parts[0].p, parts[0].len);
    for (int i = 1; i < k; i++) {
        if (started[i]) pthread_join(threads[i], NULL);
        else populate(parts[i].p, parts[i].len); /* no thread to be had: here */
    }
}

void *mem_map(uint64_t bytes)
{
    uint64_t len = mem_len(bytes);
    bool huge = len >= HUGE_PAGE;
    void *p = map_aligned(len, huge ? HUGE_PAGE : PAGE);
    if (!p) return NULL;
    /* Huge pages spare TLB misses when compute scans the weights, and halve
     * the scatter-gather segments of each direct read into them; asked
     * before the first touch, so the faults take huge pages at once. */
    if (huge) madvise(p, len, MADV_HUGEPAGE);
    populate_parallel(p, len); /* faulted in now: see engine.c scratch() */
    return p;
}

void mem_unmap(void *p, uint64_t bytes)
{
    if (p) munmap(p, mem_len(bytes));
}

/* The account takes the pages before they are touched: a mapping the
 * budget cannot hold is refused before it exists. */
void *store_map_as(store *s, acct_cat c, uint64_t bytes)
{
    strata_error err;
    if (acct_take(s->acct, ACCT_RAM, c, mem_len(bytes), &err)) {
        snprintf(s->refused, sizeof s->refused, "%s", err.message);
        return NULL;
    }
    void *p = mem_map(bytes);
    if (!p) acct_give(s->acct, ACCT_RAM, c, mem_len(bytes));
    return p;
}

void store_unmap_as(store *s, acct_cat c, void *p, uint64_t bytes)
{
    if (!p) return;
    mem_unmap(p, bytes);
    acct_give(s->acct, ACCT_RAM, c, mem_len(bytes));
}

void *store_map(store *s, uint64_t bytes) { return store_map_as(s, ACCT_WEIGHTS, bytes); }
void store_unmap(store *s, void *p, uint64_t bytes) { store_unmap_as(s, ACCT_WEIGHTS, p, bytes); }

uint64_t store_accounted(const store *s)
{
    acct_snapshot a;
    acct_snapshot_get(s->acct, ACCT_RAM, &a);
    return a.used[ACCT_WEIGHTS] + a.used[ACCT_SLOTS] + a.used[ACCT_EXPERTS];
}

strata_status store_account_open(store *s, strata_error *err)
{
    s->acct = s->cfg.account;
    if (s->acct) return STRATA_OK;
    if (!(s->acct = acct_new(s->cfg.budget))) return err_set(err, STRATA_E_NOMEM, "out of memory");
    s->own_acct = true;
    return STRATA_OK;
}

uint64_t store_weight_budget(const store *s)
{
    uint64_t room = acct_room(s->acct, ACCT_RAM);
    if (room == UINT64_MAX) return 0;
    uint64_t b = room + store_accounted(s);
    return b ? b : 1; /* a full account: nothing fits (0 would mean no limit) */
}
