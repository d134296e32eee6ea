/* The forward pass over a batch of tokens, for every architecture of the
 * table (model/arch.h):
 *
 *   x = embed(tokens)                          (Gemma: x sqrt(n_embd))
 *   per layer:
 *     q, k, v = Wq n(x) (+bq), Wk n(x) (+bk), Wv n(x) (+bv)   (Phi-3: one fused Wqkv)
 *     q, k = norm per head (Qwen3, Gemma 3); rope(q), rope(k)
 *     a = Wo attention(q, k, v)               (window layers: the last n_swa keys)
 *     x += a                                  (Gemma 3: x += n(a))
 *     f = Wdown (act(Wgate n(x)) * Wup n(x))   (Phi-3: gate and up fused in Wup)
 *     x += f                                  (Gemma 3: x += n(f))
 *   logits = Wout n(x)
 *
 * with n() the RMS norm of that place. Each layer runs on its site's back
 * end (backend.h): on the CPU its weights are acquired from the store just
 * before it runs and released after; on a GPU they are resident there, and
 * the residual stream moves between sites where they change. */
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "engine/backend_cpu.h"
#include "engine/backend_vulkan.h"
#include "engine/engine_internal.h"
#include "util/error.h"

static void mm1(backend *b, const be_weight *w, act_buf src, act_buf dst, uint64_t n_out, uint32_t n_tok)
{
    mm_job j = {w, 0, n_out, src, dst};
    b->ops->matmul(b, &j, 1, n_tok);
}

/* q, k, v of the batch from ACT_XN: separate or fused projections, biases. */
static void qkv_projection(engine *e, backend *b, const be_weight *w, uint32_t n_tok)
{
    const model_dims *d = &e->w.d;
    mm_job qkv[3] = {{&w[LS_Q], 0, d->q_dim, ACT_XN, ACT_Q},
                     {&w[LS_K], 0, d->kv_dim, ACT_XN, ACT_K},
                     {&w[LS_V], 0, d->kv_dim, ACT_XN, ACT_V}};
    if (e->w.arch->fused_qkv) /* [q_dim + 2 kv_dim][n_embd]: Q rows, then K, then V */
        for (int i = 0; i < 3; i++) qkv[i].w = &w[LS_QKV];
    qkv[1].row0 = e->w.arch->fused_qkv ? d->q_dim : 0;
    qkv[2].row0 = e->w.arch->fused_qkv ? d->q_dim + d->kv_dim : 0;
    b->ops->matmul(b, qkv, 3, n_tok);
    if (w[LS_Q_BIAS].t) b->ops->add_bias(b, ACT_Q, &w[LS_Q_BIAS], d->q_dim, n_tok);
    if (w[LS_K_BIAS].t) b->ops->add_bias(b, ACT_K, &w[LS_K_BIAS], d->kv_dim, n_tok);
    if (w[LS_V_BIAS].t) b->ops->add_bias(b, ACT_V, &w[LS_V_BIAS], d->kv_dim, n_tok);
}

/* Attention of layer l where its KV cache lives (e->site[l], its decoding
 * site): on b itself, or, when a prompt batch streams the layer to the GPU
 * while its cache stays on the CPU, there: q, k and v come to the host, the
 * CPU stores k and v and attends, and its output goes back to b. */
static strata_status attend(engine *e, backend *b, uint64_t l, uint32_t n_tok, strata_error *err)
{
    backend *home = e->site[l];
    if (home == b) {
        b->ops->attention(b, l, n_tok);
        return STRATA_OK;
    }
    uint64_t q = (uint64_t)n_tok * e->w.d.q_dim, kv = (uint64_t)n_tok * e->w.d.kv_dim;
    const struct { act_buf a; uint64_t n; } in[] = {{ACT_Q, q}, {ACT_K, kv}, {ACT_V, kv}};
    strata_status st = STRATA_OK;
    for (int i = 0; i < 3 && !st; i++) {
        st = b->ops->to_host(b, in[i].a, e->act[in[i].a], in[i].n, err);
        if (!st) st = home->ops->from_host(home, in[i].a, e->act[in[i].a], in[i].n, err);
    }
    if (st) return st;
    home->ops->attention(home, l, n_tok);
    st = home->ops->to_host(home, ACT_ATT, e->act[ACT_ATT], q, err);
    return st ? st : b->ops->from_host(b, ACT_ATT, e->act[ACT_ATT], q, err);
}

static strata_status attention_block(engine *e, backend *b, uint64_t l, const be_weight *w, uint32_t n_tok,
                                     strata_error *err)
{
    const model_dims *d = &e->w.d;
    const arch_desc *a = e->w.arch;
    b->ops->norm(b, ACT_XN, ACT_X, &w[LS_ATTN_NORM], d->n_embd, n_tok);
    qkv_projection(e, b, w, n_tok);
    if (a->qk_norm) { /* each head of q and k: rows of head_dim */
        b->ops->norm(b, ACT_Q, ACT_Q, &w[LS_Q_NORM], d->head_dim, (uint64_t)n_tok * d->n_heads);
        b->ops->norm(b, ACT_K, ACT_K, &w[LS_K_NORM], d->head_dim, (uint64_t)n_tok * d->n_kv_heads);
    }
    b->ops->rope(b, ACT_Q, d->n_heads, d->q_dim, e->w.swa[l], n_tok);
    b->ops->rope(b, ACT_K, d->n_kv_heads, d->kv_dim, e->w.swa[l], n_tok);
    strata_status st = attend(e, b, l, n_tok, err);
    if (st) return st;
    mm1(b, &w[LS_OUT], ACT_ATT, ACT_XN, d->n_embd, n_tok);
    if (a->post_norms) b->ops->norm(b, ACT_XN, ACT_XN, &w[LS_POST_ATTN_NORM], d->n_embd, n_tok);
    b->ops->add(b, ACT_X, ACT_XN, (uint64_t)n_tok * d->n_embd);
    return STRATA_OK;
}

static strata_status ffn_block(engine *e, backend *b, uint64_t l, const be_weight *w, uint32_t n_tok,
                               strata_error *err)
{
    const model_dims *d = &e->w.d;
    const arch_desc *a = e->w.arch;
    b->ops->norm(b, ACT_XN, ACT_X, &w[LS_FFN_NORM], d->n_embd, n_tok);
    if (e->w.moe) { /* Mixtral, Qwen3-MoE: routed experts instead of one FFN */
        strata_status st = b->ops->moe(b, l, w, n_tok, err);
        if (!st) b->ops->add(b, ACT_X, ACT_XN, (uint64_t)n_tok * d->n_embd);
        return st;
    }
    mm_job gate_up[2] = {{&w[LS_GATE], 0, d->n_ff, ACT_XN, ACT_GATE}, {&w[LS_UP], 0, d->n_ff, ACT_XN, ACT_UP}};
    if (a->fused_gate_up) { /* [2 n_ff][n_embd]: the gate rows, then the up rows */
        gate_up[0].w = &w[LS_UP];
        gate_up[1].row0 = d->n_ff;
    }
    b->ops->matmul(b, gate_up, 2, n_tok);
    b->ops->glu(b, (uint64_t)n_tok * d->n_ff);
    mm1(b, &w[LS_DOWN], ACT_GATE, ACT_XN, d->n_embd, n_tok);
    if (a->post_norms) b->ops->norm(b, ACT_XN, ACT_XN, &w[LS_POST_FFN_NORM], d->n_embd, n_tok);
    b->ops->add(b, ACT_X, ACT_XN, (uint64_t)n_tok * d->n_embd);
    return STRATA_OK;
}

/* Moves the residual stream to the back end that runs next. */
static strata_status move_x(engine *e, backend **cur, backend *next, uint32_t n_tok, strata_error *err)
{
    if (*cur == next) return STRATA_OK;
    uint64_t n = (uint64_t)n_tok * e->w.d.n_embd;
    strata_status st = (*cur)->ops->to_host(*cur, ACT_X, e->act[ACT_X], n, err);
    if (!st) st = next->ops->from_host(next, ACT_X, e->act[ACT_X], n, err);
    *cur = next;
    return st;
}

static strata_status run_layer(engine *e, backend **cur, uint64_t l, uint32_t n_tok, strata_error *err)
{
    backend *b = e->pass_site[l];
    be_weight w[LS_COUNT];
    strata_status st = move_x(e, cur, b, n_tok, err);
    if (!st) st = b->ops->acquire(b, (uint32_t)l, w, err);
    if (st) return st;
    st = attention_block(e, b, l, w, n_tok, err);
    if (!st) st = ffn_block(e, b, l, w, n_tok, err);
    b->ops->release(b, (uint32_t)l);
    return st;
}

/* NaN or infinite logits mean broken weights or hyper-parameters: fail
 * rather than sample garbage (one pass over what the projection wrote). */
static strata_status check_logits(const float *logits, uint64_t n_rows, uint64_t n_vocab, strata_error *err)
{
    for (uint64_t i = 0; i < n_rows * n_vocab; i++)
        if (!isfinite(logits[i]))
            return err_set(err, STRATA_E_FORMAT, "the model produced %s logits (row %" PRIu64 ", token %" PRIu64
                           "): its weights contain NaN/Inf or a hyper-parameter (rope.freq_base, "
                           "layer_norm_rms_epsilon) is out of range", isnan(logits[i]) ? "NaN" : "infinite",
                           i / n_vocab, i % n_vocab);
    return STRATA_OK;
}

/* Rows whose logits are wanted: a suffix [first, n_tok) of the batch as
 * they are, else gathered at the front of ACT_X on the host (from where a
 * GPU output takes them back). */
static strata_status gather_out_rows(engine *e, backend **cur, uint32_t n_out, uint32_t n_tok, uint32_t *first,
                                     strata_error *err)
{
    *first = n_tok - n_out;
    bool suffix = true;
    for (uint32_t i = 0; i < n_out; i++) suffix = suffix && e->out_rows[i] == *first + i;
    if (suffix) return STRATA_OK;
    strata_status st = move_x(e, cur, &e->cpu, n_tok, err);
    uint64_t n_embd = e->w.d.n_embd;
    float *x = e->act[ACT_X];
    for (uint32_t i = 0; i < n_out && !st; i++)
        memmove(x + i * n_embd, x + (uint64_t)e->out_rows[i] * n_embd, n_embd * sizeof(float));
    *first = 0;
    return st;
}

/* Final norm and output projection of the rows asking for logits. */
static strata_status output(engine *e, backend **cur, uint32_t n_out, uint32_t n_tok, float *logits,
                            strata_error *err)
{
    uint32_t g = (uint32_t)e->w.d.n_layers, first = 0;
    backend *b = e->pass_site[g];
    be_weight w[LS_COUNT];
    strata_status st = gather_out_rows(e, cur, n_out, n_tok, &first, err);
    uint32_t rows = first + n_out; /* the batch's, or the gathered ones */
    if (!st) st = move_x(e, cur, b, rows, err);
    if (!st) st = b->ops->acquire(b, g, w, err);
    if (st) return st;
    st = b->ops->logits(b, &w[OS_NORM], &w[OS_PROJ], first, rows, logits, err);
    b->ops->release(b, g);
    return st ? st : check_logits(logits, n_out, e->w.d.n_vocab, err);
}

/* The back ends this batch runs on learn its positions (RoPE tables);
 * window caches make room. */
static strata_status begin_chunk(engine *e, const engine_entry *b, uint32_t n, strata_error *err)
{
    const model_dims *d = &e->w.d;
    for (uint32_t t = 0; t < n; t++) {
        e->tok_seq[t] = b[t].seq;
        e->tok_pos[t] = b[t].pos;
        op_rope_table(e->rope_cs + t * d->rope_dim, &e->rope, b[t].pos);
        if (d->n_swa) op_rope_table(e->rope_cs_swa + t * d->rope_dim, &e->rope_swa, b[t].pos);
        engine_seq *s = b[t].seq;
        if (b[t].pos == s->n_past) engine_slide_window(s, s->batch_end - s->n_past); /* its tokens in the batch */
    }
    strata_status st = e->cpu.ops->begin_chunk(&e->cpu, n, err);
    if (!st && e->gpu) st = e->gpu->ops->begin_chunk(e->gpu, n, err);
    return st;
}

static strata_status forward(engine *e, const engine_entry *b, uint32_t n, uint32_t n_out, float *logits,
                             strata_error *err)
{
    const model_dims *d = &e->w.d;
    backend *cur = &e->cpu; /* embeddings are gathered into host memory */
    e->prefill = n >= ENGINE_PREFILL_MIN_TOKENS;
    e->pass_site = e->prefill ? e->site_prefill : e->site;
    for (uint32_t t = 0; t < n; t++) e->tok_id[t] = b[t].token;
    strata_status st = store_gather_rows(e->store, e->w.global[GS_EMBD], e->tok_id, n, e->act[ACT_X], err);
    if (!st && e->w.arch->embd_scale) op_scale(e->act[ACT_X], sqrtf((float)d->n_embd), (uint64_t)n * d->n_embd);
    if (!st) st = begin_chunk(e, b, n, err);
    if (!st && e->w.moe && n == 1) backend_cpu_moe_prefetch_first(&e->cpu);
    for (uint64_t l = 0; l < d->n_layers && !st; l++) st = run_layer(e, &cur, l, n, err);
    if (!st && n_out) st = output(e, &cur, n_out, n, logits, err);
    else if (!st) st = move_x(e, &cur, &e->cpu, n, err); /* finish the GPU's work */
    return st;
}

/* Each entry's sequence belongs to e, its token to the vocabulary, its
 * position follows the sequence's and fits its context. */
static strata_status check_entry(engine *e, const engine_entry *b, uint32_t i, strata_error *err)
{
    const engine_entry *x = &b[i];
    if (x->token < 0 || (uint64_t)x->token >= e->w.d.n_vocab)
        return err_set(err, STRATA_E_INVALID, "token id %d is outside the vocabulary (%" PRIu64 ")", x->token,
                       e->w.d.n_vocab);
    uint32_t want = x->seq->batch_end++;
    if (x->pos != want)
        return err_set(err, STRATA_E_INVALID, "batch entry %u: position %" PRIu32 ", expected %" PRIu32
                       " (the context's next)", i, x->pos, want);
    if (x->pos >= x->seq->n_ctx)
        return err_set(err, STRATA_E_INVALID, "the tokens do not fit in the context: all %" PRIu32
                       " positions are used (raise -c)", x->seq->n_ctx);
    return STRATA_OK;
}

strata_status engine_decode(engine *e, const engine_entry *b, uint32_t n, float *logits, strata_error *err)
{
    if (n == 0) return err_set(err, STRATA_E_INVALID, "no tokens to evaluate");
    if (n > e->n_batch)
        return err_set(err, STRATA_E_INVALID, "a batch of %" PRIu32 " tokens exceeds the model's %" PRIu32, n,
                       e->n_batch);
    for (uint32_t i = 0; i < n; i++) { /* each context's next position, counted on by check_entry */
        if (!b[i].seq || b[i].seq->e != e)
            return err_set(err, STRATA_E_INVALID, "batch entry %u: no context of this model", i);
        b[i].seq->batch_end = b[i].seq->n_past;
    }
    uint32_t n_out = 0;
    for (uint32_t i = 0; i < n; i++) {
        strata_status st = check_entry(e, b, i, err);
        if (st) return st;
        if (b[i].logits) e->out_rows[n_out++] = i;
    }
    if (n_out && !logits) return err_set(err, STRATA_E_INVALID, "logits asked for but no buffer given");
    strata_status st = forward(e, b, n, n_out, logits, err);
    for (uint32_t i = 0; i < n && !st; i++) b[i].seq->n_past = b[i].seq->batch_end;
    return st;
}

strata_status engine_seq_eval(engine_seq *s, const int32_t *tokens, uint32_t n, float *logits, bool all_logits,
                              strata_error *err)
{
    engine *e = s->e;
    if (n == 0) return err_set(err, STRATA_E_INVALID, "no tokens to evaluate");
    if ((uint64_t)s->n_past + n > s->n_ctx)
        return err_set(err, STRATA_E_INVALID, "%" PRIu32 " tokens do not fit in the context: %" PRIu32 " of %" PRIu32
                       " positions are used (raise -c)", n, s->n_past, s->n_ctx);
    for (uint32_t done = 0; done < n;) {
        uint32_t m = n - done < e->n_batch ? n - done : e->n_batch;
        bool last = done + m == n;
        for (uint32_t t = 0; t < m; t++)
            e->entries[t] = (engine_entry){s, tokens[done + t], s->n_past + t, logits && (all_logits || (last && t == m - 1))};
        float *out = logits && all_logits ? logits + (uint64_t)done * e->w.d.n_vocab : logits;
        strata_status st = engine_decode(e, e->entries, m, out, err);
        if (st) return st;
        done += m;
    }
    return STRATA_OK;
}

/* The own sequence, at the engine's whole context. */
static strata_status own_seq(engine *e, strata_error *err)
{
    return e->own ? STRATA_OK : engine_seq_new(e, 0, &e->own, err);
}

strata_status engine_eval(engine *e, const int32_t *tokens, uint32_t n, float *logits, bool all_logits,
                          strata_error *err)
{
    strata_status st = own_seq(e, err);
    return st ? st : engine_seq_eval(e->own, tokens, n, logits, all_logits, err);
}

void engine_reset(engine *e)
{
    if (e->own) engine_seq_reset(e->own);
}

uint32_t engine_n_past(const engine *e) { return e->own ? e->own->n_past : 0; }
uint32_t engine_n_batch(const engine *e) { return e->n_batch; }
uint32_t engine_n_ctx(const engine *e) { return e->n_ctx; }
uint32_t engine_n_vocab(const engine *e) { return (uint32_t)e->w.d.n_vocab; }
uint32_t engine_n_layers(const engine *e) { return (uint32_t)e->w.d.n_layers; }
uint64_t engine_memory_bytes(const engine *e)
{
    return e->scratch_bytes + e->kv_reserve + store_get_stats(e->store).accounted_bytes;
}
uint64_t engine_buffer_bytes(const engine *e) { return e->scratch_bytes + e->kv_reserve; }
store_stats engine_store_stats(const engine *e) { return store_get_stats(e->store); }
store_expert_stats engine_expert_stats(const engine *e, uint32_t layer) { return store_get_expert_stats(e->store, layer); }
const uint32_t *engine_expert_picks(const engine *e) { return e->moe.picks; }

pool_stats engine_cpu_stats(const engine *e, uint32_t *threads)
{
    *threads = (uint32_t)pool_size(e->pool);
    return pool_get_stats(e->pool);
}

engine_gpu_stats engine_get_gpu_stats(const engine *e)
{
    engine_gpu_stats s = {.name = "", .note = e->gpu_note};
    if (!e->gpu) return s;
    for (uint64_t l = 0; l < e->w.d.n_layers; l++) s.layers += e->site[l] == e->gpu;
    s.output = e->site[e->w.d.n_layers] == e->gpu;
    s.device_bytes = backend_vulkan_device_bytes(e->gpu);
    s.device_peak = backend_vulkan_device_peak(e->gpu);
    s.streamed = backend_vulkan_n_streamed(e->gpu, &s.stream_depth);
    for (uint64_t g = 0; g <= e->w.d.n_layers; g++) s.prefill_streamed += e->site_prefill[g] != e->site[g];
    s.stream_copies = backend_vulkan_stream_copies(e->gpu);
    s.name = backend_vulkan_device_name(e->gpu);
    return s;
}
