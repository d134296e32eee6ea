/* Submitting recordings: vkb_run (submit and wait for everything), and
 * vkb_run_async / vkb_wait, which leave a recording running on the device
 * while the next one records (the RAM->VRAM stream submits each streamed
 * layer so that the host fills the next layer's staging meanwhile). The
 * recordings' command buffers and fences are a ring of VKB_RING; a ticket
 * names one submission (tickets count up from 1, and the queue finishes
 * them in order). */
#include <time.h>

#include "backend/vulkan/vkb_internal.h"
#include "util/error.h"

strata_status vkb_ops_init(vkb *v, strata_error *err)
{
    VkCommandBufferAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = v->pool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = VKB_RING,
    };
    VkResult r = v->f.AllocateCommandBuffers(v->dev, &ai, v->ops_cmd);
    VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    for (uint32_t i = 0; i < VKB_RING && r == VK_SUCCESS; i++) r = v->f.CreateFence(v->dev, &fci, NULL, &v->ops_fence[i]);
    if (r != VK_SUCCESS) return err_set(err, STRATA_E_UNSUPPORTED, "Vulkan: command buffers: %s", vkb_result_name(r));
    v->cmd = v->ops_cmd[0];
    v->fence = v->ops_fence[0];
    return STRATA_OK;
}

void vkb_ops_close(vkb *v)
{
    for (uint32_t i = 0; i < VKB_RING; i++)
        if (v->ops_fence[i]) v->f.DestroyFence(v->dev, v->ops_fence[i], NULL);
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

strata_status vkb_wait(vkb *v, uint64_t ticket, strata_error *err)
{
    if (ticket > v->submitted) ticket = v->submitted;
    while (v->completed < ticket) {
        uint32_t slot = (uint32_t)(v->completed % VKB_RING); /* ticket completed + 1's */
        strata_status st = vkb_wait_fence(v, v->ops_fence[slot], "the recorded ops", err);
        if (st != STRATA_OK) return st;
        v->ops_ticket[slot] = 0;
        v->completed++;
    }
    if (v->completed == v->submitted) vkb_staged_finish(v); /* every staged download has landed */
    return STRATA_OK;
}

strata_status vkb_ops_slot(vkb *v, strata_error *err)
{
    uint32_t slot = (uint32_t)(v->submitted % VKB_RING);
    strata_status st = v->ops_ticket[slot] ? vkb_wait(v, v->ops_ticket[slot], err) : STRATA_OK;
    v->cmd = v->ops_cmd[slot];
    v->fence = v->ops_fence[slot];
    return st;
}

/* Ends the recording and submits it (nothing, with the recording's first
 * error, when an op failed). */
static strata_status submit_recording(vkb *v, strata_error *err)
{
    if (!v->recording && v->rec_err.status == STRATA_OK)
        return err_set(err, STRATA_E_INVALID, "Vulkan: vkb_run without vkb_begin");
    if (v->recording) {
        /* results readable by the host (mapped buffers) and later copies */
        vkb_cmd_barrier(v, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                        VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
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
        return st;
    }
    strata_status st = vkb_submit(v, v->cmd, v->fence, "the recorded ops", err);
    if (st == STRATA_OK) v->ops_ticket[v->submitted % VKB_RING] = v->submitted + 1, v->submitted++;
    return st;
}

static double elapsed_ns(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e9 + (double)(t1.tv_nsec - t0->tv_nsec);
}

strata_status vkb_run(vkb *v, strata_error *err)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    strata_status st = submit_recording(v, err);
    if (st == STRATA_OK) st = vkb_wait(v, v->submitted, err);
    if (st != STRATA_OK) {
        v->n_staged = 0;
        return st;
    }
    v->stats.runs++;
    vkb_prof_collect(v, elapsed_ns(&t0));
    return STRATA_OK;
}

strata_status vkb_run_async(vkb *v, uint64_t *ticket, strata_error *err)
{
    if (v->prof.pool) { /* the timestamps are one recording's: profiling runs each one alone */
        strata_status st = vkb_run(v, err);
        *ticket = v->submitted;
        return st;
    }
    strata_status st = submit_recording(v, err);
    *ticket = v->submitted;
    if (st == STRATA_OK) v->stats.runs++;
    return st;
}
