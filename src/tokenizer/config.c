/* The tokenizer's settings from metadata: model family, pre-tokenizer,
 * special token ids and the add_bos / add_eos / add_space_prefix flags. */
#include <stdio.h>
#include <string.h>

#include "tokenizer/tok_internal.h"
#include "util/error.h"

#define KEY_MODEL "tokenizer.ggml.model"
#define KEY_PRE "tokenizer.ggml.pre"

static bool str_is(const gguf_str *s, const char *lit)
{
    return s->len == strlen(lit) && memcmp(s->ptr, lit, s->len) == 0;
}

static strata_status read_model(tokenizer *t, const gguf_file *f, strata_error *err)
{
    gguf_str s;
    if (!gguf_find(f, KEY_MODEL))
        return err_set(err, STRATA_E_FORMAT, "no tokenizer: %s is missing", KEY_MODEL);
    if (!gguf_get_str(f, KEY_MODEL, &s))
        return err_set(err, STRATA_E_FORMAT, "%s is not a string", KEY_MODEL);
    if (str_is(&s, "llama")) t->model = TOK_MODEL_SPM;
    else if (str_is(&s, "gpt2")) t->model = TOK_MODEL_BPE;
    else
        return err_set(err, STRATA_E_UNSUPPORTED,
                       "%s = \"%.64s\" is not supported (known: llama, gpt2)", KEY_MODEL, s.ptr);
    return STRATA_OK;
}

/* `tokenizer.ggml.pre` names and their split rules, as llama.cpp's
 * llama-vocab.cpp maps them ("gpt2" and "gpt-neox" are strata's own names
 * for the GPT-2 rule, which GPT-NeoX's tokenizer uses). `bos_whole` marks the
 * names for which llama.cpp adds BOS by default and emits a word that is a
 * token as a whole without merging (ignore_merges). */
typedef struct pre_name {
    const char *name;
    tok_pre pre;
    bool bos_whole;
} pre_name;

static const pre_name pre_names[] = {
    {"default", TOK_PRE_DEFAULT, false},
    {"gpt-2", TOK_PRE_GPT2, false},          {"gpt2", TOK_PRE_GPT2, false},
    {"gpt-neox", TOK_PRE_GPT2, false},       {"phi-2", TOK_PRE_GPT2, false},
    {"mpt", TOK_PRE_GPT2, false},            {"olmo", TOK_PRE_GPT2, false},
    {"jais", TOK_PRE_GPT2, false},           {"exaone4", TOK_PRE_GPT2, false},
    {"llama-bpe", TOK_PRE_LLAMA3, true},     {"llama3", TOK_PRE_LLAMA3, true},
    {"llama-v3", TOK_PRE_LLAMA3, true},      {"falcon3", TOK_PRE_LLAMA3, true},
    {"pixtral", TOK_PRE_LLAMA3, true},       {"dbrx", TOK_PRE_LLAMA3, false},
    {"smaug-bpe", TOK_PRE_LLAMA3, false},    {"qwen2", TOK_PRE_QWEN2, false},
    {"deepseek-r1-qwen", TOK_PRE_QWEN2, false}, {"stablelm2", TOK_PRE_QWEN2, false},
    {"megrez", TOK_PRE_QWEN2, false},        {"deepseek-llm", TOK_PRE_DEEPSEEK_LLM, false},
    {"deepseek-coder", TOK_PRE_DEEPSEEK_CODER, false}, {"falcon", TOK_PRE_FALCON, false},
    {"starcoder", TOK_PRE_STARCODER, false}, {"refact", TOK_PRE_STARCODER, false},
    {"command-r", TOK_PRE_STARCODER, false}, {"smollm", TOK_PRE_STARCODER, false},
    {"codeshell", TOK_PRE_STARCODER, false}, {"exaone", TOK_PRE_STARCODER, false},
    {"minerva-7b", TOK_PRE_STARCODER, false}, {"tekken", TOK_PRE_TEKKEN, true},
};

/* No tokenizer.ggml.pre: llama.cpp's "default" rule. */
static const pre_name *const pre_default = &pre_names[0];

static const pre_name *pre_lookup(const gguf_str *s)
{
    for (size_t i = 0; i < sizeof pre_names / sizeof pre_names[0]; i++)
        if (str_is(s, pre_names[i].name)) return &pre_names[i];
    return NULL;
}

/* "default, gpt-2, ..." into buf (cut short if it does not fit). */
static void known_names(char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof pre_names / sizeof pre_names[0] && n < cap; i++) {
        int k = snprintf(buf + n, cap - n, "%s%s", i ? ", " : "", pre_names[i].name);
        if (k < 0) break;
        n += (size_t)k;
    }
}

/* Up to 64 bytes of s with control characters as '?', for a one-line message. */
static void printable(const gguf_str *s, char out[65])
{
    size_t n = s->len < 64 ? (size_t)s->len : 64;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s->ptr[i];
        out[i] = c < 0x20 || c == 0x7F ? '?' : (char)c;
    }
    out[n] = '\0';
}

static strata_status unknown_pre(const gguf_str *s, strata_error *err)
{
    char name[65], known[400];
    printable(s, name);
    known_names(known, sizeof known);
    return err_set(err, STRATA_E_UNSUPPORTED, "%s = \"%s\" is not supported (known: %s)", KEY_PRE,
                   name, known);
}

/* The entry of f's pre-tokenizer name (the default one when absent). */
static strata_status pre_entry(const gguf_file *f, const pre_name **out, strata_error *err)
{
    gguf_str s;
    *out = pre_default;
    if (!gguf_find(f, KEY_PRE)) return STRATA_OK;
    if (!gguf_get_str(f, KEY_PRE, &s))
        return err_set(err, STRATA_E_FORMAT, "%s is not a string", KEY_PRE);
    *out = pre_lookup(&s);
    return *out ? STRATA_OK : unknown_pre(&s, err);
}

static strata_status read_pre(tokenizer *t, const gguf_file *f, strata_error *err)
{
    const pre_name *e;
    t->pre = TOK_PRE_NONE;
    if (t->model != TOK_MODEL_BPE) return STRATA_OK;
    strata_status st = pre_entry(f, &e, err);
    if (!st) t->pre = e->pre;
    return st;
}

/* Reads a special token id; absent keeps *id, -1 / 0xFFFFFFFF mean none. */
static strata_status read_id(const tokenizer *t, const gguf_file *f, const char *key,
                             int32_t *id, strata_error *err)
{
    int64_t v;
    if (!gguf_find(f, key)) return STRATA_OK;
    if (!gguf_get_i64(f, key, &v))
        return err_set(err, STRATA_E_FORMAT, "%s is not an integer", key);
    if (v == -1 || v == 0xFFFFFFFF) {
        *id = TOK_NONE;
        return STRATA_OK;
    }
    if (v < 0 || v >= (int64_t)t->n_vocab)
        return err_set(err, STRATA_E_FORMAT, "%s = %lld is out of range (vocabulary of %u)",
                       key, (long long)v, t->n_vocab);
    *id = (int32_t)v;
    return STRATA_OK;
}

static strata_status read_flag(const gguf_file *f, const char *key, bool *flag,
                               strata_error *err)
{
    if (!gguf_find(f, key)) return STRATA_OK;
    if (!gguf_get_bool(f, key, flag))
        return err_set(err, STRATA_E_FORMAT, "%s is not a bool", key);
    return STRATA_OK;
}

strata_status tok_load_kind(tokenizer *t, const gguf_file *f, strata_error *err)
{
    strata_status st = read_model(t, f, err);
    return st ? st : read_pre(t, f, err);
}

/* Defaults as llama.cpp: SentencePiece has <unk>=0 <s>=1 </s>=2, adds BOS
 * and a space prefix; BPE adds BOS for the names marked bos_whole (Llama-3,
 * Tekken), which also ignore merges for whole-token words; others add
 * nothing. */
static void set_defaults(tokenizer *t, const pre_name *pre)
{
    bool spm = t->model == TOK_MODEL_SPM;
    bool bos_whole = t->model == TOK_MODEL_BPE && pre->bos_whole;
    t->unk = spm && t->n_vocab > 0 ? 0 : TOK_NONE;
    t->bos = spm && t->n_vocab > 1 ? 1 : TOK_NONE;
    t->eos = spm && t->n_vocab > 2 ? 2 : TOK_NONE;
    t->eot = t->pad = TOK_NONE;
    t->add_bos = spm || bos_whole;
    t->add_eos = false;
    t->add_space_prefix = spm;
    t->ignore_merges = bos_whole;
}

strata_status tok_load_config(tokenizer *t, const gguf_file *f, strata_error *err)
{
    const pre_name *pre = pre_default;
    strata_status st = t->model == TOK_MODEL_BPE ? pre_entry(f, &pre, err) : STRATA_OK;
    if (!st) set_defaults(t, pre);
    if (!st) st = read_id(t, f, "tokenizer.ggml.bos_token_id", &t->bos, err);
    if (!st) st = read_id(t, f, "tokenizer.ggml.eos_token_id", &t->eos, err);
    if (!st) st = read_id(t, f, "tokenizer.ggml.eot_token_id", &t->eot, err);
    if (!st) st = read_id(t, f, "tokenizer.ggml.unknown_token_id", &t->unk, err);
    if (!st) st = read_id(t, f, "tokenizer.ggml.padding_token_id", &t->pad, err);
    if (!st) st = read_flag(f, "tokenizer.ggml.add_bos_token", &t->add_bos, err);
    if (!st) st = read_flag(f, "tokenizer.ggml.add_eos_token", &t->add_eos, err);
    if (!st) st = read_flag(f, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix, err);
    return st;
}
