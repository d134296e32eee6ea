/* The saved profile: where it lives, saving and loading it, and reusing
 * its measurements while the fingerprint (profile_identity.c) matches. */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hw/hw_internal.h"
#include "util/outfile.h"
#include "util/error.h"

#define PROFILE_MAX (4u << 20)

strata_status hw_profile_default_path(char *buf, size_t len, strata_error *err)
{
    const char *xdg = getenv("XDG_CACHE_HOME");
    int n;
    if (xdg && xdg[0] == '/') {
        n = snprintf(buf, len, "%s/strata/profile.json", xdg);
    } else {
        const char *home = getenv("HOME");
        if (!home || home[0] != '/') {
            struct passwd *pw = getpwuid(getuid());
            home = pw ? pw->pw_dir : NULL;
        }
        if (!home || home[0] != '/')
            return err_set(err, STRATA_E_INVALID,
                           "no cache directory: set XDG_CACHE_HOME or HOME, or use --profile FILE");
        n = snprintf(buf, len, "%s/.cache/strata/profile.json", home);
    }
    if (n < 0 || (size_t)n >= len)
        return err_set(err, STRATA_E_INVALID, "cache directory path too long");
    return STRATA_OK;
}

/* mkdir -p of the directory part of path. */
strata_status hw_make_parent(const char *path, strata_error *err)
{
    char dir[HW_PATH_MAX];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir)
        return err_set(err, STRATA_E_INVALID, "%s: path too long", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return STRATA_OK;
    *slash = '\0';
    for (char *p = dir + 1; ; p++) {
        char c = *p;
        if (c == '/' || c == '\0') {
            *p = '\0';
            if (mkdir(dir, 0700) != 0 && errno != EEXIST)
                return err_set(err, STRATA_E_IO, "%s: cannot create directory: %s", dir,
                               strerror(errno));
            *p = c;
        }
        if (!c) break;
    }
    return STRATA_OK;
}

strata_status hw_profile_save(const hw_profile *p, const char *path, strata_error *err)
{
    strata_status st = hw_make_parent(path, err);
    if (st != STRATA_OK) return st;
    char *text = hw_profile_to_json(p);
    if (!text) return err_set(err, STRATA_E_NOMEM, "%s: out of memory writing the profile", path);
    st = outfile_write_text(path, text, err);
    free(text);
    return st;
}

strata_status hw_profile_load(const char *path, hw_profile *out, strata_error *err)
{
    size_t len = 0;
    char *text = hw_read_file("", path, PROFILE_MAX, &len);
    if (!text) {
        int e = errno;
        memset(out, 0, sizeof *out);
        return err_set(err, STRATA_E_IO, "%s: %s", path, e == EFBIG ? "larger than 4 MiB" : strerror(e));
    }
    strata_status st = hw_profile_from_json(text, path, out, err);
    free(text);
    return st;
}

const char *hw_cache_state_name(hw_cache_state s)
{
    switch (s) {
    case HW_CACHE_MISSING: return "missing";
    case HW_CACHE_FRESH: return "fresh";
    case HW_CACHE_STALE: return "stale";
    case HW_CACHE_BAD: return "unreadable";
    }
    return "unknown";
}

/* The saved measurements of GPU g (the same Vulkan device index and name);
 * false when the saved profile has no such GPU. */
static bool reuse_gpu_rates(hw_gpu *g, const hw_profile *saved)
{
    for (int j = 0; j < saved->n_gpus; j++) {
        const hw_gpu *s = &saved->gpus[j];
        if (g->vulkan_index < 0 || g->vulkan_index != s->vulkan_index || strcmp(g->name, s->name)) continue;
        g->h2d_bw = s->h2d_bw;
        g->vram_bw = s->vram_bw;
        g->mv_q4_k_bw = s->mv_q4_k_bw;
        g->mm_q4_k_flops = s->mm_q4_k_flops;
        g->round_trip_s = s->round_trip_s;
        if (!g->pcie.gen && !g->pcie.max_gen) g->pcie = s->pcie; /* the link, when g's probe had none */
        return true;
    }
    return false;
}

hw_cache_state hw_profile_reuse(hw_profile *p, const char *path, char *why, size_t why_len, strata_error *err)
{
    if (why && why_len) why[0] = '\0';
    if (access(path, F_OK) != 0) return HW_CACHE_MISSING;
    hw_profile *saved = malloc(sizeof *saved);
    if (!saved) {
        err_set(err, STRATA_E_NOMEM, "out of memory");
        return HW_CACHE_BAD;
    }
    hw_cache_state st;
    char diff[400];
    if (hw_profile_load(path, saved, err) != STRATA_OK) {
        st = HW_CACHE_BAD;
        if (why && why_len) snprintf(why, why_len, "the saved profile is unreadable (%s)", err ? err->message : "?");
    } else if (!saved->measured.done) {
        st = HW_CACHE_STALE;
        if (why && why_len) snprintf(why, why_len, "the saved profile has no measurements");
    } else if (strcmp(saved->fingerprint, p->fingerprint)) {
        st = HW_CACHE_STALE;
        hw_fingerprint_diff(saved, p, diff, sizeof diff);
        if (why && why_len)
            snprintf(why, why_len, "the saved profile is from another machine (%s)",
                     diff[0] ? diff : "its fingerprint is of an older strata");
    } else {
        st = HW_CACHE_FRESH;
        p->measured = saved->measured;
        for (int i = 0; i < p->n_gpus; i++) reuse_gpu_rates(&p->gpus[i], saved);
    }
    free(saved);
    return st;
}

bool hw_profile_reuse_gpu(const hw_profile *p, const char *path, hw_gpu *g)
{
    hw_profile *saved = malloc(sizeof *saved);
    strata_error ignored;
    bool ok = saved && access(path, F_OK) == 0 && hw_profile_load(path, saved, &ignored) == STRATA_OK &&
              saved->measured.done && !strcmp(saved->fingerprint, p->fingerprint) && reuse_gpu_rates(g, saved);
    free(saved);
    return ok;
}

hw_cache_state hw_profile_reuse_measured(hw_profile *p, const char *path, strata_error *err)
{
    return hw_profile_reuse(p, path, NULL, 0, err);
}

bool hw_storage_device_of(const char *path, char *dev, size_t len)
{
    if (len) dev[0] = '\0';
    if (!path || !*path || access(path, F_OK) != 0) return false;
    hw_profile *tmp = calloc(1, sizeof *tmp); /* for the probe's warnings */
    if (!tmp) return false;
    hw_storage_probe("", path, true, false, &tmp->storage, tmp);
    bool ok = tmp->storage.device[0] && hw_copy_str(dev, len, tmp->storage.device);
    free(tmp);
    return ok;
}
