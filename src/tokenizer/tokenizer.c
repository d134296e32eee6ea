/* Building a tokenizer from GGUF metadata, freeing it, and the read-only
 * accessors of its vocabulary and settings. */
#include <stdlib.h>

#include "tokenizer/tok_internal.h"
#include "util/error.h"

strata_status tokenizer_from_gguf(const gguf_file *f, tokenizer **out, strata_error *err)
{
    tokenizer *t = calloc(1, sizeof *t);
    *out = NULL;
    if (!t) return err_set(err, STRATA_E_NOMEM, "tokenizer: out of memory");
    strata_status st = tok_load_kind(t, f, err);
    if (!st) st = tok_load_vocab(t, f, err);
    if (!st) st = tok_load_config(t, f, err);
    if (!st && t->model == TOK_MODEL_BPE) st = tok_load_merges(t, f, err);
    if (!st) st = tok_collect_special(t, err);
    if (!st) st = tok_build_pieces(t, err);
    if (st) {
        tokenizer_free(t);
        return st;
    }
    *out = t;
    return STRATA_OK;
}

void tokenizer_free(tokenizer *t)
{
    if (!t) return;
    free(t->tokens);
    free(t->text);
    tok_strmap_free(&t->text_to_id);
    free(t->merge_text);
    tok_strmap_free(&t->merge_rank);
    free(t->special);
    free(t->pieces);
    free(t->piece_off);
    free(t);
}

static bool valid(const tokenizer *t, int32_t id) { return id >= 0 && (uint32_t)id < t->n_vocab; }

tok_model tokenizer_model(const tokenizer *t) { return t->model; }
tok_pre tokenizer_pre(const tokenizer *t) { return t->pre; }
uint32_t tokenizer_n_vocab(const tokenizer *t) { return t->n_vocab; }
int32_t tokenizer_bos(const tokenizer *t) { return t->bos; }
int32_t tokenizer_eos(const tokenizer *t) { return t->eos; }
int32_t tokenizer_eot(const tokenizer *t) { return t->eot; }
int32_t tokenizer_unk(const tokenizer *t) { return t->unk; }
int32_t tokenizer_pad(const tokenizer *t) { return t->pad; }
bool tokenizer_add_bos(const tokenizer *t) { return t->add_bos; }
bool tokenizer_add_eos(const tokenizer *t) { return t->add_eos; }
bool tokenizer_add_space_prefix(const tokenizer *t) { return t->add_space_prefix; }

const char *tokenizer_token_text(const tokenizer *t, int32_t id, size_t *len)
{
    if (!valid(t, id)) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = t->tokens[id].len;
    return t->text + t->tokens[id].off;
}

tok_type tokenizer_token_type(const tokenizer *t, int32_t id)
{
    return valid(t, id) ? (tok_type)t->tokens[id].type : TOK_TYPE_UNDEFINED;
}

float tokenizer_token_score(const tokenizer *t, int32_t id)
{
    return valid(t, id) ? t->tokens[id].score : 0.0f;
}

int32_t tokenizer_find(const tokenizer *t, const char *text, size_t len)
{
    return tok_strmap_get(&t->text_to_id, text, len);
}
