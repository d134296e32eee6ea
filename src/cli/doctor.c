/* strata doctor [--path PATH] [--profile FILE]: checks the environment for
 * what makes big-model runs fail or crawl, one PASS/WARN/FAIL line each,
 * with a one-line fix. Exit status 1 when any check fails. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "strata.h"

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

static int report(const strata_check *checks, int n)
{
    static const char *const level[] = {"PASS", "WARN", "FAIL"};
    int count[3] = {0, 0, 0};
    for (int i = 0; i < n; i++) {
        const strata_check *c = &checks[i];
        count[c->level]++;
        printf("%s  %-11s %s\n", level[c->level], c->name, c->message);
        if (c->level != STRATA_CHECK_PASS && c->fix[0]) printf("      %-11s fix: %s\n", "", c->fix);
    }
    printf("%d pass, %d warn, %d fail\n", count[STRATA_CHECK_PASS], count[STRATA_CHECK_WARN], count[STRATA_CHECK_FAIL]);
    return count[STRATA_CHECK_FAIL] ? 1 : 0;
}

int cmd_doctor(int argc, char **argv)
{
    doctor_args a = {0};
    int r = parse_args(argc, argv, &a);
    if (r) return r == 1 ? 0 : 2;
    char profile_path[1024];
    if (!cli_profile_path("doctor", a.profile, profile_path, sizeof profile_path)) return 2;
    /* the saved profile is checked with a captured tree too */
    strata_profile_params pp = {.path = a.path, .root = a.root, .file = profile_path};
    strata_profile *p = NULL;
    strata_check *checks = calloc(STRATA_MAX_CHECKS, sizeof *checks);
    strata_error err = {0};
    int rc = 1;
    if (!checks) {
        fprintf(stderr, "strata doctor: out of memory\n");
    } else if (strata_profile_probe(&pp, &p, &err) != STRATA_OK) {
        fprintf(stderr, "strata doctor: %s\n", err.message);
        rc = 2;
    } else {
        if (strata_profile_saved_state(p) == STRATA_PROFILE_BAD)
            fprintf(stderr, "strata doctor: warning: %s\n", err.message);
        rc = report(checks, strata_profile_check(p, checks, STRATA_MAX_CHECKS));
    }
    strata_profile_free(p);
    free(checks);
    return rc;
}
