/* model_spec and `strata inspect`: numbers checked against the fixtures'
 * documented shapes (fixtures/README.md), computed here by hand. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "model/model_spec.h"
#include "test.h"

static model_spec *spec_of(const char *path, gguf_file **f)
{
    strata_error e;
    model_spec *s = NULL;
    if (gguf_open(path, f, &e) || model_spec_from_gguf(*f, path, &s, &e)) {
        test_fail(__FILE__, __LINE__, "open", " %s", e.message);
        return NULL;
    }
    return s;
}

TEST(test_inspect_stories260k_spec)
{
    const char *p = test_fixture("stories260K.gguf");
    if (!p) return;
    gguf_file *f = NULL;
    model_spec *s = spec_of(p, &f);
    REQUIRE(s);
    CHECK(!strcmp(s->hp.arch, "llama") && s->hp.n_layers == 5 && s->hp.n_embd == 64 && s->hp.n_heads == 8);
    CHECK(s->hp.n_kv_heads == 4 && s->hp.head_dim_k == 8 && s->hp.vocab_size == 512 && s->hp.n_ff == 172);
    /* dim 64, ffn 172, 5 layers, kv dim 32, vocab 512, separate output */
    uint64_t per_layer = 64 * 64 * 2 + 64 * 32 * 2 + 64 * 172 * 3 + 64 * 2;
    CHECK(s->n_params == 2 * 64 * 512 + 5 * per_layer + 64, " n_params %llu", (unsigned long long)s->n_params);
    CHECK(s->layers[0].by_group[GROUP_ATTN] == (64 * 64 * 2 + 64 * 32 * 2) * 4);
    CHECK(s->layers[4].by_group[GROUP_FFN] == 64 * 172 * 3 * 4 && s->layers[4].by_group[GROUP_NORM] == 128 * 4);
    CHECK(s->non_layer.by_group[GROUP_EMBD] == 64 * 512 * 4 && s->non_layer.by_group[GROUP_OUTPUT] == 64 * 512 * 4);
    /* K and V rows of 4 heads x 8 dims per layer */
    CHECK(model_kv_bytes_per_token(s, GGML_TYPE_F16) == 5 * 2 * 32 * 2);
    CHECK(model_kv_bytes_per_token(s, GGML_TYPE_Q8_0) == 5 * 2 * 34);
    CHECK(model_kv_bytes_per_token(s, GGML_TYPE_Q4_0) == 5 * 2 * 18);
    CHECK(model_kv_bytes(s, GGML_TYPE_F16, 2048) == 2048ull * 640);
    model_spec_free(s);
    gguf_close(f);
}

TEST(test_inspect_moe_fixture)
{
    const char *p = test_fixture("arch/mixtral-q4_k_m.gguf");
    if (!p) return;
    gguf_file *f = NULL;
    model_spec *s = spec_of(p, &f);
    REQUIRE(s);
    CHECK(s->hp.n_expert == 4 && s->hp.n_expert_used == 2);
    for (uint64_t l = 0; l < s->hp.n_layers; l++)
        CHECK(s->layers[l].by_group[GROUP_FFN_EXPERTS] > s->layers[l].by_group[GROUP_ATTN], " layer %llu",
              (unsigned long long)l);
    model_spec_free(s);
    gguf_close(f);
}

/* A header-only model of the given architecture and extra keys. */
static void write_arch(const char *path, const char *arch, int layers, bool window, bool kv_array)
{
    gguf_writer *w = gguf_writer_new();
    strata_error e;
    char key[128];
    gguf_writer_set_str(w, "general.architecture", arch, &e);
    snprintf(key, sizeof key, "%s.block_count", arch);
    if (strcmp(arch, "mystery")) gguf_writer_set_u32(w, key, (uint32_t)layers, &e);
    snprintf(key, sizeof key, "%s.embedding_length", arch);
    gguf_writer_set_u32(w, key, 128, &e);
    snprintf(key, sizeof key, "%s.attention.head_count", arch);
    gguf_writer_set_u32(w, key, 4, &e);
    snprintf(key, sizeof key, "%s.attention.head_count_kv", arch);
    uint32_t heads[4] = {2, 0, 1, 2};
    if (kv_array) gguf_writer_set_arr(w, key, GGUF_TYPE_U32, heads, 4, &e);
    else gguf_writer_set_u32(w, key, 2, &e);
    snprintf(key, sizeof key, "%s.attention.sliding_window", arch);
    if (window) gguf_writer_set_u32(w, key, 16, &e);
    uint64_t ne[2] = {128, 8};
    for (int l = 0; l < layers; l++) {
        snprintf(key, sizeof key, "blk.%d.attn_q.weight", l);
        gguf_writer_add_tensor(w, key, GGML_TYPE_F32, 2, ne, &e);
    }
    gguf_writer_open(w, path, &e);
    float zeros[128 * 8] = {0};
    for (int l = 0; l < layers; l++) gguf_writer_write(w, zeros, sizeof zeros, &e);
    CHECK(gguf_writer_close(w, &e) == STRATA_OK, " %s", e.message);
    gguf_writer_free(w);
}

TEST(test_inspect_kv_sliding_window_and_per_layer_heads)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/g2.gguf", test_tmpdir());
    write_arch(path, "gemma2", 4, true, false);
    gguf_file *f = NULL;
    model_spec *s = spec_of(path, &f);
    REQUIRE(s);
    /* head dim 32, 2 KV heads: K+V = 128 f16 values = 256 bytes per layer per token;
     * gemma2 alternates local (window 16) and global layers: 0 and 2 are local */
    CHECK(model_kv_bytes_per_token(s, GGML_TYPE_F16) == 4 * 256);
    CHECK(model_kv_bytes(s, GGML_TYPE_F16, 100) == 2 * 256 * 16 + 2 * 256 * 100);
    CHECK(model_kv_bytes(s, GGML_TYPE_F16, 10) == 4 * 256 * 10);
    model_spec_free(s);
    gguf_close(f);
    write_arch(path, "llama", 4, false, true);
    s = spec_of(path, &f);
    REQUIRE(s);
    /* per-layer KV heads 2, 0, 1, 2: 5 heads x 32 dims x (K+V) x 2 bytes */
    CHECK(model_kv_bytes_per_token(s, GGML_TYPE_F16) == 5 * 32 * 2 * 2);
    model_spec_free(s);
    gguf_close(f);
}

TEST(test_inspect_unknown_architecture_generic_view)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/m.gguf", test_tmpdir());
    write_arch(path, "mystery", 3, false, false);
    gguf_file *f = NULL;
    model_spec *s = spec_of(path, &f);
    REQUIRE(s);
    CHECK(s->hp.n_layers == 3 && s->layers[2].by_group[GROUP_ATTN] == 128 * 8 * 4);
    model_spec_free(s);
    gguf_close(f);
}

static json_t *inspect_json(const char *path, int *rc)
{
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s inspect --json --tensors '%s'", test_strata_bin(), path);
    *rc = test_run(cmd, &out, false);
    json_error_t je;
    json_t *j = out ? json_loads(out, 0, &je) : NULL;
    free(out);
    return j;
}

TEST(test_inspect_cli_json)
{
    const char *p = test_fixture("stories260K.gguf");
    if (!p) return;
    int rc;
    json_t *j = inspect_json(p, &rc);
    REQUIRE(rc == 0 && j, " rc %d", rc);
    CHECK(json_integer_value(json_object_get(j, "n_layers")) == 5);
    CHECK(json_integer_value(json_object_get(j, "n_embd")) == 64);
    CHECK(json_integer_value(json_object_get(j, "n_heads")) == 8);
    CHECK(json_integer_value(json_object_get(j, "n_kv_heads")) == 4);
    CHECK(json_integer_value(json_object_get(j, "head_dim")) == 8);
    CHECK(json_integer_value(json_object_get(j, "vocab_size")) == 512);
    CHECK(json_integer_value(json_object_get(j, "n_tensors")) == 48);
    CHECK(json_integer_value(json_object_get(j, "file_bytes")) == 1185376);
    CHECK(json_integer_value(json_object_get(j, "gguf_version")) == 3);
    CHECK(!strcmp(json_string_value(json_object_get(j, "architecture")), "llama"));
    CHECK(!strcmp(json_string_value(json_object_get(j, "tokenizer_model")), "llama"));
    CHECK(json_integer_value(json_object_get(json_object_get(j, "kv_bytes_per_token"), "f16")) == 640);
    CHECK(json_integer_value(json_object_get(json_object_get(j, "bytes_by_type"), "F32")) ==
          json_integer_value(json_object_get(j, "tensor_bytes")));
    CHECK(json_array_size(json_object_get(j, "layers")) == 5 && json_array_size(json_object_get(j, "tensors")) == 48);
    const char *keys[] = {"n_params", "context_length", "n_ff", "layers", "kv_bytes_per_token"};
    for (size_t i = 0; i < 5; i++) CHECK(json_object_get(j, keys[i]) != NULL, " key %s", keys[i]);
    json_decref(j);
}

TEST(test_inspect_cli_text_and_errors)
{
    const char *p = test_fixture("stories260K.gguf");
    if (!p) return;
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s inspect '%s'", test_strata_bin(), p);
    CHECK(test_run(cmd, &out, true) == 0 && strstr(out, "5 layers") && strstr(out, "8 heads / 4 KV heads"),
          " %s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s inspect /nonexistent/m.gguf", test_strata_bin());
    CHECK(test_run(cmd, &out, true) == 1 && strstr(out, "/nonexistent/m.gguf: cannot open"), " %s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s inspect --bogus", test_strata_bin());
    CHECK(test_run(cmd, &out, true) == 2 && strstr(out, "--bogus"), " %s", out);
    free(out);
    /* a truncated copy: one line naming the file and the offset */
    snprintf(cmd, sizeof cmd, "head -c 5000 '%s' > %s/cut.gguf && %s inspect %s/cut.gguf", p, test_tmpdir(),
             test_strata_bin(), test_tmpdir());
    CHECK(test_run(cmd, &out, true) == 1 && strstr(out, "cut.gguf: offset ") && !strchr(strchr(out, '\n') + 1, '\n'),
          " %s", out);
    free(out);
}

/* Experts in `inspect` (text and --json), recomputed from the tensor list:
 * per layer the routed experts' bytes (*_exps), one expert's share, the
 * dense rest; the totals and what one token computes with. */
static void check_moe_inspect(const char *fixture, int n_expert, int n_used)
{
    const char *p = test_fixture(fixture);
    if (!p) return;
    int rc;
    json_t *j = inspect_json(p, &rc);
    REQUIRE(rc == 0 && j, " rc %d", rc);
    CHECK(json_integer_value(json_object_get(j, "n_expert")) == n_expert &&
          json_integer_value(json_object_get(j, "n_expert_used")) == n_used);
    const json_t *layers = json_object_get(j, "layers"), *tensors = json_object_get(j, "tensors");
    size_t n_layers = json_array_size(layers);
    REQUIRE(n_layers > 0 && n_layers <= 64);
    long long exps[64] = {0}, all = 0, embd = 0, output = 0, outside = 0;
    size_t i;
    json_t *t;
    json_array_foreach(tensors, i, t) {
        long long b = json_integer_value(json_object_get(t, "bytes"));
        json_int_t layer = json_integer_value(json_object_get(t, "layer"));
        const char *name = json_string_value(json_object_get(t, "name"));
        all += b;
        if (layer >= 0 && layer < 64 && strstr(name, "_exps.")) exps[layer] += b;
        if (layer < 0) outside += b;
        if (!strcmp(name, "token_embd.weight")) embd = b;
        if (!strcmp(name, "output.weight")) output = b;
    }
    long long experts = 0, active = outside - (output ? embd : 0), largest = 0;
    for (i = 0; i < n_layers; i++) {
        const json_t *l = json_array_get(layers, i);
        long long total = json_integer_value(json_object_get(l, "total")), one = exps[i] / n_expert;
        CHECK(exps[i] > 0 && exps[i] % n_expert == 0 && json_integer_value(json_object_get(l, "ffn_experts")) == exps[i] &&
                  json_integer_value(json_object_get(l, "per_expert")) == one &&
                  json_integer_value(json_object_get(l, "dense")) == total - exps[i],
              " %s layer %zu", fixture, i);
        experts += exps[i];
        active += total - exps[i] + n_used * one;
        if (one > largest) largest = one;
    }
    CHECK(json_integer_value(json_object_get(j, "expert_bytes")) == experts &&
              json_integer_value(json_object_get(j, "dense_bytes")) == all - experts &&
              json_integer_value(json_object_get(j, "bytes_per_expert")) == largest &&
              json_integer_value(json_object_get(j, "active_bytes_per_token")) == active,
          " %s: experts %lld, active %lld", fixture, (long long)json_integer_value(json_object_get(j, "expert_bytes")),
          (long long)json_integer_value(json_object_get(j, "active_bytes_per_token")));
    json_decref(j);
    char cmd[2048], *out = NULL, want[96];
    snprintf(cmd, sizeof cmd, "%s inspect '%s'", test_strata_bin(), p);
    snprintf(want, sizeof want, "experts     %d, %d used per token", n_expert, n_used);
    CHECK(test_run(cmd, &out, true) == 0 && out && strstr(out, want) && strstr(out, "dense (everything but the experts)") &&
              strstr(out, "a token computes with") && strstr(out, "      dense  one expert\n"),
          " %s", out);
    free(out);
    /* a dense model has none of it */
    const char *dense = test_fixture("stories260K.gguf");
    if (!dense) return;
    snprintf(cmd, sizeof cmd, "%s inspect '%s'", test_strata_bin(), dense);
    CHECK(test_run(cmd, &out, true) == 0 && out && !strstr(out, "\nexperts ") && !strstr(out, "one expert"), " %s",
          out);
    free(out);
}

TEST(test_inspect_moe_experts_qwen3moe) { check_moe_inspect("arch/qwen3moe-q4_k_m.gguf", 8, 2); }
TEST(test_inspect_moe_experts_mixtral) { check_moe_inspect("arch/mixtral-q4_k_m.gguf", 4, 2); }
