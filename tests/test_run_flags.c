/* `strata run`'s flags, each with a test that fails when the flag is
 * ignored: end of generation and --ignore-eos, errors in the middle of
 * generation, -f and its limits, --stats, -b, the sampling flags, a full
 * context, the echoed prompt, --chat and -sys, --mmap, and that --help is
 * true. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf_helpers.h"
#include "strata.h"
#include "test.h"

static const char *stories(void) { return test_fixture("stories260K.gguf"); }

/* `strata run -m MODEL ARGS` (-t 2); stderr merged or dropped. */
static int run_model(const char *model, const char *args, char **out, bool merge)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s run -m '%s' -t 2 %s%s", test_strata_bin(), model, args, merge ? "" : " 2>/dev/null");
    return test_run(cmd, out, merge);
}

/* The number after "generated " in the statistics line, or -1. */
static long generated(const char *out)
{
    const char *s = out ? strstr(out, "generated ") : NULL;
    return s ? strtol(s + 10, NULL, 10) : -1;
}

/* stories260K with EOS set to id 1. The model separates stories with that
 * token (it never emits its declared EOS, 2), so with it as EOS greedy
 * decoding ends where the story ends. Patched in place: the value of the
 * key tokenizer.ggml.eos_token_id (type 4, UINT32) follows the key. */
static const char *eos_model(char *path, size_t cap)
{
    const char *p = stories();
    if (!p) return NULL;
    size_t n;
    uint8_t *d = read_whole_file(p, &n);
    static const char key[] = "tokenizer.ggml.eos_token_id";
    uint8_t *k = d ? memmem(d, n, key, sizeof key - 1) : NULL;
    uint8_t *v = k ? k + sizeof key - 1 : NULL;
    static const uint8_t want[8] = {4, 0, 0, 0, 2, 0, 0, 0};
    bool ok = v && v + 8 <= d + n && !memcmp(v, want, 8);
    if (ok) v[4] = 1;
    snprintf(path, cap, "%s/stories-eos1.gguf", test_tmpdir());
    FILE *fp = ok ? fopen(path, "wb") : NULL;
    ok = fp && fwrite(d, 1, n, fp) == n;
    if (fp && fclose(fp)) ok = false;
    free(d);
    if (!ok) test_fail(__FILE__, __LINE__, "eos_model", " could not patch %s", p);
    return ok ? path : NULL;
}

TEST(test_run_flags_eos_ends_generation)
{
    char path[1024], *out = NULL;
    const char *m = eos_model(path, sizeof path);
    if (!m) return;
    CHECK(run_model(m, "-p 'Once upon a time' --temp 0 -n 400", &out, true) == 0, " %s", out);
    long n = generated(out);
    CHECK(n > 100 && n < 400 && strstr(out, "You are a good friend.\"\n\nstrata: load"), " stopped at the story's "
          "end after %ld tokens: %s", n, out);
    free(out);
    CHECK(run_model(m, "-p 'Once upon a time' --temp 0 -n 400 --ignore-eos", &out, true) == 0);
    CHECK(generated(out) == 400, " --ignore-eos goes on: %ld", generated(out));
    free(out);
}

/* A write error on stdout in the middle of generation: exit 1, not 0. */
TEST(test_run_flags_stdout_error)
{
    const char *p = stories();
    if (!p) return;
    char *out = NULL;
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s run -m '%s' -p 'Once upon a time' -n 20 2>&1 >/dev/full", test_strata_bin(), p);
    CHECK(test_run(cmd, &out, false) == 1 && strstr(out, "strata run: stdout: No space left on device"), " %s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s run -m '%s' -p 'Once upon a time' -n 20 --no-display-prompt 2>&1 >/dev/full",
             test_strata_bin(), p);
    CHECK(test_run(cmd, &out, false) == 1 && strstr(out, "stdout: No space left"),
          " the generated text fails to write: %s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "echo Hello | %s chat -m '%s' --chat-template llama2 -n 8 2>&1 >/dev/full",
             test_strata_bin(), p);
    CHECK(test_run(cmd, &out, false) == 1 && strstr(out, "strata chat: stdout: No space left"), " %s", out);
    free(out);
}

static bool write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    bool ok = fp && fputs(text, fp) >= 0;
    return fp && !fclose(fp) && ok;
}

TEST(test_run_flags_prompt_file)
{
    const char *p = stories();
    if (!p) return;
    char args[2048], file[1024], *a = NULL, *b = NULL, *out = NULL;
    snprintf(file, sizeof file, "%s/prompt.txt", test_tmpdir());
    REQUIRE(write_text(file, "Once upon a time"));
    snprintf(args, sizeof args, "-f %s --temp 0 -n 20", file);
    CHECK(run_model(p, args, &a, false) == 0 && run_model(p, "-p 'Once upon a time' --temp 0 -n 20", &b, false) == 0);
    CHECK(a && b && !strcmp(a, b) && strstr(a, ", there was a little girl"), " -f: '%s', -p: '%s'", a, b);
    snprintf(args, sizeof args, "-f %s", test_tmpdir());
    CHECK(run_model(p, args, &out, true) == 1 && strstr(out, "is a directory"), " %s", out);
    free(out);
    snprintf(args, sizeof args, "-f %s/none.txt", test_tmpdir());
    CHECK(run_model(p, args, &out, true) == 1 && strstr(out, "none.txt: No such file or directory"), " %s", out);
    free(out);
    /* Just over the limit: a sparse file, and the same through a pipe. */
    snprintf(file, sizeof file, "%s/big.txt", test_tmpdir());
    int fd = open(file, O_CREAT | O_WRONLY, 0644);
    CHECK(fd >= 0 && ftruncate(fd, (64 << 20) + 1) == 0);
    close(fd);
    snprintf(args, sizeof args, "-f %s", file);
    CHECK(run_model(p, args, &out, true) == 1 && strstr(out, "big.txt: larger than 64 MiB"), " %s", out);
    free(out);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "head -c 67108865 /dev/zero | %s run -m '%s' -f /dev/stdin", test_strata_bin(), p);
    CHECK(test_run(cmd, &out, true) == 1 && strstr(out, "/dev/stdin: larger than 64 MiB"), " %s", out);
    free(out);
    free(a);
    free(b);
}

/* --stats: a line per forward pass; -b: prompt passes of at most N tokens,
 * the same text. */
TEST(test_run_flags_stats_and_batch)
{
    const char *p = stories();
    if (!p) return;
    char *one = NULL, *all = NULL, *out = NULL;
    CHECK(run_model(p, "-p 'Once upon a time' --temp 0 -n 8 --stats -b 1", &out, true) == 0);
    CHECK(out && strstr(out, "strata: prompt batch 5: read") && !strstr(out, "prompt batch 6") &&
              strstr(out, "strata: token 7: read") && !strstr(out, "token 8:") && strstr(out, "compute"),
          " one pass per prompt token, one per generated token but the last: %s", out);
    free(out);
    CHECK(run_model(p, "-p 'Once upon a time' --temp 0 -n 8 --stats -b 64", &out, true) == 0);
    CHECK(out && strstr(out, "strata: prompt batch 1 (5 tokens): read") && !strstr(out, "prompt batch 2"), " %s", out);
    free(out);
    /* the threads' jobs per decode token: per layer Q/K/V, attention, the
     * attention output, gate/up and down (5 layers), then the output */
    CHECK(run_model(p, "-p 'Once upon a time' --temp 0 -n 8 --stats -t 2", &out, true) == 0);
    const char *cpu = out ? strstr(out, "strata: CPU per decode token (2 threads): 26 parallel jobs, ") : NULL;
    double in_jobs = -1, working = -1, outside = -1, share = -1;
    CHECK(cpu && sscanf(strchr(cpu, ',') + 1, " %lf ms in them (threads working %lf %% of that), %lf ms outside them "
                        "on one thread (%lf %%", &in_jobs, &working, &outside, &share) == 4, " %s", out);
    CHECK(in_jobs > 0 && working > 0 && working <= 100 && outside > 0 && share > 0 && share < 100,
          " %g ms, %g %%, %g ms, %g %%", in_jobs, working, outside, share);
    free(out);
    CHECK(run_model(p, "-p 'Once upon a time' --temp 0 -n 8", &out, true) == 0);
    CHECK(out && !strstr(out, "prompt batch") && !strstr(out, "token 1:"), " no --stats, no lines: %s", out);
    free(out);
    CHECK(run_model(p, "-p 'Once upon a time there was a girl' --temp 0 -n 30 -b 1", &one, false) == 0 &&
          run_model(p, "-p 'Once upon a time there was a girl' --temp 0 -n 30 -b 64", &all, false) == 0);
    CHECK(one && all && !strcmp(one, all) && strlen(one) > 40, " -b 1: '%s', -b 64: '%s'", one, all);
    free(one);
    free(all);
}

static char *text_of(const char *p, const char *flags)
{
    char args[2048], *out = NULL;
    snprintf(args, sizeof args, "-p 'Once upon a time' -n 40 --no-display-prompt %s", flags);
    if (run_model(p, args, &out, false) != 0) {
        test_fail(__FILE__, __LINE__, "run", " %s: %s", flags, out ? out : "");
        free(out);
        return NULL;
    }
    return out;
}

static bool same(const char *a, const char *b) { return a && b && !strcmp(a, b); }

/* Each sampling flag changes the text, or turns sampling into greedy
 * decoding where it must. */
TEST(test_run_flags_sampling)
{
    const char *p = stories();
    if (!p) return;
    enum { GREEDY, HOT, HOT_S, TOP_K1, TOP_P, MIN_P1, PENALTY, N };
    static const char *const flags[N] = {
        "--temp 0", "--temp 1.5 --seed 7", "--temp 1.5 -s 7", "--temp 1.5 -s 7 --top-k 1",
        "--temp 1.5 -s 7 --top-k 0 --top-p 0.01", "--temp 1.5 -s 7 --top-k 0 --min-p 1",
        "--temp 0 --repeat-penalty 3"};
    char *t[N];
    for (int i = 0; i < N; i++) t[i] = text_of(p, flags[i]);
    CHECK(t[GREEDY] && t[HOT] && !same(t[GREEDY], t[HOT]), " temperature 1.5 differs from greedy: '%s'", t[HOT]);
    CHECK(same(t[HOT], t[HOT_S]), " -s is --seed: '%s' vs '%s'", t[HOT], t[HOT_S]);
    CHECK(same(t[GREEDY], t[TOP_K1]), " --top-k 1 is greedy: '%s'", t[TOP_K1]);
    CHECK(same(t[GREEDY], t[TOP_P]), " --top-p 0.01 is greedy: '%s'", t[TOP_P]);
    CHECK(same(t[GREEDY], t[MIN_P1]), " --min-p 1 is greedy: '%s'", t[MIN_P1]);
    CHECK(t[PENALTY] && !same(t[GREEDY], t[PENALTY]), " --repeat-penalty 3 changes the text: '%s'", t[PENALTY]);
    for (int i = 0; i < N; i++) free(t[i]);
}

/* --mmap (resident weights as views of the page cache) and --no-mmap
 * (copies) give the same greedy text, all resident and with some layers
 * resident and some streamed (6500K: blocks 1 and 3 resident). */
TEST(test_run_flags_mmap)
{
    const char *p = stories();
    if (!p) return;
    enum { COPIES, VIEWS, VIEWS_SOME, COPIES_SOME, N };
    static const char *const flags[N] = {"--temp 0 --no-mmap", "--temp 0 --mmap", "--temp 0 --mmap -c 64 --mem 6500K",
                                         "--temp 0 --no-mmap -c 64 --mem 6500K"};
    char *t[N];
    for (int i = 0; i < N; i++) t[i] = text_of(p, flags[i]);
    CHECK(t[COPIES] && strlen(t[COPIES]) > 40, " greedy text: '%s'", t[COPIES]);
    for (int i = 1; i < N; i++) CHECK(same(t[COPIES], t[i]), " %s: '%s' vs '%s'", flags[i], t[i], t[COPIES]);
    for (int i = 0; i < N; i++) free(t[i]);
}

/* Like llama-cli: a full context ends generation with a message, exit 0. */
TEST(test_run_flags_context_full)
{
    const char *p = stories();
    if (!p) return;
    char *out = NULL;
    CHECK(run_model(p, "-p 'Once upon a time' --temp 0 -n 500 -c 32 --ignore-eos", &out, true) == 0 &&
              strstr(out, "strata run: the context of 32 tokens is full; stopping") && generated(out) == 28,
          " 27 tokens fill positions 6-32, the 28th is shown: %s", out);
    free(out);
}

TEST(test_run_flags_echo_and_newline)
{
    const char *p = stories();
    if (!p) return;
    char *out = NULL;
    CHECK(run_model(p, "-p 'Once upon a time' --temp 0 -n 10", &out, false) == 0);
    size_t n = out ? strlen(out) : 0;
    CHECK(n && !strncmp(out, "Once upon a time, there was", 27) && out[n - 1] == '\n', " '%s'", out);
    free(out);
    CHECK(run_model(p, "-p 'Once upon a time' --temp 0 -n 10 --no-display-prompt", &out, false) == 0);
    CHECK(out && !strncmp(out, ", there was", 11), " '%s'", out);
    free(out);
    CHECK(run_model(p, "-p 'Once upon a time' -n 0", &out, false) == 0 && same(out, "Once upon a time\n"), " '%s'", out);
    free(out);
    /* The continuation keeps its leading space: "a" + " time". */
    CHECK(run_model(p, "-p 'Once upon a' --temp 0 -n 1", &out, false) == 0 && same(out, "Once upon a time\n"),
          " '%s'", out);
    free(out);
    CHECK(run_model(p, "-p 'Once upon a' --temp 0 -n 1 --no-display-prompt", &out, false) == 0 &&
              same(out, " time\n"), " '%s'", out);
    free(out);
}

TEST(test_run_flags_chat)
{
    const char *p = stories();
    if (!p) return;
    char *out = NULL;
    CHECK(run_model(p, "-p Hello --chat", &out, true) == 1 && strstr(out, "no chat template") &&
              strstr(out, "(--chat-template NAME)"), " %s", out);
    free(out);
    CHECK(run_model(p, "-p Hello --chat-template bogus", &out, true) == 1 &&
              strstr(out, "--chat-template: unknown chat template 'bogus'"), " %s", out);
    free(out);
    CHECK(run_model(p, "-p Hello -sys 'Be brief.' --temp 0 -n 10", &out, true) == 1, " -sys implies --chat");
    free(out);
    const char *args = "-p Hello --system-prompt 'Be brief.' --chat-template llama2 --temp 0 -n 10";
    CHECK(run_model(p, args, &out, false) == 0 && out && !strncmp(out, "Hello\n", 6), " the prompt, then the answer "
          "on its own line: '%s'", out);
    free(out);
    CHECK(run_model(p, args, &out, true) == 0);
    /* BOS + "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHello [/INST]": many more tokens than "Hello". */
    const char *s = out ? strstr(out, "| prompt ") : NULL;
    CHECK(s && strtol(s + 9, NULL, 10) > 20, " %s", out);
    free(out);
}

/* Runs `strata CMD BASE FLAG 1`; fails the test if FLAG is unknown. */
static void check_known(const char *cmd, const char *base, const char *flag)
{
    char c[4096], *out = NULL;
    snprintf(c, sizeof c, "%s %s %s %s 1", test_strata_bin(), cmd, base, flag);
    test_run(c, &out, true);
    CHECK(out && !strstr(out, "unknown option"), " %s %s: %s", cmd, flag, out);
    free(out);
}

/* Every option --help lists (lines starting "  -x, --xx") is accepted. */
static void check_help_true(const char *cmd, const char *base)
{
    char c[4096], *help = NULL;
    snprintf(c, sizeof c, "%s %s --help", test_strata_bin(), cmd);
    REQUIRE(test_run(c, &help, false) == 0 && help);
    int n = 0;
    for (const char *line = help; line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        char a[64], b[64];
        int k = sscanf(line, " %63[-a-z0-9], %63[-a-z0-9]", a, b);
        if (k < 1 || a[0] != '-' || line[0] != ' ') continue;
        check_known(cmd, base, a);
        if (k == 2) check_known(cmd, base, b);
        n += k;
    }
    CHECK(n > 20, " %d options in %s --help", n, cmd);
    free(help);
}

TEST(test_run_flags_help_is_true)
{
    char c[1024], *out = NULL;
    snprintf(c, sizeof c, "%s run --help", test_strata_bin());
    CHECK(test_run(c, &out, false) == 0 && strstr(out, "--ignore-eos") && strstr(out, "--no-display-prompt") &&
          strstr(out, "-sys, --system-prompt") && strstr(out, "--chat-template NAME") && strstr(out, "-s, --seed") &&
          strstr(out, "--chat ") && !strstr(out, "%%"));
    for (const char *const *t = strata_chat_template_names(); out && *t; t++)
        CHECK(strstr(out, *t), " --help names the chat template %s", *t);
    free(out);
    snprintf(c, sizeof c, "%s --help", test_strata_bin());
    CHECK(test_run(c, &out, false) == 0 && strstr(out, "  chat "), " %s", out);
    free(out);
    check_help_true("run", "-m /nonexistent.gguf -p x");
    check_help_true("chat", "-m /nonexistent.gguf");
}

/* `run ARGS --logits-out FILE` on the model: the prompt's logits, NULL on failure. */
static uint8_t *kv_logits_out(const char *model, const char *args, size_t *n)
{
    static int seq;
    char path[1024], full[2048], *out = NULL;
    snprintf(path, sizeof path, "%s/kv%d.f32", test_tmpdir(), seq++);
    snprintf(full, sizeof full, "-p 'Once upon a time there was' %s --logits-out %s", args, path);
    int rc = run_model(model, full, &out, true);
    CHECK(rc == 0, " %s: %s", args, out);
    free(out);
    return rc == 0 ? read_whole_file(path, n) : NULL;
}

/* -ctk / --cache-type-k, -ctv / --cache-type-v and --kv-type (llama.cpp's
 * names and types): each changes the logits, K and V independently, the
 * last flag wins, --kv-f32 is --kv-type f32; a bad value is a one-line
 * error naming the flag; a quantized cache on heads of 8 values (stories260K)
 * says why it cannot run. */
TEST(test_run_flags_kv_types)
{
    const char *p = stories();
    if (!p) return;
    char *out = NULL;
    static const char *const bad[] = {"-ctk q9", "--cache-type-k bf16", "-ctv Q8_0", "--cache-type-v q4_1",
                                      "--kv-type ''"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char args[256], flag[64], want[160];
        snprintf(args, sizeof args, "-p Hi %s", bad[i]);
        sscanf(bad[i], "%63s", flag);
        snprintf(want, sizeof want, "strata run: %s '", flag);
        CHECK(run_model(p, args, &out, true) == 2 && out && strstr(out, want) &&
                  strstr(out, "': expected f16, f32, q8_0 or q4_0\n") && !strchr(strstr(out, want), '\n')[1],
              " %s: %s", bad[i], out);
        free(out);
    }
    CHECK(run_model(p, "-p Hi -n 2 --kv-type q8_0", &out, true) == 1 && out && strstr(out, "q8_0 K cache") &&
              strstr(out, "multiple of 32") && strstr(out, "is 8"),
          " %s", out);
    free(out);
    CHECK(run_model(p, "-p Hi -n 2 -ctv q4_0", &out, true) == 1 && out && strstr(out, "q4_0 V cache"), " %s", out);
    free(out);
    CHECK(run_model(p, "-p Hi -n 2 --kv-type f32 -ctv f16 --temp 0", &out, true) == 0, " %s", out);
    free(out);

    const char *synth = test_fixture("synth-q8_0.gguf"); /* head dim 64 */
    if (!synth) return;
    static const char *const sets[] = {"",                       "--kv-type q8_0",          "-ctk q8_0 -ctv q8_0",
                                       "--cache-type-k q8_0",    "-ctv q8_0",               "--kv-type q4_0",
                                       "--kv-type q4_0 -ctv f16", "-ctk q4_0",               "--kv-f32",
                                       "--kv-type f32",          "--kv-type q8_0 --kv-type f16"};
    enum { N = sizeof sets / sizeof sets[0] };
    uint8_t *l[N];
    size_t n[N];
    for (int i = 0; i < N; i++) l[i] = kv_logits_out(synth, sets[i], &n[i]);
    for (int i = 0; i < N; i++)
        if (!l[i]) return;
    for (int i = 1; i < N; i++) REQUIRE(n[i] == n[0] && n[0] > 0);
    const int same[][2] = {{1, 2}, {6, 7}, {8, 9}, {10, 0}};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++)
        CHECK(!memcmp(l[same[i][0]], l[same[i][1]], n[0]), " '%s' and '%s' differ", sets[same[i][0]],
              sets[same[i][1]]);
    const int differ[][2] = {{1, 0}, {3, 0}, {4, 0}, {3, 4}, {3, 1}, {5, 0}, {5, 1}, {7, 0}, {8, 0}};
    for (size_t i = 0; i < sizeof differ / sizeof differ[0]; i++)
        CHECK(memcmp(l[differ[i][0]], l[differ[i][1]], n[0]), " '%s' and '%s' are the same", sets[differ[i][0]],
              sets[differ[i][1]]);
    for (int i = 0; i < N; i++) free(l[i]);
    /* generation runs on a quantized cache (the decode steps read it) */
    CHECK(run_model(synth, "-p 'Once upon a time' -n 12 --temp 0 -ctk q4_0 -ctv q8_0", &out, true) == 0 && out &&
              generated(out) == 12,
          " %s", out);
    free(out);
}
