/* See run_helpers.h. */
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "../tools/synth/synth.h"
#include "run_helpers.h"
#include "test.h"

const char *test_release_bin(void)
{
    const char *b = getenv("STRATA_RELEASE_BIN");
    return b && *b ? b : "build/strata";
}

bool test_reference_run(const char *name, uint64_t seed, const char *run_args, char *mpath, size_t mcap,
                        char *args, size_t acap, char **ref)
{
    *ref = NULL;
    snprintf(mpath, mcap, "%s/%s", test_tmpdir(), name);
    synth_options o = {.shape = {512, 1408, 16, 8, 4, 512, 1024}, .type = GGML_TYPE_Q8_0, .seed = seed,
                       .threads = 2, .output = mpath};
    strata_error e;
    if (synth_write(&o, &e)) {
        test_fail(__FILE__, __LINE__, "synth_write", " %s", e.message);
        return false;
    }
    snprintf(args, acap, "run -m %s %s", mpath, run_args);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s 2>/dev/null", test_release_bin(), args);
    int rc = test_run(cmd, ref, false);
    if (rc == 0 && *ref && strlen(*ref) > 10) return true;
    test_fail(__FILE__, __LINE__, "reference run", " rc %d", rc);
    free(*ref);
    *ref = NULL;
    return false;
}

int test_run_beside(const char *cmd, pid_t h, char **out, bool *alive)
{
    int rc = test_run(cmd, out, false), hs = 0;
    *alive = h > 0 && waitpid(h, &hs, WNOHANG) == 0;
    if (h > 0) {
        kill(h, SIGKILL);
        waitpid(h, &hs, 0);
    }
    return rc;
}
