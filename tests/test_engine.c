/* Engine conformance against llama.cpp's golden outputs and the exact-math
 * references in ../shared/fixtures (see its README for the tolerances),
 * through the conformance harness (conformance.h): an evaluation error, a
 * missing reference file or a comparison of fewer positions than the prompt
 * fails the test; only an absent fixture skips it. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conformance.h"
#include "strata.h"
#include "test.h"

static const char *const synth_types[] = {"f16",  "bf16",   "q8_0",   "q4_0",   "q4_1", "q5_0",   "q5_1",
                                          "q2_k", "q3_k_m", "q4_k_m", "q5_k_m", "q6_k", "iq4_nl", "iq4_xs"};
#define N_SYNTH (sizeof synth_types / sizeof synth_types[0])

/* The standard three checks (conformance.h) on every synth type, with the
 * README's bounds: reference kernels + F32 KV within 1e-3 of the f32ref;
 * the fast kernels (F16 KV), which may round activations like llama.cpp or
 * compute exactly, within mean 0.02 / max 0.1 of the golden or of the
 * f32ref; each greedy token of llama.cpp within 0.2 of strata's top logit
 * (teacher-forced: random weights have near-ties). */
TEST(test_engine_synth_conformance)
{
    static const conf_bounds b = CONF_BOUNDS_DEFAULT;
    for (size_t i = 0; i < N_SYNTH; i++) {
        char base[64];
        snprintf(base, sizeof base, "synth-%s", synth_types[i]);
        conf_check(base, CONF_FAST, &b);
    }
}

/* stories260K is a trained model: greedy decoding must reproduce llama.cpp's
 * tokens exactly; the fast kernels with an F16 KV cache stay within 0.03 of
 * the golden logits. */
TEST(test_engine_stories260k_conformance)
{
    static const conf_bounds b = {.ref_max = 1e-3, .fast = {0.03, 0.03}, .fast_vs = CONF_VS_GOLDEN,
                                  .greedy = CONF_GREEDY_EXACT};
    conf_check("stories260K", CONF_FAST, &b);
    conf_check("stories260K-lily", CONF_FAST, &b);
}

/* stories260K is all F32: the fast kernels with an F32 KV cache are exact
 * math, and greedy text does not depend on the KV type (README). */
TEST(test_engine_stories260k_fast_f32kv)
{
    const char *names[2] = {"stories260K", "stories260K-lily"};
    static conf_greedy_result g;
    for (int i = 0; i < 2; i++) {
        conf_result r;
        conf_logits(names[i], CONF_FAST_F32KV, NULL, &r);
        if (conf_complete(&r, names[i]))
            CHECK(r.max_abs <= 1e-3, " %s f32 KV vs f32ref: max %.3g", names[i], r.max_abs);
        conf_greedy(names[i], CONF_FAST_F32KV, &g);
        if (conf_greedy_complete(&g, names[i]))
            CHECK(g.n_match == g.n_expected, " %s f32 KV: first %zu of %zu greedy tokens match", names[i], g.n_match,
                  g.n_expected);
    }
}

/* Same logits whatever the thread count; batch == token-by-token. */
TEST(test_engine_threads_and_batching_agree)
{
    conf_fixture f;
    if (!conf_fixture_load("synth-q4_k_m", &f)) {
        if (!f.missing) test_fail(__FILE__, __LINE__, "fixture", " %s", f.error);
        return;
    }
    char err[CONF_ERROR_MAX];
    strata_model *a = conf_open(&f, (conf_mode){.kernels = CONF_KERNELS_FAST, .kv = CONF_KV_F16, .n_threads = 1}, err, sizeof err);
    strata_model *b = a ? conf_open(&f, (conf_mode){.kernels = CONF_KERNELS_FAST, .kv = CONF_KV_F16, .n_threads = 3}, err, sizeof err) : NULL;
    CHECK(a && b, " %s", err);
    size_t V = a ? strata_model_n_vocab(a) : 0, P = f.n_prompt, t = 0;
    float *la = calloc(P * V + 1, sizeof(float)), *lb = calloc(P * V + 1, sizeof(float));
    strata_error e = {0};
    bool ok = a && b && la && lb && strata_eval(a, f.prompt, P, la, true, &e) == STRATA_OK;
    for (; ok && t < P; t++) ok = strata_eval(b, &f.prompt[t], 1, lb + t * V, false, &e) == STRATA_OK;
    CHECK(ok && t == P && P > 0 && V > 0, " eval: %s (%zu of %zu tokens)", e.message, t, P);
    double max = 0;
    for (size_t i = 0; ok && i < P * V; i++) max = fmax(max, isnan(la[i] - lb[i]) ? INFINITY : fabs(la[i] - lb[i]));
    CHECK(max <= 1e-4, " batch/1 thread vs token-by-token/3 threads: max %.3g", max);
    free(la);
    free(lb);
    strata_model_free(a);
    strata_model_free(b);
    conf_fixture_free(&f);
}

/* ---- the harness itself: errors must come out as errors ---- */

/* Writes DIR/NAME.golden.json naming `model`, with the given prompt and vocab. */
static void write_golden(const char *dir, const char *name, const char *model, const int32_t *prompt, size_t n,
                         int vocab)
{
    char path[CONF_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s.golden.json", dir, name);
    FILE *fp = fopen(path, "w");
    if (!fp) return;
    fprintf(fp, "{\"model\": \"%s\", \"n_vocab\": %d, \"prompt_tokens\": [", model, vocab);
    for (size_t i = 0; i < n; i++) fprintf(fp, "%s%d", i ? ", " : "", prompt[i]);
    fprintf(fp, "], \"greedy_tokens\": [1, 2, 3]}\n");
    fclose(fp);
}

/* Writes DIR/NAME.SUFFIX with `count` zero floats. */
static void write_floats(const char *dir, const char *name, const char *suffix, size_t count)
{
    char path[CONF_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s%s", dir, name, suffix);
    FILE *fp = fopen(path, "wb");
    float z = 0;
    for (size_t i = 0; fp && i < count; i++) fwrite(&z, sizeof z, 1, fp);
    if (fp) fclose(fp);
}

/* Evaluates the temporary fixture NAME; returns the f32ref result. */
static conf_result eval_tmp(const char *dir, const char *name)
{
    char path[CONF_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s.golden.json", dir, name);
    conf_fixture f;
    conf_result r;
    if (!conf_fixture_load_path(path, &f)) {
        memset(&r, 0, sizeof r);
        snprintf(r.error, sizeof r.error, "%s", f.error);
    } else {
        conf_eval_logits(&f, CONF_FAST, NULL, &r);
    }
    conf_fixture_free(&f);
    return r;
}

TEST(test_engine_conformance_harness_reports_errors)
{
    const char *p = test_fixture("stories260K.gguf");
    if (!p) return;
    char model[PATH_MAX], dir[CONF_PATH_MAX];
    REQUIRE(realpath(p, model), " %s", p);
    snprintf(dir, sizeof dir, "%s", test_tmpdir());
    const int32_t good[3] = {1, 403, 407}, bad[3] = {1, 9999, 407};
    write_golden(dir, "good", model, good, 3, 512);
    write_floats(dir, "good", ".f32ref.logits.f32", 3 * 512);
    write_golden(dir, "evalerr", model, bad, 3, 512);
    write_floats(dir, "evalerr", ".f32ref.logits.f32", 3 * 512);
    write_golden(dir, "short", model, good, 3, 512);
    write_floats(dir, "short", ".f32ref.logits.f32", 2 * 512);
    write_golden(dir, "nofile", model, good, 3, 512);
    write_golden(dir, "vocab", model, good, 3, 500);
    write_floats(dir, "vocab", ".f32ref.logits.f32", 3 * 500);
    write_golden(dir, "nomodel", "/nonexistent/model.gguf", good, 3, 512);

    conf_result r = eval_tmp(dir, "good");
    CHECK(r.ok && r.n_positions == 3 && r.n_vocab == 512 && r.max_abs > 0, " good: %s (%zu x %zu)", r.error,
          r.n_positions, r.n_vocab);
    const char *bad_cases[] = {"evalerr", "short", "nofile", "vocab", "nomodel"};
    const char *expect[] = {"outside the vocabulary", "bytes, expected", "cannot open", "vocabulary", "not found"};
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        r = eval_tmp(dir, bad_cases[i]);
        CHECK(!r.ok && !r.missing && r.n_positions == 0 && strstr(r.error, expect[i]), " %s: ok %d, %zu positions: %s",
              bad_cases[i], r.ok, r.n_positions, r.error);
    }
}

/* A failing evaluation also stops the greedy helper with an error. */
TEST(test_engine_conformance_greedy_reports_errors)
{
    const char *p = test_fixture("stories260K.gguf");
    if (!p) return;
    char model[PATH_MAX], path[CONF_PATH_MAX];
    REQUIRE(realpath(p, model), " %s", p);
    const int32_t bad[2] = {1, -5};
    write_golden(test_tmpdir(), "evalerr", model, bad, 2, 512);
    snprintf(path, sizeof path, "%s/evalerr.golden.json", test_tmpdir());
    conf_fixture f;
    static conf_greedy_result r;
    REQUIRE(conf_fixture_load_path(path, &f), " %s", f.error);
    CHECK(!conf_eval_greedy(&f, CONF_FAST, &r) && !r.ok && r.n_generated == 0 && r.n_expected == 3, " %s", r.error);
    conf_fixture_free(&f);
}
