/* The memory cgroup of this process, v1 or v2, and the headroom it leaves.
 *
 * /proc/self/cgroup lines are "hierarchy-id:controllers:path"; v1 has a
 * line whose controllers include "memory", v2 the line "0::path". The
 * hierarchy is mounted where /proc/self/mountinfo says (type "cgroup" with
 * the "memory" option, or "cgroup2"). Every ancestor's limit applies, so
 * the walk goes from this process's cgroup up to the mount's root and keeps
 * the level with the least headroom (limit - usage + reclaimable).
 *   v1: memory.limit_in_bytes, memory.usage_in_bytes ("unlimited" is a
 *       huge number near 2^63)
 *   v2: memory.max and memory.high ("max" = none), memory.current
 * Usage counts the page cache of files read in the cgroup; the kernel drops
 * those pages before it kills anything, so they are headroom too (memory.stat:
 * v1 total_inactive_file + total_active_file, v2 inactive_file + active_file).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hw/hw_internal.h"

/* Limits at or above this are "no limit" (v1 writes PAGE_COUNTER_MAX pages). */
#define CG_UNLIMITED (1ull << 62)

typedef struct cg_find {
    int version;
    char path[HW_PATH_MAX];
} cg_find;

static bool list_has(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *s = list; s && *s;) {
        size_t len = strcspn(s, ",");
        if (len == n && !strncmp(s, word, n)) return true;
        s += len;
        if (*s == ',') s++;
    }
    return false;
}

/* Finds the memory controller's line in /proc/self/cgroup; v1 wins over
 * the v2 line when both are there (hybrid mode keeps memory in v1). */
static bool parse_proc_cgroup(const char *text, cg_find *out)
{
    bool found_v2 = false;
    char v2_path[HW_PATH_MAX] = "";
    for (const char *line = text; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char buf[HW_PATH_MAX + 256];
        if (len < sizeof buf) {
            memcpy(buf, line, len);
            buf[len] = '\0';
            char *c1 = strchr(buf, ':');
            char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
            if (c2 && c2[1] == '/') {
                *c1 = *c2 = '\0';
                const char *ctrl = c1 + 1, *path = c2 + 1;
                if (list_has(ctrl, "memory") && strlen(path) < sizeof out->path) {
                    out->version = 1;
                    snprintf(out->path, sizeof out->path, "%s", path);
                    return true;
                }
                if (!strcmp(buf, "0") && !*ctrl && strlen(path) < sizeof v2_path) {
                    snprintf(v2_path, sizeof v2_path, "%s", path);
                    found_v2 = true;
                }
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    if (!found_v2) return false;
    out->version = 2;
    snprintf(out->path, sizeof out->path, "%s", v2_path);
    return true;
}

typedef struct mount_find {
    int version;
    hw_mount m;
    bool found;
} mount_find;

static bool mount_cb(const hw_mount *m, void *vctx)
{
    mount_find *c = vctx;
    bool match = c->version == 1 ? !strcmp(m->fs_type, "cgroup") && list_has(m->super_opts, "memory")
                                 : !strcmp(m->fs_type, "cgroup2");
    if (match) {
        c->m = *m;
        c->found = true;
    }
    return !match;
}

/* The cgroup's directory: the mount point plus the path below the mount's
 * root (in a cgroup namespace the path is already relative to it). */
static bool cgroup_dir(const hw_mount *m, const char *cg_path, char *dir, size_t len)
{
    const char *rel = cg_path;
    size_t rl = strlen(m->root);
    if (strcmp(m->root, "/") && !strncmp(cg_path, m->root, rl) &&
        (cg_path[rl] == '/' || cg_path[rl] == '\0'))
        rel = cg_path + rl;
    if (!strcmp(rel, "/")) rel = "";
    const char *mp = strcmp(m->mount_point, "/") ? m->mount_point : "";
    int n = snprintf(dir, len, "%s%s", mp, rel);
    return n > 0 && (size_t)n < len;
}

/* Reads a limit file: a number, or "max" (none). */
static bool read_limit(const char *root, const char *path, uint64_t *out, bool *bad)
{
    char line[64];
    if (!hw_read_line(root, path, line, sizeof line)) return false;
    if (!strcmp(line, "max")) {
        *out = HW_NO_LIMIT;
        return true;
    }
    if (!hw_parse_u64(line, out)) {
        *bad = true;
        return false;
    }
    if (*out >= CG_UNLIMITED) *out = HW_NO_LIMIT;
    return true;
}

/* File pages of a level's usage (memory.stat lines "key value"), 0 when
 * unknown. */
static uint64_t reclaimable_bytes(const char *root, int version, const char *dir)
{
    char path[HW_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/memory.stat", dir);
    char *text = hw_read_file(root, path, 1u << 16, NULL);
    const char *inactive = version == 1 ? "total_inactive_file" : "inactive_file";
    const char *active = version == 1 ? "total_active_file" : "active_file";
    uint64_t sum = 0, v;
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n'), *sp = strchr(line, ' ');
        if (nl) *nl = '\0';
        if (sp) *sp = '\0';
        if (sp && (!strcmp(line, inactive) || !strcmp(line, active)) && hw_parse_u64(sp + 1, &v) && v < CG_UNLIMITED)
            sum += v;
        line = nl ? nl + 1 : NULL;
    }
    free(text);
    return sum;
}

/* One level of the walk: updates cg when this level binds tighter. */
static void walk_level(const char *root, int version, const char *dir, hw_cgroup *cg, bool *bad)
{
    char path[HW_PATH_MAX + 64];
    uint64_t limit = HW_NO_LIMIT, v, usage = 0;
    const char *usage_file = version == 1 ? "memory.usage_in_bytes" : "memory.current";
    static const char *const v1_limits[] = {"memory.limit_in_bytes", NULL};
    static const char *const v2_limits[] = {"memory.max", "memory.high", NULL};
    for (const char *const *f = version == 1 ? v1_limits : v2_limits; *f; f++) {
        snprintf(path, sizeof path, "%s/%s", dir, *f);
        if (read_limit(root, path, &v, bad) && v < limit) limit = v;
    }
    if (limit == HW_NO_LIMIT) return;
    snprintf(path, sizeof path, "%s/%s", dir, usage_file);
    if (!hw_read_u64(root, path, &usage)) {
        *bad = true;
        usage = 0;
    }
    uint64_t file = reclaimable_bytes(root, version, dir);
    uint64_t held = usage - (file < usage ? file : usage); /* what the kernel cannot take back */
    uint64_t headroom = held < limit ? limit - held : 0;
    if (cg->headroom == HW_NO_LIMIT || headroom < cg->headroom) {
        cg->headroom = headroom;
        cg->limit = limit;
        cg->usage = usage;
        cg->reclaimable = file < usage ? file : usage;
    }
}

static void walk_up(const char *root, int version, const char *mount_point, char *dir,
                    hw_cgroup *cg, bool *bad)
{
    size_t floor = strcmp(mount_point, "/") ? strlen(mount_point) : 0;
    for (int depth = 0; depth < 64; depth++) {
        walk_level(root, version, dir, cg, bad);
        size_t n = strlen(dir);
        if (n <= floor) break;
        char *slash = strrchr(dir, '/');
        if (!slash || (size_t)(slash - dir) < floor) break;
        *slash = '\0';
    }
}

/* The usage of this process's own cgroup, reported even without a limit. */
static void own_usage(const char *root, int version, const char *dir, hw_cgroup *cg)
{
    char path[HW_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir,
             version == 1 ? "memory.usage_in_bytes" : "memory.current");
    uint64_t v;
    if (hw_read_u64(root, path, &v)) cg->usage = v;
}

int hw_cgroup_locate(const char *root, hw_cgroup_loc *loc)
{
    memset(loc, 0, sizeof *loc);
    char *text = hw_read_file(root, "/proc/self/cgroup", 1u << 20, NULL);
    if (!text) return HW_CG_NO_FILE;
    cg_find f = {0};
    bool ok = parse_proc_cgroup(text, &f);
    free(text);
    if (!ok) return HW_CG_NO_CONTROLLER;
    loc->version = f.version;
    snprintf(loc->path, sizeof loc->path, "%s", f.path);
    text = hw_read_file(root, "/proc/self/mountinfo", HW_FILE_MAX, NULL);
    mount_find mf = {.version = f.version};
    if (text) hw_mountinfo_parse(text, mount_cb, &mf, NULL);
    free(text);
    if (!mf.found || !cgroup_dir(&mf.m, f.path, loc->dir, sizeof loc->dir)) return HW_CG_NOT_MOUNTED;
    snprintf(loc->mount_point, sizeof loc->mount_point, "%s", mf.m.mount_point);
    return HW_CG_FOUND;
}

bool hw_cgroup_measure(const char *root, const hw_cgroup_loc *loc, hw_cgroup *cg)
{
    memset(cg, 0, sizeof *cg);
    cg->limit = cg->headroom = HW_NO_LIMIT;
    cg->version = loc->version;
    snprintf(cg->path, sizeof cg->path, "%s", loc->path);
    char dir[HW_PATH_MAX]; /* walk_up cuts it level by level */
    snprintf(dir, sizeof dir, "%s", loc->dir);
    own_usage(root, loc->version, dir, cg);
    bool bad = false;
    walk_up(root, loc->version, loc->mount_point, dir, cg, &bad);
    return !bad;
}

void hw_cgroup_probe(const char *root, hw_cgroup *cg, hw_profile *p)
{
    memset(cg, 0, sizeof *cg);
    cg->limit = cg->headroom = HW_NO_LIMIT;
    hw_cgroup_loc loc;
    switch (hw_cgroup_locate(root, &loc)) {
    case HW_CG_NO_FILE:
        hw_warn(p, "cannot read /proc/self/cgroup: cgroup memory limit unknown");
        return;
    case HW_CG_NO_CONTROLLER:
        hw_warn(p, "/proc/self/cgroup: no memory controller: cgroup memory limit unknown");
        return;
    case HW_CG_NOT_MOUNTED:
        hw_warn(p, "cgroup v%d memory hierarchy not mounted: cgroup memory limit unknown", loc.version);
        return;
    default: break;
    }
    if (!hw_cgroup_measure(root, &loc, cg))
        hw_warn(p, "cgroup v%d %s: malformed memory file(s) ignored", loc.version, loc.path);
}
