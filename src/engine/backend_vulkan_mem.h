/* The Vulkan back end's buffers, charged to the model's memory account
 * (util/account.h): device-local ones to the VRAM tier, host-visible ones
 * (staging: pinned host memory on a GPU) to RAM, each under the category
 * it holds (weights, the stream's slots, KV caches, scratch). */
#ifndef STRATA_ENGINE_BACKEND_VULKAN_MEM_H
#define STRATA_ENGINE_BACKEND_VULKAN_MEM_H

#include "backend/vulkan/vkb.h"
#include "util/account.h"

/* Takes the bytes from the account (a RAM refusal is the error), then
 * allocates; nothing stays charged on failure. */
strata_status gpu_mem_alloc(vkb *v, mem_account *a, acct_cat c, uint64_t bytes, bool host_visible, vkb_buf **out,
                            strata_error *err);
/* Frees b and gives its bytes back (NULL: a no-op). */
void gpu_mem_free(vkb *v, mem_account *a, acct_cat c, vkb_buf *b);

#endif
