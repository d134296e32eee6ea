/* Tokenizing a rendered conversation: special tokens only from the markup.
 *
 * The pieces are joined into runs of plain text separated by the special
 * tokens found in the markup. Each run is encoded on its own without
 * special-token parsing. That is what encoding the whole text with
 * parse_special does (it too cuts the text at special tokens and encodes
 * the runs between them; SentencePiece puts its space in front of each run;
 * a test checks the two agree), except that a user's "<|im_start|>" stays
 * text. One exception the tokenizer makes everywhere: user-defined tokens
 * are matched even without parse_special (they are added words, as in
 * llama.cpp and HF tokenizers), so a template marker that a vocabulary
 * declares user-defined rather than control can be typed by a user.
 */
#include <stdlib.h>
#include <string.h>

#include "chat/chat_template.h"
#include "util/error.h"

#define MAX_SPECIAL_LEN 64 /* longest "<...>" / "[...]" looked up in the vocabulary */

typedef struct tok_ctx {
    const tokenizer *tok;
    size_t skip_msg;   /* pieces up to the content of this message are skipped */
    bool skipping;
    bool continuing;   /* the next run continues text already in the context */
    char *run;         /* plain text waiting to be encoded */
    size_t len, cap;
    tok_ids *out;
    strata_error *err;
    strata_status st;
} tok_ctx;

static bool run_add(tok_ctx *c, const char *s, size_t n)
{
    if (n == 0) return true;
    if (c->len + n > c->cap) {
        size_t cap = c->cap ? c->cap : 256;
        while (cap < c->len + n) cap *= 2;
        char *r = realloc(c->run, cap);
        if (!r) {
            c->st = err_set(c->err, STRATA_E_NOMEM, "chat: out of memory");
            return false;
        }
        c->run = r;
        c->cap = cap;
    }
    memcpy(c->run + c->len, s, n);
    c->len += n;
    return true;
}

/* SentencePiece puts a space in front of every run. A run that continues
 * text in the context (right after the answer the model generated) must not
 * get one: when it starts with a space, that space is the one the encoder
 * adds, so it is dropped (a lone space becomes the "\u2581" token itself);
 * otherwise the extra space is unavoidable (only for template markup
 * missing from the vocabulary). */
static bool run_flush(tok_ctx *c)
{
    const char *s = c->run;
    size_t n = c->len;
    bool cont = c->continuing;
    c->len = 0;
    if (n == 0) return true;
    c->continuing = false;
    bool spm_space = tokenizer_model(c->tok) == TOK_MODEL_SPM && tokenizer_add_space_prefix(c->tok);
    if (cont && spm_space && s[0] == ' ') {
        int32_t space = tokenizer_find(c->tok, "\xE2\x96\x81", 3);
        if (n == 1 && space != TOK_NONE) return (c->st = tok_ids_push(c->out, space, c->err)) == STRATA_OK;
        s++, n--;
    }
    tok_encode_opts o = {.add_bos = false, .add_eos = false, .parse_special = false};
    c->st = n ? tokenizer_encode(c->tok, s, n, &o, c->out, c->err) : STRATA_OK;
    return c->st == STRATA_OK;
}

/* The control or user-defined token whose text is s[0..n), or TOK_NONE. */
static int32_t special_id(const tokenizer *tok, const char *s, size_t n)
{
    int32_t id = tokenizer_find(tok, s, n);
    tok_type ty = tokenizer_token_type(tok, id);
    return ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_USER_DEFINED ? id : TOK_NONE;
}

/* Length of the "<...>" or "[...]" starting at s[0], or 0. */
static size_t bracket_len(const char *s, size_t n)
{
    char close = s[0] == '<' ? '>' : s[0] == '[' ? ']' : 0;
    if (!close) return 0;
    size_t max = n < MAX_SPECIAL_LEN ? n : MAX_SPECIAL_LEN;
    for (size_t i = 1; i < max; i++)
        if (s[i] == close) return i + 1;
    return 0;
}

static bool add_markup(tok_ctx *c, const char *s, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = bracket_len(s + i, n - i);
        int32_t id = k ? special_id(c->tok, s + i, k) : TOK_NONE;
        if (id == TOK_NONE) continue;
        if (!run_add(c, s + start, i - start) || !run_flush(c)) return false;
        if ((c->st = tok_ids_push(c->out, id, c->err))) return false;
        c->continuing = false;
        i += k - 1;
        start = i + 1;
    }
    return run_add(c, s + start, n - start);
}

static bool take_piece(void *ctx, const chat_piece *p)
{
    tok_ctx *c = ctx;
    if (c->skipping) {
        c->skipping = !(p->kind == CHAT_CONTENT && p->msg == c->skip_msg);
        return true;
    }
    return p->kind == CHAT_CONTENT ? run_add(c, p->text, p->len) : add_markup(c, p->text, p->len);
}

strata_status chat_tokenize(const tokenizer *tok, const chat_template *t, const strata_chat_message *msgs,
                            size_t n, size_t n_done, bool add_gen, bool add_bos, tok_ids *out,
                            strata_error *err)
{
    if (n_done > n)
        return err_set(err, STRATA_E_INVALID, "chat: %zu messages done of %zu", n_done, n);
    strata_error sink_err; /* the sink's own error is more precise than chat_render's */
    tok_ctx c = {.tok = tok, .skip_msg = n_done - 1, .skipping = n_done > 0, .continuing = n_done > 0,
                 .out = out, .err = &sink_err};
    strata_status st = STRATA_OK;
    if (!n_done && add_bos) {
        int32_t bos = tokenizer_bos(tok);
        st = bos == TOK_NONE ? err_set(err, STRATA_E_INVALID, "chat: the model has no BOS token")
                             : tok_ids_push(out, bos, err);
    }
    if (!st) st = chat_render(t, msgs, n, add_gen, take_piece, &c, err);
    if (!st) run_flush(&c);
    free(c.run);
    if (c.st && err) *err = sink_err;
    return c.st ? c.st : st;
}
