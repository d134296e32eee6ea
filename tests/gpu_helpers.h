/* Shared by the GPU tests. */
#ifndef STRATA_TESTS_GPU_HELPERS_H
#define STRATA_TESTS_GPU_HELPERS_H

#include <stdbool.h>
#include <stdint.h>

/* True when Vulkan device 0 opens; else the test is skipped, saying why. */
bool gpu_test_device(void);

typedef struct strata_model strata_model;
typedef struct strata_error strata_error;
/* Opens the model at path on device 0 (context 64, 2 threads): at most
 * max_layers layers there (0: as many as fit), gpu_mem device bytes (0:
 * the budget), a RAM->VRAM ring of `stream` entries (0: none). NULL, with
 * a failed check naming what, when it does not open. */
strata_model *gpu_test_open(const char *path, uint32_t max_layers, uint64_t gpu_mem, uint32_t stream);

/* Logits of n_prompt tokens evaluated at once, then of the rest up to n_tok
 * one at a time (token i: (i * 7919 + 13) mod n_vocab): [n_tok][n_vocab],
 * malloc'd; NULL with err on failure. */
float *gpu_test_eval(strata_model *m, int n_tok, int n_prompt, strata_error *err);

#endif
