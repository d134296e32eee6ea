/* A group's weights for its ops on the Vulkan back end: a resident
 * group's device addresses, or a streamed group copied through the ring
 * (backend_vulkan_stream.h) first, the next one's copy recorded behind it. */
#include <string.h>

#include "engine/backend_vulkan_internal.h"
#include "kernels/cpu/dequant.h"

/* Group g's tensors from the store into staging as laid out on the device
 * (matrices as in the file, vectors as f32; a streamed layer's experts
 * come apart). */
static strata_status fill_staging(backend *b, uint32_t g, uint8_t *staging, strata_error *err)
{
    engine *e = b->e;
    gpu_state *gs = st_of(b);
    const gpu_group *gg = &gs->groups[g];
    const void *const *data;
    strata_status st = store_acquire(e->store, g, &data, err);
    if (st) return st;
    uint32_t n;
    const gguf_tensor *const *t = gpu_group_tensors(&e->w, g, &n);
    for (uint32_t s = 0; s < n && !st; s++) {
        if (!t[s] || gg->off[s] == NO_OFFSET) continue;
        gpu_stream_delay(gs->stream);
        uint8_t *dst = staging + gg->off[s];
        if (gpu_is_vector(&e->w, g, s)) st = dequant_row(t[s]->type, data[s], (float *)dst, t[s]->ne[0], err);
        else memcpy(dst, data[s], t[s]->n_bytes);
    }
    store_release(e->store, g);
    return st;
}

/* Streamed group g into its ring entry's staging, and the copy into the
 * entry's slot recorded; nothing when the slot holds it already. */
static strata_status fetch(backend *b, uint32_t g, strata_error *err)
{
    gpu_state *gs = st_of(b);
    const gpu_group *gg = &gs->groups[g];
    uint32_t k = gg->stream_k[b->e->prefill];
    if (gpu_stream_holds(gs->stream, k, g)) return STRATA_OK;
    void *staging;
    strata_status st = gpu_stream_claim(gs->stream, k, &staging, err);
    if (st == STRATA_E_INVALID) { /* its last copy is in this recording: run it first */
        st = gpu_flush(b, err);
        if (!st) st = gpu_stream_claim(gs->stream, k, &staging, err);
    }
    if (!st) st = fill_staging(b, g, staging, err);
    if (st) return st;
    gpu_record(b);
    gpu_stream_send(gs->stream, k, g, gg->bytes);
    gs->stream_copies++;
    return STRATA_OK;
}

/* A streamed group's weights in its slot before its ops, and the next
 * group's copy (when it is streamed too and the ring has room) recorded
 * now, so that it runs while this group computes. */
static strata_status stream_in(backend *b, uint32_t g, strata_error *err)
{
    gpu_state *gs = st_of(b);
    gpu_record(b);
    gpu_flush_pending(b); /* the ops before the copies, which may overwrite what they read */
    strata_status st = fetch(b, g, err);
    if (st) return st;
    gpu_record(b);
    vkb_copy_barrier(gs->v);
    uint32_t next = g + 1;
    if (next <= b->e->w.d.n_layers && b->e->pass_site[next] == b && gs->groups[next].streamed &&
        gpu_stream_depth(gs->stream) > 1)
        st = fetch(b, next, err);
    return st;
}

strata_status gpu_acquire(backend *b, uint32_t g, be_weight *w, strata_error *err)
{
    gpu_state *gs = st_of(b);
    const gpu_group *gg = &gs->groups[g];
    if (gs->async_err.status) {
        *err = gs->async_err;
        return err->status;
    }
    strata_status st = gg->streamed ? stream_in(b, g, err) : STRATA_OK;
    if (st) return st;
    uint64_t base = gg->streamed ? gpu_stream_addr(gs->stream, gg->stream_k[b->e->prefill]) : vkb_addr(gg->buf);
    uint32_t n;
    const gguf_tensor *const *t = gpu_group_tensors(&b->e->w, g, &n);
    for (uint32_t s = 0; s < n; s++)
        w[s] = (be_weight){.t = t[s], .dev = t[s] && gg->off[s] != NO_OFFSET ? base + gg->off[s] : 0};
    return STRATA_OK;
}

/* A streamed group's ops go to the device now, without waiting: the host
 * fills the next entries meanwhile. */
void gpu_release(backend *b, uint32_t g)
{
    gpu_state *gs = st_of(b);
    if (!gs->groups[g].streamed || !gs->recording) return;
    gpu_flush_pending(b);
    gs->recording = false;
    uint64_t ticket = 0;
    strata_error err = {0};
    if (vkb_run_async(gs->v, &ticket, &err) && !gs->async_err.status) gs->async_err = err;
    gpu_stream_submitted(gs->stream, ticket);
    gpu_stream_delay(gs->stream);
}
