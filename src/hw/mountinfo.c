/* /proc/self/mountinfo (proc(5)):
 *   36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue
 * id, parent id, major:minor, root, mount point, options, optional fields
 * ending with "-", then filesystem type, source and superblock options.
 * Blanks, tabs, newlines and backslashes in paths are octal escapes (\040). */
#include <stdlib.h>
#include <string.h>

#include "hw/hw_internal.h"

#define MAX_FIELDS 64

/* Copies a field, decoding \ooo escapes; false when it does not fit. */
static bool unescape(char *dst, size_t len, const char *src)
{
    size_t n = 0;
    while (*src) {
        char c = *src++;
        if (c == '\\' && src[0] >= '0' && src[0] <= '3' && src[1] >= '0' && src[1] <= '7' &&
            src[2] >= '0' && src[2] <= '7') {
            c = (char)((src[0] - '0') * 64 + (src[1] - '0') * 8 + (src[2] - '0'));
            src += 3;
        }
        if (n + 1 >= len) return false;
        dst[n++] = c;
    }
    dst[n] = '\0';
    return true;
}

static bool parse_line(char *line, hw_mount *m)
{
    char *fields[MAX_FIELDS];
    int n = 0;
    for (char *save = NULL, *tok = strtok_r(line, " \t", &save); tok && n < MAX_FIELDS;
         tok = strtok_r(NULL, " \t", &save))
        fields[n++] = tok;
    int dash = -1;
    for (int i = 6; i < n; i++)
        if (!strcmp(fields[i], "-")) {
            dash = i;
            break;
        }
    if (dash < 0 || dash + 2 >= n) return false;
    uint64_t major, minor;
    const char *end;
    if (!hw_parse_u64_prefix(fields[2], &major, &end) || *end != ':' ||
        !hw_parse_u64(end + 1, &minor) || major > 0xfffff || minor > 0xfffff)
        return false;
    m->major = (unsigned)major;
    m->minor = (unsigned)minor;
    if (fields[3][0] != '/' || fields[4][0] != '/') return false;
    if (!unescape(m->root, sizeof m->root, fields[3]) ||
        !unescape(m->mount_point, sizeof m->mount_point, fields[4]) ||
        !unescape(m->fs_type, sizeof m->fs_type, fields[dash + 1]) ||
        !unescape(m->source, sizeof m->source, fields[dash + 2]))
        return false;
    m->super_opts[0] = '\0';
    if (dash + 3 < n && !unescape(m->super_opts, sizeof m->super_opts, fields[dash + 3]))
        m->super_opts[0] = '\0';
    return true;
}

int hw_mountinfo_parse(const char *text, bool (*fn)(const hw_mount *m, void *ctx), void *ctx,
                       int *bad)
{
    int parsed = 0;
    if (bad) *bad = 0;
    hw_mount *m = malloc(sizeof *m);
    if (!m) return 0;
    for (const char *line = text; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char buf[4 * HW_PATH_MAX];
        if (len == 0) {
            /* blank line */
        } else if (len < sizeof buf) {
            memcpy(buf, line, len);
            buf[len] = '\0';
            memset(m, 0, sizeof *m);
            if (parse_line(buf, m)) {
                parsed++;
                if (!fn(m, ctx)) break;
            } else if (bad) {
                (*bad)++;
            }
        } else if (bad) {
            (*bad)++;
        }
        line = nl ? nl + 1 : NULL;
    }
    free(m);
    return parsed;
}

typedef struct find_ctx {
    const char *path;
    hw_mount *best;
    size_t best_len;
    bool found;
} find_ctx;

/* Is mount point mp a directory prefix of path? */
static bool covers(const char *mp, const char *path)
{
    size_t n = strlen(mp);
    if (n == 1 && mp[0] == '/') return path[0] == '/';
    return !strncmp(mp, path, n) && (path[n] == '/' || path[n] == '\0');
}

static bool find_cb(const hw_mount *m, void *vctx)
{
    find_ctx *c = vctx;
    size_t n = strlen(m->mount_point);
    if (covers(m->mount_point, c->path) && (!c->found || n >= c->best_len)) {
        *c->best = *m;
        c->best_len = n;
        c->found = true;
    }
    return true;
}

bool hw_mountinfo_find(const char *text, const char *path, hw_mount *out)
{
    find_ctx c = {path, out, 0, false};
    hw_mountinfo_parse(text, find_cb, &c, NULL);
    return c.found;
}
