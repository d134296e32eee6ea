/* The memory-pressure watchdog (issue 15): the pressure parsers on fixture
 * text, the decision on sample sequences, the store's shrink and grow
 * (same logits whatever moves when, memory really returned), and a run in
 * a memory cgroup where another process takes 60 % of the limit mid-run:
 * strata gives memory back, ends with the same text, and nobody is
 * OOM-killed. */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../tools/synth/synth.h"
#include "cgroup_helpers.h"
#include "engine/engine.h"
#include "engine/engine_internal.h"
#include "hw/hw.h"
#include "hw/hw_internal.h"
#include "model/model_spec.h"
#include "run_helpers.h"
#include "store/watchdog.h"
#include "test.h"

#define MiB (1ull << 20)

/* ---- parsers ---- */

TEST(test_watchdog_psi_parse)
{
    hw_psi p;
    CHECK(hw_psi_parse("some avg10=1.50 avg60=0.20 avg300=0.00 total=16096\n"
                       "full avg10=0.25 avg60=0.00 avg300=0.00 total=15740\n", &p));
    CHECK(p.some_avg10 == 1.5 && p.some_total == 16096 && p.has_full && p.full_avg10 == 0.25 &&
          p.full_total == 15740);
    CHECK(hw_psi_parse("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", &p) && !p.has_full);
    static const char *const bad[] = {
        "", "\n", "full avg10=0.00 avg60=0.00 avg300=0.00 total=1\n",  /* no "some" */
        "some avg10=0.00 avg60=0.00 avg300=0.00\n",                     /* no total */
        "some avg10=100.01 avg60=0.00 avg300=0.00 total=1\n",           /* above 100 % */
        "some avg10=-1.00 avg60=0.00 avg300=0.00 total=1\n",
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=99999999999999999999999\n", /* overflow */
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=1 x\n",
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=1\nsome avg10=0.00 avg60=0.00 avg300=0.00 total=1\n",
        "some avg10=0. 5 avg60=0.00 avg300=0.00 total=1\n", "some avg10=0.1234567 avg60=0 avg300=0 total=1\n",
        "garbage\n", "some\n", "some avg10=", "\xff\xfe some avg10=0.00\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECK(!hw_psi_parse(bad[i], &p), " accepted '%s'", bad[i]);
}

TEST(test_watchdog_events_parse)
{
    hw_mem_events e;
    CHECK(hw_mem_events_parse("low 0\nhigh 12\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n", &e));
    CHECK(e.high == 12 && e.max == 3 && e.oom == 1 && e.oom_kill == 1);
    CHECK(hw_oom_control_parse("oom_kill_disable 0\nunder_oom 0\noom_kill 7\n", &e) && e.oom_kill == 7 && !e.oom);
    static const char *const bad[] = {"", "high 1\nmax 2\noom 3\n", "high 1\nmax x\noom 3\noom_kill 0\n",
                                      "high 1\nhigh 2\nmax 2\noom 3\noom_kill 0\n", "high -1\nmax 2\noom 3\noom_kill 0\n",
                                      "high\nmax 2\noom 3\noom_kill 0\n", "high 1 2\nmax 2\noom 3\noom_kill 0\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(!hw_mem_events_parse(bad[i], &e), " accepted '%s'", bad[i]);
    CHECK(!hw_oom_control_parse("oom_kill_disable 0\nunder_oom 2\noom_kill 0\n", &e));
    CHECK(!hw_oom_control_parse("under_oom 0\noom_kill 0\n", &e));
}

static void put(const char *root, const char *path, const char *text)
{
    char full[2048];
    snprintf(full, sizeof full, "%s%s", root, path);
    for (char *s = full + 1; (s = strchr(s, '/')); s++) { /* mkdir -p */
        *s = '\0';
        mkdir(full, 0700);
        *s = '/';
    }
    FILE *f = fopen(full, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* A fake /proc and cgroup v2 tree: 512 MiB limit, 400 MiB used of which
 * 40 MiB page cache (headroom 152 MiB), 1 GiB MemAvailable. */
static const char *v2_root(const char *name)
{
    static char root[1024];
    snprintf(root, sizeof root, "%s/%s", test_tmpdir(), name);
    put(root, "/proc/self/cgroup", "0::/app\n");
    put(root, "/proc/self/mountinfo", "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n");
    put(root, "/proc/meminfo", "MemTotal: 8388608 kB\nMemFree: 100 kB\nMemAvailable: 1048576 kB\n");
    put(root, "/proc/pressure/memory", "some avg10=0.00 avg60=0.00 avg300=0.00 total=100\n"
                                       "full avg10=0.00 avg60=0.00 avg300=0.00 total=50\n");
    put(root, "/sys/fs/cgroup/app/memory.max", "536870912\n");
    put(root, "/sys/fs/cgroup/app/memory.high", "max\n");
    put(root, "/sys/fs/cgroup/app/memory.current", "419430400\n");
    put(root, "/sys/fs/cgroup/app/memory.stat", "anon 377487360\nfile 41943040\ninactive_file 20971520\n"
                                                "active_file 20971520\n");
    put(root, "/sys/fs/cgroup/app/memory.events", "low 0\nhigh 0\nmax 5\noom 0\noom_kill 0\n");
    put(root, "/sys/fs/cgroup/app/memory.pressure", "some avg10=3.00 avg60=1.00 avg300=0.50 total=777\n"
                                                    "full avg10=1.00 avg60=0.00 avg300=0.00 total=70\n");
    return root;
}

TEST(test_watchdog_pressure_read_fixture)
{
    const char *root = v2_root("v2");
    hw_pressure_src src;
    hw_pressure p;
    hw_pressure_open(root, &src);
    REQUIRE(src.has_cgroup && src.loc.version == 2);
    REQUIRE(hw_pressure_read(&src, &p));
    CHECK(p.has_cgroup && p.cgroup.limit == 512 * MiB && p.headroom == 152 * MiB && p.limit == 512 * MiB,
          " headroom %llu", (unsigned long long)p.headroom);
    CHECK(p.has_events && p.events.max == 5 && p.has_cgroup_psi && p.cgroup_psi.some_total == 777);
    CHECK(p.has_system_psi && p.system_psi.some_total == 100 && p.mem_available == 1024 * MiB);
    /* MemAvailable binds when the machine has less than the cgroup */
    put(root, "/proc/meminfo", "MemTotal: 8388608 kB\nMemAvailable: 102400 kB\n");
    CHECK(hw_pressure_read(&src, &p) && p.headroom == 100 * MiB && p.limit == 8192 * MiB);
    /* malformed files are ignored, never half-trusted */
    put(root, "/sys/fs/cgroup/app/memory.pressure", "some avg10=zz\n");
    put(root, "/sys/fs/cgroup/app/memory.events", "max lots\n");
    put(root, "/sys/fs/cgroup/app/memory.current", "-5\n");
    put(root, "/proc/pressure/memory", "\x01\x02\x03");
    CHECK(hw_pressure_read(&src, &p) && !p.has_cgroup_psi && !p.has_events && !p.has_system_psi && !p.has_cgroup);
    CHECK(p.headroom == 100 * MiB);
    put(root, "/proc/meminfo", "nonsense");
    CHECK(!hw_pressure_read(&src, &p));
}

/* ---- the decision ---- */

TEST(test_watchdog_decide)
{
    store_watchdog_config c = {0};
    wd_policy p = wd_policy_for(&c, 512 * MiB);
    CHECK(p.low == 32 * MiB && p.high == 64 * MiB && p.grow_after_s == 2.0);
    CHECK(wd_policy_for(&c, 64 * MiB).low == 16 * MiB && wd_policy_for(&c, 64ull << 30).low == 256 * MiB);
    wd_state st;
    wd_state_init(&st);
    uint64_t b;
    store_pressure x = {.headroom = 100 * MiB};
    CHECK(wd_decide(&p, &st, &x, 0.0, &b) == WD_NONE); /* calm starts */
    CHECK(wd_decide(&p, &st, &x, 1.0, &b) == WD_NONE);
    CHECK(wd_decide(&p, &st, &x, 2.5, &b) == WD_GROW && b == 36 * MiB);
    CHECK(wd_decide(&p, &st, &x, 2.6, &b) == WD_NONE); /* one step per calm stretch */
    x.headroom = 10 * MiB;
    /* 90 MiB went in one period: as much may go before the next, so the
     * shrink aims at (32 + 64) / 2 from where the headroom is heading (0) */
    CHECK(wd_decide(&p, &st, &x, 3.0, &b) == WD_SHRINK && b == 48 * MiB, " %llu", (unsigned long long)b);
    x.headroom = 50 * MiB;
    CHECK(wd_decide(&p, &st, &x, 3.1, &b) == WD_NONE); /* between the marks: hysteresis */
    x.headroom = 45 * MiB;
    CHECK(wd_decide(&p, &st, &x, 3.15, &b) == WD_NONE); /* falling slowly: 40 MiB ahead is above low water */
    x.headroom = 50 * MiB;
    CHECK(wd_decide(&p, &st, &x, 3.16, &b) == WD_NONE);
    x.stall = 0.3;
    CHECK(wd_decide(&p, &st, &x, 3.2, &b) == WD_SHRINK && b == 16 * MiB); /* stalls below high water */
    x = (store_pressure){.headroom = 200 * MiB, .stall = 0.5};
    CHECK(wd_decide(&p, &st, &x, 3.3, &b) == WD_NONE); /* stalls with room to spare: someone else's */
    x.stall = 0;
    CHECK(wd_decide(&p, &st, &x, 4.0, &b) == WD_NONE);
    CHECK(wd_decide(&p, &st, &x, 5.0, &b) == WD_NONE); /* calm, but the shrink was 1.8 s ago */
    x.events = true;
    CHECK(wd_decide(&p, &st, &x, 6.5, &b) == WD_NONE); /* a limit event resets the calm */
    x.events = false;
    CHECK(wd_decide(&p, &st, &x, 7.0, &b) == WD_NONE);
    CHECK(wd_decide(&p, &st, &x, 9.1, &b) == WD_GROW && b == 136 * MiB);
    /* page cache counts as room to shrink into, not to grow into */
    wd_state_init(&st);
    x = (store_pressure){.headroom = 200 * MiB, .cache = 150 * MiB};
    CHECK(wd_decide(&p, &st, &x, 20.0, &b) == WD_NONE);
    CHECK(wd_decide(&p, &st, &x, 23.0, &b) == WD_NONE, " 50 MiB firm: below high water");
    x.cache = 100 * MiB;
    CHECK(wd_decide(&p, &st, &x, 24.0, &b) == WD_NONE);
    CHECK(wd_decide(&p, &st, &x, 26.5, &b) == WD_GROW && b == 36 * MiB, " %llu", (unsigned long long)b);
    x = (store_pressure){.headroom = 20 * MiB, .cache = 20 * MiB};
    CHECK(wd_decide(&p, &st, &x, 27.0, &b) == WD_SHRINK);
}

/* ---- the store ---- */

typedef struct model {
    gguf_file *f;
    model_spec *s;
} model;

/* An 8-layer q8_0 model of ~25 MiB (3.1 MiB a layer) in the test's tmpdir. */
static bool make_model(model *m, const char *name, uint64_t layers)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", test_tmpdir(), name);
    synth_options o = {.shape = {512, 1408, layers, 8, 4, 512, 1024}, .type = GGML_TYPE_Q8_0, .seed = 7,
                       .threads = 2, .output = path};
    strata_error e;
    if (synth_write(&o, &e) || gguf_open(path, &m->f, &e) || model_spec_from_gguf(m->f, path, &m->s, &e)) {
        test_fail(__FILE__, __LINE__, "model", " %s", e.message);
        return false;
    }
    return true;
}

static void close_model(model *m)
{
    model_spec_free(m->s);
    gguf_close(m->f);
}

#define STEPS 24
static const engine_params PARAMS = {.n_ctx = 64, .n_threads = 2, .kernels = KERNEL_FAST};

static int32_t token_at(int i) { return (int32_t)(1 + (i * 37) % 500); }

/* Logits of STEPS single-token steps ([STEPS][n_vocab]); between steps,
 * between(ctx, step, engine) may reshape the store. */
static float *run_steps(model *m, const engine_params *p, void (*between)(void *, int, engine *), void *ctx,
                        engine **keep)
{
    engine *eng;
    strata_error e;
    if (engine_open(m->f, m->s, p, &eng, &e)) {
        test_fail(__FILE__, __LINE__, "engine_open", " %s", e.message);
        return NULL;
    }
    size_t V = engine_n_vocab(eng);
    float *out = malloc(STEPS * V * sizeof(float)); /* [STEPS][V] */
    strata_status st = STRATA_OK;
    for (int i = 0; i < STEPS && !st; i++) {
        if (between) between(ctx, i, eng);
        int32_t t = token_at(i);
        st = engine_eval(eng, &t, 1, out + i * V, false, &e);
    }
    if (st) test_fail(__FILE__, __LINE__, "eval", " %s", e.message);
    if (keep && !st) *keep = eng;
    else engine_free(eng);
    if (st) {
        free(out);
        return NULL;
    }
    return out;
}

/* Resident set size of this process in bytes (/proc/self/statm). */
static uint64_t rss_bytes(void)
{
    unsigned long long size = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f && fscanf(f, "%llu %llu", &size, &res) != 2) res = 0;
    if (f) fclose(f);
    return res * (uint64_t)sysconf(_SC_PAGESIZE);
}

typedef struct reshape_plan {
    uint64_t rss_before, rss_after, freed;
} reshape_plan;

/* Step 4: stream everything (RSS must drop); step 8: everything back;
 * step 12: free 8 MiB; step 16: grow back; step 20: stream all again. */
static void reshape_between(void *ctx, int step, engine *eng)
{
    reshape_plan *r = ctx;
    store *s = eng->store;
    if (step == 4) {
        r->rss_before = rss_bytes();
        r->freed = store_shrink(s, UINT64_MAX, 0, 0);
        r->rss_after = rss_bytes();
    }
    if (step == 8 || step == 16) CHECK(store_grow(s, UINT64_MAX, 0) > 0, " step %d", step);
    if (step == 12) CHECK(store_shrink(s, 8 * MiB, 0, 0) >= 8 * MiB);
    if (step == 20) CHECK(store_shrink(s, UINT64_MAX, 0, 0) > 0);
}

/* views: resident groups as views of the page cache (--mmap): demoting
 * one unmaps its pages and drops them from the cache, and a promoted one
 * comes back as a copy; the logits do not change either way. */
static void check_shrink_grow(bool views)
{
    model m;
    if (!make_model(&m, "wd8.gguf", 8)) return;
    engine_params p = PARAMS;
    p.store.map_resident = views;
    float *ref = run_steps(&m, &PARAMS, NULL, NULL, NULL);
    reshape_plan r = {0};
    engine *eng = NULL;
    float *got = ref ? run_steps(&m, &p, reshape_between, &r, &eng) : NULL;
    if (got) CHECK(store_get_stats(eng->store).load_views == views);
    if (got) {
        size_t V = engine_n_vocab(eng);
        CHECK(!memcmp(got, ref, STEPS * V * sizeof(float)), " logits changed by reshaping");
        store_stats st = store_get_stats(eng->store);
        CHECK(st.shrinks == 3 && st.grows == 2, " %u shrinks, %u grows", st.shrinks, st.grows);
        CHECK(st.n_streamed_groups == 9 && st.demoted_groups == 9 && st.resident_bytes == 0);
        /* 9 groups of ~3.1 MiB (the output is small) into 3 slots: ~19 MiB net */
        CHECK(r.freed > 15 * MiB && st.bytes_freed >= r.freed, " freed %llu", (unsigned long long)r.freed);
        CHECK(r.rss_before > r.rss_after && r.rss_before - r.rss_after >= r.freed * 9 / 10,
              " RSS %llu -> %llu MiB, freed %llu MiB", (unsigned long long)(r.rss_before / MiB),
              (unsigned long long)(r.rss_after / MiB), (unsigned long long)(r.freed / MiB));
        printf("    shrink: RSS %.1f -> %.1f MiB (%.1f MiB freed by the plan)\n", (double)r.rss_before / MiB,
               (double)r.rss_after / MiB, (double)r.freed / MiB);
        engine_free(eng);
    }
    free(ref);
    free(got);
    close_model(&m);
}

TEST(test_watchdog_store_shrink_grow_same_logits) { check_shrink_grow(false); }

TEST(test_watchdog_store_shrink_grow_views_same_logits) { check_shrink_grow(true); }

/* A shrink asked while a group is acquired waits for the next acquire. */
TEST(test_watchdog_store_waits_for_safe_point)
{
    model m;
    if (!make_model(&m, "wd4.gguf", 4)) return;
    engine *eng;
    strata_error e;
    REQUIRE(!engine_open(m.f, m.s, &PARAMS, &eng, &e), " %s", e.message);
    store *s = eng->store;
    const void *const *data;
    REQUIRE(!store_acquire(s, 1, &data, &e));
    const void *before = data[0];
    CHECK(store_shrink(s, UINT64_MAX, 0, 0) > 0);
    CHECK(store_get_stats(s).shrinks == 0 && data[0] == before, " moved while acquired");
    store_release(s, 1);
    REQUIRE(!store_acquire(s, 0, &data, &e));
    CHECK(store_get_stats(s).shrinks == 1 && store_get_stats(s).resident_bytes == 0);
    store_release(s, 0);
    engine_free(eng);
    close_model(&m);
}

/* ---- the expert cache under pressure (mixture of experts) ---- */

typedef struct expert_plan {
    uint32_t slots_at_open, after_shrink, after_grow, after_small;
    uint64_t rss_before, rss_after, freed;
} expert_plan;

/* Step 4: shrink everything (the expert cache to its minimum, applied at
 * the next acquire); step 10: grow everything back; step 16: ask for
 * three expert slots' worth (the expert cache alone gives them). */
static void expert_between(void *ctx, int step, engine *eng)
{
    expert_plan *x = ctx;
    store *s = eng->store;
    store_stats st = store_get_stats(s);
    uint64_t sb = st.expert_slots ? st.expert_cache_bytes / st.expert_slots : 0;
    if (step == 0) x->slots_at_open = st.expert_slots;
    if (step == 4) {
        x->rss_before = rss_bytes();
        x->freed = store_shrink(s, UINT64_MAX, 0, 0);
    }
    if (step == 5) {
        x->after_shrink = st.expert_slots;
        x->rss_after = rss_bytes();
    }
    if (step == 10) CHECK(store_grow(s, UINT64_MAX, 0) > 0, " step %d", step);
    if (step == 11) x->after_grow = st.expert_slots;
    if (step == 16) CHECK(store_shrink(s, 3 * sb, 0, 0) >= 3 * sb);
    if (step == 17) x->after_small = st.expert_slots;
}

/* Shrinking the expert cache and growing it back never changes the
 * logits (mixtral and qwen3moe fixtures, every unit cached at open), and
 * the memory given back leaves the process. */
static void expert_cache_case(const char *fixture)
{
    const char *path = test_fixture(fixture);
    if (!path) return;
    model m;
    strata_error e;
    REQUIRE(!gguf_open(path, &m.f, &e) && !model_spec_from_gguf(m.f, path, &m.s, &e), " %s", e.message);
    engine_params p = PARAMS;
    p.n_threads = 1;
    float *ref = run_steps(&m, &p, NULL, NULL, NULL);
    expert_plan x = {0};
    engine *eng = NULL;
    float *got = ref ? run_steps(&m, &p, expert_between, &x, &eng) : NULL;
    if (got) {
        size_t V = engine_n_vocab(eng);
        store_stats st = store_get_stats(eng->store);
        CHECK(!memcmp(got, ref, STEPS * V * sizeof(float)), " %s: logits changed by resizing the expert cache",
              fixture);
        CHECK(x.slots_at_open == st.expert_units && x.after_shrink == STORE_EXPERT_MIN_SLOTS &&
                  x.after_grow == x.slots_at_open && x.after_small == x.slots_at_open - 3,
              " %s: slots %u at open, %u after the shrink, %u grown, %u after the small shrink", fixture,
              x.slots_at_open, x.after_shrink, x.after_grow, x.after_small);
        CHECK(st.expert_shrinks == 2 && st.expert_grows == 1, " %u shrinks, %u grows", st.expert_shrinks,
              st.expert_grows);
        CHECK(x.rss_before > x.rss_after && x.rss_before - x.rss_after >= x.freed / 2,
              " RSS %llu -> %llu KiB, %llu KiB asked", (unsigned long long)(x.rss_before >> 10),
              (unsigned long long)(x.rss_after >> 10), (unsigned long long)(x.freed >> 10));
        printf("    %s: experts %u -> %u -> %u -> %u; RSS %.1f -> %.1f MiB\n", fixture, x.slots_at_open,
               x.after_shrink, x.after_grow, x.after_small, (double)x.rss_before / MiB, (double)x.rss_after / MiB);
        engine_free(eng);
    }
    free(ref);
    free(got);
    close_model(&m);
}

TEST(test_watchdog_expert_cache_shrink_grow_same_logits)
{
    expert_cache_case("arch/mixtral-q4_k_m.gguf");
    expert_cache_case("arch/qwen3moe-q4_k_m.gguf");
}

/* ---- the watchdog thread, with a scripted source ---- */

typedef struct fake_source {
    _Atomic uint64_t headroom;
} fake_source;

static bool fake_sample(void *ctx, store_pressure *out)
{
    fake_source *f = ctx;
    *out = (store_pressure){.headroom = atomic_load(&f->headroom), .limit = 512 * MiB};
    return true;
}

static void wait_for(store *s, uint32_t shrinks, uint32_t grows)
{
    for (int i = 0; i < 400; i++) {
        store_stats st = store_get_stats(s);
        if (st.shrinks >= shrinks && st.grows >= grows) return;
        usleep(5000);
    }
}

typedef struct flip_ctx {
    fake_source *src;
    bool waited_shrink, waited_grow;
} flip_ctx;

/* Steps 6-13: memory short (the watchdog shrinks during the passes);
 * steps 14-: memory back (it grows). */
static void flip_between(void *ctx, int step, engine *eng)
{
    flip_ctx *c = ctx;
    if (step == 6) atomic_store(&c->src->headroom, 4 * MiB);
    if (step == 10) wait_for(eng->store, 1, 0);
    if (step == 14) atomic_store(&c->src->headroom, 400 * MiB);
    if (step == 20) wait_for(eng->store, 1, 1);
}

TEST(test_watchdog_thread_shrinks_and_grows_during_passes)
{
    model m;
    if (!make_model(&m, "wd8t.gguf", 8)) return;
    float *ref = run_steps(&m, &PARAMS, NULL, NULL, NULL);
    fake_source src = {400 * MiB};
    store_watchdog_config wc = {.period_ms = 5, .grow_after_ms = 30, .source = fake_sample, .source_ctx = &src,
                                .quiet = true};
    engine_params p = PARAMS;
    p.store.watchdog = true;
    p.store.watchdog_cfg = &wc;
    flip_ctx c = {&src, false, false};
    engine *eng = NULL;
    float *got = ref ? run_steps(&m, &p, flip_between, &c, &eng) : NULL;
    if (got) {
        CHECK(!memcmp(got, ref, STEPS * engine_n_vocab(eng) * sizeof(float)), " logits changed");
        store_stats st = store_get_stats(eng->store);
        CHECK(st.watchdog && st.shrinks >= 1 && st.grows >= 1 && st.bytes_demoted > 0 && st.bytes_promoted > 0,
              " %u shrinks, %u grows", st.shrinks, st.grows);
        CHECK(st.demoted_groups == 0, " %u groups still streamed after memory returned", st.demoted_groups);
        engine_free(eng);
    }
    free(ref);
    free(got);
    close_model(&m);
}

/* ---- end to end: another process takes 60 % of the cgroup mid-run ---- */


/* The hog: joins the cgroup, waits until strata has loaded (the cgroup
 * uses `loaded` bytes), then takes `take` bytes in 4 MiB steps every 20 ms
 * and holds them until killed. Only system calls and memset after fork. */
static void hog(const char *cg, int version, uint64_t loaded, uint64_t take)
{
    char path[2300], pid[32];
    snprintf(path, sizeof path, "%s/cgroup.procs", cg);
    int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    FILE *f = fopen(path, "w");
    if (!f || fwrite(pid, 1, (size_t)n, f) != (size_t)n || fclose(f)) _exit(3);
    snprintf(path, sizeof path, "%s/%s", cg, version == 1 ? "memory.usage_in_bytes" : "memory.current");
    for (int i = 0; i < 1000; i++) { /* 10 s at most */
        unsigned long long used = 0;
        FILE *u = fopen(path, "r");
        if (u && fscanf(u, "%llu", &used) != 1) used = 0;
        if (u) fclose(u);
        if (used >= loaded) break;
        usleep(10000);
    }
    uint8_t *mem = mmap(NULL, take, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) _exit(4);
    for (uint64_t off = 0; off < take; off += 4 * MiB) {
        memset(mem + off, 1, take - off < 4 * MiB ? take - off : 4 * MiB);
        usleep(20000);
    }
    for (;;) pause();
}

TEST(test_watchdog_cgroup_neighbour_takes_60_percent)
{
    const uint64_t limit = 128 * MiB;
    char mpath[1024], errpath[1100], cg[2048], name[64], why[512] = "", enter[2200], cmd[8192], *ref = NULL,
         *out = NULL;
    int version;
    char args[2048];
    if (!test_reference_run("wd16.gguf", 11, "-p \"a b c d\" -n 300 --temp 0 --ignore-eos -t 1", mpath,
                            sizeof mpath, args, sizeof args, &ref))
        return;
    int rc;
    if (!test_cgroup_create(limit, &version, cg, sizeof cg, name, sizeof name, why, sizeof why)) {
        test_skip("%s", why);
        free(ref);
        return;
    }
    pid_t h = fork();
    if (h == 0) hog(cg, version, 40 * MiB, limit * 6 / 10);
    test_cgroup_enter_cmd(cg, enter, sizeof enter);
    snprintf(errpath, sizeof errpath, "%s/stderr.txt", test_tmpdir());
    snprintf(cmd, sizeof cmd, "sh -c '%s exec %s %s 2>%s'", enter, test_release_bin(), args, errpath);
    bool hog_alive;
    rc = test_run_beside(cmd, h, &out, &hog_alive);
    bool oom = test_cgroup_oom_killed(cg, version);
    char *log = hw_read_file("", errpath, 1u << 20, NULL);
    CHECK(rc == 0 && !oom && hog_alive, " rc %d, OOM kill %d, hog alive %d: %s", rc, oom, hog_alive, log);
    CHECK(out && !strcmp(out, ref), " text differs:\n--- unpressured\n%s\n--- pressured\n%s", ref, out);
    const char *line = log ? strstr(log, "strata: memory pressure: moved") : NULL;
    CHECK(line, " no shrink happened: %s", log);
    for (; line; line = strstr(line + 1, "strata: memory pressure:"))
        printf("    %.*s\n", (int)strcspn(line, "\n"), line);
    CHECK(test_cgroup_remove(cg));
    free(log);
    free(ref);
    free(out);
}

/* Issue 15 item 7: two runs started together in one cgroup both plan the
 * same headroom (each alone would be all resident); loading stops making
 * groups resident when the headroom runs low, so neither is OOM-killed
 * and both print the unpressured text. */
TEST(test_watchdog_cgroup_two_runs_start_together)
{
    const uint64_t limit = 96 * MiB;
    char mpath[1024], cg[2048], name[64], why[512] = "", enter[2200], cmd[8192], args[2048], *ref = NULL;
    int version;
    const char *dir = test_tmpdir();
    if (!test_reference_run("wd16b.gguf", 13, "-p \"a b\" -n 40 --temp 0 --ignore-eos -t 1", mpath, sizeof mpath,
                            args, sizeof args, &ref))
        return;
    if (!test_cgroup_create(limit, &version, cg, sizeof cg, name, sizeof name, why, sizeof why)) {
        test_skip("%s", why);
        free(ref);
        return;
    }
    char script[1200];
    snprintf(script, sizeof script, "%s/two.sh", dir);
    FILE *f = fopen(script, "w");
    REQUIRE(f);
    test_cgroup_enter_cmd(cg, enter, sizeof enter);
    fprintf(f, "%s true\n", enter);
    for (int i = 0; i < 2; i++)
        fprintf(f, "(%s %s >%s/out%d 2>%s/err%d; echo $? >%s/rc%d) &\n", test_release_bin(), args, dir, i, dir, i, dir,
                i);
    fprintf(f, "wait\n");
    fclose(f);
    snprintf(cmd, sizeof cmd, "sh %s", script);
    test_run(cmd, NULL, true);
    bool oom = test_cgroup_oom_killed(cg, version);
    CHECK(!oom, " OOM kill in the cgroup");
    for (int i = 0; i < 2; i++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/rc%d", dir, i);
        char *r = hw_read_file("", path, 64, NULL);
        snprintf(path, sizeof path, "%s/out%d", dir, i);
        char *out = hw_read_file("", path, 1u << 20, NULL);
        snprintf(path, sizeof path, "%s/err%d", dir, i);
        char *log = hw_read_file("", path, 1u << 20, NULL);
        CHECK(r && atoi(r) == 0 && out && !strcmp(out, ref), " run %d: rc %s: %s\n%s", i, r ? r : "?", out, log);
        const char *line = log ? strstr(log, "strata: memory pressure") : NULL;
        if (line) printf("    run %d: %.*s\n", i, (int)strcspn(line, "\n"), line);
        free(r);
        free(out);
        free(log);
    }
    CHECK(test_cgroup_remove(cg));
    free(ref);
}
