/* The profile as JSON (docs/profile-json.md). Unknown values are null. */
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hw/hw_internal.h"

static json_t *jstr(const char *s)
{
    if (!s || !*s) return json_null();
    json_t *j = json_string(s);
    if (j) return j;
    char clean[HW_PATH_MAX];
    hw_copy_clean(clean, sizeof clean, s); /* not UTF-8: keep the ASCII */
    return json_string(clean);
}

static json_t *jsize(uint64_t v)
{
    return v <= (uint64_t)LLONG_MAX ? json_integer((json_int_t)v) : json_null();
}

static json_t *jsize_known(uint64_t v) { return v ? jsize(v) : json_null(); }
static json_t *jrate(double v) { return v > 0 ? json_real(v) : json_null(); }

static json_t *jtri(hw_tristate t)
{
    return t == HW_UNKNOWN ? json_null() : json_boolean(t == HW_YES);
}

static json_t *jtime(int64_t t)
{
    if (t <= 0) return json_null();
    char buf[32];
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm))
        return json_null();
    return json_string(buf);
}

static json_t *cpu_json(const hw_cpu *c)
{
    json_t *feats = json_array();
    for (int i = 0; i < HW_CPU_FEATURE_COUNT; i++)
        if (c->features & (1u << i)) json_array_append_new(feats, json_string(hw_cpu_feature_name(1u << i)));
    return json_pack("{s:o, s:o, s:I, s:I, s:I, s:o, s:o, s:o, s:o}", "arch", jstr(c->arch), "model",
                     jstr(c->model), "logical_cores", (json_int_t)c->logical_cores, "physical_cores",
                     (json_int_t)c->physical_cores, "usable_cores", (json_int_t)c->usable_cores,
                     "features", feats, "cache_l1d_bytes", jsize_known(c->cache_l1d),
                     "cache_l2_bytes", jsize_known(c->cache_l2), "cache_l3_bytes",
                     jsize_known(c->cache_l3));
}

static json_t *cgroup_json(const hw_cgroup *cg)
{
    if (!cg->version) return json_null();
    return json_pack("{s:i, s:o, s:o, s:o, s:o, s:o}", "version", cg->version, "path", jstr(cg->path),
                     "limit_bytes", cg->limit == HW_NO_LIMIT ? json_null() : jsize(cg->limit),
                     "usage_bytes", jsize(cg->usage), "reclaimable_bytes", jsize(cg->reclaimable), "headroom_bytes",
                     cg->headroom == HW_NO_LIMIT ? json_null() : jsize(cg->headroom));
}

static json_t *memory_json(const hw_memory *m)
{
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "total_bytes", jsize_known(m->total),
                     "available_bytes", m->total ? jsize(m->available) : json_null(), "swap_total_bytes",
                     jsize(m->swap_total), "swap_free_bytes", jsize(m->swap_free), "cgroup",
                     cgroup_json(&m->cgroup), "usable_bytes", m->total ? jsize(m->usable) : json_null(), "thp",
                     jstr(m->thp));
}

static json_t *storage_json(const hw_storage *s)
{
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "path", jstr(s->path), "mount_point",
                     jstr(s->mount_point), "fs_type", jstr(s->fs_type), "device", jstr(s->device),
                     "rotational", jtri(s->rotational), "free_bytes", jsize_known(s->free_bytes),
                     "total_bytes", jsize_known(s->total_bytes), "o_direct", jtri(s->o_direct));
}

static json_t *stack_json(const hw_gpu_stack *s)
{
    return json_pack("{s:b, s:i, s:i, s:b, s:o}", "vulkan_loader", s->vulkan_loader,
                     "vulkan_icds", s->vulkan_icds, "vulkan_devices", s->vulkan_devices, "nvml",
                     s->nvml, "nvidia_driver", jstr(s->nvidia_driver));
}

static json_t *pcie_json(const hw_pcie *l)
{
    if (!l->gen && !l->width && !l->max_gen && !l->max_width) return json_null();
    return json_pack("{s:i, s:i, s:i, s:i}", "gen", l->gen, "width", l->width, "max_gen", l->max_gen,
                     "max_width", l->max_width);
}

static json_t *sources_json(unsigned s)
{
    json_t *a = json_array();
    if (s & HW_SRC_VULKAN) json_array_append_new(a, json_string("vulkan"));
    if (s & HW_SRC_NVML) json_array_append_new(a, json_string("nvml"));
    if (s & HW_SRC_SYSFS) json_array_append_new(a, json_string("sysfs"));
    return a;
}

static json_t *gpu_json(const hw_gpu *g)
{
    bool have_used = g->vram_used || g->vram_free;
    json_t *o = json_pack(
        "{s:o, s:s, s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "name", jstr(g->name),
        "type", hw_gpu_type_name(g->type), "vendor_id", (json_int_t)g->vendor_id, "device_id",
        (json_int_t)g->device_id, "vendor", jstr(hw_vendor_name(g->vendor_id)), "driver",
        jstr(g->driver), "driver_info", jstr(g->driver_info), "pci_address", jstr(g->pci_address),
        "sources", sources_json(g->sources), "vulkan_index",
        g->vulkan_index >= 0 ? json_integer(g->vulkan_index) : json_null(), "vram_total_bytes",
        jsize_known(g->vram_total), "vram_used_bytes", have_used ? jsize(g->vram_used) : json_null());
    if (!o) return NULL;
    json_object_set_new(o, "vram_free_bytes", have_used ? jsize(g->vram_free) : json_null());
    json_object_set_new(o, "vram_budget_bytes", g->has_budget ? jsize(g->vram_budget) : json_null());
    json_object_set_new(o, "vram_process_usage_bytes",
                        g->has_budget ? jsize(g->vram_process_usage) : json_null());
    json_object_set_new(o, "pcie", pcie_json(&g->pcie));
    json_object_set_new(o, "h2d_bytes_per_s", jrate(g->h2d_bw));
    json_object_set_new(o, "vram_bytes_per_s", jrate(g->vram_bw));
    json_object_set_new(o, "matvec_q4_k_bytes_per_s", jrate(g->mv_q4_k_bw));
    json_object_set_new(o, "matmul_q4_k_flop_per_s", jrate(g->mm_q4_k_flops));
    json_object_set_new(o, "round_trip_seconds", jrate(g->round_trip_s));
    return o;
}

/* "pci_gpus": [{"vendor_id", "device_id", "pci_address"}] (the fingerprint's GPUs). */
static json_t *pci_gpus_json(const hw_profile *p)
{
    json_t *a = json_array();
    for (int i = 0; a && i < p->n_pci_gpus && i < HW_MAX_GPUS; i++) {
        const hw_pci_gpu *g = &p->pci_gpus[i];
        json_array_append_new(a, json_pack("{s:I, s:I, s:o}", "vendor_id", (json_int_t)g->vendor_id, "device_id",
                                           (json_int_t)g->device_id, "pci_address", jstr(g->pci_address)));
    }
    return a;
}

/* [{"threads": T, "bytes_per_s": {"q4_k": ...}, "layer_seconds": ..., "token_seconds": ...,
 *   "width_seconds": ..., "tile_bytes_per_s": {"q4_k": ...}}] */
static json_t *engine_json(const hw_measured *m)
{
    json_t *a = json_array();
    for (int i = 0; a && i < m->n_engine && i < HW_MAX_ENGINE_CALIB; i++) {
        const hw_engine_calib *c = &m->engine[i];
        json_t *bw = json_object(), *tile = json_object();
        for (int t = 0; bw && t < HW_ENGINE_TYPES; t++)
            json_object_set_new(bw, hw_engine_type_name((hw_engine_type)t), jrate(c->type_bw[t]));
        for (int t = 0; tile && t < HW_ENGINE_TYPES; t++)
            json_object_set_new(tile, hw_engine_type_name((hw_engine_type)t), jrate(c->tile_bw[t]));
        json_array_append_new(a, json_pack("{s:i, s:o, s:o, s:o, s:o, s:o}", "threads", c->threads, "bytes_per_s",
                                           bw ? bw : json_null(), "layer_seconds", json_real(c->layer_s),
                                           "token_seconds", json_real(c->token_s), "width_seconds",
                                           json_real(c->width_s), "tile_bytes_per_s", tile ? tile : json_null()));
    }
    return a ? a : json_null();
}

static json_t *measured_json(const hw_measured *m)
{
    if (!m->done) return json_null();
    json_t *o = json_pack("{s:o, s:o, s:o, s:i, s:o, s:o, s:o, s:o, s:o, s:o}", "time", jtime(m->time),
                          "ram_read_1t_bytes_per_s", jrate(m->ram_bw_1t), "ram_read_all_bytes_per_s",
                          jrate(m->ram_bw_all), "ram_threads", m->ram_threads, "ram_buffer_bytes",
                          jsize_known(m->ram_bytes), "disk_read_bytes_per_s", jrate(m->disk_bw),
                          "disk_bytes_read", jsize_known(m->disk_bytes), "disk_path", jstr(m->disk_path),
                          "cpu_q4_k_weights_per_s", jrate(m->cpu_rate), "cpu_q4_k_from_ram_bytes_per_s",
                          jrate(m->kernel_ram_bw));
    if (o) json_object_set_new(o, "engine", engine_json(m));
    return o ? o : json_null();
}

char *hw_profile_to_json(const hw_profile *p)
{
    json_t *gpus = json_array(), *warnings = json_array();
    for (int i = 0; i < p->n_gpus && i < HW_MAX_GPUS; i++)
        json_array_append_new(gpus, gpu_json(&p->gpus[i]));
    for (int i = 0; i < p->n_warnings && i < HW_MAX_WARNINGS; i++)
        json_array_append_new(warnings, jstr(p->warnings[i]));
    json_t *root = json_pack(
        "{s:s, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "schema", HW_PROFILE_SCHEMA, "version",
        HW_PROFILE_VERSION, "created", jtime(p->created), "fingerprint", jstr(p->fingerprint), "hostname",
        jstr(p->hostname), "kernel", jstr(p->kernel), "cpu", cpu_json(&p->cpu), "memory", memory_json(&p->mem),
        "storage", storage_json(&p->storage), "gpu_stack", stack_json(&p->stack), "gpus", gpus);
    if (!root) {
        json_decref(warnings);
        return NULL;
    }
    json_object_set_new(root, "pci_gpus", pci_gpus_json(p));
    json_object_set_new(root, "measured", measured_json(&p->measured));
    json_object_set_new(root, "warnings", warnings);
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(root);
    return text;
}
