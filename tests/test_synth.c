/* The synthetic model generator: the files it writes are valid, hold the
 * requested types and shapes, are reproducible, and follow llama.cpp's
 * Q4_K_M type recipe (checked against the llama.cpp-made fixtures); every
 * architecture it writes runs (or, with experts, plans) in `strata`; and
 * --routing-skew routes tokens as it promises (Plackett-Luce, r^-ALPHA). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tools/synth/synth.h"
#include "gguf/gguf.h"
#include "gguf_helpers.h"
#include "kernels/cpu/dequant.h"
#include "test.h"

static synth_options small(const char *out, const char *type)
{
    synth_options o = {.shape = {.n_embd = 256, .n_ff = 512, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                                 .vocab = 300, .ctx = 128},
                       .seed = 7, .threads = 2, .output = out};
    if (!synth_parse_type(type, &o.type, &o.mix)) test_fail(__FILE__, __LINE__, "type", " %s", type);
    return o;
}

static float *read_tensor_f32(const gguf_file *f, const gguf_tensor *t)
{
    size_t size;
    uint8_t *raw = read_whole_file(f->splits[t->split].path, &size);
    float *out = malloc(t->n_elems * sizeof(float));
    strata_error e;
    if (!raw || !out || dequant_row(t->type, raw + t->file_offset, out, t->n_elems, &e)) {
        free(out);
        out = NULL;
    }
    free(raw);
    return out;
}

TEST(test_synth_every_type_is_valid_and_scaled)
{
    const char *types[] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q4_k", "q5_k", "q6_k"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.gguf", test_tmpdir(), types[i]);
        synth_options o = small(path, types[i]);
        strata_error e;
        REQUIRE(synth_write(&o, &e) == STRATA_OK, " %s: %s", types[i], e.message);
        gguf_file *f;
        REQUIRE(gguf_open(path, &f, &e) == STRATA_OK, " %s", e.message);
        CHECK(f->n_tensors == 3 + 9 * 2);
        const gguf_tensor *q = gguf_find_tensor(f, "blk.1.attn_q.weight");
        const gguf_tensor *n = gguf_find_tensor(f, "blk.0.ffn_norm.weight");
        REQUIRE(q && n);
        CHECK(q->type == o.type && n->type == GGML_TYPE_F32, " %s", types[i]);
        float *w = read_tensor_f32(f, q), *nw = read_tensor_f32(f, n);
        REQUIRE(w && nw);
        double sum = 0, sq = 0;
        for (uint64_t k = 0; k < q->n_elems; k++) sum += w[k], sq += (double)w[k] * w[k];
        double mean = sum / (double)q->n_elems, sd = sqrt(sq / (double)q->n_elems - mean * mean);
        /* normal with std 1/sqrt(256) = 0.0625; quantization adds a little noise */
        CHECK(fabs(mean) < 0.003 && fabs(sd - 0.0625) < 0.006, " %s: mean %g sd %g", types[i], mean, sd);
        CHECK(nw[0] == 1.0f && nw[255] == 1.0f);
        free(w);
        free(nw);
        gguf_close(f);
    }
}

TEST(test_synth_deterministic_across_threads_and_seeds)
{
    char a[1024], b[1024], c[1024];
    snprintf(a, sizeof a, "%s/a.gguf", test_tmpdir());
    snprintf(b, sizeof b, "%s/b.gguf", test_tmpdir());
    snprintf(c, sizeof c, "%s/c.gguf", test_tmpdir());
    synth_options o = small(a, "q4_k_m");
    strata_error e;
    o.threads = 1;
    REQUIRE(synth_write(&o, &e) == STRATA_OK, " %s", e.message);
    o.threads = 3;
    o.output = b;
    REQUIRE(synth_write(&o, &e) == STRATA_OK, " %s", e.message);
    o.seed = 8;
    o.output = c;
    REQUIRE(synth_write(&o, &e) == STRATA_OK, " %s", e.message);
    size_t na, nb, nc;
    uint8_t *da = read_whole_file(a, &na), *db = read_whole_file(b, &nb), *dc = read_whole_file(c, &nc);
    REQUIRE(da && db && dc);
    CHECK(na == nb && !memcmp(da, db, na), " 1 and 3 threads differ");
    CHECK(na == nc && memcmp(da, dc, na) != 0, " seeds 7 and 8 give the same file");
    free(da);
    free(db);
    free(dc);
}

/* The tiny preset has the synth fixtures' shape, so the Q4_K_M recipe must
 * pick, tensor by tensor, what llama-quantize picked for synth-q4_k_m. */
TEST(test_synth_q4_k_m_matches_llama_quantize)
{
    const char *fix = test_fixture("synth-q4_k_m.gguf");
    if (!fix) return;
    char path[1024];
    snprintf(path, sizeof path, "%s/tiny.gguf", test_tmpdir());
    synth_options o = {.seed = 1, .threads = 2, .output = path};
    REQUIRE(synth_preset("tiny", &o.shape) && synth_parse_type("q4_k_m", &o.type, &o.mix));
    strata_error e;
    REQUIRE(synth_write(&o, &e) == STRATA_OK, " %s", e.message);
    gguf_file *ours, *theirs;
    REQUIRE(gguf_open(path, &ours, &e) == STRATA_OK && gguf_open(fix, &theirs, &e) == STRATA_OK);
    CHECK(ours->n_tensors == theirs->n_tensors);
    for (uint64_t i = 0; i < theirs->n_tensors; i++) {
        const gguf_tensor *t = &theirs->tensors[i], *m = gguf_find_tensor(ours, t->name);
        CHECK(m && m->type == t->type && m->ne[0] == t->ne[0] && m->ne[1] == t->ne[1], " %s: ours %s, llama.cpp %s",
              t->name, m ? ggml_type_name(m->type) : "missing", ggml_type_name(t->type));
    }
    gguf_close(ours);
    gguf_close(theirs);
}

TEST(test_synth_vocab_from_fixture)
{
    const char *fix = test_fixture("stories260K.gguf");
    if (!fix) return;
    char path[1024];
    snprintf(path, sizeof path, "%s/v.gguf", test_tmpdir());
    synth_options o = small(path, "f16");
    o.vocab_from = fix;
    strata_error e;
    REQUIRE(synth_write(&o, &e) == STRATA_OK, " %s", e.message);
    gguf_file *a, *b;
    REQUIRE(gguf_open(path, &a, &e) == STRATA_OK && gguf_open(fix, &b, &e) == STRATA_OK);
    gguf_array ta, tb;
    REQUIRE(gguf_get_arr(a, "tokenizer.ggml.tokens", &ta) && gguf_get_arr(b, "tokenizer.ggml.tokens", &tb));
    CHECK(ta.n == 512 && tb.n == 512);
    for (uint64_t i = 0; i < ta.n && i < tb.n; i++)
        CHECK(!strcmp(((const gguf_str *)ta.data)[i].ptr, ((const gguf_str *)tb.data)[i].ptr), " token %llu",
              (unsigned long long)i);
    const gguf_tensor *emb = gguf_find_tensor(a, "token_embd.weight");
    CHECK(emb && emb->ne[1] == 512);
    gguf_close(a);
    gguf_close(b);
}

TEST(test_synth_cli_errors_leave_no_file)
{
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s --n-heads 3 -o %s/x.gguf", test_synth_bin(), test_tmpdir());
    CHECK(test_run(cmd, &out, true) == 2 && strstr(out, "--n-heads"), " %s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s --type q3_k -o %s/x.gguf", test_synth_bin(), test_tmpdir());
    CHECK(test_run(cmd, &out, true) == 2 && strstr(out, "--type 'q3_k'"), " %s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s -o %s/nodir/x.gguf", test_synth_bin(), test_tmpdir());
    CHECK(test_run(cmd, &out, true) == 1 && strstr(out, "nodir/x.gguf.tmp: cannot create"), " %s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s --preset huge -o x", test_synth_bin());
    CHECK(test_run(cmd, &out, true) == 2 && strstr(out, "unknown preset"), " %s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "ls %s", test_tmpdir());
    CHECK(test_run(cmd, &out, true) == 0 && !strstr(out, "x.gguf"), " left: %s", out);
    free(out);
}

/* ---- architectures ---- */

static int synth_cli(const char *args, const char *path, char **out)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s -q -t 2 %s -o '%s'", test_synth_bin(), args, path);
    return test_run(cmd, out, true);
}

static int strata_cli(const char *args, char **out)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s", test_strata_bin(), args);
    return test_run(cmd, out, true);
}

typedef struct arch_case {
    const char *arch, *args; /* the family and its shape options */
    uint64_t head_dim, swa, n_tensors;
} arch_case;

/* 256-wide models with the built-in vocabulary (no fixture needed); gemma3
 * with its default head dimension and a 4-token window the prompt outgrows. */
#define DIMS "--n-embd 256 --n-ff 512 --n-heads 4 --n-kv-heads 2 --ctx 128 "
static const arch_case ARCH_CASES[] = {
    {"llama", DIMS "--n-layers 2 --type q4_k_m", 64, 0, 3 + 9 * 2},
    {"qwen2", DIMS "--n-layers 3 --type q8_0", 64, 0, 3 + 12 * 3},
    {"qwen3", DIMS "--n-layers 2 --type q4_k_m", 64, 0, 3 + 11 * 2},
    {"phi3", DIMS "--n-layers 4 --type q4_k_m", 64, 0, 3 + 6 * 4},
    {"gemma3", DIMS "--n-layers 6 --type q4_k_m --sliding-window 4", 256, 4, 2 + 13 * 6},
};

static void check_generates(const arch_case *c, const char *path)
{
    char args[2048], *out = NULL;
    snprintf(args, sizeof args, "run -m '%s' -p 'Once upon a time' -n 8 --temp 0 -t 2", path);
    int rc = strata_cli(args, &out);
    const char *g = out ? strstr(out, "generated ") : NULL;
    CHECK(rc == 0 && g && atoi(g + 10) >= 1, " %s: rc %d: %s", c->arch, rc, out);
    free(out);
}

static void check_inspect(const arch_case *c, const char *path)
{
    char args[2048], *out = NULL;
    snprintf(args, sizeof args, "inspect '%s' --json", path);
    int rc = strata_cli(args, &out);
    json_error_t je;
    json_t *j = rc == 0 && out ? json_loads(out, 0, &je) : NULL;
    CHECK(j, " %s: rc %d: %s", c->arch, rc, out);
    free(out);
    if (!j) return;
    const char *arch = json_string_value(json_object_get(j, "architecture"));
    CHECK(arch && !strcmp(arch, c->arch), " %s: architecture %s", c->arch, arch);
    CHECK(json_integer_value(json_object_get(j, "head_dim")) == (json_int_t)c->head_dim, " %s", c->arch);
    CHECK(json_integer_value(json_object_get(j, "sliding_window")) == (json_int_t)c->swa, " %s", c->arch);
    CHECK(json_integer_value(json_object_get(j, "n_tensors")) == (json_int_t)c->n_tensors, " %s: %lld tensors",
          c->arch, (long long)json_integer_value(json_object_get(j, "n_tensors")));
    json_decref(j);
}

static float *logits(const char *model, const char *flags, const char *path, size_t *n)
{
    char args[2048], *out = NULL;
    snprintf(args, sizeof args, "run -m '%s' -p 'Once upon a time' -t 2 %s --logits-out '%s'", model, flags, path);
    int rc = strata_cli(args, &out);
    CHECK(rc == 0, " %s %s: %s", model, flags, out);
    free(out);
    size_t bytes = 0;
    float *f = rc == 0 ? (float *)read_whole_file(path, &bytes) : NULL;
    *n = bytes / sizeof(float);
    return f;
}

/* The reference kernels with an F32 cache against the fast path: the fast
 * kernels quantize activations to 8 bits and the cache is F16, which moves
 * logits of magnitude ~1 by a few hundredths. */
static void check_reference_vs_fast(const arch_case *c, const char *model)
{
    char rp[1024], fp[1024];
    snprintf(rp, sizeof rp, "%s/%s.ref.f32", test_tmpdir(), c->arch);
    snprintf(fp, sizeof fp, "%s/%s.fast.f32", test_tmpdir(), c->arch);
    size_t nr, nf;
    float *ref = logits(model, "--reference --kv-f32", rp, &nr), *fast = logits(model, "", fp, &nf);
    CHECK(ref && fast && nr == nf && nr > 0 && nr % 512 == 0, " %s: %zu vs %zu logits", c->arch, nr, nf);
    double sum = 0, max = 0;
    bool finite = true;
    for (size_t i = 0; ref && fast && nr == nf && i < nr; i++) {
        finite = finite && isfinite(ref[i]) && isfinite(fast[i]);
        double d = fabs((double)ref[i] - fast[i]);
        sum += d;
        max = fmax(max, d);
    }
    double mean = nr ? sum / (double)nr : 0;
    CHECK(finite && mean < 0.05 && max < 0.3, " %s: mean |d| %.3g, max %.3g, finite %d", c->arch, mean, max, finite);
    free(ref);
    free(fast);
}

TEST(test_synth_every_architecture_runs)
{
    for (size_t i = 0; i < sizeof ARCH_CASES / sizeof ARCH_CASES[0]; i++) {
        const arch_case *c = &ARCH_CASES[i];
        char path[1024], args[1024], *out = NULL;
        snprintf(path, sizeof path, "%s/%s.gguf", test_tmpdir(), c->arch);
        snprintf(args, sizeof args, "--arch %s %s", c->arch, c->args);
        int rc = synth_cli(args, path, &out);
        CHECK(rc == 0, " %s: %s", c->arch, out);
        free(out);
        if (rc) continue;
        check_generates(c, path);
        check_inspect(c, path);
        check_reference_vs_fast(c, path);
    }
}

TEST(test_synth_qwen3moe_plans_and_runs)
{
    char path[1024], args[2048], *out = NULL;
    snprintf(path, sizeof path, "%s/moe.gguf", test_tmpdir());
    REQUIRE(synth_cli("--arch qwen3moe " DIMS "--n-layers 2 --type q4_k_m", path, &out) == 0, " %s", out);
    free(out);
    snprintf(args, sizeof args, "plan '%s'", path);
    CHECK(strata_cli(args, &out) == 0, " %s", out);
    free(out);
    snprintf(args, sizeof args, "run -m '%s' -p 'Once upon a time' -n 4 --temp 0 --stats", path);
    CHECK(strata_cli(args, &out) == 0 && strstr(out, "generated 4 tokens"), " %s", out);
    free(out);
    gguf_file *f;
    strata_error e;
    REQUIRE(gguf_open(path, &f, &e) == STRATA_OK, " %s", e.message);
    uint64_t n_exp = 0, used = 0, ff = 0;
    CHECK(gguf_get_u64(f, "qwen3moe.expert_count", &n_exp) && n_exp == 8);
    CHECK(gguf_get_u64(f, "qwen3moe.expert_used_count", &used) && used == 2);
    CHECK(gguf_get_u64(f, "qwen3moe.expert_feed_forward_length", &ff) && ff == 160, " %llu",
          (unsigned long long)ff); /* 512 / 3 in whole 32-blocks */
    const gguf_tensor *t = gguf_find_tensor(f, "blk.1.ffn_down_exps.weight");
    CHECK(t && t->n_dims == 3 && t->ne[0] == 160 && t->ne[1] == 256 && t->ne[2] == 8);
    gguf_close(f);
}

TEST(test_synth_cli_arch_errors)
{
    static const struct {
        const char *args, *want;
    } cases[] = {
        {"--arch mamba", "--arch 'mamba': unknown architecture (known: llama, qwen2, qwen2moe, qwen3, qwen3moe, phi3, "
                         "gemma3)"},
        {"--arch qwen2 --n-expert 4", "--n-expert: qwen2 has no experts"},
        {"--n-expert 4 --expert-ff 128", "--expert-ff: llama experts are --n-ff wide"},
        {"--n-expert-used 2", "--n-expert-used needs --n-expert"},
        {"--shared-ff 64", "--shared-ff needs --n-expert"},
        {"--arch qwen3 --shared-ff 64", "--shared-ff: qwen3 has no experts"},
        {"--arch qwen3moe --n-expert-used 9", "--n-expert-used 9 exceeds the 8 experts"},
        {"--n-expert 1", "--n-expert '1': must be at least 2"},
        {"--head-dim 0", "--head-dim '0': must be at least 2"},
        {"--arch gemma3 --head-dim 65", "--head-dim 65 must be even"},
        {"--sliding-window 4k", "--sliding-window '4k'"},
        {"--n-heads 3 --n-kv-heads 1", "--n-embd must be a multiple of --n-heads"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[1024], *out = NULL;
        snprintf(path, sizeof path, "%s/bad.gguf", test_tmpdir());
        int rc = synth_cli(cases[i].args, path, &out);
        const char *nl = out ? strchr(out, '\n') : NULL;
        CHECK(rc == 2 && out && strstr(out, cases[i].want) && nl && !nl[1], /* one line */
              " %s: rc %d: %s", cases[i].args, rc, out);
        free(out);
        CHECK(access(path, F_OK) != 0, " %s left a file", cases[i].args);
    }
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s --help", test_synth_bin());
    CHECK(test_run(cmd, &out, true) == 0 && strstr(out, "--arch NAME") && strstr(out, "--head-dim N") &&
              strstr(out, "--sliding-window N") && strstr(out, "--n-expert N") && strstr(out, "--n-expert-used K") &&
              strstr(out, "--expert-ff N") && strstr(out, "--shared-ff N") &&
              strstr(out, "llama, qwen2, qwen2moe, qwen3, qwen3moe, phi3, gemma3"),
          " %s", out);
    free(out);
}

/* Family defaults written in-process: gemma3's head dimension, window, tied
 * output and RoPE bases; explicit options win; --sliding-window 0 is none. */
TEST(test_synth_family_defaults)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/g.gguf", test_tmpdir());
    synth_options o = small(path, "q8_0");
    o.arch = "gemma3";
    strata_error e;
    gguf_file *f;
    REQUIRE(synth_write(&o, &e) == STRATA_OK && gguf_open(path, &f, &e) == STRATA_OK, " %s", e.message);
    uint64_t v = 0;
    double base = 0, swa_base = 0;
    CHECK(gguf_get_u64(f, "gemma3.attention.key_length", &v) && v == 256);
    CHECK(gguf_get_u64(f, "gemma3.attention.sliding_window", &v) && v == 512);
    CHECK(gguf_get_f64(f, "gemma3.rope.freq_base", &base) && base == 1e6);
    CHECK(gguf_get_f64(f, "gemma3.rope.freq_base_swa", &swa_base) && swa_base == 10000);
    CHECK(!gguf_find(f, "gemma3.rope.dimension_count") && !gguf_find_tensor(f, "output.weight"));
    const gguf_tensor *q = gguf_find_tensor(f, "blk.0.attn_q.weight");
    CHECK(q && q->ne[0] == 256 && q->ne[1] == 1024);
    gguf_close(f);
    o.n_swa = SYNTH_SWA_NONE;
    o.head_dim = 32;
    o.arch = "qwen2";
    REQUIRE(synth_write(&o, &e) == STRATA_OK && gguf_open(path, &f, &e) == STRATA_OK, " %s", e.message);
    CHECK(!gguf_find(f, "qwen2.attention.sliding_window"));
    CHECK(gguf_get_u64(f, "qwen2.attention.key_length", &v) && v == 32);
    CHECK(gguf_get_u64(f, "qwen2.rope.dimension_count", &v) && v == 32);
    CHECK(gguf_get_f64(f, "qwen2.rope.freq_base", &base) && base == 1e6);
    const gguf_tensor *b = gguf_find_tensor(f, "blk.1.attn_k.bias");
    float *bias = b ? read_tensor_f32(f, b) : NULL;
    CHECK(b && b->type == GGML_TYPE_F32 && b->ne[0] == 64 && bias && bias[0] != 0 && fabsf(bias[0]) < 0.3f);
    free(bias);
    gguf_close(f);
}

/* Metadata a fixture and our file must agree on: every "<arch>." key (the
 * norm epsilon aside: ours follows the released models) with its value. */
static void check_same_hparams(const gguf_file *ours, const gguf_file *theirs, const char *arch, const char *name)
{
    size_t len = strlen(arch);
    for (int pass = 0; pass < 2; pass++) {
        const gguf_file *a = pass ? ours : theirs, *b = pass ? theirs : ours;
        for (uint64_t i = 0; i < a->n_kv; i++) {
            const char *k = a->kv[i].key.ptr;
            if (strncmp(k, arch, len) || k[len] != '.' || strstr(k, "layer_norm_rms_epsilon")) continue;
            const gguf_kv *o = gguf_find(b, k);
            CHECK(o, " %s: %s only in %s", name, k, pass ? "ours" : "the fixture");
            double x = 0, y = 0;
            CHECK(!o || (gguf_value_to_f64(&a->kv[i].value, &x) && gguf_value_to_f64(&o->value, &y) && x == y),
                  " %s: %s: %g in %s, %g in the other", name, k, x, pass ? "ours" : "the fixture", y);
        }
    }
}

static void check_same_tensors(const gguf_file *ours, const gguf_file *theirs, const char *name)
{
    CHECK(ours->n_tensors == theirs->n_tensors, " %s: %llu vs %llu tensors", name,
          (unsigned long long)ours->n_tensors, (unsigned long long)theirs->n_tensors);
    for (uint64_t i = 0; i < theirs->n_tensors; i++) {
        const gguf_tensor *t = &theirs->tensors[i], *m = gguf_find_tensor(ours, t->name);
        CHECK(m && m->type == t->type && m->n_dims == t->n_dims && !memcmp(m->ne, t->ne, sizeof t->ne),
              " %s: %s: ours %s, llama.cpp %s", name, t->name, m ? ggml_type_name(m->type) : "missing",
              ggml_type_name(t->type));
    }
}

/* The arch fixtures were made by llama.cpp: with their shapes, our files
 * must have the same tensors, shapes, Q4_K_M types and hyper-parameters. */
TEST(test_synth_matches_arch_fixtures)
{
    static const struct {
        const char *fixture, *arch;
        uint64_t layers, n_ff, head_dim, n_swa, n_expert;
    } cases[] = {
        {"arch/qwen2-q4_k_m.gguf", "qwen2", 3, 768, 0, 0, 0},
        {"arch/qwen3-q4_k_m.gguf", "qwen3", 3, 768, 0, 0, 0},
        {"arch/phi3-q4_k_m.gguf", "phi3", 4, 768, 0, 0, 0},
        {"arch/gemma3-q4_k_m.gguf", "gemma3", 6, 768, 128, 4, 0},
        {"arch/qwen3moe-q4_k_m.gguf", "qwen3moe", 3, 768, 0, 0, 0},
        {"arch/mixtral-q4_k_m.gguf", "llama", 3, 512, 0, 0, 4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *fix = test_fixture(cases[i].fixture);
        if (!fix) return;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.gguf", test_tmpdir(), cases[i].arch);
        synth_options o = {.arch = cases[i].arch,
                           .shape = {.n_embd = 256, .n_ff = cases[i].n_ff, .n_layers = cases[i].layers, .n_heads = 4,
                                     .n_kv_heads = 2, .vocab = 512, .ctx = 512},
                           .head_dim = cases[i].head_dim, .n_swa = cases[i].n_swa, .n_expert = cases[i].n_expert,
                           .seed = 1, .threads = 2, .output = path};
        REQUIRE(synth_parse_type("q4_k_m", &o.type, &o.mix));
        strata_error e;
        gguf_file *ours, *theirs;
        REQUIRE(synth_write(&o, &e) == STRATA_OK, " %s: %s", cases[i].arch, e.message);
        REQUIRE(gguf_open(path, &ours, &e) == STRATA_OK && gguf_open(fix, &theirs, &e) == STRATA_OK, " %s", e.message);
        check_same_tensors(ours, theirs, cases[i].fixture);
        check_same_hparams(ours, theirs, cases[i].arch, cases[i].fixture);
        gguf_close(ours);
        gguf_close(theirs);
    }
}

/* ---- --routing-skew ---- */

/* A 16-expert, 2-used qwen3moe with a 4096-token vocabulary: each token is
 * one sample of the routing. */
static synth_options routed(const char *path, bool routing, double alpha)
{
    synth_options o = {.arch = "qwen3moe",
                       .shape = {.n_embd = 256, .n_ff = 768, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                                 .vocab = 4096, .ctx = 128},
                       .n_expert = 16, .n_expert_used = 2, .routing = routing, .routing_skew = alpha, .seed = 5,
                       .threads = 2, .output = path};
    if (!synth_parse_type("q4_k_m", &o.type, &o.mix)) test_fail(__FILE__, __LINE__, "type", " q4_k_m");
    return o;
}

/* Plackett-Luce: k = 2 experts drawn without replacement with weights
 * r^-alpha; the probability that the expert of rank r is among them. */
static void plackett_luce_2(double alpha, int n, double *incl)
{
    double w[64], sum = 0;
    for (int r = 0; r < n; r++) sum += w[r] = pow(r + 1, -alpha);
    for (int e = 0; e < n; e++) {
        double p = w[e] / sum;
        incl[e] = p;
        for (int f = 0; f < n; f++)
            if (f != e) incl[e] += (w[f] / sum) * (w[e] / (sum - w[f]));
    }
}

static int by_value_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The engine's routing rule (top-k of router x hidden state; the RMS norm
 * scales a token's logits alike, so it does not change the choice) applied
 * to each token's embedding, which is what the router reads when no layer
 * writes the dimensions it looks at. Ties (quantized embedding values can be
 * equal) are broken at random, as the layers' small perturbation breaks them
 * in a real run. freq[e]: the share of tokens that pick expert e. */
static void simulate_routing(const float *emb, const float *router, uint64_t n_embd, uint64_t vocab, int n_expert,
                             double *freq)
{
    uint64_t lcg = 12345;
    for (int e = 0; e < n_expert; e++) freq[e] = 0;
    for (uint64_t t = 0; t < vocab; t++) {
        double logit[64];
        for (int e = 0; e < n_expert; e++) {
            double s = 0;
            for (uint64_t i = 0; i < n_embd; i++) s += (double)router[e * n_embd + i] * emb[t * n_embd + i];
            lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
            logit[e] = s + 1e-6 * (double)(lcg >> 40) / (double)(1ull << 24);
        }
        for (int pick = 0; pick < 2; pick++) {
            int best = 0;
            for (int e = 1; e < n_expert; e++) best = logit[e] > logit[best] ? e : best;
            freq[best] += 1.0 / (double)vocab;
            logit[best] = -INFINITY;
        }
    }
}

static float *tensor_of(const gguf_file *f, const char *name, const gguf_tensor **t)
{
    *t = gguf_find_tensor(f, name);
    return *t ? read_tensor_f32(f, *t) : NULL;
}

/* Checks the routing a model's layer makes over its vocabulary against
 * Plackett-Luce with weights r^-alpha: returns the share of tokens that pick
 * its most popular expert, or -1. */
static double check_layer_routing(const gguf_file *f, int layer, double alpha, const char *what)
{
    const gguf_tensor *te, *tr;
    char name[64];
    snprintf(name, sizeof name, "blk.%d.ffn_gate_inp.weight", layer);
    float *emb = tensor_of(f, "token_embd.weight", &te), *router = tensor_of(f, name, &tr);
    double freq[16], sorted[16], theory[16], top = -1;
    CHECK(emb && router && tr->type == GGML_TYPE_F32 && tr->ne[0] == 256 && tr->ne[1] == 16, " %s", what);
    if (emb && router) {
        simulate_routing(emb, router, 256, te->ne[1], 16, freq);
        memcpy(sorted, freq, sizeof sorted);
        qsort(sorted, 16, sizeof(double), by_value_desc);
        plackett_luce_2(alpha, 16, theory);
        /* 4096 samples: a share of 0.125 has a standard error of 0.005 */
        double worst = 0;
        for (int r = 0; r < 16; r++) worst = fmax(worst, fabs(sorted[r] - theory[r]));
        CHECK(worst < 0.03, " %s layer %d: sorted pick rates differ from Plackett-Luce(r^-%g) by %.3f "
              "(top %.3f vs %.3f, last %.3f vs %.3f)", what, layer, alpha, worst, sorted[0], theory[0], sorted[15],
              theory[15]);
        top = sorted[0];
        /* the popularity follows the router's weight on the constant dimensions */
        if (alpha > 0) {
            int concordant = 0, pairs = 0;
            for (int a = 0; a < 16; a++)
                for (int b = a + 1; b < 16; b++) {
                    double ba = 0, bb = 0;
                    for (int i = 0; i < 32; i++) ba += router[a * 256 + i], bb += router[b * 256 + i];
                    pairs++;
                    concordant += (ba - bb) * (freq[a] - freq[b]) > 0;
                }
            CHECK(concordant >= pairs * 9 / 10, " %s layer %d: %d of %d pairs in bias order", what, layer,
                  concordant, pairs);
        }
    }
    free(emb);
    free(router);
    return top;
}

/* The routing carriers survive the layers: no layer writes the constant
 * dimensions [0, 32), and the noise dimensions [32, 48) get only a small
 * share of what the other rows write; the constant reads back as 1. */
static void check_carriers(const gguf_file *f)
{
    const gguf_tensor *t;
    float *emb = tensor_of(f, "token_embd.weight", &t);
    REQUIRE(emb);
    for (uint64_t tok = 0; tok < t->ne[1]; tok += 97)
        for (int i = 0; i < 32; i++)
            CHECK(fabsf(emb[tok * 256 + i] - 1.0f) < 0.06f, " token %llu dim %d: %g", (unsigned long long)tok, i,
                  emb[tok * 256 + i]);
    free(emb);
    const char *names[] = {"blk.0.attn_output.weight", "blk.1.ffn_down_exps.weight"};
    for (int n = 0; n < 2; n++) {
        float *w = tensor_of(f, names[n], &t);
        REQUIRE(w, " %s", names[n]);
        uint64_t n_in = t->ne[0], rows = t->ne[1] * t->ne[2];
        double sq[3] = {0}, cnt[3] = {0};
        for (uint64_t r = 0; r < rows; r++) {
            int band = r % 256 < 32 ? 0 : r % 256 < 48 ? 1 : 2;
            for (uint64_t i = 0; i < n_in; i++) sq[band] += (double)w[r * n_in + i] * w[r * n_in + i];
            cnt[band] += (double)n_in;
        }
        double rms[3] = {sqrt(sq[0] / cnt[0]), sqrt(sq[1] / cnt[1]), sqrt(sq[2] / cnt[2])};
        CHECK(rms[0] == 0 && rms[1] > 0 && rms[1] < 0.5 * rms[2], " %s: rms of rows 0-31 %g, 32-47 %g, others %g",
              names[n], rms[0], rms[1], rms[2]);
        free(w);
    }
}

TEST(test_synth_routing_skew)
{
    char plain[1024], flat[1024], skew[1024];
    snprintf(plain, sizeof plain, "%s/plain.gguf", test_tmpdir());
    snprintf(flat, sizeof flat, "%s/flat.gguf", test_tmpdir());
    snprintf(skew, sizeof skew, "%s/skew.gguf", test_tmpdir());
    synth_options a = routed(plain, false, 0), b = routed(flat, true, 0), c = routed(skew, true, 1.0);
    strata_error e;
    REQUIRE(synth_write(&a, &e) == STRATA_OK && synth_write(&b, &e) == STRATA_OK && synth_write(&c, &e) == STRATA_OK,
            " %s", e.message);
    gguf_file *fp, *ff, *fs;
    REQUIRE(gguf_open(plain, &fp, &e) == STRATA_OK && gguf_open(flat, &ff, &e) == STRATA_OK &&
                gguf_open(skew, &fs, &e) == STRATA_OK,
            " %s", e.message);
    /* only the embedding, the routers and the output projections change */
    size_t np, ns;
    uint8_t *dp = read_whole_file(plain, &np), *ds = read_whole_file(skew, &ns);
    REQUIRE(dp && ds && fp->n_tensors == fs->n_tensors);
    for (uint64_t i = 0; i < fp->n_tensors; i++) {
        const gguf_tensor *x = &fp->tensors[i], *y = gguf_find_tensor(fs, x->name);
        bool touched = strstr(x->name, "token_embd") || strstr(x->name, "ffn_gate_inp") ||
                       strstr(x->name, "attn_output") || strstr(x->name, "ffn_down_exps");
        bool same = y && x->type == y->type && x->n_bytes == y->n_bytes &&
                    !memcmp(dp + x->file_offset, ds + y->file_offset, x->n_bytes);
        CHECK(same != touched, " %s: %s", x->name, same ? "unchanged" : "changed");
    }
    free(dp);
    free(ds);
    check_carriers(fs);
    /* uniform at 0; at 1, in each layer, the most popular of the 16 experts
     * is among a token's 2 in 52 % of the tokens (Plackett-Luce), not 12.5 % */
    for (int l = 0; l < 2; l++) {
        double top0 = check_layer_routing(ff, l, 0.0, "--routing-skew 0");
        double top1 = check_layer_routing(fs, l, 1.0, "--routing-skew 1");
        CHECK(top0 < 0.15 && top1 > 0.45, " layer %d: most popular expert %.3f (skew 0), %.3f (skew 1)", l, top0, top1);
    }
    /* each layer has its own hot experts: the router's weights on the
     * constant dimensions are the same values, given to other experts */
    const gguf_tensor *t0, *t1;
    float *r0 = tensor_of(fs, "blk.0.ffn_gate_inp.weight", &t0), *r1 = tensor_of(fs, "blk.1.ffn_gate_inp.weight", &t1);
    REQUIRE(r0 && r1);
    int moved = 0;
    double s0 = 0, s1 = 0;
    for (int x = 0; x < 16; x++) {
        moved += r0[x * 256] != r1[x * 256];
        s0 += r0[x * 256];
        s1 += r1[x * 256];
    }
    CHECK(moved >= 8 && fabs(s0 - s1) < 1e-4, " %d experts changed popularity; bias sums %g, %g", moved, s0, s1);
    free(r0);
    free(r1);
    gguf_close(fp);
    gguf_close(ff);
    gguf_close(fs);
    /* the model stays sane: it samples without NaN logits */
    char args[2048], *out = NULL;
    snprintf(args, sizeof args, "run -m '%s' -p 'Once upon a time' -n 8 --temp 1 -s 3 -t 2", skew);
    CHECK(strata_cli(args, &out) == 0 && out && strstr(out, "generated 8 tokens"), " %s", out);
    free(out);
}

TEST(test_synth_routing_skew_cli)
{
    static const struct {
        const char *args, *want;
    } cases[] = {
        {"--arch qwen3 --routing-skew 1", "--routing-skew needs experts"},
        {"--arch qwen3moe --routing-skew -1", "--routing-skew '-1': expected a decimal number 0..16"},
        {"--arch qwen3moe --routing-skew 1e3", "--routing-skew '1e3'"},
        {"--arch qwen3moe --routing-skew 17", "--routing-skew '17'"},
        {"--arch qwen3moe --n-embd 64 --n-heads 4 --n-kv-heads 2 --routing-skew 1",
         "--routing-skew with 8 experts needs --n-embd 80 or more"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[1024], *out = NULL;
        snprintf(path, sizeof path, "%s/bad.gguf", test_tmpdir());
        int rc = synth_cli(cases[i].args, path, &out);
        CHECK(rc == 2 && out && strstr(out, cases[i].want), " %s: rc %d: %s", cases[i].args, rc, out);
        free(out);
        CHECK(access(path, F_OK) != 0, " %s left a file", cases[i].args);
    }
    char path[1024], *out = NULL;
    snprintf(path, sizeof path, "%s/mixtral.gguf", test_tmpdir());
    CHECK(synth_cli("--n-embd 256 --n-ff 512 --n-layers 2 --n-expert 4 --routing-skew 0.8 --type q8_0", path,
                    &out) == 0, " llama with experts: %s", out);
    free(out);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s --help", test_synth_bin());
    CHECK(test_run(cmd, &out, true) == 0 && out && strstr(out, "--routing-skew ALPHA"), " %s", out);
    free(out);
}
