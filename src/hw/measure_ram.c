/* RAM read bandwidth: threads sum disjoint slices of a buffer far larger
 * than the caches; the best round over a short time is reported. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "hw/hw_internal.h"

#define RAM_ALIGN (2u << 20)
#define MAX_THREADS 1024
#define MAX_ROUNDS 1000
#define RAM_PREFETCH_WORDS 256 /* 2 KiB ahead, as the kernels prefetch */

/* The read loop: two streams (the two halves of the slice) read side by
 * side with prefetch hints ahead of each, as the engine's kernels read two
 * weight rows at a time: a single stream per core, left to the hardware
 * prefetchers, keeps too few requests in flight and under-reports what
 * code can read here (16-18 against 18-22 GB/s on one core). Not instrumented by the
 * sanitizers so that sanitized builds measure the memory rather than the
 * shadow checks. */
__attribute__((noinline, no_sanitize("address", "undefined"))) static uint64_t read_words(const uint64_t *w,
                                                                             size_t n)
{
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
    size_t half = n / 2, i = 0;
    const uint64_t *v = w + half;
    for (; i + 4 <= half; i += 4) {
        if (i % 8 == 0) { /* a hint per cache line and stream */
            __builtin_prefetch(w + i + RAM_PREFETCH_WORDS, 0, 3);
            __builtin_prefetch(v + i + RAM_PREFETCH_WORDS, 0, 3);
        }
        a0 += w[i];
        a1 += w[i + 1];
        a2 += w[i + 2];
        a3 += w[i + 3];
        b0 += v[i];
        b1 += v[i + 1];
        b2 += v[i + 2];
        b3 += v[i + 3];
    }
    for (size_t k = i; k < half; k++) a0 += w[k]; /* tails of both halves */
    for (size_t k = half + i; k < n; k++) b0 += w[k];
    return a0 ^ a1 ^ a2 ^ a3 ^ b0 ^ b1 ^ b2 ^ b3;
}

static volatile uint64_t ram_sink; /* keeps the reads observable */

typedef struct ram_shared {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int state;                     /* 0 wait, 1 run, 2 abort */
    pthread_barrier_t start, end;
    atomic_int stop;
} ram_shared;

typedef struct ram_job {
    ram_shared *sh;
    const uint64_t *base;
    size_t words;
    uint64_t sink;
} ram_job;

static void *worker(void *arg)
{
    ram_job *j = arg;
    ram_shared *sh = j->sh;
    pthread_mutex_lock(&sh->lock);
    while (sh->state == 0) pthread_cond_wait(&sh->cond, &sh->lock);
    int state = sh->state;
    pthread_mutex_unlock(&sh->lock);
    if (state != 1) return NULL;
    for (;;) {
        pthread_barrier_wait(&sh->start);
        if (atomic_load(&sh->stop)) break;
        j->sink += read_words(j->base, j->words);
        pthread_barrier_wait(&sh->end);
    }
    return NULL;
}

/* Rounds of all threads reading their slice once; best bytes/s. */
static double run_rounds(ram_shared *sh, uint64_t bytes, double min_seconds)
{
    double best = 0, begin = hw_now();
    for (int round = 0; round < MAX_ROUNDS; round++) {
        double t0 = hw_now();
        pthread_barrier_wait(&sh->start);
        pthread_barrier_wait(&sh->end);
        double dt = hw_now() - t0;
        if (dt > 0 && (double)bytes / dt > best) best = (double)bytes / dt;
        if (round >= 2 && hw_now() - begin >= min_seconds) break;
    }
    atomic_store(&sh->stop, 1);
    pthread_barrier_wait(&sh->start);
    return best;
}

static void release(ram_shared *sh, int state)
{
    pthread_mutex_lock(&sh->lock);
    sh->state = state;
    pthread_cond_broadcast(&sh->cond);
    pthread_mutex_unlock(&sh->lock);
}

static double measure_threads(const uint64_t *buf, size_t words, int threads, double min_seconds)
{
    ram_shared sh = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    atomic_init(&sh.stop, 0);
    ram_job *jobs = calloc((size_t)threads, sizeof *jobs);
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    int started = 0;
    size_t per = words / (size_t)threads / 8 * 8;
    for (int t = 0; jobs && tids && t < threads; t++) {
        jobs[t] = (ram_job){&sh, buf + (size_t)t * per, per, 0};
        if (pthread_create(&tids[t], NULL, worker, &jobs[t]) != 0) break;
        started++;
    }
    bool ok = started == threads && per > 0;
    if (ok && pthread_barrier_init(&sh.start, NULL, (unsigned)threads + 1) != 0) ok = false;
    if (ok && pthread_barrier_init(&sh.end, NULL, (unsigned)threads + 1) != 0) {
        pthread_barrier_destroy(&sh.start);
        ok = false;
    }
    double bw = 0;
    release(&sh, ok ? 1 : 2);
    if (ok) bw = run_rounds(&sh, (uint64_t)per * 8 * (uint64_t)threads, min_seconds);
    for (int t = 0; t < started; t++) {
        pthread_join(tids[t], NULL);
        ram_sink += jobs[t].sink;
    }
    if (ok) {
        pthread_barrier_destroy(&sh.start);
        pthread_barrier_destroy(&sh.end);
    }
    free(jobs);
    free(tids);
    return bw;
}

double hw_measure_ram_bw(uint64_t bytes, int threads, double min_seconds)
{
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (bytes < (1u << 20)) bytes = 1u << 20;
    bytes = (bytes + RAM_ALIGN - 1) / RAM_ALIGN * RAM_ALIGN;
    uint64_t *buf = aligned_alloc(RAM_ALIGN, bytes);
    if (!buf) return 0;
    madvise(buf, bytes, MADV_HUGEPAGE);
    memset(buf, 0x11, bytes);
    double bw = measure_threads(buf, bytes / 8, threads, min_seconds);
    free(buf);
    return bw;
}
