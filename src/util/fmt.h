/* Human-readable number formatting for tables. */
#ifndef STRATA_UTIL_FMT_H
#define STRATA_UTIL_FMT_H

#include <stddef.h>
#include <stdint.h>

/* "512 B", "1.50 KiB", "3.91 GiB". Returns buf. */
const char *fmt_bytes(uint64_t bytes, char *buf, size_t cap);
/* "812", "24.5 K", "6.74 B" (counts, powers of 1000). Returns buf. */
const char *fmt_count(uint64_t n, char *buf, size_t cap);
/* A rate with SI prefixes (powers of 1000): "812 weights/s", "41.9 G weights/s"
 * for unit "weights/s". Returns buf. */
const char *fmt_rate(double per_s, const char *unit, char *buf, size_t cap);
/* A bandwidth in decimal units, the convention for speeds: "2.68 GB/s",
 * "512.0 MB/s", "20 KB/s". Returns buf. */
const char *fmt_bandwidth(double bytes_per_s, char *buf, size_t cap);

#endif
