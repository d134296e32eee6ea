/* Engine conformance against llama.cpp's golden outputs and the exact-math
 * references in ../shared/fixtures (see its README for the tolerances). */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "strata.h"
#include "test.h"

typedef struct golden {
    int32_t prompt[256];
    size_t n_prompt;
    int32_t greedy[256];
    size_t n_greedy;
    char prompt_text[1024];
} golden;

static bool load_golden(const char *name, golden *g)
{
    const char *p = test_fixture(name);
    if (!p) return false;
    json_error_t je;
    json_t *j = json_load_file(p, 0, &je);
    if (!j) {
        test_fail(__FILE__, __LINE__, "json", " %s: %s", p, je.text);
        return false;
    }
    size_t i;
    json_t *v;
    g->n_prompt = g->n_greedy = 0;
    json_array_foreach(json_object_get(j, "prompt_tokens"), i, v) if (i < 256) g->prompt[g->n_prompt++] = (int32_t)json_integer_value(v);
    json_array_foreach(json_object_get(j, "greedy_tokens"), i, v) if (i < 256) g->greedy[g->n_greedy++] = (int32_t)json_integer_value(v);
    snprintf(g->prompt_text, sizeof g->prompt_text, "%s", json_string_value(json_object_get(j, "prompt")));
    json_decref(j);
    return true;
}

static float *load_logits(const char *name, size_t count)
{
    const char *p = test_fixture(name);
    if (!p) return NULL;
    FILE *fp = fopen(p, "rb");
    float *buf = malloc(count * sizeof(float));
    size_t got = fp && buf ? fread(buf, sizeof(float), count, fp) : 0;
    if (fp) fclose(fp);
    if (got != count) {
        test_fail(__FILE__, __LINE__, "logits", " %s: %zu of %zu floats", p, got, count);
        free(buf);
        return NULL;
    }
    return buf;
}

static strata_model *open_model(const char *name, bool reference, bool kv_f32, int threads)
{
    const char *p = test_fixture(name);
    if (!p) return NULL;
    strata_model_params mp = strata_model_default_params();
    mp.reference_kernels = reference;
    mp.kv_f32 = kv_f32;
    mp.n_threads = threads;
    mp.n_ctx = 256;
    strata_model *m = NULL;
    strata_error e;
    if (strata_model_open(p, &mp, &m, &e)) test_fail(__FILE__, __LINE__, "open", " %s", e.message);
    return m;
}

typedef struct diff {
    double max, mean;
} diff;

static diff compare(const float *a, const float *b, size_t n)
{
    diff d = {0, 0};
    for (size_t i = 0; i < n; i++) {
        double x = fabs((double)a[i] - b[i]);
        d.mean += x;
        if (x > d.max || isnan(x)) d.max = isnan(x) ? INFINITY : x;
    }
    d.mean /= (double)n;
    return d;
}

/* Prompt logits of a model against a reference logits file. */
static bool prompt_logits_diff(const char *model, const char *golden_json, const char *ref_file, bool reference,
                               bool kv_f32, diff *d)
{
    golden g;
    if (!load_golden(golden_json, &g)) return false;
    strata_model *m = open_model(model, reference, kv_f32, 2);
    if (!m) return false;
    size_t V = strata_model_n_vocab(m), count = g.n_prompt * V;
    float *ref = load_logits(ref_file, count), *got = malloc(count * sizeof(float));
    strata_error e;
    bool ok = ref && got && strata_eval(m, g.prompt, g.n_prompt, got, true, &e) == STRATA_OK;
    if (ok) *d = compare(got, ref, count);
    free(ref);
    free(got);
    strata_model_free(m);
    return ok;
}

static const char *const synth_types[] = {"f16",  "bf16", "q8_0",   "q4_0", "q4_1",   "q5_0",   "q5_1",
                                          "q2_k", "q3_k_m", "q4_k_m", "q5_k_m", "q6_k", "iq4_nl", "iq4_xs"};

TEST(test_engine_synth_reference_matches_f32ref)
{
    for (size_t i = 0; i < sizeof synth_types / sizeof synth_types[0]; i++) {
        char model[64], json[64], ref[64];
        snprintf(model, sizeof model, "synth-%s.gguf", synth_types[i]);
        snprintf(json, sizeof json, "synth-%s.golden.json", synth_types[i]);
        snprintf(ref, sizeof ref, "synth-%s.f32ref.logits.f32", synth_types[i]);
        diff d;
        if (!prompt_logits_diff(model, json, ref, true, true, &d)) return;
        CHECK(d.max <= 1e-3, " %s: max |d| %.3g mean %.3g", synth_types[i], d.max, d.mean);
    }
}

TEST(test_engine_synth_fast_close_to_reference_or_golden)
{
    for (size_t i = 0; i < sizeof synth_types / sizeof synth_types[0]; i++) {
        char model[64], json[64], ref[64], gold[64];
        snprintf(model, sizeof model, "synth-%s.gguf", synth_types[i]);
        snprintf(json, sizeof json, "synth-%s.golden.json", synth_types[i]);
        snprintf(ref, sizeof ref, "synth-%s.f32ref.logits.f32", synth_types[i]);
        snprintf(gold, sizeof gold, "synth-%s.logits.f32", synth_types[i]);
        diff dr, dg;
        if (!prompt_logits_diff(model, json, ref, false, false, &dr)) return;
        if (!prompt_logits_diff(model, json, gold, false, false, &dg)) return;
        bool ok = (dr.mean <= 0.02 && dr.max <= 0.1) || (dg.mean <= 0.02 && dg.max <= 0.1);
        CHECK(ok, " %s: vs f32ref max %.3g mean %.3g, vs golden max %.3g mean %.3g", synth_types[i], dr.max, dr.mean,
              dg.max, dg.mean);
    }
}

TEST(test_engine_stories260k_logits)
{
    const char *names[2] = {"stories260K", "stories260K-lily"};
    for (int i = 0; i < 2; i++) {
        char json[64], ref[64], gold[64];
        snprintf(json, sizeof json, "%s.golden.json", names[i]);
        snprintf(ref, sizeof ref, "%s.f32ref.logits.f32", names[i]);
        snprintf(gold, sizeof gold, "%s.logits.f32", names[i]);
        diff d;
        if (!prompt_logits_diff("stories260K.gguf", json, ref, false, true, &d)) return;
        CHECK(d.max <= 1e-3, " %s f32 KV vs f32ref: max %.3g", names[i], d.max);
        if (!prompt_logits_diff("stories260K.gguf", json, gold, false, false, &d)) return;
        CHECK(d.max <= 0.03, " %s f16 KV vs golden: max %.3g", names[i], d.max);
    }
}

/* Greedy decoding one token at a time must reproduce llama.cpp's tokens. */
TEST(test_engine_stories260k_greedy_continuation)
{
    const char *names[2] = {"stories260K.golden.json", "stories260K-lily.golden.json"};
    for (int i = 0; i < 2; i++) {
        golden g;
        if (!load_golden(names[i], &g)) return;
        strata_model *m = open_model("stories260K.gguf", false, false, 2);
        REQUIRE(m);
        size_t V = strata_model_n_vocab(m);
        float *logits = malloc(V * sizeof(float));
        strata_sampler_params sp = strata_sampler_default_params();
        sp.temp = 0;
        strata_sampler *s = strata_sampler_new(&sp, m);
        strata_error e;
        REQUIRE(strata_eval(m, g.prompt, g.n_prompt, logits, false, &e) == STRATA_OK, " %s", e.message);
        size_t match = 0;
        for (; match < g.n_greedy; match++) {
            int32_t t = strata_sample(s, logits, NULL, 0);
            if (t != g.greedy[match]) break;
            if (strata_eval(m, &t, 1, logits, false, &e)) break;
        }
        CHECK(match == g.n_greedy, " %s: first %zu of %zu greedy tokens match", names[i], match, g.n_greedy);
        strata_sampler_free(s);
        free(logits);
        strata_model_free(m);
    }
}

/* Same logits whatever the thread count; batch == token-by-token. */
TEST(test_engine_threads_and_batching_agree)
{
    golden g;
    if (!load_golden("synth-q4_k_m.golden.json", &g)) return;
    strata_model *a = open_model("synth-q4_k_m.gguf", false, false, 1);
    strata_model *b = open_model("synth-q4_k_m.gguf", false, false, 3);
    REQUIRE(a && b);
    size_t V = strata_model_n_vocab(a);
    float *la = malloc(g.n_prompt * V * sizeof(float)), *lb = malloc(g.n_prompt * V * sizeof(float));
    strata_error e;
    REQUIRE(strata_eval(a, g.prompt, g.n_prompt, la, true, &e) == STRATA_OK);
    for (size_t t = 0; t < g.n_prompt; t++) REQUIRE(strata_eval(b, &g.prompt[t], 1, lb + t * V, false, &e) == STRATA_OK);
    diff d = compare(la, lb, g.n_prompt * V);
    CHECK(d.max <= 1e-4, " batch/1 thread vs token-by-token/3 threads: max %.3g", d.max);
    free(la);
    free(lb);
    strata_model_free(a);
    strata_model_free(b);
}
