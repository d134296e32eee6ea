/* model_spec: what a model is, derived from its GGUF metadata and tensor
 * table alone — architecture, hyper-parameters, the role of every tensor,
 * bytes per layer and KV-cache geometry. Used by inspect, plan and run. */
#ifndef STRATA_MODEL_MODEL_SPEC_H
#define STRATA_MODEL_MODEL_SPEC_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf/gguf.h"

#define MODEL_MAX_LAYERS 4096

/* Where a tensor's bytes are counted in the per-layer breakdown. */
typedef enum tensor_group {
    GROUP_ATTN,        /* attention projections (q, k, v, output, biases) */
    GROUP_FFN,         /* dense feed-forward, router, shared experts */
    GROUP_FFN_EXPERTS, /* routed expert tensors (*_exps) */
    GROUP_NORM,        /* norm weights */
    GROUP_EMBD,        /* token embedding */
    GROUP_OUTPUT,      /* output projection */
    GROUP_OTHER,
    GROUP_COUNT,
} tensor_group;

typedef struct tensor_class {
    int layer;          /* -1 for tensors outside the blocks */
    tensor_group group;
} tensor_class;

typedef struct layer_bytes {
    uint64_t by_group[GROUP_COUNT];
    uint64_t total;
} layer_bytes;

typedef struct model_hparams {
    char arch[64];
    char name[128];
    uint64_t context_length;
    uint64_t n_embd;
    uint64_t n_layers;       /* from metadata, or 1 + the highest blk index */
    uint64_t n_ff;
    uint64_t n_heads;
    uint64_t n_kv_heads;     /* of layer 0 (see kv_heads for per-layer) */
    uint64_t head_dim_k, head_dim_v;
    uint64_t n_expert, n_expert_used;
    uint64_t n_ff_exp, n_ff_shexp; /* expert and shared-expert FFN widths (0: absent) */
    uint64_t n_expert_shared;      /* expert_shared_count: shared experts, fused in ffn_*_shexp (0: absent) */
    double expert_weights_scale;   /* expert_weights_scale: the routed weights times it, after selection (0: absent) */
    bool has_expert_weights_norm;  /* the file states expert_weights_norm: */
    bool expert_weights_norm;      /*   whether the k routed weights are renormalized */
    uint64_t vocab_size;
    uint64_t rope_dim;
    double rope_freq_base;
    double rope_freq_base_swa; /* sliding-window layers (0: absent) */
    char rope_scaling[32];   /* "none", "linear", "yarn", ... */
    double rope_scaling_factor;
    double rope_attn_factor;   /* rope.scaling.attn_factor (0: absent) */
    uint64_t rope_orig_ctx;    /* rope.scaling.original_context_length (0: absent) */
    double rms_eps;
    uint64_t sliding_window; /* 0: none */
    char tokenizer_model[32];
} model_hparams;

typedef struct model_spec {
    model_hparams hp;
    const gguf_file *file;
    uint64_t file_bytes;      /* all splits */
    uint64_t n_params;
    uint64_t tensor_bytes;
    uint64_t bytes_by_type[GGML_TYPE_COUNT];
    uint64_t elems_by_type[GGML_TYPE_COUNT];
    tensor_class *classes;    /* one per tensor of file */
    layer_bytes *layers;      /* n_layers entries */
    layer_bytes non_layer;    /* embedding, output, final norm, other */
    uint32_t *kv_heads;       /* per layer */
    bool *layer_swa;          /* per layer: uses the sliding window */
} model_spec;

/* Builds the spec; hyper-parameters absent from the metadata stay 0 (an
 * unknown architecture still gets the generic, tensor-based view). Values
 * that are present are validated. */
strata_status model_spec_from_gguf(const gguf_file *f, const char *path, model_spec **out, strata_error *err);
void model_spec_free(model_spec *spec);

/* Classifies a tensor by name ("blk.3.attn_q.weight" -> layer 3, ATTN). */
tensor_class model_classify_tensor(const char *name);

const char *tensor_group_name(tensor_group g);

/* Bytes of KV cache one token needs across all layers, for a cache of the
 * given ggml type (F32, F16, Q8_0, Q4_0). */
uint64_t model_kv_bytes_per_token(const model_spec *spec, uint32_t cache_type);

/* Bytes of KV cache for ctx tokens; sliding-window layers hold at most
 * `sliding_window` tokens. */
uint64_t model_kv_bytes(const model_spec *spec, uint32_t cache_type, uint64_t ctx);

#endif
