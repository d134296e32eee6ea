/* Greedy generation on a context of its own: the single-sequence truth the
 * batched paths (scheduler, batches of many contexts) are checked against. */
#ifndef STRATA_TESTS_GREEDY_HELPERS_H
#define STRATA_TESTS_GREEDY_HELPERS_H

#include <stddef.h>
#include <stdint.h>

#include "strata.h"

/* The text of up to n_gen tokens after prompt[0..n) on a new context (freed
 * after), each the most likely, stopping at an end-of-generation token;
 * spelled as after the prompt (the detokenizer sees the prompt first).
 * malloc'd; the test fails (and the text is what came) on an error. */
char *greedy_text(strata_model *m, const int32_t *prompt, size_t n, uint32_t n_gen);

#endif
