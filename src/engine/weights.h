/* Binding a model's tensors to the slots of its architecture: every tensor
 * the forward pass needs, found by the name the architecture table gives,
 * its shape checked against the dimensions, before any data is read (the
 * back ends choose their kernels: backend_cpu_select_kernels). Tensors are registered with the store in
 * groups: one per layer (all LS_COUNT slots, NULL where absent, so the data
 * of slot s is data[s]) and one for the output (norm, projection). A
 * layer's stacked experts are not in its group: they are an expert set,
 * cached per expert by the store. */
#ifndef STRATA_ENGINE_WEIGHTS_H
#define STRATA_ENGINE_WEIGHTS_H

#include "gguf/gguf.h"
#include "kernels/cpu/kernels.h"
#include "model/arch.h"
#include "model/model_spec.h"
#include "store/store.h"

enum output_slot { OS_NORM, OS_PROJ, OS_COUNT }; /* the output group's tensors */

typedef struct model_weights {
    const arch_desc *arch;
    model_dims d;
    bool moe;
    uint64_t n_expert_shared;               /* expert_shared_count (0: not declared) */
    const gguf_tensor *(*layer)[LS_COUNT];  /* n_layers entries; NULL where absent */
    const kernel_desc *(*kern)[LS_COUNT];   /* CPU matrix kernels; NULL for vectors */
    bool *swa;                              /* n_layers: layer uses the sliding window */
    const gguf_tensor *global[GS_COUNT];    /* GS_OUTPUT is the embedding when tied */
    const gguf_tensor *output[OS_COUNT];
    const kernel_desc *kern_output;
    store_group *groups;                    /* n_layers + 1 */
    const gguf_tensor *(*dense)[LS_COUNT];  /* n_layers: a layer's group, its stacked experts NULL */
    store_expert_set *expert_sets;          /* n_layers when moe: gate, up, down of each layer */
    const gguf_tensor *(*exps)[3];          /* n_layers: those three tensors */
} model_weights;

/* Finds and checks every tensor (presence, shape, vector types) and the
 * hyper-parameters; errors name the file and the tensor or key. */
strata_status weights_bind(const gguf_file *f, const model_spec *spec, const char *path, model_weights *w,
                           strata_error *err);
void weights_free(model_weights *w);

#endif
