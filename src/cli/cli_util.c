#include "cli/cli_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "strata.h"
#include "util/fmt.h"

bool cli_profile_path(const char *cmd, const char *flag, char *buf, size_t cap)
{
    if (flag) {
        if ((size_t)snprintf(buf, cap, "%s", flag) >= cap) {
            fprintf(stderr, "strata %s: --profile %s: path too long\n", cmd, flag);
            return false;
        }
        return true;
    }
    strata_error err = {0};
    if (strata_profile_default_path(buf, cap, &err) != STRATA_OK) {
        fprintf(stderr, "strata %s: %s\n", cmd, err.message);
        return false;
    }
    return true;
}

const char *cli_opt_value(const char *cmd, int argc, char **argv, int *i, const char *name, bool *bad)
{
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n)) return NULL;
    if (a[n] == '=') {
        if (!a[n + 1]) {
            fprintf(stderr, "strata %s: %s needs a value\n", cmd, name);
            *bad = true;
        }
        return a + n + 1;
    }
    if (a[n]) return NULL;
    if (*i + 1 >= argc || !argv[*i + 1][0]) {
        fprintf(stderr, "strata %s: %s needs a value\n", cmd, name);
        *bad = true;
        return "";
    }
    return argv[++*i];
}

bool cli_clamp_budget(const char *cmd, const cli_memory *mem, bool strict, uint64_t *budget)
{
    if (!mem->usable || *budget <= mem->usable) return true;
    char want[32], got[32], limit[32], held[32], why[128];
    fmt_bytes(*budget, want, sizeof want);
    fmt_bytes(mem->usable, got, sizeof got);
    if (mem->cgroup_limit)
        snprintf(why, sizeof why, "its memory cgroup's limit of %s, %s of it in use",
                 fmt_bytes(mem->cgroup_limit, limit, sizeof limit), fmt_bytes(mem->cgroup_held, held, sizeof held));
    else
        snprintf(why, sizeof why, "the memory available on this machine");
    if (strict) {
        fprintf(stderr, "strata %s: --mem %s is more than the %s this process can use (%s); lower --mem\n", cmd,
                want, got, why);
        return false;
    }
    fprintf(stderr, "strata %s: warning: --mem %s is more than the %s this process can use (%s); using %s "
            "(--strict-mem refuses instead)\n", cmd, want, got, why, got);
    *budget = mem->usable;
    return true;
}

/* A regular file (or a pipe) of at most max bytes. */
static const char *text_file_problem(FILE *fp, size_t max)
{
    struct stat st;
    if (fstat(fileno(fp), &st) != 0) return strerror(errno);
    if (S_ISDIR(st.st_mode)) return "is a directory";
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > max) return "too large";
    return NULL;
}

char *cli_read_text_file(const char *cmd, const char *flag, const char *path, size_t max, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "strata %s: %s %s: %s\n", cmd, flag, path, strerror(errno));
        return NULL;
    }
    const char *problem = text_file_problem(fp, max);
    char *buf = problem ? NULL : malloc(max + 1); /* [max + 1]: one byte more tells a pipe is too long */
    size_t n = buf ? fread(buf, 1, max + 1, fp) : 0;
    if (!problem && !buf) problem = "out of memory";
    else if (!problem && ferror(fp)) problem = "read error";
    else if (!problem && n > max) problem = "too large"; /* a pipe */
    fclose(fp);
    if (problem) {
        char big[48];
        if (!strcmp(problem, "too large")) snprintf(big, sizeof big, "larger than %zu MiB", max >> 20);
        fprintf(stderr, "strata %s: %s %s: %s\n", cmd, flag, path, strcmp(problem, "too large") ? problem : big);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}
