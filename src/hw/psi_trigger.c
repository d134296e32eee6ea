/* PSI triggers (Documentation/accounting/psi.rst): writing "some STALL
 * WINDOW" to a pressure file registers a trigger on that open file; poll()
 * then reports POLLPRI when tasks stalled at least STALL microseconds
 * within a WINDOW. The watchdog (store/watchdog.c) sleeps in poll() on it,
 * so a stall wakes it at once instead of at its next sample. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "hw/hw_internal.h"

#define TWO_SECONDS_US 2000000u

static bool register_on(const char *path, uint32_t stall_us, uint32_t window_us, hw_psi_trigger *out, char *why,
                        size_t cap)
{
    int fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, cap, "%s: %s", path, strerror(errno));
        return false;
    }
    /* The newline ends the record (this kernel refused the bare form). */
    char rec[64];
    int n = snprintf(rec, sizeof rec, "some %u %u\n", stall_us, window_us);
    if (write(fd, rec, (size_t)n) != n) {
        snprintf(why, cap, "%s: registering a trigger: %s", path, strerror(errno));
        close(fd);
        return false;
    }
    out->fd = fd;
    snprintf(out->path, sizeof out->path, "%s", path);
    return true;
}

bool hw_psi_trigger_open(const hw_pressure_src *src, uint32_t stall_us, uint32_t window_us, hw_psi_trigger *out,
                         char *why, size_t cap)
{
    out->fd = -1;
    out->path[0] = '\0';
    if (src->root[0]) {
        snprintf(why, cap, "the pressure files are read from %s, not the live system", src->root);
        return false;
    }
    window_us = (window_us + TWO_SECONDS_US - 1) / TWO_SECONDS_US * TWO_SECONDS_US;
    if (stall_us == 0 || stall_us > window_us) stall_us = window_us / 10;
    char path[HW_PATH_MAX + 32];
    if (src->has_cgroup && src->loc.version == 2) {
        snprintf(path, sizeof path, "%s/memory.pressure", src->loc.dir);
        if (register_on(path, stall_us, window_us, out, why, cap)) return true;
    }
    return register_on("/proc/pressure/memory", stall_us, window_us, out, why, cap);
}

void hw_psi_trigger_close(hw_psi_trigger *t)
{
    if (t->fd >= 0) close(t->fd);
    t->fd = -1;
}
