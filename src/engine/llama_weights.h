/* The llama tensor set: which tensors a layer has, their expected shapes,
 * and their registration with the store (one group a layer, one global). */
#ifndef STRATA_ENGINE_LLAMA_WEIGHTS_H
#define STRATA_ENGINE_LLAMA_WEIGHTS_H

#include "gguf/gguf.h"
#include "kernels/cpu/kernels.h"
#include "model/model_spec.h"
#include "store/store.h"

enum llama_slot {
    SLOT_ATTN_NORM,
    SLOT_WQ,
    SLOT_WK,
    SLOT_WV,
    SLOT_WO,
    SLOT_FFN_NORM,
    SLOT_GATE,
    SLOT_UP,
    SLOT_DOWN,
    SLOT_COUNT,
};

enum global_slot { GSLOT_OUTPUT_NORM, GSLOT_OUTPUT, GSLOT_COUNT };

typedef struct llama_dims {
    uint64_t n_embd, n_layers, n_heads, n_kv_heads, head_dim, n_ff, n_vocab, rope_dim;
    uint64_t q_dim, kv_dim; /* n_heads * head_dim, n_kv_heads * head_dim */
    float rope_base, rope_freq_scale, rms_eps;
} llama_dims;

typedef struct llama_weights {
    llama_dims d;
    const gguf_tensor *embd;
    const gguf_tensor *(*layer)[SLOT_COUNT]; /* n_layers entries */
    const gguf_tensor *global[GSLOT_COUNT];
    store_group *groups;                     /* n_layers + 1 */
    const kernel_desc *(*kern)[SLOT_COUNT];  /* matrix kernels per layer */
    const kernel_desc *kern_output;
} llama_weights;

/* Finds and checks every tensor (presence, shape, a kernel for its type)
 * and the hyper-parameters; errors name the tensor or key. */
strata_status llama_weights_bind(const gguf_file *f, const model_spec *spec, kernel_mode mode, llama_weights *w,
                                  strata_error *err);
void llama_weights_free(llama_weights *w);

#endif
