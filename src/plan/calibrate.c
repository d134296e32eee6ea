#include <math.h>
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

/* Time per token = sum over types of weight bytes / rate + groups x the
 * per-group cost that does not grow with the layer (thread dispatches and
 * barriers, norms, rope) + a per-token cost (embedding row, the engine's
 * bookkeeping). Two tiny F32 models (64 wide, 1 and 8 layers: their
 * weights are a few microseconds of compute) give the per-group and the
 * per-token cost, which are nearly all of a model such as stories260K's
 * time. Two Q4_K shapes (1024 and 2048 wide, larger than the L3 cache:
 * their bytes stream from RAM as a real model's do) then give the Q4_K
 * rate and the per-layer cost that grows with the width (solve_width), and one model of 60-100 MB per other type its own rate: a Q8_0
 * model decodes at nearly twice Q4_K's bytes/s.
 *
 * Steps of many tokens (prompts, and many sequences decoding together) run
 * the tile (matrix-matrix) kernels, several times faster per token than
 * the dot products: the same wide models evaluate prompts of SHORT_PROMPT
 * and LONG_PROMPT tokens, and what the longer adds per token gives each
 * type's tile rate (the step's one pass over the weights cancels out). */
typedef struct calib_shape {
    uint64_t embd, ff, layers;
    uint32_t type;          /* ggml type of the layer matrices */
    hw_engine_type priced;  /* the rate it measures (the tiny shapes: none) */
} calib_shape;

enum { SHAPE_Q4_A, SHAPE_Q4_B, SHAPE_TINY_1, SHAPE_TINY_8, N_BASE_SHAPES };
static const calib_shape SHAPES[] = {
    {1024, 2816, 8, GGML_TYPE_Q4_K, HW_ENGINE_Q4_K}, {2048, 5632, 4, GGML_TYPE_Q4_K, HW_ENGINE_Q4_K},
    {64, 192, 1, GGML_TYPE_F32, HW_ENGINE_TYPES},    {64, 192, 8, GGML_TYPE_F32, HW_ENGINE_TYPES},
    {1024, 2816, 6, GGML_TYPE_Q6_K, HW_ENGINE_Q6_K}, {1024, 2816, 5, GGML_TYPE_Q8_0, HW_ENGINE_Q8_0},
    {1024, 2816, 3, GGML_TYPE_F16, HW_ENGINE_F16},   {1024, 2816, 2, GGML_TYPE_F32, HW_ENGINE_F32},
};
#define N_SHAPES (sizeof SHAPES / sizeof SHAPES[0])
#define MAX_FF 5632
#define VOCAB 256
#define TOKENS 24
#define TINY_RUN 3
#define CTX ((TINY_RUN + 1) * TOKENS + 16) /* a tiny model decodes TINY_RUN + 1 tokens per round */
#define SHORT_PROMPT 4
#define LONG_PROMPT 12 /* <= CTX: one step; short steps: a busy machine stretches long ones most */
#define PROMPT_RUNS 2  /* each the fastest of: the first `run` on a machine waits for the calibration */


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
    uint64_t head_dim = c->embd >= 256 ? 128 : 32, heads = c->embd / head_dim;
    return (model_dims){.n_embd = c->embd, .n_layers = c->layers, .n_heads = heads, .n_kv_heads = heads,
                        .head_dim = head_dim, .n_ff = c->ff, .n_vocab = VOCAB, .q_dim = c->embd, .kv_dim = c->embd};
}

/* The embedding's type: Q4_K, or F32 where rows are narrower than a Q4_K block. */
static uint32_t embd_type(const calib_shape *c) { return c->embd % 256 ? GGML_TYPE_F32 : GGML_TYPE_Q4_K; }

static bool calib_slot(layer_slot s) { return arch_layer_need(arch_find("llama"), false, s) == NEED_REQUIRED; }

static strata_status add_tensors(gguf_writer *w, const calib_shape *c, strata_error *err)
{
    model_dims d = calib_dims(c);
    const arch_desc *llama = arch_find("llama");
    strata_status st = add(w, arch_global_tensor_name(GS_EMBD), embd_type(c), c->embd, VOCAB, err);
    if (!st) st = add(w, arch_global_tensor_name(GS_OUTPUT_NORM), GGML_TYPE_F32, c->embd, 1, err);
    for (uint64_t l = 0; l < c->layers && !st; l++)
        for (int s = 0; s < LS_COUNT && !st; s++) {
            if (!calib_slot((layer_slot)s)) continue;
            char name[64];
            uint64_t ne[3];
            arch_layer_tensor_name((layer_slot)s, l, name, sizeof name);
            arch_layer_shape(&d, llama, (layer_slot)s, ne);
            st = add(w, name, arch_layer_slot_is_vector((layer_slot)s) ? GGML_TYPE_F32 : c->type, ne[0], ne[1], err);
        }
    return st;
}

static strata_status set_hparams(gguf_writer *w, const calib_shape *c, strata_error *err)
{
    strata_status st;
    if ((st = gguf_writer_set_str(w, "general.architecture", "llama", err)) ||
        (st = gguf_writer_set_u32(w, "llama.context_length", CTX, err)) ||
        (st = gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)c->embd, err)) ||
        (st = gguf_writer_set_u32(w, "llama.block_count", (uint32_t)c->layers, err)) ||
        (st = gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)c->ff, err)) ||
        (st = gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)calib_dims(c).n_heads, err)) ||
        (st = gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)calib_dims(c).n_heads, err)))
        return st;
    return STRATA_OK;
}

/* Tensor data in file order (that of add_tensors): norms 1, matrices small
 * pseudo-random values. */
static strata_status write_data(gguf_writer *w, const calib_shape *c, strata_error *err)
{
    float row[MAX_FF], ones[MAX_FF];
    uint8_t q[MAX_FF * 4]; /* a row in any type, F32 included */
    uint32_t x = 12345;
    for (int i = 0; i < MAX_FF; i++) {
        row[i] = (float)((x = x * 1664525u + 1013904223u) >> 8) / 16777216.0f * 0.1f - 0.05f;
        ones[i] = 1.0f;
    }
    strata_status st = STRATA_OK;
    uint64_t embd_row = ggml_row_bytes(embd_type(c), c->embd);
    if (!(st = quantize_row(embd_type(c), row, q, c->embd, err)))
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
            uint64_t rb = ggml_row_bytes(c->type, ne[0]);
            if (!(st = quantize_row(c->type, row, q, ne[0], err)))
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

/* The weights of one layer: Q, K, V and O (as wide as the model here), the
 * three feed-forward matrices and the two norms. */
static uint64_t layer_elems(const calib_shape *c) { return 4 * c->embd * c->embd + 3 * c->embd * c->ff + 2 * c->embd; }

/* One calibration model, open. */
typedef struct calib_model {
    char path[1024];
    int slot; /* in the signal cleanup list (valid once path is set) */
    gguf_file *f;
    model_spec *spec;
    engine *e;
    uint64_t bytes;       /* weights read per token */
    uint64_t typed_bytes; /* of them, the shape's own type (all of them for Q4_K) */
    double groups;        /* layers + the output group */
    double width;         /* layers x sqrt(a layer's weights): what width_s multiplies */
    double t[TOKENS];
    double step;          /* seconds per token: the lower quartile of t */
    double prompt[2];     /* seconds of a SHORT_PROMPT and a LONG_PROMPT step: the fastest of PROMPT_RUNS */
} calib_model;

static strata_status calib_open(calib_model *m, int i, int threads, const char *dir, strata_error *err)
{
    const char *tmp = dir ? dir : getenv("TMPDIR");
    snprintf(m->path, sizeof m->path, "%s/strata-calibrate-%d-%d.gguf", tmp && *tmp ? tmp : "/tmp", (int)getpid(), i);
    m->slot = tempfile_register(m->path); /* Ctrl-C removes it while it exists */
    engine_params p = {.n_ctx = CTX, .n_threads = threads > 0 ? threads : 1};
    strata_status st = write_model(m->path, &SHAPES[i], err);
    if (!st) st = gguf_open(m->path, &m->f, err);
    if (!st) st = model_spec_from_gguf(m->f, m->path, &m->spec, err);
    if (!st) st = engine_open(m->f, m->spec, &p, &m->e, err);
    if (!st) {
        m->bytes = m->spec->tensor_bytes - m->spec->non_layer.by_group[GROUP_EMBD];
        m->typed_bytes = SHAPES[i].type == GGML_TYPE_Q4_K ? m->bytes : m->spec->bytes_by_type[SHAPES[i].type];
        m->groups = (double)SHAPES[i].layers + 1;
        m->width = (double)SHAPES[i].layers * sqrt((double)layer_elems(&SHAPES[i]));
    }
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

/* The value below which a fraction q of t[0..n) lies (t is sorted). */
static double quantile_of(double *t, int n, double q)
{
    for (int i = 1; i < n; i++) /* insertion sort: a few values */
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double s = t[j];
            t[j] = t[j - 1];
            t[j - 1] = s;
        }
    return t[(int)(q * n)];
}

static bool is_tiny(size_t i) { return i == SHAPE_TINY_1 || i == SHAPE_TINY_8; }

/* Tokens of the models alternate, so that this machine's bandwidth, which
 * moves between seconds, moves every quartile alike. A tiny model decodes
 * TINY_RUN tokens in a row and keeps the fastest: its weights and buffers
 * fit in the cache and stay there in a real run, but the other models
 * evict them (timed cold, the per-group cost came out at 18 us here,
 * against 5 us in a run of stories260K), and a step of 20-60 us is often
 * stretched by a thread waiting for a core on a busy machine (the median
 * of single steps put 160 us per token where stories260K takes 35). */
static strata_status time_all(calib_model *m, strata_error *err)
{
    float logits[VOCAB];
    int32_t tok = 1;
    strata_status st = STRATA_OK;
    for (size_t i = 0; i < N_SHAPES && !st; i++) st = engine_eval(m[i].e, &tok, 1, logits, false, err); /* warm up */
    for (int n = 0; n < TOKENS && !st; n++)
        for (size_t i = 0; i < N_SHAPES && !st; i++) {
            if (is_tiny(i)) st = engine_eval(m[i].e, &tok, 1, logits, false, err);
            m[i].t[n] = 1e9;
            for (int k = 0; k < (is_tiny(i) ? TINY_RUN : 1) && !st; k++) {
                double t0 = clock_seconds();
                st = engine_eval(m[i].e, &tok, 1, logits, false, err);
                double t = clock_seconds() - t0;
                if (t < m[i].t[n]) m[i].t[n] = t;
            }
        }
    /* the lower quartile: what a step costs when no other process holds a
     * core. The profile describes the machine, and is kept: the median of a
     * calibration made while other programs competed for the two cores here
     * predicted a run 3-14x slower than it went later */
    for (size_t i = 0; i < N_SHAPES && !st; i++) m[i].step = quantile_of(m[i].t, TOKENS, 0.25);
    return st;
}

/* The wide models' prompt steps, alternating between the models and the
 * two lengths; each from an empty context. */
static strata_status time_prompts(calib_model *m, strata_error *err)
{
    static const uint32_t len[2] = {SHORT_PROMPT, LONG_PROMPT};
    int32_t tok[LONG_PROMPT];
    float logits[VOCAB];
    for (int i = 0; i < LONG_PROMPT; i++) tok[i] = 1 + i % (VOCAB - 1);
    strata_status st = STRATA_OK;
    for (size_t i = 0; i < N_SHAPES; i++) m[i].prompt[0] = m[i].prompt[1] = 1e9;
    for (int r = 0; r < PROMPT_RUNS && !st; r++)
        for (size_t i = 0; i < N_SHAPES && !st; i++)
            for (int k = 0; k < 2 && !st && !is_tiny(i); k++) {
                engine_reset(m[i].e);
                double t0 = clock_seconds();
                st = engine_eval(m[i].e, tok, len[k], logits, false, err);
                double t = clock_seconds() - t0;
                if (t < m[i].prompt[k]) m[i].prompt[k] = t;
            }
    return st;
}

/* Seconds one more token adds to a many-token step of model m (the plain
 * per-token time of the long step when noise makes the difference small). */
static double tile_token_s(const calib_model *m)
{
    double d = (m->prompt[1] - m->prompt[0]) / (LONG_PROMPT - SHORT_PROMPT);
    return d > 0.25 * m->prompt[1] / LONG_PROMPT ? d : m->prompt[1] / LONG_PROMPT;
}

/* The tile rates: Q4_K's from the two Q4_K shapes pooled, then each other
 * type's from its model less what its other tensors cost at Q4_K's. */
static void solve_tiles(const calib_model *m, hw_engine_calib *c)
{
    const calib_model *a = &m[SHAPE_Q4_A], *b = &m[SHAPE_Q4_B];
    c->tile_bw[HW_ENGINE_Q4_K] = (double)(a->bytes + b->bytes) / (tile_token_s(a) + tile_token_s(b));
    for (size_t i = N_BASE_SHAPES; i < N_SHAPES; i++) {
        double t = tile_token_s(&m[i]), rest = (double)(m[i].bytes - m[i].typed_bytes) / c->tile_bw[HW_ENGINE_Q4_K];
        if (t - rest < 0.25 * t) rest = 0;
        c->tile_bw[SHAPES[i].priced] = (double)m[i].typed_bytes / (t - rest);
    }
}

/* The two Q4_K shapes hold their bytes in layers of two widths: their
 * times less the fixed costs, y = bytes / rate + width x width_s, give both
 * unknowns. Narrow layers cost more per byte (1024 wide ran 10-15 % slower
 * per byte than 2048 wide here: a 219 MB model of the narrow shape was
 * predicted 18 % fast with one pooled rate). Noise that makes either come
 * out negative, or the width cost more than half the narrow shape's time,
 * keeps the pooled rate and no width cost. */
static void solve_width(const calib_model *a, const calib_model *b, hw_engine_calib *c)
{
    double ya = a->step - a->groups * c->layer_s - c->token_s, yb = b->step - b->groups * c->layer_s - c->token_s;
    double det = (double)a->bytes * b->width - (double)b->bytes * a->width;
    if (det == 0) return;
    double w = ((double)a->bytes * yb - (double)b->bytes * ya) / det, x = (ya * b->width - yb * a->width) / det;
    if (w <= 0 || x <= 0 || a->width * w > 0.5 * ya) return;
    c->width_s = w;
    c->type_bw[HW_ENGINE_Q4_K] = 1 / x;
}

/* The per-group and per-token costs from the tiny shapes (t = g o + k,
 * their weights' time neglected), then the Q4_K rate from the two wide
 * shapes, pooled: x = sum (t - g o - k) / sum bytes. Noise that makes a
 * cost come out negative makes it 0. */
static void solve_base(const calib_model *m, hw_engine_calib *c)
{
    const calib_model *t1 = &m[SHAPE_TINY_1], *t8 = &m[SHAPE_TINY_8], *a = &m[SHAPE_Q4_A], *b = &m[SHAPE_Q4_B];
    double o = (t8->step - t1->step) / (t8->groups - t1->groups);
    c->layer_s = o > 0 ? o : 0;
    double k = t1->step - t1->groups * c->layer_s;
    c->token_s = k > 0 ? k : 0;
    /* the fixed costs cannot be most of a wide model's step: when the tiny
     * models say so, they waited for a core; scaled down to half of it */
    double fixed_a = a->groups * c->layer_s + c->token_s;
    if (fixed_a > 0.5 * a->step) {
        c->layer_s *= 0.5 * a->step / fixed_a;
        c->token_s *= 0.5 * a->step / fixed_a;
    }
    double rest = (a->groups + b->groups) * c->layer_s + 2 * c->token_s, sum_t = a->step + b->step;
    if (sum_t - rest < 0.25 * sum_t) rest = 0; /* noise larger than the fixed part: the plain rate */
    c->type_bw[HW_ENGINE_Q4_K] = (double)(a->bytes + b->bytes) / (sum_t - rest);
    if (rest > 0) solve_width(a, b, c);
}

/* Another type's rate: its model's time less what the Q4_K figures say the
 * rest costs (the other tensors, the groups, the token). */
static double type_rate(const calib_model *m, const hw_engine_calib *c)
{
    double rest = (double)(m->bytes - m->typed_bytes) / c->type_bw[HW_ENGINE_Q4_K] + m->groups * c->layer_s +
                  m->width * c->width_s + c->token_s;
    double t = m->step - rest;
    if (t < 0.25 * m->step) t = m->step; /* noise larger than the fixed part: the plain rate */
    return (double)m->typed_bytes / t;
}

strata_status plan_calibrate_engine(int threads, const char *dir, hw_engine_calib *out, strata_error *err)
{
    calib_model m[N_SHAPES];
    memset(m, 0, sizeof m);
    memset(out, 0, sizeof *out);
    out->threads = threads > 0 ? threads : 1;
    strata_status st = STRATA_OK;
    for (size_t i = 0; i < N_SHAPES && !st; i++) st = calib_open(&m[i], (int)i, out->threads, dir, err);
    if (!st) st = time_all(m, err);
    if (!st) st = time_prompts(m, err);
    for (size_t i = 0; i < N_SHAPES && !st; i++)
        if (m[i].step <= 0) st = err_set(err, STRATA_E_IO, "calibration: a decode step took no measurable time");
    if (!st) {
        solve_base(m, out);
        for (size_t i = N_BASE_SHAPES; i < N_SHAPES; i++) out->type_bw[SHAPES[i].priced] = type_rate(&m[i], out);
        solve_tiles(m, out);
    }
    for (size_t i = 0; i < N_SHAPES; i++) calib_close(&m[i]);
    return st;
}
