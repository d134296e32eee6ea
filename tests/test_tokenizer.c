/* Tokenizers: llama.cpp's vocabulary test sets, the prompt tokens of every
 * golden file, round trips, streaming decoding, errors and speed. */
#include <glob.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf/gguf.h"
#include "gguf_helpers.h"
#include "test.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/tokenizer.h"
#include "vocab_helpers.h"

#define SEP "\n__ggml_vocab_test__\n"
#define RC "\xEF\xBF\xBD" /* U+FFFD */


static bool encode_plain(const tokenizer *t, const char *s, size_t n, tok_ids *out)
{
    tok_encode_opts o = {0};
    strata_error e = {0};
    out->n = 0;
    strata_status st = tokenizer_encode(t, s, n, &o, out, &e);
    if (st) test_fail(__FILE__, __LINE__, "tokenizer_encode", " %s", e.message);
    return st == STRATA_OK;
}

/* Parses " 1 2 3" into ids. */
static void parse_ids(const char *line, size_t n, tok_ids *out)
{
    char *buf = strndup(line, n), *p = buf, *end;
    out->n = 0;
    for (;;) {
        long v = strtol(p, &end, 10);
        if (end == p) break;
        tok_ids_push(out, (int32_t)v, NULL);
        p = end;
    }
    free(buf);
}

static void print_ids(const char *what, const tok_ids *v)
{
    printf("      %s:", what);
    for (size_t i = 0; i < v->n; i++) printf(" %d", v->ids[i]);
    printf("\n");
}

static bool same_ids(const tok_ids *a, const int32_t *b, size_t n)
{
    return a->n == n && (n == 0 || memcmp(a->ids, b, n * sizeof *b) == 0);
}

/* Decoding what was encoded gives the text back (SPM: minus the space prefix). */
static bool round_trips(const tokenizer *t, const tok_ids *ids, const char *s, size_t n)
{
    size_t len;
    char *d = tokenizer_decode(t, ids->ids, ids->n, TOK_DECODE_STRIP_SPACE, &len);
    bool ok = d && len == n && memcmp(d, s, n) == 0;
    free(d);
    return ok;
}

typedef struct vocab_tally {
    size_t n, match, lossless;
    tok_ids got, want;
} vocab_tally;

/* One test string against its line of expected ids. */
static void check_vocab_string(const char *name, const tokenizer *t, const char *s, size_t slen,
                               const char *line, size_t llen, vocab_tally *vt)
{
    parse_ids(line, llen, &vt->want);
    if (encode_plain(t, s, slen, &vt->got) && same_ids(&vt->got, vt->want.ids, vt->want.n)) {
        vt->match++;
    } else if (vt->n - vt->match < 3) {
        printf("    %s: string %zu \"%.*s\" differs\n", name, vt->n, (int)slen, s);
        print_ids("want", &vt->want);
        print_ids("got ", &vt->got);
    }
    vt->lossless += round_trips(t, &vt->got, s, slen);
    vt->n++;
}

/* Pairs the strings of .inp (each followed by SEP) with the lines of .out;
 * returns the bytes of .inp left over. */
static size_t check_vocab_file(const char *name, const tokenizer *t, const char *in,
                               size_t in_len, const char *out, size_t out_len, vocab_tally *vt)
{
    size_t ip = 0, op = 0;
    for (const char *sep; (sep = memmem(in + ip, in_len - ip, SEP, strlen(SEP)));) {
        const char *nl = memchr(out + op, '\n', out_len - op);
        size_t llen = nl ? (size_t)(nl - (out + op)) : out_len - op;
        check_vocab_string(name, t, in + ip, (size_t)(sep - (in + ip)), out + op, llen, vt);
        op += llen + (nl != NULL);
        ip = (size_t)(sep - in) + strlen(SEP);
    }
    return in_len - ip;
}

/* One vocabulary test set: every string of .inp encodes to its line of .out. */
static void run_vocab_set(const char *name)
{
    char rel[256], path[1024], in_path[1100], out_path[1100];
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf", name);
    const char *p = test_fixture(rel);
    if (!p) return;
    snprintf(path, sizeof path, "%s", p);
    snprintf(in_path, sizeof in_path, "%s.inp", path);
    snprintf(out_path, sizeof out_path, "%s.out", path);
    size_t in_len, out_len, left = 0;
    char *in = (char *)read_whole_file(in_path, &in_len);
    char *out = (char *)read_whole_file(out_path, &out_len);
    tokenizer *t = vocab_load_tokenizer(path);
    vocab_tally vt = {0};
    CHECK(in && out && t, " %s: could not read the test set", name);
    if (in && out && t) left = check_vocab_file(name, t, in, in_len, out, out_len, &vt);
    printf("    vocab %s: %zu/%zu strings match, %zu/%zu round-trip\n", name, vt.match, vt.n,
           vt.lossless, vt.n);
    CHECK(vt.n > 0 && left == 0, " %s: %zu strings, %zu bytes left", name, vt.n, left);
    CHECK(vt.match == vt.n, " %s: %zu of %zu strings differ", name, vt.n - vt.match, vt.n);
    CHECK(vt.lossless == vt.n, " %s: %zu of %zu strings do not round-trip", name,
          vt.n - vt.lossless, vt.n);
    tok_ids_free(&vt.got);
    tok_ids_free(&vt.want);
    tokenizer_free(t);
    free(in);
    free(out);
}

TEST(test_tok_vocab_llama_spm) { run_vocab_set("llama-spm"); }
TEST(test_tok_vocab_phi3) { run_vocab_set("phi-3"); }
TEST(test_tok_vocab_gpt2) { run_vocab_set("gpt-2"); }
TEST(test_tok_vocab_gpt2_llama_bpe) { run_vocab_set("gpt2-llama-bpe"); }
TEST(test_tok_vocab_gpt2_qwen2) { run_vocab_set("gpt2-qwen2"); }

/* ---- golden files ---- */

static void json_ids(const json_t *arr, tok_ids *out)
{
    out->n = 0;
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) tok_ids_push(out, (int32_t)json_integer_value(v), NULL);
}

/* Calls fn for every *.golden.json (top level and arch/) with its model. */
typedef void (*golden_fn)(const char *json_path, json_t *doc, const tokenizer *t, int *count);

static void each_golden(golden_fn fn, int *count)
{
    const char *p = test_fixture("stories260K.golden.json");
    if (!p) return;
    char dir[1024], pat[1100];
    snprintf(dir, sizeof dir, "%.*s", (int)(strrchr(p, '/') - p), p);
    glob_t g;
    snprintf(pat, sizeof pat, "%s/*.golden.json", dir);
    int rc = glob(pat, 0, NULL, &g);
    snprintf(pat, sizeof pat, "%s/arch/*.golden.json", dir);
    if (rc == 0) glob(pat, GLOB_APPEND, NULL, &g);
    REQUIRE(rc == 0, " no golden files in %s", dir);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        const char *jp = g.gl_pathv[i];
        json_error_t je;
        json_t *doc = json_load_file(jp, 0, &je);
        const char *model = json_string_value(json_object_get(doc, "model"));
        CHECK(doc && model, " %s: %s", jp, je.text);
        if (!doc || !model) continue;
        char mp[2048];
        snprintf(mp, sizeof mp, "%.*s/%s", (int)(strrchr(jp, '/') - jp), jp, model);
        tokenizer *t = vocab_load_tokenizer(mp);
        if (t) fn(jp, doc, t, count);
        tokenizer_free(t);
        json_decref(doc);
    }
    globfree(&g);
}

static void check_prompt(const char *jp, json_t *doc, const tokenizer *t, int *count)
{
    const char *prompt = json_string_value(json_object_get(doc, "prompt"));
    tok_ids want = {0}, got = {0};
    json_ids(json_object_get(doc, "prompt_tokens"), &want);
    tok_encode_opts o = {.add_bos = json_is_true(json_object_get(doc, "add_bos"))};
    strata_error e = {0};
    CHECK(prompt && want.n > 0, " %s: no prompt", jp);
    if (prompt && !tokenizer_encode(t, prompt, strlen(prompt), &o, &got, &e) &&
        same_ids(&got, want.ids, want.n))
        (*count)++;
    else {
        test_fail(__FILE__, __LINE__, "prompt_tokens", " %s: %s", jp, e.message);
        print_ids("want", &want);
        print_ids("got ", &got);
    }
    tok_ids_free(&want);
    tok_ids_free(&got);
}

TEST(test_tok_golden_prompt_tokens)
{
    int ok = 0;
    if (!test_fixture("stories260K.golden.json")) return;
    each_golden(check_prompt, &ok);
    printf("    golden prompts: %d match\n", ok);
    CHECK(ok >= 20 || test_failures() > 0, " only %d golden files found", ok);
}

/* The streamed pieces of greedy_tokens are greedy_text (invalid UTF-8 as U+FFFD). */
static void check_greedy_text(const char *jp, json_t *doc, const tokenizer *t, int *count)
{
    const char *want = json_string_value(json_object_get(doc, "greedy_text"));
    tok_ids ids = {0};
    json_ids(json_object_get(doc, "greedy_tokens"), &ids);
    tok_stream *s = tok_stream_new(t, 0);
    size_t cap = 1 << 16, n = 0, k;
    char *text = calloc(1, cap);
    for (size_t i = 0; s && text && i < ids.n; i++) {
        const char *p = tok_stream_push(s, ids.ids[i], &k);
        if (p && n + k < cap) {
            memcpy(text + n, p, k);
            n += k;
        }
    }
    const char *p = s ? tok_stream_finish(s, &k) : NULL;
    if (p && text && n + k < cap) {
        memcpy(text + n, p, k);
        n += k;
    }
    bool ok = want && text && n == strlen(want) && memcmp(text, want, n) == 0;
    CHECK(ok, " %s: greedy text\n      want \"%s\"\n      got  \"%.*s\"", jp, want, (int)n,
          text ? text : "");
    *count += ok;
    free(text);
    tok_stream_free(s);
    tok_ids_free(&ids);
}

TEST(test_tok_golden_greedy_text)
{
    int ok = 0;
    if (!test_fixture("stories260K.golden.json")) return;
    each_golden(check_greedy_text, &ok);
    printf("    golden greedy texts: %d match\n", ok);
}

/* ---- streaming UTF-8 ---- */

static void check_utf8(const char *in, size_t n, const char *want, size_t step)
{
    tok_utf8_stream s;
    char out[256];
    size_t k = 0;
    tok_utf8_stream_init(&s);
    for (size_t i = 0; i < n; i += step) {
        size_t m = n - i < step ? n - i : step;
        size_t before = k;
        k += tok_utf8_stream_feed(&s, in + i, m, out + k);
        CHECK(k - before <= TOK_UTF8_STREAM_MAX_OUT(m));
    }
    k += tok_utf8_stream_flush(&s, out + k);
    CHECK(k == strlen(want) && memcmp(out, want, k) == 0, " input \"%.*s\" in steps of %zu", (int)n,
          in, step);
}

TEST(test_tok_utf8_stream)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"\xF0\x9F\x98\x81 ok", "\xF0\x9F\x98\x81 ok"},
        {"a\xF1\x80\x80\xE1\x80\xC2" "b\x80" "c\x80\xBF" "d", "a" RC RC RC "b" RC "c" RC RC "d"},
        {"\xC0\xAF", RC RC},
        {"\xED\xA0\x80", RC RC RC},
        {"\xF4\x90\x80\x80", RC RC RC RC},
        {"\xE2\x82" "A", RC "A"},
        {"\xFF\xFE", RC RC},
        {"\xE0\x80\x80", RC RC RC},
        {"x\xF1\x80\x80", "x" RC},
        {"Cu\xCC\x89" "a \xE1\xBB\x87", "Cu\xCC\x89" "a \xE1\xBB\x87"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (size_t step = 1; step <= 4; step++)
            check_utf8(cases[i].in, strlen(cases[i].in), cases[i].want, step);
}

/* A character split across byte tokens comes out only when complete. */
TEST(test_tok_stream_holds_partial_chars)
{
    const char *p = test_fixture("stories260K.gguf");
    if (!p) return;
    tokenizer *t = vocab_load_tokenizer(p);
    REQUIRE(t);
    const char *text = "Cửa Việt \xF0\x9F\xA6\x99 big dog";
    tok_ids ids = {0};
    REQUIRE(encode_plain(t, text, strlen(text), &ids));
    CHECK(ids.n > strlen("Cửa Việt  big dog") / 4, " byte fallback expected");
    tok_stream *s = tok_stream_new(t, TOK_DECODE_STRIP_SPACE);
    char got[256] = {0};
    size_t n = 0, k, partial = 0;
    for (size_t i = 0; s && i < ids.n; i++) {
        const char *piece = tok_stream_push(s, ids.ids[i], &k);
        REQUIRE(piece && n + k < sizeof got);
        size_t raw;
        tokenizer_piece(t, ids.ids[i], 0, &raw);
        partial += k == 0 && raw > 0; /* a byte token held back */
        memcpy(got + n, piece, k);
        n += k;
    }
    tok_stream_finish(s, &k);
    CHECK(k == 0, " nothing should be pending at the end");
    CHECK(n == strlen(text) && memcmp(got, text, n) == 0, " got \"%.*s\"", (int)n, got);
    CHECK(partial >= 4, " only %zu tokens were held back", partial);
    tok_stream_free(s);
    tok_ids_free(&ids);
    tokenizer_free(t);
}

/* Any bytes at all (invalid UTF-8 included) encode losslessly, except that
 * SentencePiece reads a literal U+2581 in the text as a space. */
TEST(test_tok_arbitrary_bytes_round_trip)
{
    static const char *const sets[] = {"vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-gpt-2.gguf",
                                       "vocab/ggml-vocab-gpt2-qwen2.gguf"};
    static const char alphabet[] = " \t\na3'\xC3\xA9\xE2\x96\xF0\x9F\xA6\x99\x80\xFF\xC0";
    for (size_t k = 0; k < 3; k++) {
        const char *p = test_fixture(sets[k]);
        if (!p) return;
        tokenizer *t = vocab_load_tokenizer(p);
        REQUIRE(t);
        tok_ids v = {0};
        uint32_t seed = 12345;
        int ok = 0;
        for (int i = 0; i < 300; i++) {
            char s[64];
            size_t n = (seed = seed * 1103515245u + 12345u) >> 16 & 63;
            for (size_t j = 0; j < n; j++) {
                seed = seed * 1103515245u + 12345u;
                s[j] = alphabet[(seed >> 16) % (sizeof alphabet - 1)];
            }
            ok += encode_plain(t, s, n, &v) && round_trips(t, &v, s, n);
        }
        CHECK(ok == 300, " %s: %d of 300 random byte strings round-trip", sets[k], ok);
        tok_ids_free(&v);
        tokenizer_free(t);
    }
}

TEST(test_tok_vocabulary_accessors)
{
    const char *p = test_fixture("vocab/ggml-vocab-llama-spm.gguf");
    if (!p) return;
    tokenizer *t = vocab_load_tokenizer(p);
    REQUIRE(t);
    size_t len;
    const char *s = tokenizer_token_text(t, 15043, &len);
    CHECK(s && len == 8 && memcmp(s, "\xE2\x96\x81Hello", 8) == 0);
    CHECK(tokenizer_find(t, "\xE2\x96\x81Hello", 8) == 15043);
    CHECK(tokenizer_find(t, "no such piece", 13) == TOK_NONE);
    CHECK(tokenizer_n_vocab(t) == 32000 && tokenizer_model(t) == TOK_MODEL_SPM);
    CHECK(tokenizer_token_type(t, 0) == TOK_TYPE_UNKNOWN && tokenizer_token_type(t, 3) == TOK_TYPE_BYTE);
    CHECK(tokenizer_token_score(t, 15043) < 0 && tokenizer_token_text(t, 32000, &len) == NULL);
    const char *piece = tokenizer_piece(t, 3 + 0x0A, 0, &len);
    CHECK(piece && len == 1 && piece[0] == '\n', " <0x0A> decodes to a newline");
    CHECK(tokenizer_piece(t, -1, 0, &len) == NULL && len == 0);
    tokenizer_free(t);
}

/* ---- special tokens, BOS/EOS, pieces ---- */

TEST(test_tok_special_tokens_spm)
{
    const char *p = test_fixture("stories260K.gguf");
    if (!p) return;
    tokenizer *t = vocab_load_tokenizer(p);
    REQUIRE(t);
    CHECK(tokenizer_bos(t) == 1 && tokenizer_eos(t) == 2 && tokenizer_unk(t) == 0);
    CHECK(tokenizer_pad(t) == TOK_NONE, " 0xFFFFFFFF means none");
    CHECK(tokenizer_add_bos(t) && !tokenizer_add_eos(t) && tokenizer_add_space_prefix(t));
    tok_ids a = {0}, b = {0};
    strata_error e;
    const char *text = "<s>Once</s>";
    tok_encode_opts lit = {.add_bos = true, .add_eos = true};
    tok_encode_opts spec = {.parse_special = true};
    REQUIRE(!tokenizer_encode(t, text, strlen(text), &lit, &a, &e), " %s", e.message);
    REQUIRE(!tokenizer_encode(t, text, strlen(text), &spec, &b, &e), " %s", e.message);
    CHECK(a.n > 4 && a.ids[0] == 1 && a.ids[a.n - 1] == 2 && a.ids[1] != 1);
    /* <s>, then "Once" with the space prefix SentencePiece puts after a special token */
    tok_ids once = {0};
    REQUIRE(encode_plain(t, "Once", 4, &once));
    CHECK(b.n == once.n + 2 && b.ids[0] == 1 && b.ids[b.n - 1] == 2 &&
          memcmp(b.ids + 1, once.ids, once.n * sizeof(int32_t)) == 0);
    size_t len;
    char *d = tokenizer_decode(t, b.ids, b.n, 0, &len);
    CHECK(d && strcmp(d, " Once") == 0, " got \"%s\"", d);
    free(d);
    d = tokenizer_decode(t, b.ids, b.n, TOK_DECODE_SPECIAL, &len);
    CHECK(d && strcmp(d, "<s> Once</s>") == 0, " got \"%s\"", d);
    free(d);
    CHECK(tokenizer_is_eog(t, 2) && !tokenizer_is_eog(t, 1));
    tok_ids_free(&a);
    tok_ids_free(&b);
    tok_ids_free(&once);
    tokenizer_free(t);
}

TEST(test_tok_special_tokens_bpe)
{
    const char *p = test_fixture("vocab/ggml-vocab-gpt-2.gguf");
    if (!p) return;
    tokenizer *t = vocab_load_tokenizer(p);
    REQUIRE(t);
    CHECK(tokenizer_model(t) == TOK_MODEL_BPE && tokenizer_pre(t) == TOK_PRE_GPT2);
    CHECK(tokenizer_bos(t) == 50256 && !tokenizer_add_bos(t));
    tok_ids v = {0};
    strata_error e;
    tok_encode_opts spec = {.parse_special = true};
    const char *text = "Hi<|endoftext|> there";
    REQUIRE(!tokenizer_encode(t, text, strlen(text), &spec, &v, &e), " %s", e.message);
    CHECK(v.n == 3 && v.ids[1] == 50256, " got %zu ids", v.n);
    REQUIRE(encode_plain(t, text, strlen(text), &v));
    CHECK(v.n > 3, " <|endoftext|> is plain text without parse_special");
    size_t len;
    const char *piece = tokenizer_piece(t, tokenizer_find(t, "\xC4\xA0the", 5), 0, &len);
    CHECK(piece && len == 4 && memcmp(piece, " the", 4) == 0);
    tok_ids_free(&v);
    tokenizer_free(t);
}

/* ---- the pieces by themselves ---- */

TEST(test_tok_byte_map)
{
    int seen[256] = {0};
    for (unsigned b = 0; b < 256; b++) {
        uint32_t cp = tok_byte_to_cp((uint8_t)b);
        CHECK(tok_cp_to_byte(cp) == (int)b, " byte %u", b);
        CHECK(cp < 0x100 + 68 && tok_uclass_of(cp) != TOK_UC_SPACE, " byte %u", b);
        if (tok_cp_to_byte(cp) == (int)b) seen[b]++;
    }
    CHECK(tok_byte_to_cp(' ') == 0x120 && tok_byte_to_cp('\n') == 0x10A);
    CHECK(tok_byte_to_cp(0xAD) == 0x143 && tok_byte_to_cp('A') == 'A');
    CHECK(tok_cp_to_byte(0x144) == -1 && tok_cp_to_byte(0xAD) == -1);
}

static void check_split(tok_pre pre, const char *text, const char *const *want, size_t n)
{
    size_t *ends, m, start = 0;
    REQUIRE(tok_pretokenize(pre, text, strlen(text), &ends, &m));
    bool ok = m == n;
    for (size_t i = 0; ok && i < m; start = ends[i++])
        ok = ends[i] - start == strlen(want[i]) && !memcmp(text + start, want[i], ends[i] - start);
    CHECK(ok, " pre %d: \"%s\" split into %zu words", (int)pre, text, m);
    free(ends);
}

TEST(test_tok_pretokenize_rules)
{
    check_split(TOK_PRE_GPT2, "Hello  world's 1234!!\n\n x",
                (const char *const[]){"Hello", " ", " world", "'s", " 1234", "!!", "\n\n", " x"}, 8);
    check_split(TOK_PRE_GPT2, "a\tb \n", (const char *const[]){"a", "\t", "b", " \n"}, 4);
    check_split(TOK_PRE_LLAMA3, "1234567 (normal) I'M\n\n\tok  ",
                (const char *const[]){"123", "456", "7", " (", "normal", ")", " I", "'M", "\n\n",
                                      "\tok", "  "},
                11);
    check_split(TOK_PRE_QWEN2, "x 12?\r\n", (const char *const[]){"x", " ", "1", "2", "?\r\n"}, 5);
    check_split(TOK_PRE_LLAMA3, "\xD0\xBD\xD0\xB5 \xE1\x9E\x80\xE1\x9E\xB6",
                (const char *const[]){"\xD0\xBD\xD0\xB5", " \xE1\x9E\x80", "\xE1\x9E\xB6"}, 3);
}

/* ---- small synthetic vocabularies: merge order, fallbacks, errors ---- */

enum vocab_flaw {
    FLAW_NONE, FLAW_NO_MODEL, FLAW_MODEL_BERT, FLAW_NO_TOKENS, FLAW_SCORES_LEN, FLAW_TYPES_STR,
    FLAW_TYPE_VALUE, FLAW_BOS_RANGE, FLAW_BPE_NO_MERGES, FLAW_BPE_BAD_MERGE, FLAW_BPE_BAD_PRE,
};

/* SPM: <unk> <s> </s> ▁ a b c ab bc abc-less; scores favour "bc" over "ab".
 * BPE (the flaws from FLAW_BPE_*): a tiny byte-level vocabulary. */
static strata_status write_vocab(const char *path, enum vocab_flaw flaw, float ab_score,
                                 strata_error *err)
{
    static const char *const spm[] = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b", "c", "ab", "bc"};
    static const char *const bpe[] = {"a", "b", "ab", "\xC4\xA0"};
    const float scores[] = {0, 0, 0, -1, -1, -1, -1, ab_score, -2};
    const int32_t types[] = {2, 3, 3, 1, 1, 1, 1, flaw == FLAW_TYPE_VALUE ? 9 : 1, 1};
    bool is_bpe = flaw >= FLAW_BPE_NO_MERGES;
    gguf_writer *w = gguf_writer_new();
    strata_status st = STRATA_OK;
    if (!st && flaw != FLAW_NO_MODEL)
        st = gguf_writer_set_str(w, "tokenizer.ggml.model",
                                 flaw == FLAW_MODEL_BERT ? "bert" : is_bpe ? "gpt2" : "llama", err);
    if (!st && flaw != FLAW_NO_TOKENS)
        st = is_bpe ? gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", bpe, 4, err)
                    : gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", spm, 9, err);
    if (!st && !is_bpe)
        st = gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_F32, scores,
                                 flaw == FLAW_SCORES_LEN ? 8 : 9, err);
    if (!st && !is_bpe && flaw == FLAW_TYPES_STR)
        st = gguf_writer_set_arr_str(w, "tokenizer.ggml.token_type", spm, 9, err);
    else if (!st && !is_bpe)
        st = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_I32, types, 9, err);
    if (!st && flaw == FLAW_BOS_RANGE) st = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 9, err);
    if (!st && flaw == FLAW_BPE_BAD_MERGE)
        st = gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const[]){"ab"}, 1, err);
    if (!st && flaw == FLAW_BPE_BAD_PRE)
        st = gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const[]){"a b"}, 1, err);
    if (!st && flaw == FLAW_BPE_BAD_PRE) st = gguf_writer_set_str(w, "tokenizer.ggml.pre", "klingon", err);
    if (!st) st = gguf_writer_open(w, path, err);
    if (!st) st = gguf_writer_close(w, err);
    gguf_writer_free(w);
    return st;
}

static strata_status try_load(enum vocab_flaw flaw, float ab_score, tokenizer **t, strata_error *e)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/v%d.gguf", test_tmpdir(), (int)flaw);
    gguf_file *f = NULL;
    *t = NULL;
    strata_status st = write_vocab(path, flaw, ab_score, e);
    if (!st) st = gguf_open(path, &f, e);
    if (!st) st = tokenizer_from_gguf(f, t, e);
    gguf_close(f);
    return st;
}

TEST(test_tok_spm_merge_order)
{
    tokenizer *t;
    strata_error e;
    tok_ids v = {0};
    REQUIRE(!try_load(FLAW_NONE, -3, &t, &e), " %s", e.message);
    REQUIRE(encode_plain(t, "abc", 3, &v));
    /* ▁ a bc: "bc" (-2) beats "ab" (-3) */
    CHECK(same_ids(&v, (const int32_t[]){3, 4, 8}, 3));
    REQUIRE(encode_plain(t, "ab\xC3\xA9", 4, &v));
    /* no byte tokens: é falls back to <unk> once per byte */
    CHECK(same_ids(&v, (const int32_t[]){3, 7, 0, 0}, 4));
    tokenizer_free(t);
    REQUIRE(!try_load(FLAW_NONE, -2, &t, &e), " %s", e.message);
    REQUIRE(encode_plain(t, "abc", 3, &v));
    CHECK(same_ids(&v, (const int32_t[]){3, 7, 6}, 3), " equal scores: leftmost pair first");
    tok_ids_free(&v);
    tokenizer_free(t);
}

TEST(test_tok_load_errors)
{
    static const struct {
        enum vocab_flaw flaw;
        strata_status st;
        const char *needle;
    } cases[] = {
        {FLAW_NO_MODEL, STRATA_E_FORMAT, "tokenizer.ggml.model"},
        {FLAW_MODEL_BERT, STRATA_E_UNSUPPORTED, "bert"},
        {FLAW_NO_TOKENS, STRATA_E_FORMAT, "tokenizer.ggml.tokens"},
        {FLAW_SCORES_LEN, STRATA_E_FORMAT, "tokenizer.ggml.scores"},
        {FLAW_TYPES_STR, STRATA_E_FORMAT, "tokenizer.ggml.token_type"},
        {FLAW_TYPE_VALUE, STRATA_E_FORMAT, "token_type[7]"},
        {FLAW_BOS_RANGE, STRATA_E_FORMAT, "bos_token_id = 9"},
        {FLAW_BPE_NO_MERGES, STRATA_E_FORMAT, "tokenizer.ggml.merges"},
        {FLAW_BPE_BAD_MERGE, STRATA_E_FORMAT, "merges[0]"},
        {FLAW_BPE_BAD_PRE, STRATA_E_UNSUPPORTED, "klingon"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tokenizer *t;
        strata_error e = {0};
        strata_status st = try_load(cases[i].flaw, -3, &t, &e);
        CHECK(st == cases[i].st && !t && strstr(e.message, cases[i].needle) &&
                  !strchr(e.message, '\n'),
              " flaw %d: status %d, \"%s\"", (int)cases[i].flaw, (int)st, e.message);
    }
}

/* ---- speed: a few KB must not take quadratic time ---- */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void time_encode(const char *rel, const char *text, size_t n, double *secs, size_t *n_ids)
{
    const char *p = test_fixture(rel);
    if (!p) return;
    tokenizer *t = vocab_load_tokenizer(p);
    REQUIRE(t);
    tok_ids v = {0};
    double t0 = now();
    CHECK(encode_plain(t, text, n, &v));
    *secs = now() - t0;
    *n_ids = v.n;
    size_t len;
    char *d = tokenizer_decode(t, v.ids, v.n, TOK_DECODE_STRIP_SPACE, &len);
    CHECK(d && len == n && memcmp(d, text, n) == 0, " %s: round trip of %zu bytes", rel, n);
    free(d);
    tok_ids_free(&v);
    tokenizer_free(t);
}

TEST(test_tok_encode_speed)
{
    static const char para[] =
        "Once upon a time, in 2024, a llama named Max (age 12) said: \"I'll go!\" "
        "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\xA6\x99\n";
    size_t n = 0, cap = 64 * 1024;
    char *text = malloc(cap);
    REQUIRE(text);
    for (; n + sizeof para < 16 * 1024; n += sizeof para - 1) memcpy(text + n, para, sizeof para - 1);
    char *word = malloc(cap); /* one 16 KB "word" with no pre-tokenizer split */
    REQUIRE(word);
    for (size_t i = 0; i < 16 * 1024; i++) word[i] = "abcdefgh"[i * 7 % 8];
    static const char *const sets[] = {"vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-gpt-2.gguf",
                                       "vocab/ggml-vocab-gpt2-llama-bpe.gguf"};
    for (size_t i = 0; i < 3 && test_fixture(sets[i]); i++) {
        double s1 = 0, s2 = 0;
        size_t k1 = 0, k2 = 0;
        time_encode(sets[i], text, n, &s1, &k1);
        time_encode(sets[i], word, 16 * 1024, &s2, &k2);
        printf("    %s: %zu bytes -> %zu tokens in %.1f ms; 16 KB word -> %zu tokens in %.1f ms\n",
               sets[i], n, k1, s1 * 1e3, k2, s2 * 1e3);
        CHECK(s1 < 2.0 && s2 < 2.0, " %s is too slow", sets[i]);
    }
    free(text);
    free(word);
}
