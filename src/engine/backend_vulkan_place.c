/* Which groups the Vulkan back end runs (backend_vulkan_open): a plan's
 * sites checked, or the default placement, then allocated. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend_vulkan.h"
#include "engine/backend_vulkan_internal.h"
#include "util/error.h"
#include "util/fmt.h"

/* Whether -ngl lets group g on the GPU: the first max_layers layers, the
 * output when every layer is allowed (0: all). */
static bool allowed(const model_weights *w, uint32_t g, uint32_t max_layers)
{
    return max_layers == 0 || g < max_layers || (g == w->d.n_layers && max_layers >= g);
}

/* The stream ring's slot: the largest group streamed (0: none). */
static uint64_t slot_bytes(const model_weights *w, const uint8_t *site)
{
    uint64_t slot = 0;
    for (uint32_t g = 0; g <= w->d.n_layers; g++)
        if ((site[g] == ENGINE_SITE_STREAMED || site[g] == SITE_PREFILL_ONLY) && gpu_tensor_bytes(w, g, true) > slot)
            slot = gpu_tensor_bytes(w, g, true);
    return slot;
}

/* Whether a streamed layer (for every pass, or prompt batches only) has
 * experts (they come through their own slots). */
static bool streams_experts(const model_weights *w, const uint8_t *site)
{
    for (uint32_t g = 0; w->moe && g < w->d.n_layers; g++)
        if (site[g] == ENGINE_SITE_STREAMED || site[g] == SITE_PREFILL_ONLY) return true;
    return false;
}

/* Device bytes a placement takes: activations, resident groups with their
 * KV caches, streamed layers' KV caches (not those streamed for prompt
 * batches only) and the ring. */
static uint64_t placement_bytes(const engine *e, const uint8_t *site, uint32_t depth, uint32_t n_kv)
{
    const model_weights *w = &e->w;
    uint64_t bytes = backend_vulkan_fixed_bytes(w, e->n_batch) + (streams_experts(w, site) ? gpu_moe_stream_bytes(w) : 0);
    for (uint32_t g = 0; g <= w->d.n_layers; g++)
        if (site[g] == ENGINE_SITE_VRAM) bytes += backend_vulkan_group_bytes(w, g, e->n_ctx, e->n_batch, n_kv);
        else if (site[g] == ENGINE_SITE_STREAMED) bytes += gpu_kv_bytes(w, g, e->n_ctx, e->n_batch, n_kv);
    return bytes + gpu_stream_device_bytes(depth, slot_bytes(w, site));
}

/* The default placement: groups resident from the first on while they fit
 * (the shaders running their types, -ngl allowing); with streaming, the
 * longest resident prefix that leaves room for the rest streamed (their KV
 * caches and the ring). */
static void choose_sites(const engine *e, uint64_t budget, const engine_gpu *p, uint32_t n_kv, uint8_t *site)
{
    const model_weights *w = &e->w;
    uint32_t groups = (uint32_t)w->d.n_layers + 1, resident = 0;
    memset(site, ENGINE_SITE_CPU, groups);
    for (uint32_t g = 0; g < groups; g++) {
        if (!allowed(w, g, p->max_layers) || !gpu_group_supported(w, g)) break;
        site[g] = ENGINE_SITE_VRAM;
        if (placement_bytes(e, site, 0, n_kv) > budget) {
            site[g] = ENGINE_SITE_CPU;
            break;
        }
        resident++;
    }
    if (!p->stream_depth || resident == groups) return;
    uint8_t *t = calloc(groups, 1);
    if (!t) return; /* the resident prefix alone */
    for (uint32_t k = resident + 1; k-- > 0;) {
        memcpy(t, site, groups); /* groups before k resident, the GPU's from k on streamed */
        for (uint32_t g = k; g < groups; g++)
            t[g] = allowed(w, g, p->max_layers) && gpu_group_supported(w, g) ? ENGINE_SITE_STREAMED : ENGINE_SITE_CPU;
        if (placement_bytes(e, t, p->stream_depth, n_kv) <= budget) {
            memcpy(site, t, groups);
            break;
        }
    }
    free(t);
}

/* Allocates what the placement needs, the ring first. With `exact` (a
 * plan's placement) any failure is the error; else a refused allocation
 * ends the placement there (that group and the ones after it run on the
 * CPU, the reason in the note). Sets e->site[] and the groups' stream
 * order; *n_placed counts the groups on the GPU. */
static strata_status allocate_sites(engine *e, const uint8_t *site, uint32_t depth, bool exact, uint32_t *n_placed,
                                    strata_error *err)
{
    const model_weights *w = &e->w;
    gpu_state *gs = st_of(e->gpu);
    strata_error aerr = {0};
    uint64_t slot = slot_bytes(w, site);
    bool any = false;
    for (uint32_t g = 0; g <= w->d.n_layers; g++) any = any || site[g] != ENGINE_SITE_CPU;
    if (!any) return STRATA_OK; /* nothing fits: no device memory at all */
    strata_status st = gpu_alloc_activations(e, streams_experts(w, site), &aerr);
    if (!st && slot) st = gpu_stream_open(gs->v, e->acct, depth, slot, &gs->stream, &aerr);
    uint32_t n_prefill = 0; /* groups streamed for a prompt batch, so far */
    for (uint32_t g = 0; g <= w->d.n_layers && !st; g++) {
        if (site[g] == ENGINE_SITE_CPU) continue;
        bool streamed = site[g] == ENGINE_SITE_STREAMED || site[g] == SITE_PREFILL_ONLY;
        st = gpu_alloc_group(e, g, streamed, site[g] != SITE_PREFILL_ONLY, &aerr);
        if (st) break;
        if (streamed) gs->groups[g].stream_k[1] = n_prefill++;
        if (site[g] == ENGINE_SITE_STREAMED) gs->groups[g].stream_k[0] = gs->n_streamed++;
        if (site[g] != SITE_PREFILL_ONLY) e->site[g] = e->gpu;
        e->site_prefill[g] = e->gpu;
        (*n_placed)++;
    }
    if (!st) return STRATA_OK;
    if (exact) {
        *err = aerr;
        return st;
    }
    snprintf(gs->note, sizeof gs->note, "%s", aerr.message);
    return STRATA_OK;
}

/* A plan puts group g on the GPU, whose shaders do not run its weight types. */
static strata_status unsupported_group(const model_weights *w, uint32_t g, strata_error *err)
{
    return err_set(err, STRATA_E_UNSUPPORTED, "GPU placement: the GPU cannot run %s %u (its weight types)",
                   g < w->d.n_layers ? "layer" : "the output group", g);
}

/* A plan's placement: every GPU group must be one the shaders run, and
 * the whole must fit in the budget. */
static strata_status check_sites(const engine *e, const uint8_t *site, uint32_t depth, uint32_t n_kv, uint64_t budget,
                                  strata_error *err)
{
    const model_weights *w = &e->w;
    for (uint32_t g = 0; g <= w->d.n_layers; g++) {
        if (site[g] > ENGINE_SITE_STREAMED)
            return err_set(err, STRATA_E_INVALID, "GPU placement: group %u has no site %u", g, site[g]);
        if (site[g] != ENGINE_SITE_CPU && !gpu_group_supported(w, g)) return unsupported_group(w, g, err);
    }
    uint64_t need = placement_bytes(e, site, depth, n_kv);
    if (need > budget) {
        char a[32], b[32];
        return err_set(err, STRATA_E_NOMEM, "GPU placement: it needs %s of device memory, more than the %s "
                       "available", fmt_bytes(need, a, sizeof a), fmt_bytes(budget, b, sizeof b));
    }
    return STRATA_OK;
}

/* A plan's prompt-batch sites merged into its decoding sites: a group
 * either runs on the same site in both phases, or decodes on the CPU and
 * is streamed for prompt batches (SITE_PREFILL_ONLY: it widens the ring's
 * slot, its KV cache stays on the CPU); the whole must fit the budget. */
static strata_status merge_prefill_sites(const engine *e, uint8_t *site, const uint8_t *prefill, uint32_t depth,
                                         uint32_t n_kv, uint64_t budget, strata_error *err)
{
    const model_weights *w = &e->w;
    for (uint32_t g = 0; g <= w->d.n_layers; g++) {
        if (prefill[g] == site[g]) continue;
        if (site[g] != ENGINE_SITE_CPU || prefill[g] != ENGINE_SITE_STREAMED)
            return err_set(err, STRATA_E_INVALID, "GPU placement: group %u runs on site %u for prompt batches and %u "
                           "when decoding: only a group on the CPU may differ, streamed for prompt batches", g,
                           prefill[g], site[g]);
        if (!gpu_group_supported(w, g)) return unsupported_group(w, g, err);
        site[g] = SITE_PREFILL_ONLY;
    }
    uint64_t need = placement_bytes(e, site, depth, n_kv);
    if (need > budget) {
        char a[32], b[32];
        return err_set(err, STRATA_E_NOMEM, "GPU placement: with the groups streamed for prompt batches it needs %s "
                       "of device memory, more than the %s available", fmt_bytes(need, a, sizeof a),
                       fmt_bytes(budget, b, sizeof b));
    }
    return STRATA_OK;
}

/* A plan's sites (p->sites, its prompt-batch sites merged in) into site[]
 * when the device runs them within the budget. Else the error, or with
 * --gpu auto (the device found is not the one planned for) a note and
 * *exact false: the default placement instead. */
static strata_status plan_sites(engine *e, const engine_gpu *p, uint64_t budget, uint32_t depth, uint8_t *site,
                                bool *exact, strata_error *err)
{
    gpu_state *g = st_of(e->gpu);
    memcpy(site, p->sites, e->w.d.n_layers + 1);
    strata_error cerr = {0};
    strata_status st = check_sites(e, site, depth, g->n_kv, budget, &cerr);
    if (!st && p->prefill_sites) st = merge_prefill_sites(e, site, p->prefill_sites, depth, g->n_kv, budget, &cerr);
    if (st && p->mode == ENGINE_GPU_AUTO) {
        snprintf(g->note, sizeof g->note, "%.400s; placed from the first layer instead", cerr.message);
        *exact = false;
        return STRATA_OK;
    }
    if (st) *err = cerr;
    return st;
}

strata_status gpu_place(engine *e, const engine_gpu *p, uint64_t budget, uint32_t depth, uint32_t *n_placed,
                        strata_error *err)
{
    uint8_t *site = calloc(e->w.d.n_layers + 1, 1);
    if (!site) return err_set(err, STRATA_E_NOMEM, "out of memory");
    bool exact = p->sites != NULL;
    strata_status st = exact ? plan_sites(e, p, budget, depth, site, &exact, err) : STRATA_OK;
    if (!exact) choose_sites(e, budget, p, st_of(e->gpu)->n_kv, site);
    if (!st) st = allocate_sites(e, site, depth, exact, n_placed, err);
    free(site);
    return st;
}
