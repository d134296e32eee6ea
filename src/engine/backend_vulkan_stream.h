/* The Vulkan back end's RAM->VRAM stream: groups (layers, the output) that
 * do not fit in VRAM stay in host memory (the store's, resident or read
 * from disk) and come to the device every pass through a ring of `depth`
 * entries, each a host-visible staging buffer and a device-local slot of
 * the largest streamed group. The host fills an entry's staging, a copy
 * recorded with the ops moves it into the slot, and the shaders read the
 * slot as they read a resident group. The group after a streamed one is
 * copied while the streamed one computes (a copy recorded before its
 * dispatches, waited for only before the next group's), and each streamed
 * group's recording is submitted without waiting, so the host fills the
 * following entries while the device works: depth 2 overlaps one group's
 * copy with the previous one's compute; more entries let the host run
 * further ahead.
 *
 * STRATA_VK_STREAM_DELAY_US=N (tests): before each tensor written into
 * staging and after each submission, the host sleeps a random 0..N-1 us,
 * so the device's copies and the host's writes interleave differently. */
#ifndef STRATA_ENGINE_BACKEND_VULKAN_STREAM_H
#define STRATA_ENGINE_BACKEND_VULKAN_STREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/vulkan/vkb.h"
#include "util/account.h"
#include "strata.h"

typedef struct gpu_stream gpu_stream;

/* depth entries (1..GPU_STREAM_MAX_DEPTH) of slot_bytes; the device slots
 * are counted against the device's budget like any vkb_alloc, and charged
 * to the account's VRAM tier, the staging to its RAM (ACCT_SLOTS). */
#define GPU_STREAM_MAX_DEPTH 8u
strata_status gpu_stream_open(vkb *v, mem_account *a, uint32_t depth, uint64_t slot_bytes, gpu_stream **out,
                              strata_error *err);
void gpu_stream_free(gpu_stream *s);
/* Device bytes the ring takes (its slots). */
uint64_t gpu_stream_device_bytes(uint32_t depth, uint64_t slot_bytes);
uint32_t gpu_stream_depth(const gpu_stream *s);

/* Entry k % depth is where the k-th streamed group of a pass goes. True
 * when that entry's slot already holds `group` (copied in an earlier
 * recording or this one): nothing to fetch. */
bool gpu_stream_holds(const gpu_stream *s, uint32_t k, uint32_t group);
/* Claims entry k % depth: waits until the submission that last
 * copied out of its staging finished, and returns the staging to fill (the
 * caller writes the group's bytes, then calls gpu_stream_send). When that
 * copy is in the recording not yet submitted, fails with STRATA_E_INVALID
 * (the caller submits first: a deeper ring avoids it). */
strata_status gpu_stream_claim(gpu_stream *s, uint32_t k, void **staging, strata_error *err);
/* Records the copy of the filled staging (n bytes of `group`) into the
 * entry's slot; the ops wait for it after vkb_copy_barrier. */
void gpu_stream_send(gpu_stream *s, uint32_t k, uint32_t group, uint64_t n);
/* The device address of entry k % depth's slot. */
uint64_t gpu_stream_addr(const gpu_stream *s, uint32_t k);
/* After a submission (vkb_run_async's ticket) or a vkb_run (ticket 0:
 * everything finished): the entries whose copies it carried. */
void gpu_stream_submitted(gpu_stream *s, uint64_t ticket);
/* The test hook's random sleep (nothing without STRATA_VK_STREAM_DELAY_US). */
void gpu_stream_delay(gpu_stream *s);

#endif
