#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "store/io.h"
#include "util/error.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14 */
#endif

#define QUEUE_CAP 4096 /* requests per queue */
#define PAGE 4096u
#define HUGE_ALIGN (2u << 20)
#define MINCORE_PAGES 1024u /* pages asked about per mincore call */

/* A FIFO ring of requests. */
typedef struct io_queue {
    io_request rq[QUEUE_CAP];
    uint32_t head, count;
} io_queue;

enum { Q_DEMAND, Q_SPECULATIVE, Q_COUNT };

typedef struct io_file {
    int direct_fd, buffered_fd;
    uint64_t size;
    /* [size] the whole file, read-only and shared, on a 2 MiB boundary (the page cache's
     * huge folios map whole): mincore asks it which pages are cached, and resident groups
     * may be views of it (--mmap); NULL: no mapping */
    const uint8_t *map;
    struct timespec mtime;
    const char *path;
} io_file;

struct io_engine {
    io_file *files;
    uint32_t n_files;
    atomic_bool direct;
    store_fault_fn fault;
    void *fault_ctx;
    pthread_mutex_t mu;
    pthread_cond_t have_work, done;
    io_queue queue[Q_COUNT]; /* demand reads are served first */
    bool quit;
    uint32_t serving;      /* requests being read now */
    uint64_t active_since; /* when serving last rose from 0 */
    int n_threads;
    pthread_t *threads;
    atomic_uint_fast64_t bytes, requests, busy_ns, cached;
    atomic_uint_fast64_t active_ns; /* wall time with a read in progress (under mu) */
};

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* Whether every page of [offset, offset+length) is in the page cache (the
 * kernel says so only to the file's owner or writers: others read direct). */
static bool range_cached(const io_file *f, uint64_t offset, uint64_t length)
{
    unsigned char vec[MINCORE_PAGES];
    uint64_t end = offset + length < f->size ? offset + length : f->size;
    if (!f->map || offset >= end) return false;
    for (uint64_t o = offset / PAGE * PAGE; o < end; o += (uint64_t)MINCORE_PAGES * PAGE) {
        uint64_t n = end - o < (uint64_t)MINCORE_PAGES * PAGE ? end - o : (uint64_t)MINCORE_PAGES * PAGE;
        if (mincore((void *)(f->map + o), n, vec) != 0) return false;
        for (uint64_t i = 0; i < (n + PAGE - 1) / PAGE; i++)
            if (!(vec[i] & 1)) return false;
    }
    return true;
}

/* iov[0..n) (n <= IO_MAX_PARTS) minus its first `skip` bytes into out;
 * returns the entries written. */
static int iov_from(const struct iovec *iov, int n, uint64_t skip, struct iovec *out)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (skip >= iov[i].iov_len) {
            skip -= iov[i].iov_len;
            continue;
        }
        out[k++] = (struct iovec){(uint8_t *)iov[i].iov_base + skip, iov[i].iov_len - skip};
        skip = 0;
    }
    return k;
}

/* Reads the file from offset on into the buffers iov[0..n) (n <=
 * IO_MAX_PARTS) in turn; a read may stop early only at the end of the file
 * (the last run is rounded up past it), the rest is zeroed. cached: from
 * the page cache (buffered, pages kept). Returns 0 or an errno (-1 for a
 * short read inside the file). */
static int read_vec(io_engine *io, io_file *f, uint64_t offset, const struct iovec *iov, int n, bool cached)
{
    struct iovec rest[IO_MAX_PARTS];
    uint64_t done = 0, length = 0;
    for (int i = 0; i < n; i++) length += iov[i].iov_len;
    while (done < length) {
        bool direct = !cached && atomic_load(&io->direct);
        int k = iov_from(iov, n, done, rest);
        ssize_t r = preadv(direct ? f->direct_fd : f->buffered_fd, rest, k, (off_t)(offset + done));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == EINVAL && direct) { /* the filesystem refuses O_DIRECT reads */
            atomic_store(&io->direct, false);
            continue;
        }
        if (r < 0) return errno;
        if (r == 0) {
            if (offset + done < f->size) return -1;
            for (int i = 0; i < k; i++) memset(rest[i].iov_base, 0, rest[i].iov_len);
            break;
        }
        done += (uint64_t)r;
    }
    if (!cached && !atomic_load(&io->direct)) posix_fadvise(f->buffered_fd, (off_t)offset, (off_t)length, POSIX_FADV_DONTNEED);
    return 0;
}

static int read_range(io_engine *io, io_file *f, uint8_t *dst, uint64_t offset, uint64_t length, bool cached)
{
    struct iovec one = {dst, length};
    return read_vec(io, f, offset, &one, 1, cached);
}

/* Reads a coalesced request's range once, each byte into the first part
 * that holds it, then copies every overlap into the part after. */
static int read_parts(io_engine *io, io_file *f, const io_request *rq)
{
    struct iovec iov[IO_MAX_PARTS];
    int n = 0;
    uint64_t end = rq->offset;
    for (const io_part *p = rq->parts; p && n < IO_MAX_PARTS; p = p->next) {
        uint64_t skip = end - p->offset; /* bytes the part before reads */
        iov[n++] = (struct iovec){p->dst + skip, p->length - skip};
        end = p->offset + p->length;
    }
    int error = read_vec(io, f, rq->offset, iov, n, false);
    for (const io_part *p = rq->parts; !error && p && p->next; p = p->next) {
        const io_part *q = p->next;
        if (q->offset < p->offset + p->length) memcpy(q->dst, p->dst + (q->offset - p->offset), p->offset + p->length - q->offset);
    }
    return error;
}

/* Faults [offset, offset+length) of the file's mapping in, reading what is
 * not cached (with readahead) into the page cache; no copy. Returns 0 or
 * an errno (EFAULT: the file is shorter than the range). */
static int populate_range(const io_file *f, uint64_t offset, uint64_t length)
{
    if (!f->map) return EINVAL;
    uint64_t end = offset + length < f->size ? offset + length : f->size;
    if (offset >= end) return 0;
    uint64_t start = offset / PAGE * PAGE;
    if (madvise((void *)(f->map + start), end - start, MADV_POPULATE_READ) == 0) return 0;
    if (errno != EINVAL) return errno;
    /* before Linux 5.14: one read per page does the same */
    volatile uint8_t sink = 0;
    for (uint64_t o = start; o < end; o += PAGE) sink ^= f->map[o];
    (void)sink;
    return 0;
}

/* Completes one read of ticket t; a failure is reported at `offset`, the
 * start of the range that read was for. */
static void complete_ticket(io_engine *io, io_ticket *t, uint32_t split, uint64_t offset, int error)
{
    int none = 0;
    if (error && atomic_compare_exchange_strong(&t->error, &none, error)) {
        t->error_offset = offset;
        t->error_split = split;
    }
    if (atomic_fetch_sub(&t->pending, 1) == 1) {
        pthread_mutex_lock(&io->mu);
        pthread_cond_broadcast(&io->done);
        pthread_mutex_unlock(&io->mu);
    }
}

static void complete(io_engine *io, const io_request *rq, int error)
{
    if (!rq->parts) {
        complete_ticket(io, rq->ticket, rq->split, rq->offset, error);
        return;
    }
    /* each part's failure names its own range, not the merged request's start */
    for (io_part *p = rq->parts, *next; p; p = next) {
        next = p->next; /* a completed part may be reused at once */
        complete_ticket(io, p->ticket, rq->split, p->offset, error);
    }
}

/* Whether a request fills ticket t (one of its parts does). */
static bool fills(const io_request *rq, const io_ticket *t)
{
    if (!rq->parts) return rq->ticket == t;
    for (const io_part *p = rq->parts; p; p = p->next)
        if (p->ticket == t) return true;
    return false;
}

static void serve(io_engine *io, const io_request *rq)
{
    uint64_t t0 = now_ns();
    int error = io->fault ? io->fault(io->fault_ctx, rq->split, rq->offset, rq->length) : 0;
    io_file *f = &io->files[rq->split];
    bool cached = !rq->parts && rq->dst && rq->cached && range_cached(f, rq->offset, rq->length);
    if (rq->parts && !error) error = read_parts(io, f, rq);
    else if (!error && !atomic_load(&rq->ticket->error))
        error = !rq->dst ? populate_range(f, rq->offset, rq->length)
                             : read_range(io, f, rq->dst, rq->offset, rq->length, cached);
    if (cached && !error) atomic_fetch_add(&io->cached, rq->length);
    atomic_fetch_add(&io->busy_ns, now_ns() - t0);
    atomic_fetch_add(&io->bytes, rq->length);
    atomic_fetch_add(&io->requests, 1);
    complete(io, rq, error);
}

static io_request pop(io_queue *q)
{
    io_request rq = q->rq[q->head];
    q->head = (q->head + 1) % QUEUE_CAP;
    q->count--;
    return rq;
}

static void push(io_queue *q, const io_request *rq) { q->rq[(q->head + q->count++) % QUEUE_CAP] = *rq; }

static void *worker(void *arg)
{
    io_engine *io = arg;
    pthread_mutex_lock(&io->mu);
    for (;;) {
        while (!io->queue[Q_DEMAND].count && !io->queue[Q_SPECULATIVE].count && !io->quit)
            pthread_cond_wait(&io->have_work, &io->mu);
        if (io->quit) break;
        io_request rq = pop(&io->queue[io->queue[Q_DEMAND].count ? Q_DEMAND : Q_SPECULATIVE]);
        if (io->serving++ == 0) io->active_since = now_ns();
        pthread_mutex_unlock(&io->mu);
        serve(io, &rq);
        pthread_mutex_lock(&io->mu);
        if (--io->serving == 0) atomic_fetch_add(&io->active_ns, now_ns() - io->active_since);
    }
    pthread_mutex_unlock(&io->mu);
    return NULL;
}

/* The whole file, read-only and shared, starting on a 2 MiB boundary so
 * that the page cache's 2 MiB folios can be mapped whole (file offsets and
 * addresses congruent); NULL when it cannot be mapped. */
static const uint8_t *map_file(int fd, uint64_t size)
{
    if (!size || size > SIZE_MAX - HUGE_ALIGN) return NULL;
    uint8_t *span = mmap(NULL, size + HUGE_ALIGN, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (span == MAP_FAILED) return NULL;
    uint8_t *at = (uint8_t *)(((uintptr_t)span + HUGE_ALIGN - 1) / HUGE_ALIGN * HUGE_ALIGN);
    void *m = mmap(at, size, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0);
    uint64_t len = (size + PAGE - 1) / PAGE * PAGE;
    if (at > span) munmap(span, (size_t)(at - span));
    if (span + size + HUGE_ALIGN > at + len) munmap(at + len, (size_t)(span + size + HUGE_ALIGN - (at + len)));
    if (m == MAP_FAILED) {
        munmap(at, len);
        return NULL;
    }
    return m;
}

static strata_status open_file(io_engine *io, const gguf_split *s, io_file *f, strata_error *err)
{
    f->path = s->path;
    f->size = s->file_size;
    /* O_NONBLOCK: a path replaced by a FIFO must not block here; refused below. */
    f->buffered_fd = open(s->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (f->buffered_fd < 0) return err_set(err, STRATA_E_IO, "%s: cannot open: %s", s->path, strerror(errno));
    struct stat sb;
    if (fstat(f->buffered_fd, &sb) != 0) return err_set(err, STRATA_E_IO, "%s: %s", s->path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return err_set(err, STRATA_E_IO, "%s: not a regular file", s->path);
    f->direct_fd = open(s->path, O_RDONLY | O_CLOEXEC | O_DIRECT | O_NONBLOCK);
    if (f->direct_fd < 0) {
        atomic_store(&io->direct, false); /* e.g. tmpfs: EINVAL */
        f->direct_fd = f->buffered_fd;
    }
    f->mtime = sb.st_mtim;
    f->map = map_file(f->buffered_fd, f->size);
    return STRATA_OK;
}

strata_status io_open(const gguf_file *gf, int n_threads, store_fault_fn fault, void *fault_ctx, io_engine **out,
                      strata_error *err)
{
    *out = NULL;
    io_engine *io = calloc(1, sizeof *io);
    if (!io) return err_set(err, STRATA_E_NOMEM, "out of memory");
    atomic_store(&io->direct, true);
    io->fault = fault;
    io->fault_ctx = fault_ctx;
    pthread_mutex_init(&io->mu, NULL);
    pthread_cond_init(&io->have_work, NULL);
    pthread_cond_init(&io->done, NULL);
    io->files = calloc(gf->n_splits, sizeof *io->files);
    io->threads = calloc((size_t)(n_threads > 0 ? n_threads : 1), sizeof *io->threads);
    strata_status st = io->files && io->threads ? STRATA_OK : err_set(err, STRATA_E_NOMEM, "out of memory");
    for (uint32_t i = 0; i < gf->n_splits && !st; i++) {
        io->files[i].buffered_fd = io->files[i].direct_fd = -1;
        io->n_files = i + 1;
        st = open_file(io, &gf->splits[i], &io->files[i], err);
    }
    for (int i = 0; i < n_threads && !st; i++) {
        if (pthread_create(&io->threads[i], NULL, worker, io) != 0)
            st = err_set(err, STRATA_E_NOMEM, "cannot start I/O thread");
        else
            io->n_threads = i + 1;
    }
    if (st) {
        io_close(io);
        return st;
    }
    *out = io;
    return STRATA_OK;
}

void io_close(io_engine *io)
{
    if (!io) return;
    pthread_mutex_lock(&io->mu);
    io->quit = true;
    pthread_cond_broadcast(&io->have_work);
    pthread_mutex_unlock(&io->mu);
    for (int i = 0; i < io->n_threads; i++) pthread_join(io->threads[i], NULL);
    for (uint32_t i = 0; i < io->n_files; i++) {
        if (io->files[i].direct_fd >= 0 && io->files[i].direct_fd != io->files[i].buffered_fd)
            close(io->files[i].direct_fd);
        if (io->files[i].buffered_fd >= 0) close(io->files[i].buffered_fd);
        if (io->files[i].map) munmap((void *)io->files[i].map, io->files[i].size);
    }
    pthread_mutex_destroy(&io->mu);
    pthread_cond_destroy(&io->have_work);
    pthread_cond_destroy(&io->done);
    free(io->files);
    free(io->threads);
    free(io);
}

void io_submit(io_engine *io, const io_request *reqs, uint32_t n)
{
    pthread_mutex_lock(&io->mu);
    for (uint32_t i = 0; i < n; i++) {
        io_queue *q = &io->queue[reqs[i].speculative ? Q_SPECULATIVE : Q_DEMAND];
        while (q->count == QUEUE_CAP) { /* full: let the workers drain it */
            pthread_cond_broadcast(&io->have_work);
            pthread_mutex_unlock(&io->mu);
            sched_yield();
            pthread_mutex_lock(&io->mu);
        }
        push(q, &reqs[i]);
    }
    pthread_cond_broadcast(&io->have_work);
    pthread_mutex_unlock(&io->mu);
}

void io_promote(io_engine *io, const io_ticket *t)
{
    if (atomic_load(&t->pending) == 0) return;
    pthread_mutex_lock(&io->mu);
    io_queue *s = &io->queue[Q_SPECULATIVE], *d = &io->queue[Q_DEMAND];
    uint32_t kept = 0, n = s->count;
    for (uint32_t i = 0; i < n; i++) { /* one pass: the ticket's move, the others close up in order */
        io_request rq = s->rq[(s->head + i) % QUEUE_CAP];
        if (fills(&rq, t) && d->count < QUEUE_CAP) push(d, &rq);
        else s->rq[(s->head + kept++) % QUEUE_CAP] = rq;
    }
    s->count = kept;
    pthread_mutex_unlock(&io->mu);
}

double io_wait(io_engine *io, io_ticket *t)
{
    if (atomic_load(&t->pending) == 0) return 0;
    uint64_t t0 = now_ns();
    pthread_mutex_lock(&io->mu);
    while (atomic_load(&t->pending) > 0) pthread_cond_wait(&io->done, &io->mu);
    pthread_mutex_unlock(&io->mu);
    return (double)(now_ns() - t0) * 1e-9;
}

strata_status io_ticket_error(const io_engine *io, const io_ticket *t, strata_error *err)
{
    int e = atomic_load(&t->error);
    if (!e) return STRATA_OK;
    const char *path = io->files[t->error_split].path;
    if (e == -1)
        return err_set(err, STRATA_E_IO, "%s: short read at offset %" PRIu64 " (the file is shorter than its header says)",
                       path, t->error_offset);
    return err_set(err, STRATA_E_IO, "%s: read failed at offset %" PRIu64 ": %s", path, t->error_offset, strerror(e));
}

strata_status io_pread(io_engine *io, uint32_t split, uint64_t offset, void *dst, uint64_t n, strata_error *err)
{
    io_file *f = &io->files[split];
    int e = io->fault ? io->fault(io->fault_ctx, split, offset, n) : 0;
    uint8_t *p = dst;
    while (!e && n > 0) {
        ssize_t r = pread(f->buffered_fd, p, n, (off_t)offset);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) e = r < 0 ? errno : -1;
        else p += r, offset += (uint64_t)r, n -= (uint64_t)r;
    }
    if (!e) return STRATA_OK;
    if (e == -1) return err_set(err, STRATA_E_IO, "%s: short read at offset %" PRIu64, f->path, offset);
    return err_set(err, STRATA_E_IO, "%s: read failed at offset %" PRIu64 ": %s", f->path, offset, strerror(e));
}

const uint8_t *io_view(const io_engine *io, uint32_t split) { return io->files[split].map; }

void io_drop_view(io_engine *io, uint32_t split, uint64_t offset, uint64_t length)
{
    io_file *f = &io->files[split];
    uint64_t end = offset + length < f->size ? offset + length : f->size;
    if (!f->map || offset >= end) return;
    uint64_t start = offset / PAGE * PAGE, len = (end - start + PAGE - 1) / PAGE * PAGE;
    madvise((void *)(f->map + start), len, MADV_DONTNEED);
    posix_fadvise(f->buffered_fd, (off_t)start, (off_t)len, POSIX_FADV_DONTNEED);
}

strata_status io_check_unchanged(io_engine *io, strata_error *err)
{
    for (uint32_t i = 0; i < io->n_files; i++) {
        struct stat sb;
        io_file *f = &io->files[i];
        if (fstat(f->buffered_fd, &sb) != 0 || (uint64_t)sb.st_size != f->size ||
            sb.st_mtim.tv_sec != f->mtime.tv_sec || sb.st_mtim.tv_nsec != f->mtime.tv_nsec)
            return err_set(err, STRATA_E_IO, "%s: the model file changed on disk while strata was running", f->path);
    }
    return STRATA_OK;
}

io_stats io_get_stats(io_engine *io)
{
    pthread_mutex_lock(&io->mu);
    uint64_t active = atomic_load(&io->active_ns) + (io->serving ? now_ns() - io->active_since : 0);
    pthread_mutex_unlock(&io->mu);
    return (io_stats){.bytes = atomic_load(&io->bytes), .requests = atomic_load(&io->requests),
                      .cached = atomic_load(&io->cached), .busy_s = (double)atomic_load(&io->busy_ns) * 1e-9,
                      .active_s = (double)active * 1e-9, .direct = atomic_load(&io->direct)};
}
