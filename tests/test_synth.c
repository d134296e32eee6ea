/* The synthetic model generator: the files it writes are valid, hold the
 * requested types and shapes, are reproducible, and follow llama.cpp's
 * Q4_K_M type recipe (checked against the llama.cpp-made fixture). */
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
    synth_options o = {.shape = {256, 512, 2, 4, 2, 300, 128}, .seed = 7, .threads = 2, .output = out};
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
    CHECK(test_run(cmd, &out, true) != 0 && strstr(out, "--n-heads"), " %s", out);
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
