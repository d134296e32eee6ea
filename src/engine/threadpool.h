/* A fixed pool of worker threads that run one function on all threads at a
 * time (fork-join). The calling thread takes part as thread 0. */
#ifndef STRATA_ENGINE_THREADPOOL_H
#define STRATA_ENGINE_THREADPOOL_H

typedef void (*pool_fn)(void *ctx, int ith, int nth);
typedef struct pool pool;

/* n_threads >= 1 counts the caller; NULL if threads cannot be created. */
pool *pool_new(int n_threads);
void pool_free(pool *p);
int pool_size(const pool *p);
/* Runs fn(ctx, i, n) for i in 0..n-1 in parallel and returns when all are
 * done. Each i runs exactly once, on whichever pool thread claims it first
 * (the caller included, which takes the shares of workers not yet awake):
 * index per-share scratch by i, never assume i names a thread. */
void pool_run(pool *p, pool_fn fn, void *ctx);

/* Where the threads' time went, summed since the pool was made: jobs run
 * (pool_run calls), the caller's wall time inside them (dispatch to join),
 * and the time shares ran, summed over threads. With n threads, n x wall
 * - busy is time the threads waited inside jobs (waking, imbalance,
 * joining); time outside jobs is the caller's alone. */
typedef struct pool_stats {
    unsigned long long jobs;
    double wall_s, busy_s;
} pool_stats;
pool_stats pool_get_stats(const pool *p);

/* The [begin, end) share of thread ith out of nth for n items. */
void pool_share(long n, int ith, int nth, long *begin, long *end);

#endif
