/* Hardware-probe tests that need the stand-in NVML library. */
#ifndef STRATA_TESTS_HW_HELPERS_H
#define STRATA_TESTS_HW_HELPERS_H

/* Builds tests/data/hw/fake-nvml into the test's temporary directory and
 * returns the output of `strata detect --json` run with it on the library
 * path (malloc'd), or NULL: the test is then skipped (no C compiler) or
 * failed, with the reason. */
char *test_detect_json_with_fake_nvml(void);

#endif
