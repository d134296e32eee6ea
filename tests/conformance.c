/* Conformance harness (see conformance.h): fixture loading, prompt logits
 * against golden / f32ref files, greedy continuation, the standard checks. */
#include "conformance.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

static void set_error(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_error(char *buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, CONF_ERROR_MAX, fmt, ap);
    va_end(ap);
}

static bool verbose(void)
{
    const char *v = getenv("STRATA_CONF_VERBOSE");
    return v && *v && strcmp(v, "0") != 0;
}

/* ---- fixture loading ---- */

/* Copies a JSON array of integers into a malloc'd array; false unless it is
 * a non-empty array of integers. */
static bool int_array(json_t *a, int32_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!json_is_array(a) || json_array_size(a) == 0) return false;
    int32_t *v = malloc(json_array_size(a) * sizeof *v);
    if (!v) return false;
    size_t i;
    json_t *x;
    json_array_foreach(a, i, x)
    {
        if (!json_is_integer(x) || json_integer_value(x) < INT32_MIN || json_integer_value(x) > INT32_MAX) {
            free(v);
            return false;
        }
        v[i] = (int32_t)json_integer_value(x);
    }
    *out = v;
    *n = json_array_size(a);
    return true;
}

/* PATH minus its ".golden.json" plus `suffix`. */
static bool sibling(const char *json_path, const char *suffix, char *out)
{
    size_t len = strlen(json_path), tail = strlen(".golden.json");
    if (len < tail || strcmp(json_path + len - tail, ".golden.json") != 0) return false;
    int n = snprintf(out, CONF_PATH_MAX, "%.*s%s", (int)(len - tail), json_path, suffix);
    return n > 0 && n < CONF_PATH_MAX;
}

/* The model named in the JSON, relative to the JSON's folder. */
static bool model_path(const char *json_path, const char *model, char *out)
{
    const char *slash = strrchr(json_path, '/');
    int dir = slash ? (int)(slash - json_path + 1) : 0;
    int n = model[0] == '/' ? snprintf(out, CONF_PATH_MAX, "%s", model)
                            : snprintf(out, CONF_PATH_MAX, "%.*s%s", dir, json_path, model);
    return n > 0 && n < CONF_PATH_MAX;
}

static bool parse_fields(json_t *j, const char *json_path, conf_fixture *f)
{
    json_t *model = json_object_get(j, "model"), *nv = json_object_get(j, "n_vocab");
    bool named = json_is_string(model) ? model_path(json_path, json_string_value(model), f->model_path)
                                       : !model && sibling(json_path, ".gguf", f->model_path);
    if (!named) return set_error(f->error, "%s: no usable \"model\"", json_path), false;
    if (!json_is_integer(nv) || json_integer_value(nv) <= 0 || json_integer_value(nv) > UINT32_MAX)
        return set_error(f->error, "%s: no positive \"n_vocab\"", json_path), false;
    f->n_vocab = (uint32_t)json_integer_value(nv);
    if (!int_array(json_object_get(j, "prompt_tokens"), &f->prompt, &f->n_prompt))
        return set_error(f->error, "%s: \"prompt_tokens\" is not a non-empty integer array", json_path), false;
    if (!int_array(json_object_get(j, "greedy_tokens"), &f->greedy, &f->n_greedy))
        return set_error(f->error, "%s: \"greedy_tokens\" is not a non-empty integer array", json_path), false;
    for (size_t i = 0; i < f->n_greedy; i++)
        if (f->greedy[i] < 0 || (uint32_t)f->greedy[i] >= f->n_vocab)
            return set_error(f->error, "%s: greedy token %d outside n_vocab", json_path, f->greedy[i]), false;
    if (f->n_greedy > CONF_MAX_GREEDY)
        return set_error(f->error, "%s: %zu greedy tokens, the harness holds %d", json_path, f->n_greedy,
                         CONF_MAX_GREEDY),
               false;
    return true;
}

/* Parses the JSON and resolves the file names; does not look for the model. */
static bool parse_golden(const char *json_path, conf_fixture *f)
{
    if (!sibling(json_path, ".logits.f32", f->golden_path) || !sibling(json_path, ".f32ref.logits.f32", f->f32ref_path))
        return set_error(f->error, "%s: not a BASE.golden.json path", json_path), false;
    json_error_t je;
    json_t *j = json_load_file(json_path, 0, &je);
    if (!j) return set_error(f->error, "%s: %s (line %d)", json_path, je.text, je.line), false;
    bool ok = parse_fields(j, json_path, f);
    json_decref(j);
    return ok;
}

static void fixture_init(conf_fixture *f, const char *base)
{
    memset(f, 0, sizeof *f);
    snprintf(f->base, sizeof f->base, "%s", base);
    set_error(f->error, "not loaded");
}

bool conf_fixture_load_path(const char *json_path, conf_fixture *f)
{
    fixture_init(f, json_path);
    if (!parse_golden(json_path, f)) return false;
    if (access(f->model_path, R_OK) != 0) return set_error(f->error, "model %s not found", f->model_path), false;
    f->ok = true;
    f->error[0] = '\0';
    return true;
}

/* The model is missing: the test is skipped (the runner prints why). */
static void model_missing(conf_fixture *f, const char *base)
{
    f->missing = true;
    set_error(f->error, "fixture %s: model %s not found", base, f->model_path);
    test_skip("%s", f->error);
}

bool conf_fixture_load(const char *base, conf_fixture *f)
{
    fixture_init(f, base);
    char name[CONF_PATH_MAX], json_path[CONF_PATH_MAX];
    snprintf(name, sizeof name, "%s.golden.json", base);
    const char *p = test_fixture(name);
    if (!p) {
        f->missing = true;
        set_error(f->error, "fixture %s not found", name);
        return false;
    }
    snprintf(json_path, sizeof json_path, "%s", p); /* test_fixture's buffer is reused */
    if (!parse_golden(json_path, f)) return false;
    if (access(f->model_path, R_OK) != 0) return model_missing(f, base), false;
    f->ok = true;
    f->error[0] = '\0';
    return true;
}

void conf_fixture_free(conf_fixture *f)
{
    free(f->prompt);
    free(f->greedy);
    f->prompt = f->greedy = NULL;
    f->n_prompt = f->n_greedy = 0;
}

strata_model *conf_open(const conf_fixture *f, conf_mode mode, char *err, size_t err_size)
{
    strata_model_params mp = strata_model_default_params();
    mp.reference_kernels = mode.kernels == CONF_KERNELS_REFERENCE;
    mp.kv_f32 = mode.kv == CONF_KV_F32;
    mp.n_threads = mode.n_threads > 0 ? mode.n_threads : 2;
    mp.gpu = mode.gpu ? STRATA_GPU_DEVICE : STRATA_GPU_OFF;
    mp.gpu_index = mode.gpu_index;
    mp.gpu_layers_max = mode.gpu_layers;
    size_t need = f->n_prompt + f->n_greedy + 1;
    mp.n_ctx = need > 256 ? (uint32_t)need : 256;
    strata_model *m = NULL;
    strata_error e = {0};
    if (strata_model_open(f->model_path, &mp, &m, &e) != STRATA_OK || !m) {
        snprintf(err, err_size, "open %s: %s", f->model_path, e.message);
        strata_model_free(m);
        return NULL;
    }
    return m;
}

/* ---- prompt logits ---- */

/* The whole [n_pos][n_vocab] float32 file, or NULL with err set. */
static float *read_logits(const char *path, size_t n_pos, size_t n_vocab, char *err)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return set_error(err, "reference logits %s: cannot open", path), NULL;
    struct stat st;
    size_t count = n_pos * n_vocab;
    float *buf = NULL;
    if (fstat(fileno(fp), &st) != 0 || (uint64_t)st.st_size != count * sizeof(float))
        set_error(err, "reference logits %s: %lld bytes, expected %zu (%zu positions x %zu vocab x 4)", path,
                  (long long)st.st_size, count * sizeof(float), n_pos, n_vocab);
    else if (!(buf = malloc(count * sizeof *buf)) || fread(buf, sizeof *buf, count, fp) != count) {
        set_error(err, "reference logits %s: short read", path);
        free(buf);
        buf = NULL;
    }
    fclose(fp);
    return buf;
}

static void result_init(conf_result *r, const conf_fixture *f, const char *against)
{
    if (!r) return;
    memset(r, 0, sizeof *r);
    r->against = against;
    r->missing = f->missing;
    r->n_expected = f->n_prompt;
    r->json_vocab = f->n_vocab;
    snprintf(r->error, sizeof r->error, "%s", f->ok ? "not compared" : f->error);
}

static void result_error(conf_result *r, const char *err)
{
    if (r) snprintf(r->error, sizeof r->error, "%s", err);
}

/* Row by row, counting the positions and columns actually compared. */
static void compare_rows(const float *got, const float *ref, size_t n_pos, size_t n_vocab, conf_result *r)
{
    double sum = 0;
    r->max_abs = 0;
    for (size_t p = 0; p < n_pos; p++) {
        size_t cols = 0;
        for (size_t t = 0; t < n_vocab; t++, cols++) {
            double d = fabs((double)got[p * n_vocab + t] - (double)ref[p * n_vocab + t]);
            if (isnan(d)) d = INFINITY;
            sum += d;
            if (d > r->max_abs || (p == 0 && t == 0)) r->max_abs = d, r->worst_pos = p, r->worst_tok = t;
        }
        r->n_vocab = cols;
        r->n_positions++;
    }
    r->mean_abs = r->n_positions ? sum / (double)(r->n_positions * r->n_vocab) : NAN;
}

static void compare_file(const conf_fixture *f, const float *got, uint32_t model_vocab, conf_result *r)
{
    if (!r) return;
    r->model_vocab = model_vocab;
    const char *path = strcmp(r->against, "golden") == 0 ? f->golden_path : f->f32ref_path;
    float *ref = read_logits(path, f->n_prompt, model_vocab, r->error);
    if (!ref) return;
    compare_rows(got, ref, f->n_prompt, model_vocab, r);
    free(ref);
    r->ok = true;
    r->error[0] = '\0';
    if (verbose())
        printf("    conf %s vs %s: %zu x %zu, max %.3g (pos %zu tok %zu) mean %.3g\n", f->base, r->against,
               r->n_positions, r->n_vocab, r->max_abs, r->worst_pos, r->worst_tok, r->mean_abs);
}

/* Prompt logits of the opened model, all positions; NULL with err set. */
static float *eval_prompt(const conf_fixture *f, strata_model *m, char *err)
{
    size_t count = f->n_prompt * strata_model_n_vocab(m);
    float *got = malloc(count * sizeof *got);
    if (!got) return set_error(err, "out of memory"), NULL;
    for (size_t i = 0; i < count; i++) got[i] = NAN; /* unwritten logits show */
    strata_error e = {0};
    if (strata_eval(m, f->prompt, f->n_prompt, got, true, &e) != STRATA_OK) {
        set_error(err, "eval of %zu prompt tokens: %s", f->n_prompt, e.message);
        free(got);
        return NULL;
    }
    return got;
}

/* The model, checked against the JSON's vocabulary; NULL with err set. */
static strata_model *open_checked(const conf_fixture *f, conf_mode mode, uint32_t *vocab, char *err)
{
    strata_model *m = conf_open(f, mode, err, CONF_ERROR_MAX);
    if (!m) return NULL;
    *vocab = strata_model_n_vocab(m);
    if (*vocab != f->n_vocab) {
        set_error(err, "model vocabulary %u, golden JSON n_vocab %u", *vocab, f->n_vocab);
        strata_model_free(m);
        return NULL;
    }
    return m;
}

bool conf_eval_logits(const conf_fixture *f, conf_mode mode, conf_result *vs_golden, conf_result *vs_f32ref)
{
    result_init(vs_golden, f, "golden");
    result_init(vs_f32ref, f, "f32ref");
    if (!f->ok) return false;
    char err[CONF_ERROR_MAX];
    uint32_t vocab = 0;
    strata_model *m = open_checked(f, mode, &vocab, err);
    float *got = m ? eval_prompt(f, m, err) : NULL;
    strata_model_free(m);
    if (!got) {
        result_error(vs_golden, err);
        result_error(vs_f32ref, err);
        return false;
    }
    compare_file(f, got, vocab, vs_golden);
    compare_file(f, got, vocab, vs_f32ref);
    free(got);
    return (!vs_golden || vs_golden->ok) && (!vs_f32ref || vs_f32ref->ok);
}

bool conf_logits(const char *base, conf_mode mode, conf_result *vs_golden, conf_result *vs_f32ref)
{
    conf_fixture f;
    conf_fixture_load(base, &f);
    bool ok = conf_eval_logits(&f, mode, vs_golden, vs_f32ref);
    conf_fixture_free(&f);
    return ok;
}

/* ---- greedy continuation ---- */

/* Index of the largest logit (lowest on ties); -1 when one is NaN. */
static int32_t argmax(const float *l, uint32_t n)
{
    uint32_t best = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (isnan(l[i])) return -1;
        if (l[i] > l[best]) best = i;
    }
    return (int32_t)best;
}

static bool eval_last(strata_model *m, const int32_t *t, size_t n, float *logits, uint32_t vocab, char *err)
{
    for (uint32_t i = 0; i < vocab; i++) logits[i] = NAN;
    strata_error e = {0};
    if (strata_eval(m, t, n, logits, false, &e) == STRATA_OK) return true;
    set_error(err, "eval of %zu tokens: %s", n, e.message);
    return false;
}

/* Free run: argmax fed back, r->n_expected ids. */
static bool free_run(strata_model *m, const conf_fixture *f, uint32_t vocab, float *logits, conf_greedy_result *r)
{
    bool ok = eval_last(m, f->prompt, f->n_prompt, logits, vocab, r->error);
    for (size_t k = 0; ok && k < f->n_greedy; k++) {
        int32_t id = argmax(logits, vocab);
        if (id < 0) return set_error(r->error, "NaN logits before greedy token %zu", k), false;
        r->ids[r->n_generated++] = id;
        if (r->n_match == k && id == f->greedy[k]) r->n_match++;
        if (k + 1 < f->n_greedy) ok = eval_last(m, &id, 1, logits, vocab, r->error);
    }
    return ok;
}

/* Teacher forcing: greedy_tokens fed back; the golden token's gap to the top. */
static bool forced_run(strata_model *m, const conf_fixture *f, uint32_t vocab, float *logits, conf_greedy_result *r)
{
    strata_model_reset(m);
    bool ok = eval_last(m, f->prompt, f->n_prompt, logits, vocab, r->error);
    for (size_t k = 0; ok && k < f->n_greedy; k++) {
        int32_t top = argmax(logits, vocab), want = f->greedy[k];
        if (top < 0) return set_error(r->error, "NaN logits at forced step %zu", k), false;
        double gap = (double)logits[top] - (double)logits[want];
        if (gap > r->max_gap || k == 0) r->max_gap = gap, r->worst_step = k;
        r->n_forced_match += top == want;
        r->n_forced++;
        if (k + 1 < f->n_greedy) ok = eval_last(m, &want, 1, logits, vocab, r->error);
    }
    return ok;
}

bool conf_eval_greedy(const conf_fixture *f, conf_mode mode, conf_greedy_result *r)
{
    memset(r, 0, sizeof *r);
    r->missing = f->missing;
    r->n_expected = f->n_greedy;
    if (f->n_greedy <= CONF_MAX_GREEDY && f->greedy) memcpy(r->expected, f->greedy, f->n_greedy * sizeof *f->greedy);
    if (!f->ok) return set_error(r->error, "%s", f->error), false;
    uint32_t vocab = 0;
    strata_model *m = open_checked(f, mode, &vocab, r->error);
    float *logits = m ? malloc(vocab * sizeof *logits) : NULL;
    if (m && !logits) set_error(r->error, "out of memory");
    r->ok = logits && free_run(m, f, vocab, logits, r) && forced_run(m, f, vocab, logits, r);
    free(logits);
    strata_model_free(m);
    if (r->ok) r->error[0] = '\0';
    if (verbose() && r->ok)
        printf("    conf %s greedy: free run %zu of %zu match; forced %zu of %zu argmax, max gap %.3g (step %zu)\n",
               f->base, r->n_match, r->n_expected, r->n_forced_match, r->n_forced, r->max_gap, r->worst_step);
    return r->ok;
}

bool conf_greedy(const char *base, conf_mode mode, conf_greedy_result *r)
{
    conf_fixture f;
    conf_fixture_load(base, &f);
    bool ok = conf_eval_greedy(&f, mode, r);
    conf_fixture_free(&f);
    return ok;
}

/* ---- verdicts ---- */

static bool judgeable(bool ok, bool missing, const char *error, const char *what, const char *file, int line)
{
    if (missing) {
        printf("    SKIPPED %s: %s\n", what, error);
        return false;
    }
    if (!ok) test_fail(file, line, "conformance", " %s: %s", what, error);
    return ok;
}

bool conf_complete_at(const conf_result *r, const char *what, const char *file, int line)
{
    if (!judgeable(r->ok, r->missing, r->error, what, file, line)) return false;
    bool rows = r->n_expected > 0 && r->n_positions == r->n_expected;
    bool cols = r->model_vocab > 0 && r->n_vocab == r->model_vocab && r->json_vocab == r->model_vocab;
    if (rows && cols) return true;
    test_fail(file, line, "complete comparison",
              " %s vs %s: compared %zu of %zu positions, %zu columns (model vocab %u, JSON n_vocab %u)", what,
              r->against ? r->against : "?", r->n_positions, r->n_expected, r->n_vocab, r->model_vocab,
              r->json_vocab);
    return false;
}

bool conf_greedy_complete_at(const conf_greedy_result *r, const char *what, const char *file, int line)
{
    if (!judgeable(r->ok, r->missing, r->error, what, file, line)) return false;
    if (r->n_expected > 0 && r->n_generated == r->n_expected && r->n_forced == r->n_expected) return true;
    test_fail(file, line, "complete greedy", " %s: generated %zu, forced %zu of %zu greedy tokens", what,
              r->n_generated, r->n_forced, r->n_expected);
    return false;
}

static bool within(const conf_result *r, conf_tol t) { return r->mean_abs <= t.mean && r->max_abs <= t.max; }

/* Check 1: reference kernels + F32 KV vs f32ref. */
static int check_reference(const char *base, const conf_bounds *b, const char *file, int line)
{
    conf_result r;
    conf_logits(base, CONF_REFERENCE, NULL, &r);
    if (!conf_complete_at(&r, base, file, line)) return 0;
    if (!(r.max_abs <= b->ref_max))
        test_fail(file, line, "reference vs f32ref", " %s: max |d| %.3g (pos %zu tok %zu) > %.3g, mean %.3g", base,
                  r.max_abs, r.worst_pos, r.worst_tok, b->ref_max, r.mean_abs);
    return 1;
}

/* Check 2: the mode vs golden and/or f32ref. */
static int check_mode(const char *base, conf_mode mode, const conf_bounds *b, const char *file, int line)
{
    conf_result g, f;
    bool want_g = b->fast_vs != CONF_VS_F32REF, want_f = b->fast_vs != CONF_VS_GOLDEN;
    conf_logits(base, mode, want_g ? &g : NULL, want_f ? &f : NULL);
    if ((want_g && !conf_complete_at(&g, base, file, line)) || (want_f && !conf_complete_at(&f, base, file, line)))
        return 0;
    bool ok = (want_g && within(&g, b->fast)) || (want_f && within(&f, b->fast));
    if (!ok)
        test_fail(file, line, "mode vs golden/f32ref",
                  " %s (kernels %s, KV %s): bound mean %.3g max %.3g; vs golden max %.3g mean %.3g; "
                  "vs f32ref max %.3g mean %.3g",
                  base, mode.kernels == CONF_KERNELS_REFERENCE ? "reference" : "fast",
                  mode.kv == CONF_KV_F32 ? "f32" : "f16", b->fast.mean, b->fast.max, want_g ? g.max_abs : NAN,
                  want_g ? g.mean_abs : NAN, want_f ? f.max_abs : NAN, want_f ? f.mean_abs : NAN);
    return 1;
}

/* Check 3: greedy decoding by b->greedy. */
static int check_greedy(const char *base, conf_mode mode, const conf_bounds *b, const char *file, int line)
{
    conf_greedy_result *r = malloc(sizeof *r);
    if (!r) return test_fail(file, line, "malloc", " greedy result"), 0;
    conf_greedy(base, mode, r);
    int done = conf_greedy_complete_at(r, base, file, line);
    if (done && b->greedy == CONF_GREEDY_EXACT && r->n_match != r->n_expected)
        test_fail(file, line, "greedy exact", " %s: first %zu of %zu greedy tokens match (got %d, want %d)", base,
                  r->n_match, r->n_expected, r->ids[r->n_match], r->expected[r->n_match]);
    if (done && b->greedy == CONF_GREEDY_NEAR && !(r->max_gap <= b->greedy_gap))
        test_fail(file, line, "greedy near",
                  " %s: forced step %zu: golden token %d is %.3g below the top logit (bound %.3g); %zu of %zu "
                  "forced argmax match",
                  base, r->worst_step, r->expected[r->worst_step], r->max_gap, b->greedy_gap, r->n_forced_match,
                  r->n_forced);
    free(r);
    return done;
}

int conf_check_at(const char *base, conf_mode mode, const conf_bounds *b, const char *file, int line)
{
    static const conf_bounds def = CONF_BOUNDS_DEFAULT;
    if (!b) b = &def;
    conf_fixture f;
    bool loaded = conf_fixture_load(base, &f);
    conf_fixture_free(&f);
    if (!loaded) { /* skipped when missing, else one failure for the three checks */
        judgeable(false, f.missing, f.error, base, file, line);
        return 0;
    }
    int n = check_reference(base, b, file, line) + check_mode(base, mode, b, file, line);
    return b->greedy != CONF_GREEDY_OFF ? n + check_greedy(base, mode, b, file, line) : n;
}
