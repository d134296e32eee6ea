/* Runs a GPU library call in a child process. Vendor drivers loaded by the
 * Vulkan loader or NVML may crash, hang, start threads or keep allocations
 * forever; in a child none of that reaches strata: the child writes its
 * result into a pipe and leaves with _exit (no atexit handlers), and the
 * parent gives up after a timeout. Call only while single-threaded. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hw/hw_internal.h"

static void child(int fd, void (*fn)(void *ctx, void *out), void *ctx, void *out, size_t size)
{
    fn(ctx, out);
    const char *b = out;
    size_t done = 0;
    while (done < size) {
        ssize_t n = write(fd, b + done, size - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) _exit(1);
        done += (size_t)n;
    }
    _exit(0);
}

/* Reads exactly size bytes before the deadline; false on EOF, error or timeout. */
static bool read_all(int fd, void *out, size_t size, int timeout_ms, bool *timed_out)
{
    char *b = out;
    size_t done = 0;
    double deadline = hw_now() + timeout_ms / 1000.0;
    while (done < size) {
        int left = (int)((deadline - hw_now()) * 1000.0);
        if (left <= 0) {
            *timed_out = true;
            return false;
        }
        struct pollfd pfd = {fd, POLLIN, 0};
        int r = poll(&pfd, 1, left);
        if (r < 0 && errno == EINTR) continue;
        if (r == 0) {
            *timed_out = true;
            return false;
        }
        if (r < 0) return false;
        ssize_t n = read(fd, b + done, size - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        done += (size_t)n;
    }
    return true;
}

bool hw_run_isolated(void (*fn)(void *ctx, void *out), void *ctx, void *out, size_t size,
                     int timeout_ms, char *why, size_t why_len)
{
    int fds[2];
    if (pipe(fds) != 0) {
        snprintf(why, why_len, "pipe: %s", strerror(errno));
        return false;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, why_len, "fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return false;
    }
    if (pid == 0) {
        close(fds[0]);
        child(fds[1], fn, ctx, out, size);
    }
    close(fds[1]);
    bool timed_out = false;
    bool ok = read_all(fds[0], out, size, timeout_ms, &timed_out);
    close(fds[0]);
    if (!ok) kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!ok) {
        if (timed_out) snprintf(why, why_len, "gave up after %d s", timeout_ms / 1000);
        else if (WIFSIGNALED(status)) snprintf(why, why_len, "crashed (signal %d)", WTERMSIG(status));
        else snprintf(why, why_len, "failed (exit status %d)", WEXITSTATUS(status));
    }
    return ok;
}
