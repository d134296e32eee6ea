/* Charged device allocations (backend_vulkan_mem.h). */
#include "engine/backend_vulkan_mem.h"

static acct_tier tier_of(bool host_visible) { return host_visible ? ACCT_RAM : ACCT_VRAM; }

strata_status gpu_mem_alloc(vkb *v, mem_account *a, acct_cat c, uint64_t bytes, bool host_visible, vkb_buf **out,
                            strata_error *err)
{
    *out = NULL;
    strata_status st = acct_take(a, tier_of(host_visible), c, bytes, err);
    if (st) return st;
    st = vkb_alloc(v, bytes, host_visible, out, err);
    if (st) acct_give(a, tier_of(host_visible), c, bytes);
    return st;
}

void gpu_mem_free(vkb *v, mem_account *a, acct_cat c, vkb_buf *b)
{
    if (!b) return;
    acct_give(a, tier_of(vkb_map(b) != NULL), c, vkb_size(b)); /* mapped: exactly the host-visible buffers */
    vkb_free(v, b);
}
