/* Reads gathered for one submission and merged where they are adjacent in
 * the file: when a step misses experts e and e+1 of a layer, their slices
 * of each stacked tensor lie back to back, and one request reads both (a
 * slice of one tensor next to another tensor's slice merges the same way).
 * Fewer, larger requests; the queue order is kept: a merged request goes
 * where its earliest-added read was. Internal to src/store. */
#ifndef STRATA_STORE_COALESCE_H
#define STRATA_STORE_COALESCE_H

#include <stdbool.h>
#include <stdint.h>

#include "store/io.h"

#define READ_BATCH_CAP 256 /* reads gathered before a flush is forced */

typedef struct read_piece {
    io_part *part;   /* its destination, file range and ticket (the caller's until the ticket completes) */
    uint32_t split;
    uint32_t order;  /* when it was added */
    bool speculative;
} read_piece;

typedef struct read_batch {
    uint64_t max_bytes;              /* the most one merged request reads */
    uint32_t n;
    read_piece piece[READ_BATCH_CAP]; /* [n] */
    io_request rq[READ_BATCH_CAP];    /* flush: the requests made, [<= n] */
    uint32_t first[READ_BATCH_CAP];   /* flush: each request's earliest order */
} read_batch;

/* Adds one read (part->length <= max_bytes); queues what is gathered when
 * the batch is full. */
void read_batch_add(read_batch *b, io_engine *io, io_part *part, uint32_t split, bool speculative);
/* Merges the gathered reads and queues them (nothing gathered: nothing). */
void read_batch_flush(read_batch *b, io_engine *io);

#endif
