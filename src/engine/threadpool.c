/* Fork-join pool. Workers spin on the job counter before sleeping: a
 * decode step dispatches hundreds of small jobs, and a condition-variable
 * wake-up per job would cost more than the job. Spinning uses the CPU's
 * pause hint, not sched_yield: a yield is a system call per round, and on a
 * machine with a core per thread there is nobody to yield to. The dispatcher
 * only takes the mutex when a worker has gone to sleep. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "engine/threadpool.h"

#define SPIN_ROUNDS (1 << 18) /* about 10 ms of pause hints before sleeping */
#define YIELD_EVERY 4096      /* ...with a yield now and then in case threads outnumber cores */

struct pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    atomic_uint generation; /* bumped once per job */
    atomic_int pending;     /* workers still running the current job */
    atomic_bool quit;
    atomic_int sleepers;    /* workers waiting on the condition variable */
    pool_fn fn;
    void *ctx;
    struct worker_arg *args;
    int started; /* highest worker index created */
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static void run_job(pool *p, int ith)
{
    p->fn(p->ctx, ith, p->n);
    atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel);
}

static unsigned wait_for_job(pool *p, unsigned seen)
{
    for (int i = 0; i < SPIN_ROUNDS; i++) {
        unsigned g = atomic_load_explicit(&p->generation, memory_order_acquire);
        if (g != seen || atomic_load(&p->quit)) return g;
        cpu_relax();
        if (i % YIELD_EVERY == YIELD_EVERY - 1) sched_yield();
    }
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->sleepers, 1); /* before the check: see pool_run */
    unsigned g;
    while ((g = atomic_load(&p->generation)) == seen && !atomic_load(&p->quit)) pthread_cond_wait(&p->wake, &p->mu);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->mu);
    return g;
}

typedef struct worker_arg {
    pool *p;
    int ith;
} worker_arg;

static void *worker(void *arg)
{
    worker_arg *w = arg;
    unsigned seen = 0;
    for (;;) {
        seen = wait_for_job(w->p, seen);
        if (atomic_load(&w->p->quit)) return NULL;
        run_job(w->p, w->ith);
    }
}

pool *pool_new(int n_threads)
{
    if (n_threads < 1) n_threads = 1;
    pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    p->args = calloc((size_t)n_threads, sizeof *p->args);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    if (!p->threads || !p->args) {
        pool_free(p);
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        p->args[i] = (worker_arg){p, i};
        if (pthread_create(&p->threads[i], NULL, worker, &p->args[i]) != 0) {
            p->n = i; /* run with the threads we have */
            break;
        }
        p->started = i;
    }
    return p;
}

void pool_free(pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, true);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i <= p->started; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    free(p->threads);
    free(p->args);
    free(p);
}

int pool_size(const pool *p) { return p->n; }

void pool_run(pool *p, pool_fn fn, void *ctx)
{
    if (p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->pending, p->n);
    /* Sequentially consistent bump, then read of sleepers: a worker counts
     * itself a sleeper before it re-reads the generation, so either it sees
     * this job or this read sees it and the broadcast wakes it. */
    atomic_fetch_add(&p->generation, 1);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }
    run_job(p, 0);
    for (long i = 1; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; i++) {
        cpu_relax();
        if (i % YIELD_EVERY == 0) sched_yield();
    }
}

void pool_share(long n, int ith, int nth, long *begin, long *end)
{
    long per = n / nth, extra = n % nth;
    *begin = ith * per + (ith < extra ? ith : extra);
    *end = *begin + per + (ith < extra);
}
