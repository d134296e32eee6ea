/* The byte-level BPE pre-tokenizers: every rule's split on hand-derived
 * cases, linear work on long runs, and the tokenizer.ggml.pre names. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf/gguf.h"
#include "test.h"
#include "tokenizer/pretok.h"
#include "tokenizer/tokenizer.h"
#include "vocab_helpers.h"

#define MIB ((size_t)1 << 20)

/* text must split into exactly the words of want (NULL-terminated). */
static void check_words(tok_pre pre, const char *text, const char *const *want)
{
    size_t *ends = NULL, m = 0, start = 0, n = 0;
    while (want[n]) n++;
    REQUIRE(tok_pretokenize(pre, text, strlen(text), &ends, &m));
    bool ok = m == n;
    for (size_t i = 0; ok && i < m; start = ends[i++])
        ok = ends[i] - start == strlen(want[i]) && !memcmp(text + start, want[i], ends[i] - start);
    CHECK(ok, " pre %d: \"%s\" split into %zu words, expected %zu", (int)pre, text, m, n);
    for (size_t i = 0, s = 0; !ok && i < m; s = ends[i++])
        printf("      word %zu: \"%.*s\"\n", i, (int)(ends[i] - s), text + s);
    free(ends);
}

#define WORDS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* "Hello world 12345 it's" under every rule (derived by hand from each
 * rule's regexes). */
TEST(test_tok_pre_hello_world)
{
    const char *s = "Hello world 12345 it's";
    check_words(TOK_PRE_GPT2, s, WORDS("Hello", " world", " 12345", " it", "'s"));
    check_words(TOK_PRE_LLAMA3, s, WORDS("Hello", " world", " ", "123", "45", " it", "'s"));
    check_words(TOK_PRE_QWEN2, s, WORDS("Hello", " world", " ", "1", "2", "3", "4", "5", " it", "'s"));
    /* the punctuation step cuts "'" out before GPT-2 sees "'s" */
    check_words(TOK_PRE_DEFAULT, s, WORDS("Hello", " world", " ", "123", "45", " it", "'", "s"));
    check_words(TOK_PRE_FALCON, s, WORDS("Hello", " world", " ", "123", "45", " it", "'", "s"));
    check_words(TOK_PRE_STARCODER, s, WORDS("Hello", " world", " ", "1", "2", "3", "4", "5", " it", "'s"));
    check_words(TOK_PRE_DEEPSEEK_LLM, s, WORDS("Hello", " world", " ", "12345", " it", "'", "s"));
    check_words(TOK_PRE_DEEPSEEK_CODER, s,
                WORDS("Hello", " world", " ", "1", "2", "3", "4", "5", " it", "'", "s"));
    /* no contraction alternative: "'" is the optional prefix of "s" */
    check_words(TOK_PRE_TEKKEN, s, WORDS("Hello", " world", " ", "1", "2", "3", "4", "5", " it", "'s"));
    check_words(TOK_PRE_NONE, s, WORDS("Hello world 12345 it's"));
}

TEST(test_tok_pre_gpt2_family)
{
    /* a stray byte is "other"; one whitespace before text is a word */
    check_words(TOK_PRE_GPT2, "a\xFF\xFE b\tc", WORDS("a", "\xFF\xFE", " b", "\t", "c"));
    /* default: '=' is grouped with punctuation, '`' is not; " ..." loses its space */
    check_words(TOK_PRE_DEFAULT, "x=`y`", WORDS("x", "=", "`", "y", "`"));
    check_words(TOK_PRE_DEFAULT, "a ...", WORDS("a", " ", "..."));
    check_words(TOK_PRE_DEFAULT, "a`b 1234567", WORDS("a", "`", "b", " ", "123", "456", "7"));
    /* falcon groups '`' with punctuation too */
    check_words(TOK_PRE_FALCON, "x=`y`", WORDS("x", "=`", "y", "`"));
    check_words(TOK_PRE_FALCON, "a`b 1234567", WORDS("a", "`", "b", " ", "123", "456", "7"));
    check_words(TOK_PRE_STARCODER, "a1b22 c", WORDS("a", "1", "b", "2", "2", " c"));
}

TEST(test_tok_pre_llama3_family)
{
    check_words(TOK_PRE_LLAMA3, "x 1234567\n\n  y", WORDS("x", " ", "123", "456", "7", "\n\n", " ", " y"));
    check_words(TOK_PRE_QWEN2, "I'VE 42!\r\n", WORDS("I", "'VE", " ", "4", "2", "!\r\n"));
    /* Tekken: case changes split words (ASCII case; other letters are both) */
    check_words(TOK_PRE_TEKKEN, "HELLOworld helloWorld", WORDS("HELLOworld", " hello", "World"));
    check_words(TOK_PRE_TEKKEN, " \xC3\x89" "AB", WORDS(" \xC3\x89", "AB"));
    /* Tekken: '/' joins the newlines after punctuation */
    check_words(TOK_PRE_TEKKEN, "a?\n/b", WORDS("a", "?\n/", "b"));
    check_words(TOK_PRE_LLAMA3, "a?\n/b", WORDS("a", "?\n", "/b"));
}

TEST(test_tok_pre_deepseek)
{
    const char *s = "Hi \xE4\xBD\xA0\xE5\xA5\xBD\n3.14  "; /* Hi 你好\n3.14 + two spaces */
    check_words(TOK_PRE_DEEPSEEK_LLM, s,
                WORDS("Hi", " ", "\xE4\xBD\xA0\xE5\xA5\xBD", "\n", "3", ".", "14", "  "));
    check_words(TOK_PRE_DEEPSEEK_CODER, s,
                WORDS("Hi", " ", "\xE4\xBD\xA0\xE5\xA5\xBD", "\n", "3", ".", "1", "4", "  "));
    check_words(TOK_PRE_DEEPSEEK_LLM, "a\n\nb   ", WORDS("a", "\n", "\n", "b", "   "));
    /* [!-/:-~] holds the ASCII letters, so they split from other letters */
    check_words(TOK_PRE_DEEPSEEK_LLM, " \xC3\x89" "AB", WORDS(" \xC3\x89", "AB"));
}

/* ---- linear work: long runs must not be rescanned ---- */

static char *repeat(const char *unit, size_t total)
{
    size_t u = strlen(unit);
    char *s = malloc(total + 1);
    for (size_t i = 0; s && i < total; i++) s[i] = unit[i % u];
    if (s) s[total] = '\0';
    return s;
}

TEST(test_tok_pre_linear_on_long_runs)
{
    static const char *const units[] = {"1", " ", "a", "!", "\n", " \n", "\xC3\x89\x41" /* U+00C9, A */, "A"};
    static const tok_pre rules[] = {TOK_PRE_GPT2, TOK_PRE_LLAMA3, TOK_PRE_QWEN2, TOK_PRE_DEFAULT,
                                    TOK_PRE_FALCON, TOK_PRE_STARCODER, TOK_PRE_DEEPSEEK_LLM,
                                    TOK_PRE_DEEPSEEK_CODER, TOK_PRE_TEKKEN};
    size_t worst = 0;
    for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
        char *s = repeat(units[u], MIB - 1);
        REQUIRE(s);
        s[MIB - 2] = 'x'; /* text after the run: lookaheads must not rescan it */
        for (size_t r = 0; r < sizeof rules / sizeof rules[0]; r++) {
            size_t *ends = NULL, n = 0, steps = 0;
            CHECK(tok_pretokenize_counted(rules[r], s, MIB - 1, &ends, &n, &steps));
            CHECK(steps <= 16 * MIB, " rule %d on 1 MiB of \"%s\": %zu characters read",
                  (int)rules[r], units[u], steps);
            worst = steps > worst ? steps : worst;
            free(ends);
        }
        free(s);
    }
    printf("    at most %.1f characters read per byte of 1 MiB runs\n", (double)worst / (double)MIB);
}

/* The quadratic case of old: \p{N}{1,3} read the whole digit run each time. */
TEST(test_tok_pre_digit_groups)
{
    char *s = repeat("7", MIB);
    REQUIRE(s);
    size_t *ends = NULL, n = 0, steps = 0;
    REQUIRE(tok_pretokenize_counted(TOK_PRE_LLAMA3, s, MIB, &ends, &n, &steps));
    CHECK(n == (MIB + 2) / 3 && ends[0] == 3 && ends[n - 1] == MIB, " %zu words", n);
    CHECK(steps <= 3 * MIB, " %zu characters read", steps);
    free(ends);
    REQUIRE(tok_pretokenize_counted(TOK_PRE_QWEN2, s, MIB, &ends, &n, &steps));
    CHECK(n == MIB && steps <= 3 * MIB, " %zu words, %zu characters read", n, steps);
    free(ends);
    free(s);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}


/* 1 MiB of one character through the whole encoder: it finishes (the bound
 * is far above the time taken, only a hang fails) and decodes back. */
static void encode_mib(const tokenizer *t, const char *name, const char *unit)
{
    char *s = repeat(unit, MIB);
    REQUIRE(s);
    tok_ids ids = {0};
    tok_encode_opts o = {0};
    strata_error e = {0};
    double t0 = now();
    CHECK(!tokenizer_encode(t, s, MIB, &o, &ids, &e), " %s: %s", name, e.message);
    double secs = now() - t0;
    size_t len = 0;
    char *d = tokenizer_decode(t, ids.ids, ids.n, 0, &len);
    CHECK(d && len == MIB && !memcmp(d, s, MIB), " %s: 1 MiB of '%s' does not round-trip", name, unit);
    CHECK(secs < 60, " %s: 1 MiB of '%s' took %.1f s", name, unit, secs);
    printf("    %s: 1 MiB of '%s' -> %zu tokens in %.0f ms\n", name, unit, ids.n, secs * 1e3);
    free(d);
    free(s);
    tok_ids_free(&ids);
}

TEST(test_tok_pre_encode_1mib_runs)
{
    static const char *const sets[] = {"vocab/ggml-vocab-gpt2-llama-bpe.gguf", "vocab/ggml-vocab-gpt2-qwen2.gguf"};
    for (size_t k = 0; k < 2; k++) {
        const char *p = test_fixture(sets[k]);
        if (!p) return;
        tokenizer *t = vocab_load_tokenizer(p);
        REQUIRE(t);
        encode_mib(t, sets[k] + 6, "1");
        encode_mib(t, sets[k] + 6, " ");
        encode_mib(t, sets[k] + 6, "a");
        encode_mib(t, sets[k] + 6, "!");
        tokenizer_free(t);
    }
}

/* ---- tokenizer.ggml.pre names ---- */

/* Loads the tiny BPE vocabulary declaring pre-tokenizer `pre`. */
static strata_status load_bpe(const char *pre, tokenizer **t, strata_error *e)
{
    static int seq;
    char path[1024];
    gguf_file *f = NULL;
    snprintf(path, sizeof path, "%s/pre%d.gguf", test_tmpdir(), seq++);
    *t = NULL;
    strata_status st = write_bpe_vocab(path, pre, e);
    if (!st) st = gguf_open(path, &f, e);
    if (!st) st = tokenizer_from_gguf(f, t, e);
    gguf_close(f);
    return st;
}

TEST(test_tok_pre_names)
{
    static const struct {
        const char *name;
        tok_pre pre;
        bool add_bos;
    } cases[] = {
        {NULL, TOK_PRE_DEFAULT, false},          {"default", TOK_PRE_DEFAULT, false},
        {"gpt-2", TOK_PRE_GPT2, false},          {"mpt", TOK_PRE_GPT2, false},
        {"olmo", TOK_PRE_GPT2, false},           {"gpt-neox", TOK_PRE_GPT2, false},
        {"llama-bpe", TOK_PRE_LLAMA3, true},     {"llama3", TOK_PRE_LLAMA3, true},
        {"dbrx", TOK_PRE_LLAMA3, false},         {"qwen2", TOK_PRE_QWEN2, false},
        {"deepseek-llm", TOK_PRE_DEEPSEEK_LLM, false}, {"deepseek-coder", TOK_PRE_DEEPSEEK_CODER, false},
        {"falcon", TOK_PRE_FALCON, false},       {"starcoder", TOK_PRE_STARCODER, false},
        {"refact", TOK_PRE_STARCODER, false},    {"command-r", TOK_PRE_STARCODER, false},
        {"smollm", TOK_PRE_STARCODER, false},    {"tekken", TOK_PRE_TEKKEN, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tokenizer *t;
        strata_error e = {0};
        strata_status st = load_bpe(cases[i].name, &t, &e);
        CHECK(!st && tokenizer_pre(t) == cases[i].pre && tokenizer_add_bos(t) == cases[i].add_bos,
              " pre \"%s\": status %d (%s), rule %d", cases[i].name ? cases[i].name : "(none)", (int)st,
              e.message, t ? (int)tokenizer_pre(t) : -1);
        tokenizer_free(t);
    }
}

TEST(test_tok_pre_unknown_name)
{
    tokenizer *t;
    strata_error e = {0};
    CHECK(load_bpe("klingon-v2", &t, &e) == STRATA_E_UNSUPPORTED && !t);
    CHECK(strstr(e.message, "tokenizer.ggml.pre = \"klingon-v2\" is not supported") &&
              strstr(e.message, "deepseek-llm") && strstr(e.message, "tekken") && !strchr(e.message, '\n'),
          " \"%s\"", e.message);
    /* a control character in the name stays out of the one-line message */
    CHECK(load_bpe("bad\nname", &t, &e) == STRATA_E_UNSUPPORTED && !t);
    CHECK(strstr(e.message, "\"bad?name\"") && !strchr(e.message, '\n'), " \"%s\"", e.message);
}
