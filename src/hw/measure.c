/* hw_measure(): RAM, storage and host->device bandwidth into a profile. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "backend/vulkan/vkb.h"
#include "hw/hw_internal.h"
#include "util/error.h"

#define DEFAULT_RAM (256ull << 20)
#define DEFAULT_DISK (256ull << 20)
#define DEFAULT_GPU (64ull << 20)

static void progress(const hw_measure_opts *o, const char *stage, double frac)
{
    if (o->progress) o->progress(stage, frac, o->progress_ctx);
}

static void measure_ram(hw_profile *p, const hw_measure_opts *o)
{
    uint64_t bytes = o->ram_bytes ? o->ram_bytes : DEFAULT_RAM;
    if (p->mem.usable && bytes > p->mem.usable / 4) bytes = p->mem.usable / 4;
    double secs = o->min_seconds > 0 ? o->min_seconds : 0.5;
    int threads = p->cpu.usable_cores ? (int)p->cpu.usable_cores : 1;
    hw_measured *m = &p->measured;
    m->ram_bytes = bytes;
    m->ram_threads = threads;
    progress(o, "RAM read, 1 thread", 0.0);
    m->ram_bw_1t = hw_measure_ram_bw(bytes, 1, secs);
    char stage[64];
    snprintf(stage, sizeof stage, "RAM read, %d threads", threads);
    progress(o, stage, 0.25);
    m->ram_bw_all = hw_measure_ram_bw(bytes, threads, secs);
    if (m->ram_bw_1t <= 0 || m->ram_bw_all <= 0) hw_warn(p, "RAM bandwidth: measurement failed");
    progress(o, "CPU kernel throughput", 0.4);
    m->cpu_rate = hw_measure_cpu_rate(threads, secs);
    m->kernel_ram_bw = hw_measure_kernel_ram_bw(threads, bytes, secs);
    if (m->cpu_rate <= 0 || m->kernel_ram_bw <= 0) hw_warn(p, "CPU kernel throughput: measurement failed");
}

/* The model file given, the storage path when it is a file, else a
 * temporary file in the storage directory. */
static strata_status measure_disk(hw_profile *p, const hw_measure_opts *o, strata_error *err)
{
    hw_measured *m = &p->measured;
    const char *target = o->disk_file ? o->disk_file : p->storage.path;
    if (!target[0]) {
        hw_warn(p, "disk bandwidth not measured: storage path unknown");
        return STRATA_OK;
    }
    struct stat sb;
    if (stat(target, &sb) != 0) {
        if (o->disk_file)
            return err_set(err, STRATA_E_INVALID, "%s: %s", target, strerror(errno));
        hw_warn(p, "disk bandwidth not measured: %s: %s", target, strerror(errno));
        return STRATA_OK;
    }
    if (o->disk_file && !S_ISREG(sb.st_mode))
        return err_set(err, STRATA_E_INVALID, "%s: not a regular file", target);
    strata_error e = {0};
    uint64_t bytes = o->disk_bytes ? o->disk_bytes : DEFAULT_DISK;
    progress(o, "storage read (O_DIRECT)", 0.5);
    if (S_ISREG(sb.st_mode)) {
        m->disk_bw = hw_measure_file_read_bw(target, bytes, &m->disk_bytes, &e);
    } else {
        m->disk_bw = hw_measure_dir_read_bw(target, bytes, &e);
        m->disk_bytes = m->disk_bw > 0 ? (bytes + (4u << 20) - 1) / (4u << 20) * (4u << 20) : 0;
    }
    snprintf(m->disk_path, sizeof m->disk_path, "%s", target);
    if (m->disk_bw <= 0) {
        m->disk_bytes = 0;
        hw_warn(p, "disk bandwidth not measured: %s", e.message);
    }
    return STRATA_OK;
}

typedef struct h2d_job {
    int index;
    uint64_t bytes;
} h2d_job;

typedef struct h2d_result {
    double bw, read_bw, q4_k_bw; /* bytes/s: host->device copy, F16 and Q4_K weights read by the shaders */
    double mm_flops;             /* FLOP/s of a prompt batch's product over Q4_K weights */
    double round_trip_s;         /* a small read back, submitted and waited for */
    char why[160], read_why[160];
} h2d_result;

static void h2d_child(void *ctx, void *out)
{
    const h2d_job *job = ctx;
    h2d_result *r = out;
    r->bw = hw_vulkan_measure_h2d(job->index, job->bytes, r->why, sizeof r->why);
    strata_error err = {0};
    if (vkb_measure_reads(job->index, job->bytes, &r->read_bw, &r->q4_k_bw, &r->mm_flops, &r->round_trip_s, &err))
        snprintf(r->read_why, sizeof r->read_why, "%.150s", err.message);
}

static double sane_rate(double bw) { return isfinite(bw) && bw > 0 && bw < 1e14 ? bw : 0; }
static double sane_flops(double f) { return isfinite(f) && f > 0 && f < 1e17 ? f : 0; }

/* Vulkan runs in a child process (see isolate.c): the copy, then what the
 * shaders read per second and a prompt batch's FLOP/s (r: its rates, sane
 * or 0). */
static void gpu_isolated(int index, uint64_t bytes, h2d_result *r, char *why, size_t why_len)
{
    h2d_job job = {index, bytes};
    memset(r, 0, sizeof *r);
    if (!hw_run_isolated(h2d_child, &job, r, sizeof *r, 60000, why, why_len)) {
        memset(r, 0, sizeof *r);
        return;
    }
    r->why[sizeof r->why - 1] = r->read_why[sizeof r->read_why - 1] = '\0';
    snprintf(why, why_len, "%s", r->why);
    r->bw = sane_rate(r->bw);
    r->read_bw = sane_rate(r->read_bw);
    r->q4_k_bw = sane_rate(r->q4_k_bw);
    r->mm_flops = sane_flops(r->mm_flops);
    r->round_trip_s = isfinite(r->round_trip_s) && r->round_trip_s > 0 && r->round_trip_s < 1 ? r->round_trip_s : 0;
}

static void measure_gpus(hw_profile *p, const hw_measure_opts *o)
{
    for (int i = 0; i < p->n_gpus; i++) {
        hw_gpu *g = &p->gpus[i];
        if (g->vulkan_index < 0) continue;
        uint64_t bytes = o->gpu_bytes ? o->gpu_bytes : DEFAULT_GPU;
        if (g->vram_total && bytes > g->vram_total / 4) bytes = g->vram_total / 4;
        char stage[64], why[160] = "";
        snprintf(stage, sizeof stage, "host->device copy, GPU %d", i);
        progress(o, stage, 0.75 + 0.25 * i / p->n_gpus);
        h2d_result r;
        gpu_isolated(g->vulkan_index, bytes, &r, why, sizeof why);
        g->h2d_bw = r.bw;
        if (g->h2d_bw <= 0) hw_warn(p, "GPU %d host->device copy not measured: %s", i, why);
        if (r.read_bw > 0 && r.q4_k_bw > 0) {
            g->vram_bw = r.read_bw;
            g->mv_q4_k_bw = r.q4_k_bw;
            g->mm_q4_k_flops = r.mm_flops;
            g->round_trip_s = r.round_trip_s;
            if (g->mm_q4_k_flops <= 0)
                hw_warn(p, "GPU %d prompt-batch rate not measured: %s", i, r.read_why[0] ? r.read_why : "no figure");
        } else {
            hw_warn(p, "GPU %d memory read not measured: %s", i, r.read_why[0] ? r.read_why : why);
        }
    }
}

strata_status hw_measure(hw_profile *p, const hw_measure_opts *opts, strata_error *err)
{
    hw_measure_opts def = {0};
    const hw_measure_opts *o = opts ? opts : &def;
    memset(&p->measured, 0, sizeof p->measured);
    for (int i = 0; i < p->n_gpus; i++)
        p->gpus[i].h2d_bw = p->gpus[i].mv_q4_k_bw = p->gpus[i].mm_q4_k_flops = p->gpus[i].round_trip_s = 0;
    measure_ram(p, o);
    if (!o->no_disk) {
        strata_status st = measure_disk(p, o, err);
        if (st != STRATA_OK) return st;
    }
    if (!o->no_gpu) measure_gpus(p, o);
    progress(o, "done", 1.0);
    p->measured.done = true;
    p->measured.time = (int64_t)time(NULL);
    return STRATA_OK;
}
