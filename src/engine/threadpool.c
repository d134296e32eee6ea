/* Fork-join pool. Waiting (a worker for the next job, the caller for the
 * workers to finish) spins briefly with the CPU's pause hint, then sleeps
 * on a futex.
 *
 * Why spin at all: a decode step dispatches hundreds of small jobs a few
 * microseconds apart, and a sleep/wake round trip per job would cost more
 * than the job. Why only briefly: when another process holds a core, a
 * spinning thread burns the time slice that the thread it waits for needs,
 * and the scheduler charges the spinner for it, so it is not favoured when
 * it finally has work. Measured before this bound: 183 tok/s with 2 threads
 * against 29,312 with 1 on a 2-core machine with one busy process. A thread
 * that sleeps is woken at once and, having used little CPU, preempts the
 * busy process.
 *
 * The spin is bounded in time (SPIN_NS), converted once to a count of pause
 * hints by timing them, so the loop itself makes no clock calls (on some VMs
 * reading the clock is a system call) and behaves alike on CPUs whose pause
 * lasts 10 or 150 cycles.
 *
 * Shares are claimed, not assigned: whichever thread is running takes the
 * next unclaimed ith from a counter, so the caller does the share of a
 * worker that has not woken up yet instead of waiting for it (under
 * contention that worker may not run for a whole time slice). Each ith
 * still runs exactly once per job, possibly on another thread than the
 * one with that index; the jobs index per-share scratch by ith, never by
 * thread.
 *
 * Wake-ups are system calls only when somebody sleeps: each side announces
 * itself as a sleeper (sequentially consistent) before it re-reads the word
 * it waits on, and the other side changes the word (sequentially
 * consistent) before it reads the sleeper count; so either the sleeper sees
 * the change or the waker sees the sleeper. FUTEX_WAIT itself re-checks the
 * word in the kernel, so a change between the check and the sleep is not
 * lost either. */
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "engine/threadpool.h"

/* Longer than the gaps between the jobs of one decode step (serial norm,
 * rope and residual work), shorter than a scheduler time slice by far.
 * Measured on 16 cores: 2 us made 16-thread decode 4x slower (threads slept
 * between jobs and the wake-ups cost more than the gaps); 20 and 50 us kept
 * or beat the old 10 ms spin at 2-16 threads. */
#ifndef SPIN_NS
#define SPIN_NS 20000
#endif
#define CALIBRATE_PAUSES 4096

/* A thread's own cache line: the time its shares ran (pool_stats), added
 * to by that thread only, so that threads finishing together do not
 * contend for one line. */
typedef struct thread_slot {
    _Alignas(64) atomic_ullong busy_ns;
    struct pool *pool;
} thread_slot;

struct pool {
    int n;
    pthread_t *threads;
    int started; /* highest worker index created */
    pool_fn fn;
    void *ctx;
    /* Separate cache lines: workers poll generation while they decrement
     * pending, and the caller polls pending while it bumps generation. */
    _Alignas(64) atomic_uint generation; /* bumped once per job (and at quit) */
    atomic_int job_sleepers;             /* workers sleeping on generation */
    atomic_bool quit;
    _Alignas(64) atomic_int next_share;  /* the next ith to claim in the current job */
    atomic_int pending;                  /* shares of the current job not yet done */
    atomic_int caller_sleeping;          /* the caller sleeps on pending */
    thread_slot *slots;                  /* [n]: 0 the caller's, i worker i's */
    unsigned long long jobs, wall_ns;    /* pool_stats, in ns: the caller's alone */
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

/* The futex word is the 32-bit atomic itself; the kernel reads it as a
 * plain int, which atomic_uint / atomic_int are on Linux. */
_Static_assert(sizeof(atomic_uint) == 4 && sizeof(atomic_int) == 4, "futex words are 32-bit");

static void futex_wait(void *word, unsigned expected)
{
    /* Returns on a wake, on a signal, or at once if *word != expected: the
     * callers loop and re-check, so all three are fine. */
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void futex_wake(void *word, int count)
{
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, count, NULL, NULL, 0);
}

static long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Pause hints that fit in SPIN_NS; the fastest of a few timings, since a
 * preempted timing only overstates the cost (and so shortens the spin). */
static int spin_iters;
static pthread_once_t spin_once = PTHREAD_ONCE_INIT;

static void calibrate_spin(void)
{
    long best = -1;
    for (int t = 0; t < 3; t++) {
        long t0 = now_ns();
        for (int i = 0; i < CALIBRATE_PAUSES; i++) cpu_relax();
        long dt = now_ns() - t0;
        if (best < 0 || dt < best) best = dt;
    }
    if (best < 1) best = 1;
    long iters = (long)SPIN_NS * CALIBRATE_PAUSES / best;
    spin_iters = (int)(iters < 64 ? 64 : iters > (1L << 22) ? (1L << 22) : iters);
}

/* Spins until *word != value, for at most spin_iters pause hints; returns
 * whether it changed. */
static bool spin_while_uint(atomic_uint *word, unsigned value)
{
    for (int i = 0; i < spin_iters; i++) {
        if (atomic_load_explicit(word, memory_order_acquire) != value) return true;
        cpu_relax();
    }
    return false;
}

static bool spin_while_nonzero(atomic_int *word)
{
    for (int i = 0; i < spin_iters; i++) {
        if (atomic_load_explicit(word, memory_order_acquire) == 0) return true;
        cpu_relax();
    }
    return false;
}

/* Waits for the generation to move past seen; returns the new one. */
static unsigned wait_for_job(pool *p, unsigned seen)
{
    if (!spin_while_uint(&p->generation, seen)) {
        atomic_fetch_add(&p->job_sleepers, 1); /* before the re-check: see top */
        while (atomic_load(&p->generation) == seen) futex_wait(&p->generation, seen);
        atomic_fetch_sub(&p->job_sleepers, 1);
    }
    return atomic_load_explicit(&p->generation, memory_order_acquire);
}

/* Waits until every claimed share of the current job is done. */
static void wait_for_workers(pool *p)
{
    if (spin_while_nonzero(&p->pending)) return;
    atomic_store(&p->caller_sleeping, 1);
    int left;
    while ((left = atomic_load(&p->pending)) != 0) futex_wait(&p->pending, (unsigned)left);
    atomic_store(&p->caller_sleeping, 0);
}

/* Runs unclaimed shares of the current job until none are left. A worker
 * that woke late may claim a share of the next job: that is safe, since the
 * caller stores fn, ctx and pending before it resets next_share, and the
 * claim reads the reset (or a later claim). */
static void run_shares(pool *p, thread_slot *slot)
{
    for (int ith; (ith = atomic_fetch_add(&p->next_share, 1)) < p->n;) {
        long t0 = now_ns();
        p->fn(p->ctx, ith, p->n);
        atomic_fetch_add_explicit(&slot->busy_ns, (unsigned long long)(now_ns() - t0), memory_order_relaxed);
        /* Only the last share out can wake the caller, and only needs to
         * when the caller went to sleep. */
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_sleeping))
            futex_wake(&p->pending, 1);
    }
}

static void *worker(void *arg)
{
    thread_slot *slot = arg;
    pool *p = slot->pool;
    unsigned seen = 0;
    for (;;) {
        seen = wait_for_job(p, seen);
        if (atomic_load(&p->quit)) return NULL;
        run_shares(p, slot);
    }
}

static void start_workers(pool *p)
{
    for (int i = 1; i < p->n; i++) {
        if (pthread_create(&p->threads[i], NULL, worker, &p->slots[i]) != 0) {
            p->n = i; /* run with the threads we have */
            break;
        }
        p->started = i;
    }
}

pool *pool_new(int n_threads)
{
    if (n_threads < 1) n_threads = 1;
    pthread_once(&spin_once, calibrate_spin);
    pool *p = aligned_alloc(64, (sizeof(pool) + 63) / 64 * 64);
    if (!p) return NULL;
    memset(p, 0, sizeof *p); /* atomics start at zero, as after atomic_init */
    p->n = n_threads;
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    p->slots = aligned_alloc(64, (size_t)n_threads * sizeof *p->slots);
    if (!p->threads || !p->slots) {
        pool_free(p);
        return NULL;
    }
    memset(p->slots, 0, (size_t)n_threads * sizeof *p->slots);
    for (int i = 0; i < n_threads; i++) p->slots[i].pool = p;
    start_workers(p);
    return p;
}

void pool_free(pool *p)
{
    if (!p) return;
    /* Quit is a generation bump like a job, so spinning and sleeping
     * workers both see it; the wake is unconditional since it is rare. */
    atomic_store(&p->quit, true);
    atomic_fetch_add(&p->generation, 1);
    futex_wake(&p->generation, INT_MAX);
    for (int i = 1; i <= p->started; i++) pthread_join(p->threads[i], NULL);
    free(p->threads);
    free(p->slots);
    free(p);
}

int pool_size(const pool *p) { return p->n; }

/* Reading the clock costs ~20 ns (vDSO), against jobs of microseconds. */
void pool_run(pool *p, pool_fn fn, void *ctx)
{
    long t0 = now_ns();
    p->jobs++;
    if (p->n == 1) {
        fn(ctx, 0, 1);
        unsigned long long dt = (unsigned long long)(now_ns() - t0);
        p->wall_ns += dt;
        atomic_fetch_add_explicit(&p->slots[0].busy_ns, dt, memory_order_relaxed);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->pending, p->n);
    atomic_store(&p->next_share, 0);     /* publishes fn, ctx and pending to claimers */
    atomic_fetch_add(&p->generation, 1); /* see top for the order against job_sleepers */
    if (atomic_load(&p->job_sleepers) > 0) futex_wake(&p->generation, INT_MAX);
    run_shares(p, &p->slots[0]);
    wait_for_workers(p);
    p->wall_ns += (unsigned long long)(now_ns() - t0);
}

pool_stats pool_get_stats(const pool *p)
{
    unsigned long long busy = 0;
    for (int i = 0; i < p->n; i++) busy += atomic_load_explicit(&p->slots[i].busy_ns, memory_order_relaxed);
    return (pool_stats){p->jobs, (double)p->wall_ns * 1e-9, (double)busy * 1e-9};
}

void pool_share(long n, int ith, int nth, long *begin, long *end)
{
    long per = n / nth, extra = n % nth;
    *begin = ith * per + (ith < extra ? ith : extra);
    *end = *begin + per + (ith < extra);
}
