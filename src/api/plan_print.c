/* Public API: the human report of a plan (`strata plan`). */
#include <stdio.h>
#include <string.h>

#include "api/plan_internal.h"
#include "plan/plan_text.h"
#include "util/fmt.h"

static void print_tier_line(FILE *out, const char *name, const plan_tier_bytes *t)
{
    char w[32], k[32], b[32], o[32];
    fprintf(out, "  %-10s weights %10s   KV cache %10s   buffers %10s   overhead %10s\n", name,
            fmt_bytes(t->weights, w, 32), fmt_bytes(t->kv, k, 32), fmt_bytes(t->buffers, b, 32),
            fmt_bytes(t->overhead, o, 32));
}

/* The experts' part: where they live, the hit rate assumed and whence, and
 * what the misses read per token. */
static void print_experts(FILE *out, const plan *p)
{
    char a[32], b[32];
    if (p->moe_split) {
        fprintf(out, "  %-10s of the first %u layers resident in RAM (llama.cpp --n-cpu-moe %u), the rest on the GPU\n",
                "experts", p->n_cpu_moe, p->n_cpu_moe);
        return;
    }
    if (!p->expert_units) return;
    if (p->expert_slots >= p->expert_units) {
        fprintf(out, "  %-10s all %u units resident (%s each, included in RAM weights)\n", "experts", p->expert_units,
                fmt_bytes(p->expert_slot_bytes, a, 32));
        return;
    }
    bool stated = p->expert_hit_source && !strcmp(p->expert_hit_source, "stated");
    fprintf(out,
            "  %-10s cache of %u of %u units, %s each (included in RAM weights); hit rate %.1f%% (%s); "
            "misses read %s per token\n",
            "experts", p->expert_slots, p->expert_units, fmt_bytes(p->expert_slot_bytes, a, 32),
            100 * p->expert_hit_rate, stated ? "stated with --moe-hit-rate" : p->expert_hit_source,
            fmt_bytes(p->expert_disk_bytes_per_token, b, 32));
}

/* Where everything lives and what memory it takes (the disk line: what a
 * forward pass reads). */
static void print_placement(FILE *out, const plan_model *m, const plan_machine *hw, const plan *p)
{
    char a[32], s[1024];
    plan_placement_summary(m, p, s, sizeof s);
    fprintf(out, "plan        %s, context %u, KV cache %s\n", p->label, p->n_ctx, plan_kv_name(p->kv));
    fprintf(out, "placement   %s\n", s);
    if (p->phase_sites) {
        plan_prefill_summary(m, p, s, sizeof s);
        fprintf(out, "prefill     %s\n", s);
    }
    fprintf(out, "memory      budget %s\n", fmt_bytes(hw->ram_budget, a, 32));
    for (int d = 0; d < PLAN_MAX_GPUS; d++)
        if (p->gpu[d].weights || p->gpu[d].kv) {
            char name[16];
            snprintf(name, sizeof name, "GPU %d", d);
            print_tier_line(out, name, &p->gpu[d]);
        }
    print_tier_line(out, "RAM", &p->ram);
    if (p->n_slots)
        fprintf(out, "  %-10s %u slots of %s (included in RAM weights)\n", "streaming", p->n_slots,
                fmt_bytes(p->slot_bytes, a, 32));
    fprintf(out, "  %-10s %s read per token\n", "disk", fmt_bytes(p->disk_bytes_per_token, a, 32));
    print_experts(out, p);
}

/* One sequence: decode and prefill speed, and the per-token terms. */
static void print_speed(FILE *out, const plan_machine *hw, const plan_machine_notes *notes, const plan *p)
{
    char b[32], c[32], rate[48];
    fprintf(out, "speed       decode %.2f tok/s, prefill %.1f tok/s; bottleneck: %s\n", p->decode_tps, p->prefill_tps,
            p->bottleneck);
    fprintf(out, "per token   compute %.1f ms (%s) | RAM %s, %.1f ms at %.1f GB/s | disk %s, %.1f ms at %.2f GB/s",
            1e3 * p->t_compute, fmt_rate(hw->cpu_rate, "weights/s", rate, sizeof rate),
            fmt_bytes(p->ram_bytes_per_token, b, 32), 1e3 * p->t_ram, hw->ram_bw / 1e9,
            fmt_bytes(p->disk_bytes_per_token, c, 32), 1e3 * p->t_disk, hw->disk_bw / 1e9);
    if (notes->disk[0]) fprintf(out, " (%s)", notes->disk);
    if (p->vram_bytes_per_token) fprintf(out, " | VRAM %.1f ms | link %.1f ms", 1e3 * p->t_vram, 1e3 * p->t_link);
    fprintf(out, "\n");
    if (hw->engine_bw > 0)
        fprintf(out, "threads     %d (engine %s)\n", hw->threads,
                hw->threads_scaled      ? "rates scaled from a calibration at another thread count"
                : notes->calibrated_now ? "calibrated at this thread count now"
                                        : "calibrated at this thread count");
}

/* N sequences: the aggregate decode speed of a step of N tokens, its
 * terms, and for -np auto why N (and what smaller N would give). */
static void print_batch(FILE *out, const plan_model *m, const plan_machine *hw, const plan_machine_notes *notes,
                        bool parallel_auto, const plan_batch *b)
{
    const plan *p = &b->r.chosen;
    char kv[32];
    uint64_t per_seq = p->ram.kv;
    for (int d = 0; d < PLAN_MAX_GPUS; d++) per_seq += p->gpu[d].kv;
    per_seq /= b->n_seq;
    if (parallel_auto)
        fprintf(out, "batch       -np %u: the most sequences whose KV caches fit next to the weights%s\n", b->n_seq,
                b->n_seq == PLAN_BATCH_MAX || b->n_seq == m->batch ? " (the most one forward pass holds)" : "");
    fprintf(out, "sequences   %u of context %u, KV cache %s each\n", b->n_seq, b->n_ctx, fmt_bytes(per_seq, kv, 32));
    fprintf(out, "speed       decode %.2f tok/s aggregate (%.3f per sequence), a step %.1f ms; bottleneck: %s\n",
            b->decode_tps, b->seq_tps, 1e3 * b->step_s, b->bottleneck);
    fprintf(out, "per step    compute %.1f ms | RAM %.1f ms at %.1f GB/s | disk %.1f ms at %.2f GB/s",
            1e3 * p->tb_compute, 1e3 * p->tb_ram, hw->ram_bw / 1e9, 1e3 * p->tb_disk, hw->disk_bw / 1e9);
    if (notes->disk[0]) fprintf(out, " (%s)", notes->disk);
    if (p->vram_bytes_per_token) fprintf(out, " | VRAM %.1f ms | link %.1f ms", 1e3 * p->tb_vram, 1e3 * p->tb_link);
    fprintf(out, "\n");
}

/* -np auto: the aggregate at powers of two below the chosen N. */
static void print_scaling(FILE *out, const plan_model *m, const plan_machine *hw, const plan_request *req,
                          const plan_batch *b)
{
    fprintf(out, "scaling    ");
    for (uint32_t n = 1; n < b->n_seq; n *= 2) {
        plan_batch x;
        plan_batch_compute(m, hw, req, n, &x);
        fprintf(out, " -np %u: %.2f,", n, x.decode_tps);
        plan_batch_free(&x);
    }
    fprintf(out, " -np %u: %.2f tok/s\n", b->n_seq, b->decode_tps);
}

/* The alternatives; those the engine cannot run (gpu_runnable: several
 * GPUs, a GPU layer's KV cache in RAM, the --n-cpu-moe split) marked with
 * '*'. */
static void print_compare(FILE *out, const plan_result *r)
{
    bool marked = false;
    fprintf(out, "\nalternatives considered\n");
    for (int i = 0; i < r->n_alts; i++) {
        const plan *a = &r->alts[i];
        char mark = a->feasible && !a->runnable ? '*' : ' ';
        marked |= mark == '*';
        if (a->feasible)
            fprintf(out, "%c %-45s ctx %-6u decode %8.2f tok/s  prefill %8.1f tok/s  %s\n", mark, a->label, a->n_ctx,
                    a->decode_tps, a->prefill_tps, a->rejected);
        else fprintf(out, "  %-45s ctx %-6u %s\n", a->label, a->n_ctx, a->rejected);
    }
    if (marked)
        fprintf(out, "* strata cannot run this plan (it runs " PLAN_ENGINE_GPU_RULE ")\n");
}

void strata_plan_print_export(const strata_plan *p, FILE *out)
{
    char flags[256], note[256];
    plan_export_llamacpp(&p->view, &plan_api_result(p)->chosen, flags, sizeof flags, note, sizeof note);
    fprintf(out, "llama.cpp   %s\n            (%s)\n", flags, note);
}

void strata_plan_print(const strata_plan *p, FILE *out, unsigned flags)
{
    const plan_result *r = plan_api_result(p);
    fprintf(out, "model       %s\n", p->model_path);
    if (p->notes.profile[0]) fprintf(out, "machine     %s\n", p->notes.profile);
    if (p->routing_note[0]) fprintf(out, "experts     %s\n", p->routing_note);
    if (!r->chosen.feasible) {
        fprintf(out, "cannot run: %s\n", r->chosen.reason);
    } else {
        print_placement(out, &p->view, &p->machine, &r->chosen);
        if (!p->batched) print_speed(out, &p->machine, &p->notes, &r->chosen);
        else print_batch(out, &p->model, &p->machine, &p->notes, p->parallel_auto, &p->batch);
        if (p->batched && p->parallel_auto) print_scaling(out, &p->model, &p->machine, &p->req, &p->batch);
    }
    for (int i = 0; i < r->n_warnings; i++) fprintf(out, "warning     %s\n", r->warnings[i]);
    if (flags & STRATA_PLAN_COMPARE) print_compare(out, r);
    if ((flags & STRATA_PLAN_EXPORT) && r->chosen.feasible) {
        fprintf(out, "\n");
        strata_plan_print_export(p, out);
    }
}
