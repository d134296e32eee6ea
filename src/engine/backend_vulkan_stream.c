/* The RAM->VRAM stream's ring (backend_vulkan_stream.h). */
#include <stdlib.h>
#include <time.h>

#include "engine/backend_vulkan_mem.h"
#include "engine/backend_vulkan_stream.h"
#include "util/error.h"

#define NO_GROUP UINT32_MAX
#define UNSENT UINT64_MAX /* an entry's copy is recorded, not yet submitted */

typedef struct stream_entry {
    vkb_buf *staging;   /* [slot_bytes] host-visible: a group as laid out on the device */
    vkb_buf *slot;      /* [slot_bytes] device-local: what the shaders read */
    uint32_t group;     /* the group its slot holds or will hold (NO_GROUP: none) */
    uint64_t ticket;    /* the submission carrying its last copy (0: finished; UNSENT) */
} stream_entry;

struct gpu_stream {
    vkb *v;
    mem_account *acct;  /* the staging is charged to RAM, the slots to VRAM (ACCT_SLOTS) */
    uint32_t depth;
    uint64_t slot_bytes;
    stream_entry e[GPU_STREAM_MAX_DEPTH];
    unsigned delay_us;  /* STRATA_VK_STREAM_DELAY_US */
    unsigned seed;
};

uint64_t gpu_stream_device_bytes(uint32_t depth, uint64_t slot_bytes) { return (uint64_t)depth * slot_bytes; }
uint32_t gpu_stream_depth(const gpu_stream *s) { return s->depth; }

strata_status gpu_stream_open(vkb *v, mem_account *a, uint32_t depth, uint64_t slot_bytes, gpu_stream **out,
                              strata_error *err)
{
    *out = NULL;
    if (depth < 1 || depth > GPU_STREAM_MAX_DEPTH)
        return err_set(err, STRATA_E_INVALID, "GPU stream depth %u: expected 1 to %u", depth, GPU_STREAM_MAX_DEPTH);
    gpu_stream *s = calloc(1, sizeof *s);
    if (!s) return err_set(err, STRATA_E_NOMEM, "out of memory");
    *s = (gpu_stream){.v = v, .acct = a, .depth = depth, .slot_bytes = slot_bytes, .seed = 12345};
    const char *d = getenv("STRATA_VK_STREAM_DELAY_US");
    if (d && d[0]) s->delay_us = (unsigned)strtoul(d, NULL, 10);
    strata_status st = STRATA_OK;
    for (uint32_t i = 0; i < depth && !st; i++) {
        s->e[i].group = NO_GROUP;
        st = gpu_mem_alloc(v, a, ACCT_SLOTS, slot_bytes, true, &s->e[i].staging, err);
        if (!st) st = gpu_mem_alloc(v, a, ACCT_SLOTS, slot_bytes, false, &s->e[i].slot, err);
    }
    if (st) {
        gpu_stream_free(s);
        return st;
    }
    *out = s;
    return STRATA_OK;
}

void gpu_stream_free(gpu_stream *s)
{
    if (!s) return;
    for (uint32_t i = 0; i < s->depth; i++) {
        gpu_mem_free(s->v, s->acct, ACCT_SLOTS, s->e[i].staging);
        gpu_mem_free(s->v, s->acct, ACCT_SLOTS, s->e[i].slot);
    }
    free(s);
}

static stream_entry *entry(const gpu_stream *s, uint32_t k) { return (stream_entry *)&s->e[k % s->depth]; }

bool gpu_stream_holds(const gpu_stream *s, uint32_t k, uint32_t group) { return entry(s, k)->group == group; }

strata_status gpu_stream_claim(gpu_stream *s, uint32_t k, void **staging, strata_error *err)
{
    stream_entry *x = entry(s, k);
    if (x->ticket == UNSENT)
        return err_set(err, STRATA_E_INVALID, "GPU stream: entry %u is still to be submitted", k % s->depth);
    strata_status st = x->ticket ? vkb_wait(s->v, x->ticket, err) : STRATA_OK;
    if (st) return st;
    x->ticket = 0;
    x->group = NO_GROUP; /* until its copy is recorded */
    *staging = vkb_map(x->staging);
    return STRATA_OK;
}

void gpu_stream_send(gpu_stream *s, uint32_t k, uint32_t group, uint64_t n)
{
    stream_entry *x = entry(s, k);
    vkb_copy(s->v, x->staging, 0, x->slot, 0, n);
    x->group = group;
    x->ticket = UNSENT;
}

uint64_t gpu_stream_addr(const gpu_stream *s, uint32_t k) { return vkb_addr(entry(s, k)->slot); }

void gpu_stream_submitted(gpu_stream *s, uint64_t ticket)
{
    for (uint32_t i = 0; i < s->depth; i++)
        if (s->e[i].ticket == UNSENT || ticket == 0) s->e[i].ticket = ticket;
}

void gpu_stream_delay(gpu_stream *s)
{
    if (!s->delay_us) return;
    unsigned us = (unsigned)rand_r(&s->seed) % s->delay_us;
    struct timespec t = {.tv_sec = us / 1000000u, .tv_nsec = (long)(us % 1000000u) * 1000};
    nanosleep(&t, NULL);
}
