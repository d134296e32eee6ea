/* Conformance harness: runs the engine on a fixture of ../shared/fixtures
 * (see its README) and compares with what llama.cpp computed.
 *
 * A fixture is named by its base, the golden file without ".golden.json":
 * "synth-q4_k_m", "stories260K-lily", "arch/qwen2-q4_k_m". The golden JSON
 * names the model file ("model", relative to the JSON's folder; BASE.gguf
 * when absent), n_vocab, the prompt tokens and the greedy tokens; next to
 * it lie BASE.logits.f32 (llama.cpp, f16 KV, default kernels: "golden") and
 * BASE.f32ref.logits.f32 (exact F32 math: "f32ref"), both
 * [len(prompt_tokens)][n_vocab] float32 (the size must match exactly).
 *
 * Outcomes. A missing golden JSON or model file means the fixture is absent:
 * the result says `missing` and the test is marked skipped (test_fixture()
 * / test_skip(): the runner prints SKIP with the path, and the harness
 * prints SKIPPED for each check it could not run). Anything else that
 * goes wrong (bad JSON, missing or wrongly sized logits file, open or eval
 * error, vocabulary mismatch) gives ok == false with a one-line `error`; the
 * caller must fail the test. conf_complete() / conf_greedy_complete() do
 * that for the caller and also fail unless everything meant to be compared
 * was compared (positions == len(prompt_tokens) > 0, vocab == the model's ==
 * the JSON's n_vocab, greedy steps == len(greedy_tokens) > 0, both runs).
 *
 * Usage, one fixture checked the standard way (a table-driven test):
 *
 *     static const struct { const char *base; conf_bounds b; } cases[] = {
 *         {"arch/qwen2-q4_k_m", CONF_BOUNDS_DEFAULT},
 *         {"arch/gemma3-q4_k_m", {.ref_max = 1e-3, .fast = {0.03, 0.15}, .fast_vs = CONF_VS_GOLDEN,
 *                                 .greedy = CONF_GREEDY_NEAR, .greedy_gap = 0.3}},
 *     };
 *     TEST(test_arch_conformance)
 *     {
 *         for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
 *             conf_check(cases[i].base, CONF_FAST, &cases[i].b);
 *     }
 *
 * conf_check records every failure itself; its count of checks is 0 for a
 * missing fixture too, so `CHECK(n == 3 || test_failures())` would turn a
 * skip into a failure.
 *
 * Or one comparison at a time:
 *
 *     conf_result g, f;
 *     conf_logits("synth-q8_0", CONF_REFERENCE, &g, &f);   (either may be NULL)
 *     if (conf_complete(&f, "q8_0 ref")) CHECK(f.max_abs <= 1e-3, ...);
 *     static conf_greedy_result gr;   (about 4 KiB)
 *     conf_greedy("stories260K", CONF_FAST, &gr);
 *     if (conf_greedy_complete(&gr, "stories")) CHECK(gr.n_match == gr.n_expected, ...);
 *
 * STRATA_CONF_VERBOSE=1 prints every measurement (to calibrate bounds).
 */
#ifndef STRATA_TESTS_CONFORMANCE_H
#define STRATA_TESTS_CONFORMANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "strata.h"

#define CONF_ERROR_MAX 640
#define CONF_PATH_MAX 1024

typedef enum conf_kernels { CONF_KERNELS_FAST, CONF_KERNELS_REFERENCE } conf_kernels;
typedef enum conf_kv { CONF_KV_F16, CONF_KV_F32 } conf_kv;

typedef struct conf_mode {
    conf_kernels kernels;
    conf_kv kv;
    int n_threads; /* <= 0: 2 (as the golden runs) */
    bool gpu;      /* layers on Vulkan device gpu_index (software devices too) */
    int gpu_index;
    uint32_t gpu_layers; /* at most this many (0: all that fit) */
} conf_mode;

/* The two usual modes: the truth (scalar kernels, F32 KV cache) and what
 * `strata run` uses by default (fast kernels, F16 KV cache, like llama.cpp). */
#define CONF_REFERENCE ((conf_mode){.kernels = CONF_KERNELS_REFERENCE, .kv = CONF_KV_F32, .n_threads = 2})
#define CONF_FAST ((conf_mode){.kernels = CONF_KERNELS_FAST, .kv = CONF_KV_F16, .n_threads = 2})
#define CONF_FAST_F32KV ((conf_mode){.kernels = CONF_KERNELS_FAST, .kv = CONF_KV_F32, .n_threads = 2})

/* A loaded fixture (conf_fixture_load). */
typedef struct conf_fixture {
    bool ok, missing;
    char error[CONF_ERROR_MAX];
    char base[256];
    char model_path[CONF_PATH_MAX], golden_path[CONF_PATH_MAX], f32ref_path[CONF_PATH_MAX];
    int32_t *prompt, *greedy;  /* prompt_tokens, greedy_tokens (malloc'd) */
    size_t n_prompt, n_greedy;
    uint32_t n_vocab;          /* the JSON's n_vocab */
} conf_fixture;

/* One logits comparison. */
typedef struct conf_result {
    bool ok, missing;
    char error[CONF_ERROR_MAX];
    const char *against;       /* "golden" or "f32ref" */
    size_t n_expected;         /* len(prompt_tokens) */
    uint32_t model_vocab;      /* the opened model's vocabulary */
    uint32_t json_vocab;       /* the golden JSON's n_vocab */
    size_t n_positions;        /* rows compared */
    size_t n_vocab;            /* columns compared in every row */
    double max_abs, mean_abs;  /* over n_positions x n_vocab values; NaN counts as +inf */
    size_t worst_pos, worst_tok;
} conf_result;

#define CONF_MAX_GREEDY 512

/* Greedy decoding after the prompt, one token at a time, measured twice:
 *  - free-running: argmax (lowest id on ties) fed back, len(greedy_tokens)
 *    ids; n_match counts the leading ids equal to greedy_tokens;
 *  - teacher-forced: greedy_tokens fed back; at every step the gap between
 *    the top logit and the golden token's logit (0 when it is the argmax).
 * Random-weight models have near-ties, so a logit error far inside the
 * bounds can flip one argmax and derail the free run; the forced gap still
 * says whether llama.cpp's choice was (nearly) strata's at every step. */
typedef struct conf_greedy_result {
    bool ok, missing;
    char error[CONF_ERROR_MAX];
    size_t n_expected;         /* len(greedy_tokens) */
    size_t n_generated;        /* free run: ids generated and compared */
    size_t n_match;            /* free run: leading ids equal to greedy_tokens */
    size_t n_forced;           /* forced: steps compared */
    size_t n_forced_match;     /* forced: steps whose argmax is the golden token */
    double max_gap;            /* forced: max over steps of top logit - golden token's logit */
    size_t worst_step;
    int32_t ids[CONF_MAX_GREEDY];
    int32_t expected[CONF_MAX_GREEDY];
} conf_greedy_result;

typedef struct conf_tol {
    double mean, max; /* bounds on mean and max |delta| */
} conf_tol;

typedef enum conf_vs {
    CONF_VS_EITHER, /* within `fast` of golden or of f32ref (kernels may round activations like llama.cpp or not) */
    CONF_VS_GOLDEN,
    CONF_VS_F32REF,
} conf_vs;

typedef enum conf_greedy_rule {
    CONF_GREEDY_NEAR,  /* forced: every golden token within greedy_gap of the top logit */
    CONF_GREEDY_EXACT, /* free run: the ids equal greedy_tokens (trained models) */
    CONF_GREEDY_OFF,
} conf_greedy_rule;

/* Bounds of conf_check. Zero bounds cannot pass: spell every one out. */
typedef struct conf_bounds {
    double ref_max;   /* reference kernels + F32 KV vs f32ref: max |delta| */
    conf_tol fast;    /* the checked mode vs golden / f32ref */
    conf_vs fast_vs;
    conf_greedy_rule greedy;
    double greedy_gap; /* CONF_GREEDY_NEAR's bound */
} conf_bounds;

/* The README's bounds for random-weight llama-like fixtures (synth, arch):
 * logits as the synth tests; the gap allows an error of fast.max on both
 * of the two logits of a near-tie. */
#define CONF_BOUNDS_DEFAULT                                                                                        \
    {.ref_max = 1e-3, .fast = {0.02, 0.1}, .fast_vs = CONF_VS_EITHER, .greedy = CONF_GREEDY_NEAR, .greedy_gap = 0.2}

/* Loads BASE.golden.json and resolves the three other files. */
bool conf_fixture_load(const char *base, conf_fixture *f);
/* The same from an explicit JSON path (no skip: a missing file is an error). */
bool conf_fixture_load_path(const char *json_path, conf_fixture *f);
void conf_fixture_free(conf_fixture *f);

/* Opens the fixture's model in `mode`; NULL with err filled on failure. */
strata_model *conf_open(const conf_fixture *f, conf_mode mode, char *err, size_t err_size);

/* Evaluates the prompt once, as one batch with all logits, and compares it
 * with the golden and/or f32ref logits (either result may be NULL). False
 * unless every requested comparison was made. */
bool conf_eval_logits(const conf_fixture *f, conf_mode mode, conf_result *vs_golden, conf_result *vs_f32ref);
bool conf_logits(const char *base, conf_mode mode, conf_result *vs_golden, conf_result *vs_f32ref);

/* Both greedy measures (above) on one opened model. */
bool conf_eval_greedy(const conf_fixture *f, conf_mode mode, conf_greedy_result *r);
bool conf_greedy(const char *base, conf_mode mode, conf_greedy_result *r);

/* For a test: false when the result cannot be judged. A missing fixture is
 * left skipped (printed again here); an error or an incomplete comparison
 * records a failure at file:line. */
bool conf_complete_at(const conf_result *r, const char *what, const char *file, int line);
bool conf_greedy_complete_at(const conf_greedy_result *r, const char *what, const char *file, int line);
#define conf_complete(r, what) conf_complete_at((r), (what), __FILE__, __LINE__)
#define conf_greedy_complete(r, what) conf_greedy_complete_at((r), (what), __FILE__, __LINE__)

/* The standard three checks of one fixture, failures recorded at the caller:
 *   1. reference kernels + F32 KV vs f32ref: max |delta| <= b->ref_max
 *      (b NULL: CONF_BOUNDS_DEFAULT);
 *   2. `mode` vs golden / f32ref (b->fast_vs): mean <= b->fast.mean and max <= b->fast.max;
 *   3. `mode`'s greedy decoding by b->greedy (NEAR: forced gap <= b->greedy_gap;
 *      EXACT: free-running ids == greedy_tokens; OFF: not checked).
 * Returns the number of checks that ran to a verdict (3, or 2 with
 * CONF_GREEDY_OFF; fewer when the fixture is missing or an error failed
 * the test). */
int conf_check_at(const char *base, conf_mode mode, const conf_bounds *b, const char *file, int line);
#define conf_check(base, mode, b) conf_check_at((base), (mode), (b), __FILE__, __LINE__)

#endif
