/* Reads a profile written by hw_profile_to_json or by hand (a hypothetical
 * machine): absent or null fields are unknown; a present field of the wrong
 * type or out of range is an error naming it. Sizes may also be strings
 * with a unit ("24 GiB", "64GB"). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hw/hw_internal.h"
#include "util/error.h"

typedef struct rd {
    const char *origin;
    strata_error *err;
    bool failed;
} rd;

static bool bad(rd *r, const char *path, const char *what)
{
    if (!r->failed) err_set(r->err, STRATA_E_FORMAT, "%s: %s: %s", r->origin, path, what);
    r->failed = true;
    return false;
}

/* The member, or NULL when absent or null. */
static json_t *member(json_t *obj, const char *key)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    return v && !json_is_null(v) ? v : NULL;
}

static void field_path(char *buf, size_t len, const char *parent, const char *key)
{
    snprintf(buf, len, "%s%s%s", parent, *parent ? "." : "", key);
}

static bool size_unit(const char *unit, double *mult)
{
    static const struct { const char *name; double mult; } units[] = {
        {"", 1}, {"B", 1}, {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0},
        {"TiB", 1099511627776.0}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
    };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcmp(unit, units[i].name)) {
            *mult = units[i].mult;
            return true;
        }
    return false;
}

static bool size_from_string(const char *s, uint64_t *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || !isfinite(v) || v < 0) return false;
    while (*end == ' ') end++;
    double mult;
    if (!size_unit(end, &mult)) return false;
    v *= mult;
    if (v >= 9.2e18) return false;
    *out = (uint64_t)llround(v);
    return true;
}

static bool get_u64(rd *r, json_t *obj, const char *parent, const char *key, uint64_t max,
                    uint64_t *out)
{
    char path[96];
    field_path(path, sizeof path, parent, key);
    json_t *v = member(obj, key);
    if (!v) return false;
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0 || (uint64_t)i > max) return bad(r, path, "out of range");
        *out = (uint64_t)i;
        return true;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d < 0 || d != floor(d) || d > (double)max) return bad(r, path, "expected a whole number in range");
        *out = (uint64_t)d;
        return true;
    }
    if (json_is_string(v) && size_from_string(json_string_value(v), out) && *out <= max) return true;
    return bad(r, path, "expected a non-negative integer (or a size such as \"24 GiB\")");
}

static void get_str(rd *r, json_t *obj, const char *parent, const char *key, char *buf, size_t len)
{
    char path[96];
    field_path(path, sizeof path, parent, key);
    buf[0] = '\0';
    json_t *v = member(obj, key);
    if (!v) return;
    if (!json_is_string(v)) {
        bad(r, path, "expected a string");
        return;
    }
    if (json_string_length(v) >= len) {
        bad(r, path, "string too long");
        return;
    }
    snprintf(buf, len, "%s", json_string_value(v));
}

static hw_tristate get_tri(rd *r, json_t *obj, const char *parent, const char *key)
{
    char path[96];
    field_path(path, sizeof path, parent, key);
    json_t *v = member(obj, key);
    if (!v) return HW_UNKNOWN;
    if (!json_is_boolean(v)) return bad(r, path, "expected true, false or null"), HW_UNKNOWN;
    return json_is_true(v) ? HW_YES : HW_NO;
}

static bool get_bool(rd *r, json_t *obj, const char *parent, const char *key)
{
    return get_tri(r, obj, parent, key) == HW_YES;
}

/* A non-negative number up to max (absent or null: 0); else an error
 * saying what was expected. */
/* 0 (not measured), or a value in [min, max]: a positive value below min
 * would make times that divide by it infinite. */
static double get_number(rd *r, json_t *obj, const char *parent, const char *key, double min, double max,
                         const char *what)
{
    char path[96];
    field_path(path, sizeof path, parent, key);
    json_t *v = member(obj, key);
    if (!v) return 0;
    double d = json_is_number(v) ? json_number_value(v) : -1;
    if (!isfinite(d) || d < 0 || d > max || (d > 0 && d < min)) return bad(r, path, what), 0;
    return d;
}

static double get_rate(rd *r, json_t *obj, const char *parent, const char *key)
{
    return get_number(r, obj, parent, key, 1e3, 1e15, "expected bytes per second: 0 (not measured) or 1e3 to 1e15");
}

static double get_seconds(rd *r, json_t *obj, const char *parent, const char *key)
{
    return get_number(r, obj, parent, key, 0, 1e6, "expected seconds");
}

static int64_t get_time(rd *r, json_t *obj, const char *parent, const char *key)
{
    char path[96];
    field_path(path, sizeof path, parent, key);
    json_t *v = member(obj, key);
    if (!v) return 0;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *s = json_is_string(v) ? json_string_value(v) : "";
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (!end || *end) return bad(r, path, "expected a UTC time such as \"2026-01-31T12:00:00Z\""), 0;
    return (int64_t)timegm(&tm);
}

static json_t *get_obj(rd *r, json_t *obj, const char *parent, const char *key)
{
    char path[96];
    field_path(path, sizeof path, parent, key);
    json_t *v = member(obj, key);
    if (v && !json_is_object(v)) return bad(r, path, "expected an object"), NULL;
    return v;
}

static uint32_t get_features(rd *r, json_t *cpu)
{
    json_t *a = member(cpu, "features");
    if (!a) return 0;
    if (!json_is_array(a)) return bad(r, "cpu.features", "expected an array of names"), 0;
    uint32_t f = 0;
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) {
        uint32_t bit = json_is_string(v) ? hw_cpu_feature_from_name(json_string_value(v)) : 0;
        if (!bit) {
            char msg[128];
            snprintf(msg, sizeof msg, "unknown feature %s (see docs/profile-json.md)",
                     json_is_string(v) ? json_string_value(v) : "(not a string)");
            return bad(r, "cpu.features", msg), 0;
        }
        f |= bit;
    }
    return f;
}

static void read_cpu(rd *r, json_t *root, hw_cpu *c)
{
    json_t *o = get_obj(r, root, "", "cpu");
    uint64_t v;
    get_str(r, o, "cpu", "arch", c->arch, sizeof c->arch);
    get_str(r, o, "cpu", "model", c->model, sizeof c->model);
    if (get_u64(r, o, "cpu", "logical_cores", 65536, &v)) c->logical_cores = (uint32_t)v;
    if (get_u64(r, o, "cpu", "physical_cores", 65536, &v)) c->physical_cores = (uint32_t)v;
    if (get_u64(r, o, "cpu", "usable_cores", 65536, &v)) c->usable_cores = (uint32_t)v;
    c->features = get_features(r, o);
    get_u64(r, o, "cpu", "cache_l1d_bytes", 1ull << 40, &c->cache_l1d);
    get_u64(r, o, "cpu", "cache_l2_bytes", 1ull << 40, &c->cache_l2);
    get_u64(r, o, "cpu", "cache_l3_bytes", 1ull << 40, &c->cache_l3);
    if (!c->logical_cores) c->logical_cores = c->physical_cores ? c->physical_cores : 1;
    if (!c->physical_cores) c->physical_cores = c->logical_cores;
    if (!c->usable_cores) c->usable_cores = c->logical_cores;
    if (c->physical_cores > c->logical_cores) bad(r, "cpu.physical_cores", "above logical_cores");
    if (c->usable_cores > c->logical_cores) bad(r, "cpu.usable_cores", "above logical_cores");
}

static void read_cgroup(rd *r, json_t *mem, hw_cgroup *cg)
{
    json_t *o = get_obj(r, mem, "memory", "cgroup");
    cg->limit = cg->headroom = HW_NO_LIMIT;
    if (!o) return;
    uint64_t v = 0;
    if (!get_u64(r, o, "memory.cgroup", "version", 2, &v) || v < 1) {
        bad(r, "memory.cgroup.version", "expected 1 or 2");
        return;
    }
    cg->version = (int)v;
    get_str(r, o, "memory.cgroup", "path", cg->path, sizeof cg->path);
    get_u64(r, o, "memory.cgroup", "limit_bytes", UINT64_MAX - 1, &cg->limit);
    get_u64(r, o, "memory.cgroup", "usage_bytes", UINT64_MAX - 1, &cg->usage);
    if (get_u64(r, o, "memory.cgroup", "reclaimable_bytes", UINT64_MAX - 1, &cg->reclaimable) &&
        cg->reclaimable > cg->usage) {
        bad(r, "memory.cgroup.reclaimable_bytes", "above usage_bytes");
        cg->reclaimable = 0;
    }
    if (!get_u64(r, o, "memory.cgroup", "headroom_bytes", UINT64_MAX - 1, &cg->headroom) &&
        cg->limit != HW_NO_LIMIT)
        cg->headroom = cg->usage - cg->reclaimable < cg->limit ? cg->limit - (cg->usage - cg->reclaimable) : 0;
    if (cg->limit != HW_NO_LIMIT && cg->headroom != HW_NO_LIMIT && cg->headroom > cg->limit)
        bad(r, "memory.cgroup.headroom_bytes", "above limit_bytes");
}

static void read_memory(rd *r, json_t *root, hw_memory *m)
{
    json_t *o = get_obj(r, root, "", "memory");
    get_u64(r, o, "memory", "total_bytes", UINT64_MAX, &m->total);
    if (!get_u64(r, o, "memory", "available_bytes", UINT64_MAX, &m->available))
        m->available = m->total;
    get_u64(r, o, "memory", "swap_total_bytes", UINT64_MAX, &m->swap_total);
    get_u64(r, o, "memory", "swap_free_bytes", UINT64_MAX, &m->swap_free);
    get_str(r, o, "memory", "thp", m->thp, sizeof m->thp);
    read_cgroup(r, o, &m->cgroup);
    if (m->available > m->total) bad(r, "memory.available_bytes", "above total_bytes");
    if (m->swap_free > m->swap_total) bad(r, "memory.swap_free_bytes", "above swap_total_bytes");
    hw_memory_update_usable(m);
    uint64_t usable;
    if (get_u64(r, o, "memory", "usable_bytes", UINT64_MAX, &usable)) {
        if (m->total && usable > m->total) bad(r, "memory.usable_bytes", "above total_bytes");
        m->usable = usable;
    }
}

static void read_storage(rd *r, json_t *root, hw_storage *s)
{
    json_t *o = get_obj(r, root, "", "storage");
    get_str(r, o, "storage", "path", s->path, sizeof s->path);
    get_str(r, o, "storage", "mount_point", s->mount_point, sizeof s->mount_point);
    get_str(r, o, "storage", "fs_type", s->fs_type, sizeof s->fs_type);
    get_str(r, o, "storage", "device", s->device, sizeof s->device);
    s->rotational = get_tri(r, o, "storage", "rotational");
    s->o_direct = get_tri(r, o, "storage", "o_direct");
    get_u64(r, o, "storage", "free_bytes", UINT64_MAX, &s->free_bytes);
    get_u64(r, o, "storage", "total_bytes", UINT64_MAX, &s->total_bytes);
    if (s->total_bytes && s->free_bytes > s->total_bytes)
        bad(r, "storage.free_bytes", "above total_bytes");
}

static void read_stack(rd *r, json_t *root, hw_gpu_stack *s)
{
    json_t *o = get_obj(r, root, "", "gpu_stack");
    uint64_t v;
    s->vulkan_loader = get_bool(r, o, "gpu_stack", "vulkan_loader");
    if (get_u64(r, o, "gpu_stack", "vulkan_icds", 1000, &v)) s->vulkan_icds = (int)v;
    if (get_u64(r, o, "gpu_stack", "vulkan_devices", 1000, &v)) s->vulkan_devices = (int)v;
    s->nvml = get_bool(r, o, "gpu_stack", "nvml");
    get_str(r, o, "gpu_stack", "nvidia_driver", s->nvidia_driver, sizeof s->nvidia_driver);
}

static unsigned get_sources(rd *r, json_t *o, const char *path)
{
    json_t *a = member(o, "sources");
    if (!a) return 0;
    unsigned s = 0;
    size_t i;
    json_t *v;
    if (!json_is_array(a)) return bad(r, path, "sources: expected an array"), 0;
    json_array_foreach(a, i, v) {
        const char *n = json_is_string(v) ? json_string_value(v) : "";
        if (!strcmp(n, "vulkan")) s |= HW_SRC_VULKAN;
        else if (!strcmp(n, "nvml")) s |= HW_SRC_NVML;
        else if (!strcmp(n, "sysfs")) s |= HW_SRC_SYSFS;
        else return bad(r, path, "sources: expected \"vulkan\", \"nvml\" or \"sysfs\""), 0;
    }
    return s;
}

static void read_pcie(rd *r, json_t *g, const char *path, hw_pcie *l)
{
    char pp[64];
    snprintf(pp, sizeof pp, "%s.pcie", path);
    json_t *o = get_obj(r, g, path, "pcie");
    uint64_t v;
    if (get_u64(r, o, pp, "gen", 16, &v)) l->gen = (int)v;
    if (get_u64(r, o, pp, "width", 32, &v)) l->width = (int)v;
    if (get_u64(r, o, pp, "max_gen", 16, &v)) l->max_gen = (int)v;
    if (get_u64(r, o, pp, "max_width", 32, &v)) l->max_width = (int)v;
}

static void read_gpu(rd *r, json_t *o, const char *path, hw_gpu *g)
{
    char type[32];
    uint64_t v;
    get_str(r, o, path, "name", g->name, sizeof g->name);
    get_str(r, o, path, "type", type, sizeof type);
    g->type = hw_gpu_type_from_name(type);
    if (type[0] && g->type == HW_GPU_UNKNOWN && strcmp(type, "unknown"))
        bad(r, path, "type: expected discrete, integrated, virtual, cpu, other or unknown");
    if (get_u64(r, o, path, "vendor_id", UINT32_MAX, &v)) g->vendor_id = (uint32_t)v;
    if (get_u64(r, o, path, "device_id", UINT32_MAX, &v)) g->device_id = (uint32_t)v;
    get_str(r, o, path, "driver", g->driver, sizeof g->driver);
    get_str(r, o, path, "driver_info", g->driver_info, sizeof g->driver_info);
    get_str(r, o, path, "pci_address", g->pci_address, sizeof g->pci_address);
    g->sources = get_sources(r, o, path);
    g->vulkan_index = get_u64(r, o, path, "vulkan_index", HW_MAX_GPUS - 1, &v) ? (int)v : -1;
    get_u64(r, o, path, "vram_total_bytes", UINT64_MAX, &g->vram_total);
    get_u64(r, o, path, "vram_used_bytes", UINT64_MAX, &g->vram_used);
    get_u64(r, o, path, "vram_free_bytes", UINT64_MAX, &g->vram_free);
    g->has_budget = get_u64(r, o, path, "vram_budget_bytes", UINT64_MAX, &g->vram_budget);
    get_u64(r, o, path, "vram_process_usage_bytes", UINT64_MAX, &g->vram_process_usage);
    read_pcie(r, o, path, &g->pcie);
    g->h2d_bw = get_rate(r, o, path, "h2d_bytes_per_s");
    if (member(o, "vram_bytes_per_s")) g->vram_bw = get_rate(r, o, path, "vram_bytes_per_s");
    if (member(o, "matvec_q4_k_bytes_per_s")) g->mv_q4_k_bw = get_rate(r, o, path, "matvec_q4_k_bytes_per_s");
    g->mm_q4_k_flops = get_number(r, o, path, "matmul_q4_k_flop_per_s", 1e3, 1e17,
                                  "expected FLOP per second: 0 (not measured) or 1e3 to 1e17");
    g->round_trip_s = get_number(r, o, path, "round_trip_seconds", 0, 1, "expected seconds (at most 1)");
    if (g->vram_total && (g->vram_used > g->vram_total || g->vram_free > g->vram_total))
        bad(r, path, "vram_used_bytes/vram_free_bytes above vram_total_bytes");
}

static void read_gpus(rd *r, json_t *root, hw_profile *p)
{
    json_t *a = member(root, "gpus");
    if (!a) return;
    if (!json_is_array(a)) {
        bad(r, "gpus", "expected an array");
        return;
    }
    if (json_array_size(a) > HW_MAX_GPUS) {
        bad(r, "gpus", "more than 16 GPUs");
        return;
    }
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) {
        char path[32];
        snprintf(path, sizeof path, "gpus[%zu]", i);
        if (!json_is_object(v)) {
            bad(r, path, "expected an object");
            return;
        }
        hw_gpu *g = &p->gpus[p->n_gpus++];
        read_gpu(r, v, path, g);
    }
}

static void read_pci_gpus(rd *r, json_t *root, hw_profile *p)
{
    json_t *a = member(root, "pci_gpus");
    if (!a) return;
    if (!json_is_array(a)) {
        bad(r, "pci_gpus", "expected an array");
        return;
    }
    if (json_array_size(a) > HW_MAX_GPUS) {
        bad(r, "pci_gpus", "more than 16 GPUs");
        return;
    }
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) {
        char path[32], addr[16];
        snprintf(path, sizeof path, "pci_gpus[%zu]", i);
        if (!json_is_object(v)) {
            bad(r, path, "expected an object");
            return;
        }
        hw_pci_gpu *g = &p->pci_gpus[p->n_pci_gpus++];
        uint64_t id;
        if (get_u64(r, v, path, "vendor_id", 0xffff, &id)) g->vendor_id = (uint32_t)id;
        if (get_u64(r, v, path, "device_id", 0xffff, &id)) g->device_id = (uint32_t)id;
        get_str(r, v, path, "pci_address", addr, sizeof addr);
        if (r->failed) return;
        if (!hw_pci_normalize(addr, g->pci_address, sizeof g->pci_address)) {
            bad(r, path, "pci_address: expected \"DDDD:BB:DD.F\"");
            return;
        }
    }
}

static void read_engine_calib(rd *r, json_t *v, const char *path, hw_engine_calib *c)
{
    uint64_t t;
    if (!json_is_object(v)) {
        bad(r, path, "expected an object");
        return;
    }
    if (!get_u64(r, v, path, "threads", 4096, &t) || t == 0) {
        if (!r->failed) bad(r, path, "threads: expected a count of 1 or more");
        return;
    }
    c->threads = (int)t;
    char sub[96];
    snprintf(sub, sizeof sub, "%s.bytes_per_s", path);
    json_t *bw = get_obj(r, v, path, "bytes_per_s");
    for (int k = 0; bw && k < HW_ENGINE_TYPES; k++)
        c->type_bw[k] = get_rate(r, bw, sub, hw_engine_type_name((hw_engine_type)k));
    c->layer_s = get_seconds(r, v, path, "layer_seconds");
    c->token_s = get_seconds(r, v, path, "token_seconds");
    c->width_s = get_seconds(r, v, path, "width_seconds"); /* 0 when absent (older profiles) */
    if (member(v, "tile_bytes_per_s")) { /* profiles before the tile kernels' calibration have none */
        snprintf(sub, sizeof sub, "%s.tile_bytes_per_s", path);
        json_t *tile = get_obj(r, v, path, "tile_bytes_per_s");
        for (int k = 0; tile && k < HW_ENGINE_TYPES; k++)
            c->tile_bw[k] = get_rate(r, tile, sub, hw_engine_type_name((hw_engine_type)k));
        snprintf(sub, sizeof sub, "%s.bytes_per_s", path);
    }
    if (!r->failed && c->type_bw[HW_ENGINE_Q4_K] <= 0) bad(r, sub, "q4_k: expected bytes per second");
}

/* "engine": one calibration per thread count; profiles before it had one,
 * at ram_threads, as engine_resident_bytes_per_s and engine_layer_seconds. */
static void read_engine(rd *r, json_t *o, hw_measured *m)
{
    if (member(o, "engine_resident_bytes_per_s")) {
        hw_engine_calib c = {.threads = m->ram_threads > 0 ? m->ram_threads : 1};
        c.type_bw[HW_ENGINE_Q4_K] = get_rate(r, o, "measured", "engine_resident_bytes_per_s");
        c.layer_s = get_seconds(r, o, "measured", "engine_layer_seconds");
        if (c.type_bw[HW_ENGINE_Q4_K] > 0) hw_engine_calib_put(m, &c);
    }
    json_t *a = member(o, "engine");
    if (!a) return;
    if (!json_is_array(a)) {
        bad(r, "measured.engine", "expected an array of calibrations");
        return;
    }
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) {
        char path[64];
        snprintf(path, sizeof path, "measured.engine[%zu]", i);
        hw_engine_calib c = {0};
        read_engine_calib(r, v, path, &c);
        if (r->failed) return;
        hw_engine_calib_put(m, &c);
    }
}

static void read_measured(rd *r, json_t *root, hw_profile *p)
{
    json_t *o = get_obj(r, root, "", "measured");
    hw_measured *m = &p->measured;
    if (!o) return;
    uint64_t v;
    m->done = true;
    m->time = get_time(r, o, "measured", "time");
    m->ram_bw_1t = get_rate(r, o, "measured", "ram_read_1t_bytes_per_s");
    m->ram_bw_all = get_rate(r, o, "measured", "ram_read_all_bytes_per_s");
    if (get_u64(r, o, "measured", "ram_threads", 65536, &v)) m->ram_threads = (int)v;
    get_u64(r, o, "measured", "ram_buffer_bytes", UINT64_MAX, &m->ram_bytes);
    m->disk_bw = get_rate(r, o, "measured", "disk_read_bytes_per_s");
    if (member(o, "cpu_q4_k_weights_per_s")) m->cpu_rate = get_rate(r, o, "measured", "cpu_q4_k_weights_per_s");
    read_engine(r, o, m);
    if (member(o, "cpu_q4_k_from_ram_bytes_per_s"))
        m->kernel_ram_bw = get_rate(r, o, "measured", "cpu_q4_k_from_ram_bytes_per_s");
    get_u64(r, o, "measured", "disk_bytes_read", UINT64_MAX, &m->disk_bytes);
    get_str(r, o, "measured", "disk_path", m->disk_path, sizeof m->disk_path);
}

static void read_warnings(rd *r, json_t *root, hw_profile *p)
{
    json_t *a = member(root, "warnings");
    if (!a) return;
    if (!json_is_array(a)) {
        bad(r, "warnings", "expected an array of strings");
        return;
    }
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) {
        if (!json_is_string(v)) {
            bad(r, "warnings", "expected an array of strings");
            return;
        }
        hw_warn(p, "%s", json_string_value(v));
    }
}

static void read_header(rd *r, json_t *root, hw_profile *p)
{
    json_t *schema = json_object_get(root, "schema");
    if (!json_is_string(schema) || strcmp(json_string_value(schema), HW_PROFILE_SCHEMA)) {
        bad(r, "schema", "expected \"" HW_PROFILE_SCHEMA "\"");
        return;
    }
    uint64_t v = 0;
    if (!get_u64(r, root, "", "version", 1000, &v) && !r->failed) bad(r, "version", "missing");
    if (r->failed) return;
    if (v != HW_PROFILE_VERSION) {
        bad(r, "version", v > HW_PROFILE_VERSION ? "written by a newer strata" : "unsupported");
        return;
    }
    p->version = (int)v;
    p->created = get_time(r, root, "", "created");
    get_str(r, root, "", "fingerprint", p->fingerprint, sizeof p->fingerprint);
    get_str(r, root, "", "hostname", p->hostname, sizeof p->hostname);
    get_str(r, root, "", "kernel", p->kernel, sizeof p->kernel);
}

strata_status hw_profile_from_json(const char *text, const char *origin, hw_profile *out,
                                   strata_error *err)
{
    rd r = {origin ? origin : "profile", err, false};
    json_error_t jerr;
    memset(out, 0, sizeof *out);
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return err_set(err, STRATA_E_FORMAT, "%s: line %d: %s", r.origin, jerr.line, jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return err_set(err, STRATA_E_FORMAT, "%s: expected a JSON object", r.origin);
    }
    read_header(&r, root, out);
    if (!r.failed) {
        read_cpu(&r, root, &out->cpu);
        read_memory(&r, root, &out->mem);
        read_storage(&r, root, &out->storage);
        read_stack(&r, root, &out->stack);
        read_gpus(&r, root, out);
        read_pci_gpus(&r, root, out);
        read_measured(&r, root, out);
        read_warnings(&r, root, out);
    }
    json_decref(root);
    if (r.failed) {
        memset(out, 0, sizeof *out);
        return err ? err->status : STRATA_E_FORMAT;
    }
    return STRATA_OK;
}
