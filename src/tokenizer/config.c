/* The tokenizer's settings from metadata: model family, pre-tokenizer,
 * special token ids and the add_bos / add_eos / add_space_prefix flags. */
#include <string.h>

#include "tokenizer/tok_internal.h"
#include "util/error.h"

#define KEY_MODEL "tokenizer.ggml.model"
#define KEY_PRE "tokenizer.ggml.pre"

static bool str_is(const gguf_str *s, const char *lit)
{
    return s->len == strlen(lit) && memcmp(s->ptr, lit, s->len) == 0;
}

static bool str_in(const gguf_str *s, const char *const *names)
{
    for (; *names; names++)
        if (str_is(s, *names)) return true;
    return false;
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

static const char *const pre_gpt2[] = {"default", "gpt-2", "gpt2", "phi-2", NULL};
static const char *const pre_llama3[] = {"llama3", "llama-v3", "llama-bpe", NULL};
static const char *const pre_qwen2[] = {"qwen2", "deepseek-r1-qwen", NULL};

static strata_status read_pre(tokenizer *t, const gguf_file *f, strata_error *err)
{
    gguf_str s;
    t->pre = TOK_PRE_NONE;
    if (t->model != TOK_MODEL_BPE) return STRATA_OK;
    t->pre = TOK_PRE_GPT2;
    if (!gguf_find(f, KEY_PRE)) return STRATA_OK;
    if (!gguf_get_str(f, KEY_PRE, &s))
        return err_set(err, STRATA_E_FORMAT, "%s is not a string", KEY_PRE);
    if (str_in(&s, pre_gpt2)) t->pre = TOK_PRE_GPT2;
    else if (str_in(&s, pre_llama3)) t->pre = TOK_PRE_LLAMA3;
    else if (str_in(&s, pre_qwen2)) t->pre = TOK_PRE_QWEN2;
    else
        return err_set(err, STRATA_E_UNSUPPORTED,
                       "%s = \"%.64s\" is not supported (known: gpt-2, llama-bpe, qwen2)",
                       KEY_PRE, s.ptr);
    return STRATA_OK;
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
 * and a space prefix; the Llama-3 BPE rule adds BOS; others add nothing. */
static void set_defaults(tokenizer *t)
{
    bool spm = t->model == TOK_MODEL_SPM;
    t->unk = spm && t->n_vocab > 0 ? 0 : TOK_NONE;
    t->bos = spm && t->n_vocab > 1 ? 1 : TOK_NONE;
    t->eos = spm && t->n_vocab > 2 ? 2 : TOK_NONE;
    t->eot = t->pad = TOK_NONE;
    t->add_bos = spm || t->pre == TOK_PRE_LLAMA3;
    t->add_eos = false;
    t->add_space_prefix = spm;
    t->ignore_merges = t->pre == TOK_PRE_LLAMA3;
}

strata_status tok_load_config(tokenizer *t, const gguf_file *f, strata_error *err)
{
    set_defaults(t);
    strata_status st = STRATA_OK;
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
