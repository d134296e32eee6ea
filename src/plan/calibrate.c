#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"
#include "gguf/gguf.h"
#include "kernels/cpu/quantize.h"
#include "model/arch.h"
#include "model/model_spec.h"
#include "plan/calibrate.h"
#include "util/error.h"
#include "util/clock.h"
#include "util/outfile.h"

/* Two layer shapes: time per token = weight bytes / bw + layers x the
 * per-layer cost that does not grow with the layer (thread dispatches,
 * norms, rope). One shape alone cannot tell them apart: a 1024-wide
 * calibration under-predicted 2048-wide models by 25-40 %, a 2048-wide one
 * over-predicted 1024-wide models by 20 %. */
typedef struct calib_shape {
    uint64_t embd, ff, layers;
} calib_shape;

static const calib_shape SHAPES[2] = {{1024, 2816, 8}, {2048, 5632, 4}};
#define MAX_FF 5632
#define VOCAB 256
#define TOKENS 24


static strata_status add(gguf_writer *w, const char *name, uint32_t type, uint64_t ne0, uint64_t ne1,
                         strata_error *err)
{
    uint64_t ne[2] = {ne0, ne1};
    return gguf_writer_add_tensor(w, name, type, ne1 > 1 ? 2 : 1, ne, err);
}

/* The calibration model is a llama: its tensors are the slots the
 * architecture table requires, with the shapes it gives. */
static model_dims calib_dims(const calib_shape *c)
{
    uint64_t heads = c->embd / 128;
    return (model_dims){.n_embd = c->embd, .n_layers = c->layers, .n_heads = heads, .n_kv_heads = heads,
                        .head_dim = 128, .n_ff = c->ff, .n_vocab = VOCAB, .q_dim = c->embd, .kv_dim = c->embd};
}

static bool calib_slot(layer_slot s) { return arch_layer_need(arch_find("llama"), false, s) == NEED_REQUIRED; }

static strata_status add_tensors(gguf_writer *w, const calib_shape *c, strata_error *err)
{
    model_dims d = calib_dims(c);
    const arch_desc *llama = arch_find("llama");
    strata_status st = add(w, arch_global_tensor_name(GS_EMBD), GGML_TYPE_Q4_K, c->embd, VOCAB, err);
    if (!st) st = add(w, arch_global_tensor_name(GS_OUTPUT_NORM), GGML_TYPE_F32, c->embd, 1, err);
    for (uint64_t l = 0; l < c->layers && !st; l++)
        for (int s = 0; s < LS_COUNT && !st; s++) {
            if (!calib_slot((layer_slot)s)) continue;
            char name[64];
            uint64_t ne[3];
            arch_layer_tensor_name((layer_slot)s, l, name, sizeof name);
            arch_layer_shape(&d, llama, (layer_slot)s, ne);
            st = add(w, name, arch_layer_slot_is_vector((layer_slot)s) ? GGML_TYPE_F32 : GGML_TYPE_Q4_K, ne[0], ne[1],
                     err);
        }
    return st;
}

static strata_status set_hparams(gguf_writer *w, const calib_shape *c, strata_error *err)
{
    strata_status st;
    if ((st = gguf_writer_set_str(w, "general.architecture", "llama", err)) ||
        (st = gguf_writer_set_u32(w, "llama.context_length", 64, err)) ||
        (st = gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)c->embd, err)) ||
        (st = gguf_writer_set_u32(w, "llama.block_count", (uint32_t)c->layers, err)) ||
        (st = gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)c->ff, err)) ||
        (st = gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)(c->embd / 128), err)) ||
        (st = gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)(c->embd / 128), err)))
        return st;
    return STRATA_OK;
}

/* Tensor data in file order (that of add_tensors): norms 1, matrices small
 * pseudo-random values. */
static strata_status write_data(gguf_writer *w, const calib_shape *c, strata_error *err)
{
    float row[MAX_FF], ones[MAX_FF];
    uint8_t q[MAX_FF];
    uint32_t x = 12345;
    for (int i = 0; i < MAX_FF; i++) {
        row[i] = (float)((x = x * 1664525u + 1013904223u) >> 8) / 16777216.0f * 0.1f - 0.05f;
        ones[i] = 1.0f;
    }
    strata_status st = STRATA_OK;
    uint64_t embd_row = ggml_row_bytes(GGML_TYPE_Q4_K, c->embd);
    if (!(st = quantize_row(GGML_TYPE_Q4_K, row, q, c->embd, err)))
        for (int r = 0; r < VOCAB && !st; r++) st = gguf_writer_write(w, q, embd_row, err);
    if (!st) st = gguf_writer_write(w, ones, c->embd * 4, err);
    model_dims d = calib_dims(c);
    for (uint64_t l = 0; l < c->layers && !st; l++)
        for (int s = 0; s < LS_COUNT && !st; s++) {
            if (!calib_slot((layer_slot)s)) continue;
            uint64_t ne[3];
            arch_layer_shape(&d, arch_find("llama"), (layer_slot)s, ne);
            if (arch_layer_slot_is_vector((layer_slot)s)) {
                st = gguf_writer_write(w, ones, ne[0] * 4, err);
                continue;
            }
            uint64_t rb = ggml_row_bytes(GGML_TYPE_Q4_K, ne[0]);
            if (!(st = quantize_row(GGML_TYPE_Q4_K, row, q, ne[0], err)))
                for (uint64_t r = 0; r < ne[1] && !st; r++) st = gguf_writer_write(w, q, rb, err);
        }
    return st;
}

static strata_status write_model(const char *path, const calib_shape *c, strata_error *err)
{
    gguf_writer *w = gguf_writer_new();
    if (!w) return err_set(err, STRATA_E_NOMEM, "out of memory");
    strata_status st = set_hparams(w, c, err);
    if (!st) st = add_tensors(w, c, err);
    if (!st) st = gguf_writer_open(w, path, err);
    if (!st) st = write_data(w, c, err);
    if (!st) st = gguf_writer_close(w, err);
    gguf_writer_free(w);
    return st;
}

/* One calibration model, open. */
typedef struct calib_model {
    char path[1024];
    int slot; /* in the signal cleanup list (valid once path is set) */
    gguf_file *f;
    model_spec *spec;
    engine *e;
    uint64_t bytes; /* weights read per token */
    double t[TOKENS];
} calib_model;

static strata_status calib_open(calib_model *m, int i, int threads, const char *dir, strata_error *err)
{
    const char *tmp = dir ? dir : getenv("TMPDIR");
    snprintf(m->path, sizeof m->path, "%s/strata-calibrate-%d-%d.gguf", tmp && *tmp ? tmp : "/tmp", (int)getpid(), i);
    m->slot = tempfile_register(m->path); /* Ctrl-C removes it while it exists */
    engine_params p = {.n_ctx = 64, .n_threads = threads > 0 ? threads : 1};
    strata_status st = write_model(m->path, &SHAPES[i], err);
    if (!st) st = gguf_open(m->path, &m->f, err);
    if (!st) st = model_spec_from_gguf(m->f, m->path, &m->spec, err);
    if (!st) st = engine_open(m->f, m->spec, &p, &m->e, err);
    if (!st) m->bytes = m->spec->tensor_bytes - m->spec->non_layer.by_group[GROUP_EMBD];
    return st;
}

static void calib_close(calib_model *m)
{
    engine_free(m->e);
    model_spec_free(m->spec);
    gguf_close(m->f);
    if (!m->path[0]) return;
    unlink(m->path);
    tempfile_unregister(m->slot);
}

static double median_of(double *t, int n)
{
    for (int i = 1; i < n; i++) /* insertion sort: a few values */
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double s = t[j];
            t[j] = t[j - 1];
            t[j - 1] = s;
        }
    return t[n / 2];
}

/* Tokens of the two models alternate, so that this machine's bandwidth,
 * which moves between seconds, moves both medians alike. */
static strata_status time_both(calib_model m[2], strata_error *err)
{
    float logits[VOCAB];
    int32_t tok = 1;
    strata_status st = STRATA_OK;
    for (int i = 0; i < 2 && !st; i++) st = engine_eval(m[i].e, &tok, 1, logits, false, err); /* warm up */
    for (int n = 0; n < TOKENS && !st; n++)
        for (int i = 0; i < 2 && !st; i++) {
            double t0 = clock_seconds();
            st = engine_eval(m[i].e, &tok, 1, logits, false, err);
            m[i].t[n] = clock_seconds() - t0;
        }
    return st;
}

double plan_calibrate_engine(int threads, const char *dir, double *layer_seconds, strata_error *err)
{
    calib_model m[2] = {0};
    double t[2] = {0, 0};
    *layer_seconds = 0;
    strata_status st = calib_open(&m[0], 0, threads, dir, err);
    if (!st) st = calib_open(&m[1], 1, threads, dir, err);
    if (!st) st = time_both(m, err);
    for (int i = 0; i < 2 && !st; i++) t[i] = median_of(m[i].t, TOKENS);
    double b0 = (double)m[0].bytes, b1 = (double)m[1].bytes;
    calib_close(&m[0]);
    calib_close(&m[1]);
    if (st || t[0] <= 0 || t[1] <= 0) return 0;
    /* t_i = b_i / bw + L_i * o, solved for 1 / bw and o; when noise makes o
     * come out negative, the wide shape's rate alone is used */
    double L0 = (double)SHAPES[0].layers, L1 = (double)SHAPES[1].layers, det = b0 * L1 - b1 * L0;
    double inv_bw = (t[0] * L1 - t[1] * L0) / det, o = (b0 * t[1] - b1 * t[0]) / det;
    if (o <= 0 || inv_bw <= 0) return b1 / t[1];
    *layer_seconds = o;
    return 1.0 / inv_bw;
}
