/* strata doctor [--path PATH] [--profile FILE]: checks the environment for
 * what makes big-model runs fail or crawl, one PASS/WARN/FAIL line each,
 * with a one-line fix. Exit status 1 when any check fails. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "hw/hw.h"

static const char doctor_usage[] =
    "usage: strata doctor [--path PATH] [--profile FILE]\n"
    "\n"
    "Checks what makes big-model runs fail or crawl: O_DIRECT where models live,\n"
    "the cgroup memory limit, swap, transparent huge pages, the Vulkan loader and\n"
    "drivers, GPU memory used by other processes, free disk space, the CPU's SIMD\n"
    "support and the saved hardware profile. Each line is PASS, WARN or FAIL; the\n"
    "line after a WARN or FAIL is a one-line fix. Exits 1 when a check fails.\n"
    "\n"
    "  --path PATH     directory (or model file) where models live (default: .)\n"
    "  --profile FILE  the saved profile to check (default: as strata detect)\n"
    "  --root DIR      read /proc and /sys below DIR (a captured tree, for tests)\n"
    "  -h, --help      show this help\n";

typedef struct doctor_args {
    const char *path, *profile, *root;
} doctor_args;

static int parse_args(int argc, char **argv, doctor_args *a)
{
    for (int i = 1; i < argc; i++) {
        bool bad = false;
        const char *v;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(doctor_usage, stdout);
            return 1;
        } else if ((v = cli_opt_value("doctor", argc, argv, &i, "--path", &bad))) {
            a->path = v;
        } else if ((v = cli_opt_value("doctor", argc, argv, &i, "--profile", &bad))) {
            a->profile = v;
        } else if ((v = cli_opt_value("doctor", argc, argv, &i, "--root", &bad))) {
            a->root = v;
        } else {
            arg_unknown("doctor", (const char *const[]){doctor_usage, NULL}, argv[i]);
            return 2;
        }
        if (bad) return 2;
    }
    return 0;
}

static int report(const hw_check *checks, int n)
{
    static const char *const level[] = {"PASS", "WARN", "FAIL"};
    int count[3] = {0, 0, 0};
    for (int i = 0; i < n; i++) {
        const hw_check *c = &checks[i];
        count[c->level]++;
        printf("%s  %-11s %s\n", level[c->level], c->name, c->message);
        if (c->level != HW_PASS && c->fix[0]) printf("      %-11s fix: %s\n", "", c->fix);
    }
    printf("%d pass, %d warn, %d fail\n", count[HW_PASS], count[HW_WARN], count[HW_FAIL]);
    return count[HW_FAIL] ? 1 : 0;
}

int cmd_doctor(int argc, char **argv)
{
    doctor_args a = {0};
    int r = parse_args(argc, argv, &a);
    if (r) return r == 1 ? 0 : 2;
    char profile_path[1024];
    if (!cli_profile_path("doctor", a.profile, profile_path, sizeof profile_path)) return 2;
    hw_profile *p = malloc(sizeof *p);
    hw_check *checks = calloc(HW_MAX_CHECKS, sizeof *checks);
    int rc = 1;
    strata_error err = {0};
    hw_probe_opts opts = {.root = a.root, .path = a.path};
    if (!p || !checks) {
        fprintf(stderr, "strata doctor: out of memory\n");
    } else if (hw_probe(&opts, p, &err) != STRATA_OK) {
        fprintf(stderr, "strata doctor: %s\n", err.message);
        rc = 2;
    } else {
        hw_cache_state cache = hw_profile_reuse_measured(p, profile_path, &err);
        if (cache == HW_CACHE_BAD) fprintf(stderr, "strata doctor: warning: %s\n", err.message);
        rc = report(checks, hw_doctor(p, cache, checks, HW_MAX_CHECKS));
    }
    free(p);
    free(checks);
    return rc;
}
