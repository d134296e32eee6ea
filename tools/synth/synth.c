/* Writing a synthetic model: metadata, the llama tensor list, and tensor
 * data generated and quantized row by row on a few threads, streamed into
 * the GGUF writer in chunks of bounded size. */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/cpu/quantize.h"
#include "synth.h"
#include "util/error.h"
#include "util/fmt.h"

#define CHUNK_BYTES (32u << 20) /* quantized bytes generated per round */
#define MAX_THREADS 64

typedef struct synth_tensor {
    char name[GGUF_MAX_NAME];
    char role[16];
    int layer;
    uint64_t ne0, ne1;
    uint32_t type;
    bool is_norm;
} synth_tensor;

typedef struct tensor_list {
    synth_tensor *t;
    size_t n;
} tensor_list;

static void add(tensor_list *l, const synth_options *o, const char *role, int layer, uint64_t ne0, uint64_t ne1)
{
    synth_tensor *t = &l->t[l->n++];
    if (layer >= 0) snprintf(t->name, sizeof t->name, "blk.%d.%s.weight", layer, role);
    else snprintf(t->name, sizeof t->name, "%s.weight", role);
    snprintf(t->role, sizeof t->role, "%s", role);
    t->layer = layer;
    t->ne0 = ne0;
    t->ne1 = ne1;
    t->is_norm = strstr(role, "norm") != NULL;
    t->type = synth_tensor_type(o, role, layer, ne0);
}

/* The llama tensor set in the order llama.cpp's converter writes it. */
static tensor_list llama_tensors(const synth_options *o, const synth_shape *s)
{
    tensor_list l = {calloc(3 + 9 * s->n_layers, sizeof(synth_tensor)), 0};
    if (!l.t) return l;
    uint64_t kv_dim = s->n_embd / s->n_heads * s->n_kv_heads;
    add(&l, o, "token_embd", -1, s->n_embd, s->vocab);
    add(&l, o, "output_norm", -1, s->n_embd, 1);
    if (!o->tied_output) add(&l, o, "output", -1, s->n_embd, s->vocab);
    for (int i = 0; i < (int)s->n_layers; i++) {
        add(&l, o, "attn_norm", i, s->n_embd, 1);
        add(&l, o, "attn_q", i, s->n_embd, s->n_embd);
        add(&l, o, "attn_k", i, s->n_embd, kv_dim);
        add(&l, o, "attn_v", i, s->n_embd, kv_dim);
        add(&l, o, "attn_output", i, s->n_embd, s->n_embd);
        add(&l, o, "ffn_norm", i, s->n_embd, 1);
        add(&l, o, "ffn_gate", i, s->n_embd, s->n_ff);
        add(&l, o, "ffn_up", i, s->n_embd, s->n_ff);
        add(&l, o, "ffn_down", i, s->n_ff, s->n_embd);
    }
    return l;
}

static strata_status set_hparams(gguf_writer *w, const synth_options *o, const synth_shape *s, strata_error *err)
{
    char name[128];
    snprintf(name, sizeof name, "strata-synth %" PRIu64 "x%" PRIu64 " seed %" PRIu64, s->n_layers, s->n_embd, o->seed);
    strata_status st;
    if ((st = gguf_writer_set_str(w, "general.architecture", "llama", err)) ||
        (st = gguf_writer_set_str(w, "general.name", name, err)) ||
        (st = gguf_writer_set_u32(w, "llama.context_length", (uint32_t)s->ctx, err)) ||
        (st = gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)s->n_embd, err)) ||
        (st = gguf_writer_set_u32(w, "llama.block_count", (uint32_t)s->n_layers, err)) ||
        (st = gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)s->n_ff, err)) ||
        (st = gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)s->n_heads, err)) ||
        (st = gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)s->n_kv_heads, err)) ||
        (st = gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)(s->n_embd / s->n_heads), err)) ||
        (st = gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f, err)) ||
        (st = gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f, err)))
        return st;
    return STRATA_OK;
}

/* ---- parallel generation of one chunk of rows ---- */

typedef struct chunk_job {
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
    float *row = malloc(j->t->ne0 * sizeof(float));
    if (!row) {
        j->status = err_set(&j->err, STRATA_E_NOMEM, "strata-synth: out of memory");
        return NULL;
    }
    /* Weights are normal with std 1/sqrt(fan_in) so activations stay bounded;
     * norm weights are 1 (the identity scale). */
    float std = 1.0f / sqrtf((float)j->t->ne0);
    for (uint64_t r = (uint64_t)j->thread; r < j->rows && !j->status; r += (uint64_t)j->n_threads) {
        if (j->t->is_norm)
            for (uint64_t i = 0; i < j->t->ne0; i++) row[i] = 1.0f;
        else
            synth_fill_row(row, j->t->ne0, j->seed, j->tensor_index, j->row0 + r, std);
        j->status = quantize_row(j->t->type, row, j->out + r * j->row_bytes, j->t->ne0, &j->err);
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
    uint64_t row_bytes = ggml_row_bytes(t->type, t->ne0);
    uint64_t rows_per_chunk = CHUNK_BYTES / row_bytes ? CHUNK_BYTES / row_bytes : 1;
    chunk_job job = {.t = t, .tensor_index = index, .seed = o->seed, .row_bytes = row_bytes, .out = buf};
    for (uint64_t r = 0; r < t->ne1; r += rows_per_chunk) {
        job.row0 = r;
        job.rows = t->ne1 - r < rows_per_chunk ? t->ne1 - r : rows_per_chunk;
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
        uint64_t ne[2] = {t->ne0, t->ne1};
        strata_status st = gguf_writer_add_tensor(w, t->name, t->type, t->ne1 > 1 ? 2 : 1, ne, err);
        if (st) return st;
        uint64_t rb = ggml_row_bytes(t->type, t->ne0);
        if (rb > *max_row) *max_row = rb;
        *total += rb * t->ne1;
    }
    return STRATA_OK;
}

static strata_status write_model(gguf_writer *w, const synth_options *o, synth_shape *s, strata_error *err)
{
    strata_status st = synth_check_shape(s, err);
    if (!st) st = synth_vocab(w, o, s, err);
    if (!st) st = set_hparams(w, o, s, err);
    if (st) return st;
    tensor_list l = llama_tensors(o, s);
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
    synth_shape s = o->shape;
    strata_status st = write_model(w, o, &s, err);
    gguf_writer_free(w); /* removes PATH.tmp if the write did not complete */
    return st;
}
