/* Memory: /proc/meminfo, transparent huge pages, and what strata may use. */
#include <stdlib.h>
#include <string.h>

#include "hw/hw_internal.h"

/* "MemTotal:       24684092 kB" -> bytes. */
static bool meminfo_value(const char *val, uint64_t *out)
{
    const char *end;
    uint64_t v;
    if (!hw_parse_u64_prefix(val, &v, &end)) return false;
    while (*end == ' ' || *end == '\t') end++;
    if (!strncmp(end, "kB", 2)) {
        end += 2;
        if (!hw_mul_u64(v, 1024, &v)) return false;
    }
    while (*end == ' ' || *end == '\t' || *end == '\r') end++;
    if (*end && *end != '\n') return false;
    *out = v;
    return true;
}

typedef struct meminfo_raw {
    uint64_t v[7];     /* the keys below, in order */
    bool found[7];
    int bad;
} meminfo_raw;

static const char *const meminfo_keys[7] = {"MemTotal", "MemAvailable", "SwapTotal", "SwapFree",
                                            "MemFree",  "Buffers",      "Cached"};

static void meminfo_line(const char *line, const char *colon, meminfo_raw *raw)
{
    size_t klen = (size_t)(colon - line);
    for (int i = 0; i < 7; i++) {
        if (strlen(meminfo_keys[i]) != klen || strncmp(line, meminfo_keys[i], klen)) continue;
        uint64_t v = 0;
        if (meminfo_value(colon + 1, &v)) {
            raw->v[i] = v;
            raw->found[i] = true;
        } else if (i < 4) {
            raw->bad++;
        }
    }
}

bool hw_meminfo_parse(const char *text, hw_memory *m, hw_profile *p)
{
    meminfo_raw raw;
    memset(&raw, 0, sizeof raw);
    for (const char *line = text; line && *line;) {
        const char *colon = strchr(line, ':'), *nl = strchr(line, '\n');
        if (colon && (!nl || colon < nl)) meminfo_line(line, colon, &raw);
        line = nl ? nl + 1 : NULL;
    }
    if (raw.bad && p) hw_warn(p, "/proc/meminfo: %d malformed value(s) ignored", raw.bad);
    m->total = m->available = 0;
    if (!raw.found[0]) {
        if (p) hw_warn(p, "/proc/meminfo: no valid MemTotal: memory size unknown");
        return false;
    }
    m->total = raw.v[0];
    m->available = raw.v[1];
    m->swap_total = raw.v[2];
    m->swap_free = raw.v[3];
    if (!raw.found[1]) {
        /* Kernels before 3.14: estimate as free + buffers + page cache. */
        uint64_t est = raw.v[4];
        for (int i = 5; i < 7; i++) est = est > UINT64_MAX - raw.v[i] ? UINT64_MAX : est + raw.v[i];
        m->available = est;
        if (p) hw_warn(p, "/proc/meminfo: no MemAvailable: estimated from MemFree+Buffers+Cached");
    }
    if (m->available > m->total) {
        if (p) hw_warn(p, "/proc/meminfo: MemAvailable above MemTotal: clamped");
        m->available = m->total;
    }
    if (m->swap_free > m->swap_total) {
        if (p) hw_warn(p, "/proc/meminfo: SwapFree above SwapTotal: clamped");
        m->swap_free = m->swap_total;
    }
    return true;
}

bool hw_thp_parse(const char *text, char *out, size_t len)
{
    const char *open = strchr(text, '[');
    const char *close = open ? strchr(open, ']') : NULL;
    if (!open || !close || close == open + 1 || (size_t)(close - open - 1) >= len) return false;
    for (const char *c = open + 1; c < close; c++)
        if (!((*c >= 'a' && *c <= 'z') || *c == '+')) return false;
    memcpy(out, open + 1, (size_t)(close - open - 1));
    out[close - open - 1] = '\0';
    return true;
}

/* A margin for everything else on the machine: a tenth of what is usable,
 * at least 256 MiB, but never more than a quarter (a 300 MiB container
 * keeps 225 MiB, not 44). */
uint64_t hw_default_budget(uint64_t usable)
{
    uint64_t floor = usable / 4 < (256ull << 20) ? usable / 4 : (256ull << 20);
    uint64_t margin = usable / 10 > floor ? usable / 10 : floor;
    return usable - margin;
}

bool hw_memory_cgroup_binds(const hw_memory *m)
{
    const hw_cgroup *cg = &m->cgroup;
    return cg->version && cg->limit != HW_NO_LIMIT && cg->headroom <= m->available;
}

void hw_memory_update_usable(hw_memory *m)
{
    m->usable = m->available;
    if (m->cgroup.version && m->cgroup.headroom != HW_NO_LIMIT && m->cgroup.headroom < m->usable)
        m->usable = m->cgroup.headroom;
}

void hw_memory_probe(const char *root, hw_memory *m, hw_profile *p)
{
    char *text = hw_read_file(root, "/proc/meminfo", 1u << 20, NULL);
    if (text) {
        hw_meminfo_parse(text, m, p);
        free(text);
    } else {
        hw_warn(p, "cannot read /proc/meminfo: memory size unknown");
    }
    text = hw_read_file(root, "/sys/kernel/mm/transparent_hugepage/enabled", 4096, NULL);
    if (!text || !hw_thp_parse(text, m->thp, sizeof m->thp)) {
        m->thp[0] = '\0';
        hw_warn(p, "transparent huge page mode unknown (/sys/kernel/mm/transparent_hugepage/enabled)");
    }
    free(text);
    hw_cgroup_probe(root, &m->cgroup, p);
    hw_memory_update_usable(m);
}
