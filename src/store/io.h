/* Asynchronous reads of the model files for the store: worker threads take
 * requests from two FIFO queues, demand reads first, speculative ones
 * (prefetches) only when no demand read waits, and read them with O_DIRECT (large aligned
 * reads that bypass the page cache), or, where the filesystem refuses
 * O_DIRECT, with buffered reads whose pages are dropped after use. Requests
 * marked `cached` (loading resident weights) are copied from the page cache
 * instead when mincore() finds all of them there (a warm file). */
#ifndef STRATA_STORE_IO_H
#define STRATA_STORE_IO_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "strata.h"

/* Test hook called before every read: may sleep to inject delays; a
 * non-zero return is taken as that errno from the read. */
typedef int (*store_fault_fn)(void *ctx, uint32_t split, uint64_t offset, uint64_t length);

/* Completion of a batch of requests (one group load). */
typedef struct io_ticket {
    atomic_int pending;
    atomic_int error;          /* first errno; -1 short read / file changed */
    uint64_t error_offset;
    uint32_t error_split;
} io_ticket;

/* One destination of a coalesced request: a request that reads one range
 * of the file into several buffers (adjacent expert slices: one read, not
 * several). Parts come in file order, each starting at or before the end
 * of the one before (at most into the range that one alone reads: the
 * overlap, a page two aligned slices share, is read once and copied) and
 * ending after it. The submitter owns the parts until their tickets
 * complete; each part completes its own ticket once. */
typedef struct io_part {
    uint8_t *dst;
    uint64_t offset, length; /* its file range, aligned */
    io_ticket *ticket;
    struct io_part *next;    /* NULL: the last part */
} io_part;

#define IO_MAX_PARTS 16 /* parts of one coalesced request */

typedef struct io_request {
    uint8_t *dst;            /* NULL: no copy: the range of the file's view (io_view) is faulted in,
                                read into the page cache where it is not there */
    uint32_t split;
    uint64_t offset, length; /* aligned */
    io_ticket *ticket;
    bool cached;             /* copied from the page cache when all of it is there (kept there), else read
                                as usual; for one-time loads (streaming reads bypass the cache) */
    bool speculative;        /* a prefetch nobody waits for yet: served after every demand read queued
                                (io_promote makes it a demand read) */
    io_part *parts;          /* non-NULL: a coalesced request (dst and ticket unused; offset and length
                                span its parts) */
} io_request;

typedef struct io_engine io_engine;

typedef struct io_stats {
    uint64_t bytes, requests;
    uint64_t cached;         /* of bytes, copied from the page cache (requests marked cached) */
    double busy_s;           /* summed over workers */
    double active_s;         /* wall time with at least one read in progress: the disk's busy time */
    bool direct;             /* O_DIRECT in use */
} io_stats;

strata_status io_open(const gguf_file *f, int n_threads, store_fault_fn fault, void *fault_ctx, io_engine **out,
                      strata_error *err);
void io_close(io_engine *io);

/* Queues n requests; the ticket's pending count must already include them. */
void io_submit(io_engine *io, const io_request *reqs, uint32_t n);
/* Someone now needs the ticket's data: its speculative requests still
 * queued move to the demand queue (behind the demand reads there). */
void io_promote(io_engine *io, const io_ticket *t);
/* Blocks until the ticket's requests are done; returns the wait in seconds. */
double io_wait(io_engine *io, io_ticket *t);
/* A one-line description of a failed ticket. */
strata_status io_ticket_error(const io_engine *io, const io_ticket *t, strata_error *err);

/* Synchronous buffered read (small reads: embedding rows). */
strata_status io_pread(io_engine *io, uint32_t split, uint64_t offset, void *dst, uint64_t n, strata_error *err);

/* The whole file split as a read-only shared mapping (NULL: none): views
 * of resident groups point into it (--mmap). */
const uint8_t *io_view(const io_engine *io, uint32_t split);
/* Gives a range of the view back: its pages unmapped from this process and
 * dropped from the page cache (where no other process maps them). */
void io_drop_view(io_engine *io, uint32_t split, uint64_t offset, uint64_t length);

/* Checks that no model file changed (size, mtime) since it was opened. */
strata_status io_check_unchanged(io_engine *io, strata_error *err);

io_stats io_get_stats(io_engine *io);

#endif
