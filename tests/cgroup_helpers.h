/* Tests that run a process inside a memory cgroup with a limit (root only). */
#ifndef STRATA_TESTS_CGROUP_HELPERS_H
#define STRATA_TESTS_CGROUP_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Creates a child of this process's memory cgroup (v1 or v2) limited to
 * `limit` bytes. On failure returns false with the reason in why (the test
 * is then skipped, naming it). dir gets the cgroup directory, name its name. */
bool test_cgroup_create(uint64_t limit, int *version, char *dir, size_t dir_len, char *name, size_t name_len,
                        char *why, size_t why_len);
/* Removes the cgroup (waiting for its processes to leave); false if it stays. */
bool test_cgroup_remove(const char *dir);
/* A shell command prefix that moves the shell into the cgroup, for
 * "sh -c '<prefix> exec ...'". */
void test_cgroup_enter_cmd(const char *dir, char *buf, size_t len);
/* Whether the kernel's OOM killer fired inside the cgroup (v1 memory.oom_control
 * or v2 memory.events). */
bool test_cgroup_oom_killed(const char *dir, int version);

#endif
