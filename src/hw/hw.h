/* Hardware profile: what this machine has and how fast it moves bytes.
 *
 * hw_probe() reads /proc and /sys (through a root prefix, so tests run on
 * captured trees), asks the Vulkan loader and NVML when they are installed
 * (dlopen at run time: no build or link dependency), and fills one
 * hw_profile. hw_measure() adds measured bandwidths. The profile is saved
 * as JSON (schema: docs/profile-json.md), which is also how a hypothetical
 * machine is described to the planner.
 *
 * Nothing outside src/hw/ reads /proc or sysfs. Every value read from
 * outside is validated; a missing or malformed source leaves the field
 * unknown and adds a warning, it never fails the probe.
 *
 * Unknown values: sizes and counts are 0, tri-states are HW_UNKNOWN,
 * strings are empty, bandwidths are 0.
 */
#ifndef STRATA_HW_HW_H
#define STRATA_HW_HW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "strata.h"

#define HW_PROFILE_SCHEMA "strata-hw-profile"
#define HW_PROFILE_VERSION 1

#define HW_MAX_GPUS 16
#define HW_MAX_WARNINGS 32
#define HW_WARNING_MAX 240
#define HW_NAME_MAX 256
#define HW_PATH_MAX 1024
#define HW_NO_LIMIT UINT64_MAX /* a cgroup without a memory limit */

/* A yes/no that may not be known. */
typedef enum hw_tristate { HW_UNKNOWN = -1, HW_NO = 0, HW_YES = 1 } hw_tristate;

/* SIMD features the kernels dispatch on (bits of hw_cpu.features). */
enum hw_cpu_feature {
    HW_CPU_SSE42 = 1u << 0,
    HW_CPU_AVX = 1u << 1,
    HW_CPU_AVX2 = 1u << 2,
    HW_CPU_FMA = 1u << 3,
    HW_CPU_F16C = 1u << 4,
    HW_CPU_AVX512F = 1u << 5,
    HW_CPU_AVX512BW = 1u << 6,
    HW_CPU_AVX512VL = 1u << 7,
    HW_CPU_AVX512VNNI = 1u << 8,
    HW_CPU_AVX512BF16 = 1u << 9,
    HW_CPU_AVXVNNI = 1u << 10,
    HW_CPU_NEON = 1u << 11,
    HW_CPU_DOTPROD = 1u << 12,
    HW_CPU_I8MM = 1u << 13,
    HW_CPU_SVE = 1u << 14,
};
#define HW_CPU_FEATURE_COUNT 15

/* The feature's name in JSON and output ("avx2"), or NULL for a bad bit. */
const char *hw_cpu_feature_name(uint32_t bit);
/* The bit of a feature name, or 0 when the name is unknown. */
uint32_t hw_cpu_feature_from_name(const char *name);

typedef struct hw_cpu {
    char arch[16];               /* "x86_64", "aarch64", or "" */
    char model[HW_NAME_MAX];
    uint32_t logical_cores;      /* online logical CPUs; >= 1 after a probe */
    uint32_t physical_cores;
    uint32_t usable_cores;       /* CPUs this process may run on (affinity) */
    uint32_t features;           /* enum hw_cpu_feature bits */
    uint64_t cache_l1d, cache_l2, cache_l3; /* bytes, one instance each */
} hw_cpu;

typedef struct hw_cgroup {
    int version;                 /* 0 none found, 1 or 2 */
    char path[HW_PATH_MAX];      /* this process's cgroup, e.g. "/user.slice/..." */
    uint64_t limit;              /* limit of the binding cgroup (least headroom on the
                                    way up to the root), or HW_NO_LIMIT */
    uint64_t usage;              /* its usage (this cgroup's when nothing binds) */
    uint64_t reclaimable;        /* of that usage, file pages the kernel can drop */
    uint64_t headroom;           /* limit - usage + reclaimable of the binding cgroup, or HW_NO_LIMIT */
} hw_cgroup;

typedef struct hw_memory {
    uint64_t total, available;   /* MemTotal, MemAvailable */
    uint64_t swap_total, swap_free;
    hw_cgroup cgroup;
    uint64_t usable;             /* min(available, cgroup headroom) */
    char thp[16];                /* "always", "madvise", "never", or "" */
} hw_memory;

typedef struct hw_storage {
    char path[HW_PATH_MAX];      /* the directory (or file) models live in */
    char mount_point[HW_PATH_MAX];
    char fs_type[32];
    char device[64];             /* block device name ("nvme0n1"), or the mount source */
    hw_tristate rotational;
    uint64_t free_bytes, total_bytes;
    hw_tristate o_direct;        /* an O_DIRECT open + aligned read works there */
} hw_storage;

typedef enum hw_gpu_type {
    HW_GPU_UNKNOWN = 0,
    HW_GPU_DISCRETE,
    HW_GPU_INTEGRATED,
    HW_GPU_VIRTUAL,
    HW_GPU_CPU,
    HW_GPU_OTHER,
} hw_gpu_type;

const char *hw_gpu_type_name(hw_gpu_type t);
/* True when a GPU driver is present (/dev/dri/renderD*, /dev/nvidia*,
 * /proc/driver/nvidia/gpus): only then is the Vulkan loader worth opening. */
bool hw_gpu_device_node_present(void);
hw_gpu_type hw_gpu_type_from_name(const char *name); /* HW_GPU_UNKNOWN if unknown */
/* "AMD", "NVIDIA", "Intel", "Mesa" ... from a PCI/Vulkan vendor id, or "". */
const char *hw_vendor_name(uint32_t vendor_id);

/* Where a GPU's facts came from (bits of hw_gpu.sources). */
enum { HW_SRC_VULKAN = 1, HW_SRC_NVML = 2, HW_SRC_SYSFS = 4 };

typedef struct hw_pcie {
    int gen, width;              /* current link; 0 when unknown */
    int max_gen, max_width;
} hw_pcie;

typedef struct hw_gpu {
    char name[HW_NAME_MAX];
    hw_gpu_type type;
    uint32_t vendor_id, device_id; /* PCI ids (Vulkan's for non-PCI devices) */
    char driver[HW_NAME_MAX];      /* "radv", "NVIDIA", "amdgpu" ... */
    char driver_info[HW_NAME_MAX]; /* driver version text */
    char pci_address[16];          /* "0000:03:00.0", or "" */
    unsigned sources;              /* HW_SRC_* bits */
    int vulkan_index;              /* index among Vulkan physical devices, or -1 */
    uint64_t vram_total;           /* device-local memory */
    uint64_t vram_used;            /* used by all processes (NVML, amdgpu sysfs) */
    uint64_t vram_free;
    bool has_budget;               /* VK_EXT_memory_budget values below are set */
    uint64_t vram_budget;          /* what this process may allocate now */
    uint64_t vram_process_usage;   /* what this process uses now */
    hw_pcie pcie;
    double h2d_bw;                 /* measured host->device copy, bytes/s; 0 = not measured */
    double vram_bw;                /* device memory read bandwidth, bytes/s (measured: F16
                                      weights through the one-token product shader); 0 =
                                      unknown (hypothetical profiles may give it) */
    double mv_q4_k_bw;             /* measured: Q4_K weight bytes/s through that shader; 0 = not
                                      measured */
    double mm_q4_k_flops;          /* measured: FLOP/s of the prompt-batch (matrix-matrix) product
                                      over Q4_K weights, 512 tokens; 0 = not measured (hypothetical
                                      profiles may give it) */
    double round_trip_s;           /* measured: seconds to read 512 bytes back (submit, copy, wait):
                                      what a MoE layer's routing on the host costs; 0 = not measured */
} hw_gpu;

typedef struct hw_gpu_stack {
    bool vulkan_loader;            /* libvulkan.so.1 could be opened */
    int vulkan_icds;               /* ICD manifest files found */
    int vulkan_devices;            /* physical devices the loader reported */
    bool nvml;                     /* libnvidia-ml.so.1 opened and initialised */
    char nvidia_driver[64];        /* NVML's driver version, or "" */
} hw_gpu_stack;

typedef struct hw_measured hw_measured;
/* The weight types the engine calibration prices (src/plan/calibrate.c),
 * in this order; other types are priced as Q4_K. */
typedef enum hw_engine_type {
    HW_ENGINE_Q4_K = 0, HW_ENGINE_Q6_K, HW_ENGINE_Q8_0, HW_ENGINE_F16, HW_ENGINE_F32, HW_ENGINE_TYPES
} hw_engine_type;
#define HW_MAX_ENGINE_CALIB 8

/* What the engine achieves on this machine with `threads` threads, timed
 * on small synthetic resident models (src/plan/calibrate.c): time per
 * token = sum over types of weight bytes / type_bw + groups x layer_s +
 * layers x width_s x sqrt(the layer's weights) + token_s; a step of B tokens (a prompt, or B sequences decoding) costs
 * one pass over the weights plus B x sum over types of bytes / tile_bw
 * (the matrix-matrix kernels). The planner's CPU cost model. */
typedef struct hw_engine_calib {
    int threads;
    double type_bw[HW_ENGINE_TYPES]; /* weight bytes/s per type (0: not measured; [Q4_K] always is) */
    double layer_s;                  /* per group (layer or output) and token beyond its weights:
                                        dispatches, norms, attention at a short context */
    double token_s;                  /* per token beyond groups and weights: embedding, sampling-side work */
    double width_s;                  /* per layer and sqrt(weights of the layer) (its width): the work on
                                        activations (norms, quantizing them, attention) that grows with the
                                        width while the weights grow with its square (0: not measured) */
    double tile_bw[HW_ENGINE_TYPES]; /* weight bytes/s per token of a many-token step: B x bytes over the time
                                        B more tokens add to a step (0: not measured; older profiles) */
} hw_engine_calib;

/* "q4_k", "q6_k", "q8_0", "f16", "f32" */
const char *hw_engine_type_name(hw_engine_type t);
/* The calibration at `threads`, or NULL. */
const hw_engine_calib *hw_engine_calib_at(const hw_measured *m, int threads);
/* Adds c, replacing one at the same thread count (the oldest goes when full). */
void hw_engine_calib_put(hw_measured *m, const hw_engine_calib *c);

struct hw_measured {
    bool done;                     /* the fields below were measured */
    int64_t time;                  /* unix seconds of the measurement */
    double ram_bw_1t;              /* RAM read bandwidth, one thread, bytes/s */
    double ram_bw_all;             /* all threads */
    int ram_threads;
    uint64_t ram_bytes;            /* buffer size used */
    double disk_bw;                /* sequential O_DIRECT read, bytes/s; 0 = not measured */
    double cpu_rate;               /* Q4_K weights/s the fast CPU kernels process with all
                                      threads, data in cache (the planner's compute rate) */
    double kernel_ram_bw;          /* weight bytes/s the same kernels process streaming from
                                      RAM */
    int n_engine;                  /* engine calibrations below, one per thread count */
    hw_engine_calib engine[HW_MAX_ENGINE_CALIB];
    uint64_t disk_bytes;           /* bytes read */
    char disk_path[HW_PATH_MAX];   /* file or directory measured */
};

/* A GPU as the PCI bus lists it in sysfs (/sys/bus/pci/devices: a display
 * controller of AMD, NVIDIA or Intel): what every probe sees, whether it
 * opens the GPU libraries or not, so it is the fingerprint's GPU part. */
typedef struct hw_pci_gpu {
    uint32_t vendor_id, device_id;
    char pci_address[16];          /* "0000:65:00.0" */
} hw_pci_gpu;

typedef struct hw_profile {
    int version;                   /* HW_PROFILE_VERSION */
    int64_t created;               /* unix seconds of the probe */
    char fingerprint[24];          /* hex, from hw_fingerprint(); "" for a hand-written one */
    char hostname[64];
    char kernel[64];
    hw_cpu cpu;
    hw_memory mem;
    hw_storage storage;
    hw_gpu_stack stack;
    int n_gpus;
    hw_gpu gpus[HW_MAX_GPUS];
    int n_pci_gpus;                /* GPUs on the PCI bus, sorted by address */
    hw_pci_gpu pci_gpus[HW_MAX_GPUS];
    hw_measured measured;
    int n_warnings;
    char warnings[HW_MAX_WARNINGS][HW_WARNING_MAX];
} hw_profile;

typedef struct hw_probe_opts {
    /* Prefix for every /proc and /sys path. NULL or "" is the live host;
     * anything else is a captured tree: the storage path is then taken as
     * written (no realpath, statvfs or O_DIRECT test), CPU features come
     * from cpuinfo rather than cpuid, and no GPU library is opened. */
    const char *root;
    const char *path;              /* storage to describe; NULL = "." ("/" in a captured tree) */
    bool no_gpu_libs;              /* do not dlopen Vulkan or NVML */
    bool no_odirect_test;          /* do not create a file to test O_DIRECT */
} hw_probe_opts;

/* Fills *out. Fails only for invalid options (the storage path missing);
 * everything else degrades to unknown values plus warnings. NVML and Vulkan
 * run in a short-lived child process (src/hw/isolate.c): call it while the
 * program is single-threaded. */
strata_status hw_probe(const hw_probe_opts *opts, hw_profile *out, strata_error *err);

/* Appends a warning (silently dropped past HW_MAX_WARNINGS). */
void hw_warn(hw_profile *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The memory budget when none is given: `usable` less a margin for the
 * rest of the system (the one rule; plan and run use it). */
uint64_t hw_default_budget(uint64_t usable);
/* The threads a run uses by default: one per physical core this process
 * may run on (the smaller of physical and usable cores), at least 1. The
 * one rule; run, plan and calibration use it. */
int hw_default_threads(const hw_cpu *c);
/* Whether a cgroup's limit, not the machine's available memory, bounds usable. */
bool hw_memory_cgroup_binds(const hw_memory *m);
/* Recomputes mem.usable from available and the cgroup headroom. */
void hw_memory_update_usable(hw_memory *m);

/* ---- measurement (src/hw/measure*.c) ---- */

typedef void (*hw_progress_fn)(const char *stage, double fraction, void *ctx);

typedef struct hw_measure_opts {
    uint64_t ram_bytes;            /* RAM test buffer; 0 = 256 MiB */
    uint64_t disk_bytes;           /* temporary file size; 0 = 256 MiB */
    uint64_t gpu_bytes;            /* host->device copy size; 0 = 64 MiB */
    double min_seconds;            /* time per RAM test; 0 = 0.5 s */
    const char *disk_file;         /* read this existing file instead of a temporary one */
    bool no_disk, no_gpu;
    hw_progress_fn progress;       /* may be NULL */
    void *progress_ctx;
} hw_measure_opts;

/* Measures RAM, the storage at p->storage.path and each Vulkan device, and
 * fills p->measured (and gpus[].h2d_bw). A part that cannot be measured
 * leaves 0 and a warning; fails only on a bad disk_file. */
strata_status hw_measure(hw_profile *p, const hw_measure_opts *opts, strata_error *err);

/* Single measurements, for tests and the planner's self-checks. */
double hw_measure_ram_bw(uint64_t bytes, int threads, double min_seconds);
/* Q4_K weights/s of the fast dot-product kernel on in-cache rows. */
double hw_measure_cpu_rate(int threads, double min_seconds);
/* Q4_K weight bytes/s of the fast kernel over `bytes` of rows (from RAM). */
double hw_measure_kernel_ram_bw(int threads, uint64_t bytes, double min_seconds);
/* Reads `path` (up to max_bytes) with O_DIRECT; bytes/s, or 0 with *err set. */
double hw_measure_file_read_bw(const char *path, uint64_t max_bytes, uint64_t *bytes_read,
                               strata_error *err);
/* Creates a temporary file of `bytes` in dir, reads it back with O_DIRECT,
 * removes it; bytes/s, or 0 with *err set. */
double hw_measure_dir_read_bw(const char *dir, uint64_t bytes, strata_error *err);

/* ---- JSON (src/hw/profile_json*.c) ---- */

/* The profile as a JSON document (malloc'd, caller frees), or NULL on OOM. */
char *hw_profile_to_json(const hw_profile *p);
/* Parses a profile (written by hw_profile_to_json or by hand: missing
 * fields are unknown). `origin` names the input in error messages. */
strata_status hw_profile_from_json(const char *text, const char *origin, hw_profile *out,
                                   strata_error *err);
/* Field-by-field equality; on a difference, names the first field in why. */
bool hw_profile_equal(const hw_profile *a, const hw_profile *b, char *why, size_t why_len);

/* ---- the saved profile (src/hw/profile_cache.c) ---- */

/* $XDG_CACHE_HOME/strata/profile.json or ~/.cache/strata/profile.json. */
strata_status hw_profile_default_path(char *buf, size_t len, strata_error *err);
/* mkdir -p of the directory part of path (mode 0700). */
strata_status hw_make_parent(const char *path, strata_error *err);
strata_status hw_profile_save(const hw_profile *p, const char *path, strata_error *err);
strata_status hw_profile_load(const char *path, hw_profile *out, strata_error *err);
/* Identity of the machine, from facts every probe of it sees alike
 * (whichever command probed it, with or without the GPU libraries): CPU
 * architecture, model, logical and physical cores, SIMD features; RAM size
 * in steps of a factor sqrt(2) (hw_fingerprint_ram_step); the PCI ids and
 * addresses of pci_gpus. Not free memory, storage, VRAM sizes (NVML,
 * amdgpu and Vulkan report them differently) nor Vulkan- or NVML-only
 * devices. Writes 16 hex digits. */
void hw_fingerprint(const hw_profile *p, char out[24]);
/* The RAM step the fingerprint uses: round(2 log2(total / 1 GiB)); a
 * machine growing or shrinking by a few percent stays in its step (16 GiB
 * covers 13.5-19 GiB). */
int hw_fingerprint_ram_step(uint64_t total);
/* What differs between the machine a saved profile describes and the live
 * one, as a phrase for people ("CPU differs: AMD EPYC 7B13 (2 cores) there,
 * Intel Xeon (16 cores) here"); "" when the machines are the same. */
void hw_fingerprint_diff(const hw_profile *saved, const hw_profile *live, char *why, size_t len);

typedef enum hw_cache_state {
    HW_CACHE_MISSING = 0,  /* no saved profile */
    HW_CACHE_FRESH,        /* saved for this machine: measurements reused */
    HW_CACHE_STALE,        /* saved for another machine (or older schema) */
    HW_CACHE_BAD,          /* unreadable or malformed */
} hw_cache_state;

const char *hw_cache_state_name(hw_cache_state s);

/* Copies the measurements of the profile saved at `path` into the live
 * profile p when the fingerprints match; returns what was found. When the
 * state is HW_CACHE_BAD, err names the problem. */
hw_cache_state hw_profile_reuse_measured(hw_profile *p, const char *path, strata_error *err);
/* The same, saying why a profile is not reused in why (for HW_CACHE_STALE:
 * "the saved profile is from another machine (CPU differs: ...)", or "... has
 * no measurements"; for HW_CACHE_BAD: the problem; "" otherwise). */
hw_cache_state hw_profile_reuse(hw_profile *p, const char *path, char *why, size_t why_len, strata_error *err);
/* The measurements (copy, read and product rates, round trip; the PCIe
 * link when g has none) of GPU g (its Vulkan index and name) in the
 * profile saved at `path`, when that profile is measured and is p's
 * machine (same fingerprint); false when none were copied. */
bool hw_profile_reuse_gpu(const hw_profile *p, const char *path, hw_gpu *g);

/* The storage device ("vda", "nvme0n1p2", else the mount source) holding
 * path on this machine; false when it cannot be told. */
bool hw_storage_device_of(const char *path, char *dev, size_t len);

/* ---- streaming rates runs reached (src/hw/profile_runs.c) ----
 *
 * `strata run` records the rate at which it streamed weights from disk while
 * the disk was its bottleneck, per machine (fingerprint) and storage device,
 * in stream-rates.json next to the saved profile (docs/profile-json.md);
 * later plans use it for the disk. */

typedef struct hw_stream_rate {
    double bytes_per_s;            /* the figure plans use; 0 = none recorded */
    double last_bytes_per_s;       /* the last run's own rate */
    double seconds;                /* decode time the figure rests on (its weight, capped) */
    uint32_t runs;                 /* runs that contributed */
    int64_t time;                  /* unix seconds of the last one */
} hw_stream_rate;

/* stream-rates.json in the directory of the profile at profile_path. */
strata_status hw_stream_rates_path(const char *profile_path, char *buf, size_t len, strata_error *err);
/* The rate recorded for (fingerprint, device) in the file at path; false
 * (and *out zeroed) when there is none or the file is unreadable. */
bool hw_stream_rate_get(const char *path, const char *fingerprint, const char *device, hw_stream_rate *out);
/* Adds one run's `bytes` streamed in `seconds` for (fingerprint, device):
 * the figure becomes the mean of the runs' rates weighted by their time,
 * the past counting at most twice as much as the new run (so the figure
 * follows a changed disk within a few runs). Written atomically (a
 * temporary file renamed over it); entries of other machines and devices
 * are kept (the 64 most recent). */
strata_status hw_stream_rate_record(const char *path, const char *fingerprint, const char *device, uint64_t bytes,
                                    double seconds, strata_error *err);

/* ---- memory pressure while running (src/hw/pressure.c) ----
 * What the watchdog polls: the headroom left in this process's memory
 * cgroup (the walk of hw_cgroup: limit - usage + reclaimable page cache of
 * the level that binds) and in the machine (MemAvailable), stall time from
 * PSI (cgroup v2 memory.pressure, else /proc/pressure/memory), and the
 * cgroup's limit events (v2 memory.events; v1 memory.failcnt and
 * memory.oom_control). */

/* Where this process's memory cgroup lives (hw_cgroup_locate). */
typedef struct hw_cgroup_loc {
    int version;                   /* 1 or 2 */
    char path[HW_PATH_MAX];        /* as in /proc/self/cgroup */
    char dir[HW_PATH_MAX];         /* its directory (below the probe root) */
    char mount_point[HW_PATH_MAX]; /* the hierarchy's mount: the walk stops there */
} hw_cgroup_loc;

enum { HW_CG_FOUND = 0, HW_CG_NO_FILE, HW_CG_NO_CONTROLLER, HW_CG_NOT_MOUNTED };
/* HW_CG_FOUND, or why there is no memory cgroup to read (loc->version is
 * set from HW_CG_NOT_MOUNTED on). */
int hw_cgroup_locate(const char *root, hw_cgroup_loc *loc);
/* The walk of hw_cgroup_probe from loc's directory up; false when a file
 * was malformed (ignored). */
bool hw_cgroup_measure(const char *root, const hw_cgroup_loc *loc, hw_cgroup *cg);

/* One PSI file ("some avg10=0.12 avg60=... avg300=... total=US", and a
 * "full" line). */
typedef struct hw_psi {
    double some_avg10, full_avg10;  /* percent of the last 10 s */
    uint64_t some_total, full_total; /* stall time in microseconds since boot */
    bool has_full;
} hw_psi;

/* Limit events of a memory cgroup (counts since its creation). */
typedef struct hw_mem_events {
    uint64_t high, max, oom, oom_kill; /* v1: max = failcnt, oom = under_oom (0/1) */
} hw_mem_events;

typedef struct hw_pressure {
    bool has_cgroup;               /* cgroup values below were read */
    hw_cgroup cgroup;              /* the binding level's limit, usage, reclaimable, headroom */
    bool has_events;
    hw_mem_events events;          /* of this process's own cgroup */
    bool has_cgroup_psi;           /* v2 memory.pressure of this process's cgroup */
    hw_psi cgroup_psi;
    bool has_system_psi;           /* /proc/pressure/memory */
    hw_psi system_psi;
    uint64_t mem_total, mem_available; /* /proc/meminfo (0: unknown) */
    uint64_t headroom;             /* min(cgroup headroom, MemAvailable); HW_NO_LIMIT: unknown */
    uint64_t limit;                /* the memory it is out of: the cgroup's limit where it binds, else MemTotal */
} hw_pressure;

/* The sources of one process, located once (hw_pressure_open) and read
 * many times. */
typedef struct hw_pressure_src {
    char root[HW_PATH_MAX];        /* probe root ("" for the live system) */
    bool has_cgroup;
    hw_cgroup_loc loc;
} hw_pressure_src;

/* Text parsers (strict: false on anything malformed, out unspecified). */
bool hw_psi_parse(const char *text, hw_psi *out);
bool hw_mem_events_parse(const char *text, hw_mem_events *out);
/* v1: memory.oom_control ("oom_kill_disable 0\nunder_oom 0\noom_kill 0"). */
bool hw_oom_control_parse(const char *text, hw_mem_events *out);

void hw_pressure_open(const char *root, hw_pressure_src *src);
/* One sample; false when neither the cgroup nor /proc/meminfo could be read. */
bool hw_pressure_read(const hw_pressure_src *src, hw_pressure *out);

/* ---- PSI triggers (src/hw/psi_trigger.c) ----
 * A file descriptor that poll() reports readable for POLLPRI when tasks
 * stalled on memory for stall_us within window_us (the kernel's PSI
 * trigger, Linux 5.2): on the cgroup's memory.pressure (v2), else
 * /proc/pressure/memory. The window is rounded up to whole 2 s (the
 * kernel's rule for processes without CAP_SYS_RESOURCE). -1 when no trigger
 * can be registered (no PSI, an old kernel, read-only, a probe root that is
 * not the live system), with the reason in why. */
typedef struct hw_psi_trigger {
    int fd;                        /* -1: none */
    char path[HW_PATH_MAX + 32];   /* the file it is registered on */
} hw_psi_trigger;
bool hw_psi_trigger_open(const hw_pressure_src *src, uint32_t stall_us, uint32_t window_us, hw_psi_trigger *out,
                         char *why, size_t cap);
void hw_psi_trigger_close(hw_psi_trigger *t);

/* ---- doctor (src/hw/doctor.c) ---- */

typedef enum hw_check_level { HW_PASS = 0, HW_WARN = 1, HW_FAIL = 2 } hw_check_level;

typedef struct hw_check {
    hw_check_level level;
    char name[32];                 /* "o_direct", "cgroup", ... */
    char message[320];
    char fix[320];                 /* one line; "" when nothing to do */
} hw_check;

#define HW_MAX_CHECKS 32

/* Runs every check on a probed profile; `cache` is the saved profile's
 * state. Returns the number of checks written to out. */
int hw_doctor(const hw_profile *p, hw_cache_state cache, hw_check *out, int max);

#endif
