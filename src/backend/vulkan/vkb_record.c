/* Recording ops into the current command buffer, barriers, copies. An op
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
    v->recording = false;
    strata_error err;
    if (vkb_ops_slot(v, &err) != STRATA_OK) {
        vkb_record_error(v, "%s", err.message);
        return;
    }
    v->f.ResetCommandBuffer(v->cmd, 0);
    VkResult r = v->f.BeginCommandBuffer(v->cmd, &bi);
    if (r != VK_SUCCESS) {
        vkb_record_error(v, "Vulkan: vkBeginCommandBuffer failed (%s)", vkb_result_name(r));
        return;
    }
    v->recording = true;
    if (v->completed == v->submitted) { /* else recordings in flight still copy from (to) the staging */
        v->up_used = v->down_used = 0;
        v->n_staged = 0;
    }
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

void vkb_copy(vkb *v, const vkb_buf *src, uint64_t src_off, vkb_buf *dst, uint64_t dst_off, uint64_t n)
{
    if (!vkb_record_check(v, "vkb_copy")) return;
    if (n == 0 || src_off > src->size || n > src->size - src_off || dst_off > dst->size || n > dst->size - dst_off) {
        vkb_record_error(v, "Vulkan: a copy of %llu bytes overruns its buffers", (unsigned long long)n);
        return;
    }
    /* after the ops before it (which may read what it overwrites) */
    vkb_cmd_barrier(v, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                    VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT,
                    VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT);
    VkBufferCopy region = {.srcOffset = src_off, .dstOffset = dst_off, .size = n};
    v->f.CmdCopyBuffer(v->cmd, src->buf, dst->buf, 1, &region);
    v->ops_since_begin = true;
    v->stats.staged++;
    vkb_prof_mark(v, VKB_PROF_COPY);
}

void vkb_copy_barrier(vkb *v)
{
    if (!vkb_record_check(v, "vkb_copy_barrier")) return;
    vkb_cmd_barrier(v, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT,
                    VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                    VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_TRANSFER_READ_BIT);
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
