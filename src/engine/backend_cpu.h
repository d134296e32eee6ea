/* The CPU back end (backend_cpu.c) and its kernel choice. */
#ifndef STRATA_ENGINE_BACKEND_CPU_H
#define STRATA_ENGINE_BACKEND_CPU_H

#include "engine/backend.h"
#include "engine/weights.h"

struct engine;
void backend_cpu_init(backend *b, struct engine *e);
/* The mixture-of-experts op (backend_cpu_moe.c). */
strata_status backend_cpu_moe(backend *b, uint64_t l, const be_weight *w, uint32_t n_tok, strata_error *err);
/* A decode step's first expert layer, read ahead from the embedding (ACT_X)
 * by the predictor in use, before its attention runs. */
void backend_cpu_moe_prefetch_first(backend *b);
/* After layer l's routing in a decode step (on any back end; b: the CPU
 * back end, whose host activations it reads): the choice kept for the
 * "prev" predictor, and layer l+1's experts read ahead by the predictor in
 * use (the router's reads the residual in ACT_X). */
void backend_cpu_moe_prefetch_next(backend *b, uint64_t l, uint32_t n_tok);

/* Chooses the CPU kernel of every matrix (w->kern, w->kern_output): the
 * fast kernel for this CPU or the reference. Errors name a tensor whose
 * type the CPU cannot run. */
strata_status backend_cpu_select_kernels(model_weights *w, kernel_mode mode, strata_error *err);

#endif
