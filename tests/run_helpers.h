/* End-to-end runs of the release binary on a synthesized model: the
 * unpressured reference text the memory-pressure tests compare against. */
#ifndef STRATA_TESTS_RUN_HELPERS_H
#define STRATA_TESTS_RUN_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The release strata ($STRATA_RELEASE_BIN, else build/strata): memory
 * tests measure its real RSS (the sanitizers' shadow would swamp it). */
const char *test_release_bin(void);

/* Writes a 16-layer Q8_0 model of ~50 MiB (seed) as test_tmpdir()/name
 * into mpath, makes args "run -m MODEL RUN_ARGS", runs it unpressured
 * (stderr dropped) and returns its stdout in *ref (malloc'd): false, the
 * test failed, when the model or the run failed or printed under 11 bytes. */
bool test_reference_run(const char *name, uint64_t seed, const char *run_args, char *mpath, size_t mcap,
                        char *args, size_t acap, char **ref);

/* Runs cmd (test_run: stdout into *out) while process h (a memory hog)
 * runs beside it, then kills and reaps h. Returns cmd's status; *alive:
 * h was still running when cmd ended (nobody, the OOM killer included,
 * had killed it). */
int test_run_beside(const char *cmd, pid_t h, char **out, bool *alive);

#endif
