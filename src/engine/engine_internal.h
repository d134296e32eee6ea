/* Internal to src/engine: the engine's state, shared by its files. */
#ifndef STRATA_ENGINE_ENGINE_INTERNAL_H
#define STRATA_ENGINE_ENGINE_INTERNAL_H

#include <stdio.h>

#include "engine/backend.h"
#include "engine/engine.h"
#include "engine/ops.h"
#include "engine/threadpool.h"
#include "engine/weights.h"
#include "kernels/cpu/kv_ops.h"
#include "kernels/cpu/swiglu.h"
#include "store/store.h"
#include "util/account.h"

/* Mixture-of-experts scratch and settings; k = n_expert_used. */
typedef struct moe_state {
    int32_t *sel;   /* [n_batch][k] each token's experts, most probable first */
    float *wt;      /* [n_batch][k] their weights */
    uint32_t *rows; /* [n_batch] the selections (t * k + i) routed to the expert at hand */
    float *out;     /* [n_batch * k][n_embd] each selection's expert output */
    int32_t *ids;   /* [n_expert] the distinct experts of a step */
    uint8_t *done;  /* [n_expert] experts computed in the current wave */
    int32_t *prev;  /* [n_layers][k] the experts the last decoded token chose (-1: none yet) */
    float *pred;    /* [n_expert] predicted router logits of the next layer */
    float *pred_x;  /* [n_embd] the residual normed for that prediction */
    float *shared;  /* [n_batch][n_embd] the shared expert's output, gated (NULL: the model has none) */
    uint32_t *picks; /* [n_layers][n_expert] times each layer routed a token to each expert since open */
    engine_moe_prefetch prefetch;
    FILE *trace;    /* STRATA_MOE_TRACE: one line per token and layer, "layer expert..." */
} moe_state;

/* One sequence's state on the CPU: its position and KV cache, per layer
 * [KV head][position slot][head_dim]: K rows of the engine's kv_type_k, V
 * rows of kv_type_v (ggml ids: F32, F16, Q8_0, Q4_0; a block type's row is
 * head_dim / 32 whole blocks). One head's positions are contiguous, so
 * attention streams them. Global layers hold every position (slot =
 * position); sliding-window layers hold kv_len[l] slots, slot 0 being
 * position swa_base. Layers on a GPU keep their cache there (kv_len 0
 * here). */
struct engine_seq {
    engine *e;
    uint32_t n_ctx, n_past, swa_base;
    uint32_t batch_end;         /* in engine_decode: the position after its entries so far */
    uint8_t *k_cache, *v_cache;
    uint64_t *kv_off;           /* n_layers: first row (head and slot) of layer l in each cache */
    uint32_t *kv_len;           /* n_layers: position slots of layer l */
    uint64_t bytes;             /* taken from the engine's KV reserve */
    int gpu_kv;                 /* the GPU's KV caches it holds (-1: no GPU) */
};

struct engine {
    const gguf_file *file;
    model_weights w;
    store *store;
    pool *pool;
    uint32_t n_ctx, n_batch;    /* a sequence's context at most; tokens per pass */
    uint32_t kv_type_k, kv_type_v;
    uint64_t k_head_bytes, v_head_bytes; /* bytes of one row: a head's K (V) at one position */
    uint64_t kv_reserve, kv_used; /* bytes of KV cache the sequences may take, and take now */
    mem_account *acct;          /* every buffer, KV cache and weight byte (params.account, or its own) */
    bool own_acct, kv_reserve_taken;
    uint32_t n_seq, n_seqs;     /* sequences the KV reserve is for; open now */
    engine_seq *own;            /* engine_eval's sequence (created on first use), or NULL */
    /* the batch being evaluated: token tok_id[t] belongs to tok_seq[t] at
     * position tok_pos[t] */
    int32_t *tok_id;            /* [n_batch] */
    engine_seq **tok_seq;       /* [n_batch] */
    uint32_t *tok_pos;          /* [n_batch] */
    engine_entry *entries;      /* [n_batch] engine_eval's batch */
    uint32_t *out_rows;         /* [n_batch] the batch rows whose logits are wanted */
    kv_ops kv;                  /* attention loops for these cache types */
    swiglu_fn glu;              /* the FFN gate: SwiGLU or GeGLU */
    kernel_mode kernels;
    rope_cfg rope, rope_swa;    /* global and sliding-window layers */
    float *act[ACT_COUNT];      /* the CPU back end's activations, shapes in backend.h */
    float *vec;                 /* [vec_len] a norm weight or bias as floats */
    float *rope_cs;             /* [n_batch][rope_dim]: (cos, sin) per pair and position */
    float *rope_cs_swa;         /* the same for window layers (rope_cs when the bases agree) */
    float *rope_factors;        /* [rope_dim / 2] frequency divisors, or NULL */
    float *scores;              /* [n_threads][engine_scores_per_thread] */
    void *act_scratch;          /* prepared activation rows (matmul_act_bytes) */
    moe_state moe;              /* mixture of experts (backend_cpu_moe.c) */
    backend cpu;                /* the CPU back end */
    backend *gpu;               /* a GPU back end, or NULL */
    backend **site;             /* n_layers + 1: where each layer, then the output, runs when decoding (a
                                   step of fewer than ENGINE_PREFILL_MIN_TOKENS tokens); a layer's KV
                                   cache lives there */
    backend **site_prefill;     /* n_layers + 1: the same for a step of ENGINE_PREFILL_MIN_TOKENS or more */
    backend **pass_site;        /* site or site_prefill: the forward pass in progress */
    bool prefill;               /* the pass in progress runs on site_prefill */
    char gpu_note[STRATA_ERROR_MAX + 64]; /* why the GPU is not used (for every layer) */
    uint64_t scratch_bytes;
};

/* Attention of the batch's tokens (queries in ACT_Q, K and V of the batch
 * already in the cache) for layer l; writes ACT_ATT (CPU back end). */
void engine_attention(engine *e, uint64_t l, uint32_t n_tok);
/* Floats of attention scores one thread needs: a KV head's query heads
 * against every position. */
uint64_t engine_scores_per_thread(const model_dims *d, uint64_t n_ctx);
/* Stores the batch's K and V rows (ACT_K, ACT_V) at their positions. */
void engine_store_kv(engine *e, uint64_t l, uint32_t n_tok);
/* Makes room for n_tok more positions of s in the window layers' caches. */
void engine_slide_window(engine_seq *s, uint32_t n_tok);
/* Position slots a layer's cache needs for a context and batch. */
uint32_t engine_kv_len(const model_weights *w, uint64_t l, uint32_t n_ctx, uint32_t n_batch);
/* place.c: completes sc's placement (residency per group, expert cache
 * units) by the planner's rule under the account's room, where the caller
 * gave none; *resident: the residency made here (free it after store_open,
 * NULL when none was made). On a budget too small, STRATA_E_NOMEM with
 * *min_weights the weights' least working set. */
strata_status engine_place_weights(engine *e, store_config *sc, bool **resident, uint64_t *min_weights,
                                   strata_error *err);

#endif
