/* Coalescing of adjacent reads (see coalesce.h). */
#include <stdlib.h>

#include "store/coalesce.h"

void read_batch_add(read_batch *b, io_engine *io, io_part *part, uint32_t split, bool speculative)
{
    if (b->n == READ_BATCH_CAP) read_batch_flush(b, io);
    part->next = NULL;
    b->piece[b->n] = (read_piece){part, split, b->n, speculative};
    b->n++;
}

static int by_place(const void *x, const void *y)
{
    const read_piece *a = x, *b = y;
    if (a->split != b->split) return a->split < b->split ? -1 : 1;
    if (a->part->offset != b->part->offset) return a->part->offset < b->part->offset ? -1 : 1;
    return a->order < b->order ? -1 : a->order > b->order;
}

/* The requests [0, n) in the order of their earliest read (insertion sort:
 * a few dozen, mostly in order already). */
static void sort_by_first(read_batch *b, uint32_t n)
{
    for (uint32_t i = 1; i < n; i++) {
        io_request rq = b->rq[i];
        uint32_t f = b->first[i], j = i;
        for (; j > 0 && b->first[j - 1] > f; j--) {
            b->rq[j] = b->rq[j - 1];
            b->first[j] = b->first[j - 1];
        }
        b->rq[j] = rq;
        b->first[j] = f;
    }
}

/* Whether piece q can join a request that spans [start, end) and whose last
 * part reads from read_from on: the same file and queue, touching or
 * overlapping only what that last part reads, reaching past the end, and
 * within the limits. */
static bool joins(const read_batch *b, const read_piece *head, const read_piece *q, uint64_t start, uint64_t end,
                  uint64_t read_from, uint32_t parts)
{
    const io_part *p = q->part;
    return q->split == head->split && q->speculative == head->speculative && p->offset <= end &&
           p->offset >= read_from && p->offset + p->length > end && parts < IO_MAX_PARTS &&
           p->offset + p->length - start <= b->max_bytes;
}

void read_batch_flush(read_batch *b, io_engine *io)
{
    if (!b->n) return;
    qsort(b->piece, b->n, sizeof *b->piece, by_place);
    uint32_t n_rq = 0;
    for (uint32_t i = 0; i < b->n;) {
        const read_piece *head = &b->piece[i];
        io_part *last = head->part;
        uint64_t start = last->offset, end = start + last->length, read_from = start;
        uint32_t parts = 1, first = head->order;
        for (i++; i < b->n && joins(b, head, &b->piece[i], start, end, read_from, parts); i++, parts++) {
            const read_piece *q = &b->piece[i];
            last->next = q->part;
            last = q->part;
            read_from = end; /* what it shares with the part before comes from there */
            end = last->offset + last->length;
            first = q->order < first ? q->order : first;
        }
        io_part *h = head->part;
        b->rq[n_rq] = parts == 1 ? (io_request){h->dst, head->split, start, end - start, h->ticket, false,
                                                head->speculative, NULL}
                                 : (io_request){NULL, head->split, start, end - start, NULL, false,
                                                head->speculative, h};
        b->first[n_rq++] = first;
    }
    sort_by_first(b, n_rq);
    b->n = 0;
    io_submit(io, b->rq, n_rq);
}
