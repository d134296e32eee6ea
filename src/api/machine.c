/* Public API: the few machine facts `run` needs, from src/hw, and the
 * streaming rate a run reached, recorded for later plans. */
#include <stdlib.h>
#include <string.h>

#include "hw/hw.h"
#include "strata.h"
#include "util/error.h"

strata_status strata_machine_probe(const char *model_path, strata_machine *out, strata_error *err)
{
    memset(out, 0, sizeof *out);
    hw_profile *p = calloc(1, sizeof *p); /* large: keep it off the stack */
    if (!p) return err_set(err, STRATA_E_NOMEM, "out of memory");
    hw_probe_opts opts = {.path = model_path, .no_gpu_libs = true, .no_odirect_test = true};
    strata_status st = hw_probe(&opts, p, err);
    if (!st) {
        char path[1024];
        strata_error ignored;
        if (hw_profile_default_path(path, sizeof path, &ignored) == STRATA_OK)
            hw_profile_reuse_measured(p, path, &ignored);
        out->usable_memory = p->mem.usable;
        out->default_budget = hw_default_budget(p->mem.usable);
        if (hw_memory_cgroup_binds(&p->mem)) {
            out->cgroup_limit = p->mem.cgroup.limit;
            out->cgroup_held = p->mem.cgroup.usage - p->mem.cgroup.reclaimable;
        }
        out->physical_cores = hw_default_threads(&p->cpu);
        out->disk_bw = p->measured.done ? p->measured.disk_bw : 0;
        out->ram_bw = p->measured.done ? p->measured.ram_bw_all : 0;
    }
    free(p);
    return st;
}

strata_status strata_machine_record_stream_rate(const char *model_path, uint64_t bytes, double seconds,
                                                strata_error *err)
{
    hw_profile *p = calloc(1, sizeof *p);
    if (!p) return err_set(err, STRATA_E_NOMEM, "out of memory");
    hw_probe_opts opts = {.path = model_path, .no_gpu_libs = true, .no_odirect_test = true};
    char path[1024], rates[1100];
    strata_status st = hw_probe(&opts, p, err);
    if (!st) st = hw_profile_default_path(path, sizeof path, err);
    if (!st) st = hw_stream_rates_path(path, rates, sizeof rates, err);
    if (!st && !p->storage.device[0])
        st = err_set(err, STRATA_E_INVALID, "%s: the storage device is unknown", model_path ? model_path : ".");
    if (!st) st = hw_stream_rate_record(rates, p->fingerprint, p->storage.device, bytes, seconds, err);
    free(p);
    return st;
}
