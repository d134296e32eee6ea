#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgroup_helpers.h"
#include "hw/hw.h"
#include "hw/hw_internal.h"

typedef struct cg_mount {
    int version;
    char dir[HW_PATH_MAX];
    char root[HW_PATH_MAX];
} cg_mount;

static bool cg_mount_cb(const hw_mount *m, void *ctx)
{
    cg_mount *c = ctx;
    bool v1 = !strcmp(m->fs_type, "cgroup") && strstr(m->super_opts, "memory");
    bool v2 = !strcmp(m->fs_type, "cgroup2");
    if ((c->version == 1 && v1) || (c->version == 2 && v2)) {
        snprintf(c->dir, sizeof c->dir, "%s", m->mount_point);
        snprintf(c->root, sizeof c->root, "%s", m->root);
        return false;
    }
    return true;
}

/* Our memory cgroup's directory, or false with why. */
static bool own_cgroup_dir(int *version, char *dir, size_t len, char *why, size_t why_len)
{
    char *cg = hw_read_file("", "/proc/self/cgroup", 1 << 20, NULL);
    char *mi = hw_read_file("", "/proc/self/mountinfo", HW_FILE_MAX, NULL);
    bool ok = false;
    char path[HW_PATH_MAX] = "";
    *version = 0;
    for (char *line = cg ? strtok(cg, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c2 = '\0';
        if (strstr(c1 + 1, "memory")) {
            *version = 1;
            snprintf(path, sizeof path, "%s", c2 + 1);
            break;
        }
        if (line[0] == '0' && c1 == line + 1 && c1 + 1 == c2) {
            *version = 2;
            snprintf(path, sizeof path, "%s", c2 + 1);
        }
    }
    cg_mount m = {.version = *version};
    if (!*version) snprintf(why, why_len, "no memory cgroup in /proc/self/cgroup");
    else if (mi) hw_mountinfo_parse(mi, cg_mount_cb, &m, NULL);
    if (*version && !m.dir[0]) snprintf(why, why_len, "cgroup v%d hierarchy not mounted", *version);
    if (*version && m.dir[0]) {
        if (strcmp(m.root, "/")) snprintf(why, why_len, "cgroup namespace (mount root %.200s)", m.root);
        else {
            snprintf(dir, len, "%.500s%.500s", m.dir, strcmp(path, "/") ? path : "");
            ok = true;
        }
    }
    free(cg);
    free(mi);
    return ok;
}

static bool write_file(const char *dir, const char *name, const char *text)
{
    char path[2 * HW_PATH_MAX];
    snprintf(path, sizeof path, "%.1100s/%.64s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return false;
    bool ok = fputs(text, f) >= 0;
    return (fclose(f) == 0) && ok;
}

bool test_cgroup_create(uint64_t limit, int *version, char *dir, size_t dir_len, char *name, size_t name_len,
                        char *why, size_t why_len)
{
    if (geteuid() != 0) {
        snprintf(why, why_len, "needs root to create a memory cgroup");
        return false;
    }
    char own[HW_PATH_MAX];
    if (!own_cgroup_dir(version, own, sizeof own, why, why_len)) return false;
    static int seq;
    snprintf(name, name_len, "strata-test-%d-%d", (int)getpid(), ++seq);
    snprintf(dir, dir_len, "%.1100s/%.60s", own, name);
    if (mkdir(dir, 0755) != 0) {
        snprintf(why, why_len, "cgroup v%d %.300s not writable: %s", *version, own, strerror(errno));
        return false;
    }
    char value[32];
    snprintf(value, sizeof value, "%llu\n", (unsigned long long)limit);
    const char *limit_file = *version == 1 ? "memory.limit_in_bytes" : "memory.max";
    if (!write_file(dir, limit_file, value)) {
        snprintf(why, why_len, "cgroup v%d: cannot set %s in %.300s (controller not delegated?)", *version, limit_file,
                 dir);
        rmdir(dir);
        return false;
    }
    if (*version == 1) write_file(dir, "memory.memsw.limit_in_bytes", value); /* no escape to swap, if supported */
    else write_file(dir, "memory.swap.max", "0\n");
    return true;
}

bool test_cgroup_remove(const char *dir)
{
    for (int i = 0; i < 50 && rmdir(dir) != 0 && errno == EBUSY; i++) usleep(20000);
    return access(dir, F_OK) != 0;
}

void test_cgroup_enter_cmd(const char *dir, char *buf, size_t len)
{
    snprintf(buf, len, "echo $$ > \"%s/cgroup.procs\" &&", dir);
}

bool test_cgroup_oom_killed(const char *dir, int version)
{
    char *text = hw_read_file(dir, version == 1 ? "/memory.oom_control" : "/memory.events", 1 << 16, NULL);
    const char *key = "oom_kill ";
    const char *p = text ? strstr(text, key) : NULL;
    bool killed = p && atoi(p + strlen(key)) > 0;
    free(text);
    return killed;
}
