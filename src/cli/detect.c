/* strata detect [--json] [--measure [--quick]] [--path PATH] [--profile FILE]:
 * what this machine has, and with --measure how fast it moves bytes; the
 * measured profile is saved and reused until the machine changes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "hw/hw.h"
#include "plan/inputs.h"
#include "util/fmt.h"

static const char detect_usage[] =
    "usage: strata detect [--json] [--measure [--quick]] [--path PATH] [--profile FILE]\n"
    "\n"
    "Reports this machine's CPU (cores, SIMD features, caches), memory (available,\n"
    "swap, the cgroup limit, what strata may use), the storage where models live\n"
    "(filesystem, device, free space, O_DIRECT) and GPUs (Vulkan, NVML, sysfs).\n"
    "Bandwidths measured earlier on this machine are shown from the saved profile.\n"
    "\n"
    "  --measure       measure RAM read bandwidth (1 and all threads), sequential\n"
    "                  O_DIRECT read bandwidth of the storage (a temporary file, or\n"
    "                  the model file given as --path) and host->GPU copy speed,\n"
    "                  then save the profile (takes a few seconds)\n"
    "  --quick         with --measure: small buffers and short runs (less precise)\n"
    "  --json          print the whole profile as JSON (schema: docs/profile-json.md)\n"
    "  --path PATH     directory (or model file) where models live (default: .)\n"
    "  --profile FILE  the saved profile to write (--measure) or reuse; default\n"
    "                  $XDG_CACHE_HOME/strata/profile.json, else\n"
    "                  ~/.cache/strata/profile.json\n"
    "  --root DIR      read /proc and /sys below DIR (a captured tree, for tests);\n"
    "                  no GPU library is opened and nothing is measured or saved\n"
    "  -h, --help      show this help\n";

typedef struct detect_args {
    bool json, measure, quick;
    const char *path, *profile, *root;
} detect_args;

/* 0: run, 1: help printed, 2: usage error (already reported). */
static int parse_args(int argc, char **argv, detect_args *a)
{
    for (int i = 1; i < argc; i++) {
        bool bad = false;
        const char *v;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(detect_usage, stdout);
            return 1;
        } else if (!strcmp(argv[i], "--json")) {
            a->json = true;
        } else if (!strcmp(argv[i], "--measure")) {
            a->measure = true;
        } else if (!strcmp(argv[i], "--quick")) {
            a->quick = true;
        } else if ((v = cli_opt_value("detect", argc, argv, &i, "--path", &bad))) {
            a->path = v;
        } else if ((v = cli_opt_value("detect", argc, argv, &i, "--profile", &bad))) {
            a->profile = v;
        } else if ((v = cli_opt_value("detect", argc, argv, &i, "--root", &bad))) {
            a->root = v;
        } else {
            arg_unknown("detect", (const char *const[]){detect_usage, NULL}, argv[i]);
            return 2;
        }
        if (bad) return 2;
    }
    if (a->quick && !a->measure) {
        fprintf(stderr, "strata detect: --quick only applies with --measure\n");
        return 2;
    }
    if (a->root && a->measure) {
        fprintf(stderr, "strata detect: --measure cannot be used with --root (a captured tree)\n");
        return 2;
    }
    struct stat st;
    if (a->root && (stat(a->root, &st) != 0 || !S_ISDIR(st.st_mode))) {
        fprintf(stderr, "strata detect: --root %s: %s\n", a->root, errno ? strerror(errno) : "not a directory");
        return 2;
    }
    return 0;
}

static void print_cpu(const hw_cpu *c)
{
    char a[32], b[32], d[32];
    printf("CPU       %s (%s)\n", c->model, c->arch[0] ? c->arch : "unknown architecture");
    printf("          %u logical / %u physical cores, %u usable; SIMD:", c->logical_cores,
           c->physical_cores, c->usable_cores);
    if (!c->features) printf(" none known");
    for (int i = 0; i < HW_CPU_FEATURE_COUNT; i++)
        if (c->features & (1u << i)) printf(" %s", hw_cpu_feature_name(1u << i));
    printf("\n");
    if (c->cache_l1d || c->cache_l2 || c->cache_l3)
        printf("          caches: L1d %s, L2 %s, L3 %s\n", c->cache_l1d ? fmt_bytes(c->cache_l1d, a, sizeof a) : "?",
               c->cache_l2 ? fmt_bytes(c->cache_l2, b, sizeof b) : "?",
               c->cache_l3 ? fmt_bytes(c->cache_l3, d, sizeof d) : "?");
}

static void print_memory(const hw_memory *m)
{
    char a[32], b[32], c[32];
    if (!m->total) {
        printf("Memory    unknown\n");
    } else {
        printf("Memory    total %s, available %s, ", fmt_bytes(m->total, a, sizeof a),
               fmt_bytes(m->available, b, sizeof b));
        if (m->swap_total) printf("swap %s (%s free)\n", fmt_bytes(m->swap_total, c, sizeof c), fmt_bytes(m->swap_free, a, sizeof a));
        else printf("no swap\n");
    }
    const hw_cgroup *cg = &m->cgroup;
    if (!cg->version)
        printf("          cgroup: no memory controller found\n");
    else if (cg->limit == HW_NO_LIMIT)
        printf("          cgroup v%d %s: no limit (using %s)\n", cg->version, cg->path, fmt_bytes(cg->usage, a, sizeof a));
    else
        printf("          cgroup v%d %s: limit %s, using %s, headroom %s\n", cg->version, cg->path,
               fmt_bytes(cg->limit, a, sizeof a), fmt_bytes(cg->usage, b, sizeof b), fmt_bytes(cg->headroom, c, sizeof c));
    printf("          usable for strata: %s; transparent huge pages: %s\n",
           m->total ? fmt_bytes(m->usable, a, sizeof a) : "unknown", m->thp[0] ? m->thp : "unknown");
}

static const char *tri(hw_tristate t, const char *yes, const char *no)
{
    return t == HW_YES ? yes : t == HW_NO ? no : "unknown";
}

static void print_storage(const hw_storage *s)
{
    char a[32], b[32];
    printf("Storage   %s on %s (%s, %s, %s)\n", s->path[0] ? s->path : "?", s->mount_point[0] ? s->mount_point : "?",
           s->fs_type[0] ? s->fs_type : "unknown filesystem", s->device[0] ? s->device : "unknown device",
           tri(s->rotational, "rotational", "non-rotational"));
    if (s->total_bytes)
        printf("          free %s of %s; O_DIRECT: %s\n", fmt_bytes(s->free_bytes, a, sizeof a),
               fmt_bytes(s->total_bytes, b, sizeof b), tri(s->o_direct, "yes", "no"));
    else
        printf("          free space unknown; O_DIRECT: %s\n", tri(s->o_direct, "yes", "no"));
}

static void print_gpu(int i, const hw_gpu *g)
{
    char a[32], b[32];
    const char *vendor = hw_vendor_name(g->vendor_id);
    printf("%-10s%d: %s (%s%s%s%s%s)\n", i ? "" : "GPUs", i, g->name, hw_gpu_type_name(g->type),
           vendor[0] ? ", " : "", vendor, g->driver[0] ? ", " : "", g->driver);
    if (g->vram_total) {
        printf("             memory %s", fmt_bytes(g->vram_total, a, sizeof a));
        if (g->vram_used || g->vram_free) printf(", %s used by all processes", fmt_bytes(g->vram_used, b, sizeof b));
        if (g->has_budget) printf(", budget %s", fmt_bytes(g->vram_budget, b, sizeof b));
        printf("\n");
    }
    if (g->pcie.gen || g->pcie.width)
        printf("             PCIe %s gen%d x%d (max gen%d x%d)\n", g->pci_address, g->pcie.gen, g->pcie.width,
               g->pcie.max_gen, g->pcie.max_width);
}

static void print_gpus(const hw_profile *p)
{
    if (!p->n_gpus) {
        printf("GPUs      none (Vulkan loader %s, %d driver manifest(s); NVML %s)\n",
               p->stack.vulkan_loader ? "present" : "absent", p->stack.vulkan_icds,
               p->stack.nvml ? "present" : "absent");
        return;
    }
    for (int i = 0; i < p->n_gpus; i++) print_gpu(i, &p->gpus[i]);
}

static void print_measured(const hw_profile *p, hw_cache_state cache, bool fresh_run)
{
    const hw_measured *m = &p->measured;
    char a[32], b[32], when[40] = "?";
    if (!m->done) {
        printf("Measured  not yet (saved profile %s): run `strata detect --measure`\n", hw_cache_state_name(cache));
        return;
    }
    time_t t = (time_t)m->time;
    struct tm tm;
    if (t > 0 && gmtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", &tm);
    printf("Measured  %s%s\n", when, fresh_run ? "" : " (saved profile)");
    printf("          RAM read %s (1 thread), %s (%d threads)\n", cli_fmt_rate(m->ram_bw_1t, a, sizeof a),
           cli_fmt_rate(m->ram_bw_all, b, sizeof b), m->ram_threads);
    if (m->cpu_rate > 0)
        printf("          CPU kernels %.1f G weights/s in cache, %.1f GB/s of weights from RAM (Q4_K, %d threads)\n",
               m->cpu_rate / 1e9, m->kernel_ram_bw / 1e9, m->ram_threads);
    if (m->engine_bw > 0)
        printf("          engine decodes resident weights at %.1f GB/s, plus %.0f us per layer\n", m->engine_bw / 1e9,
               m->engine_layer_s * 1e6);
    if (m->disk_bw > 0)
        printf("          storage O_DIRECT read %s (%s of %s)\n", cli_fmt_rate(m->disk_bw, a, sizeof a),
               fmt_bytes(m->disk_bytes, b, sizeof b), m->disk_path);
    else
        printf("          storage read not measured\n");
    for (int i = 0; i < p->n_gpus; i++) {
        const hw_gpu *g = &p->gpus[i];
        if (g->h2d_bw > 0) printf("          GPU %d host->device copy %s\n", i, cli_fmt_rate(g->h2d_bw, a, sizeof a));
        if (g->mv_q4_k_bw > 0)
            printf("          GPU %d memory read %s (F16 weights), %s of Q4_K weights (one-token product)\n", i,
                   cli_fmt_rate(g->vram_bw, a, sizeof a), cli_fmt_rate(g->mv_q4_k_bw, b, sizeof b));
    }
}

static void print_human(const hw_profile *p, hw_cache_state cache, bool fresh_run)
{
    print_cpu(&p->cpu);
    print_memory(&p->mem);
    print_storage(&p->storage);
    print_gpus(p);
    print_measured(p, cache, fresh_run);
    for (int i = 0; i < p->n_warnings; i++) printf("%-10s%s\n", i ? "" : "Warnings", p->warnings[i]);
}

static void progress_line(const char *stage, double frac, void *ctx)
{
    (void)ctx;
    if (frac >= 1.0) fprintf(stderr, "\r\033[K");
    else fprintf(stderr, "\r\033[Kmeasuring (%3.0f%%): %s ...", frac * 100.0, stage);
    fflush(stderr);
}

static int measure_and_save(hw_profile *p, const detect_args *a, const char *profile_path)
{
    hw_measure_opts mo = {0};
    if (a->quick) {
        mo.ram_bytes = 64ull << 20;
        mo.disk_bytes = 32ull << 20;
        mo.gpu_bytes = 16ull << 20;
        mo.min_seconds = 0.1;
    }
    if (isatty(STDERR_FILENO)) mo.progress = progress_line;
    strata_error err = {0};
    if (hw_measure(p, &mo, &err) != STRATA_OK) {
        fprintf(stderr, "strata detect: %s\n", err.message);
        return 1;
    }
    if (mo.progress) mo.progress("engine decode rate", 0.95, NULL);
    plan_calibrate_into(p);
    if (mo.progress) mo.progress("done", 1.0, NULL);
    if (hw_profile_save(p, profile_path, &err) != STRATA_OK) {
        fprintf(stderr, "strata detect: --profile %s\n", err.message);
        return 1;
    }
    return 0;
}

static int emit(const hw_profile *p, const detect_args *a, hw_cache_state cache)
{
    if (!a->json) {
        print_human(p, cache, a->measure);
        return 0;
    }
    char *text = hw_profile_to_json(p);
    if (!text) {
        fprintf(stderr, "strata detect: out of memory rendering the profile\n");
        return 1;
    }
    printf("%s\n", text);
    free(text);
    return 0;
}

int cmd_detect(int argc, char **argv)
{
    detect_args a = {0};
    int r = parse_args(argc, argv, &a);
    if (r) return r == 1 ? 0 : 2;
    char profile_path[1024] = "";
    if (!a.root && !cli_profile_path("detect", a.profile, profile_path, sizeof profile_path)) return 2;
    hw_profile *p = malloc(sizeof *p);
    if (!p) {
        fprintf(stderr, "strata detect: out of memory\n");
        return 1;
    }
    hw_probe_opts opts = {.root = a.root, .path = a.path};
    strata_error err = {0};
    int rc = 0;
    hw_cache_state cache = HW_CACHE_MISSING;
    if (hw_probe(&opts, p, &err) != STRATA_OK) {
        fprintf(stderr, "strata detect: %s\n", err.message);
        rc = 2;
    } else if (a.measure) {
        rc = measure_and_save(p, &a, profile_path);
        cache = HW_CACHE_FRESH;
    } else if (!a.root) {
        cache = hw_profile_reuse_measured(p, profile_path, &err);
        if (cache == HW_CACHE_BAD) fprintf(stderr, "strata detect: warning: %s (ignored)\n", err.message);
    }
    if (!rc) rc = emit(p, &a, cache);
    free(p);
    return rc;
}
