/* The test harness: tests register themselves with TEST(name) and report
 * with CHECK(...); one runner executes them all and prints the closing line
 * `N passed, N failed, N skipped`. */
#ifndef STRATA_TESTS_TEST_H
#define STRATA_TESTS_TEST_H

#include <stdbool.h>
#include <stdio.h>

typedef void (*test_fn)(void);

void test_register(const char *name, const char *file, test_fn fn);
/* Records a failed check (the test goes on; it fails at its end). */
void test_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Marks the current test skipped, naming what was missing; return after it. */
void test_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Failures so far in the current test (to stop early after a bad setup). */
int test_failures(void);

/* Path of a fixture under $STRATA_FIXTURES or ../shared/fixtures, or NULL
 * (and the test is marked skipped, naming the file) when it is absent. */
const char *test_fixture(const char *name);
/* A fresh temporary directory for this test, removed after the run. */
const char *test_tmpdir(void);
/* Path of the sanitized strata / strata-synth binaries (from the Makefile). */
const char *test_strata_bin(void);
const char *test_synth_bin(void);
/* Runs a shell command, capturing stdout (and stderr when merge_stderr) into
 * a malloc'd string (*out, may be NULL); returns the exit status or -1. */
int test_run(const char *cmd, char **out, bool merge_stderr);

#define TEST(name)                                                              \
    static void name(void);                                                     \
    __attribute__((constructor)) static void register_##name(void)              \
    {                                                                           \
        test_register(#name, __FILE__, name);                                   \
    }                                                                           \
    static void name(void)

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) test_fail(__FILE__, __LINE__, #cond, " " __VA_ARGS__);   \
    } while (0)

/* Stops the test when the check fails (for checks later code relies on). */
#define REQUIRE(cond, ...)                                                      \
    do {                                                                        \
        if (!(cond)) {                                                          \
            test_fail(__FILE__, __LINE__, #cond, " " __VA_ARGS__);              \
            return;                                                             \
        }                                                                       \
    } while (0)

#endif
