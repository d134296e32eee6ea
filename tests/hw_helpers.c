#include "hw_helpers.h"

#include <stdio.h>
#include <stdlib.h>

#include "test.h"

char *test_detect_json_with_fake_nvml(void)
{
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "cc -shared -fPIC -o '%s/libnvidia-ml.so.1' tests/data/hw/fake-nvml/fake_nvml.c 2>&1",
             test_tmpdir());
    if (test_run(cmd, &out, false) != 0) {
        test_skip("cannot build the stand-in NVML library: %s", out ? out : "no cc");
        free(out);
        return NULL;
    }
    free(out);
    out = NULL;
    snprintf(cmd, sizeof cmd, "LD_LIBRARY_PATH='%s' XDG_CACHE_HOME='%s/cache' %s detect --json", test_tmpdir(),
             test_tmpdir(), test_strata_bin());
    if (test_run(cmd, &out, false) != 0) {
        test_fail(__FILE__, __LINE__, "detect --json", " with the stand-in NVML: %s", out ? out : "");
        free(out);
        return NULL;
    }
    return out;
}
