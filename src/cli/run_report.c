#include <stdio.h>
#include <sys/resource.h>
#include <time.h>

#include "cli/run_report.h"
#include "util/fmt.h"
#include "util/clock.h"

double report_now(void) { return clock_seconds(); }

/* "in VRAM", or with streaming how many groups come from RAM each token. */
static const char *gpu_where(const strata_model_stats *s, char *buf, size_t n)
{
    if (!s->gpu_streamed && !s->gpu_prefill_streamed) return "in VRAM";
    size_t len = (size_t)snprintf(buf, n, "on the GPU, %u of the groups streamed from RAM each token",
                                  s->gpu_streamed);
    if (s->gpu_prefill_streamed && len < n)
        snprintf(buf + len, n - len, "; %u more groups on the CPU streamed to it for prompt batches",
                 s->gpu_prefill_streamed);
    return buf;
}

void report_placement(const strata_model *m, const char *path, unsigned long long budget)
{
    strata_model_stats s;
    strata_model_get_stats(m, &s);
    char a[32], where[192];
    const char *summary = strata_model_plan_summary(m);
    if (strata_model_budget(m)) budget = strata_model_budget(m);
    if (summary[0]) fprintf(stderr, "strata: %s; budget %s\n", summary, fmt_bytes(budget, a, 32));
    if (s.gpu_name[0])
        fprintf(stderr, "strata: GPU %s: %u layers%s %s (%s)%s%s\n", s.gpu_name, s.gpu_layers,
                s.gpu_output ? " and the output" : "", gpu_where(&s, where, sizeof where),
                fmt_bytes(s.gpu_bytes, a, 32), s.gpu_note[0] ? "; " : "", s.gpu_note);
    else if (s.gpu_note[0])
        fprintf(stderr, "strata: running on the CPU: %s\n", s.gpu_note);
    if (s.streamed_layers && !s.direct_io)
        fprintf(stderr, "strata: %s: O_DIRECT is not supported there; streaming through the page cache "
                "(pages are dropped after use)\n", path);
}

void report_phase_begin(run_report *r, const strata_model *m)
{
    strata_model_get_stats(m, &r->at_start);
    r->last = r->at_start;
    r->phase_t0 = report_now();
}

void report_phase_end(run_report *r, const strata_model *m)
{
    strata_model_stats s;
    strata_model_get_stats(m, &s);
    r->at_end = s;
    r->gen_s = report_now() - r->phase_t0;
    r->gen_bytes = s.bytes_read - r->at_start.bytes_read;
    r->gen_active_s = s.io_active_s - r->at_start.io_active_s;
}

void report_pass(run_report *r, const strata_model *m, const char *what, size_t index, size_t n_tokens,
                 double eval_s)
{
    strata_model_stats s;
    strata_model_get_stats(m, &s);
    double wait = s.io_wait_s - r->last.io_wait_s;
    char count[32] = "";
    if (n_tokens != 1) snprintf(count, sizeof count, " (%zu tokens)", n_tokens);
    fprintf(stderr, "strata: %s %zu%s: read %.1f MiB in %llu requests, I/O busy %.1f ms (the disk reading %.1f ms), "
            "compute %.1f ms, waited for I/O %.1f ms\n", what, index, count,
            (double)(s.bytes_read - r->last.bytes_read) / (1 << 20),
            (unsigned long long)(s.read_requests - r->last.read_requests), 1e3 * (s.io_busy_s - r->last.io_busy_s),
            1e3 * (s.io_active_s - r->last.io_active_s), 1e3 * (eval_s - wait), 1e3 * wait);
    r->last = s;
}

/* Decode speed: the first generated token comes from the prompt's logits,
 * so n_gen tokens took n_gen - 1 forward passes. */
static double decode_tps(const run_report *r)
{
    return r->gen_s > 0 && r->n_gen > 1 ? (double)(r->n_gen - 1) / r->gen_s : 0.0;
}

static double percent(uint64_t part, uint64_t whole) { return whole ? 100.0 * (double)part / (double)whole : 0.0; }

/* Mixture of experts: the cache's hit rate while decoding (the prompt's
 * batches use nearly every expert), its size and policy, the prefetches;
 * with --stats the hits of each layer over the whole run. */
static void report_experts(const run_report *r, const strata_model *m, const strata_model_stats *s)
{
    static const char *const policy[] = {"LRU", "LFU"}, *const predictor[] = {"none", "prev", "router"};
    uint64_t hits = s->expert_hits - r->at_start.expert_hits, misses = s->expert_misses - r->at_start.expert_misses;
    uint64_t issued = s->prefetch_issued - r->at_start.prefetch_issued, used = s->prefetch_used - r->at_start.prefetch_used;
    char a[32];
    fprintf(stderr, "strata: experts: hit %.1f %% in decode (%llu of %llu uses), cache %u of %u experts (%s, %s), "
            "prefetch %s", percent(hits, hits + misses), (unsigned long long)hits,
            (unsigned long long)(hits + misses), s->expert_slots, s->experts, fmt_bytes(s->expert_cache_bytes, a, 32),
            policy[r->moe_cache], predictor[r->moe_prefetch]);
    if (r->moe_prefetch != STRATA_MOE_PREFETCH_NONE)
        fprintf(stderr, ": %.0f %% of %llu used", percent(used, issued), (unsigned long long)issued);
    fputc('\n', stderr);
    strata_layer_expert_stats x;
    for (uint32_t l = 0; r->per_layer && strata_model_layer_expert_stats(m, l, &x); l++)
        fprintf(stderr, "strata: experts of layer %u: hit %.1f %% (%llu of %llu uses), prefetched %llu, used %llu\n", l,
                percent(x.hits, x.hits + x.misses), (unsigned long long)x.hits,
                (unsigned long long)(x.hits + x.misses), (unsigned long long)x.prefetch_issued,
                (unsigned long long)x.prefetch_used);
}

/* --stats: where a decode token's time went on the CPU: parallel jobs
 * (their count, wall time, and how much of it the threads worked), and
 * the time outside them, which one thread spends alone (norms, RoPE,
 * residual adds, quantizing activations, waiting for streamed weights,
 * sampling). This is what limits scaling to more threads. */
static void report_cpu(const run_report *r)
{
    const strata_model_stats *a = &r->at_start, *b = &r->at_end;
    double passes = (double)(r->n_gen - 1), jobs_s = (b->cpu_job_s - a->cpu_job_s) / passes;
    double busy_s = (b->cpu_busy_s - a->cpu_busy_s) / passes, token_s = r->gen_s / passes;
    fprintf(stderr, "strata: CPU per decode token (%u thread%s): %.0f parallel jobs, %.2f ms in them (threads working "
            "%.0f %% of that), %.2f ms outside them on one thread (%.0f %% of the token)\n", b->cpu_threads,
            b->cpu_threads == 1 ? "" : "s", (double)(b->cpu_jobs - a->cpu_jobs) / passes, 1e3 * jobs_s,
            jobs_s > 0 ? 100 * busy_s / (jobs_s * b->cpu_threads) : 0.0, 1e3 * (token_s - jobs_s),
            token_s > 0 ? 100 * (token_s - jobs_s) / token_s : 0.0);
}

/* The memory-pressure watchdog: what it moved (always with --stats). */
static void report_pressure(const run_report *r, const strata_model_stats *s)
{
    if (!s->watchdog || (!s->pressure_shrinks && !s->pressure_grows && !r->per_layer)) return;
    char a[32], b[32], c[32];
    fprintf(stderr, "strata: memory pressure: %u shrink%s (%s of layers to streaming, %s given back, longest "
            "%.0f ms from pressure seen), %u grow%s (%s back in memory); %u layer%s streamed now\n",
            s->pressure_shrinks, s->pressure_shrinks == 1 ? "" : "s", fmt_bytes(s->pressure_demoted_bytes, a, 32),
            fmt_bytes(s->pressure_freed_bytes, b, 32), 1e3 * s->pressure_reaction_s, s->pressure_grows,
            s->pressure_grows == 1 ? "" : "s", fmt_bytes(s->pressure_promoted_bytes, c, 32),
            s->pressure_streamed_layers, s->pressure_streamed_layers == 1 ? " is" : "s are");
    if (r->per_layer)
        fprintf(stderr, "strata: memory pressure: %s\n", s->pressure_psi_trigger ? "woken by a PSI trigger and sampled "
                "every 100 ms" : "sampled every 100 ms (no PSI trigger)");
    if (r->per_layer && s->pressure_psi_wakeups)
        fprintf(stderr, "strata: memory pressure: %llu PSI wakeup%s\n", (unsigned long long)s->pressure_psi_wakeups,
                s->pressure_psi_wakeups == 1 ? "" : "s");
}

/* --stats: the memory account, per tier and category, e.g. "strata:
 * memory RAM: 300.1 MiB of a 512.0 MiB budget (peak 301.0 MiB): process
 * 5.3 MiB, weights 270.0 MiB, ..., sampler 0 B (peak 1.5 MiB), ...": a
 * category's own peak when it held more than it holds now. A tier holding
 * nothing is left out. */
void report_memory(const strata_model *m)
{
    static const char *const tiers[STRATA_MEM_N_TIERS] = {"RAM", "VRAM"};
    for (int t = 0; t < STRATA_MEM_N_TIERS; t++) {
        strata_mem_account a;
        strata_model_mem_account(m, (strata_mem_tier)t, &a);
        if (!a.total && !a.peak && t != STRATA_MEM_RAM) continue;
        char x[32], y[32], z[32];
        fprintf(stderr, "strata: memory %s: %s", tiers[t], fmt_bytes(a.total, x, 32));
        if (a.budget) fprintf(stderr, " of a %s budget", fmt_bytes(a.budget, y, 32));
        fprintf(stderr, " (peak %s):", fmt_bytes(a.peak, z, 32));
        for (int c = 0; c < STRATA_MEM_N_CATEGORIES; c++) {
            fprintf(stderr, "%s %s %s", c ? "," : "", strata_mem_category_name((strata_mem_category)c),
                    fmt_bytes(a.used[c], x, 32));
            /* what the generation loop held and gave back shows here */
            if (a.peak_used[c] > a.used[c]) fprintf(stderr, " (peak %s)", fmt_bytes(a.peak_used[c], y, 32));
        }
        fputc('\n', stderr);
    }
}

void report_summary(const run_report *r, const strata_model *m)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    strata_model_stats s;
    strata_model_get_stats(m, &s);
    fprintf(stderr,
            "\nstrata: load %.2f s | prompt %zu tokens, %.1f tok/s | generated %zu tokens, %.1f tok/s | "
            "peak RSS %.1f MiB (accounted %.1f MiB) | seed %llu\n",
            r->load_s, r->n_prompt, r->prompt_s > 0 ? (double)r->n_prompt / r->prompt_s : 0.0, r->n_gen,
            decode_tps(r), (double)ru.ru_maxrss / 1024.0,
            (double)s.accounted_bytes / (1 << 20), r->seed);
    double tps = decode_tps(r);
    if (s.predicted_decode_tps > 0 && r->n_gen > 1)
        fprintf(stderr, "strata: decode %.2f tok/s vs %.2f predicted by the plan (%.0f %%)%s\n", tps,
                s.predicted_decode_tps, 100 * tps / s.predicted_decode_tps,
                s.predicted_measured ? "" : " [bandwidths not measured]");
    if (s.experts) report_experts(r, m, &s);
    report_pressure(r, &s);
    if (r->per_layer) report_memory(m);
    if (r->per_layer && r->n_gen > 1 && r->gen_s > 0) report_cpu(r);
    if ((!s.streamed_layers && s.expert_slots == s.experts) || !r->n_gen || r->gen_s <= 0) return;
    double passes = r->n_gen > 1 ? (double)(r->n_gen - 1) : 1.0;
    double per_token = (double)r->gen_bytes / passes, rate = (double)r->gen_bytes / r->gen_s;
    fprintf(stderr, "strata: streamed %.3f GB/token at %.2f GB/s", per_token / 1e9, rate / 1e9);
    if (r->disk_bw > 0) fprintf(stderr, ", %.0f %% of the disk bound (%.2f GB/s measured)", 100 * rate / r->disk_bw,
                                r->disk_bw / 1e9);
    else fprintf(stderr, " (disk bound unknown: run `strata detect --measure`)");
    /* what the engine controls: the disk idles only while no read is in
     * progress; the bound's fraction also moves with the disk's own speed */
    fprintf(stderr, "; reads in progress %.0f %% of the decode time\n", 100 * r->gen_active_s / r->gen_s);
}
