/* The one memory account (issue 15): every allocation category shows up
 * in it, the budget check refuses before memory is touched, the account's
 * total matches the process's real memory, and `--stats` prints it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../tools/synth/synth.h"
#include "strata.h"
#include "run_helpers.h"
#include "test.h"
#include "util/account.h"

#define MiB (1ull << 20)


/* This process's resident memory now (/proc/self/statm), bytes. */
static uint64_t rss_now(void)
{
    unsigned long long size = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    if (fscanf(f, "%llu %llu", &size, &res) != 2) res = 0;
    fclose(f);
    return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

TEST(test_account_counts_and_refuses)
{
    mem_account *a = acct_new(64 * MiB);
    REQUIRE(a);
    strata_error e;
    CHECK(!acct_take(a, ACCT_RAM, ACCT_WEIGHTS, 40 * MiB, &e));
    CHECK(!acct_take(a, ACCT_RAM, ACCT_KV_RESERVE, 16 * MiB, &e));
    CHECK(acct_move(a, ACCT_RAM, ACCT_KV_RESERVE, ACCT_KV, 10 * MiB));
    CHECK(!acct_move(a, ACCT_RAM, ACCT_KV_RESERVE, ACCT_KV, 7 * MiB), " moved more than the reserve holds");
    CHECK(acct_cat_used(a, ACCT_RAM, ACCT_KV) == 10 * MiB && acct_cat_used(a, ACCT_RAM, ACCT_KV_RESERVE) == 6 * MiB);
    CHECK(acct_used(a, ACCT_RAM) == 56 * MiB && acct_room(a, ACCT_RAM) == 8 * MiB);
    /* 9 MiB more do not fit: refused, nothing counted, the message names
     * the category, the budget and what holds it */
    CHECK(acct_take(a, ACCT_RAM, ACCT_LOGITS, 9 * MiB, &e) == STRATA_E_NOMEM);
    CHECK(strstr(e.message, "logits") && strstr(e.message, "64.0 MiB") && strstr(e.message, "weights 40.0 MiB"),
          " %s", e.message);
    CHECK(acct_used(a, ACCT_RAM) == 56 * MiB && acct_refusals(a) == 1);
    CHECK(!acct_take(a, ACCT_RAM, ACCT_LOGITS, 8 * MiB, &e), " exactly the room: %s", e.message);
    acct_give(a, ACCT_RAM, ACCT_LOGITS, 8 * MiB);
    acct_give(a, ACCT_RAM, ACCT_WEIGHTS, 40 * MiB);
    CHECK(acct_used(a, ACCT_RAM) == 16 * MiB && acct_peak(a, ACCT_RAM) == 64 * MiB);
    /* VRAM is a tier of its own: no budget until one is set */
    CHECK(!acct_take(a, ACCT_VRAM, ACCT_WEIGHTS, 1ull << 40, &e) && acct_room(a, ACCT_VRAM) == UINT64_MAX);
    acct_set_budget(a, ACCT_VRAM, 1ull << 30);
    CHECK(acct_take(a, ACCT_VRAM, ACCT_KV, 1, &e) == STRATA_E_NOMEM && strstr(e.message, "VRAM"), " %s", e.message);
    acct_free(a);
}

/* A 1 GiB buffer under a 64 MiB budget is refused before anything is
 * allocated: the process's RSS does not move. */
TEST(test_account_refuses_before_touching)
{
    mem_account *a = acct_new(64 * MiB);
    REQUIRE(a);
    strata_error e;
    uint64_t before = rss_now();
    void *p = acct_alloc(a, ACCT_LOGITS, 1024 * MiB, &e);
    uint64_t after = rss_now();
    CHECK(!p && strstr(e.message, "memory budget") && strstr(e.message, "logits"), " %s", e.message);
    CHECK(after < before + 4 * MiB, " RSS rose from %llu to %llu", (unsigned long long)before,
          (unsigned long long)after);
    CHECK(acct_used(a, ACCT_RAM) == 0);
    p = acct_alloc(a, ACCT_SCRATCH, 32 * MiB, &e); /* one that fits is faulted in at once */
    CHECK(p && rss_now() >= before + 30 * MiB, " RSS %llu after a 32 MiB buffer (was %llu)",
          (unsigned long long)rss_now(), (unsigned long long)before);
    acct_release(a, ACCT_SCRATCH, p, 32 * MiB);
    CHECK(acct_used(a, ACCT_RAM) == 0);
    acct_free(a);
}

/* A synthesized dense model: ~50 MiB (16 layers, Q8_0), or with
 * big_vocab a small one with 32000 tokens (128 KiB of logits a position). */
static bool synth_shaped(const char *name, bool big_vocab, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", test_tmpdir(), name);
    synth_shape dense = {512, 1408, 16, 8, 4, 512, 1024}, wide = {128, 256, 2, 2, 2, 32000, 4096};
    synth_options o = {.shape = big_vocab ? wide : dense, .type = GGML_TYPE_Q8_0, .seed = 21, .threads = 2,
                       .output = path};
    strata_error e;
    if (synth_write(&o, &e)) {
        test_fail(__FILE__, __LINE__, "synth_write", " %s", e.message);
        return false;
    }
    return true;
}

static bool synth_model(const char *name, char *path, size_t cap) { return synth_shaped(name, false, path, cap); }

/* The synthesized dense model opened with n_ctx, one thread, a budget and
 * no watchdog (nothing moves but what the test asks), and its account;
 * NULL on failure. */
static strata_model *open_budgeted(const char *name, uint32_t n_ctx, uint64_t budget, strata_mem_account *a)
{
    char path[1024];
    if (!synth_model(name, path, sizeof path)) return NULL;
    strata_model_params p = strata_model_default_params();
    p.n_ctx = n_ctx;
    p.n_threads = 1;
    p.mem_budget = budget;
    p.watchdog = false;
    strata_model *m = NULL;
    strata_error e;
    if (strata_model_open(path, &p, &m, &e)) test_fail(__FILE__, __LINE__, "strata_model_open", " %s", e.message);
    else strata_model_mem_account(m, STRATA_MEM_RAM, a);
    return m;
}

/* Every category a run allocates shows up: the process, resident weights,
 * stream slots (a partly streamed placement), the KV reserve and then the
 * KV cache of the context, scratch, prompt tokenizing, and logits; the
 * categories add up to the total, which the stats report. */
TEST(test_account_every_category)
{
    /* the weights (~52 MiB) do not all fit in 40 MiB: some resident, some streamed */
    strata_mem_account a;
    strata_model *m = open_budgeted("acct.gguf", 256, 40 * MiB, &a);
    if (!m) return;
    strata_error e;
    CHECK(a.budget == 40 * MiB && a.total <= a.budget, " total %llu", (unsigned long long)a.total);
    CHECK(a.used[STRATA_MEM_PROCESS] > 0 && a.used[STRATA_MEM_WEIGHTS] > 0 && a.used[STRATA_MEM_SLOTS] > 0 &&
              a.used[STRATA_MEM_KV_RESERVE] > 0 && a.used[STRATA_MEM_SCRATCH] > 0 && a.used[STRATA_MEM_KV] == 0,
          " process %llu weights %llu slots %llu reserve %llu scratch %llu kv %llu",
          (unsigned long long)a.used[STRATA_MEM_PROCESS], (unsigned long long)a.used[STRATA_MEM_WEIGHTS],
          (unsigned long long)a.used[STRATA_MEM_SLOTS], (unsigned long long)a.used[STRATA_MEM_KV_RESERVE],
          (unsigned long long)a.used[STRATA_MEM_SCRATCH], (unsigned long long)a.used[STRATA_MEM_KV]);
    uint64_t reserve = a.used[STRATA_MEM_KV_RESERVE], total = a.total;
    int32_t *toks = NULL;
    size_t n = 0;
    REQUIRE(!strata_tokenize(m, "a b c d", 7, true, &toks, &n, &e), " %s", e.message);
    size_t vocab = strata_model_n_vocab(m);
    float *logits = strata_mem_alloc(m, STRATA_MEM_LOGITS, vocab * sizeof(float), &e);
    REQUIRE(logits, " %s", e.message);
    REQUIRE(!strata_mem_take(m, STRATA_MEM_PROMPT, n * sizeof *toks, &e), " %s", e.message);
    REQUIRE(!strata_eval(m, toks, n, logits, false, &e), " %s", e.message);
    strata_model_mem_account(m, STRATA_MEM_RAM, &a);
    /* the context took its KV cache from the reserve: the total is the same but for the logits and prompt */
    CHECK(a.used[STRATA_MEM_KV] == reserve && a.used[STRATA_MEM_KV_RESERVE] == 0,
          " kv %llu reserve %llu (was %llu)", (unsigned long long)a.used[STRATA_MEM_KV],
          (unsigned long long)a.used[STRATA_MEM_KV_RESERVE], (unsigned long long)reserve);
    CHECK(a.used[STRATA_MEM_LOGITS] == vocab * sizeof(float) && a.used[STRATA_MEM_PROMPT] == n * sizeof *toks);
    uint64_t sum = 0;
    for (int c = 0; c < STRATA_MEM_N_CATEGORIES; c++) sum += a.used[c];
    CHECK(sum == a.total && a.total <= a.budget, " sum %llu total %llu", (unsigned long long)sum,
          (unsigned long long)a.total);
    strata_model_stats s;
    strata_model_get_stats(m, &s);
    CHECK(s.accounted_bytes == a.total);
    strata_mem_give(m, STRATA_MEM_PROMPT, n * sizeof *toks);
    strata_mem_free(m, STRATA_MEM_LOGITS, logits, vocab * sizeof(float));
    strata_model_mem_account(m, STRATA_MEM_RAM, &a);
    CHECK(a.total == total, " %llu after release, %llu before", (unsigned long long)a.total,
          (unsigned long long)total);
    /* a prompt whose tokenizing cannot fit is refused before the work */
    size_t big = 4 * MiB;
    char *text = malloc(big);
    REQUIRE(text);
    memset(text, 'a', big);
    free(toks);
    toks = NULL;
    CHECK(strata_tokenize(m, text, big, true, &toks, &n, &e) == STRATA_E_NOMEM && strstr(e.message, "prompt"),
          " %s", e.message);
    free(text);
    free(toks);
    strata_model_free(m);
}

/* A logits buffer the account can make room for: the store moves resident
 * layers to streaming first (the account's reclaimer), then the buffer
 * fits, and the output is unchanged. */
TEST(test_account_reclaims_from_resident_weights)
{
    strata_mem_account a;
    strata_model *m = open_budgeted("acct2.gguf", 64, 48 * MiB, &a);
    if (!m) return;
    strata_error e;
    uint64_t room = a.budget - a.total, weights = a.used[STRATA_MEM_WEIGHTS];
    REQUIRE(weights > 16 * MiB, " weights %llu", (unsigned long long)weights);
    uint64_t want = room + 8 * MiB; /* more than the room: 8 MiB must come from the weights */
    void *buf = strata_mem_alloc(m, STRATA_MEM_OTHER, want, &e);
    CHECK(buf, " %s", e.message);
    strata_model_mem_account(m, STRATA_MEM_RAM, &a);
    CHECK(a.used[STRATA_MEM_WEIGHTS] + 8 * MiB <= weights && a.total <= a.budget,
          " weights %llu (were %llu), total %llu", (unsigned long long)a.used[STRATA_MEM_WEIGHTS],
          (unsigned long long)weights, (unsigned long long)a.total);
    strata_mem_free(m, STRATA_MEM_OTHER, buf, want);
    strata_model_free(m);
}

/* The high-water RSS of process pid (VmHWM in /proc/PID/status), bytes,
 * once it runs `name` (before its exec, the child's memory is a copy of
 * this process's); 0 before that or once it has exited. */
static uint64_t vm_hwm(pid_t pid, const char *name)
{
    char path[64], line[256], comm[64] = "";
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    unsigned long long kb = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (sscanf(line, "Name: %63s", comm) == 1) continue;
        if (sscanf(line, "VmHWM: %llu kB", &kb) == 1) break;
    }
    if (f) fclose(f);
    return strncmp(comm, name, 15) ? 0 : (uint64_t)kb * 1024; /* Name is cut at 15 characters */
}

/* Runs argv with stdout to /dev/null and stderr into log[0..cap) (through
 * a file in the test's tmpdir); the exit status and the child's peak RSS
 * (bytes). The peak is VmHWM sampled every
 * 2 ms while it runs: getrusage's ru_maxrss would include this (sanitized,
 * much larger) process's memory, which the child has until its exec. */
static int run_measured(char *const argv[], char *log, size_t cap, uint64_t *peak)
{
    char errpath[1100];
    snprintf(errpath, sizeof errpath, "%s/stderr.txt", test_tmpdir());
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stdout) || !freopen(errpath, "w", stderr)) _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
    int st = 0;
    *peak = 0;
    if (pid < 0) return -1;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) break;
        if (r < 0) return -1;
        const char *base = strrchr(argv[0], '/');
        uint64_t h = vm_hwm(pid, base ? base + 1 : argv[0]);
        if (h > *peak) *peak = h;
        usleep(2000);
    }
    FILE *f = fopen(errpath, "r");
    log[0] = '\0';
    if (f) log[fread(log, 1, cap - 1, f)] = '\0';
    if (f) fclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static double field_mib(const char *text, const char *key)
{
    const char *p = text ? strstr(text, key) : NULL;
    return p ? strtod(p + strlen(key), NULL) : -1;
}

/* The account's total against the real memory: a resident run of the
 * synthesized model with --stats. The peak RSS (VmHWM) and the account's
 * total at the end agree within 8 MiB + 5 % (the tolerance: the process
 * estimate covers code, libraries, stacks and the header only roughly, and
 * the allocator's own overhead is not counted). --stats prints the
 * per-tier, per-category line. */
TEST(test_account_matches_rss)
{
    char path[1024];
    if (!synth_model("acct3.gguf", path, sizeof path)) return;
    char *argv[] = {(char *)test_release_bin(), "run", "-m", path, "-p", "a b c d", "-n", "64", "--temp", "0",
                    "-t", "1", "-c", "512", "--mem", "512M", "--stats", NULL};
    uint64_t peak = 0;
    char *log = calloc(1, 1 << 20);
    REQUIRE(log);
    int rc = run_measured(argv, log, 1 << 20, &peak);
    REQUIRE(rc == 0, " rc %d: %s", rc, log);
    double rss = (double)peak / MiB, acc = field_mib(log, "(accounted ");
    CHECK(rss > 40 && acc > 40, " rss %.1f accounted %.1f", rss, acc);
    double diff = rss > acc ? rss - acc : acc - rss;
    CHECK(diff <= 8 + 0.05 * rss, " peak RSS %.1f MiB vs accounted %.1f MiB", rss, acc);
    printf("    peak RSS (VmHWM) %.1f MiB, accounted %.1f MiB\n", rss, acc);
    const char *line = strstr(log, "strata: memory RAM: ");
    CHECK(line && strstr(line, "budget") && strstr(line, "weights") && strstr(line, "KV cache") &&
              strstr(line, "scratch") && strstr(line, "process") && strstr(line, "logits"),
          " no account line: %s", log);
    if (line) printf("    %.*s\n", (int)strcspn(line, "\n"), line);
    free(log);
}

/* Issue 15 audit item 2: --logits-out for more positions than the budget
 * holds is refused before the buffer exists (it took 728 MiB at --mem 64M):
 * the message names the logits and the budget, and the peak RSS stays
 * under the budget. */
TEST(test_account_logits_out_refused_before_touch)
{
    char path[1024], prompt[1100], out[1100], log[4096];
    if (!synth_shaped("acct4.gguf", true, path, sizeof path)) return;
    snprintf(prompt, sizeof prompt, "%s/prompt.txt", test_tmpdir());
    snprintf(out, sizeof out, "%s/logits.f32", test_tmpdir());
    FILE *f = fopen(prompt, "w");
    REQUIRE(f);
    for (int i = 0; i < 1500; i++) fputs("a b ", f); /* >= 1000 tokens x 32000 x 4 B: > 120 MiB of logits */
    fclose(f);
    char *argv[] = {(char *)test_release_bin(), "run", "-m", path, "-f", prompt, "-t", "1", "-c", "4096", "--mem",
                    "64M", "--logits-out", out, NULL};
    uint64_t peak = 0;
    int rc = run_measured(argv, log, sizeof log, &peak);
    CHECK(rc == 1 && strstr(log, "--logits-out") && strstr(log, "memory budget") && strstr(log, "logits"),
          " rc %d: %s", rc, log);
    CHECK(peak < 64 * MiB, " peak RSS %llu", (unsigned long long)peak);
    CHECK(access(out, F_OK) != 0, " a logits file was written");
}

/* Audit item 2: a prompt no context can hold is refused before it is
 * tokenized (8 MiB of text took 358 MiB at --mem 66M): the message says
 * how many tokens it has at least, and the peak RSS stays in the budget. */
TEST(test_account_huge_prompt_refused_before_tokenizing)
{
    char path[1024], prompt[1100], log[4096];
    if (!synth_model("acct5.gguf", path, sizeof path)) return;
    snprintf(prompt, sizeof prompt, "%s/prompt8m.txt", test_tmpdir());
    FILE *f = fopen(prompt, "w");
    REQUIRE(f);
    for (int i = 0; i < (8 << 20) / 8; i++) fputs("1234567 ", f);
    fclose(f);
    char *argv[] = {(char *)test_release_bin(), "run", "-m", path, "-f", prompt, "-t", "1", "-c", "256", "--mem",
                    "66M", "-n", "1", NULL};
    uint64_t peak = 0;
    int rc = run_measured(argv, log, sizeof log, &peak);
    CHECK(rc == 1 && strstr(log, "the prompt is at least") && strstr(log, "raise -c"), " rc %d: %s", rc, log);
    CHECK(peak < 66 * MiB, " peak RSS %llu", (unsigned long long)peak);
}

/* Audit item 2: a context of 2^24 tokens under a 64 MiB budget is refused
 * before its KV cache or any buffer is allocated (it was OOM-killed in a
 * 512 MiB cgroup). */
TEST(test_account_huge_context_refused_before_allocating)
{
    char path[1024];
    if (!synth_model("acct6.gguf", path, sizeof path)) return;
    strata_model_params p = strata_model_default_params();
    p.n_ctx = 1u << 24;
    p.n_threads = 1;
    p.mem_budget = 64 * MiB;
    strata_model *m = NULL;
    strata_error e;
    uint64_t before = rss_now();
    CHECK(strata_model_open(path, &p, &m, &e) == STRATA_E_NOMEM && strstr(e.message, "cannot hold") &&
              strstr(e.message, "16777216-token context"),
          " %s", e.message);
    CHECK(rss_now() < before + 64 * MiB, " RSS rose from %llu to %llu", (unsigned long long)before,
          (unsigned long long)rss_now());
    strata_model_free(m);
}

/* ---- the generation loops' and the server's buffers ---- */

/* A size as fmt_bytes prints it after `key` ("391 KiB", "7.81 MiB",
 * "0 B"), in bytes; -1 when absent. */
static double field_bytes(const char *text, const char *key)
{
    const char *p = text ? strstr(text, key) : NULL;
    if (!p) return -1;
    char *end;
    double v = strtod(p + strlen(key), &end);
    static const char *const units[] = {" B", " KiB", " MiB", " GiB"};
    for (int i = 0; i < 4; i++)
        if (!strncmp(end, units[i], strlen(units[i]))) return v * (double)(1ull << (10 * i));
    return -1;
}

/* A buffer grown through the account: the growth is refused before
 * realloc touches anything (the buffer and its count stay as they were,
 * RSS does not move), a growth that fits is zeroed, a shrink gives back. */
TEST(test_account_realloc_refuses_before_touching)
{
    mem_account *a = acct_new(64 * MiB);
    REQUIRE(a);
    strata_error e;
    char *p = acct_realloc(a, ACCT_TEXT, NULL, 0, 1 * MiB, &e);
    REQUIRE(p, " %s", e.message);
    memset(p, 'x', 1 * MiB);
    uint64_t before = rss_now();
    CHECK(!acct_realloc(a, ACCT_TEXT, p, 1 * MiB, 1024 * MiB, &e) && strstr(e.message, "memory budget") &&
              strstr(e.message, "text"),
          " %s", e.message);
    CHECK(rss_now() < before + 4 * MiB && acct_cat_used(a, ACCT_RAM, ACCT_TEXT) == 1 * MiB && p[MiB - 1] == 'x');
    char *q = acct_realloc(a, ACCT_TEXT, p, 1 * MiB, 3 * MiB, &e);
    REQUIRE(q, " %s", e.message);
    CHECK(q[0] == 'x' && q[MiB - 1] == 'x' && q[MiB] == 0 && q[3 * MiB - 1] == 0, " the new tail is not zeroed");
    CHECK(acct_cat_used(a, ACCT_RAM, ACCT_TEXT) == 3 * MiB);
    q = acct_realloc(a, ACCT_TEXT, q, 3 * MiB, 2 * MiB, &e);
    REQUIRE(q, " %s", e.message);
    CHECK(acct_cat_used(a, ACCT_RAM, ACCT_TEXT) == 2 * MiB);
    acct_release(a, ACCT_TEXT, q, 2 * MiB);
    acct_snapshot s;
    acct_snapshot_get(a, ACCT_RAM, &s);
    CHECK(s.used[ACCT_TEXT] == 0 && s.cat_peak[ACCT_TEXT] == 3 * MiB && s.total == 0);
    acct_free(a);
}

/* `strata run --stats`: the generation loop's sampler (its candidate list
 * of 12 bytes per token, the token history of n_ctx + 1 ids), its logits
 * row and the kept answer are in the account while it runs: their peaks
 * show on the account line, at least the sizes computed from the model's
 * vocabulary and the context. */
TEST(test_account_run_loop_buffers_in_stats)
{
    char path[1024];
    if (!synth_shaped("acct7.gguf", true, path, sizeof path)) return; /* 32000 tokens */
    char *argv[] = {(char *)test_release_bin(), "run", "-m", path, "-p", "a b c d", "-n", "8", "--temp", "0", "-t",
                    "1", "-c", "4096", "--mem", "512M", "--stats", NULL};
    uint64_t peak = 0;
    char *log = calloc(1, 1 << 20);
    REQUIRE(log);
    int rc = run_measured(argv, log, 1 << 20, &peak);
    REQUIRE(rc == 0, " rc %d: %s", rc, log);
    const char *line = strstr(log, "strata: memory RAM: ");
    double sampler = field_bytes(line, "sampler 0 B (peak "), logits = field_bytes(line, "logits 0 B (peak ");
    double want_sampler = 32000.0 * 12 + 4097 * 4, want_logits = 32000.0 * 4;
    CHECK(line && sampler >= want_sampler * 0.99 && logits >= want_logits * 0.99 && logits <= want_logits * 1.01,
          " sampler %.0f B (want >= %.0f), logits %.0f B (want %.0f): %s", sampler, want_sampler, logits, want_logits,
          line ? line : log);
    if (line) printf("    %.*s\n", (int)strcspn(line, "\n"), line);
    free(log);
}

/* `strata batch` whose scheduler buffers do not fit the budget: 64 slots
 * of a 32000-token vocabulary need 64 x 32000 x 4 B = 7.8 MiB of logits
 * rows (and a sampler of 375 KiB for each request running). Under --mem
 * 16M that is refused with the account's message naming the buffer, exit
 * 1, and the peak RSS stays in the budget; the same job with 2 slots runs,
 * and its --stats line shows the scheduler's buffers at their peak: the
 * logits rows (2 x 32000 x 4 B), the samplers, the requests' text. */
TEST(test_account_batch_refused_by_budget)
{
    char path[1024], prompts[1100], out[1100];
    if (!synth_shaped("acct8.gguf", true, path, sizeof path)) return;
    snprintf(prompts, sizeof prompts, "%s/prompts.txt", test_tmpdir());
    snprintf(out, sizeof out, "%s/batch.jsonl", test_tmpdir());
    FILE *f = fopen(prompts, "w");
    REQUIRE(f);
    for (int i = 0; i < 64; i++) fprintf(f, "a b c %d\n", i);
    fclose(f);
    char *argv[] = {(char *)test_release_bin(), "batch", "-m", path, "-f", prompts, "-o", out, "-n", "2", "--temp",
                    "0", "-t", "1", "-c", "64", "-np", "64", "--mem", "16M", "--stats", NULL};
    uint64_t peak = 0;
    char *log = calloc(1, 1 << 20);
    REQUIRE(log);
    int rc = run_measured(argv, log, 1 << 20, &peak);
    CHECK(rc == 1 && strstr(log, "memory budget") && (strstr(log, "logits") || strstr(log, "sampler")),
          " rc %d: %s", rc, log);
    CHECK(peak < 16 * MiB, " peak RSS %.1f MiB under --mem 16M", (double)peak / MiB);
    const char *why = strstr(log, "strata batch: ");
    if (why) printf("    -np 64: %.*s\n", (int)strcspn(why, "\n"), why);
    argv[17] = "2";
    rc = run_measured(argv, log, 1 << 20, &peak);
    const char *line = strstr(log, "strata: memory RAM: ");
    CHECK(rc == 0 && line, " -np 2: rc %d: %s", rc, log);
    /* two requests run at once: two samplers of 32000 x 12 B */
    double logits = field_bytes(line, "logits 0 B (peak "), want = 2 * 32000.0 * 4;
    double sampler = field_bytes(line, "sampler 0 B (peak ");
    CHECK(logits >= want * 0.99 && logits <= want * 1.01 && sampler >= 2 * 32000.0 * 12 && strstr(line, "text "),
          " logits %.0f B (want %.0f), sampler %.0f B: %s", logits, want, sampler, line ? line : log);
    if (line) printf("    -np 2: %.*s\n", (int)strcspn(line, "\n"), line);
    free(log);
}

/* A chat conversation is tokenized like a prompt: its work (48 bytes per
 * byte of text) is taken first, so a 4 MiB message under a 40 MiB budget
 * is refused before any of it is done, naming the prompt, and RSS does not
 * move; a short one is tokenized, and the work is given back after. */
TEST(test_account_chat_tokenize_refused_before_work)
{
    strata_mem_account a;
    strata_model *m = open_budgeted("acct9.gguf", 64, 40 * MiB, &a);
    if (!m) return;
    size_t big = 4 * MiB;
    char *text = malloc(big + 1);
    REQUIRE(text);
    memset(text, 'a', big);
    text[big] = '\0';
    strata_chat_message msg = {"user", text};
    int32_t *toks = NULL;
    size_t n = 0;
    strata_error e;
    uint64_t before = rss_now(), total = a.total;
    CHECK(strata_chat_tokenize(m, "chatml", &msg, 1, 0, true, &toks, &n, &e) == STRATA_E_NOMEM &&
              strstr(e.message, "memory budget") && strstr(e.message, "prompt"),
          " %s", e.message);
    CHECK(!toks && rss_now() < before + 4 * MiB, " RSS rose from %llu to %llu", (unsigned long long)before,
          (unsigned long long)rss_now());
    msg.content = "Hello";
    CHECK(!strata_chat_tokenize(m, "chatml", &msg, 1, 0, true, &toks, &n, &e) && n > 3, " %s", e.message);
    strata_model_mem_account(m, STRATA_MEM_RAM, &a);
    CHECK(a.total == total && a.peak_used[STRATA_MEM_PROMPT] > 0, " total %llu (was %llu), prompt peak %llu",
          (unsigned long long)a.total, (unsigned long long)total,
          (unsigned long long)a.peak_used[STRATA_MEM_PROMPT]);
    free(toks);
    free(text);
    strata_model_free(m);
}
