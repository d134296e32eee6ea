/* strata-synth: writes a random-weight, runnable GGUF of any family the
 * architecture table knows (llama, qwen2, qwen2moe, qwen3, qwen3moe, phi3, gemma3),
 * any shape and tensor type, deterministically from a seed, streaming so a
 * 7B-shaped file needs little memory. Mixture-of-experts files can carry a
 * known, Zipf-like expert popularity (--routing-skew, routing.c), so expert
 * caching can be measured as on trained models. */
#ifndef STRATA_TOOLS_SYNTH_H
#define STRATA_TOOLS_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "strata.h"

/* The tensor-type choice: one type for every weight matrix, or a mix. */
typedef enum synth_mix {
    MIX_PURE,   /* every matrix in `type` */
    MIX_Q4_K_M, /* llama.cpp's Q4_K_M recipe: Q4_K, with Q6_K for the output
                   and for attn_v / ffn_down of some layers */
} synth_mix;

typedef struct synth_shape {
    uint64_t n_embd, n_ff, n_layers, n_heads, n_kv_heads, vocab, ctx;
} synth_shape;

/* synth_options.n_swa: no sliding window, whatever the family's default. */
#define SYNTH_SWA_NONE UINT64_MAX

typedef struct synth_options {
    const char *arch;       /* general.architecture; NULL: llama */
    synth_shape shape;
    /* 0: the family's default, filled in by synth_resolve */
    uint64_t head_dim;      /* per-head dimension */
    uint64_t n_expert, n_expert_used;
    uint64_t n_ff_exp;      /* expert width (qwen2moe, qwen3moe; llama's experts are n_ff wide) */
    uint64_t n_ff_shexp;    /* shared-expert width (ffn_*_shexp); 0: none (qwen2moe: n_ff) */
    uint64_t n_swa;         /* sliding window in tokens; SYNTH_SWA_NONE: none */
    double expert_weights_scale; /* written as <arch>.expert_weights_scale when above 0 */
    int expert_weights_norm;     /* <arch>.expert_weights_norm: 0 not written, 1 true, -1 false */
    uint32_t type;          /* ggml type for MIX_PURE */
    synth_mix mix;
    uint64_t seed;
    /* --routing-skew (routing.c): the router and the embedding carry a known
     * routing distribution, expert popularity falling like rank^-routing_skew
     * (0: uniform); without it the weights are random like every other tensor */
    bool routing;
    double routing_skew;
    bool tied_output;       /* omit output.weight (tied to the embedding); gemma3 always */
    const char *vocab_from; /* copy tokenizer.* from this GGUF, or NULL */
    const char *output;
    int threads;
    bool progress;          /* progress line on stderr */
} synth_options;

/* Whether strata-synth writes this architecture; the names, for messages. */
bool synth_arch_known(const char *name);
const char *synth_arch_names(void);

/* Named shapes: tiny, 1b, 7b, 13b, 70b (llama-family dimensions). */
bool synth_preset(const char *name, synth_shape *out);
/* Comma-separated preset names for help text. */
const char *synth_preset_names(void);
/* Parses a --type value: a ggml type the quantizers write or "q4_k_m". */
bool synth_parse_type(const char *name, uint32_t *type, synth_mix *mix);

/* The ggml type of one tensor under the options' mix (options resolved by
 * synth_resolve); `role` is the tensor name without "blk.N." and ".weight"
 * ("attn_v", "ffn_down_exps", "attn_q.bias"); `layer` is -1 for non-layer
 * tensors. Rows whose length the type's block does not divide fall back to
 * Q8_0 (block 32) or F16. */
uint32_t synth_tensor_type(const synth_options *o, const char *role, int layer, uint64_t row_len);

/* Copies the options with the family's defaults filled in (architecture,
 * head dimension, experts, sliding window, tied output) and validates the
 * shape; errors name the flag at fault. */
strata_status synth_resolve(const synth_options *o, synth_options *out, strata_error *err);

/* Sets general.* and the "<arch>." hyper-parameters of resolved options. */
strata_status synth_hparams(gguf_writer *w, const synth_options *o, strata_error *err);

/* Sets the tokenizer.* metadata: copied from o->vocab_from, or a made-up
 * SentencePiece vocabulary of s->vocab tokens. Updates s->vocab to the
 * vocabulary's size. */
strata_status synth_vocab(gguf_writer *w, const synth_options *o, synth_shape *s, strata_error *err);

/* Writes the model; nothing is left at o->output on failure. */
strata_status synth_write(const synth_options *o, strata_error *err);

/* --routing-skew: how many leading residual dimensions carry the routing
 * (the embedding writes them, the layers little); n_embd must be at least
 * twice that. */
uint64_t synth_routing_dims(uint64_t n_expert);

/* --routing-skew: rewrites one generated row (n values) of a tensor for the
 * routing carriers: token embedding rows, router rows, and the rows of the
 * output projections that write a carrier dimension (zeroed or scaled). `ne1`
 * is the tensor's rows per expert; `row` counts over all experts. A no-op
 * without o->routing. */
void synth_routing_row(const synth_options *o, const char *role, int layer, uint64_t ne1, uint64_t row, float *v,
                       uint64_t n);

/* Deterministic normal(0, std) fill of one row; seeded per (seed, tensor, row)
 * so the output does not depend on thread count or chunking. */
void synth_fill_row(float *dst, uint64_t n, uint64_t seed, uint64_t tensor, uint64_t row, float std);

#endif
