/* strata detect [--json] [--measure [--quick]] [--path PATH] [--profile FILE]:
 * what this machine has, and with --measure how fast it moves bytes; the
 * measured profile is saved and reused until the machine changes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "strata.h"

static const char detect_usage[] =
    "usage: strata detect [--json] [--measure [--quick]] [--path PATH] [--profile FILE]\n"
    "\n"
    "Reports this machine's CPU (cores, SIMD features, caches), memory (available,\n"
    "swap, the cgroup limit, what strata may use), the storage where models live\n"
    "(filesystem, device, free space, O_DIRECT) and GPUs (Vulkan, NVML, sysfs).\n"
    "Bandwidths measured earlier on this machine are shown from the saved profile.\n"
    "\n"
    "  --measure       measure RAM read bandwidth (1 and all threads), sequential\n"
    "                  O_DIRECT read bandwidth of the storage (a temporary file, or\n"
    "                  the model file given as --path) and host->GPU copy speed,\n"
    "                  then save the profile (takes a few seconds)\n"
    "  --quick         with --measure: small buffers and short runs (less precise)\n"
    "  --json          print the whole profile as JSON (schema: docs/profile-json.md)\n"
    "  --path PATH     directory (or model file) where models live (default: .)\n"
    "  --profile FILE  the saved profile to write (--measure) or reuse; default\n"
    "                  $XDG_CACHE_HOME/strata/profile.json, else\n"
    "                  ~/.cache/strata/profile.json\n"
    "  --root DIR      read /proc and /sys below DIR (a captured tree, for tests);\n"
    "                  no GPU library is opened and nothing is measured or saved\n"
    "  -h, --help      show this help\n";

typedef struct detect_args {
    bool json, measure, quick;
    const char *path, *profile, *root;
} detect_args;

/* 0: run, 1: help printed, 2: usage error (already reported). */
static int parse_args(int argc, char **argv, detect_args *a)
{
    for (int i = 1; i < argc; i++) {
        bool bad = false;
        const char *v;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(detect_usage, stdout);
            return 1;
        } else if (!strcmp(argv[i], "--json")) {
            a->json = true;
        } else if (!strcmp(argv[i], "--measure")) {
            a->measure = true;
        } else if (!strcmp(argv[i], "--quick")) {
            a->quick = true;
        } else if ((v = cli_opt_value("detect", argc, argv, &i, "--path", &bad))) {
            a->path = v;
        } else if ((v = cli_opt_value("detect", argc, argv, &i, "--profile", &bad))) {
            a->profile = v;
        } else if ((v = cli_opt_value("detect", argc, argv, &i, "--root", &bad))) {
            a->root = v;
        } else {
            arg_unknown("detect", (const char *const[]){detect_usage, NULL}, argv[i]);
            return 2;
        }
        if (bad) return 2;
    }
    if (a->quick && !a->measure) {
        fprintf(stderr, "strata detect: --quick only applies with --measure\n");
        return 2;
    }
    if (a->root && a->measure) {
        fprintf(stderr, "strata detect: --measure cannot be used with --root (a captured tree)\n");
        return 2;
    }
    struct stat st;
    if (a->root && (stat(a->root, &st) != 0 || !S_ISDIR(st.st_mode))) {
        fprintf(stderr, "strata detect: --root %s: %s\n", a->root, errno ? strerror(errno) : "not a directory");
        return 2;
    }
    return 0;
}

static void progress_line(const char *stage, double frac, void *ctx)
{
    (void)ctx;
    if (frac >= 1.0) fprintf(stderr, "\r\033[K");
    else fprintf(stderr, "\r\033[Kmeasuring (%3.0f%%): %s ...", frac * 100.0, stage);
    fflush(stderr);
}

/* --measure: the bandwidths now, saved to the profile's file. */
static int measure_and_save(strata_profile *p, const detect_args *a)
{
    strata_error err = {0};
    if (strata_profile_measure(p, a->quick, isatty(STDERR_FILENO) ? progress_line : NULL, NULL, &err) != STRATA_OK) {
        fprintf(stderr, "strata detect: %s\n", err.message);
        return 1;
    }
    return 0;
}

static int emit(const strata_profile *p, const detect_args *a)
{
    if (!a->json) {
        strata_profile_print(p, stdout);
        return 0;
    }
    char *text = strata_profile_json(p);
    if (!text) {
        fprintf(stderr, "strata detect: out of memory rendering the profile\n");
        return 1;
    }
    printf("%s\n", text);
    free(text);
    return 0;
}

int cmd_detect(int argc, char **argv)
{
    detect_args a = {0};
    int r = parse_args(argc, argv, &a);
    if (r) return r == 1 ? 0 : 2;
    /* a captured tree (--root) reuses no saved profile */
    strata_profile_params pp = {.path = a.path, .root = a.root, .file = a.root ? NULL : a.profile};
    strata_profile *p = NULL;
    strata_error err = {0};
    if (strata_profile_probe(&pp, &p, &err) != STRATA_OK) {
        fprintf(stderr, "strata detect: %s\n", err.message);
        return 2;
    }
    int rc = 0;
    if (a.measure) rc = measure_and_save(p, &a);
    else if (strata_profile_saved_state(p) == STRATA_PROFILE_BAD)
        fprintf(stderr, "strata detect: warning: %s (ignored)\n", err.message);
    if (!rc) rc = emit(p, &a);
    strata_profile_free(p);
    return rc;
}
