/* Public API: machine profiles over src/hw, and the engine calibration of
 * src/plan that `detect --measure` adds to them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/profile_internal.h"
#include "plan/inputs.h"
#include "util/error.h"

_Static_assert((int)STRATA_PROFILE_FRESH == (int)HW_CACHE_FRESH && (int)STRATA_PROFILE_BAD == (int)HW_CACHE_BAD,
               "the public saved-profile states are hw's");
_Static_assert((int)STRATA_CHECK_FAIL == (int)HW_FAIL && STRATA_MAX_CHECKS == HW_MAX_CHECKS,
               "the public checks are hw's");
_Static_assert(sizeof(((strata_check *)0)->message) == sizeof(((hw_check *)0)->message) &&
                   sizeof(((strata_check *)0)->fix) == sizeof(((hw_check *)0)->fix) &&
                   sizeof(((strata_check *)0)->name) == sizeof(((hw_check *)0)->name),
               "check texts are copied whole");

strata_status strata_profile_default_path(char *buf, size_t cap, strata_error *err)
{
    return hw_profile_default_path(buf, cap, err);
}

/* The saved profile: the one given, else (on a live machine) the default. */
static strata_status saved_file(const strata_profile_params *p, char *buf, size_t cap, strata_error *err)
{
    buf[0] = '\0';
    if (p->file) {
        if ((size_t)snprintf(buf, cap, "%s", p->file) < cap) return STRATA_OK;
        return err_set(err, STRATA_E_INVALID, "--profile %.64s...: path too long", p->file);
    }
    return p->root ? STRATA_OK : hw_profile_default_path(buf, cap, err);
}

strata_status strata_profile_probe(const strata_profile_params *p, strata_profile **out, strata_error *err)
{
    *out = NULL;
    strata_profile *s = calloc(1, sizeof *s); /* large: keep it off the stack */
    if (!s) return err_set(err, STRATA_E_NOMEM, "out of memory");
    hw_probe_opts opts = {.root = p->root, .path = p->path};
    strata_status st = saved_file(p, s->file, sizeof s->file, err);
    if (!st) st = hw_probe(&opts, &s->hw, err);
    if (st) {
        free(s);
        return st;
    }
    s->saved = s->file[0] ? hw_profile_reuse_measured(&s->hw, s->file, err) : HW_CACHE_MISSING;
    *out = s;
    return STRATA_OK;
}

void strata_profile_free(strata_profile *p) { free(p); }

strata_profile_saved strata_profile_saved_state(const strata_profile *p) { return (strata_profile_saved)p->saved; }

strata_status strata_profile_measure(strata_profile *p, bool quick,
                                     void (*progress)(const char *stage, double fraction, void *ctx), void *ctx,
                                     strata_error *err)
{
    if (!p->file[0]) return err_set(err, STRATA_E_INVALID, "a profile of a captured tree cannot be measured");
    hw_measure_opts mo = {.progress = progress, .progress_ctx = ctx};
    if (quick) {
        mo.ram_bytes = 64ull << 20;
        mo.disk_bytes = 32ull << 20;
        mo.gpu_bytes = 16ull << 20;
        mo.min_seconds = 0.1;
    }
    strata_status st = hw_measure(&p->hw, &mo, err);
    if (st) return st;
    if (progress) progress("engine decode rate", 0.95, ctx);
    plan_calibrate_into(&p->hw, 0);
    if (progress) progress("done", 1.0, ctx);
    p->saved = HW_CACHE_FRESH;
    p->measured_now = true;
    return hw_profile_save(&p->hw, p->file, err);
}

char *strata_profile_json(const strata_profile *p) { return hw_profile_to_json(&p->hw); }

int strata_profile_check(const strata_profile *p, strata_check *out, int max)
{
    hw_check *checks = calloc(HW_MAX_CHECKS, sizeof *checks);
    if (!checks) return 0;
    int n = hw_doctor(&p->hw, p->saved, checks, HW_MAX_CHECKS);
    if (n > max) n = max;
    for (int i = 0; i < n; i++) {
        out[i].level = (strata_check_level)checks[i].level;
        memcpy(out[i].name, checks[i].name, sizeof out[i].name);
        memcpy(out[i].message, checks[i].message, sizeof out[i].message);
        memcpy(out[i].fix, checks[i].fix, sizeof out[i].fix);
    }
    free(checks);
    return n;
}
