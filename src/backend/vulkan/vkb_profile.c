/* STRATA_VK_PROFILE=1: a timestamp after every dispatch and staged copy,
 * the device time between consecutive timestamps summed per shader (and
 * pipeline variant), and a table on stderr at vkb_close. Writing a
 * timestamp after each dispatch waits for it to finish, so dispatches that
 * could overlap run one after another: the table says where device time
 * goes, not how fast an unprofiled run is. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/vulkan/vkb_internal.h"

void vkb_prof_init(vkb *v)
{
    const char *env = getenv("STRATA_VK_PROFILE");
    if (!env || !*env || env[0] == '0') return;
    VkPhysicalDeviceProperties2 p = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
    v->f.GetPhysicalDeviceProperties2(v->phys, &p);
    VkQueueFamilyProperties q[32];
    uint32_t n = 32;
    v->f.GetPhysicalDeviceQueueFamilyProperties(v->phys, &n, q);
    if (v->queue_family >= n || q[v->queue_family].timestampValidBits == 0 || p.properties.limits.timestampPeriod <= 0) {
        fprintf(stderr, "strata: STRATA_VK_PROFILE: %s has no timestamps on its compute queue\n", v->info.name);
        return;
    }
    VkQueryPoolCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
        .queryType = VK_QUERY_TYPE_TIMESTAMP,
        .queryCount = VKB_PROF_MAX,
    };
    if (v->f.CreateQueryPool(v->dev, &ci, NULL, &v->prof.pool) != VK_SUCCESS) {
        v->prof.pool = VK_NULL_HANDLE;
        return;
    }
    v->prof.period_ns = p.properties.limits.timestampPeriod;
}

void vkb_prof_begin(vkb *v)
{
    if (!v->prof.pool) return;
    v->f.CmdResetQueryPool(v->cmd, v->prof.pool, 0, VKB_PROF_MAX);
    v->f.CmdWriteTimestamp(v->cmd, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, v->prof.pool, 0);
    v->prof.n = 1;
}

void vkb_prof_mark(vkb *v, uint32_t label)
{
    if (!v->prof.pool || v->prof.n >= VKB_PROF_MAX) return;
    v->prof.label[v->prof.n] = (uint16_t)label;
    v->f.CmdWriteTimestamp(v->cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, v->prof.pool, v->prof.n);
    v->prof.n++;
}

void vkb_prof_collect(vkb *v, double wall_ns)
{
    if (!v->prof.pool || v->prof.n < 2) return;
    uint64_t *t = v->prof.ts;
    if (v->f.GetQueryPoolResults(v->dev, v->prof.pool, 0, v->prof.n, sizeof v->prof.ts, t, sizeof t[0],
                                 VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT) != VK_SUCCESS)
        return;
    for (uint32_t i = 1; i < v->prof.n; i++) {
        double d = t[i] >= t[i - 1] ? (double)(t[i] - t[i - 1]) * v->prof.period_ns : 0;
        v->prof.ns[v->prof.label[i]] += d;
        v->prof.count[v->prof.label[i]]++;
    }
    v->prof.gpu_ns += (double)(t[v->prof.n - 1] - t[0]) * v->prof.period_ns;
    v->prof.wall_ns += wall_ns;
    v->prof.runs++;
    v->prof.n = 0;
}

void vkb_prof_close(vkb *v)
{
    if (!v->prof.pool) return;
    v->f.DestroyQueryPool(v->dev, v->prof.pool, NULL);
    v->prof.pool = VK_NULL_HANDLE;
    if (!v->prof.runs) return;
    static const char *const var_names[VKB_VARIANTS] = {"", " (decode)", " (decode, glu)", " (tiled)"};
    fprintf(stderr, "strata: Vulkan profile of %s: %llu runs, device %.3f ms, wall %.3f ms (submit to wait)\n",
            v->info.name, (unsigned long long)v->prof.runs, v->prof.gpu_ns / 1e6, v->prof.wall_ns / 1e6);
    fprintf(stderr, "  %-28s %10s %12s %10s %6s\n", "shader", "count", "total ms", "mean us", "%");
    for (;;) { /* the largest first */
        int best = -1;
        for (int i = 0; i <= (int)VKB_PROF_COPY; i++)
            if (v->prof.count[i] && (best < 0 || v->prof.ns[i] > v->prof.ns[best])) best = i;
        if (best < 0) break;
        char name[64];
        if (best == (int)VKB_PROF_COPY) snprintf(name, sizeof name, "staged copy");
        else
            snprintf(name, sizeof name, "%s%s", vkb_shader_name((vkb_shader_id)(best / VKB_VARIANTS)),
                     var_names[best % VKB_VARIANTS]);
        fprintf(stderr, "  %-28s %10llu %12.3f %10.2f %6.1f\n", name, (unsigned long long)v->prof.count[best],
                v->prof.ns[best] / 1e6, v->prof.ns[best] / 1e3 / (double)v->prof.count[best],
                v->prof.gpu_ns > 0 ? 100.0 * v->prof.ns[best] / v->prof.gpu_ns : 0.0);
        v->prof.count[best] = 0;
    }
}
