/* Planning reads no weights (issue 16): the disk figure comes from the
 * saved profile (`detect --measure`) or from what runs reached streaming
 * from the same storage device (stream-rates.json), never from streaming
 * the model at plan time; and the plan says which figure it used, and why
 * a saved profile was not. The cache lives in this test's directory
 * (XDG_CACHE_HOME), never the user's. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../tools/synth/synth.h"
#include "gguf/gguf.h"
#include "hw/hw.h"
#include "model/model_spec.h"
#include "plan/inputs.h"
#include "plan/plan.h"
#include "test.h"

#define MiB (1024ull * 1024)

/* XDG_CACHE_HOME set to this test's directory while it runs. */
typedef struct cache_env {
    bool had_old;
    char old[1024], dir[1024], profile[1100], rates[1100];
} cache_env;

static void cache_enter(cache_env *c)
{
    const char *old = getenv("XDG_CACHE_HOME");
    c->had_old = old != NULL;
    snprintf(c->old, sizeof c->old, "%s", old ? old : "");
    snprintf(c->dir, sizeof c->dir, "%s/cache", test_tmpdir());
    setenv("XDG_CACHE_HOME", c->dir, 1);
    snprintf(c->profile, sizeof c->profile, "%s/strata/profile.json", c->dir);
    snprintf(c->rates, sizeof c->rates, "%s/strata/stream-rates.json", c->dir);
}

static void cache_leave(cache_env *c)
{
    if (c->had_old) setenv("XDG_CACHE_HOME", c->old, 1);
    else unsetenv("XDG_CACHE_HOME");
}

/* A Q8_0 llama model of 8 layers of about 3.4 MiB each (27 MiB). */
static bool make_model(char *path, size_t len)
{
    snprintf(path, len, "%s/m.gguf", test_tmpdir());
    synth_options o = {.shape = {512, 1408, 8, 8, 4, 512, 512}, .type = GGML_TYPE_Q8_0, .seed = 11, .threads = 2,
                       .output = path};
    strata_error e;
    if (synth_write(&o, &e) == STRATA_OK) return true;
    test_fail(__FILE__, __LINE__, "synth", " %s", e.message);
    return false;
}

/* This machine's profile as `detect --measure` would save it, with round
 * measurements (disk 1 GB/s, measured in the model's directory), so that
 * nothing is measured during the test. `cpu` replaces the CPU model (NULL:
 * this machine's). */
static bool save_profile(const cache_env *c, const char *model, const char *cpu, double disk_bw)
{
    hw_profile *p = calloc(1, sizeof *p);
    hw_probe_opts o = {.path = model, .no_gpu_libs = true, .no_odirect_test = true};
    strata_error err = {0};
    bool ok = p && hw_probe(&o, p, &err) == STRATA_OK;
    if (ok) {
        hw_measured *m = &p->measured;
        m->done = true;
        m->time = (int64_t)time(NULL);
        m->ram_bw_1t = 1e10;
        m->ram_bw_all = 2e10;
        m->ram_threads = 2;
        m->cpu_rate = 5e9;
        m->kernel_ram_bw = 6e9;
        m->disk_bw = disk_bw;
        m->disk_bytes = disk_bw > 0 ? 256 * MiB : 0;
        snprintf(m->disk_path, sizeof m->disk_path, "%s", test_tmpdir());
        if (cpu) {
            snprintf(p->cpu.model, sizeof p->cpu.model, "%s", cpu);
            hw_fingerprint(p, p->fingerprint);
        }
        ok = hw_profile_save(p, c->profile, &err) == STRATA_OK;
    }
    if (!ok) test_fail(__FILE__, __LINE__, "save_profile", " %s", err.message);
    free(p);
    return ok;
}

/* Bytes this process (and the children it reaped) read so far:
 * /proc/self/io's rchar counts every read(2) and pread(2), direct I/O
 * included. -1 when the kernel does not say. */
static long long bytes_read_so_far(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    if (!f) return -1;
    char line[128];
    long long v = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "rchar: %lld", &v) == 1) break;
    fclose(f);
    return v;
}

static uint64_t data_offset(const char *model)
{
    gguf_file *f = NULL;
    strata_error err;
    uint64_t off = gguf_open(model, &f, &err) == STRATA_OK ? f->splits[0].data_offset : 0;
    gguf_close(f);
    return off;
}

/* What `strata plan` does (cli/plan.c), in this process: the machine with
 * its saved measurements, the model as the engine describes it, the plan.
 * Returns the chosen plan's verdict (plan_can_run), -1 on an error. */
static int plan_here(const char *model, uint64_t budget, plan_machine *mach, plan_machine_notes *notes, bool measure)
{
    hw_profile *hw = calloc(1, sizeof *hw);
    gguf_file *f = NULL;
    model_spec *spec = NULL;
    plan_model m = {0};
    strata_error err = {0};
    int rc = -1;
    if (hw && plan_machine_profile(NULL, model, false, measure, 0, 0, hw, notes, &err) == STRATA_OK &&
        gguf_open(model, &f, &err) == STRATA_OK && model_spec_from_gguf(f, model, &spec, &err) == STRATA_OK &&
        plan_model_from_engine(f, spec, 2, 0, 0, &m, &err) == STRATA_OK) {
        plan_machine_from_profile(hw, budget, 0, mach);
        plan_request req = {.cpu_only = true, .n_ctx = 256};
        plan_result r;
        plan_compute(&m, mach, &req, &r);
        rc = r.chosen.feasible ? plan_can_run(&r.chosen) : 2;
        plan_result_free(&r);
    } else {
        test_fail(__FILE__, __LINE__, "plan_here", " %s", err.message);
    }
    plan_model_free(&m);
    model_spec_free(spec);
    gguf_close(f);
    free(hw);
    return rc;
}

/* A budget under which the model streams most of its layers (it needs 22
 * MiB at least, 40 MiB to be resident). */
#define STREAM_BUDGET (30 * MiB)

/* Plans (measure off) and expects a streaming plan; else fails the test
 * and leaves (restoring XDG_CACHE_HOME). */
#define STREAMS_OR_LEAVE(c, model, mach, notes)                                                    \
    do {                                                                                           \
        int v_ = plan_here(model, STREAM_BUDGET, mach, notes, false);                              \
        if (v_ != 1) {                                                                             \
            test_fail(__FILE__, __LINE__, "plan streams", " verdict %d", v_);                      \
            cache_leave(c);                                                                        \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* Planning a model that streams reads its header, never its tensor data:
 * counted for the planning code in this process, and for `strata plan`
 * itself through the shell that ran it (a reaped child's reads count in
 * its parent's rchar). Streaming the model to measure the disk, as plans
 * once did, read 20-30 times the file. */
TEST(test_plan_reads_no_tensor_data)
{
    if (bytes_read_so_far() < 0) {
        test_skip("/proc/self/io is not readable here");
        return;
    }
    cache_env c;
    cache_enter(&c);
    char model[1100];
    if (!make_model(model, sizeof model) || !save_profile(&c, model, NULL, 1e9)) {
        cache_leave(&c);
        return;
    }
    uint64_t header = data_offset(model);
    CHECK(header > 0 && header < 2 * MiB, "header %llu bytes", (unsigned long long)header);

    plan_machine mach;
    plan_machine_notes notes;
    long long before = bytes_read_so_far();
    int verdict = plan_here(model, STREAM_BUDGET, &mach, &notes, true);
    long long n_read = bytes_read_so_far() - before;
    CHECK(verdict == 1, "the plan streams (verdict %d)", verdict);
    CHECK(notes.cache == HW_CACHE_FRESH && !notes.measured_now && !notes.profile[0], "%s", notes.profile);
    CHECK(mach.disk_bw == 1e9 && mach.measured);
    CHECK(n_read >= 0 && (unsigned long long)n_read < header + 1 * MiB,
          "planning read %lld bytes; the header is %llu", n_read, (unsigned long long)header);

    /* the command */
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "XDG_CACHE_HOME='%s' sh -c '%s plan \"%s\" --mem %llu -c 256 --json > \"%s/plan.json\" && "
             "grep rchar /proc/$$/io'",
             c.dir, test_strata_bin(), model, (unsigned long long)STREAM_BUDGET, test_tmpdir());
    long long cmd_read = -1;
    CHECK(test_run(cmd, &out, true) == 0 && out && sscanf(out, "rchar: %lld", &cmd_read) == 1, "%s",
          out ? out : "");
    free(out);
    /* the binary, its libraries and the sanitizers' reads of /proc come on top */
    CHECK(cmd_read >= 0 && (unsigned long long)cmd_read < header + 4 * MiB,
          "strata plan read %lld bytes; the header is %llu", cmd_read, (unsigned long long)header);
    char path[1200];
    snprintf(path, sizeof path, "%s/plan.json", test_tmpdir());
    json_t *doc = json_load_file(path, 0, NULL);
    const json_t *m = json_object_get(doc, "machine");
    const char *src = json_string_value(json_object_get(m, "disk_source"));
    CHECK(src && !strncmp(src, "detect --measure", 16), "%s", src ? src : "(none)");
    CHECK(json_is_null(json_object_get(m, "profile_note")));
    json_decref(doc);
    cache_leave(&c);
}

/* The disk figure: the saved O_DIRECT measurement, then what runs reached
 * on the model's device (a time-weighted mean), and the plan names it. */
TEST(test_plan_disk_figure_from_runs)
{
    cache_env c;
    cache_enter(&c);
    char model[1100];
    if (!make_model(model, sizeof model) || !save_profile(&c, model, NULL, 1e9)) {
        cache_leave(&c);
        return;
    }
    plan_machine mach;
    plan_machine_notes notes;
    STREAMS_OR_LEAVE(&c, model, &mach, &notes);
    CHECK(mach.disk_bw == 1e9 && !strncmp(notes.disk, "detect --measure", 16), "%s", notes.disk);

    /* a run streamed 400 MB in 1 s (what `strata run` records) */
    strata_error err = {0};
    CHECK(strata_machine_record_stream_rate(model, 400000000, 1.0, &err) == STRATA_OK, "%s", err.message);
    STREAMS_OR_LEAVE(&c, model, &mach, &notes);
    CHECK(mach.disk_bw > 3.999e8 && mach.disk_bw < 4.001e8, "%g", mach.disk_bw);
    CHECK(!strncmp(notes.disk, "measured by a run on ", 21), "%s", notes.disk);

    /* a second run at 800 MB/s, as long: the mean; the file names the device */
    CHECK(strata_machine_record_stream_rate(model, 1600000000, 2.0, &err) == STRATA_OK, "%s", err.message);
    STREAMS_OR_LEAVE(&c, model, &mach, &notes);
    double want = (4e8 * 1 + 8e8 * 2) / 3;
    CHECK(mach.disk_bw > want * 0.999 && mach.disk_bw < want * 1.001, "%g, want %g", mach.disk_bw, want);
    CHECK(!strncmp(notes.disk, "measured by 2 runs on ", 22), "%s", notes.disk);
    json_t *doc = json_load_file(c.rates, 0, NULL);
    const json_t *e = json_array_get(json_object_get(doc, "rates"), 0);
    CHECK(!strcmp(json_string_value(json_object_get(doc, "schema")) ? json_string_value(json_object_get(doc, "schema"))
                                                                     : "",
                  "strata-stream-rates"));
    CHECK(json_integer_value(json_object_get(e, "runs")) == 2 &&
              json_number_value(json_object_get(e, "last_bytes_per_s")) == 8e8,
          "rates file");
    const char *dev = json_string_value(json_object_get(e, "device"));
    CHECK(dev && strstr(notes.disk, dev), "%s names %s", notes.disk, dev ? dev : "?");

    /* the past weighs at most twice the newest run: a changed disk shows */
    for (int i = 0; i < 8; i++) strata_machine_record_stream_rate(model, 100000000, 1.0, &err);
    STREAMS_OR_LEAVE(&c, model, &mach, &notes);
    CHECK(mach.disk_bw < 1.5e8, "follows the disk: %g", mach.disk_bw);
    json_decref(doc);
    cache_leave(&c);
}

/* Runs on another machine (another fingerprint) do not count; without
 * any measurement the plan says it guesses. */
TEST(test_plan_disk_figure_guess)
{
    cache_env c;
    cache_enter(&c);
    char model[1100];
    if (!make_model(model, sizeof model) || !save_profile(&c, model, NULL, 0)) {
        cache_leave(&c);
        return;
    }
    strata_error err = {0};
    char dev[64] = "";
    CHECK(hw_storage_device_of(model, dev, sizeof dev) && dev[0]);
    CHECK(hw_stream_rate_record(c.rates, "0123456789abcdef", dev, 100000000, 1.0, &err) == STRATA_OK, "%s",
          err.message);
    plan_machine mach;
    plan_machine_notes notes;
    STREAMS_OR_LEAVE(&c, model, &mach, &notes);
    CHECK(!strcmp(notes.disk, "guess: run `strata detect --measure`"), "%s", notes.disk);
    CHECK(!mach.measured && mach.disk_bw == 0.5e9, "%g", mach.disk_bw);
    cache_leave(&c);
}

/* A saved profile of another machine is not used, and the plan says why,
 * naming what differs: in the notes (measure off), and in `strata plan`'s
 * output, which measures this machine now and saves it. */
TEST(test_plan_stale_profile_named)
{
    cache_env c;
    cache_enter(&c);
    char model[1100];
    if (!make_model(model, sizeof model) || !save_profile(&c, model, "Imaginary CPU 9000", 1e9)) {
        cache_leave(&c);
        return;
    }
    plan_machine mach;
    plan_machine_notes notes;
    STREAMS_OR_LEAVE(&c, model, &mach, &notes);
    CHECK(notes.cache == HW_CACHE_STALE);
    CHECK(strstr(notes.profile, "the saved profile is from another machine (CPU differs: Imaginary CPU 9000") &&
              strstr(notes.profile, "bandwidths are guesses"),
          "%s", notes.profile);
    CHECK(!mach.measured && !strncmp(notes.disk, "guess", 5), "%s", notes.disk);

    const char *bin = getenv("STRATA_RELEASE_BIN"); /* measuring is slow under the sanitizers */
    if (!bin || !*bin) bin = test_strata_bin();
    char cmd[4096], *out = NULL;
    /* a budget too small to measure in: estimates, and the profile stays as it is */
    snprintf(cmd, sizeof cmd, "XDG_CACHE_HOME='%s' %s plan '%s' --mem %llu -c 256", c.dir, bin, model,
             (unsigned long long)STREAM_BUDGET);
    CHECK(test_run(cmd, &out, true) == 0 && out &&
              strstr(out, "bandwidths are guesses (too little memory to measure them in)"),
          "%s", out ? out : "");
    free(out);
    snprintf(cmd, sizeof cmd, "XDG_CACHE_HOME='%s' %s plan '%s' -c 256", c.dir, bin, model);
    CHECK(test_run(cmd, &out, true) == 0 && out &&
              strstr(out, "machine     the saved profile is from another machine (CPU differs: Imaginary CPU 9000") &&
              strstr(out, "measured now and saved\n"),
          "%s", out ? out : "");
    free(out);
    /* saved: the next plan uses it as it is */
    STREAMS_OR_LEAVE(&c, model, &mach, &notes);
    CHECK(notes.cache == HW_CACHE_FRESH && !notes.profile[0], "%s", notes.profile);
    cache_leave(&c);
}

/* A profile cache that cannot be written (a directory where the file goes):
 * `strata plan` measures, and says the profile was not saved and why,
 * instead of "measured now and saved" (every plan would measure again). */
TEST(test_plan_profile_not_saved_is_said)
{
    cache_env c;
    cache_enter(&c);
    char model[1100];
    if (!make_model(model, sizeof model)) {
        cache_leave(&c);
        return;
    }
    char sub[1100];
    snprintf(sub, sizeof sub, "%s/strata", c.dir);
    mkdir(c.dir, 0755);
    mkdir(sub, 0755);
    REQUIRE(mkdir(c.profile, 0755) == 0, " %s: %s", c.profile, strerror(errno));
    const char *bin = getenv("STRATA_RELEASE_BIN"); /* measuring is slow under the sanitizers */
    if (!bin || !*bin) bin = test_strata_bin();
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd, "XDG_CACHE_HOME='%s' %s plan '%s' -c 256", c.dir, bin, model);
    CHECK(test_run(cmd, &out, true) == 0 && out && strstr(out, "measured now, not saved (") &&
              strstr(out, c.profile) && !strstr(out, "measured now and saved"),
          "%s", out ? out : "");
    free(out);
    cache_leave(&c);
}
