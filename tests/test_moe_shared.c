/* Shared experts (ffn_*_shexp): no fixture has them, so the models are
 * synthesized (one layer, F32) and checked against a float64 computation
 * written here from the weights in the file. The attention output
 * projection is zeroed in the file, so the residual entering the FFN is
 * the token's embedding row and every logit is a closed formula:
 *
 *   xn = rmsnorm(emb[tok]) * ffn_norm
 *   p  = softmax(router xn); the top k by logit, weights p (qwen3moe:
 *        renormalized over the k, qwen2moe: as they are, unless the file's
 *        expert_weights_norm says otherwise), times expert_weights_scale
 *   y  = sum over the k of weight * down_e(silu(gate_e xn) * up_e xn)
 *   s  = down_sh(silu(gate_sh xn) * up_sh xn)   (qwen2moe: * sigmoid(g . xn))
 *   logits = output (rmsnorm(emb[tok] + y + s) * output_norm)
 *
 * The same models also stream (an expert cache of one, dense groups
 * streamed) with logits bit-identical to the resident run, and run on a
 * Vulkan device (lavapipe in CI) within the same 1e-4. */
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tools/synth/synth.h"
#include "engine/engine.h"
#include "gguf/gguf.h"
#include "gpu_helpers.h"
#include "model/model_spec.h"
#include "test.h"

#define N_EMBD 64
#define N_VOCAB 320
#define N_EXPERT 6
#define N_USED 2
#define FF_EXP 32
#define FF_SH 96
#define N_TOK 5

static const int32_t toks[N_TOK] = {3, 17, 101, 250, 17};

typedef struct shared_model {
    gguf_file *f;
    model_spec *s;
    char path[1024];
} shared_model;

/* The routing keys a model's file states (synth_options' conventions). */
typedef struct routing_keys {
    double scale; /* expert_weights_scale (0: absent) */
    int norm;     /* expert_weights_norm: 0 absent, 1 true, -1 false */
} routing_keys;

/* Writes the model with its attention output zeroed (every value of an F32
 * tensor: zero bytes) and opens it. */
static bool make_model(const char *arch, uint64_t seed, routing_keys keys, shared_model *m)
{
    snprintf(m->path, sizeof m->path, "%s/shexp-%s-%llu.gguf", test_tmpdir(), arch, (unsigned long long)seed);
    synth_options o = {.arch = arch, .shape = {N_EMBD, 128, 1, 4, 2, N_VOCAB, 64}, .n_expert = N_EXPERT,
                       .n_expert_used = N_USED, .n_ff_exp = FF_EXP, .n_ff_shexp = FF_SH,
                       .expert_weights_scale = keys.scale, .expert_weights_norm = keys.norm,
                       .type = GGML_TYPE_F32, .seed = seed, .threads = 1, .output = m->path};
    strata_error e;
    if (synth_write(&o, &e) || gguf_open(m->path, &m->f, &e)) {
        test_fail(__FILE__, __LINE__, "synth", " %s: %s", arch, e.message);
        return false;
    }
    const gguf_tensor *t = gguf_find_tensor(m->f, "blk.0.attn_output.weight");
    uint8_t *zero = t ? calloc(1, t->n_bytes) : NULL;
    int fd = open(m->path, O_WRONLY);
    bool ok = zero && t->type == GGML_TYPE_F32 && fd >= 0 &&
              pwrite(fd, zero, t->n_bytes, (off_t)t->file_offset) == (ssize_t)t->n_bytes;
    if (fd >= 0) close(fd);
    free(zero);
    if (ok && model_spec_from_gguf(m->f, m->path, &m->s, &e) == STRATA_OK) return true;
    test_fail(__FILE__, __LINE__, "model", " %s: %s", arch, ok ? e.message : "could not zero attn_output");
    gguf_close(m->f);
    return false;
}

static void close_model(shared_model *m)
{
    model_spec_free(m->s);
    gguf_close(m->f);
}

/* An F32 tensor's values as doubles (NULL: absent or not F32). */
static double *load(const shared_model *m, const char *name)
{
    const gguf_tensor *t = gguf_find_tensor(m->f, name);
    if (!t || t->type != GGML_TYPE_F32) return NULL;
    float *raw = malloc(t->n_bytes);
    double *v = malloc(t->n_elems * sizeof(double));
    int fd = open(m->path, O_RDONLY);
    bool ok = raw && v && fd >= 0 && pread(fd, raw, t->n_bytes, (off_t)t->file_offset) == (ssize_t)t->n_bytes;
    if (fd >= 0) close(fd);
    for (uint64_t i = 0; ok && i < t->n_elems; i++) v[i] = raw[i];
    free(raw);
    if (!ok) free(v);
    return ok ? v : NULL;
}

/* y[r] = W[r] . x for rows r < n_out of length n_in. */
static void matvec(const double *w, const double *x, uint64_t n_in, uint64_t n_out, double *y)
{
    for (uint64_t r = 0; r < n_out; r++) {
        double s = 0;
        for (uint64_t i = 0; i < n_in; i++) s += w[r * n_in + i] * x[i];
        y[r] = s;
    }
}

static void rmsnorm(const double *x, const double *g, double eps, double *out)
{
    double ss = 0;
    for (int i = 0; i < N_EMBD; i++) ss += x[i] * x[i];
    double scale = 1.0 / sqrt(ss / N_EMBD + eps);
    for (int i = 0; i < N_EMBD; i++) out[i] = x[i] * scale * g[i];
}

static double silu(double v) { return v / (1.0 + exp(-v)); }

/* out += scale * down(silu(gate xn) * up xn): one SwiGLU FFN of width ff. */
static void swiglu_add(const double *gate, const double *up, const double *down, uint64_t ff, const double *xn,
                       double scale, double *out)
{
    double g[FF_SH], u[FF_SH], y[N_EMBD];
    matvec(gate, xn, N_EMBD, ff, g);
    matvec(up, xn, N_EMBD, ff, u);
    for (uint64_t j = 0; j < ff; j++) g[j] = silu(g[j]) * u[j];
    matvec(down, g, ff, N_EMBD, y);
    for (int i = 0; i < N_EMBD; i++) out[i] += scale * y[i];
}

typedef struct ref_weights {
    double *emb, *ffn_norm, *router, *gate_e, *up_e, *down_e, *gate_sh, *up_sh, *down_sh, *gate_inp_sh, *out_norm,
        *out;
} ref_weights;

static bool load_weights(const shared_model *m, bool gated, ref_weights *w)
{
    *w = (ref_weights){load(m, "token_embd.weight"), load(m, "blk.0.ffn_norm.weight"),
                       load(m, "blk.0.ffn_gate_inp.weight"), load(m, "blk.0.ffn_gate_exps.weight"),
                       load(m, "blk.0.ffn_up_exps.weight"), load(m, "blk.0.ffn_down_exps.weight"),
                       load(m, "blk.0.ffn_gate_shexp.weight"), load(m, "blk.0.ffn_up_shexp.weight"),
                       load(m, "blk.0.ffn_down_shexp.weight"), load(m, "blk.0.ffn_gate_inp_shexp.weight"),
                       load(m, "output_norm.weight"), load(m, "output.weight")};
    double **all = (double **)w;
    bool ok = true;
    for (size_t i = 0; i < sizeof *w / sizeof(double *); i++) ok = ok && (all[i] || (i == 9 && !gated));
    return ok;
}

static void free_weights(ref_weights *w)
{
    double **all = (double **)w;
    for (size_t i = 0; i < sizeof *w / sizeof(double *); i++) free(all[i]);
}

/* The float64 logits of one token (see the top of the file); with_shared:
 * whether the shared expert is added (without it: how far the logits move). */
static void ref_logits(const ref_weights *w, int32_t tok, double eps, bool renorm, double scale, bool with_shared,
                       double *logits)
{
    double x[N_EMBD], xn[N_EMBD], r[N_EXPERT], p[N_EXPERT], xo[N_EMBD];
    memcpy(x, w->emb + (uint64_t)tok * N_EMBD, sizeof x);
    rmsnorm(x, w->ffn_norm, eps, xn);
    matvec(w->router, xn, N_EMBD, N_EXPERT, r);
    double max = r[0], sum = 0, picked = 0;
    for (int i = 1; i < N_EXPERT; i++) max = r[i] > max ? r[i] : max;
    for (int i = 0; i < N_EXPERT; i++) sum += p[i] = exp(r[i] - max);
    int sel[N_USED];
    for (int k = 0; k < N_USED; k++) {
        sel[k] = -1;
        for (int i = 0; i < N_EXPERT; i++) {
            bool taken = false;
            for (int j = 0; j < k; j++) taken = taken || sel[j] == i;
            if (!taken && (sel[k] < 0 || r[i] > r[sel[k]])) sel[k] = i;
        }
        picked += p[sel[k]] / sum;
    }
    double f[N_EMBD] = {0};
    for (int k = 0; k < N_USED; k++) {
        uint64_t e = (uint64_t)sel[k];
        double wt = p[e] / sum / (renorm ? picked : 1.0) * scale;
        swiglu_add(w->gate_e + e * FF_EXP * N_EMBD, w->up_e + e * FF_EXP * N_EMBD, w->down_e + e * N_EMBD * FF_EXP,
                   FF_EXP, xn, wt, f);
    }
    if (with_shared) {
        double g = 1.0;
        if (w->gate_inp_sh) {
            double dot = 0;
            for (int i = 0; i < N_EMBD; i++) dot += w->gate_inp_sh[i] * xn[i];
            g = 1.0 / (1.0 + exp(-dot));
        }
        swiglu_add(w->gate_sh, w->up_sh, w->down_sh, FF_SH, xn, g, f);
    }
    for (int i = 0; i < N_EMBD; i++) x[i] += f[i];
    rmsnorm(x, w->out_norm, eps, xo);
    matvec(w->out, xo, N_EMBD, N_VOCAB, logits);
}

/* All positions' logits of the prompt under p (NULL on failure, reported). */
static float *engine_logits(const shared_model *m, const engine_params *p)
{
    engine *eng;
    strata_error e;
    float *out = malloc((size_t)N_TOK * N_VOCAB * sizeof(float));
    strata_status st = engine_open(m->f, m->s, p, &eng, &e);
    if (!st) {
        st = engine_eval(eng, toks, N_TOK, out, true, &e);
        engine_free(eng);
    }
    if (!st) return out;
    test_fail(__FILE__, __LINE__, "engine", " %s: %s", m->path, e.message);
    free(out);
    return NULL;
}

/* The engine's logits against the float64 formula (renorm and scale: the
 * routed weights' rule this file must get), and streamed against resident;
 * with gpu, on a Vulkan device instead (every layer there, the experts
 * chosen from the router's logits read back), within the same 1e-4. */
static void check_against_reference(const char *arch, bool gated, routing_keys keys, bool renorm, double scale,
                                    bool gpu)
{
    shared_model m;
    if (!make_model(arch, 11, keys, &m)) return;
    ref_weights w;
    CHECK(m.s->hp.n_ff_shexp == FF_SH, " %s: expert_shared_feed_forward_length %llu", arch,
          (unsigned long long)m.s->hp.n_ff_shexp);
    if (!load_weights(&m, gated, &w)) {
        test_fail(__FILE__, __LINE__, "weights", " %s: a tensor is missing or not F32", arch);
        free_weights(&w);
        close_model(&m);
        return;
    }
    engine_params p = {.n_ctx = 32, .n_threads = 2, .kernels = KERNEL_REFERENCE, .kv_f32 = true};
    if (gpu) p.gpu = (engine_gpu){.mode = ENGINE_GPU_INDEX, .index = 0};
    float *got = engine_logits(&m, &p);
    double ref[N_VOCAB], without[N_VOCAB], worst = 0, moved = 0;
    for (int t = 0; got && t < N_TOK; t++) {
        ref_logits(&w, toks[t], m.s->hp.rms_eps, renorm, scale, true, ref);
        ref_logits(&w, toks[t], m.s->hp.rms_eps, renorm, scale, false, without);
        for (int v = 0; v < N_VOCAB; v++) {
            double d = fabs(got[t * N_VOCAB + v] - ref[v]), s = fabs(without[v] - ref[v]);
            worst = d > worst ? d : worst;
            moved = s > moved ? s : moved;
        }
    }
    CHECK(got && worst < 1e-4, " %s%s: logits differ from the float64 computation by %g", arch, gpu ? " on the GPU" : "",
          worst);
    /* the check can fail: the shared expert moves the logits far more than that */
    CHECK(moved > 0.05, " %s: the shared expert moves the logits by only %g", arch, moved);
    if (gpu) printf("    %s on the GPU: %.2g from the float64 computation\n", arch, worst);
    if (gpu) {
        free(got);
        free_weights(&w);
        close_model(&m);
        return;
    }
    /* streamed: an expert cache of one, the dense groups (with the shared expert) streamed */
    p.kernels = KERNEL_FAST;
    float *fast = engine_logits(&m, &p);
    p.store = (store_config){.stream_all = true, .expert_slots = 1};
    float *streamed = engine_logits(&m, &p);
    CHECK(fast && streamed && !memcmp(fast, streamed, (size_t)N_TOK * N_VOCAB * sizeof(float)),
          " %s: streamed logits differ from resident ones", arch);
    free(fast);
    free(streamed);
    free(got);
    free_weights(&w);
    close_model(&m);
}

/* qwen2moe: the shared expert gated by sigmoid(ffn_gate_inp_shexp . x), the
 * routed weights not renormalized. */
TEST(test_moe_shared_qwen2moe_matches_float64)
{
    check_against_reference("qwen2moe", true, (routing_keys){0}, false, 1.0, false);
}

/* qwen3moe with an ungated shared expert (expert_shared_count 1, as
 * DeepSeek-style files), the routed weights renormalized. */
TEST(test_moe_shared_ungated_matches_float64)
{
    check_against_reference("qwen3moe", false, (routing_keys){0}, true, 1.0, false);
}

/* expert_weights_scale multiplies the routed weights after selection, and
 * expert_weights_norm overrides the family's rule either way: qwen2moe
 * renormalized and scaled by 2.5, qwen3moe neither renormalized nor
 * scaled (a scale of 0, as llama.cpp reads it, is none). */
TEST(test_moe_expert_weights_scale_and_norm_match_float64)
{
    check_against_reference("qwen2moe", true, (routing_keys){.scale = 2.5, .norm = 1}, true, 2.5, false);
    check_against_reference("qwen3moe", false, (routing_keys){.norm = -1}, false, 1.0, false);
    /* the formula tells the cases apart: each rule moves these logits */
    shared_model m;
    if (!make_model("qwen2moe", 11, (routing_keys){.scale = 2.5, .norm = 1}, &m)) return;
    CHECK(m.s->hp.expert_weights_scale == 2.5 && m.s->hp.has_expert_weights_norm && m.s->hp.expert_weights_norm,
          " the keys read back: scale %g, norm %d/%d", m.s->hp.expert_weights_scale,
          m.s->hp.has_expert_weights_norm, m.s->hp.expert_weights_norm);
    ref_weights w;
    if (load_weights(&m, true, &w)) {
        double a[N_VOCAB], b[N_VOCAB], c[N_VOCAB], ab = 0, ac = 0;
        ref_logits(&w, toks[0], m.s->hp.rms_eps, true, 2.5, true, a);
        ref_logits(&w, toks[0], m.s->hp.rms_eps, true, 1.0, true, b);
        ref_logits(&w, toks[0], m.s->hp.rms_eps, false, 2.5, true, c);
        for (int v = 0; v < N_VOCAB; v++) {
            ab = fmax(ab, fabs(a[v] - b[v]));
            ac = fmax(ac, fabs(a[v] - c[v]));
        }
        CHECK(ab > 0.05 && ac > 0.01, " scale moves the logits by %g, renormalizing by %g", ab, ac);
    }
    free_weights(&w);
    close_model(&m);
}

/* On a Vulkan device: both shared experts, and expert_weights_scale with
 * expert_weights_norm (the GPU path routes with moe_route, the CPU's). */
TEST(test_moe_shared_gpu_matches_float64)
{
    if (!gpu_test_device()) return;
    check_against_reference("qwen2moe", true, (routing_keys){0}, false, 1.0, true);
    check_against_reference("qwen3moe", false, (routing_keys){0}, true, 1.0, true);
    check_against_reference("qwen2moe", true, (routing_keys){.scale = 2.5, .norm = 1}, true, 2.5, true);
}

/* A file declaring shared experts (expert_shared_count) without their
 * tensors is refused with a message naming the file. */
TEST(test_moe_shared_declared_but_absent_is_refused)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/shexp-none.gguf", test_tmpdir());
    synth_options o = {.arch = "qwen3moe", .shape = {N_EMBD, 128, 1, 4, 2, N_VOCAB, 64}, .n_expert = N_EXPERT,
                       .n_expert_used = N_USED, .type = GGML_TYPE_F32, .seed = 3, .threads = 1, .output = path};
    strata_error e;
    gguf_file *f = NULL;
    model_spec *s = NULL;
    REQUIRE(synth_write(&o, &e) == STRATA_OK && gguf_open(path, &f, &e) == STRATA_OK &&
                model_spec_from_gguf(f, path, &s, &e) == STRATA_OK,
            " %s", e.message);
    s->hp.n_expert_shared = 1; /* as if the metadata declared one */
    engine *eng = NULL;
    engine_params p = {.n_ctx = 32, .n_threads = 1};
    strata_status st = engine_open(f, s, &p, &eng, &e);
    CHECK(st == STRATA_E_FORMAT && strstr(e.message, "shexp") && strstr(e.message, "shexp-none.gguf"), " %s",
          st ? e.message : "accepted");
    engine_free(eng);
    model_spec_free(s);
    gguf_close(f);
}

/* inspect reports the shared expert's width, in JSON and in text. */
TEST(test_moe_shared_inspect_shows_width)
{
    shared_model m;
    if (!make_model("qwen2moe", 12, (routing_keys){0}, &m)) return;
    char cmd[2400], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s inspect --json '%s'", test_strata_bin(), m.path);
    CHECK(test_run(cmd, &out, true) == 0 && out && strstr(out, "\"n_ff_shexp\": 96"), " %s", out ? out : "");
    free(out);
    out = NULL;
    snprintf(cmd, sizeof cmd, "%s inspect '%s'", test_strata_bin(), m.path);
    CHECK(test_run(cmd, &out, true) == 0 && out && strstr(out, "a shared expert, FFN 96 wide"), " %s",
          out ? out : "");
    free(out);
    close_model(&m);
}
