/* `strata tokenize` end to end through the sanitized binary (llama.cpp's
 * vocabulary test sets, pieces, BOS and special tokens, errors), and the
 * vocabulary-only API it is built on. */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf_helpers.h"
#include "strata.h"
#include "test.h"
#include "vocab_helpers.h"

#define SEP "\n__ggml_vocab_test__\n"
#define SPM "vocab/ggml-vocab-llama-spm.gguf"
#define GPT2 "vocab/ggml-vocab-gpt-2.gguf"

/* Runs `strata tokenize ARGS`; stdout only, or stdout and stderr merged. */
static int tokenize(const char *args, char **out, bool merge)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s tokenize %s", test_strata_bin(), args);
    return test_run(cmd, out, merge);
}

/* Writes n bytes to DIR/name; returns the path (static buffer). */
static const char *write_text(const char *name, const char *s, size_t n)
{
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", test_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    bool ok = f && fwrite(s, 1, n, f) == n;
    if (f && fclose(f) != 0) ok = false;
    CHECK(ok, " cannot write %s", path);
    return path;
}

/* ---- llama.cpp's test sets through `--ids --no-bos` ---- */

/* "[1, 2, 3]\n" or an .out line " 1 2 3": the numbers, space-separated. */
static void normalize_ids(const char *s, size_t n, char *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 2 < cap; i++) {
        bool digit = (s[i] >= '0' && s[i] <= '9') || s[i] == '-';
        if (digit) out[k++] = s[i];
        else if (k > 0 && out[k - 1] != ' ') out[k++] = ' ';
    }
    while (k > 0 && out[k - 1] == ' ') k--;
    out[k] = '\0';
}

/* One string of a test set: the CLI's ids must be the expected line. */
static bool check_string(const char *model, const char *s, size_t n, const char *want, size_t wn)
{
    char args[4096], got_ids[8192], want_ids[8192], *out = NULL;
    const char *path = write_text("string.txt", s, n);
    snprintf(args, sizeof args, "-m '%s' -f '%s' --ids --no-bos", model, path);
    int rc = tokenize(args, &out, false);
    bool shape = out && out[0] == '[' && strlen(out) >= 3 && !strcmp(out + strlen(out) - 2, "]\n");
    normalize_ids(out ? out : "", out ? strlen(out) : 0, got_ids, sizeof got_ids);
    normalize_ids(want, wn, want_ids, sizeof want_ids);
    bool ok = rc == 0 && shape && !strcmp(got_ids, want_ids);
    if (!ok) printf("      \"%.*s\": rc %d\n      want [%s]\n      got  %s", (int)n, s, rc, want_ids, out);
    free(out);
    return ok;
}

/* Every string of MODEL.inp against its line of MODEL.out. */
static void check_test_set(const char *model)
{
    char in_path[1100], out_path[1100];
    snprintf(in_path, sizeof in_path, "%s.inp", model);
    snprintf(out_path, sizeof out_path, "%s.out", model);
    size_t in_len = 0, out_len = 0, n = 0, match = 0, ip = 0, op = 0, lines = 0;
    char *in = (char *)read_whole_file(in_path, &in_len);
    char *out = (char *)read_whole_file(out_path, &out_len);
    REQUIRE(in && out, " %s: no .inp / .out", model);
    for (size_t i = 0; i < out_len; i++) lines += out[i] == '\n';
    for (const char *sep; (sep = memmem(in + ip, in_len - ip, SEP, strlen(SEP))); n++) {
        const char *nl = memchr(out + op, '\n', out_len - op);
        size_t llen = nl ? (size_t)(nl - (out + op)) : out_len - op;
        match += check_string(model, in + ip, (size_t)(sep - (in + ip)), out + op, llen);
        op += llen + (nl != NULL);
        ip = (size_t)(sep - in) + strlen(SEP);
    }
    printf("    %s: %zu/%zu strings match through the CLI\n", strrchr(model, '/') + 1, match, n);
    CHECK(n > 0 && n == lines && ip == in_len, " %s: %zu strings, %zu expected lines", model, n, lines);
    CHECK(match == n, " %s: %zu of %zu strings differ", model, n - match, n);
    free(in);
    free(out);
}

TEST(test_tokenize_cli_vocab_test_sets)
{
    const char *dir = test_fixture("vocab");
    if (!dir) return;
    char pat[1100];
    snprintf(pat, sizeof pat, "%s/*.gguf", dir);
    glob_t g;
    REQUIRE(glob(pat, 0, NULL, &g) == 0, " no vocabularies in %s", dir);
    for (size_t i = 0; i < g.gl_pathc; i++) check_test_set(g.gl_pathv[i]);
    CHECK(g.gl_pathc >= 5, " only %zu vocabularies in %s", g.gl_pathc, dir);
    globfree(&g);
}

/* ---- output, BOS and special tokens ---- */

TEST(test_tokenize_cli_pieces)
{
    const char *p = test_fixture(GPT2);
    if (!p) return;
    char args[2048], *out = NULL;
    snprintf(args, sizeof args, "-m '%s' -p 'Hello world'", p);
    CHECK(tokenize(args, &out, true) == 0 && !strcmp(out, " 15496 -> 'Hello'\n   995 -> ' world'\n"),
          " %s", out);
    free(out);
    /* control characters, backslash and invalid UTF-8 escaped; UTF-8 as is */
    const char *f = write_text("pieces.txt", "a\\b\n\x01\xFF \xC3\xA9", 9);
    snprintf(args, sizeof args, "-m '%s' -f '%s'", p, f);
    CHECK(tokenize(args, &out, true) == 0 && strstr(out, "'\\\\'\n") && strstr(out, "'\\n'\n") &&
              strstr(out, "'\\x01'\n") && strstr(out, "'\\xFF'\n") && strstr(out, "' \xC3\xA9'\n"),
          " %s", out);
    free(out);
    snprintf(args, sizeof args, "-m '%s' -p '' --ids", p);
    CHECK(tokenize(args, &out, true) == 0 && !strcmp(out, "[]\n"), " %s", out);
    free(out);
}

/* Ids of `args` as printed by --ids. */
static char *ids_of(const char *model, const char *args)
{
    char a[2048], *out = NULL;
    snprintf(a, sizeof a, "-m '%s' --ids %s", model, args);
    CHECK(tokenize(a, &out, true) == 0, " %s: %s", a, out);
    return out;
}

TEST(test_tokenize_cli_bos_and_special)
{
    const char *p = test_fixture(SPM);
    if (!p) return;
    char *plain = ids_of(p, "-p '<s>Hi'"), *nobos = ids_of(p, "-p '<s>Hi' --no-bos");
    char *spec = ids_of(p, "-p '<s>Hi' --special --no-bos");
    /* the model adds BOS (1); <s> in the text is plain text unless --special */
    CHECK(plain && !strncmp(plain, "[1, ", 4) && !strstr(plain + 1, "[1,") && !strstr(plain + 3, " 1,"),
          " %s", plain);
    CHECK(nobos && nobos[1] != '1' && !strcmp(plain + 4, nobos + 1), " %s vs %s", plain, nobos);
    CHECK(spec && !strcmp(spec, "[1, 6324]\n"), " %s", spec); /* <s>, " Hi" */
    free(plain);
    free(nobos);
    free(spec);
    const char *q = test_fixture(GPT2);
    if (!q) return;
    plain = ids_of(q, "-p 'Hi<|endoftext|>'"); /* GPT-2 adds no BOS */
    spec = ids_of(q, "-p 'Hi<|endoftext|>' --special");
    CHECK(plain && !strstr(plain, "50256") && spec && !strcmp(spec, "[17250, 50256]\n"), " %s / %s", plain,
          spec);
    free(plain);
    free(spec);
}

TEST(test_tokenize_cli_file_like_prompt)
{
    const char *p = test_fixture(GPT2);
    if (!p) return;
    char args[2048];
    const char *f = write_text("prompt.txt", "Hello, world! 12345", 19);
    snprintf(args, sizeof args, "-f '%s'", f);
    char *a = ids_of(p, "-p 'Hello, world! 12345'"), *b = ids_of(p, args);
    CHECK(a && b && !strcmp(a, b) && strlen(a) > 10, " %s vs %s", a, b);
    free(a);
    free(b);
}

/* ---- errors: a one-line message and a non-zero status ---- */

static void check_error(const char *args, int want_rc, const char *needle)
{
    char *out = NULL;
    int rc = tokenize(args, &out, true);
    bool one_line = out && strchr(out, '\n') == out + strlen(out) - 1;
    CHECK(rc == want_rc && out && strstr(out, needle) && one_line, " `%s`: rc %d, \"%s\"", args, rc, out);
    free(out);
}

TEST(test_tokenize_cli_errors)
{
    const char *p = test_fixture(GPT2);
    if (!p) return;
    char args[4096], dir[1100];
    snprintf(dir, sizeof dir, "%s", test_tmpdir());
    check_error("", 2, "need -m FILE");
    check_error("-p x", 2, "need -m FILE");
    check_error("-m", 2, "-m: missing value");
    check_error("-m x.gguf -p x --bogus", 2, "unknown option '--bogus'");
    check_error("-m x.gguf -p x stray", 2, "unexpected argument 'stray'");
    check_error("-m /nonexistent.gguf -p x", 1, "/nonexistent.gguf: cannot open");
    snprintf(args, sizeof args, "-m '%s' -p x -f '%s'", p, dir);
    check_error(args, 2, "exactly one of -p TEXT or -f FILE");
    snprintf(args, sizeof args, "-m '%s' -f '%s'", p, dir);
    check_error(args, 1, "is a directory");
    snprintf(args, sizeof args, "-m '%s' -f /nonexistent.txt", p);
    check_error(args, 1, "-f /nonexistent.txt: No such file or directory");
    char fifo[1200], big[1200];
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    REQUIRE(mkfifo(fifo, 0600) == 0);
    snprintf(args, sizeof args, "-m '%s' -f '%s'", p, fifo);
    check_error(args, 1, "not a regular file");
    snprintf(big, sizeof big, "%s/big.txt", dir);
    REQUIRE(truncate(write_text("big.txt", "x", 1), ((off_t)64 << 20) + 1) == 0);
    snprintf(args, sizeof args, "-m '%s' -f '%s'", p, big);
    check_error(args, 1, "larger than 64 MiB");
    if (access("/dev/full", W_OK) != 0) return;
    char *out = NULL; /* stdout on a full disk; stderr into the pipe */
    snprintf(args, sizeof args, "-m '%s' -p 'Hello world' 2>&1 >/dev/full", p);
    CHECK(tokenize(args, &out, false) == 1 && strstr(out, "writing the output: No space left"), " %s", out);
    free(out);
}

TEST(test_tokenize_cli_unknown_pre_and_help)
{
    char path[1100], args[2048], *out = NULL;
    strata_error e = {0};
    snprintf(path, sizeof path, "%s/klingon.gguf", test_tmpdir());
    REQUIRE(write_bpe_vocab(path, "klingon", &e) == STRATA_OK, " %s", e.message);
    snprintf(args, sizeof args, "-m '%s' -p ab", path);
    check_error(args, 1, "klingon.gguf: tokenizer.ggml.pre = \"klingon\" is not supported");
    /* a model with that tokenizer: run names the model file too */
    char model[1200], cmd[4096];
    snprintf(model, sizeof model, "%s/klingon-model.gguf", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s -o '%s' --vocab-from '%s' --n-layers 1 --n-embd 64 --n-ff 128 --n-heads 2 "
             "--n-kv-heads 2 2>&1 && %s run -m '%s' -p ab -n 1 2>&1", test_synth_bin(), model, path, test_strata_bin(),
             model);
    CHECK(test_run(cmd, &out, true) == 1 && out &&
              strstr(out, "strata run: ") && strstr(out, "klingon-model.gguf: tokenizer.ggml.pre = \"klingon\""),
          " %s", out);
    free(out);
    out = NULL;
    snprintf(path, sizeof path, "%s/tekken.gguf", test_tmpdir());
    REQUIRE(write_bpe_vocab(path, "tekken", &e) == STRATA_OK, " %s", e.message);
    snprintf(args, sizeof args, "-m '%s' -p ab --ids", path);
    CHECK(tokenize(args, &out, true) == 0 && !strcmp(out, "[4, 2]\n"), " BOS, ab: %s", out);
    free(out);
    CHECK(tokenize("--help", &out, true) == 0 && strstr(out, "usage: strata tokenize") && strstr(out, "--special"),
          " %s", out);
    free(out);
}

/* ---- the API ---- */

TEST(test_tokenize_vocab_api)
{
    const char *p = test_fixture(SPM);
    if (!p) return;
    strata_vocab *v = NULL;
    strata_error e = {0};
    REQUIRE(strata_vocab_open(p, &v, &e) == STRATA_OK, " %s", e.message);
    CHECK(strata_vocab_n_tokens(v) == 32000);
    int32_t *ids = NULL;
    size_t n = 0, len = 0;
    REQUIRE(strata_vocab_tokenize(v, "<s>Hi", 5, false, true, &ids, &n, &e) == STRATA_OK, " %s", e.message);
    const char *piece = n == 2 ? strata_vocab_piece(v, ids[1], &len) : NULL;
    CHECK(n == 2 && ids[0] == 1 && piece && len == 3 && !memcmp(piece, " Hi", 3), " %zu ids", n);
    piece = strata_vocab_piece(v, 1, &len);
    CHECK(piece && len == 3 && !memcmp(piece, "<s>", 3), " control tokens render as their text");
    CHECK(strata_vocab_piece(v, 32000, &len) == NULL && len == 0);
    free(ids);
    REQUIRE(strata_vocab_tokenize(v, "", 0, false, false, &ids, &n, &e) == STRATA_OK);
    CHECK(n == 0);
    free(ids);
    strata_vocab_free(v);
    CHECK(strata_vocab_open("/nonexistent.gguf", &v, &e) == STRATA_E_IO && !v &&
              strstr(e.message, "/nonexistent.gguf"),
          " %d: %s", (int)e.status, e.message);
}
