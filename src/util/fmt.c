#include "util/fmt.h"

#include <inttypes.h>
#include <stdio.h>

static const char *scaled(double v, double base, const char *const *units, int n_units, char *buf, size_t cap)
{
    int u = 0;
    while (v >= base && u + 1 < n_units) {
        v /= base;
        u++;
    }
    if (u == 0) snprintf(buf, cap, "%.0f%s%s", v, *units[0] ? " " : "", units[0]);
    else snprintf(buf, cap, "%.*f %s", v < 10 ? 2 : v < 100 ? 1 : 0, v, units[u]);
    return buf;
}

const char *fmt_bytes(uint64_t bytes, char *buf, size_t cap)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    return scaled((double)bytes, 1024.0, units, 7, buf, cap);
}

const char *fmt_count(uint64_t n, char *buf, size_t cap)
{
    static const char *const units[] = {"", "K", "M", "B", "T", "P", "E"};
    return scaled((double)n, 1000.0, units, 7, buf, cap);
}

const char *fmt_rate(double per_s, const char *unit, char *buf, size_t cap)
{
    static const char *const units[] = {"", "K", "M", "G", "T", "P", "E"};
    char n[32];
    snprintf(buf, cap, "%s %s", scaled(per_s > 0 ? per_s : 0, 1000.0, units, 7, n, sizeof n), unit);
    return buf;
}

const char *fmt_bandwidth(double bps, char *buf, size_t cap)
{
    if (bps >= 1e9) snprintf(buf, cap, "%.2f GB/s", bps / 1e9);
    else if (bps >= 1e6) snprintf(buf, cap, "%.1f MB/s", bps / 1e6);
    else snprintf(buf, cap, "%.0f KB/s", bps / 1e3);
    return buf;
}
