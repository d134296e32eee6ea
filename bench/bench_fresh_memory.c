/* Issue 14 (fast load): the rate at which fresh memory arrives, as the
 * weight store's loader gets it (mem_map: an anonymous huge-page mapping
 * faulted in by one thread per CPU, at most 8). A cold load that copies
 * the weights into strata's own memory can go no faster than this, nor
 * than the disk: on bare metal the kernel zeroes pages at 10-20 GB/s and
 * the disk bounds the load; in a virtual machine whose host backs guest
 * memory on first touch (free page reporting, ballooning), this rate can
 * be the lower one, and bench_load.sh's "of the disk" ratio then measures
 * the machine, not the loader. Memory freed a moment before (by a run, or
 * a round of this bench) comes back fast until the kernel has handed it
 * to the host: run it on its own, not right after a load, to see the cold
 * rate.
 * Prints the GB/s of a first mapping of MiB MiB (what a cold load's
 * buffers get: memory the kernel may have handed back to the host), then
 * the median of ROUNDS - 1 more (which reuse what the one before freed).
 * Usage: bench_fresh_memory [MiB] (default 1024). */
#include <stdio.h>
#include <stdlib.h>

#include "store/store_internal.h"
#include "util/clock.h"

#define ROUNDS 5

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    char *end = NULL;
    long mib = argc > 1 ? strtol(argv[1], &end, 10) : 1024;
    if ((end && (end == argv[1] || *end)) || mib < 16 || mib > (1L << 20)) {
        fprintf(stderr, "bench_fresh_memory: MiB '%s': expected 16 to 1048576\n", argc > 1 ? argv[1] : "");
        return 1;
    }
    uint64_t bytes = (uint64_t)mib << 20;
    double rate[ROUNDS];
    printf("fresh memory, %ld MiB mapped and faulted in as the loader does (mem_map): ", mib);
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = clock_seconds();
        void *p = mem_map(bytes);
        double dt = clock_seconds() - t0;
        if (!p) {
            fprintf(stderr, "\nbench_fresh_memory: cannot map %ld MiB\n", mib);
            return 1;
        }
        mem_unmap(p, bytes);
        rate[r] = dt > 0 ? (double)bytes / dt / 1e9 : 0;
    }
    const double *again = rate + 1; /* [ROUNDS - 1] the rounds after the first, sorted */
    qsort(rate + 1, ROUNDS - 1, sizeof *rate, cmp_double);
    int n = ROUNDS - 1;
    double median = n % 2 ? again[n / 2] : (again[n / 2 - 1] + again[n / 2]) / 2;
    printf("first %.2f GB/s, again %.2f GB/s (median of %d)\n", rate[0], median, n);
    return 0;
}
