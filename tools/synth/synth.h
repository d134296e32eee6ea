/* strata-synth: writes a random-weight, runnable llama-architecture GGUF of
 * any shape and tensor type, deterministically from a seed, streaming so a
 * 7B-shaped file needs little memory. */
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

typedef struct synth_options {
    synth_shape shape;
    uint32_t type;          /* ggml type for MIX_PURE */
    synth_mix mix;
    uint64_t seed;
    bool tied_output;       /* omit output.weight (tied to the embedding) */
    const char *vocab_from; /* copy tokenizer.* from this GGUF, or NULL */
    const char *output;
    int threads;
    bool progress;          /* progress line on stderr */
} synth_options;

/* Named shapes: tiny, 1b, 7b, 13b, 70b (llama-family dimensions). */
bool synth_preset(const char *name, synth_shape *out);
/* Comma-separated preset names for help text. */
const char *synth_preset_names(void);
/* Parses a --type value: a ggml type the quantizers write or "q4_k_m". */
bool synth_parse_type(const char *name, uint32_t *type, synth_mix *mix);

/* The ggml type of one tensor under the options' mix; `layer` is -1 for
 * non-layer tensors. Rows whose length the type's block does not divide
 * fall back to Q8_0 (block 32) or F16. */
uint32_t synth_tensor_type(const synth_options *o, const char *role, int layer, uint64_t row_len);

/* Validates the shape (heads divide the embedding, etc.). */
strata_status synth_check_shape(const synth_shape *s, strata_error *err);

/* Sets the tokenizer.* metadata: copied from o->vocab_from, or a made-up
 * SentencePiece vocabulary of s->vocab tokens. Updates s->vocab to the
 * vocabulary's size. */
strata_status synth_vocab(gguf_writer *w, const synth_options *o, synth_shape *s, strata_error *err);

/* Writes the model; nothing is left at o->output on failure. */
strata_status synth_write(const synth_options *o, strata_error *err);

/* Deterministic normal(0, std) fill of one row; seeded per (seed, tensor, row)
 * so the output does not depend on thread count or chunking. */
void synth_fill_row(float *dst, uint64_t n, uint64_t seed, uint64_t tensor, uint64_t row, float std);

#endif
