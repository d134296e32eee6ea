/* The watchdog without a cgroup (issue 15): PSI triggers where the kernel
 * registers them (else the 100 ms sampling), and a run under system-wide
 * pressure from another process. */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hw/hw.h"
#include "hw/hw_internal.h"
#include "run_helpers.h"
#include "test.h"

#define MiB (1ull << 20)


/* The live system's trigger: registered where /proc/pressure/memory (or
 * the cgroup v2 memory.pressure) takes one, and then poll() on it works;
 * skipped loudly where the kernel has no PSI or refuses triggers. A staged
 * root never gets one (the watchdog samples instead). */
TEST(test_watchdog_psi_trigger)
{
    hw_pressure_src src;
    hw_psi_trigger t;
    char why[1200] = "";
    hw_pressure_open("/some/fixture/root", &src);
    CHECK(!hw_psi_trigger_open(&src, 200000, 2000000, &t, why, sizeof why) && t.fd < 0 &&
              strstr(why, "/some/fixture/root"),
          " %s", why);
    hw_pressure_open("", &src);
    if (!hw_psi_trigger_open(&src, 200000, 1000000, &t, why, sizeof why)) {
        test_skip("no PSI trigger can be registered here (%s): the watchdog samples every 100 ms", why);
        return;
    }
    printf("    PSI trigger on %s\n", t.path);
    struct pollfd p = {.fd = t.fd, .events = POLLPRI};
    CHECK(t.fd >= 0 && poll(&p, 1, 0) >= 0 && !(p.revents & (POLLERR | POLLNVAL)), " revents %d", p.revents);
    hw_psi_trigger_close(&t);
    CHECK(t.fd == -1);
}

/* A staged root: DIR/proc/meminfo (rewritten whole, by rename, so the
 * watchdog never reads half a file) and DIR/proc/pressure/memory. */
static bool stage_meminfo(const char *dir, uint64_t total, uint64_t avail)
{
    char tmp[1200], path[1200];
    snprintf(tmp, sizeof tmp, "%s/proc/meminfo.tmp", dir);
    snprintf(path, sizeof path, "%s/proc/meminfo", dir);
    FILE *f = fopen(tmp, "w");
    if (!f) return false;
    fprintf(f, "MemTotal: %llu kB\nMemFree: %llu kB\nMemAvailable: %llu kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
            (unsigned long long)(total >> 10), (unsigned long long)(avail >> 10), (unsigned long long)(avail >> 10));
    return !fclose(f) && !rename(tmp, path);
}

static uint64_t mem_available(void)
{
    char *text = hw_read_file("", "/proc/meminfo", 1u << 20, NULL);
    hw_memory m;
    memset(&m, 0, sizeof m);
    uint64_t a = text && hw_meminfo_parse(text, &m, NULL) ? m.available : 0;
    free(text);
    return a;
}

/* The other process: after `delay` it takes `real` bytes of real memory
 * gradually (4 MiB every 10 ms) and, in step, lowers the staged
 * MemAvailable from `high` to `low`; holds both for `hold_s`, then
 * restores the staged figure (the run grows back) and waits to be killed. */
static void hog(const char *dir, uint64_t total, uint64_t high, uint64_t low, uint64_t real, double hold_s)
{
    usleep(300000); /* the run has loaded */
    uint8_t *mem = real ? mmap(NULL, real, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) : NULL;
    if (mem == MAP_FAILED) _exit(4);
    int steps = 20;
    for (int i = 1; i <= steps; i++) {
        uint64_t lo = real * (uint64_t)(i - 1) / (uint64_t)steps, hi = real * (uint64_t)i / (uint64_t)steps;
        if (mem && hi > lo) memset(mem + lo, 1, hi - lo);
        if (!stage_meminfo(dir, total, high - (high - low) * (uint64_t)i / (uint64_t)steps)) _exit(5);
        usleep(10000);
    }
    usleep((useconds_t)(hold_s * 1e6));
    if (!stage_meminfo(dir, total, high)) _exit(5);
    for (;;) pause();
}

/* System-wide pressure, no cgroup. A resident run while another process
 * allocates: strata gives memory back, finishes with the unpressured text,
 * and nobody is OOM-killed.
 *
 * Why staged: on a machine with 20 GiB available, making MemAvailable
 * really fall to strata's low-water mark means filling ~20 GiB, which
 * would endanger everything else on the machine (and CI's 2-core 24 GiB
 * runner). So the hog takes a small, bounded amount of real memory
 * (MemAvailable / 16, at most 128 MiB: it shows that the run and the hog
 * coexist and neither is killed), and the pressure the watchdog sees comes
 * from a staged /proc/meminfo (STRATA_PRESSURE_ROOT) that the hog lowers
 * in step, the same samples the live system would give: the decision,
 * the shrink, the safe points and the grow back are the real ones. */
TEST(test_watchdog_system_wide_hog)
{
    char mpath[1024], root[1100], sub[1200], errpath[1200], cmd[8192], args[2048], *ref = NULL, *out = NULL;
    const char *dir = test_tmpdir();
    if (!test_reference_run("sys16.gguf", 17, "-p \"a b c d\" -n 1000 --temp 0 --ignore-eos -t 1 --mem 256M", mpath,
                            sizeof mpath, args, sizeof args, &ref))
        return;
    int rc;

    uint64_t avail = mem_available(), real = avail / 16 < 128 * MiB ? avail / 16 : 128 * MiB;
    snprintf(root, sizeof root, "%s/root", dir);
    snprintf(sub, sizeof sub, "%s/proc/pressure", root);
    char mk[1300];
    snprintf(mk, sizeof mk, "mkdir -p %s", sub);
    REQUIRE(system(mk) == 0);
    snprintf(sub, sizeof sub, "%s/proc/pressure/memory", root);
    FILE *f = fopen(sub, "w");
    REQUIRE(f);
    fputs("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", f);
    fclose(f);
    const uint64_t total = 24ull << 30, high = 8ull << 30, low = 64 * MiB; /* low water is 256 MiB here */
    REQUIRE(stage_meminfo(root, total, high));

    pid_t h = fork();
    if (h == 0) hog(root, total, high, low, real, 0.5);
    snprintf(errpath, sizeof errpath, "%s/stderr.txt", dir);
    snprintf(cmd, sizeof cmd, "STRATA_PRESSURE_ROOT=%s %s %s 2>%s", root, test_release_bin(), args, errpath);
    bool hog_alive;
    rc = test_run_beside(cmd, h, &out, &hog_alive);
    char *log = hw_read_file("", errpath, 1u << 20, NULL);
    CHECK(rc == 0 && hog_alive, " rc %d, hog alive %d: %s", rc, hog_alive, log);
    CHECK(out && !strcmp(out, ref), " text differs:\n--- unpressured\n%s\n--- pressured\n%s", ref, out);
    const char *line = log ? strstr(log, "strata: memory pressure: moved") : NULL;
    CHECK(line, " no shrink happened: %s", log);
    CHECK(log && strstr(log, "back to memory"), " no grow after the pressure ended: %s", log);
    printf("    the hog took %llu MiB of real memory\n", (unsigned long long)(real / MiB));
    for (; line; line = strstr(line + 1, "strata: memory pressure:"))
        printf("    %.*s\n", (int)strcspn(line, "\n"), line);
    free(log);
    free(ref);
    free(out);
}
