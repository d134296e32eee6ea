#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"
#include "gguf/gguf.h"
#include "kernels/cpu/quantize.h"
#include "model/model_spec.h"
#include "plan/calibrate.h"
#include "util/error.h"
#include "util/clock.h"

/* A layer shape between the small and the large models people run. */
#define EMBD 1024
#define FF 2816
#define LAYERS 8
#define VOCAB 256
#define TOKENS 16


static strata_status add(gguf_writer *w, const char *name, uint32_t type, uint64_t ne0, uint64_t ne1,
                         strata_error *err)
{
    uint64_t ne[2] = {ne0, ne1};
    return gguf_writer_add_tensor(w, name, type, ne1 > 1 ? 2 : 1, ne, err);
}

static strata_status add_tensors(gguf_writer *w, strata_error *err)
{
    static const struct { const char *name; uint64_t ne0, ne1; } layer[] = {
        {"attn_norm", EMBD, 1}, {"attn_q", EMBD, EMBD}, {"attn_k", EMBD, EMBD}, {"attn_v", EMBD, EMBD},
        {"attn_output", EMBD, EMBD}, {"ffn_norm", EMBD, 1}, {"ffn_gate", EMBD, FF}, {"ffn_up", EMBD, FF},
        {"ffn_down", FF, EMBD},
    };
    strata_status st = add(w, "token_embd.weight", GGML_TYPE_Q4_K, EMBD, VOCAB, err);
    if (!st) st = add(w, "output_norm.weight", GGML_TYPE_F32, EMBD, 1, err);
    for (int l = 0; l < LAYERS && !st; l++)
        for (size_t i = 0; i < sizeof layer / sizeof layer[0] && !st; i++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, layer[i].name);
            st = add(w, name, layer[i].ne1 == 1 ? GGML_TYPE_F32 : GGML_TYPE_Q4_K, layer[i].ne0, layer[i].ne1, err);
        }
    return st;
}

static strata_status set_hparams(gguf_writer *w, strata_error *err)
{
    strata_status st;
    if ((st = gguf_writer_set_str(w, "general.architecture", "llama", err)) ||
        (st = gguf_writer_set_u32(w, "llama.context_length", 64, err)) ||
        (st = gguf_writer_set_u32(w, "llama.embedding_length", EMBD, err)) ||
        (st = gguf_writer_set_u32(w, "llama.block_count", LAYERS, err)) ||
        (st = gguf_writer_set_u32(w, "llama.feed_forward_length", FF, err)) ||
        (st = gguf_writer_set_u32(w, "llama.attention.head_count", 8, err)) ||
        (st = gguf_writer_set_u32(w, "llama.attention.head_count_kv", 8, err)))
        return st;
    return STRATA_OK;
}

/* Tensor data in file order: norms 1, matrices small pseudo-random values. */
static strata_status write_data(gguf_writer *w, const gguf_file *layout_unused, strata_error *err)
{
    (void)layout_unused;
    float row[FF];
    uint8_t q[FF];
    uint32_t x = 12345;
    for (int i = 0; i < FF; i++) row[i] = (float)((x = x * 1664525u + 1013904223u) >> 8) / 16777216.0f * 0.1f - 0.05f;
    strata_status st = STRATA_OK;
    /* token_embd, output_norm, then per layer the 9 tensors */
    for (int r = 0; r < VOCAB && !st; r++)
        if (!(st = quantize_row(GGML_TYPE_Q4_K, row, q, EMBD, err))) st = gguf_writer_write(w, q, 576, err);
    float ones[FF];
    for (int i = 0; i < FF; i++) ones[i] = 1.0f;
    if (!st) st = gguf_writer_write(w, ones, EMBD * 4, err);
    for (int l = 0; l < LAYERS && !st; l++) {
        static const uint64_t rows[9] = {0, EMBD, EMBD, EMBD, EMBD, 0, FF, FF, EMBD};
        static const uint64_t cols[9] = {EMBD, EMBD, EMBD, EMBD, EMBD, EMBD, EMBD, EMBD, FF};
        for (int t = 0; t < 9 && !st; t++) {
            if (!rows[t]) {
                st = gguf_writer_write(w, ones, cols[t] * 4, err);
                continue;
            }
            uint64_t rb = ggml_row_bytes(GGML_TYPE_Q4_K, cols[t]);
            if (!(st = quantize_row(GGML_TYPE_Q4_K, row, q, cols[t], err)))
                for (uint64_t r = 0; r < rows[t] && !st; r++) st = gguf_writer_write(w, q, rb, err);
        }
    }
    return st;
}

static strata_status write_model(const char *path, strata_error *err)
{
    gguf_writer *w = gguf_writer_new();
    if (!w) return err_set(err, STRATA_E_NOMEM, "out of memory");
    strata_status st = set_hparams(w, err);
    if (!st) st = add_tensors(w, err);
    if (!st) st = gguf_writer_open(w, path, err);
    if (!st) st = write_data(w, NULL, err);
    if (!st) st = gguf_writer_close(w, err);
    gguf_writer_free(w);
    return st;
}

/* Median seconds per decoded token. */
static double time_decode(engine *e, strata_error *err)
{
    float *logits = malloc(VOCAB * sizeof(float));
    double t[TOKENS];
    int32_t tok = 1;
    int n = 0;
    if (logits && engine_eval(e, &tok, 1, logits, false, err) == STRATA_OK) /* warm up */
        for (; n < TOKENS; n++) {
            double t0 = clock_seconds();
            if (engine_eval(e, &tok, 1, logits, false, err)) break;
            t[n] = clock_seconds() - t0;
        }
    free(logits);
    if (n < TOKENS) return 0;
    for (int i = 1; i < n; i++) /* insertion sort: 16 values */
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double s = t[j];
            t[j] = t[j - 1];
            t[j - 1] = s;
        }
    return t[n / 2];
}

double plan_calibrate_engine(int threads, const char *dir, strata_error *err)
{
    const char *tmp = dir ? dir : getenv("TMPDIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/strata-calibrate-%d.gguf", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    gguf_file *f = NULL;
    model_spec *spec = NULL;
    engine *e = NULL;
    double bw = 0;
    engine_params p = {.n_ctx = 64, .n_threads = threads > 0 ? threads : 1};
    if (write_model(path, err) == STRATA_OK && gguf_open(path, &f, err) == STRATA_OK &&
        model_spec_from_gguf(f, path, &spec, err) == STRATA_OK && engine_open(f, spec, &p, &e, err) == STRATA_OK) {
        double t = time_decode(e, err);
        uint64_t bytes = spec->tensor_bytes - spec->non_layer.by_group[GROUP_EMBD]; /* weights read per token */
        bw = t > 0 ? (double)bytes / t : 0;
    }
    engine_free(e);
    model_spec_free(spec);
    gguf_close(f);
    unlink(path);
    return bw;
}
