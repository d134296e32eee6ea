/* The architecture description: the one place that knows GGUF tensor names
 * and what distinguishes one transformer family from another.
 *
 * Every family here is a pre-norm decoder: per layer, attention then a
 * feed-forward block, each wrapped in a residual add. What varies is
 * written as data (arch_desc): RoPE pairing, activation, biases, Q/K norms,
 * fused projections, extra norms, embedding scale, sliding windows and
 * experts. Tensor slots (the weights a layer can have) are one table shared
 * by all families, with their GGUF names and shapes; arch_layer_need says
 * which slots a family requires. Weight binding, the planner's calibration
 * model and strata-synth all build their tensor lists from here. */
#ifndef STRATA_MODEL_ARCH_H
#define STRATA_MODEL_ARCH_H

#include <stdbool.h>
#include <stdint.h>

#include "model/model_spec.h"
#include "strata.h"

typedef enum arch_rope_style {
    ROPE_ADJACENT, /* rotates pairs (2i, 2i+1): llama */
    ROPE_NEOX,     /* rotates element i with i + dim/2: qwen, phi3, gemma */
} arch_rope_style;

typedef enum arch_act {
    ACT_SILU, /* SwiGLU: silu(gate) * up */
    ACT_GELU, /* GeGLU: gelu_tanh(gate) * up */
} arch_act;

typedef enum arch_gating {
    GATING_SOFTMAX_TOPK_NORM, /* softmax over all experts, top k, renormalize the k weights */
    GATING_SOFTMAX_TOPK,      /* softmax over all experts, top k, their probabilities as they are (qwen2moe) */
} arch_gating;

typedef struct arch_desc {
    const char *name;       /* general.architecture */
    arch_rope_style rope;
    arch_act act;
    bool qkv_bias;          /* biases on Q, K and V are required (optional elsewhere) */
    bool qk_norm;           /* RMS norm per head on Q and K after projection, before RoPE */
    bool fused_qkv;         /* attn_qkv: the Q rows, then K, then V */
    bool fused_gate_up;     /* ffn_up: 2 x n_ff rows, gate first; no ffn_gate */
    bool post_norms;        /* norms on the attention and FFN outputs before each residual add */
    bool embd_scale;        /* embeddings multiplied by sqrt(n_embd) */
    bool always_moe;        /* experts always (qwen3moe); others: when expert_count > 0 */
    bool shared_experts;    /* a shared expert (ffn_*_shexp) is required; others: optional with experts */
    bool shared_gate;       /* the shared expert's output is scaled by sigmoid(ffn_gate_inp_shexp . x) */
    float swa_rope_base;    /* default RoPE base of sliding-window layers (0: the global base) */
    arch_gating gating;
} arch_desc;

/* The description for general.architecture, or NULL for an unknown one. */
const arch_desc *arch_find(const char *name);
/* "llama, qwen2, ..." for messages. */
const char *arch_names(void);

/* ---- tensor slots ---- */

typedef enum layer_slot {
    LS_ATTN_NORM,      /* [n_embd] */
    LS_Q,              /* [q_dim][n_embd] (rows x columns; GGUF ne = {n_embd, q_dim}) */
    LS_K,              /* [kv_dim][n_embd] */
    LS_V,              /* [kv_dim][n_embd] */
    LS_QKV,            /* [q_dim + 2 kv_dim][n_embd] */
    LS_Q_BIAS,         /* [q_dim] */
    LS_K_BIAS,         /* [kv_dim] */
    LS_V_BIAS,         /* [kv_dim] */
    LS_Q_NORM,         /* [head_dim] */
    LS_K_NORM,         /* [head_dim] */
    LS_OUT,            /* [n_embd][q_dim] */
    LS_POST_ATTN_NORM, /* [n_embd] */
    LS_FFN_NORM,       /* [n_embd] */
    LS_GATE,           /* [n_ff][n_embd] */
    LS_UP,             /* [n_ff][n_embd], fused: [2 n_ff][n_embd] */
    LS_DOWN,           /* [n_embd][n_ff] */
    LS_POST_FFN_NORM,  /* [n_embd] */
    LS_ROUTER,         /* [n_expert][n_embd] */
    LS_GATE_EXPS,      /* [n_expert][n_ff_exp][n_embd] */
    LS_UP_EXPS,        /* [n_expert][n_ff_exp][n_embd] */
    LS_DOWN_EXPS,      /* [n_expert][n_embd][n_ff_exp] */
    LS_GATE_SHEXP,     /* [n_ff_shexp][n_embd] */
    LS_UP_SHEXP,       /* [n_ff_shexp][n_embd] */
    LS_DOWN_SHEXP,     /* [n_embd][n_ff_shexp] */
    LS_GATE_INP_SHEXP, /* [n_embd] the shared expert's gate (one row) */
    LS_COUNT,
} layer_slot;

typedef enum global_slot {
    GS_EMBD,        /* [n_vocab][n_embd] */
    GS_OUTPUT_NORM, /* [n_embd] */
    GS_OUTPUT,      /* [n_vocab][n_embd]; absent: tied to the embedding */
    GS_ROPE_FREQS,  /* [rope_dim / 2] frequency divisors (Llama 3.1) */
    GS_ROPE_LONG,   /* [rope_dim / 2] Phi-3 long-context factors */
    GS_ROPE_SHORT,  /* [rope_dim / 2] Phi-3 short-context factors */
    GS_COUNT,
} global_slot;

typedef enum slot_need { NEED_NONE, NEED_OPTIONAL, NEED_REQUIRED } slot_need;

/* Whether a layer of this family (with experts or not) has the slot. */
slot_need arch_layer_need(const arch_desc *a, bool moe, layer_slot s);
slot_need arch_global_need(const arch_desc *a, global_slot s);

/* GGUF names: "blk.<layer>.attn_q.weight", "token_embd.weight". */
void arch_layer_tensor_name(layer_slot s, uint64_t layer, char *buf, size_t cap);
const char *arch_global_tensor_name(global_slot s);
/* True for slots holding a vector (norms, biases, factors), not a matrix. */
bool arch_layer_slot_is_vector(layer_slot s);

/* ---- dimensions ---- */

/* Everything the forward pass needs to know about sizes and numerics,
 * from the hyper-parameters and the family's rules, validated. */
typedef struct model_dims {
    uint64_t n_embd, n_layers, n_heads, n_kv_heads, head_dim, n_ff, n_vocab;
    uint64_t q_dim, kv_dim;             /* n_heads * head_dim, n_kv_heads * head_dim */
    uint64_t n_expert, n_expert_used, n_ff_exp;
    uint64_t n_ff_shexp;                /* the shared expert's width (0: none, or not yet bound) */
    bool expert_norm;                   /* the k routed weights renormalized to sum to 1 (the file's
                                           expert_weights_norm, else the family's gating) */
    float expert_scale;                 /* the routed weights times this after selection (expert_weights_scale; 1) */
    uint64_t rope_dim;                  /* rotated dims of each head */
    float rope_base, rope_base_swa, rope_freq_scale;
    /* YaRN (rope.scaling.type = yarn): 0 ext_factor means off */
    float yarn_ext_factor, yarn_attn_factor, yarn_corr_low, yarn_corr_high;
    uint64_t rope_orig_ctx;             /* rope.scaling.original_context_length (0: unknown) */
    float rms_eps;
    uint64_t n_swa;                     /* sliding window in tokens (0: none) */
} model_dims;

strata_status arch_dims(const arch_desc *a, const model_spec *spec, const char *path, model_dims *d,
                        strata_error *err);
bool arch_is_moe(const arch_desc *a, const model_dims *d);

/* The expected GGUF shape {ne0, ne1, ne2} of a slot (ne0 is the row length);
 * 0 where any size is accepted. */
void arch_layer_shape(const model_dims *d, const arch_desc *a, layer_slot s, uint64_t ne[3]);
void arch_global_shape(const model_dims *d, global_slot s, uint64_t ne[3]);

#endif
