/* The token-by-token detokenizer: each token's piece goes through the
 * streaming UTF-8 validator, so callers only ever see complete characters. */
#include <stdlib.h>

#include "tokenizer/tok_internal.h"

struct tok_stream {
    const tokenizer *t;
    unsigned flags;
    bool started;   /* some text was produced (for TOK_DECODE_STRIP_SPACE) */
    tok_utf8_stream utf8;
    char *buf;
    size_t cap;
};

tok_stream *tok_stream_new(const tokenizer *t, unsigned flags)
{
    tok_stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->t = t;
    s->flags = flags;
    tok_utf8_stream_init(&s->utf8);
    return s;
}

void tok_stream_free(tok_stream *s)
{
    if (!s) return;
    free(s->buf);
    free(s);
}

static bool reserve(tok_stream *s, size_t n)
{
    if (n <= s->cap) return true;
    size_t cap = n < 64 ? 64 : n;
    char *b = realloc(s->buf, cap);
    if (!b) return false;
    s->buf = b;
    s->cap = cap;
    return true;
}

const char *tok_stream_push(tok_stream *s, int32_t id, size_t *len)
{
    size_t n;
    const char *p = tokenizer_piece(s->t, id, s->flags, &n);
    *len = 0;
    if (!p || !reserve(s, TOK_UTF8_STREAM_MAX_OUT(n) + 1)) return NULL;
    if (!s->started && n > 0) {
        s->started = true;
        if ((s->flags & TOK_DECODE_STRIP_SPACE) && s->t->add_space_prefix && p[0] == ' ') {
            p++;
            n--;
        }
    }
    *len = tok_utf8_stream_feed(&s->utf8, p, n, s->buf);
    s->buf[*len] = '\0';
    return s->buf;
}

const char *tok_stream_finish(tok_stream *s, size_t *len)
{
    *len = 0;
    if (!reserve(s, 4)) return NULL;
    *len = tok_utf8_stream_flush(&s->utf8, s->buf);
    s->buf[*len] = '\0';
    return s->buf;
}
