/* Plans that put layers on the GPU, run by `run` exactly (issue 12): a
 * saved plan (`strata plan --json` of this machine, its groups then set to
 * GPU 0 or its weights sent over the link) reaches the engine intact:
 * the groups the plan puts in VRAM are resident there, those it sends over
 * the link are streamed RAM->VRAM, the rest run on the CPU; at every split
 * point of a small model the logits agree with the CPU path within the
 * issue's bounds (mean |d| <= 0.02, max <= 0.1; the CPU with reference
 * kernels: f32 products, as the GPU). Plans the engine cannot run are
 * refused with the reason. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_helpers.h"
#include "strata.h"
#include "test.h"

enum { N_TOK = 16, N_PROMPT = 6, N_GROUPS = 5 }; /* synth-q4_k_m: 4 layers and the output */

/* The CPU plan `strata plan --json` makes for the fixture, or NULL. */
static json_t *cpu_plan(const char *model)
{
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s plan '%s' -c 64 --json", test_strata_bin(), model);
    int rc = test_run(cmd, &out, false);
    json_error_t je;
    json_t *doc = rc == 0 && out ? json_loads(out, 0, &je) : NULL;
    CHECK(doc && json_array_size(json_object_get(json_object_get(doc, "plan"), "groups")) == N_GROUPS,
          " plan --json (exit %d): %.200s", rc, out ? out : "");
    free(out);
    return doc;
}

/* A site letter of the plan format: 'c' cpu, 'v' gpu (resident in VRAM),
 * 'l' link (streamed RAM->VRAM). */
static const char *site_name(char c) { return c == 'v' ? "gpu" : c == 'l' ? "link" : "cpu"; }

/* The plan with group g decoded on site decode[g] and run for prompt
 * batches on prefill[g] (letters of site_name; "v" groups on GPU 0), and
 * weights_over_link as given; written to a file. */
static const char *phase_plan(json_t *doc, const char *decode, const char *prefill, bool link, const char *name)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", test_tmpdir(), name);
    json_t *p = json_deep_copy(doc), *plan = json_object_get(p, "plan");
    json_t *groups = json_object_get(plan, "groups");
    for (uint32_t g = 0; g < N_GROUPS; g++) {
        json_t *e = json_array_get(groups, g);
        if (decode[g] == 'v') {
            json_object_set_new(e, "tier", json_string("gpu"));
            json_object_set_new(e, "gpu", json_integer(0));
        }
        json_object_set_new(e, "site", json_string(site_name(decode[g])));
        json_object_set_new(e, "prefill_site", json_string(site_name(prefill[g])));
    }
    json_object_set_new(plan, "weights_over_link", json_boolean(link));
    int rc = json_dump_file(p, path, 0);
    json_decref(p);
    CHECK(rc == 0, " writing %s", path);
    return path;
}

/* The plan with its first n_vram groups on GPU 0 and, with link, the
 * weights of the others sent over the link (in both phases). */
static const char *gpu_plan(json_t *doc, uint32_t n_vram, bool link, const char *name)
{
    char sites[N_GROUPS + 1] = {0};
    for (uint32_t g = 0; g < N_GROUPS; g++) sites[g] = g < n_vram ? 'v' : link ? 'l' : 'c';
    return phase_plan(doc, sites, sites, link, name);
}

/* The model run with a saved plan, on the GPU or on the CPU (reference
 * kernels: f32 products, as the GPU), or NULL. */
static strata_model *open_model(const char *model, const char *plan_file, bool gpu, strata_error *err)
{
    strata_model_params p = strata_model_default_params();
    p.gpu = gpu ? STRATA_GPU_DEVICE : STRATA_GPU_OFF;
    p.reference_kernels = !gpu;
    p.plan_file = plan_file;
    p.n_threads = 2;
    strata_model *m = NULL;
    return strata_model_open(model, &p, &m, err) == STRATA_OK ? m : NULL;
}

/* Logits of N_PROMPT tokens at once, then one at a time ([N_TOK][n_vocab]). */
static float *eval(const char *model, const char *plan_file, bool gpu, strata_model_stats *s, uint32_t *n_vocab,
                   strata_error *err)
{
    strata_model *m = open_model(model, plan_file, gpu, err);
    if (!m) return NULL;
    uint32_t nv = *n_vocab = strata_model_n_vocab(m);
    int32_t tok[N_TOK];
    for (int i = 0; i < N_TOK; i++) tok[i] = (int32_t)((i * 7919u + 13u) % nv);
    float *out = malloc((size_t)N_TOK * nv * sizeof(float));
    bool ok = out && strata_eval(m, tok, N_PROMPT, out, true, err) == STRATA_OK;
    for (int i = N_PROMPT; ok && i < N_TOK; i++)
        ok = strata_eval(m, tok + i, 1, out + (size_t)i * nv, false, err) == STRATA_OK;
    strata_model_get_stats(m, s);
    strata_model_free(m);
    if (!ok) free(out), out = NULL;
    return out;
}

static void agree(const float *a, const float *b, size_t n, const char *what)
{
    double max = 0, mean = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > max || isnan(d)) max = isnan(d) ? INFINITY : d;
        mean += d / (double)n;
    }
    CHECK(mean <= 0.02 && max <= 0.1, " %s: mean |d| %.4g, max %.4g against the CPU", what, mean, max);
    printf("    %s: mean |d| %.2g, max %.2g\n", what, mean, max);
}

/* The device, the fixture and its CPU plan (NULL, skipped or failed, without). */
static json_t *setup(const char **model)
{
    if (!gpu_test_device()) return NULL;
    *model = test_fixture("synth-q4_k_m.gguf");
    return *model ? cpu_plan(*model) : NULL;
}

TEST(test_gpu_plan_placement_runs_exactly)
{
    const char *model;
    json_t *doc = setup(&model);
    if (!doc) return;
    strata_error err;
    strata_model_stats s;
    uint32_t nv = 0;
    float *cpu = eval(model, gpu_plan(doc, 0, false, "cpu.json"), false, &s, &nv, &err);
    REQUIRE(cpu, " CPU: %s", err.message);
    size_t n = (size_t)N_TOK * nv;
    /* every split point in VRAM, then everything over the link, then a split with the rest over the link */
    const struct { uint32_t vram; bool link; } cases[] = {{1, false}, {2, false}, {3, false}, {4, false},
                                                         {5, false}, {0, true},  {2, true}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char name[64], what[96];
        snprintf(name, sizeof name, "gpu-%u-%d.json", cases[c].vram, cases[c].link);
        snprintf(what, sizeof what, "%u groups in VRAM%s", cases[c].vram, cases[c].link ? ", the rest streamed" : "");
        float *gpu = eval(model, gpu_plan(doc, cases[c].vram, cases[c].link, name), true, &s, &nv, &err);
        CHECK(gpu, " %s: %s", what, err.message);
        if (!gpu) continue;
        uint32_t on_gpu = cases[c].link ? N_GROUPS : cases[c].vram;
        uint32_t streamed = cases[c].link ? N_GROUPS - cases[c].vram : 0;
        CHECK(s.gpu_layers + s.gpu_output == on_gpu && s.gpu_output == (on_gpu == N_GROUPS) &&
                  s.gpu_streamed == streamed,
              " %s: %u layers, output %d, %u streamed on the GPU", what, s.gpu_layers, s.gpu_output, s.gpu_streamed);
        agree(gpu, cpu, n, what);
        free(gpu);
    }
    free(cpu);
    /* a GPU plan with the GPU off, and one on a second GPU, are refused */
    const char *path = gpu_plan(doc, 2, false, "gpu-off.json");
    float *lg = eval(model, path, false, &s, &nv, &err);
    CHECK(!lg && strstr(err.message, "GPU is off"), " --gpu none: %s", lg ? "ran" : err.message);
    free(lg);
    json_object_set_new(json_array_get(json_object_get(json_object_get(doc, "plan"), "groups"), 0), "gpu",
                        json_integer(1));
    json_object_set_new(json_array_get(json_object_get(json_object_get(doc, "plan"), "groups"), 0), "tier",
                        json_string("gpu"));
    path = gpu_plan(doc, 0, false, "gpu1.json");
    lg = eval(model, path, true, &s, &nv, &err);
    CHECK(!lg && strstr(err.message, "one GPU"), " GPU 1: %s", lg ? "ran" : err.message);
    free(lg);
    json_decref(doc);
}

enum { N_LONG = 40, N_GEN = 8 }; /* a prompt of 40 tokens (a prefill step: >= 32), then 8 decoded */

/* Greedy generation: the logits of a N_LONG-token prompt evaluated at once
 * and of N_GEN tokens decoded one at a time, each the previous logits'
 * argmax ([N_LONG + N_GEN][n_vocab]; the tokens chosen in gen). */
static float *generate(const char *model, const char *plan_file, bool gpu, strata_model_stats *s, uint32_t *n_vocab,
                       int32_t gen[N_GEN], strata_error *err)
{
    strata_model *m = open_model(model, plan_file, gpu, err);
    if (!m) return NULL;
    uint32_t nv = *n_vocab = strata_model_n_vocab(m);
    int32_t tok[N_LONG];
    for (int i = 0; i < N_LONG; i++) tok[i] = (int32_t)((i * 7919u + 13u) % nv);
    float *out = malloc((size_t)(N_LONG + N_GEN) * nv * sizeof(float));
    bool ok = out && strata_eval(m, tok, N_LONG, out, true, err) == STRATA_OK;
    for (int i = 0; ok && i < N_GEN; i++) {
        const float *last = out + (size_t)(N_LONG + i - 1) * nv;
        int32_t best = 0;
        for (uint32_t v = 1; v < nv; v++) best = last[v] > last[best] ? (int32_t)v : best;
        gen[i] = best;
        ok = strata_eval(m, &gen[i], 1, out + (size_t)(N_LONG + i) * nv, false, err) == STRATA_OK;
    }
    strata_model_get_stats(m, s);
    strata_model_free(m);
    if (!ok) free(out), out = NULL;
    return out;
}

/* Site choice per phase: a plan whose prompt batches stream to the GPU
 * groups that decode on the CPU (their KV caches stay on the CPU, which
 * attends for the GPU) runs them there for the prompt only: the ring
 * copies each such group once for the 40-token prompt and never while
 * decoding, and the logits agree with the CPU reference within the GPU
 * bounds, the greedy tokens equal. A plan whose phases differ otherwise is
 * refused, naming the field. */
TEST(test_gpu_plan_phase_sites)
{
    const char *model;
    int32_t want[N_GEN], got[N_GEN]; /* greedy tokens: the CPU's, a GPU run's */
    json_t *doc = setup(&model);
    if (!doc) return;
    strata_error err;
    strata_model_stats s;
    uint32_t nv = 0;
    float *cpu = generate(model, gpu_plan(doc, 0, false, "phase-cpu.json"), false, &s, &nv, want, &err);
    REQUIRE(cpu, " CPU: %s", err.message);
    size_t n = (size_t)(N_LONG + N_GEN) * nv;
    /* decode sites, prefill sites, groups streamed for the prompt only, layers on the GPU decoding */
    const struct { const char *decode, *prefill; uint32_t prefill_only, layers; } cases[] = {
        {"ccccc", "lllll", 5, 0}, {"vvccc", "vvllc", 2, 2}, {"cccll", "lllll", 3, 1}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char name[64], what[96];
        snprintf(name, sizeof name, "phase-%zu.json", c);
        snprintf(what, sizeof what, "decode %s, prefill %s", cases[c].decode, cases[c].prefill);
        float *gpu = generate(model, phase_plan(doc, cases[c].decode, cases[c].prefill, false, name), true, &s, &nv,
                              got, &err);
        CHECK(gpu, " %s: %s", what, err.message);
        if (!gpu) continue;
        uint32_t link_prefill = 0, link_decode = 0;
        for (int g = 0; g < N_GROUPS; g++) {
            link_prefill += cases[c].prefill[g] == 'l';
            link_decode += cases[c].decode[g] == 'l';
        }
        /* the prompt copies each of its streamed groups once; decoding, the ring of two entries keeps the
         * (at most two) groups it streams after copying each once: a plan streaming to the GPU when
         * decoding too would copy five more groups per token */
        CHECK(s.gpu_prefill_streamed == cases[c].prefill_only && s.gpu_layers == cases[c].layers &&
                  s.gpu_stream_copies >= link_prefill && s.gpu_stream_copies <= link_prefill + link_decode,
              " %s: %u groups streamed for the prompt only, %u GPU layers, %llu copies", what, s.gpu_prefill_streamed,
              s.gpu_layers, (unsigned long long)s.gpu_stream_copies);
        agree(gpu, cpu, n, what);
        CHECK(!memcmp(got, want, sizeof want), " %s: greedy tokens differ from the CPU's", what);
        free(gpu);
    }
    free(cpu);
    /* a group resident for the prompt but on the CPU when decoding is no plan the engine runs */
    float *lg = generate(model, phase_plan(doc, "ccccc", "lvccc", false, "phase-bad.json"), true, &s, &nv, got, &err);
    CHECK(!lg && strstr(err.message, "prefill_site"), " %s", lg ? "ran" : err.message);
    free(lg);
    json_decref(doc);
}

/* `run -b B --stats` with a saved plan (stdout and stderr together), or
 * NULL when it failed. */
static char *run_batch(const char *model, const char *plan_file, unsigned batch)
{
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s run -m '%s' --plan '%s' --gpu 0 -t 2 -c 64 -b %u -n 8 --temp 0 --stats -p 'Once upon "
             "a time there was a little girl named Lily who loved to play outside in the park with her friends and "
             "her dog' 2>&1", test_strata_bin(), model, plan_file, batch);
    int rc = test_run(cmd, &out, true);
    CHECK(rc == 0 && out, " -b %u (exit %d): %.600s", batch, rc, out ? out : "");
    if (rc != 0) free(out), out = NULL;
    return out;
}

/* The generated text: the line with the prompt, from its end to the first
 * "strata:" report (the stats interleave with it), then the lines up to
 * the first report line, without its report lines. */
static void generated_text(const char *out, char *buf, size_t len)
{
    size_t n = 0;
    const char *p = strstr(out, "her dog");
    for (p = p ? p + 7 : out; *p && n + 1 < len; p++) {
        if (!strncmp(p, "strata: load", 12)) break;
        if (!strncmp(p, "strata:", 7)) { /* a report line: skip it */
            const char *nl = strchr(p, '\n');
            if (!nl) break;
            p = nl;
            continue;
        }
        buf[n++] = *p;
    }
    buf[n] = '\0';
}

/* The run's batch decides whether the prompt-batch sites run: a plan that
 * decodes on the CPU and streams every group to the GPU for steps of 32+
 * tokens, run with -b 512, says so in its plan line, reserves the ring in
 * VRAM and streams the prompt there; run with -b 16 its passes never reach
 * 32 tokens, so the plan it runs is the CPU's: no prompt-batch line, no
 * GPU memory at all (the ring it would never use was reserved before).
 * The greedy text is the same. */
TEST(test_gpu_plan_phase_sites_follow_the_batch)
{
    const char *model;
    json_t *doc = setup(&model);
    if (!doc) return;
    const char *path = phase_plan(doc, "ccccc", "lllll", false, "phase-batch.json");
    char *small = run_batch(model, path, 16), *large = run_batch(model, path, 512);
    if (small && large) {
        CHECK(strstr(large, "prompt batches: blk 0-3, output streamed over the link to GPU 0") &&
                  strstr(large, "5 more groups on the CPU streamed to it for prompt batches") &&
                  strstr(large, "prompt batch 1 (39 tokens)") && strstr(large, "memory VRAM:") &&
                  !strstr(large, "stream slots 0 B, expert cache 0 B, KV cache 0 B, KV reserve 0 B, scratch 0 B"),
              " -b 512: %.1500s", large);
        CHECK(strstr(small, "strata: plan ") && !strstr(small, "prompt batches:") && !strstr(small, "GPU llvmpipe") &&
                  !strstr(small, "memory VRAM:") && strstr(small, "prompt batch 3 (7 tokens)"),
              " -b 16: %.1500s", small);
        char a[512], b[512];
        generated_text(small, a, sizeof a);
        generated_text(large, b, sizeof b);
        CHECK(a[0] && !strcmp(a, b), " greedy text: '%s' with -b 16, '%s' with -b 512", a, b);
    }
    free(small);
    free(large);
    json_decref(doc);
}
