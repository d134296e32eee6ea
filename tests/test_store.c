/* The tiered store: streamed runs give bit-identical logits to resident
 * runs whatever the depth, I/O threads and read delays; budgets are kept;
 * failures end cleanly with one-line errors. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"
#include "gguf/gguf.h"
#include "model/model_spec.h"
#include "store/layout.h"
#include "test.h"

typedef struct fault_ctx {
    atomic_uint_fast64_t calls;
    uint64_t seed;
    int max_delay_us;
    uint64_t fail_at; /* 0: never; else fail the Nth read */
    int fail_with;    /* its errno (0: EIO); -1 makes it a short read */
} fault_ctx;

static int fault_hook(void *ctx, uint32_t split, uint64_t offset, uint64_t length)
{
    fault_ctx *f = ctx;
    uint64_t n = atomic_fetch_add(&f->calls, 1) + 1;
    if (f->fail_at && n == f->fail_at) return f->fail_with ? f->fail_with : EIO;
    if (f->max_delay_us) {
        uint64_t x = (n + f->seed) * 0x9e3779b97f4a7c15ull ^ offset ^ length ^ split;
        usleep((useconds_t)((x >> 20) % (uint64_t)f->max_delay_us));
    }
    return 0;
}

typedef struct model {
    gguf_file *f;
    model_spec *s;
} model;

static bool open_spec(const char *path, model *m)
{
    strata_error e;
    if (gguf_open(path, &m->f, &e) || model_spec_from_gguf(m->f, path, &m->s, &e)) {
        test_fail(__FILE__, __LINE__, "open", " %s", e.message);
        return false;
    }
    return true;
}

static void close_spec(model *m)
{
    model_spec_free(m->s);
    gguf_close(m->f);
}

static const int32_t prompt[8] = {1, 403, 407, 261, 378, 383, 286, 261};

/* Prompt logits (all positions) and 3 decoded steps' logits. */
static float *run_logits(model *m, const engine_params *p, size_t *count, strata_error *e)
{
    engine *eng;
    if (engine_open(m->f, m->s, p, &eng, e)) return NULL;
    size_t V = engine_n_vocab(eng);
    *count = (8 + 3) * V;
    float *out = malloc(*count * sizeof(float));
    strata_status st = engine_eval(eng, prompt, 8, out, true, e);
    for (int i = 0; i < 3 && !st; i++) st = engine_eval(eng, &prompt[i + 1], 1, out + (8 + i) * V, false, e);
    engine_free(eng);
    if (st) {
        free(out);
        return NULL;
    }
    return out;
}

/* The all-resident configuration every placement is compared with. */
static const engine_params REF_PARAMS = {.n_ctx = 64, .n_threads = 2, .kernels = KERNEL_FAST};

/* Opens a fixture and returns its logits under REF_PARAMS; NULL (the model
 * closed, the skip or failure reported) when either cannot be done. */
static float *open_with_reference(const char *fixture, model *m, size_t *n_ref)
{
    const char *p = test_fixture(fixture);
    if (!p || !open_spec(p, m)) return NULL;
    strata_error e;
    float *ref = run_logits(m, &REF_PARAMS, n_ref, &e);
    if (!ref) {
        test_fail(__FILE__, __LINE__, "reference", " %s: %s", fixture, e.message);
        close_spec(m);
    }
    return ref;
}

static void check_streaming_identical(const char *fixture)
{
    model m;
    size_t n_ref, n;
    strata_error e;
    float *ref = open_with_reference(fixture, &m, &n_ref);
    if (!ref) return;
    engine_params base = REF_PARAMS;
    const int depths[3] = {1, 2, 4}, io_threads[2] = {1, 3};
    for (int d = 0; d < 3; d++)
        for (int t = 0; t < 2; t++) {
            fault_ctx fc = {.seed = (uint64_t)(d * 7 + t), .max_delay_us = 1500};
            engine_params sp = base;
            sp.store = (store_config){.stream_all = true, .prefetch_depth = depths[d], .io_threads = io_threads[t],
                                      .io_chunk = 1u << 20, .fault = fault_hook, .fault_ctx = &fc};
            float *got = run_logits(&m, &sp, &n, &e);
            CHECK(got && n == n_ref && !memcmp(got, ref, n * sizeof(float)), " %s depth %d, %d I/O threads: %s",
                  fixture, depths[d], io_threads[t], got ? "logits differ" : e.message);
            free(got);
        }
    free(ref);
    close_spec(&m);
}

TEST(test_store_stream_bit_identical_stories260k) { check_streaming_identical("stories260K.gguf"); }

TEST(test_store_stream_bit_identical_synth_types)
{
    static const char *const types[] = {"f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1",
                                        "q2_k", "q3_k_m", "q4_k_m", "q5_k_m", "q6_k", "iq4_nl", "iq4_xs"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "synth-%s.gguf", types[i]);
        check_streaming_identical(name);
    }
}

/* A budget between all-resident and all-streamed: some layers resident. */
TEST(test_store_partial_residency_within_budget)
{
    model m;
    size_t n_ref, n;
    strata_error e;
    float *ref = open_with_reference("synth-q8_0.gguf", &m, &n_ref);
    if (!ref) return;
    engine_params base = REF_PARAMS;
    engine_params sp = base;
    sp.mem_budget = 32u << 17; /* 4 MiB: weights 3.35 MiB + 1 MiB of buffers do not all fit */
    engine *eng;
    REQUIRE(engine_open(m.f, m.s, &sp, &eng, &e) == STRATA_OK, " %s", e.message);
    store_stats st = engine_store_stats(eng);
    CHECK(st.resident_bytes > 0 && st.n_streamed_groups > 0, " resident %llu, streamed groups %u",
          (unsigned long long)st.resident_bytes, st.n_streamed_groups);
    CHECK(engine_memory_bytes(eng) <= sp.mem_budget, " accounted %llu > budget",
          (unsigned long long)engine_memory_bytes(eng));
    engine_free(eng);
    float *got = run_logits(&m, &sp, &n, &e);
    CHECK(got && !memcmp(got, ref, n * sizeof(float)), " partial residency changes the logits");
    free(got);
    free(ref);
    close_spec(&m);
}

TEST(test_store_budget_below_minimum)
{
    const char *p = test_fixture("synth-q8_0.gguf");
    if (!p) return;
    model m;
    if (!open_spec(p, &m)) return;
    engine_params sp = {.n_ctx = 64, .n_threads = 1, .mem_budget = 2u << 20};
    engine *eng = NULL;
    strata_error e;
    CHECK(engine_open(m.f, m.s, &sp, &eng, &e) == STRATA_E_NOMEM && strstr(e.message, "minimum working set of"),
          " %s", e.message);
    sp.mem_budget = 1000;
    CHECK(engine_open(m.f, m.s, &sp, &eng, &e) == STRATA_E_NOMEM && strstr(e.message, "cannot hold the process"),
          " %s", e.message);
    close_spec(&m);
}

/* An EIO on the read numbered fail_at (first, second, ...) of a run ends
 * evaluation with a one-line error naming the offset and the cause, without
 * a hang; `cfg` is the store's configuration (its hook is set here). */
static void check_read_errors(const char *fixture, store_config cfg, uint64_t last, uint64_t step)
{
    const char *p = test_fixture(fixture);
    if (!p) return;
    model m;
    if (!open_spec(p, &m)) return;
    for (uint64_t fail_at = 1; fail_at <= last; fail_at += step) {
        fault_ctx fc = {.fail_at = fail_at};
        engine_params sp = {.n_ctx = 64, .n_threads = 2, .store = cfg};
        sp.store.fault = fault_hook;
        sp.store.fault_ctx = &fc;
        size_t n;
        strata_error e;
        float *got = run_logits(&m, &sp, &n, &e);
        CHECK(!got && strstr(e.message, "read failed at offset") && strstr(e.message, "Input/output error"),
              " %s, read %llu: %s", fixture, (unsigned long long)fail_at, got ? "no error" : e.message);
        free(got);
    }
    close_spec(&m);
}

TEST(test_store_injected_io_error)
{
    check_read_errors("synth-q4_k_m.gguf", (store_config){.stream_all = true, .prefetch_depth = 2, .io_threads = 2},
                      13, 4);
}

/* ---- the budget, end to end: a model 4x the budget, real peak RSS ---- */

#include "../tools/synth/synth.h"
#include "cgroup_helpers.h"

#define MiB (1ull << 20)
#define BIG_BUDGET (32 * MiB)

/* A q8_0 model of ~130 MiB: 4x the budget. */
static bool make_big_model(char *path, size_t len)
{
    snprintf(path, len, "%s/big.gguf", test_tmpdir());
    synth_options o = {.shape = {512, 1408, 44, 8, 4, 512, 128}, .type = GGML_TYPE_Q8_0, .seed = 3, .threads = 2,
                       .output = path};
    strata_error e;
    if (synth_write(&o, &e) == STRATA_OK) return true;
    test_fail(__FILE__, __LINE__, "synth", " %s", e.message);
    return false;
}

static const char *release_bin(void)
{
    const char *b = getenv("STRATA_RELEASE_BIN");
    return b && *b ? b : "build/strata";
}

/* Parses "peak RSS X MiB (accounted Y MiB)" of the statistics line. */
static bool parse_rss(const char *out, double *rss, double *accounted)
{
    const char *p = out ? strstr(out, "peak RSS ") : NULL;
    return p && sscanf(p, "peak RSS %lf MiB (accounted %lf MiB)", rss, accounted) == 2;
}

/* A mixture of experts of ~110 MiB (8 layers of 32 experts, 4 used): the
 * expert cache holds what the budget leaves after the dense parts. */
static bool make_big_moe_model(char *path, size_t len)
{
    snprintf(path, len, "%s/big-moe.gguf", test_tmpdir());
    synth_options o = {.arch = "qwen3moe", .shape = {256, 768, 8, 4, 2, 512, 128}, .n_expert = 32,
                       .n_expert_used = 4, .n_ff_exp = 512, .type = GGML_TYPE_Q8_0, .seed = 5, .threads = 2,
                       .output = path};
    strata_error e;
    if (synth_write(&o, &e) == STRATA_OK) return true;
    test_fail(__FILE__, __LINE__, "synth", " %s", e.message);
    return false;
}

/* The model runs in BIG_BUDGET: the accounting and the real peak RSS stay
 * within it (the budget includes the reserve for the process itself); a
 * line of the statistics says what was streamed. */
static void check_runs_in_budget(const char *mpath, const char *streamed_line)
{
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s run -m %s -p 'a b c d' -n 8 --temp 0 --mem %llu", release_bin(), mpath,
             (unsigned long long)BIG_BUDGET);
    int rc = test_run(cmd, &out, true);
    double rss = 0, acc = 0;
    CHECK(rc == 0 && parse_rss(out, &rss, &acc), " %s", out);
    CHECK(out && strstr(out, streamed_line), " no '%s': %s", streamed_line, out);
    CHECK(acc * MiB <= BIG_BUDGET, " accounted %.1f MiB > %llu MiB", acc, (unsigned long long)(BIG_BUDGET / MiB));
    CHECK(rss * MiB <= BIG_BUDGET, " peak RSS %.1f MiB > %llu MiB", rss, (unsigned long long)(BIG_BUDGET / MiB));
    printf("    %s: peak RSS %.1f MiB, accounted %.1f MiB, budget %llu MiB\n", mpath, rss, acc,
           (unsigned long long)(BIG_BUDGET / MiB));
    free(out);
}

/* The same inside a memory cgroup of the budget's size: no OOM kill. */
static void check_runs_in_cgroup(bool (*make)(char *, size_t))
{
    char mpath[1024], cg[2048], name[64], why[512] = "", enter[2200], cmd[8192], *out = NULL;
    int version;
    if (!test_cgroup_create(BIG_BUDGET, &version, cg, sizeof cg, name, sizeof name, why, sizeof why)) {
        test_skip("%s", why);
        return;
    }
    if (!make(mpath, sizeof mpath)) {
        test_cgroup_remove(cg);
        return;
    }
    test_cgroup_enter_cmd(cg, enter, sizeof enter);
    snprintf(cmd, sizeof cmd, "sh -c '%s exec %s run -m %s -p \"a b c d\" -n 8 --temp 0 --mem %llu'", enter,
             release_bin(), mpath, (unsigned long long)BIG_BUDGET);
    int rc = test_run(cmd, &out, true);
    CHECK(rc == 0 && !test_cgroup_oom_killed(cg, version), " rc %d in a %llu MiB cgroup v%d: %s", rc,
          (unsigned long long)(BIG_BUDGET / MiB), version, out);
    CHECK(test_cgroup_remove(cg));
    free(out);
}

TEST(test_store_model_4x_budget_real_rss)
{
    char mpath[1024];
    if (make_big_model(mpath, sizeof mpath)) check_runs_in_budget(mpath, "streamed");
}

TEST(test_store_runs_in_cgroup_limited_to_budget) { check_runs_in_cgroup(make_big_model); }

TEST(test_store_moe_model_3x_budget_real_rss)
{
    char mpath[1024];
    if (make_big_moe_model(mpath, sizeof mpath)) check_runs_in_budget(mpath, "strata: experts: hit");
}

TEST(test_store_moe_runs_in_cgroup_limited_to_budget) { check_runs_in_cgroup(make_big_moe_model); }

/* A read that comes back short (the hook's -1) and a model file changed
 * under the running process both end evaluation with one-line errors. */
TEST(test_store_short_read_and_changed_file)
{
    const char *p = test_fixture("synth-q8_0.gguf");
    if (!p) return;
    char copy[1024], cmd[2200];
    snprintf(copy, sizeof copy, "%s/m.gguf", test_tmpdir());
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", p, copy);
    REQUIRE(system(cmd) == 0);
    model m;
    if (!open_spec(copy, &m)) return;
    fault_ctx fc = {.fail_at = 3, .fail_with = -1};
    engine_params sp = {.n_ctx = 64, .n_threads = 2};
    sp.store = (store_config){.stream_all = true, .fault = fault_hook, .fault_ctx = &fc};
    size_t n;
    strata_error e;
    float *got = run_logits(&m, &sp, &n, &e);
    CHECK(!got && strstr(e.message, "short read at offset"), " %s", got ? "no error" : e.message);
    free(got);
    sp.store.fault = NULL;
    engine *eng;
    REQUIRE(engine_open(m.f, m.s, &sp, &eng, &e) == STRATA_OK, " %s", e.message);
    float *logits = malloc(engine_n_vocab(eng) * sizeof(float));
    CHECK(engine_eval(eng, prompt, 2, logits, false, &e) == STRATA_OK, " %s", e.message);
    snprintf(cmd, sizeof cmd, "touch -d '2001-01-01' '%s'", copy);
    REQUIRE(system(cmd) == 0);
    CHECK(engine_eval(eng, prompt, 1, logits, false, &e) != STRATA_OK && strstr(e.message, "changed on disk"),
          " %s", e.message);
    free(logits);
    engine_free(eng);
    close_spec(&m);
}

/* ---- the expert cache (mixture of experts) ---- */

/* Every expert-cache size, policy, predictor and batch gives the logits of
 * the all-resident run bit for bit, also with reads delayed at random. */
static void check_experts_identical(const char *fixture)
{
    model m;
    size_t n_ref, n;
    strata_error e;
    float *ref = open_with_reference(fixture, &m, &n_ref);
    if (!ref) return;
    engine_params base = REF_PARAMS;
    engine *eng;
    REQUIRE(engine_open(m.f, m.s, &base, &eng, &e) == STRATA_OK, " %s", e.message);
    store_stats all = engine_store_stats(eng);
    engine_free(eng);
    CHECK(all.expert_units > 2 && all.expert_slots == all.expert_units, " %u of %u experts resident",
          all.expert_slots, all.expert_units);
    const uint32_t slots[3] = {1, 2, all.expert_units / 2};
    for (int v = 0; v < 12; v++) {
        fault_ctx fc = {.seed = (uint64_t)v, .max_delay_us = v % 3 == 0 ? 800 : 0};
        engine_params sp = base;
        sp.n_batch = v % 2 ? 3 : 0; /* prompt batches of 3 tokens: several waves and steps */
        sp.moe_prefetch = (engine_moe_prefetch)(v % 3);
        sp.store = (store_config){.stream_all = v % 4 == 1, .expert_slots = slots[v % 3],
                                  .expert_policy = v / 6 ? STORE_EXPERT_LFU : STORE_EXPERT_LRU,
                                  .fault = fault_hook, .fault_ctx = &fc};
        float *got = run_logits(&m, &sp, &n, &e);
        CHECK(got && n == n_ref && !memcmp(got, ref, n * sizeof(float)), " %s, %u cached experts, variant %d: %s",
              fixture, slots[v % 3], v, got ? "logits differ" : e.message);
        free(got);
    }
    free(ref);
    close_spec(&m);
}

TEST(test_store_experts_bit_identical_mixtral) { check_experts_identical("arch/mixtral-q4_k_m.gguf"); }
TEST(test_store_experts_bit_identical_qwen3moe) { check_experts_identical("arch/qwen3moe-q4_k_m.gguf"); }

/* The counts add up: every use is a hit or a miss; a one-expert cache
 * misses, a full one never does after loading; what a miss reads is the
 * expert's three slices. */
TEST(test_store_expert_cache_counts)
{
    const char *p = test_fixture("arch/qwen3moe-q4_k_m.gguf");
    if (!p) return;
    model m;
    if (!open_spec(p, &m)) return;
    strata_error e;
    for (int full = 0; full < 2; full++) {
        engine_params sp = {.n_ctx = 64, .n_threads = 1, .n_batch = 1};
        sp.store.expert_slots = full ? 0 : 1;
        engine *eng;
        REQUIRE(engine_open(m.f, m.s, &sp, &eng, &e) == STRATA_OK, " %s", e.message);
        float *logits = malloc(engine_n_vocab(eng) * sizeof(float));
        for (int i = 0; i < 4; i++) CHECK(engine_eval(eng, &prompt[i], 1, logits, false, &e) == STRATA_OK, " %s", e.message);
        store_stats s = engine_store_stats(eng);
        uint64_t uses = 4ull * m.s->hp.n_layers * m.s->hp.n_expert_used;
        CHECK(s.expert_hits + s.expert_misses == uses, " %llu hits + %llu misses, %llu uses",
              (unsigned long long)s.expert_hits, (unsigned long long)s.expert_misses, (unsigned long long)uses);
        if (full) CHECK(s.expert_misses == 0 && s.bytes_read == 0, " full cache missed %llu", (unsigned long long)s.expert_misses);
        else CHECK(s.expert_misses >= uses / 2 && s.bytes_read > 0, " one-expert cache: %llu misses of %llu",
                   (unsigned long long)s.expert_misses, (unsigned long long)uses);
        free(logits);
        engine_free(eng);
    }
    close_spec(&m);
}

/* A read error while fetching an expert (a cache of two) ends evaluation
 * the same way. */
TEST(test_store_expert_read_error)
{
    check_read_errors("arch/mixtral-q4_k_m.gguf", (store_config){.expert_slots = 2}, 40, 13);
}

/* The expert sets of a fixture's layers (gate, up, down), for a store of
 * experts alone; false (reported) when the file lacks one. */
static bool fixture_expert_sets(const model *m, const gguf_tensor *t[8][3], store_expert_set sets[8])
{
    static const char *const names[3] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
    uint32_t n_layers = (uint32_t)m->s->hp.n_layers;
    if (n_layers > 8) {
        test_fail(__FILE__, __LINE__, "layers", " %u layers, at most 8 here", n_layers);
        return false;
    }
    for (uint32_t l = 0; l < n_layers; l++) {
        for (int j = 0; j < 3; j++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%u.%s.weight", l, names[j]);
            if (!(t[l][j] = gguf_find_tensor(m->f, name))) {
                test_fail(__FILE__, __LINE__, "tensor", " %s is missing", name);
                return false;
            }
        }
        sets[l] = (store_expert_set){3, t[l], (uint32_t)m->s->hp.n_expert};
    }
    return true;
}

/* The qwen3moe fixture opened with its expert sets: its path, or NULL (the
 * skip or failure reported, nothing left open). */
static const char *open_expert_fixture(model *m, const gguf_tensor *t[8][3], store_expert_set sets[8])
{
    const char *p = test_fixture("arch/qwen3moe-q4_k_m.gguf");
    if (!p || !open_spec(p, m)) return NULL;
    if (fixture_expert_sets(m, t, sets)) return p;
    close_spec(m);
    return NULL;
}

/* Cache policies on a cyclic sweep over more experts than the cache holds
 * (the classic case): LRU always evicts the unit needed next and never
 * hits; LFU keeps a stable set in its kept slots (all but n/8 transient)
 * and hits each of them once per sweep. */
TEST(test_store_expert_policies_on_a_cyclic_sweep)
{
    model m;
    const gguf_tensor *t[8][3];
    store_expert_set sets[8];
    if (!open_expert_fixture(&m, t, sets)) return;
    uint32_t n_layers = (uint32_t)m.s->hp.n_layers, n_exp = (uint32_t)m.s->hp.n_expert;
    const uint32_t slots = 8, sweeps = 6, units = n_layers * n_exp;
    for (int lfu = 0; lfu < 2; lfu++) {
        store_config cfg = {.n_expert_sets = n_layers, .expert_sets = sets, .expert_slots = slots,
                            .expert_policy = lfu ? STORE_EXPERT_LFU : STORE_EXPERT_LRU};
        store *s;
        strata_error e;
        REQUIRE(store_open(m.f, 0, NULL, &cfg, &s, NULL, &e) == STRATA_OK, " %s", e.message);
        uint64_t hits_last = 0;
        for (uint32_t sweep = 0; sweep < sweeps; sweep++) {
            uint64_t before = store_get_stats(s).expert_hits;
            for (uint32_t u = 0; u < units; u++) {
                int32_t id = (int32_t)(u % n_exp);
                uint32_t taken;
                const void *const *data;
                CHECK(store_experts_pin(s, u / n_exp, &id, 1, &taken, &e) == STRATA_OK && taken == 1);
                CHECK(store_expert_data(s, u / n_exp, id, &data, &e) == STRATA_OK && data[0] && data[2], " %s",
                      e.message);
                store_experts_unpin(s, u / n_exp, &id, 1);
            }
            hits_last = store_get_stats(s).expert_hits - before;
        }
        uint64_t want = lfu ? slots - slots / 8 : 0;
        CHECK(hits_last == want, " %s: %llu hits in the last sweep of %u units, want %llu", lfu ? "LFU" : "LRU",
              (unsigned long long)hits_last, units, (unsigned long long)want);
        store_close(s);
    }
    close_spec(&m);
}

/* Whether the pinned experts' slices of layer 0 hold the file's bytes. */
static bool slices_match_file(store *s, const char *path, const gguf_tensor *const t[3], const int32_t *ids,
                              uint32_t n)
{
    int fd = open(path, O_RDONLY);
    bool ok = fd >= 0;
    for (uint32_t i = 0; ok && i < n; i++) {
        const void *const *data;
        strata_error e;
        ok = store_expert_data(s, 0, ids[i], &data, &e) == STRATA_OK;
        for (int j = 0; ok && j < 3; j++) {
            uint64_t slice = t[j]->n_bytes / t[j]->ne[2];
            uint8_t *want = malloc(slice);
            ok = want && pread(fd, want, slice, (off_t)(t[j]->file_offset + (uint64_t)ids[i] * slice)) == (ssize_t)slice &&
                 !memcmp(want, data[j], slice);
            free(want);
        }
    }
    if (fd >= 0) close(fd);
    return ok;
}

/* Read requests to fetch layer 0's experts ids[0..n) into an empty cache,
 * pinned `together` in one call or one at a time; -1 when the data read is
 * not the file's. */
static int64_t requests_to_fetch(const model *m, const char *path, store_expert_set *sets, const int32_t *ids,
                                 uint32_t n, bool together)
{
    store_config cfg = {.n_expert_sets = (uint32_t)m->s->hp.n_layers, .expert_sets = sets, .expert_slots = 8};
    store *s;
    strata_error e;
    if (store_open(m->f, 0, NULL, &cfg, &s, NULL, &e)) {
        test_fail(__FILE__, __LINE__, "store", " %s", e.message);
        return -1;
    }
    bool ok = true;
    for (uint32_t i = 0; i < n; i += together ? n : 1) {
        uint32_t want = together ? n : 1, taken = 0;
        ok = ok && store_experts_pin(s, 0, ids + i, want, &taken, &e) == STRATA_OK && taken == want;
    }
    ok = ok && slices_match_file(s, path, sets[0].tensors, ids, n);
    int64_t requests = ok ? (int64_t)store_get_stats(s).read_requests : -1;
    store_close(s);
    return requests;
}

/* Experts missing together whose slices are adjacent in the file are read
 * with one request per run of slices (the fixture's expert slices are 9
 * pages, at offsets not page-aligned: neighbours share a page, read once
 * and copied): experts 3 and 4 take 3 requests instead of 6; the last
 * expert of ffn_down_exps lies just before the first of ffn_gate_exps, so
 * experts 7 and 0 take 5. The bytes are the file's either way. */
TEST(test_store_expert_reads_coalesce)
{
    model m;
    const gguf_tensor *t[8][3];
    store_expert_set sets[8];
    const char *p = open_expert_fixture(&m, t, sets);
    if (!p) return;
    const gguf_tensor *down = t[0][2], *gate = t[0][0];
    CHECK(down->file_offset + down->n_bytes == gate->file_offset && down->file_offset % 4096,
          " the fixture's layout changed: ffn_down_exps at %llu..%llu, ffn_gate_exps at %llu",
          (unsigned long long)down->file_offset, (unsigned long long)(down->file_offset + down->n_bytes),
          (unsigned long long)gate->file_offset);
    static const int32_t pair[2] = {3, 4}, across[2] = {7, 0};
    int64_t apart = requests_to_fetch(&m, p, sets, pair, 2, false),
            together = requests_to_fetch(&m, p, sets, pair, 2, true),
            wrap = requests_to_fetch(&m, p, sets, across, 2, true);
    CHECK(apart == 6 && together == 3 && wrap == 5, " requests: 3 and 4 apart %lld, together %lld; 7 and 0 %lld",
          (long long)apart, (long long)together, (long long)wrap);
    close_spec(&m);
}

/* Whether a read error names an offset inside expert id's own read of one
 * of the tensors: its slice widened to the direct-I/O alignment. */
static bool error_names_own_slice(const char *message, const gguf_tensor *const t[3], int32_t id)
{
    const char *at = strstr(message, "at offset ");
    unsigned long long offset;
    if (!at || sscanf(at, "at offset %llu", &offset) != 1) return false;
    for (int j = 0; j < 3; j++) {
        uint64_t slice = t[j]->n_bytes / t[j]->ne[2], start = t[j]->file_offset + (uint64_t)id * slice;
        if (offset >= start / STORE_ALIGN * STORE_ALIGN && offset < start + slice) return true;
    }
    return false;
}

/* A merged read that fails fails every expert it was reading: experts 3
 * and 4 pinned together are three requests, each holding a slice of both,
 * and whichever comes first fails; neither expert's data is handed out,
 * each error names an offset in that expert's own slice (not the merged
 * read's start, which is in expert 3's), and pinned again (the failure
 * spent) both hold the file's bytes. */
TEST(test_store_failed_coalesced_read_fails_each_expert)
{
    model m;
    const gguf_tensor *t[8][3];
    store_expert_set sets[8];
    const char *p = open_expert_fixture(&m, t, sets);
    if (!p) return;
    fault_ctx fc = {.fail_at = 1};
    store_config cfg = {.n_expert_sets = (uint32_t)m.s->hp.n_layers, .expert_sets = sets, .expert_slots = 8,
                        .fault = fault_hook, .fault_ctx = &fc};
    store *s = NULL;
    strata_error e;
    if (store_open(m.f, 0, NULL, &cfg, &s, NULL, &e) == STRATA_OK) {
        static const int32_t ids[2] = {3, 4};
        uint32_t taken = 0;
        const void *const *data;
        CHECK(store_experts_pin(s, 0, ids, 2, &taken, &e) == STRATA_OK && taken == 2, " %s", e.message);
        for (int i = 0; i < 2; i++) {
            e.message[0] = '\0';
            CHECK(store_expert_data(s, 0, ids[i], &data, &e) == STRATA_E_IO && strstr(e.message, "read failed") &&
                      error_names_own_slice(e.message, sets[0].tensors, ids[i]),
                  " expert %d: %s", ids[i], e.message);
        }
        store_experts_unpin(s, 0, ids, 2);
        CHECK(store_get_stats(s).read_requests == 3, " %llu requests",
              (unsigned long long)store_get_stats(s).read_requests);
        CHECK(store_experts_pin(s, 0, ids, 2, &taken, &e) == STRATA_OK && taken == 2 &&
                  slices_match_file(s, p, sets[0].tensors, ids, 2),
              " pinned again: %s", e.message);
        store_experts_unpin(s, 0, ids, 2);
        store_close(s);
    } else {
        test_fail(__FILE__, __LINE__, "store", " %s", e.message);
    }
    close_spec(&m);
}

static int slow_read(void *ctx, uint32_t split, uint64_t offset, uint64_t length)
{
    (void)ctx, (void)split, (void)offset, (void)length;
    usleep(20000);
    return 0;
}

/* The disk's busy time counts wall time with any read in progress, once:
 * six reads of 20 ms on four I/O threads take two rounds, about 40 ms of
 * it, well under the threads' summed reading time (120 ms or more); and a
 * pause of 100 ms adds none (under 10 ms: the last read's worker counts its
 * end after completing the ticket the waiter woke on, a few microseconds
 * later, or more when the busy machine preempts it in between). */
TEST(test_store_io_active_time_is_the_union_of_reads)
{
    model m;
    const gguf_tensor *t[8][3];
    store_expert_set sets[8];
    if (!open_expert_fixture(&m, t, sets)) return;
    store *s = NULL;
    strata_error e;
    store_config cfg = {.n_expert_sets = (uint32_t)m.s->hp.n_layers, .expert_sets = sets, .expert_slots = 8,
                        .io_threads = 4, .fault = slow_read};
    if (store_open(m.f, 0, NULL, &cfg, &s, NULL, &e) == STRATA_OK) {
        static const int32_t ids[2] = {1, 5}; /* not adjacent: six requests */
        uint32_t taken = 0;
        const void *const *data;
        CHECK(store_experts_pin(s, 0, ids, 2, &taken, &e) == STRATA_OK && taken == 2 &&
              store_expert_data(s, 0, ids[0], &data, &e) == STRATA_OK &&
              store_expert_data(s, 0, ids[1], &data, &e) == STRATA_OK, " %s", e.message);
        store_stats a = store_get_stats(s);
        usleep(100000);
        store_stats b = store_get_stats(s);
        CHECK(a.read_requests == 6 && a.io_busy_s >= 0.12 && a.io_active_s >= 0.04 &&
                  a.io_active_s < 0.75 * a.io_busy_s && b.io_active_s - a.io_active_s < 0.01,
              " %llu requests, busy %.3f s summed, active %.3f s, %.3f s after idling",
              (unsigned long long)a.read_requests, a.io_busy_s, a.io_active_s, b.io_active_s);
        store_close(s);
    } else {
        test_fail(__FILE__, __LINE__, "store", " %s", e.message);
    }
    close_spec(&m);
}

/* In the engine, a prompt batch's misses are read in fewer requests than
 * three a miss, and the logits stay those of the all-resident run. */
TEST(test_store_expert_reads_coalesce_in_the_engine)
{
    model m;
    size_t n_ref, n;
    strata_error e;
    float *ref = open_with_reference("arch/qwen3moe-q4_k_m.gguf", &m, &n_ref);
    if (!ref) return;
    engine_params sp = REF_PARAMS;
    sp.store = (store_config){.expert_slots = 8, .expert_policy = STORE_EXPERT_LRU};
    engine *eng;
    REQUIRE(engine_open(m.f, m.s, &sp, &eng, &e) == STRATA_OK, " %s", e.message);
    float *got = malloc(n_ref * sizeof(float));
    size_t V = engine_n_vocab(eng);
    strata_status st = engine_eval(eng, prompt, 8, got, true, &e);
    for (int i = 0; i < 3 && !st; i++) st = engine_eval(eng, &prompt[i + 1], 1, got + (8 + i) * V, false, &e);
    store_stats s = engine_store_stats(eng);
    engine_free(eng);
    n = (8 + 3) * V;
    CHECK(!st && n == n_ref && !memcmp(got, ref, n * sizeof(float)), " %s", st ? e.message : "logits differ");
    CHECK(s.expert_misses > 0 && s.read_requests < 3 * s.expert_misses, " %llu requests for %llu misses",
          (unsigned long long)s.read_requests, (unsigned long long)s.expert_misses);
    free(got);
    free(ref);
    close_spec(&m);
}
