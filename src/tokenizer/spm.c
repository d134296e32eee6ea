/* SentencePiece-style encoding (llama.cpp's algorithm for SPM vocabularies):
 * spaces become U+2581, the text is split into UTF-8 characters, and the
 * adjacent pair whose concatenation is a token with the highest score is
 * merged (leftmost first on ties) until no pair is a token. Each remaining
 * symbol is its token, or its bytes as byte tokens. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"
#include "util/error.h"

static const char SPACE_MARK[3] = {'\xE2', '\x96', '\x81'}; /* U+2581 */

typedef struct spm_work {
    const tokenizer *t;
    char *text;
    size_t len;
    tok_symbol *sym;
    size_t n_sym;
    tok_heap heap;
} spm_work;

/* The working text: optional leading space, every ' ' as U+2581. */
static bool escape_text(spm_work *w, const char *text, size_t len, bool space_prefix)
{
    w->text = malloc(3 * (len + 1));
    if (!w->text) return false;
    w->len = 0;
    if (space_prefix) {
        memcpy(w->text, SPACE_MARK, 3);
        w->len = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(w->text + w->len, SPACE_MARK, 3);
            w->len += 3;
        } else {
            w->text[w->len++] = text[i];
        }
    }
    return true;
}

/* One symbol per UTF-8 character; each byte of an invalid sequence is a
 * symbol of its own. (llama.cpp goes by the lead byte alone, which gives
 * the same symbols for valid UTF-8 but can swallow the start of a
 * following U+2581 after a truncated sequence, losing that space.) */
static bool split_chars(spm_work *w)
{
    w->sym = malloc((w->len + 1) * sizeof *w->sym);
    if (!w->sym) return false;
    w->n_sym = 0;
    for (size_t off = 0; off < w->len;) {
        uint32_t cp;
        size_t n = tok_utf8_decode((const unsigned char *)w->text + off, w->len - off, &cp);
        int32_t i = (int32_t)w->n_sym++;
        w->sym[i] = (tok_symbol){i - 1, i + 1, off, n};
        off += n;
    }
    if (w->n_sym) w->sym[w->n_sym - 1].next = -1;
    return true;
}

static bool try_pair(void *ctx, int32_t left, int32_t right)
{
    spm_work *w = ctx;
    if (left < 0 || right < 0) return true;
    size_t size = w->sym[left].n + w->sym[right].n;
    int32_t id = tok_strmap_get(&w->t->text_to_id, w->text + w->sym[left].off, size);
    if (id == TOK_NONE) return true;
    tok_bigram b = {-(double)w->t->tokens[id].score, left, right, size};
    return tok_heap_push(&w->heap, b);
}

static bool merge_all(spm_work *w) { return tok_merge_all(w->sym, w->n_sym, &w->heap, try_pair, w); }

static strata_status emit(const spm_work *w, tok_ids *out, strata_error *err)
{
    for (int32_t i = w->n_sym ? 0 : -1; i >= 0; i = w->sym[i].next) {
        const char *s = w->text + w->sym[i].off;
        int32_t id = tok_strmap_get(&w->t->text_to_id, s, w->sym[i].n);
        strata_status st = id != TOK_NONE ? tok_ids_push(out, id, err) : STRATA_OK;
        for (size_t j = 0; id == TOK_NONE && !st && j < w->sym[i].n; j++)
            st = tok_push_byte(w->t, (uint8_t)s[j], out, err);
        if (st) return st;
    }
    return STRATA_OK;
}

strata_status tok_spm_encode(const tokenizer *t, const char *text, size_t len,
                             bool space_prefix, tok_ids *out, strata_error *err)
{
    spm_work w = {.t = t};
    strata_status st = STRATA_OK;
    if (len == 0) return STRATA_OK;
    if (!escape_text(&w, text, len, space_prefix) || !split_chars(&w) || !merge_all(&w))
        st = err_set(err, STRATA_E_NOMEM, "tokenizer: out of memory encoding %zu bytes", len);
    if (!st) st = emit(&w, out, err);
    free(w.text);
    free(w.sym);
    tok_heap_free(&w.heap);
    return st;
}
