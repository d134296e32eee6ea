/* Budgets that hold inside memory cgroups (issue 15): --mem above the
 * cgroup's limit is clamped with a warning naming it (refused with
 * --strict-mem), and the default budget of a small container is most of
 * it, not what a fixed 256 MiB margin leaves. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cgroup_helpers.h"
#include "test.h"

#define MiB (1ull << 20)

/* Runs `strata ARGS` inside a new cgroup of `limit` bytes; returns the
 * exit status (-2: skipped, the reason reported) and the merged output. */
static int run_in_cgroup(uint64_t limit, const char *args, char **out, bool *oom)
{
    char cg[2048], name[64], why[512] = "", enter[2200], cmd[8192];
    int version;
    if (!test_cgroup_create(limit, &version, cg, sizeof cg, name, sizeof name, why, sizeof why)) {
        test_skip("%s", why);
        return -2;
    }
    test_cgroup_enter_cmd(cg, enter, sizeof enter);
    snprintf(cmd, sizeof cmd, "sh -c '%s exec %s %s'", enter, test_strata_bin(), args);
    int rc = test_run(cmd, out, true);
    *oom = test_cgroup_oom_killed(cg, version);
    CHECK(test_cgroup_remove(cg));
    return rc;
}

TEST(test_budget_mem_above_cgroup_is_clamped)
{
    const char *model = test_fixture("synth-q8_0.gguf");
    if (!model) return;
    char args[2048], *out = NULL;
    bool oom = false;
    snprintf(args, sizeof args, "run -m %s -p \"a b\" -n 4 --temp 0 --mem 1G", model);
    int rc = run_in_cgroup(96 * MiB, args, &out, &oom);
    if (rc == -2) return;
    CHECK(rc == 0 && !oom, " rc %d: %s", rc, out);
    CHECK(out && strstr(out, "warning: --mem 1.00 GiB is more than the") &&
              strstr(out, "memory cgroup's limit of 96.0 MiB"), " %s", out);
    free(out);
    out = NULL;
    snprintf(args, sizeof args, "run -m %s -p \"a b\" -n 4 --temp 0 --mem 1G --strict-mem", model);
    rc = run_in_cgroup(96 * MiB, args, &out, &oom);
    CHECK(rc == 1 && out && strstr(out, "--mem 1.00 GiB is more than the") && strstr(out, "lower --mem") &&
              !strstr(out, "warning"), " rc %d: %s", rc, out);
    free(out);
}

/* The budget of a run's plan line ("; budget 225 MiB") or of plan's
 * memory line ("budget 225 MiB"), in MiB; 0 if absent. */
static double budget_mib(const char *out)
{
    const char *p = out ? strstr(out, "budget ") : NULL;
    double v = 0;
    char unit[8] = "";
    if (!p || sscanf(p, "budget %lf %7s", &v, unit) != 2) return 0;
    return !strcmp(unit, "GiB") ? v * 1024 : !strcmp(unit, "MiB") ? v : !strcmp(unit, "KiB") ? v / 1024 : 0;
}

/* In a 300 MiB container the default budget is most of the limit: at least
 * 200 MiB (the old rule, usable less 256 MiB, left about 40). */
TEST(test_budget_default_in_small_cgroup)
{
    const char *model = test_fixture("synth-q8_0.gguf");
    if (!model) return;
    char args[2048], *out = NULL;
    bool oom = false;
    snprintf(args, sizeof args, "run -m %s -p \"a b\" -n 4 --temp 0", model);
    int rc = run_in_cgroup(300 * MiB, args, &out, &oom);
    if (rc == -2) return;
    double b = budget_mib(out);
    CHECK(rc == 0 && !oom && b >= 200 && b <= 300, " rc %d, budget %.1f MiB: %s", rc, b, out);
    free(out);
}

/* plan shows the clamp: the warning, and the budget line at the cgroup's
 * usable memory; --strict-mem exits 3 (an error) with the reason. */
TEST(test_budget_plan_shows_the_clamp)
{
    const char *model = test_fixture("synth-q8_0.gguf");
    if (!model) return;
    char args[2048], *out = NULL;
    bool oom = false;
    snprintf(args, sizeof args, "plan %s --mem 1G", model);
    int rc = run_in_cgroup(96 * MiB, args, &out, &oom);
    if (rc == -2) return;
    double b = budget_mib(out ? strstr(out, "memory      budget") : NULL);
    CHECK(rc == 0 && out && strstr(out, "strata plan: warning: --mem 1.00 GiB is more than the") && b > 0 && b <= 96,
          " rc %d, budget %.1f MiB: %s", rc, b, out);
    free(out);
    out = NULL;
    snprintf(args, sizeof args, "plan %s --mem 1G --strict-mem", model);
    rc = run_in_cgroup(96 * MiB, args, &out, &oom);
    CHECK(rc == 3 && out && strstr(out, "lower --mem"), " rc %d: %s", rc, out);
    free(out);
}
