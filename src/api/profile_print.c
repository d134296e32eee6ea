/* Public API: the human report of a machine profile (`strata detect`). */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api/profile_internal.h"
#include "util/fmt.h"

static void print_cpu(FILE *out, const hw_cpu *c)
{
    char a[32], b[32], d[32];
    fprintf(out, "CPU       %s (%s)\n", c->model, c->arch[0] ? c->arch : "unknown architecture");
    fprintf(out, "          %u logical / %u physical cores, %u usable; SIMD:", c->logical_cores, c->physical_cores,
            c->usable_cores);
    if (!c->features) fprintf(out, " none known");
    for (int i = 0; i < HW_CPU_FEATURE_COUNT; i++)
        if (c->features & (1u << i)) fprintf(out, " %s", hw_cpu_feature_name(1u << i));
    fprintf(out, "\n");
    if (c->cache_l1d || c->cache_l2 || c->cache_l3)
        fprintf(out, "          caches: L1d %s, L2 %s, L3 %s\n",
                c->cache_l1d ? fmt_bytes(c->cache_l1d, a, sizeof a) : "?",
                c->cache_l2 ? fmt_bytes(c->cache_l2, b, sizeof b) : "?",
                c->cache_l3 ? fmt_bytes(c->cache_l3, d, sizeof d) : "?");
}

static void print_memory(FILE *out, const hw_memory *m)
{
    char a[32], b[32], c[32];
    if (!m->total) {
        fprintf(out, "Memory    unknown\n");
    } else {
        fprintf(out, "Memory    total %s, available %s, ", fmt_bytes(m->total, a, sizeof a),
                fmt_bytes(m->available, b, sizeof b));
        if (m->swap_total)
            fprintf(out, "swap %s (%s free)\n", fmt_bytes(m->swap_total, c, sizeof c),
                    fmt_bytes(m->swap_free, a, sizeof a));
        else fprintf(out, "no swap\n");
    }
    const hw_cgroup *cg = &m->cgroup;
    if (!cg->version) fprintf(out, "          cgroup: no memory controller found\n");
    else if (cg->limit == HW_NO_LIMIT)
        fprintf(out, "          cgroup v%d %s: no limit (using %s)\n", cg->version, cg->path,
                fmt_bytes(cg->usage, a, sizeof a));
    else
        fprintf(out, "          cgroup v%d %s: limit %s, using %s, headroom %s\n", cg->version, cg->path,
                fmt_bytes(cg->limit, a, sizeof a), fmt_bytes(cg->usage, b, sizeof b),
                fmt_bytes(cg->headroom, c, sizeof c));
    fprintf(out, "          usable for strata: %s; transparent huge pages: %s\n",
            m->total ? fmt_bytes(m->usable, a, sizeof a) : "unknown", m->thp[0] ? m->thp : "unknown");
}

static const char *tri(hw_tristate t, const char *yes, const char *no)
{
    return t == HW_YES ? yes : t == HW_NO ? no : "unknown";
}

static void print_storage(FILE *out, const hw_storage *s)
{
    char a[32], b[32];
    fprintf(out, "Storage   %s on %s (%s, %s, %s)\n", s->path[0] ? s->path : "?",
            s->mount_point[0] ? s->mount_point : "?", s->fs_type[0] ? s->fs_type : "unknown filesystem",
            s->device[0] ? s->device : "unknown device", tri(s->rotational, "rotational", "non-rotational"));
    if (s->total_bytes)
        fprintf(out, "          free %s of %s; O_DIRECT: %s\n", fmt_bytes(s->free_bytes, a, sizeof a),
                fmt_bytes(s->total_bytes, b, sizeof b), tri(s->o_direct, "yes", "no"));
    else fprintf(out, "          free space unknown; O_DIRECT: %s\n", tri(s->o_direct, "yes", "no"));
}

static void print_gpu(FILE *out, int i, const hw_gpu *g)
{
    char a[32], b[32];
    const char *vendor = hw_vendor_name(g->vendor_id);
    fprintf(out, "%-10s%d: %s (%s%s%s%s%s)\n", i ? "" : "GPUs", i, g->name, hw_gpu_type_name(g->type),
            vendor[0] ? ", " : "", vendor, g->driver[0] ? ", " : "", g->driver);
    if (g->vram_total) {
        fprintf(out, "             memory %s", fmt_bytes(g->vram_total, a, sizeof a));
        if (g->vram_used || g->vram_free)
            fprintf(out, ", %s used by all processes", fmt_bytes(g->vram_used, b, sizeof b));
        if (g->has_budget) fprintf(out, ", budget %s", fmt_bytes(g->vram_budget, b, sizeof b));
        fprintf(out, "\n");
    }
    if (g->pcie.gen || g->pcie.width)
        fprintf(out, "             PCIe %s gen%d x%d (max gen%d x%d)\n", g->pci_address, g->pcie.gen, g->pcie.width,
                g->pcie.max_gen, g->pcie.max_width);
}

static void print_gpus(FILE *out, const hw_profile *p)
{
    if (!p->n_gpus) {
        fprintf(out, "GPUs      none (Vulkan loader %s, %d driver manifest(s); NVML %s)\n",
                p->stack.vulkan_loader ? "present" : "absent", p->stack.vulkan_icds,
                p->stack.nvml ? "present" : "absent");
        return;
    }
    for (int i = 0; i < p->n_gpus; i++) print_gpu(out, i, &p->gpus[i]);
}

static void print_measured(FILE *out, const hw_profile *p, hw_cache_state cache, bool fresh_run)
{
    const hw_measured *m = &p->measured;
    char a[32], b[32], when[40] = "?";
    if (!m->done) {
        fprintf(out, "Measured  not yet (saved profile %s): run `strata detect --measure`\n",
                hw_cache_state_name(cache));
        return;
    }
    time_t t = (time_t)m->time;
    struct tm tm;
    if (t > 0 && gmtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", &tm);
    fprintf(out, "Measured  %s%s\n", when, fresh_run ? "" : " (saved profile)");
    fprintf(out, "          RAM read %s (1 thread), %s (%d threads)\n", fmt_bandwidth(m->ram_bw_1t, a, sizeof a),
            fmt_bandwidth(m->ram_bw_all, b, sizeof b), m->ram_threads);
    if (m->cpu_rate > 0)
        fprintf(out,
                "          CPU kernels %.1f G weights/s in cache, %.1f GB/s of weights from RAM (Q4_K, %d threads)\n",
                m->cpu_rate / 1e9, m->kernel_ram_bw / 1e9, m->ram_threads);
    for (int i = 0; i < m->n_engine && i < HW_MAX_ENGINE_CALIB; i++) {
        const hw_engine_calib *c = &m->engine[i];
        fprintf(out, "          engine, %d thread%s: resident weights at", c->threads, c->threads == 1 ? "" : "s");
        for (int k = 0; k < HW_ENGINE_TYPES; k++)
            if (c->type_bw[k] > 0)
                fprintf(out, " %.1f GB/s (%s)", c->type_bw[k] / 1e9, hw_engine_type_name((hw_engine_type)k));
        fprintf(out, ", plus %.0f us per layer and %.0f us per token\n", c->layer_s * 1e6, c->token_s * 1e6);
    }
    if (m->disk_bw > 0)
        fprintf(out, "          storage O_DIRECT read %s (%s of %s)\n", fmt_bandwidth(m->disk_bw, a, sizeof a),
                fmt_bytes(m->disk_bytes, b, sizeof b), m->disk_path);
    else fprintf(out, "          storage read not measured\n");
    for (int i = 0; i < p->n_gpus; i++) {
        const hw_gpu *g = &p->gpus[i];
        if (g->h2d_bw > 0)
            fprintf(out, "          GPU %d host->device copy %s\n", i, fmt_bandwidth(g->h2d_bw, a, sizeof a));
        if (g->mv_q4_k_bw > 0)
            fprintf(out, "          GPU %d memory read %s (F16 weights), %s of Q4_K weights (one-token product)\n", i,
                    fmt_bandwidth(g->vram_bw, a, sizeof a), fmt_bandwidth(g->mv_q4_k_bw, b, sizeof b));
        if (g->mm_q4_k_flops > 0)
            fprintf(out, "          GPU %d prompt batch %.3g GFLOP/s (Q4_K weights, 512 tokens)\n", i,
                    g->mm_q4_k_flops / 1e9);
        if (g->round_trip_s > 0)
            fprintf(out, "          GPU %d round trip %.0f us (a small read back, submitted and waited for)\n", i,
                    g->round_trip_s * 1e6);
    }
}

static void print_human(FILE *out, const hw_profile *p, hw_cache_state cache, bool fresh_run)
{
    print_cpu(out, &p->cpu);
    print_memory(out, &p->mem);
    print_storage(out, &p->storage);
    print_gpus(out, p);
    print_measured(out, p, cache, fresh_run);
    for (int i = 0; i < p->n_warnings; i++) fprintf(out, "%-10s%s\n", i ? "" : "Warnings", p->warnings[i]);
}

void strata_profile_print(const strata_profile *p, FILE *out) { print_human(out, &p->hw, p->saved, p->measured_now); }
