/* Regression tests for the audit's bad-input findings in the library (issue
 * 15): non-regular files as models, headers with very many keys or tensors,
 * and files written with several alignments and header lengths. */
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../tools/synth/synth.h"
#include "engine/engine.h"
#include "engine/weights.h"
#include "gguf/gguf.h"
#include "gguf_helpers.h"
#include "model/model_spec.h"
#include "store/io.h"
#include "test.h"

/* A growable byte buffer for hand-built headers. */
typedef struct bbuf {
    uint8_t *b;
    size_t n, cap;
} bbuf;

static void b_raw(bbuf *h, const void *p, size_t n)
{
    if (h->n + n > h->cap) {
        h->cap = (h->n + n) * 2;
        h->b = realloc(h->b, h->cap);
    }
    memcpy(h->b + h->n, p, n);
    h->n += n;
}
static void b_u32(bbuf *h, uint32_t v) { b_raw(h, &v, 4); }
static void b_u64(bbuf *h, uint64_t v) { b_raw(h, &v, 8); }
static void b_str(bbuf *h, const char *s) { b_u64(h, strlen(s)); b_raw(h, s, strlen(s)); }
static void b_start(bbuf *h, uint64_t n_tensors, uint64_t n_kv)
{
    b_raw(h, "GGUF", 4);
    b_u32(h, 3);
    b_u64(h, n_tensors);
    b_u64(h, n_kv);
}

static double cpu_seconds(void) { return (double)clock() / CLOCKS_PER_SEC; }

/* A hang in open() is turned into a failure: SIGALRM's default action ends
 * the test binary, which the runner reports. */
TEST(test_audit_fifo_model_is_refused_at_once)
{
    char fifo[1024];
    snprintf(fifo, sizeof fifo, "%s/model.gguf", test_tmpdir());
    REQUIRE(mkfifo(fifo, 0600) == 0);
    alarm(10);
    gguf_file *f = NULL;
    strata_error e;
    strata_status st = gguf_open(fifo, &f, &e);
    alarm(0);
    CHECK(st != STRATA_OK && strstr(e.message, fifo) && strstr(e.message, "not a regular file"), " %s", e.message);
    gguf_close(f);
    CHECK(gguf_open(test_tmpdir(), &f, &e) != STRATA_OK && strstr(e.message, "not a regular file"), " %s",
          e.message);
}

/* The store opens the files again: a model replaced by a FIFO after parsing
 * is refused there too, without blocking. */
TEST(test_audit_store_refuses_fifo)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/m.gguf", test_tmpdir());
    strata_error e;
    REQUIRE(write_sample_gguf(path, 3, &e) == STRATA_OK, " %s", e.message);
    gguf_file *f = NULL;
    REQUIRE(gguf_open(path, &f, &e) == STRATA_OK, " %s", e.message);
    REQUIRE(unlink(path) == 0 && mkfifo(path, 0600) == 0);
    io_engine *io = NULL;
    alarm(10);
    strata_status st = io_open(f, 1, NULL, NULL, &io, &e);
    alarm(0);
    CHECK(st != STRATA_OK && strstr(e.message, "not a regular file"), " %s", st ? e.message : "accepted");
    io_close(io);
    gguf_close(f);
}

/* 100,000 metadata keys parse and are looked up quickly (the duplicate
 * check was quadratic: 18 s); a duplicate among them is still found. */
TEST(test_audit_many_metadata_keys)
{
    enum { N = 100000 };
    bbuf h = {0};
    b_start(&h, 0, N);
    char key[32];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "k.%06d", i);
        b_str(&h, key);
        b_u32(&h, GGUF_TYPE_U32);
        b_u32(&h, (uint32_t)i);
    }
    double t0 = cpu_seconds();
    gguf_file *f = NULL;
    strata_error e;
    REQUIRE(gguf_parse_memory(h.b, h.n, "keys.gguf", &f, &e) == STRATA_OK, " %s", e.message);
    int found = 0;
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "k.%06d", i);
        uint64_t v;
        found += gguf_get_u64(f, key, &v) && v == (uint64_t)i;
    }
    double spent = cpu_seconds() - t0;
    CHECK(found == N && !gguf_find(f, "k.100000") && !gguf_find(f, "k.00000"), " %d of %d keys found", found, N);
    CHECK(spent < 3.0, " %.2f s of CPU for %d keys (a linear scan per key takes minutes)", spent, N);
    gguf_close(f);
    memcpy(h.b + h.n - 4 - 4 - 6, "000007", 6); /* the last key becomes k.000007 */
    CHECK(gguf_parse_memory(h.b, h.n, "keys.gguf", &f, &e) != STRATA_OK &&
              strstr(e.message, "duplicate metadata key 'k.000007'"), " %s", e.message);
    free(h.b);
}

/* 50,000 tensors: parsing and a look-up of every name stay fast (the
 * look-up was linear per name: a 4,096-layer model took 7-9 s to plan). */
TEST(test_audit_many_tensors)
{
    enum { N = 50000 };
    bbuf h = {0};
    b_start(&h, N, 0);
    char name[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "blk.%d.w", i);
        b_str(&h, name);
        b_u32(&h, 1);
        b_u64(&h, 8);
        b_u32(&h, GGML_TYPE_F32);
        b_u64(&h, (uint64_t)i * 32);
    }
    size_t data_at = (h.n + 31) / 32 * 32;
    uint8_t *file = calloc(1, data_at + (size_t)N * 32);
    REQUIRE(file);
    memcpy(file, h.b, h.n);
    double t0 = cpu_seconds();
    gguf_file *f = NULL;
    strata_error e;
    REQUIRE(gguf_parse_memory(file, data_at + (size_t)N * 32, "tensors.gguf", &f, &e) == STRATA_OK, " %s",
            e.message);
    int found = 0;
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "blk.%d.w", i);
        const gguf_tensor *t = gguf_find_tensor(f, name);
        found += t && t->offset == (uint64_t)i * 32 && !strcmp(t->name, name);
    }
    double spent = cpu_seconds() - t0;
    CHECK(found == N && !gguf_find_tensor(f, "blk.50000.w") && !gguf_find_tensor(f, "blk.1"), " %d found", found);
    CHECK(spent < 3.0, " %.2f s of CPU for %d tensors", spent, N);
    gguf_close(f);
    free(file);
    free(h.b);
}

/* ---- hyper-parameters and NaN weights ---- */

/* A header-only llama file (64 wide, 4 heads, 2 layers) plus one key (an
 * F32, or an F64 when the value is beyond a float's range). */
static const char *write_hparams(const char *key, double value, uint32_t n_embd)
{
    static char path[1024];
    snprintf(path, sizeof path, "%s/hp.gguf", test_tmpdir());
    gguf_writer *w = gguf_writer_new();
    strata_error e;
    strata_status st = gguf_writer_set_str(w, "general.architecture", "llama", &e);
    if (!st) st = gguf_writer_set_u32(w, "llama.embedding_length", n_embd, &e);
    if (!st) st = gguf_writer_set_u32(w, "llama.attention.head_count", 4, &e);
    if (!st) st = gguf_writer_set_u32(w, "llama.feed_forward_length", 128, &e);
    if (!st) st = gguf_writer_set_u32(w, "llama.block_count", 2, &e);
    bool f64 = isfinite(value) && !isfinite((float)value);
    if (!st && key) st = gguf_writer_set(w, key, &(gguf_value){.type = f64 ? GGUF_TYPE_F64 : GGUF_TYPE_F32, .f = value}, &e);
    if (!st) st = gguf_writer_open(w, path, &e);
    if (!st) st = gguf_writer_close(w, &e);
    gguf_writer_free(w);
    CHECK(st == STRATA_OK, " %s", e.message);
    return path;
}

/* The error of reading the spec and binding the weights ("" when none). */
static void spec_error(const char *path, char *msg, size_t cap)
{
    gguf_file *f = NULL;
    model_spec *spec = NULL;
    model_weights w = {0};
    strata_error e = {0};
    snprintf(msg, cap, "(accepted)");
    if (gguf_open(path, &f, &e) || model_spec_from_gguf(f, path, &spec, &e) || weights_bind(f, spec, path, &w, &e))
        snprintf(msg, cap, "%s", e.message);
    weights_free(&w);
    model_spec_free(spec);
    gguf_close(f);
}

TEST(test_audit_bad_hyperparameters_are_refused)
{
    static const struct {
        const char *key;
        double value;
        uint32_t n_embd;
        const char *want;
    } cases[] = {
        {"llama.rope.freq_base", 0.0f, 64, "llama.rope.freq_base must be a finite number above zero"},
        {"llama.rope.freq_base", -1.0f, 64, "llama.rope.freq_base must be"},
        {"llama.rope.freq_base", NAN, 64, "llama.rope.freq_base must be"},
        {"llama.rope.freq_base_swa", 0.0f, 64, "llama.rope.freq_base_swa must be"},
        {"llama.attention.layer_norm_rms_epsilon", NAN, 64, "layer_norm_rms_epsilon must be"},
        {"llama.attention.layer_norm_rms_epsilon", 0.0f, 64, "layer_norm_rms_epsilon must be"},
        {"llama.attention.layer_norm_rms_epsilon", INFINITY, 64, "layer_norm_rms_epsilon must be"},
        {"llama.expert_weights_scale", -1.0, 64, "llama.expert_weights_scale is not a finite non-negative number"},
        {"llama.expert_weights_scale", NAN, 64, "llama.expert_weights_scale is not a finite"},
        {"llama.expert_weights_scale", 1e300, 64, "llama.expert_weights_scale is not a finite"}, /* F64: inf as a float */
        {"llama.rope.scaling.factor", 1e300, 64, "llama.rope.scaling.factor is not a finite"},
        {NULL, 0, 66, "embedding_length 66 is not a multiple of attention.head_count 4"},
    };
    char msg[STRATA_ERROR_MAX];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        spec_error(write_hparams(cases[i].key, cases[i].value, cases[i].n_embd), msg, sizeof msg);
        CHECK(strstr(msg, cases[i].want) && strstr(msg, "hp.gguf"), " case %zu: '%s', want '%s'", i, msg,
              cases[i].want);
    }
    /* the valid neighbour gets as far as the (absent) tensors */
    spec_error(write_hparams("llama.rope.freq_base", 5e5f, 64), msg, sizeof msg);
    CHECK(strstr(msg, "model has no tensor '") && strstr(msg, "hp.gguf"), " %s", msg); /* item 6: the path */
}

/* Item 6: a model without one of its sizes names the missing key. */
TEST(test_audit_missing_size_names_the_key)
{
    static const char *const keys[] = {"llama.embedding_length", "llama.attention.head_count",
                                       "llama.feed_forward_length", "llama.block_count"};
    char path[1024], msg[STRATA_ERROR_MAX];
    snprintf(path, sizeof path, "%s/nokey.gguf", test_tmpdir());
    for (int skip = 0; skip < 4; skip++) {
        gguf_writer *w = gguf_writer_new();
        strata_error e;
        strata_status st = gguf_writer_set_str(w, "general.architecture", "llama", &e);
        for (int k = 0; k < 4 && !st; k++)
            if (k != skip) st = gguf_writer_set_u32(w, keys[k], k == 0 ? 64 : k == 1 ? 4 : k == 2 ? 128 : 2, &e);
        if (!st) st = gguf_writer_open(w, path, &e);
        if (!st) st = gguf_writer_close(w, &e);
        gguf_writer_free(w);
        REQUIRE(st == STRATA_OK, " %s", e.message);
        spec_error(path, msg, sizeof msg);
        CHECK(strstr(msg, keys[skip]) && strstr(msg, "nokey.gguf"), " without %s: '%s'", keys[skip], msg);
    }
}

/* A small F32 llama model whose output_norm.weight holds one NaN. */
static bool write_nan_model(char *path, size_t cap)
{
    snprintf(path, cap, "%s/nan.gguf", test_tmpdir());
    synth_options o = {.shape = {64, 128, 2, 4, 2, 320, 64}, .type = GGML_TYPE_F32, .seed = 7, .threads = 1,
                       .output = path};
    strata_error e;
    gguf_file *f = NULL;
    if (synth_write(&o, &e) || gguf_open(path, &f, &e)) {
        CHECK(false, " %s", e.message);
        return false;
    }
    const gguf_tensor *t = gguf_find_tensor(f, "output_norm.weight");
    bool ok = t && t->type == GGML_TYPE_F32;
    float nan = NAN;
    int fd = open(path, O_WRONLY);
    ok = ok && fd >= 0 && pwrite(fd, &nan, 4, (off_t)t->file_offset + 8) == 4;
    if (fd >= 0) close(fd);
    gguf_close(f);
    CHECK(ok, " could not plant a NaN in %s", path);
    return ok;
}

TEST(test_audit_nan_weights_fail_the_run)
{
    char path[1024];
    if (!write_nan_model(path, sizeof path)) return;
    gguf_file *f = NULL;
    model_spec *spec = NULL;
    engine *eng = NULL;
    strata_error e;
    REQUIRE(gguf_open(path, &f, &e) == STRATA_OK && model_spec_from_gguf(f, path, &spec, &e) == STRATA_OK, " %s",
            e.message);
    engine_params p = {.n_ctx = 32, .n_batch = 4, .n_threads = 1};
    float *logits = malloc(320 * sizeof(float));
    int32_t toks[2] = {1, 2};
    strata_status st = engine_open(f, spec, &p, &eng, &e);
    if (!st) st = engine_eval(eng, toks, 2, logits, false, &e);
    CHECK(st != STRATA_OK && strstr(e.message, "NaN logits") && strstr(e.message, "weights"), " %s",
          st ? e.message : "accepted");
    engine_free(eng);
    model_spec_free(spec);
    gguf_close(f);
    free(logits);
    /* and the command line exits non-zero with the message */
    char cmd[2400], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s run -m '%s' -p x -n 2", test_strata_bin(), path);
    int rc = test_run(cmd, &out, true);
    CHECK(rc != 0 && out && strstr(out, "NaN logits"), " exit %d: %s", rc, out ? out : "");
    free(out);
}

/* ---- alignment and header length ---- */

/* Writes t0 (5 floats) and t1 (7 floats) with the given alignment and a
 * padding string of pad_len bytes; returns the header length (148 + pad_len:
 * 24 fixed, general.alignment 33, "pad" 23 + pad_len, two tensor infos 34). */
static uint64_t write_aligned(const char *path, uint32_t align, size_t pad_len, const uint8_t *data)
{
    char pad[8192];
    memset(pad, 'p', pad_len);
    pad[pad_len] = '\0';
    gguf_writer *w = gguf_writer_new();
    strata_error e;
    uint64_t ne0[1] = {5}, ne1[1] = {7};
    strata_status st = gguf_writer_set_alignment(w, align, &e);
    if (!st) st = gguf_writer_set_str(w, "pad", pad, &e);
    if (!st) st = gguf_writer_add_tensor(w, "t0", GGML_TYPE_F32, 1, ne0, &e);
    if (!st) st = gguf_writer_add_tensor(w, "t1", GGML_TYPE_F32, 1, ne1, &e);
    if (!st) st = gguf_writer_open(w, path, &e);
    if (!st) st = gguf_writer_write(w, data, 20, &e);
    if (!st) st = gguf_writer_write(w, data + 20, 28, &e);
    if (!st) st = gguf_writer_close(w, &e);
    gguf_writer_free(w);
    CHECK(st == STRATA_OK, " %s", e.message);
    return 148 + pad_len;
}

/* Reads t0 and t1 back through the reader's offsets and checks where the
 * data section starts. */
static void check_aligned(const char *path, uint32_t align, uint64_t header, const uint8_t *data)
{
    gguf_file *f = NULL;
    strata_error e;
    REQUIRE(gguf_open(path, &f, &e) == STRATA_OK, " %s", e.message);
    size_t size;
    uint8_t *raw = read_whole_file(path, &size);
    uint64_t want_data = (header + align - 1) / align * align;
    CHECK(f->alignment == align && f->splits[0].data_offset == want_data, " align %u header %" PRIu64
          ": alignment %u, data at %" PRIu64 ", want %" PRIu64, align, header, f->alignment,
          f->splits[0].data_offset, want_data);
    const gguf_tensor *t0 = gguf_find_tensor(f, "t0"), *t1 = gguf_find_tensor(f, "t1");
    REQUIRE(raw && t0 && t1);
    CHECK(t1->offset == (20 + align - 1) / align * align, " align %u: t1 at %" PRIu64, align, t1->offset);
    CHECK(t0->file_offset + 20 <= size && !memcmp(raw + t0->file_offset, data, 20), " align %u: t0 bytes", align);
    CHECK(t1->file_offset + 28 <= size && !memcmp(raw + t1->file_offset, data + 20, 28), " align %u: t1 bytes",
          align);
    free(raw);
    gguf_close(f);
}

/* Several alignments, each with the header ending exactly on the boundary,
 * one byte past it and one byte before it. */
TEST(test_audit_gguf_alignments_and_header_lengths)
{
    static const uint32_t aligns[] = {1, 8, 32, 64, 256, 4096};
    uint8_t data[48];
    for (int i = 0; i < 48; i++) data[i] = (uint8_t)(i * 37 + 11);
    char path[1024];
    snprintf(path, sizeof path, "%s/aligned.gguf", test_tmpdir());
    for (size_t a = 0; a < sizeof aligns / sizeof aligns[0]; a++) {
        uint32_t al = aligns[a];
        size_t exact = (size_t)((al - 148 % al) % al) + al; /* header = a multiple of al */
        size_t pads[3] = {exact, exact + 1, exact - 1};
        for (int k = 0; k < 3; k++) {
            uint64_t header = write_aligned(path, al, pads[k], data);
            check_aligned(path, al, header, data);
            if (k == 0) CHECK(header % al == 0, " header %" PRIu64 " not on the %u boundary", header, al);
        }
    }
}

/* Item 3: a command whose stdout cannot be written fails and says so
 * (plan --json > /dev/full exited 0 with an empty file). */
TEST(test_audit_output_to_full_device_fails)
{
    const char *m = test_fixture("stories260K.gguf");
    if (!m) return;
    struct stat st;
    if (stat("/dev/full", &st) != 0 || !S_ISCHR(st.st_mode)) {
        test_skip("no /dev/full character device");
        return;
    }
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s plan '%s' --json 2>&1 >/dev/full", test_strata_bin(), m);
    int rc = test_run(cmd, &out, false);
    CHECK(rc == 1 && out && strstr(out, "strata plan: writing the output failed"), " rc %d: %s", rc, out);
    free(out);
}

/* Item 6: detect --root naming nothing is an error, not an empty report. */
TEST(test_audit_detect_root_missing_fails)
{
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s detect --root /nonexistent/strata-root 2>&1", test_strata_bin());
    int rc = test_run(cmd, &out, false);
    CHECK(rc == 2 && out && strstr(out, "--root /nonexistent/strata-root") && strstr(out, "No such file"),
          " rc %d: %s", rc, out);
    free(out);
}

/* Item 5: --plan FILE does not silently override -c: a different context
 * is refused naming both, the plan's own context runs. */
TEST(test_audit_plan_file_and_other_context_refused)
{
    const char *m = test_fixture("stories260K.gguf");
    if (!m) return;
    char cmd[4096], plan[1100], *out = NULL;
    snprintf(plan, sizeof plan, "%s/plan.json", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s plan '%s' -c 256 --json > '%s'", test_strata_bin(), m, plan);
    REQUIRE(test_run(cmd, NULL, false) == 0);
    snprintf(cmd, sizeof cmd, "%s run -m '%s' --plan '%s' -c 64 -p Hi -n 2 2>&1", test_strata_bin(), m, plan);
    int rc = test_run(cmd, &out, false);
    CHECK(rc == 1 && out && strstr(out, "the plan is for a context of 256 tokens, -c asks for 64"), " rc %d: %s", rc,
          out);
    free(out);
    out = NULL;
    snprintf(cmd, sizeof cmd, "%s run -m '%s' --plan '%s' -c 256 -p Hi -n 2 2>&1", test_strata_bin(), m, plan);
    rc = test_run(cmd, &out, false);
    CHECK(rc == 0, " rc %d: %s", rc, out);
    free(out);
    /* a plan file that is missing, or a directory: one line saying which */
    const struct { const char *file, *says; } bad[] = {{"/nonexistent/plan.json", "/nonexistent/plan.json: cannot read "
                                                        "the saved plan: No such file"},
                                                       {"/tmp", "/tmp: a directory, not a saved plan"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        out = NULL;
        snprintf(cmd, sizeof cmd, "%s run -m '%s' --plan '%s' -p Hi -n 2 2>&1", test_strata_bin(), m, bad[i].file);
        rc = test_run(cmd, &out, false);
        CHECK(rc == 1 && out && strstr(out, bad[i].says) && strchr(out, '\n') == out + strlen(out) - 1,
              " rc %d: %s", rc, out);
        free(out);
    }
}
