/* Reading /proc and /sys files through the probe's root prefix. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hw/hw_internal.h"

bool hw_path(char *buf, size_t len, const char *root, const char *path)
{
    int n = snprintf(buf, len, "%s%s", root ? root : "", path);
    return n >= 0 && (size_t)n < len;
}

/* Reads fd to the end into a growing buffer; NULL with errno on failure. */
static char *read_fd(int fd, size_t max, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = cap <= max ? realloc(buf, cap * 2) : NULL;
            if (!nb) {
                int e = cap > max ? EFBIG : ENOMEM;
                free(buf);
                errno = e;
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            errno = e;
            return NULL;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    if (!buf) errno = ENOMEM;
    else *len = n;
    return buf;
}

char *hw_read_file(const char *root, const char *path, size_t max, size_t *len)
{
    char full[HW_PATH_MAX * 2];
    if (!hw_path(full, sizeof full, root, path)) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    int fd = open(full, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    size_t n = 0;
    char *buf = read_fd(fd, max, &n);
    int e = errno;
    close(fd);
    if (buf && n > max) {
        free(buf);
        buf = NULL;
        e = EFBIG;
    }
    errno = e;
    if (!buf) return NULL;
    buf[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (buf[i] == '\0') buf[i] = ' ';
    if (len) *len = n;
    return buf;
}

bool hw_read_line(const char *root, const char *path, char *buf, size_t len)
{
    char *text = hw_read_file(root, path, 1u << 16, NULL);
    if (!text) return false;
    char *nl = strchr(text, '\n');
    if (nl) *nl = '\0';
    hw_copy_clean(buf, len, text);
    free(text);
    return true;
}

bool hw_read_u64(const char *root, const char *path, uint64_t *out)
{
    char line[64];
    if (!hw_read_line(root, path, line, sizeof line)) return false;
    return hw_parse_u64(line, out);
}

bool hw_exists(const char *root, const char *path)
{
    char full[HW_PATH_MAX * 2];
    return hw_path(full, sizeof full, root, path) && access(full, F_OK) == 0;
}
