/* Host <-> device copies through two host-visible staging halves of
 * VKB_STAGING_BYTES: large copies go in chunks, and while the device copies
 * one chunk the host fills (upload) or drains (download) the other. */
#include <inttypes.h>
#include <string.h>

#include "backend/vulkan/vkb_internal.h"
#include "util/error.h"

strata_status vkb_transfer_init(vkb *v, strata_error *err)
{
    for (int s = 0; s < 2; s++) {
        strata_status st = vkb_alloc_internal(v, VKB_STAGING_BYTES, true, false, &v->staging[s], err);
        if (st != STRATA_OK) return st;
    }
    return STRATA_OK;
}

uint64_t vkb_own_host_bytes(const vkb *v)
{
    uint64_t n = 0;
    for (int s = 0; s < 2; s++) n += v->staging[s] ? v->staging[s]->size : 0;
    return n;
}

static strata_status wait_slot(vkb *v, int s, strata_error *err)
{
    if (!v->xfer_pending[s]) return STRATA_OK;
    v->xfer_pending[s] = false;
    return vkb_wait_fence(v, v->xfer_fence[s], "a staging copy", err);
}

static strata_status wait_all(vkb *v, strata_status st, strata_error *err)
{
    for (int s = 0; s < 2; s++) {
        strata_error e2;
        strata_status w = wait_slot(v, s, st == STRATA_OK ? err : &e2);
        if (st == STRATA_OK) st = w;
    }
    return st;
}

/* Records and submits (without waiting) a copy of n bytes on slot s. */
static strata_status copy(vkb *v, int s, VkBuffer src, uint64_t src_off, VkBuffer dst, uint64_t dst_off,
                          uint64_t n, strata_error *err)
{
    VkCommandBuffer cmd = v->xfer_cmd[s];
    VkCommandBufferBeginInfo bi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
        .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
    };
    v->f.ResetCommandBuffer(cmd, 0);
    VkResult r = v->f.BeginCommandBuffer(cmd, &bi);
    if (r != VK_SUCCESS) return err_set(err, STRATA_E_IO, "Vulkan: staging copy: %s", vkb_result_name(r));
    /* after earlier shaders and copies on the queue; before host reads */
    VkMemoryBarrier pre = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
        .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
        .dstAccessMask = VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
    };
    v->f.CmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                            VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 1, &pre, 0, NULL, 0, NULL);
    VkBufferCopy region = {.srcOffset = src_off, .dstOffset = dst_off, .size = n};
    v->f.CmdCopyBuffer(cmd, src, dst, 1, &region);
    VkMemoryBarrier post = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
        .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
        .dstAccessMask = VK_ACCESS_HOST_READ_BIT,
    };
    v->f.CmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &post, 0,
                            NULL, 0, NULL);
    r = v->f.EndCommandBuffer(cmd);
    if (r != VK_SUCCESS) return err_set(err, STRATA_E_IO, "Vulkan: staging copy: %s", vkb_result_name(r));
    strata_status st = vkb_submit(v, cmd, v->xfer_fence[s], "a staging copy", err);
    if (st == STRATA_OK) v->xfer_pending[s] = true;
    return st;
}

static strata_status check_range(vkb *v, const vkb_buf *b, uint64_t off, uint64_t n, const char *op,
                                 strata_error *err)
{
    if (v->recording)
        return err_set(err, STRATA_E_INVALID, "Vulkan: %s between vkb_begin and vkb_run", op);
    if (off > b->size || n > b->size - off)
        return err_set(err, STRATA_E_INVALID,
                       "Vulkan: %s of %" PRIu64 " bytes at offset %" PRIu64 " overruns a %" PRIu64 "-byte buffer",
                       op, n, off, b->size);
    return STRATA_OK;
}

strata_status vkb_upload(vkb *v, vkb_buf *dst, uint64_t off, const void *src, uint64_t n, strata_error *err)
{
    strata_status st = check_range(v, dst, off, n, "vkb_upload", err);
    const uint8_t *p = src;
    for (uint64_t done = 0; st == STRATA_OK && done < n;) {
        int s = (int)((done / VKB_STAGING_BYTES) & 1);
        uint64_t chunk = n - done < VKB_STAGING_BYTES ? n - done : VKB_STAGING_BYTES;
        st = wait_slot(v, s, err);
        if (st != STRATA_OK) break;
        memcpy(v->staging[s]->map, p + done, chunk);
        st = copy(v, s, v->staging[s]->buf, 0, dst->buf, off + done, chunk, err);
        done += chunk;
    }
    return wait_all(v, st, err);
}

strata_status vkb_download(vkb *v, const vkb_buf *src, uint64_t off, void *dst, uint64_t n, strata_error *err)
{
    strata_status st = check_range(v, src, off, n, "vkb_download", err);
    uint8_t *p = dst;
    uint64_t sent = 0; /* bytes whose copy is submitted */
    for (uint64_t done = 0; st == STRATA_OK && done < n;) {
        /* keep the next chunk's copy in flight while this one is drained */
        while (st == STRATA_OK && sent < n && sent < done + 2ull * VKB_STAGING_BYTES) {
            int s = (int)((sent / VKB_STAGING_BYTES) & 1);
            uint64_t chunk = n - sent < VKB_STAGING_BYTES ? n - sent : VKB_STAGING_BYTES;
            st = copy(v, s, src->buf, off + sent, v->staging[s]->buf, 0, chunk, err);
            sent += chunk;
        }
        int s = (int)((done / VKB_STAGING_BYTES) & 1);
        uint64_t chunk = n - done < VKB_STAGING_BYTES ? n - done : VKB_STAGING_BYTES;
        if (st == STRATA_OK) st = wait_slot(v, s, err);
        if (st == STRATA_OK) memcpy(p + done, v->staging[s]->map, chunk);
        done += chunk;
    }
    return wait_all(v, st, err);
}
