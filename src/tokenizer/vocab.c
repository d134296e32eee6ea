/* The vocabulary: token texts, scores and types from tokenizer.ggml.tokens,
 * .scores and .token_type; the text -> id map; the token of every byte. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"
#include "util/error.h"

#define KEY_TOKENS "tokenizer.ggml.tokens"
#define KEY_SCORES "tokenizer.ggml.scores"
#define KEY_TYPES "tokenizer.ggml.token_type"

/* An optional array of n elements; *present false when the key is absent. */
static strata_status get_array(const gguf_file *f, const char *key, uint64_t n,
                               gguf_array *a, bool *present, strata_error *err)
{
    *present = gguf_find(f, key) != NULL;
    if (!*present) return STRATA_OK;
    if (!gguf_get_arr(f, key, a))
        return err_set(err, STRATA_E_FORMAT, "%s is not an array", key);
    if (a->n != n)
        return err_set(err, STRATA_E_FORMAT, "%s has %llu entries, expected %llu", key,
                       (unsigned long long)a->n, (unsigned long long)n);
    return STRATA_OK;
}

static strata_status copy_texts(tokenizer *t, const gguf_array *a, strata_error *err)
{
    const gguf_str *s = a->data;
    size_t total = 0;
    for (uint32_t i = 0; i < t->n_vocab; i++) total += s[i].len + 1;
    t->tokens = calloc(t->n_vocab, sizeof *t->tokens);
    t->text = malloc(total);
    if (!t->tokens || !t->text)
        return err_set(err, STRATA_E_NOMEM, "%s: out of memory for %u tokens", KEY_TOKENS,
                       t->n_vocab);
    size_t off = 0;
    for (uint32_t i = 0; i < t->n_vocab; i++) {
        memcpy(t->text + off, s[i].ptr, s[i].len);
        t->text[off + s[i].len] = '\0';
        t->tokens[i] = (tok_token){off, s[i].len, 0.0f, TOK_TYPE_NORMAL};
        off += s[i].len + 1;
    }
    return STRATA_OK;
}

static strata_status read_tokens(tokenizer *t, const gguf_file *f, strata_error *err)
{
    gguf_array a;
    if (!gguf_find(f, KEY_TOKENS))
        return err_set(err, STRATA_E_FORMAT, "no tokenizer: %s is missing", KEY_TOKENS);
    if (!gguf_get_arr(f, KEY_TOKENS, &a) || a.type != GGUF_TYPE_STRING)
        return err_set(err, STRATA_E_FORMAT, "%s is not an array of strings", KEY_TOKENS);
    if (a.n == 0 || a.n > INT32_MAX)
        return err_set(err, STRATA_E_FORMAT, "%s has %llu entries", KEY_TOKENS,
                       (unsigned long long)a.n);
    t->n_vocab = (uint32_t)a.n;
    return copy_texts(t, &a, err);
}

static strata_status read_scores(tokenizer *t, const gguf_file *f, strata_error *err)
{
    gguf_array a;
    bool present;
    strata_status st = get_array(f, KEY_SCORES, t->n_vocab, &a, &present, err);
    if (st || !present) return st;
    for (uint32_t i = 0; i < t->n_vocab; i++) {
        double v;
        if (a.type == GGUF_TYPE_STRING || a.type == GGUF_TYPE_ARRAY ||
            !gguf_array_f64(&a, i, &v))
            return err_set(err, STRATA_E_FORMAT, "%s is not a numeric array", KEY_SCORES);
        t->tokens[i].score = (float)v;
    }
    return STRATA_OK;
}

static strata_status read_types(tokenizer *t, const gguf_file *f, strata_error *err)
{
    gguf_array a;
    bool present;
    strata_status st = get_array(f, KEY_TYPES, t->n_vocab, &a, &present, err);
    if (st || !present) return st;
    for (uint32_t i = 0; i < t->n_vocab; i++) {
        uint64_t v;
        if (a.type == GGUF_TYPE_STRING || a.type == GGUF_TYPE_ARRAY ||
            a.type == GGUF_TYPE_BOOL || !gguf_array_u64(&a, i, &v) || v > TOK_TYPE_BYTE)
            return err_set(err, STRATA_E_FORMAT, "%s[%u] is not a token type (0..6)", KEY_TYPES,
                           i);
        t->tokens[i].type = (uint8_t)v;
    }
    return STRATA_OK;
}

static strata_status build_map(tokenizer *t, strata_error *err)
{
    if (!tok_strmap_init(&t->text_to_id, t->n_vocab))
        return err_set(err, STRATA_E_NOMEM, "%s: out of memory for the token map", KEY_TOKENS);
    for (uint32_t i = 0; i < t->n_vocab; i++) {
        const tok_token *tk = &t->tokens[i];
        if (tk->len == 0) continue; /* an empty token can never be matched */
        if (!tok_strmap_put(&t->text_to_id, t->text + tk->off, tk->len, (int32_t)i, true))
            return err_set(err, STRATA_E_NOMEM, "%s: out of memory for the token map",
                           KEY_TOKENS);
    }
    return STRATA_OK;
}

/* SentencePiece: the token "<0xNN>" (else the byte itself as a token);
 * byte-level BPE: the token of the byte's printable character. */
static void find_byte_tokens(tokenizer *t)
{
    for (unsigned b = 0; b < 256; b++) {
        char s[8];
        int32_t id;
        if (t->model == TOK_MODEL_SPM) {
            snprintf(s, sizeof s, "<0x%02X>", b);
            id = tok_strmap_get(&t->text_to_id, s, 6);
            s[0] = (char)b;
            if (id == TOK_NONE) id = tok_strmap_get(&t->text_to_id, s, 1);
        } else {
            size_t n = tok_utf8_encode(tok_byte_to_cp((uint8_t)b), s);
            id = tok_strmap_get(&t->text_to_id, s, n);
        }
        t->byte_id[b] = id;
    }
}

strata_status tok_load_vocab(tokenizer *t, const gguf_file *f, strata_error *err)
{
    strata_status st = read_tokens(t, f, err);
    if (!st) st = read_scores(t, f, err);
    if (!st) st = read_types(t, f, err);
    if (!st) st = build_map(t, err);
    if (!st) find_byte_tokens(t);
    return st;
}
