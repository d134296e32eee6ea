/* Special tokens written literally in the text: control, unknown-type and
 * user-defined tokens are cut out of the text before it is encoded. As in
 * llama.cpp, the longest token text claims its occurrences first, then the
 * next longest searches the raw text that is left, and so on. Also which
 * tokens end a generation (tokenizer_is_eog). */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"
#include "util/error.h"

typedef struct len_id {
    size_t len;
    int32_t id;
} len_id;

static bool is_special_type(uint8_t type)
{
    return type == TOK_TYPE_CONTROL || type == TOK_TYPE_USER_DEFINED ||
           type == TOK_TYPE_UNKNOWN;
}

static int by_length_desc(const void *pa, const void *pb)
{
    const len_id *a = pa, *b = pb;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

strata_status tok_collect_special(tokenizer *t, strata_error *err)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < t->n_vocab; i++)
        n += is_special_type(t->tokens[i].type) && t->tokens[i].len > 0;
    t->n_special = 0;
    if (n == 0) return STRATA_OK;
    len_id *v = malloc(n * sizeof *v);
    t->special = malloc(n * sizeof *t->special);
    if (!v || !t->special) {
        free(v);
        return err_set(err, STRATA_E_NOMEM, "out of memory for %u special tokens", n);
    }
    for (uint32_t i = 0; i < t->n_vocab; i++)
        if (is_special_type(t->tokens[i].type) && t->tokens[i].len > 0)
            v[t->n_special++] = (len_id){t->tokens[i].len, (int32_t)i};
    qsort(v, n, sizeof *v, by_length_desc);
    for (uint32_t i = 0; i < n; i++) t->special[i] = v[i].id;
    free(v);
    return STRATA_OK;
}

typedef struct frag_vec {
    tok_fragment *v;
    size_t n, cap;
} frag_vec;

static bool frag_push(frag_vec *fv, int32_t id, size_t off, size_t len)
{
    if (fv->n == fv->cap) {
        size_t cap = fv->cap ? 2 * fv->cap : 8;
        tok_fragment *v = realloc(fv->v, cap * sizeof *v);
        if (!v) return false;
        fv->v = v;
        fv->cap = cap;
    }
    fv->v[fv->n++] = (tok_fragment){id, off, len};
    return true;
}

/* Splits the raw fragment `fr` at every occurrence of token id into dst. */
static bool split_fragment(const tokenizer *t, const char *text, tok_fragment fr, int32_t id,
                           frag_vec *dst)
{
    const char *tok = t->text + t->tokens[id].off;
    size_t tlen = t->tokens[id].len, pos = fr.off, end = fr.off + fr.len;
    while (pos < end) {
        const char *hit = memmem(text + pos, end - pos, tok, tlen);
        size_t at = hit ? (size_t)(hit - text) : end;
        if (at > pos && !frag_push(dst, TOK_NONE, pos, at - pos)) return false;
        if (!hit) break;
        if (!frag_push(dst, id, at, tlen)) return false;
        pos = at + tlen;
    }
    return true;
}

/* One pass: every raw fragment of *cur split at token id; swaps in the result. */
static bool split_all(const tokenizer *t, const char *text, int32_t id, frag_vec *cur,
                      frag_vec *tmp)
{
    tmp->n = 0;
    for (size_t i = 0; i < cur->n; i++) {
        bool ok = cur->v[i].id != TOK_NONE ? frag_push(tmp, cur->v[i].id, cur->v[i].off,
                                                       cur->v[i].len)
                                           : split_fragment(t, text, cur->v[i], id, tmp);
        if (!ok) return false;
    }
    frag_vec swap = *cur;
    *cur = *tmp;
    *tmp = swap;
    return true;
}

bool tok_partition(const tokenizer *t, const char *text, size_t len, bool parse_special,
                   tok_fragment **frags, size_t *n_frags)
{
    frag_vec cur = {0}, tmp = {0};
    bool ok = len == 0 || frag_push(&cur, TOK_NONE, 0, len);
    for (uint32_t i = 0; ok && i < t->n_special && cur.n > 0; i++) {
        int32_t id = t->special[i];
        if (!parse_special && t->tokens[id].type != TOK_TYPE_USER_DEFINED) continue;
        ok = split_all(t, text, id, &cur, &tmp);
    }
    free(tmp.v);
    if (!ok) {
        free(cur.v);
        return false;
    }
    *frags = cur.v;
    *n_frags = cur.n;
    return true;
}

/* Tokens that end a chat turn. A GGUF often declares only one end token
 * (e.g. a Qwen file whose EOS is <|endoftext|> while its turns end with
 * <|im_end|>), so these end a generation too when the vocabulary marks them
 * control or user-defined (a normal token with that text is just text). */
static const char *const turn_ends[] = {"<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>"};

static bool is_turn_end(const tokenizer *t, int32_t id)
{
    if (id < 0 || (uint32_t)id >= t->n_vocab) return false;
    const tok_token *k = &t->tokens[id];
    if (k->type != TOK_TYPE_CONTROL && k->type != TOK_TYPE_USER_DEFINED) return false;
    for (size_t i = 0; i < sizeof turn_ends / sizeof turn_ends[0]; i++)
        if (k->len == strlen(turn_ends[i]) && !memcmp(t->text + k->off, turn_ends[i], k->len)) return true;
    return false;
}

bool tokenizer_is_eog(const tokenizer *t, int32_t id)
{
    return id != TOK_NONE && (id == t->eos || id == t->eot || is_turn_end(t, id));
}
