/* Recording ops into the one command buffer, barriers, submission. An op
 * with bad arguments (or a pipeline that fails to build) records nothing
 * and leaves its error for the next vkb_run, which then submits nothing. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "backend/vulkan/vkb_internal.h"
#include "util/error.h"

#define MAX_GROUPS_X 65535u /* the minimum maxComputeWorkGroupCount Vulkan guarantees */

void vkb_record_error(vkb *v, const char *fmt, ...)
{
    if (v->rec_err.status != STRATA_OK) return; /* the first error is the one to report */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->rec_err.message, sizeof v->rec_err.message, fmt, ap);
    va_end(ap);
    v->rec_err.status = STRATA_E_INVALID;
}

bool vkb_record_check(vkb *v, const char *op)
{
    if (!v->recording) vkb_record_error(v, "Vulkan: %s recorded outside vkb_begin .. vkb_run", op);
    return v->recording && v->rec_err.status == STRATA_OK;
}

void vkb_cmd_barrier(vkb *v, VkPipelineStageFlags src, VkAccessFlags src_access, VkPipelineStageFlags dst,
                     VkAccessFlags dst_access)
{
    VkMemoryBarrier mb = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
        .srcAccessMask = src_access,
        .dstAccessMask = dst_access,
    };
    v->f.CmdPipelineBarrier(v->cmd, src, dst, 0, 1, &mb, 0, NULL, 0, NULL);
    v->stats.barriers++;
}

void vkb_begin(vkb *v)
{
    VkCommandBufferBeginInfo bi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
        .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
    };
    v->f.ResetCommandBuffer(v->cmd, 0);
    VkResult r = v->f.BeginCommandBuffer(v->cmd, &bi);
    if (r != VK_SUCCESS) {
        vkb_record_error(v, "Vulkan: vkBeginCommandBuffer failed (%s)", vkb_result_name(r));
        return;
    }
    v->recording = true;
    v->up_used = v->down_used = 0;
    v->n_staged = 0;
    v->ops_since_begin = v->upload_barrier = false;
    vkb_prof_begin(v);
    /* earlier submissions' copies (uploads) before this one's shaders and copies */
    vkb_cmd_barrier(v, VK_PIPELINE_STAGE_TRANSFER_BIT | VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                    VK_ACCESS_TRANSFER_WRITE_BIT | VK_ACCESS_SHADER_WRITE_BIT,
                    VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                    VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |
                        VK_ACCESS_TRANSFER_WRITE_BIT);
}

/* The barrier the staged uploads since the last dispatch wait for: their
 * copies before the next shader (one for all of them). */
static void upload_barrier(vkb *v)
{
    if (!v->upload_barrier) return;
    v->upload_barrier = false;
    vkb_cmd_barrier(v, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT,
                    VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                    VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT);
}

void vkb_barrier(vkb *v)
{
    if (!vkb_record_check(v, "vkb_barrier")) return;
    if (v->upload_barrier) { /* one barrier orders both */
        v->upload_barrier = false;
        vkb_cmd_barrier(v, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                        VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
                        VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                        VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT);
        return;
    }
    vkb_cmd_barrier(v, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT,
                    VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT);
}

/* 16-byte aligned offsets in the staging halves (copies of f32 data) */
static uint64_t round16(uint64_t n) { return (n + 15) & ~(uint64_t)15; }

bool vkb_stage_upload(vkb *v, vkb_buf *dst, uint64_t off, const void *src, uint64_t n)
{
    if (!v->recording || v->rec_err.status != STRATA_OK || n == 0 || n > VKB_STAGING_BYTES - v->up_used ||
        off > dst->size || n > dst->size - off)
        return false;
    memcpy((uint8_t *)v->staging[0]->map + v->up_used, src, n);
    /* after the ops before it (which may use dst; vkb_begin's barrier
     * covers earlier submissions), before the ops after it (the barrier
     * before the next dispatch) */
    if (v->ops_since_begin || (v->upload_barrier && v->last_upload == dst))
        vkb_cmd_barrier(v, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                        VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
                        VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT);
    VkBufferCopy region = {.srcOffset = v->up_used, .dstOffset = off, .size = n};
    v->f.CmdCopyBuffer(v->cmd, v->staging[0]->buf, dst->buf, 1, &region);
    v->upload_barrier = true;
    v->last_upload = dst;
    v->up_used += round16(n);
    v->stats.staged++;
    vkb_prof_mark(v, VKB_PROF_COPY);
    return true;
}

bool vkb_stage_download(vkb *v, const vkb_buf *src, uint64_t off, void *dst, uint64_t n)
{
    if (!v->recording || v->rec_err.status != STRATA_OK || n == 0 || n > VKB_STAGING_BYTES - v->down_used ||
        v->n_staged == VKB_MAX_STAGED || off > src->size || n > src->size - off)
        return false;
    v->ops_since_begin = true;
    vkb_cmd_barrier(v, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                    VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT,
                    VK_ACCESS_TRANSFER_READ_BIT);
    VkBufferCopy region = {.srcOffset = off, .dstOffset = v->down_used, .size = n};
    v->f.CmdCopyBuffer(v->cmd, src->buf, v->staging[1]->buf, 1, &region);
    /* to the host; and before later ops overwrite src */
    vkb_cmd_barrier(v, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT,
                    VK_PIPELINE_STAGE_HOST_BIT | VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                    VK_ACCESS_HOST_READ_BIT);
    v->staged[v->n_staged++] = (vkb_staged){.dst = dst, .off = v->down_used, .n = n};
    v->down_used += round16(n);
    v->stats.staged++;
    vkb_prof_mark(v, VKB_PROF_COPY);
    return true;
}

void vkb_staged_finish(vkb *v)
{
    for (uint32_t i = 0; i < v->n_staged; i++)
        memcpy(v->staged[i].dst, (const uint8_t *)v->staging[1]->map + v->staged[i].off, v->staged[i].n);
    v->n_staged = 0;
}

void vkb_dispatch(vkb *v, vkb_shader_id id, const void *pc, uint32_t pc_bytes, uint64_t groups, uint32_t gz)
{
    vkb_dispatch_variant(v, id, VKB_DEFAULT, pc, pc_bytes, groups, gz);
}

void vkb_dispatch_variant(vkb *v, vkb_shader_id id, vkb_variant var, const void *pc, uint32_t pc_bytes,
                          uint64_t groups, uint32_t gz)
{
    if (groups == 0 || gz == 0) return;
    uint32_t gx = groups > MAX_GROUPS_X ? MAX_GROUPS_X : (uint32_t)groups;
    uint64_t gy = (groups + gx - 1) / gx;
    if (gy > MAX_GROUPS_X || gz > MAX_GROUPS_X) {
        vkb_record_error(v, "Vulkan: a dispatch of %llu x %u workgroups is too large",
                         (unsigned long long)groups, gz);
        return;
    }
    VkPipeline p = vkb_pipeline(v, id, var);
    if (!p) return;
    upload_barrier(v);
    v->ops_since_begin = true;
    v->f.CmdBindPipeline(v->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p);
    v->f.CmdPushConstants(v->cmd, v->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, pc_bytes, pc);
    v->f.CmdDispatch(v->cmd, gx, (uint32_t)gy, gz);
    v->stats.dispatches++;
    v->stats.push_consts++;
    vkb_prof_mark(v, (uint32_t)id * VKB_VARIANTS + (uint32_t)var);
}

strata_status vkb_wait_fence(vkb *v, VkFence fence, const char *what, strata_error *err)
{
    VkResult r = v->f.WaitForFences(v->dev, 1, &fence, VK_TRUE, VKB_TIMEOUT_NS);
    v->stats.waits++;
    if (r == VK_TIMEOUT) {
        v->lost = true; /* the work may still be running: nothing can be reused */
        return err_set(err, STRATA_E_IO, "Vulkan: %s did not finish in %llu s", what,
                       (unsigned long long)(VKB_TIMEOUT_NS / 1000000000ull));
    }
    if (r != VK_SUCCESS) {
        v->lost = true;
        return err_set(err, STRATA_E_IO, "Vulkan: %s failed (%s)", what, vkb_result_name(r));
    }
    v->f.ResetFences(v->dev, 1, &fence);
    return STRATA_OK;
}

strata_status vkb_submit(vkb *v, VkCommandBuffer cmd, VkFence fence, const char *what, strata_error *err)
{
    if (v->lost) return err_set(err, STRATA_E_IO, "Vulkan: %s: the device was lost earlier", what);
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &cmd};
    VkResult r = v->f.QueueSubmit(v->queue, 1, &si, fence);
    v->stats.submits++;
    if (r != VK_SUCCESS) {
        if (r == VK_ERROR_DEVICE_LOST) v->lost = true;
        return err_set(err, STRATA_E_IO, "Vulkan: submitting %s failed (%s)", what, vkb_result_name(r));
    }
    return STRATA_OK;
}

strata_status vkb_submit_wait(vkb *v, VkCommandBuffer cmd, VkFence fence, const char *what, strata_error *err)
{
    strata_status st = vkb_submit(v, cmd, fence, what, err);
    return st == STRATA_OK ? vkb_wait_fence(v, fence, what, err) : st;
}

strata_status vkb_run(vkb *v, strata_error *err)
{
    if (!v->recording && v->rec_err.status == STRATA_OK)
        return err_set(err, STRATA_E_INVALID, "Vulkan: vkb_run without vkb_begin");
    if (v->recording) {
        /* results readable by the host (mapped buffers) and later copies */
        vkb_cmd_barrier(v, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT,
                        VK_PIPELINE_STAGE_HOST_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                        VK_ACCESS_HOST_READ_BIT | VK_ACCESS_TRANSFER_READ_BIT);
        VkResult r = v->f.EndCommandBuffer(v->cmd);
        v->recording = false;
        if (r != VK_SUCCESS) vkb_record_error(v, "Vulkan: vkEndCommandBuffer failed (%s)", vkb_result_name(r));
    }
    if (v->rec_err.status != STRATA_OK) {
        strata_status st = err_set(err, v->rec_err.status, "%s", v->rec_err.message);
        v->rec_err.status = STRATA_OK;
        v->rec_err.message[0] = '\0';
        v->n_staged = 0;
        return st;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    strata_status st = vkb_submit_wait(v, v->cmd, v->fence, "the recorded ops", err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    v->stats.runs++;
    if (st != STRATA_OK) {
        v->n_staged = 0;
        return st;
    }
    vkb_staged_finish(v);
    vkb_prof_collect(v, (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec));
    return STRATA_OK;
}
