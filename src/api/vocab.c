/* Public API: a model's tokenizer by itself, from the GGUF metadata alone
 * (no model spec, no tensors), so vocabulary-only files work too. */
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "strata.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

struct strata_vocab {
    tokenizer *tok;
};

strata_status strata_vocab_open(const char *path, strata_vocab **out, strata_error *err)
{
    gguf_file *f = NULL;
    *out = NULL;
    strata_vocab *v = calloc(1, sizeof *v);
    if (!v) return err_set(err, STRATA_E_NOMEM, "%s: out of memory", path);
    strata_status st = gguf_open(path, &f, err);
    if (!st) {
        st = tokenizer_from_gguf(f, &v->tok, err);
        if (st) err_prefix_path(err, path);
    }
    gguf_close(f);
    if (st) {
        free(v);
        return st;
    }
    *out = v;
    return STRATA_OK;
}

void strata_vocab_free(strata_vocab *v)
{
    if (!v) return;
    tokenizer_free(v->tok);
    free(v);
}

uint32_t strata_vocab_n_tokens(const strata_vocab *v) { return tokenizer_n_vocab(v->tok); }

strata_status strata_vocab_tokenize(const strata_vocab *v, const char *text, size_t len,
                                    bool add_special, bool parse_special, int32_t **tokens,
                                    size_t *n, strata_error *err)
{
    tok_encode_opts o = tokenizer_default_opts(v->tok);
    if (!add_special) o.add_bos = o.add_eos = false;
    o.parse_special = parse_special;
    tok_ids ids = {0};
    *tokens = NULL;
    *n = 0;
    strata_status st = tokenizer_encode(v->tok, text, len, &o, &ids, err);
    if (st) {
        tok_ids_free(&ids);
        return st;
    }
    *tokens = ids.ids;
    *n = ids.n;
    return STRATA_OK;
}

const char *strata_vocab_piece(const strata_vocab *v, int32_t id, size_t *len)
{
    return tokenizer_piece(v->tok, id, TOK_DECODE_SPECIAL, len);
}
