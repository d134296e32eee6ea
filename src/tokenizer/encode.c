/* Encoding: special tokens are cut out of the text, each piece of raw text
 * goes to the SentencePiece or BPE encoder, BOS / EOS around it all. */
#include <stdlib.h>

#include "tokenizer/tok_internal.h"
#include "util/error.h"

#define MAX_TEXT ((size_t)1 << 30) /* symbol indices are int32 */

tok_encode_opts tokenizer_default_opts(const tokenizer *t)
{
    return (tok_encode_opts){.add_bos = t->add_bos, .add_eos = t->add_eos};
}

static strata_status push_special(int32_t id, const char *what, tok_ids *out,
                                  strata_error *err)
{
    if (id == TOK_NONE)
        return err_set(err, STRATA_E_INVALID, "tokenizer: the model has no %s token", what);
    return tok_ids_push(out, id, err);
}

/* SentencePiece puts a space before the text and after every special token. */
static strata_status encode_fragments(const tokenizer *t, const char *text,
                                      const tok_fragment *fr, size_t n, tok_ids *out,
                                      strata_error *err)
{
    bool prev_special = true;
    strata_status st = STRATA_OK;
    for (size_t i = 0; !st && i < n; i++) {
        if (fr[i].id != TOK_NONE) st = tok_ids_push(out, fr[i].id, err);
        else if (t->model == TOK_MODEL_SPM)
            st = tok_spm_encode(t, text + fr[i].off, fr[i].len,
                                t->add_space_prefix && prev_special, out, err);
        else st = tok_bpe_encode(t, text + fr[i].off, fr[i].len, out, err);
        prev_special = fr[i].id != TOK_NONE;
    }
    return st;
}

strata_status tokenizer_encode(const tokenizer *t, const char *text, size_t len,
                               const tok_encode_opts *opts, tok_ids *out, strata_error *err)
{
    tok_encode_opts o = opts ? *opts : tokenizer_default_opts(t);
    tok_fragment *fr = NULL;
    size_t n = 0;
    if (len > MAX_TEXT)
        return err_set(err, STRATA_E_INVALID, "tokenizer: text of %zu bytes is too long", len);
    strata_status st = o.add_bos ? push_special(t->bos, "BOS", out, err) : STRATA_OK;
    if (!st && !tok_partition(t, text, len, o.parse_special, &fr, &n))
        st = err_set(err, STRATA_E_NOMEM, "tokenizer: out of memory encoding %zu bytes", len);
    if (!st) st = encode_fragments(t, text, fr, n, out, err);
    if (!st && o.add_eos) st = push_special(t->eos, "EOS", out, err);
    free(fr);
    return st;
}
