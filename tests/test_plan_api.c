/* Plans and machine profiles through the public API alone (include/strata.h):
 * what `strata plan`, `detect` and `doctor` are built on. A captured /proc
 * and /sys tree and a synthesized model are the inputs; the checks are
 * against those inputs (the tree's CPU, the profile's budget) and between
 * the API's own outputs (the JSON and the accessors, the report). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tools/synth/synth.h"
#include "strata.h"
#include "test.h"

/* What a FILE * report printed. */
typedef struct report {
    char *text;
    size_t len;
    FILE *f;
} report;

static FILE *report_open(report *r)
{
    memset(r, 0, sizeof *r);
    return r->f = open_memstream(&r->text, &r->len);
}

static const char *report_close(report *r)
{
    if (r->f) fclose(r->f);
    r->f = NULL;
    return r->text ? r->text : "";
}

TEST(test_plan_api_profile_of_a_captured_tree)
{
    strata_profile_params pp = {.root = "tests/data/hw/x86-host", .path = "."};
    strata_profile *p = NULL;
    strata_error e = {0};
    REQUIRE(strata_profile_probe(&pp, &p, &e) == STRATA_OK, " %s", e.message);
    /* a captured tree reuses no saved profile and cannot be measured */
    CHECK(strata_profile_saved_state(p) == STRATA_PROFILE_MISSING);
    CHECK(strata_profile_measure(p, true, NULL, NULL, &e) == STRATA_E_INVALID);
    char *text = strata_profile_json(p);
    json_error_t je;
    json_t *doc = text ? json_loads(text, 0, &je) : NULL;
    CHECK(doc && !strcmp(json_string_value(json_object_get(doc, "schema")), "strata-hw-profile"));
    /* the tree's CPU: 2 logical and 2 physical cores */
    json_t *cpu = json_object_get(doc, "cpu");
    CHECK(json_integer_value(json_object_get(cpu, "logical_cores")) == 2 &&
          json_integer_value(json_object_get(cpu, "physical_cores")) == 2);
    CHECK(json_is_null(json_object_get(doc, "measured")), " nothing was measured");
    json_decref(doc);
    free(text);
    report r;
    if (report_open(&r)) strata_profile_print(p, r.f);
    const char *out = report_close(&r);
    CHECK(!strncmp(out, "CPU       ", 10) && strstr(out, "\nMemory    ") && strstr(out, "\nStorage   ") &&
          strstr(out, "\nMeasured  not yet"), " %s", out);
    free(r.text);
    strata_check checks[STRATA_MAX_CHECKS];
    int n = strata_profile_check(p, checks, STRATA_MAX_CHECKS);
    CHECK(n > 3, " %d checks", n);
    for (int i = 0; i < n; i++) {
        CHECK(checks[i].name[0] && checks[i].message[0] && checks[i].level <= STRATA_CHECK_FAIL, " check %d", i);
        CHECK(checks[i].level == STRATA_CHECK_PASS || checks[i].fix[0], " %s: a warning says what to do",
              checks[i].name);
    }
    CHECK(strata_profile_check(p, checks, 2) == 2, " at most max");
    strata_profile_free(p);
}

/* A Q8_0 llama of 8 layers and a measured 2-core machine of 8 GiB. */
static bool plan_inputs(char *model, char *profile, size_t cap)
{
    snprintf(model, cap, "%s/api.gguf", test_tmpdir());
    snprintf(profile, cap, "%s/api-machine.json", test_tmpdir());
    synth_options o = {.shape = {256, 704, 8, 4, 2, 512, 1024}, .type = GGML_TYPE_Q8_0, .seed = 21, .threads = 2,
                       .output = model};
    strata_error e;
    if (synth_write(&o, &e) != STRATA_OK) return test_fail(__FILE__, __LINE__, "synth", " %s", e.message), false;
    FILE *f = fopen(profile, "w");
    if (!f) return test_fail(__FILE__, __LINE__, "fopen", " %s", profile), false;
    fputs(
        "{\"schema\": \"strata-hw-profile\", \"version\": 1,\n"
        " \"cpu\": {\"arch\": \"x86_64\", \"logical_cores\": 2, \"physical_cores\": 2},\n"
        " \"memory\": {\"total_bytes\": \"8 GiB\", \"available_bytes\": \"8 GiB\", \"swap_total_bytes\": 0},\n"
        " \"storage\": {\"path\": \"/models\", \"o_direct\": true},\n"
        " \"gpus\": [],\n"
        " \"measured\": {\"ram_read_all_bytes_per_s\": 2e10, \"ram_threads\": 2, \"disk_read_bytes_per_s\": 1e9,\n"
        "   \"cpu_q4_k_weights_per_s\": 5e9, \"cpu_q4_k_from_ram_bytes_per_s\": 6e9,\n"
        "   \"engine\": [{\"threads\": 2, \"bytes_per_s\": {\"q4_k\": 1e10, \"q8_0\": 2e10}, \"layer_seconds\": 1e-5,\n"
        "                \"token_seconds\": 2e-5}]}}\n",
        f);
    fclose(f);
    return true;
}

static json_t *plan_doc(const strata_plan *p, unsigned flags)
{
    char *text = strata_plan_json(p, flags);
    json_error_t je;
    json_t *doc = text ? json_loads(text, 0, &je) : NULL;
    free(text);
    return doc;
}

TEST(test_plan_api_plans)
{
    char model[1100], profile[1100];
    if (!plan_inputs(model, profile, sizeof model)) return;
    strata_plan_params pp = {.profile_file = profile, .n_ctx = 256};
    strata_plan *p = NULL;
    strata_error e = {0};
    REQUIRE(strata_plan_make(model, &pp, &p, &e) == STRATA_OK, " %s", e.message);
    CHECK(strata_plan_verdict(p) == 0 && !strata_plan_reason(p)[0] && strata_plan_decode_tps(p) > 0);
    json_t *doc = plan_doc(p, STRATA_PLAN_EXPORT);
    REQUIRE(doc);
    json_t *plan = json_object_get(doc, "plan"), *mach = json_object_get(doc, "machine");
    CHECK(json_number_value(json_object_get(plan, "decode_tokens_per_s")) == strata_plan_decode_tps(p));
    CHECK(json_integer_value(json_object_get(plan, "n_ctx")) == 256);
    /* the budget: the profile's available memory less 10 % */
    CHECK(json_integer_value(json_object_get(mach, "ram_budget_bytes")) ==
              (json_int_t)((8ull << 30) - (8ull << 30) / 10),
          " %lld", (long long)json_integer_value(json_object_get(mach, "ram_budget_bytes")));
    CHECK(json_integer_value(json_object_get(mach, "threads")) == 2);
    CHECK(json_is_string(json_object_get(json_object_get(doc, "export"), "flags")));
    json_decref(doc);
    report r;
    if (report_open(&r)) strata_plan_print(p, r.f, STRATA_PLAN_COMPARE | STRATA_PLAN_EXPORT);
    const char *out = report_close(&r);
    CHECK(strstr(out, "plan        all resident, context 256") && strstr(out, "\nspeed       decode ") &&
              strstr(out, "alternatives considered") && strstr(out, "\nllama.cpp   "), " %s", out);
    free(r.text);
    strata_plan_free(p);

    /* 2 MiB cannot hold it: verdict 2, the reason names the budget, the report says so */
    pp.mem_budget = 2ull << 20;
    REQUIRE(strata_plan_make(model, &pp, &p, &e) == STRATA_OK, " %s", e.message);
    CHECK(strata_plan_verdict(p) == 2 && strstr(strata_plan_reason(p), "budget") && strata_plan_decode_tps(p) == 0,
          " %s", strata_plan_reason(p));
    if (report_open(&r)) strata_plan_print(p, r.f, 0);
    out = report_close(&r);
    CHECK(strstr(out, "cannot run: ") != NULL, " %s", out);
    free(r.text);
    doc = plan_doc(p, STRATA_PLAN_EXPORT);
    CHECK(doc && json_is_null(json_object_get(doc, "export")), " no export of a plan that cannot run");
    json_decref(doc);
    strata_plan_free(p);

    /* four sequences: the aggregate speed, as the JSON's batch reports it */
    pp.mem_budget = 0;
    pp.n_parallel = 4;
    REQUIRE(strata_plan_make(model, &pp, &p, &e) == STRATA_OK, " %s", e.message);
    doc = plan_doc(p, 0);
    json_t *batch = json_object_get(doc, "batch");
    CHECK(json_integer_value(json_object_get(batch, "n_parallel")) == 4 &&
          json_number_value(json_object_get(batch, "aggregate_decode_tokens_per_s")) == strata_plan_decode_tps(p));
    json_decref(doc);
    strata_plan_free(p);

    /* errors name what could not be read */
    CHECK(strata_plan_make("/nonexistent/model.gguf", &pp, &p, &e) != STRATA_OK && !p &&
          strstr(e.message, "/nonexistent/model.gguf"), " %s", e.message);
    pp.profile_file = "/nonexistent/machine.json";
    CHECK(strata_plan_make(model, &pp, &p, &e) != STRATA_OK && !p && strstr(e.message, "/nonexistent/machine.json"),
          " %s", e.message);
}

/* The commands built on these APIs include nothing else of the library: no
 * internal header (hw/, plan/, model/, gguf/, engine/ ...), only strata.h,
 * the CLI's own helpers and util/. (The behaviour behind them is what the
 * tests above and test_plan_cli / test_hw_cli check.) */
TEST(test_plan_api_cli_uses_public_headers)
{
    static const char *const files[] = {"src/cli/plan.c", "src/cli/detect.c", "src/cli/doctor.c", "src/cli/cli_util.c",
                                        "src/cli/cli_util.h", "src/cli/args.h"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        FILE *f = fopen(files[i], "r");
        CHECK(f, " %s", files[i]);
        if (!f) continue;
        char line[512];
        int includes = 0;
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "#include \"", 10)) continue;
            includes++;
            const char *h = line + 10;
            CHECK(!strncmp(h, "strata.h\"", 9) || !strncmp(h, "cli/", 4) || !strncmp(h, "util/", 5), " %s: %s",
                  files[i], line);
        }
        fclose(f);
        CHECK(includes > 0 || strstr(files[i], ".h"), " %s: no include read", files[i]);
    }
}
