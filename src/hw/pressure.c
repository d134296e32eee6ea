/* Memory pressure of this process, sampled while it runs (the watchdog's
 * source): the cgroup walk of cgroup.c, PSI stall time, the cgroup's limit
 * events, and MemAvailable. Every file is read whole and parsed strictly:
 * a malformed file is treated as absent, never trusted in part. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hw/hw_internal.h"

/* "12.34" (at most 100) into *out; end past it. */
static bool parse_percent(const char *s, double *out, const char **end)
{
    uint64_t whole, frac = 0;
    const char *p;
    if (!hw_parse_u64_prefix(s, &whole, &p) || whole > 100) return false;
    double scale = 1;
    if (*p == '.') {
        const char *q = p + 1;
        if (!hw_parse_u64_prefix(q, &frac, &p) || p - q > 6 || *q == ' ') return false;
        for (const char *c = q; c < p; c++) scale *= 10;
    }
    *out = (double)whole + (double)frac / scale;
    if (*out > 100) return false;
    *end = p;
    return true;
}

/* " avg10=A avg60=B avg300=C total=T" after "some"/"full". */
static bool psi_line(const char *s, double *avg10, uint64_t *total)
{
    static const char *const keys[3] = {" avg10=", " avg60=", " avg300="};
    double v[3];
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(keys[i]);
        if (strncmp(s, keys[i], n) || !parse_percent(s + n, &v[i], &s)) return false;
    }
    if (strncmp(s, " total=", 7) || !hw_parse_u64_prefix(s + 7, total, &s)) return false;
    while (*s == ' ' || *s == '\r') s++;
    if (*s && *s != '\n') return false;
    *avg10 = v[0];
    return true;
}

bool hw_psi_parse(const char *text, hw_psi *out)
{
    memset(out, 0, sizeof *out);
    bool some = false;
    for (const char *line = text; line && *line;) {
        const char *nl = strchr(line, '\n');
        if (!strncmp(line, "some", 4)) {
            if (some || !psi_line(line + 4, &out->some_avg10, &out->some_total)) return false;
            some = true;
        } else if (!strncmp(line, "full", 4)) {
            if (out->has_full || !psi_line(line + 4, &out->full_avg10, &out->full_total)) return false;
            out->has_full = true;
        } else if (line[0] != '\n') {
            return false;
        }
        line = nl ? nl + 1 : NULL;
    }
    return some;
}

/* Lines "key value"; the keys asked for must each appear once, others are
 * ignored (newer kernels add keys). */
static bool key_values(const char *text, const char *const *keys, uint64_t *const *vals, int n)
{
    unsigned seen = 0;
    for (const char *line = text; line && *line;) {
        const char *nl = strchr(line, '\n'), *sp = strchr(line, ' ');
        if (!sp || (nl && sp > nl)) return false;
        for (int i = 0; i < n; i++) {
            if (strlen(keys[i]) != (size_t)(sp - line) || strncmp(line, keys[i], (size_t)(sp - line))) continue;
            char num[32];
            size_t len = nl ? (size_t)(nl - sp - 1) : strlen(sp + 1);
            if ((seen & (1u << i)) || len >= sizeof num) return false;
            memcpy(num, sp + 1, len);
            num[len] = '\0';
            if (!hw_parse_u64(num, vals[i])) return false;
            seen |= 1u << i;
        }
        line = nl ? nl + 1 : NULL;
    }
    return seen == (1u << n) - 1;
}

bool hw_mem_events_parse(const char *text, hw_mem_events *out)
{
    memset(out, 0, sizeof *out);
    static const char *const keys[4] = {"high", "max", "oom", "oom_kill"};
    uint64_t *const vals[4] = {&out->high, &out->max, &out->oom, &out->oom_kill};
    return key_values(text, keys, vals, 4);
}

bool hw_oom_control_parse(const char *text, hw_mem_events *out)
{
    memset(out, 0, sizeof *out);
    uint64_t disable;
    static const char *const keys[3] = {"oom_kill_disable", "under_oom", "oom_kill"};
    uint64_t *const vals[3] = {&disable, &out->oom, &out->oom_kill};
    return key_values(text, keys, vals, 3) && disable <= 1 && out->oom <= 1;
}

void hw_pressure_open(const char *root, hw_pressure_src *src)
{
    memset(src, 0, sizeof *src);
    snprintf(src->root, sizeof src->root, "%s", root ? root : "");
    src->has_cgroup = hw_cgroup_locate(src->root, &src->loc) == HW_CG_FOUND;
}

/* The cgroup's own file `name`, whole; NULL when absent. */
static char *cgroup_file(const hw_pressure_src *src, const char *name)
{
    char path[HW_PATH_MAX + 64];
    int n = snprintf(path, sizeof path, "%s/%s", src->loc.dir, name);
    return n > 0 && (size_t)n < sizeof path ? hw_read_file(src->root, path, 1u << 16, NULL) : NULL;
}

static void read_events(const hw_pressure_src *src, hw_pressure *out)
{
    char *text = cgroup_file(src, src->loc.version == 1 ? "memory.oom_control" : "memory.events");
    out->has_events = text && (src->loc.version == 1 ? hw_oom_control_parse(text, &out->events)
                                                     : hw_mem_events_parse(text, &out->events));
    free(text);
    if (out->has_events && src->loc.version == 1) { /* v1 counts hits of the limit in failcnt */
        char path[HW_PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/memory.failcnt", src->loc.dir);
        if (!hw_read_u64(src->root, path, &out->events.max)) out->has_events = false;
    }
}

static void read_cgroup(const hw_pressure_src *src, hw_pressure *out)
{
    if (!src->has_cgroup) return;
    out->has_cgroup = hw_cgroup_measure(src->root, &src->loc, &out->cgroup);
    read_events(src, out);
    if (src->loc.version != 2) return;
    char *text = cgroup_file(src, "memory.pressure");
    out->has_cgroup_psi = text && hw_psi_parse(text, &out->cgroup_psi);
    free(text);
}

static void read_system(const hw_pressure_src *src, hw_pressure *out)
{
    char *text = hw_read_file(src->root, "/proc/pressure/memory", 1u << 12, NULL);
    out->has_system_psi = text && hw_psi_parse(text, &out->system_psi);
    free(text);
    text = hw_read_file(src->root, "/proc/meminfo", 1u << 20, NULL);
    hw_memory m;
    memset(&m, 0, sizeof m);
    if (text && hw_meminfo_parse(text, &m, NULL)) {
        out->mem_total = m.total;
        out->mem_available = m.available;
    }
    free(text);
}

bool hw_pressure_read(const hw_pressure_src *src, hw_pressure *out)
{
    memset(out, 0, sizeof *out);
    read_cgroup(src, out);
    read_system(src, out);
    out->headroom = out->mem_total ? out->mem_available : HW_NO_LIMIT;
    out->limit = out->mem_total ? out->mem_total : HW_NO_LIMIT;
    const hw_cgroup *cg = &out->cgroup;
    if (out->has_cgroup && cg->limit != HW_NO_LIMIT && cg->headroom <= out->headroom) {
        out->headroom = cg->headroom;
        out->limit = cg->limit;
    }
    return out->has_cgroup || out->mem_total;
}
