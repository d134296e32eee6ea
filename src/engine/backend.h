/* The back-end interface: the operations of the forward pass, at the level
 * the forward pass works at, behind a table that each compute site (the
 * CPU, a Vulkan GPU) fills in. The forward pass (forward.c) is written once
 * against it; a layer runs on one back end, whose activation buffers and
 * KV cache hold that layer's data.
 *
 * Activations are named, not pointed to: each back end maps ACT_X, ACT_Q
 * ... to its own memory (host arrays, device buffers), every one f32 and
 * [n_batch][width] (the widths are in the comments). Weights are be_weight
 * handles: the tensor (type and shape) plus where its bytes are for this
 * back end. Ops are issued in order; a GPU back end records them and runs
 * them when the host needs a result (to_host, logits). */
#ifndef STRATA_ENGINE_BACKEND_H
#define STRATA_ENGINE_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "kernels/cpu/kernels.h"
#include "strata.h"

typedef enum act_buf {
    ACT_X,    /* [n_tok][n_embd] residual stream */
    ACT_XN,   /* [n_tok][n_embd] normed input, then a block's output */
    ACT_Q,    /* [n_tok][q_dim] */
    ACT_K,    /* [n_tok][kv_dim] */
    ACT_V,    /* [n_tok][kv_dim] */
    ACT_ATT,  /* [n_tok][q_dim] attention output */
    ACT_GATE, /* [n_tok][max(n_ff, n_ff_exp)] */
    ACT_UP,   /* [n_tok][max(n_ff, n_ff_exp)] */
    ACT_ROUTER, /* [n_tok][n_expert] router logits (mixture of experts; else empty) */
    ACT_XE,     /* [n_tok][n_embd] the rows routed to one expert, then its output */
    ACT_COUNT,
} act_buf;

/* A weight for one back end: CPU back ends read `host` with kernel `k`,
 * GPU back ends read device address `dev` (vectors there are f32). */
typedef struct be_weight {
    const gguf_tensor *t; /* NULL: absent */
    const void *host;
    const kernel_desc *k;
    uint64_t dev;
} be_weight;

/* One product: dst[t][r] = W[row0 + r] . src[t] for r < n_out. */
typedef struct mm_job {
    const be_weight *w;
    uint64_t row0, n_out;
    act_buf src, dst;
} mm_job;

typedef struct backend backend;

typedef struct backend_ops {
    const char *name;
    /* The weights of store group g (layer g, or the output group for
     * g = n_layers: [OS_NORM], [OS_PROJ]) for this pass, by slot (absent
     * slots have t == NULL); valid until release. */
    strata_status (*acquire)(backend *b, uint32_t g, be_weight *w, strata_error *err);
    void (*release)(backend *b, uint32_t g);
    /* Start of a batch of n_tok tokens at positions n_past.. (RoPE tables). */
    strata_status (*begin_chunk)(backend *b, uint32_t n_tok, strata_error *err);
    /* The first n floats of activation a to and from host memory (the
     * residual stream between sites; a layer's attention inputs and output
     * when its KV cache lives on another back end). */
    strata_status (*from_host)(backend *b, act_buf a, const float *x, uint64_t n, strata_error *err);
    strata_status (*to_host)(backend *b, act_buf a, float *x, uint64_t n, strata_error *err);
    /* dst[r] = rmsnorm(src[r]) * w for rows of n floats (dst may be src). */
    void (*norm)(backend *b, act_buf dst, act_buf src, const be_weight *w, uint64_t n, uint64_t rows);
    /* Products of one input, run together (fused where the back end can). */
    void (*matmul)(backend *b, const mm_job *jobs, int n_jobs, uint32_t n_tok);
    /* y[t] += bias ([n] floats) for n_tok rows. */
    void (*add_bias)(backend *b, act_buf y, const be_weight *bias, uint64_t n, uint32_t n_tok);
    /* RoPE on n_heads heads per row (row_stride floats apart), with the
     * window layers' table when swa. */
    void (*rope)(backend *b, act_buf x, uint64_t n_heads, uint64_t row_stride, bool swa, uint32_t n_tok);
    /* K and V of the batch into layer l's cache, then ACT_ATT from ACT_Q. */
    void (*attention)(backend *b, uint64_t l, uint32_t n_tok);
    /* ACT_GATE = act(ACT_GATE) * ACT_UP over n floats. */
    void (*glu)(backend *b, uint64_t n);
    /* Mixture of experts of layer l on ACT_XN: the router picks each
     * token's experts, each chosen expert's FFN runs once over the tokens
     * routed to it (its weights from the store's expert cache, not w), and
     * the weighted sum replaces ACT_XN. Fails on a read error. */
    strata_status (*moe)(backend *b, uint64_t l, const be_weight *w, uint32_t n_tok, strata_error *err);
    /* y += x over n floats. */
    void (*add)(backend *b, act_buf y, act_buf x, uint64_t n);
    /* Final norm and output projection of rows [first, n_tok) of ACT_X into
     * logits ([n_tok - first][n_vocab], host memory). */
    strata_status (*logits)(backend *b, const be_weight *norm, const be_weight *out, uint32_t first, uint32_t n_tok,
                            float *dst, strata_error *err);
} backend_ops;

struct backend {
    const backend_ops *ops;
    struct engine *e;
    void *state; /* the back end's own */
};

#endif
