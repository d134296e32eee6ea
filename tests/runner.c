/* The one test runner: runs every registered test (or those whose name
 * contains one of the arguments) and ends with `N passed, N failed, N skipped`. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

#define MAX_TESTS 2048

typedef struct test_case {
    const char *name;
    const char *file;
    test_fn fn;
} test_case;

static test_case tests[MAX_TESTS];
static int n_tests;
static int cur_failures;
static char cur_skip[512];
static char tmp_root[256];
static char cur_tmp[512];
static char fixture_path[1024];

void test_register(const char *name, const char *file, test_fn fn)
{
    if (n_tests == MAX_TESTS) {
        fprintf(stderr, "test runner: more than %d tests\n", MAX_TESTS);
        exit(2);
    }
    tests[n_tests++] = (test_case){name, file, fn};
}

void test_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
    cur_failures++;
    fprintf(stdout, "    %s:%d: check failed: %s:", file, line, cond);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

void test_skip(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cur_skip, sizeof cur_skip, fmt, ap);
    va_end(ap);
}

int test_failures(void) { return cur_failures; }

const char *test_fixture(const char *name)
{
    const char *dir = getenv("STRATA_FIXTURES");
    if (!dir || !*dir) dir = "../shared/fixtures";
    snprintf(fixture_path, sizeof fixture_path, "%s/%s", dir, name);
    if (access(fixture_path, R_OK) != 0) {
        test_skip("fixture %s not found (set STRATA_FIXTURES)", fixture_path);
        return NULL;
    }
    return fixture_path;
}

const char *test_tmpdir(void)
{
    if (!cur_tmp[0]) {
        static int seq;
        snprintf(cur_tmp, sizeof cur_tmp, "%s/t%d", tmp_root, ++seq);
        mkdir(cur_tmp, 0700);
    }
    return cur_tmp;
}

const char *test_strata_bin(void)
{
    const char *b = getenv("STRATA_BIN");
    return b && *b ? b : "build/asan/strata";
}

const char *test_synth_bin(void)
{
    const char *b = getenv("STRATA_SYNTH_BIN");
    return b && *b ? b : "build/asan/strata-synth";
}

int test_run(const char *cmd, char **out, bool merge_stderr)
{
    char full[8192];
    snprintf(full, sizeof full, "%s%s", cmd, merge_stderr ? " 2>&1" : "");
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 2) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) break;
            buf = nb;
            cap *= 2;
        }
    }
    if (buf) buf[len] = '\0';
    int status = pclose(p);
    if (out) *out = buf; else free(buf);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static bool selected(const char *name, int argc, char **argv)
{
    if (argc < 2) return true;
    for (int i = 1; i < argc; i++)
        if (strstr(name, argv[i])) return true;
    return false;
}

int main(int argc, char **argv)
{
    snprintf(tmp_root, sizeof tmp_root, "/tmp/strata-tests-%d", (int)getpid());
    mkdir(tmp_root, 0700);
    /* The run's own cache directory: tests neither plan with this machine's
     * saved profile and recorded streaming rates (results would depend on
     * the developer's history) nor add their small runs to them. */
    char cache[300];
    snprintf(cache, sizeof cache, "%s/cache", tmp_root);
    setenv("XDG_CACHE_HOME", cache, 1);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int passed = 0, failed = 0, skipped = 0;
    for (int i = 0; i < n_tests; i++) {
        if (!selected(tests[i].name, argc, argv)) continue;
        cur_failures = 0;
        cur_skip[0] = '\0';
        cur_tmp[0] = '\0';
        tests[i].fn();
        if (cur_failures) {
            failed++;
            printf("FAIL %s (%s)\n", tests[i].name, tests[i].file);
        } else if (cur_skip[0]) {
            skipped++;
            printf("SKIP %s: %s\n", tests[i].name, cur_skip);
        } else {
            passed++;
            printf("pass %s\n", tests[i].name);
        }
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", tmp_root);
    if (skipped)
        printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    else
        printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
