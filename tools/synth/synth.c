/* Writing a synthetic model: metadata, the family's tensor list from the
 * architecture table, and tensor data generated and quantized row by row on
 * a few threads, streamed into the GGUF writer in chunks of bounded size. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/cpu/quantize.h"
#include "model/arch.h"
#include "synth.h"
#include "util/error.h"
#include "util/fmt.h"

#define CHUNK_BYTES (32u << 20) /* quantized bytes generated per round */
#define MAX_THREADS 64

typedef struct synth_tensor {
    char name[GGUF_MAX_NAME];
    char role[32]; /* the name without "blk.N." and ".weight" */
    int layer;
    uint32_t n_dims;
    uint64_t ne[3];     /* row length, rows, experts */
    uint64_t rows;      /* ne[1] * ne[2] */
    uint32_t type;
    bool ones;          /* norms: every weight 1 */
    float std;          /* otherwise normal(0, std) */
} synth_tensor;

typedef struct tensor_list {
    synth_tensor *t;
    size_t n;
} tensor_list;

/* Biases are small but non-zero, so a file exercises the bias add. */
#define BIAS_STD 0.05f

static void add(tensor_list *l, const synth_options *o, const char *name, int layer, const uint64_t ne[3],
                bool vector)
{
    synth_tensor *t = &l->t[l->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    const char *role = layer >= 0 ? strchr(strchr(name, '.') + 1, '.') + 1 : name; /* after "blk.N." */
    size_t len = strlen(role), suffix = strlen(".weight");
    if (len > suffix && !strcmp(role + len - suffix, ".weight")) len -= suffix;
    snprintf(t->role, sizeof t->role, "%.*s", (int)len, role);
    t->layer = layer;
    memcpy(t->ne, ne, sizeof t->ne);
    t->rows = ne[1] * ne[2];
    /* 1-D only where there is a single row, as the generator always did */
    t->n_dims = ne[2] > 1 ? 3 : ne[1] > 1 ? 2 : 1;
    t->ones = vector && strstr(t->role, "norm") != NULL;
    /* std 1/sqrt(fan_in) keeps activations bounded */
    t->std = vector ? BIAS_STD : 1.0f / sqrtf((float)ne[0]);
    t->type = synth_tensor_type(o, t->role, layer, ne[0]);
}

static model_dims dims_of(const synth_options *o)
{
    const synth_shape *s = &o->shape;
    model_dims d = {.n_embd = s->n_embd, .n_layers = s->n_layers, .n_heads = s->n_heads,
                    .n_kv_heads = s->n_kv_heads, .head_dim = o->head_dim, .n_ff = s->n_ff, .n_vocab = s->vocab,
                    .n_expert = o->n_expert, .n_expert_used = o->n_expert_used,
                    .n_ff_exp = o->n_ff_exp ? o->n_ff_exp : s->n_ff, .n_ff_shexp = o->n_ff_shexp,
                    .rope_dim = o->head_dim};
    d.q_dim = d.n_heads * d.head_dim;
    d.kv_dim = d.n_kv_heads * d.head_dim;
    return d;
}

/* The family's required tensors from the architecture table, in the order
 * llama.cpp's converter writes them: the globals, then each layer's in
 * slot order (for llama: the order this generator has always used). The
 * output is written unless tied; optional slots (llama's biases, rope
 * factors) are left out, and shared experts unless asked for. */
static tensor_list family_tensors(const synth_options *o, const arch_desc *a)
{
    const synth_shape *s = &o->shape;
    tensor_list l = {calloc(GS_COUNT + LS_COUNT * s->n_layers, sizeof(synth_tensor)), 0};
    if (!l.t) return l;
    model_dims d = dims_of(o);
    bool moe = arch_is_moe(a, &d);
    uint64_t ne[3];
    for (int g = 0; g < GS_COUNT; g++) {
        slot_need need = arch_global_need(a, (global_slot)g);
        if (need != NEED_REQUIRED && !(g == GS_OUTPUT && !o->tied_output)) continue;
        arch_global_shape(&d, (global_slot)g, ne);
        add(&l, o, arch_global_tensor_name((global_slot)g), -1, ne, g == GS_OUTPUT_NORM); /* the one vector */
    }
    for (int i = 0; i < (int)s->n_layers; i++)
        for (int sl = 0; sl < LS_COUNT; sl++) {
            slot_need need = arch_layer_need(a, moe, (layer_slot)sl);
            bool shared = sl == LS_GATE_SHEXP || sl == LS_UP_SHEXP || sl == LS_DOWN_SHEXP;
            if (need != NEED_REQUIRED && !(need == NEED_OPTIONAL && shared && o->n_ff_shexp)) continue;
            char name[GGUF_MAX_NAME];
            arch_layer_tensor_name((layer_slot)sl, (uint64_t)i, name, sizeof name);
            arch_layer_shape(&d, a, (layer_slot)sl, ne);
            add(&l, o, name, i, ne, arch_layer_slot_is_vector((layer_slot)sl));
        }
    return l;
}

/* ---- parallel generation of one chunk of rows ---- */

typedef struct chunk_job {
    const synth_options *o;
    const synth_tensor *t;
    uint64_t tensor_index, seed;
    uint64_t row0, rows, row_bytes;
    uint8_t *out;
    int thread, n_threads;
    strata_status status;
    strata_error err;
} chunk_job;

static void *chunk_worker(void *arg)
{
    chunk_job *j = arg;
    float *row = malloc(j->t->ne[0] * sizeof(float));
    if (!row) {
        j->status = err_set(&j->err, STRATA_E_NOMEM, "strata-synth: out of memory");
        return NULL;
    }
    /* norm weights are 1: the identity scale */
    for (uint64_t r = (uint64_t)j->thread; r < j->rows && !j->status; r += (uint64_t)j->n_threads) {
        if (j->t->ones)
            for (uint64_t i = 0; i < j->t->ne[0]; i++) row[i] = 1.0f;
        else
            synth_fill_row(row, j->t->ne[0], j->seed, j->tensor_index, j->row0 + r, j->t->std);
        synth_routing_row(j->o, j->t->role, j->t->layer, j->t->ne[1], j->row0 + r, row, j->t->ne[0]);
        j->status = quantize_row(j->t->type, row, j->out + r * j->row_bytes, j->t->ne[0], &j->err);
    }
    free(row);
    return NULL;
}

static strata_status generate_chunk(const chunk_job *proto, int n_threads, strata_error *err)
{
    chunk_job jobs[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    bool started[MAX_THREADS] = {false};
    for (int i = 0; i < n_threads; i++) {
        jobs[i] = *proto;
        jobs[i].thread = i;
        jobs[i].n_threads = n_threads;
        if (i > 0) started[i] = pthread_create(&tid[i], NULL, chunk_worker, &jobs[i]) == 0;
    }
    /* This thread does share 0, and the share of any thread that failed to start. */
    for (int i = 0; i < n_threads; i++)
        if (!started[i]) chunk_worker(&jobs[i]);
    for (int i = 1; i < n_threads; i++)
        if (started[i]) pthread_join(tid[i], NULL);
    for (int i = 0; i < n_threads; i++)
        if (jobs[i].status) {
            if (err) *err = jobs[i].err;
            return jobs[i].status;
        }
    return STRATA_OK;
}

typedef struct progress {
    bool on;
    uint64_t done, total;
    struct timespec start;
} progress;

static double seconds_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + 1e-9 * (double)(now.tv_nsec - t0->tv_nsec);
}

static void progress_show(const progress *p, bool final)
{
    if (!p->on) return;
    char a[32], b[32];
    double s = seconds_since(&p->start);
    fprintf(stderr, "\rstrata-synth: %s / %s (%.0f%%) %.1fs%s", fmt_bytes(p->done, a, sizeof a),
            fmt_bytes(p->total, b, sizeof b), p->total ? 100.0 * (double)p->done / (double)p->total : 100.0, s,
            final ? "\n" : "   ");
}

static strata_status write_tensor(gguf_writer *w, const synth_options *o, const synth_tensor *t, uint64_t index,
                                  uint8_t *buf, progress *p, strata_error *err)
{
    uint64_t row_bytes = ggml_row_bytes(t->type, t->ne[0]);
    uint64_t rows_per_chunk = CHUNK_BYTES / row_bytes ? CHUNK_BYTES / row_bytes : 1;
    chunk_job job = {.o = o, .t = t, .tensor_index = index, .seed = o->seed, .row_bytes = row_bytes, .out = buf};
    for (uint64_t r = 0; r < t->rows; r += rows_per_chunk) {
        job.row0 = r;
        job.rows = t->rows - r < rows_per_chunk ? t->rows - r : rows_per_chunk;
        strata_status st = generate_chunk(&job, o->threads, err);
        if (!st) st = gguf_writer_write(w, buf, job.rows * row_bytes, err);
        if (st) return st;
        p->done += job.rows * row_bytes;
        progress_show(p, false);
    }
    return STRATA_OK;
}

static strata_status add_tensors(gguf_writer *w, const tensor_list *l, uint64_t *max_row, uint64_t *total,
                                 strata_error *err)
{
    *max_row = *total = 0;
    for (size_t i = 0; i < l->n; i++) {
        const synth_tensor *t = &l->t[i];
        strata_status st = gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, err);
        if (st) return st;
        uint64_t rb = ggml_row_bytes(t->type, t->ne[0]);
        if (rb > *max_row) *max_row = rb;
        *total += rb * t->rows;
    }
    return STRATA_OK;
}

static strata_status write_model(gguf_writer *w, const synth_options *opt, strata_error *err)
{
    synth_options r;
    const synth_options *o = &r;
    strata_status st = synth_resolve(opt, &r, err);
    if (!st) st = synth_vocab(w, o, &r.shape, err);
    if (!st) st = synth_hparams(w, o, err);
    if (st) return st;
    tensor_list l = family_tensors(o, arch_find(o->arch));
    if (!l.t) return err_set(err, STRATA_E_NOMEM, "strata-synth: out of memory");
    uint64_t max_row, total;
    uint8_t *buf = NULL;
    st = add_tensors(w, &l, &max_row, &total, err);
    if (!st && !(buf = malloc(max_row > CHUNK_BYTES ? max_row : CHUNK_BYTES)))
        st = err_set(err, STRATA_E_NOMEM, "strata-synth: out of memory");
    if (!st) st = gguf_writer_open(w, o->output, err);
    progress p = {.on = o->progress, .total = total};
    clock_gettime(CLOCK_MONOTONIC, &p.start);
    for (size_t i = 0; i < l.n && !st; i++) st = write_tensor(w, o, &l.t[i], i, buf, &p, err);
    if (!st) st = gguf_writer_close(w, err);
    if (!st) {
        p.done = p.total;
        progress_show(&p, true);
    }
    free(buf);
    free(l.t);
    return st;
}

strata_status synth_write(const synth_options *o, strata_error *err)
{
    if (o->threads < 1 || o->threads > MAX_THREADS)
        return err_set(err, STRATA_E_INVALID, "strata-synth: --threads must be 1..%d", MAX_THREADS);
    gguf_writer *w = gguf_writer_new();
    if (!w) return err_set(err, STRATA_E_NOMEM, "strata-synth: out of memory");
    strata_status st = write_model(w, o, err);
    gguf_writer_free(w); /* removes PATH.tmp if the write did not complete */
    return st;
}
