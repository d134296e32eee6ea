/* Storage where models live: filesystem, backing device, rotational or not,
 * free space, and whether O_DIRECT works there. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "hw/hw_internal.h"

#define ODIRECT_BLOCK 4096

/* Reads the first block of an existing file with O_DIRECT. */
static hw_tristate odirect_read_file(const char *file, char *why, size_t why_len)
{
    int fd = open(file, O_RDONLY | O_DIRECT | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, why_len, "O_DIRECT open of %s fails: %s", file, strerror(errno));
        return errno == EINVAL ? HW_NO : HW_UNKNOWN;
    }
    void *buf = NULL;
    hw_tristate result = HW_UNKNOWN;
    if (posix_memalign(&buf, ODIRECT_BLOCK, ODIRECT_BLOCK) == 0) {
        if (pread(fd, buf, ODIRECT_BLOCK, 0) >= 0) {
            result = HW_YES;
        } else {
            snprintf(why, why_len, "O_DIRECT read of %s fails: %s", file, strerror(errno));
            result = errno == EINVAL ? HW_NO : HW_UNKNOWN;
        }
        free(buf);
    }
    close(fd);
    return result;
}

hw_tristate hw_odirect_works(const char *dir, char *why, size_t why_len)
{
    struct stat sb;
    if (stat(dir, &sb) == 0 && S_ISREG(sb.st_mode)) return odirect_read_file(dir, why, why_len);
    char tmpl[HW_PATH_MAX + 32];
    if (snprintf(tmpl, sizeof tmpl, "%s/.strata-odirect-XXXXXX", dir) >= (int)sizeof tmpl) {
        snprintf(why, why_len, "path too long");
        return HW_UNKNOWN;
    }
    int fd = mkstemp(tmpl);
    if (fd < 0) {
        snprintf(why, why_len, "cannot create a file in %s: %s", dir, strerror(errno));
        return HW_UNKNOWN;
    }
    close(fd);
    hw_tristate result = HW_NO;
    void *buf = NULL;
    fd = open(tmpl, O_RDWR | O_DIRECT | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, why_len, "O_DIRECT open fails in %s: %s", dir, strerror(errno));
    } else if (posix_memalign(&buf, ODIRECT_BLOCK, ODIRECT_BLOCK) != 0) {
        buf = NULL;
        snprintf(why, why_len, "out of memory");
        result = HW_UNKNOWN;
    } else {
        memset(buf, 0x5a, ODIRECT_BLOCK);
        if (pwrite(fd, buf, ODIRECT_BLOCK, 0) != ODIRECT_BLOCK)
            snprintf(why, why_len, "O_DIRECT write fails in %s: %s", dir, strerror(errno));
        else if (pread(fd, buf, ODIRECT_BLOCK, 0) != ODIRECT_BLOCK)
            snprintf(why, why_len, "O_DIRECT read fails in %s: %s", dir, strerror(errno));
        else
            result = HW_YES;
    }
    if (fd >= 0) close(fd);
    free(buf);
    unlink(tmpl);
    return result;
}

/* The block device behind major:minor, via /sys/dev/block/M:m (a partition
 * takes its rotational flag from the whole disk one directory up). */
static void block_device(const char *root, unsigned major, unsigned minor, hw_storage *st)
{
    char base[64], path[128], line[64];
    snprintf(base, sizeof base, "/sys/dev/block/%u:%u", major, minor);
    char full[HW_PATH_MAX * 2];
    if (hw_path(full, sizeof full, root, base)) {
        char target[HW_PATH_MAX];
        ssize_t n = readlink(full, target, sizeof target - 1);
        if (n > 0) {
            target[n] = '\0';
            const char *name = strrchr(target, '/');
            hw_copy_clean(st->device, sizeof st->device, name ? name + 1 : target);
        }
    }
    uint64_t rot;
    snprintf(path, sizeof path, "%s/queue/rotational", base);
    bool ok = hw_read_u64(root, path, &rot);
    if (!ok) {
        snprintf(path, sizeof path, "%s/partition", base);
        if (hw_read_line(root, path, line, sizeof line)) {
            snprintf(path, sizeof path, "%s/../queue/rotational", base);
            ok = hw_read_u64(root, path, &rot);
        }
    }
    if (ok && rot <= 1) st->rotational = rot ? HW_YES : HW_NO;
}

/* realpath of the storage path; a file is described by its directory. */
static bool resolve(const char *path, hw_storage *st, char *dir, size_t len, hw_profile *p)
{
    char real[PATH_MAX];
    if (!realpath(path, real)) return false;
    if (!hw_copy_str(st->path, sizeof st->path, real) || !hw_copy_str(dir, len, real)) {
        errno = ENAMETOOLONG;
        return false;
    }
    struct stat sb;
    if (stat(real, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir) *slash = '\0';
        else snprintf(dir, len, "/");
    }
    return true;
}

static void space(const char *dir, hw_storage *st, hw_profile *p)
{
    struct statvfs vfs;
    if (statvfs(dir, &vfs) != 0) {
        hw_warn(p, "statvfs %s: %s: free space unknown", dir, strerror(errno));
        return;
    }
    uint64_t fr = vfs.f_frsize ? vfs.f_frsize : vfs.f_bsize;
    if (!hw_mul_u64(vfs.f_bavail, fr, &st->free_bytes) ||
        !hw_mul_u64(vfs.f_blocks, fr, &st->total_bytes)) {
        st->free_bytes = st->total_bytes = 0;
        hw_warn(p, "statvfs %s: sizes out of range", dir);
    }
}

void hw_storage_probe(const char *root, const char *path, bool live, bool odirect_test,
                      hw_storage *st, hw_profile *p)
{
    memset(st, 0, sizeof *st);
    st->rotational = HW_UNKNOWN;
    st->o_direct = HW_UNKNOWN;
    char dir[PATH_MAX];
    if (live) {
        if (!resolve(path, st, dir, sizeof dir, p)) {
            hw_warn(p, "storage path %s: %s", path, strerror(errno));
            return;
        }
    } else {
        hw_copy_str(st->path, sizeof st->path, path);
        hw_copy_str(dir, sizeof dir, path);
    }
    char *text = hw_read_file(root, "/proc/self/mountinfo", HW_FILE_MAX, NULL);
    hw_mount *m = malloc(sizeof *m);
    if (text && m && hw_mountinfo_find(text, dir, m)) {
        hw_copy_str(st->mount_point, sizeof st->mount_point, m->mount_point);
        hw_copy_clean(st->fs_type, sizeof st->fs_type, m->fs_type);
        if (m->major) block_device(root, m->major, m->minor, st);
        if (!st->device[0]) {
            const char *name = strncmp(m->source, "/dev/", 5) ? m->source : m->source + 5;
            hw_copy_clean(st->device, sizeof st->device, name);
        }
    } else {
        hw_warn(p, "no mount found for %s in /proc/self/mountinfo: filesystem unknown", dir);
    }
    free(m);
    free(text);
    if (!live) return;
    space(dir, st, p);
    if (odirect_test) {
        char why[HW_WARNING_MAX - 40] = "";
        st->o_direct = hw_odirect_works(st->path, why, sizeof why);
        if (st->o_direct != HW_YES) hw_warn(p, "O_DIRECT: %s", why);
    }
}
