/* Decoding: every token's piece (the bytes it stands for) is computed once
 * when the tokenizer is built; decoding concatenates pieces. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"
#include "util/error.h"

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* "<0xNN>" -> NN, or -1. */
static int parse_byte_token(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int hi = hex_digit(s[3]), lo = hex_digit(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* SentencePiece: U+2581 -> ' '. */
static size_t unescape_spaces(const char *s, size_t n, char *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (i + 2 < n && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
            out[k++] = ' ';
            i += 2;
        } else {
            out[k++] = s[i];
        }
    }
    return k;
}

/* Byte-level BPE: each mapped character -> its byte (others kept as is). */
static size_t unmap_bytes(const char *s, size_t n, char *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = tok_utf8_decode((const unsigned char *)s + i, n - i, &cp);
        int b = cp == TOK_CP_INVALID ? -1 : tok_cp_to_byte(cp);
        if (b >= 0) {
            out[k++] = (char)b;
        } else {
            memcpy(out + k, s + i, len);
            k += len;
        }
        i += len;
    }
    return k;
}

/* The piece of one token into out (never longer than its text). */
static size_t make_piece(const tokenizer *t, const tok_token *tk, char *out)
{
    const char *s = t->text + tk->off;
    int byte;
    switch (tk->type) {
    case TOK_TYPE_CONTROL:
    case TOK_TYPE_UNKNOWN:
    case TOK_TYPE_UNUSED: return 0;
    case TOK_TYPE_USER_DEFINED: memcpy(out, s, tk->len); return tk->len;
    case TOK_TYPE_BYTE:
        byte = parse_byte_token(s, tk->len);
        if (byte >= 0) {
            out[0] = (char)byte;
            return 1;
        }
        break;
    default: break;
    }
    return t->model == TOK_MODEL_SPM ? unescape_spaces(s, tk->len, out)
                                     : unmap_bytes(s, tk->len, out);
}

strata_status tok_build_pieces(tokenizer *t, strata_error *err)
{
    size_t total = 1;
    for (uint32_t i = 0; i < t->n_vocab; i++) total += t->tokens[i].len;
    t->pieces = malloc(total);
    t->piece_off = malloc((t->n_vocab + (size_t)1) * sizeof *t->piece_off);
    if (!t->pieces || !t->piece_off)
        return err_set(err, STRATA_E_NOMEM, "tokenizer: out of memory for token pieces");
    size_t off = 0;
    for (uint32_t i = 0; i < t->n_vocab; i++) {
        t->piece_off[i] = off;
        off += make_piece(t, &t->tokens[i], t->pieces + off);
    }
    t->piece_off[t->n_vocab] = off;
    return STRATA_OK;
}

const char *tokenizer_piece(const tokenizer *t, int32_t id, unsigned flags, size_t *len)
{
    *len = 0;
    if (id < 0 || (uint32_t)id >= t->n_vocab) return NULL;
    const tok_token *tk = &t->tokens[id];
    if ((flags & TOK_DECODE_SPECIAL) &&
        (tk->type == TOK_TYPE_CONTROL || tk->type == TOK_TYPE_UNKNOWN)) {
        *len = tk->len;
        return t->text + tk->off;
    }
    *len = t->piece_off[id + 1] - t->piece_off[id];
    return t->pieces + t->piece_off[id];
}

char *tokenizer_decode(const tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                       size_t *len)
{
    size_t total = 0, k, plen;
    *len = 0;
    for (size_t i = 0; i < n; i++) {
        if (!tokenizer_piece(t, ids[i], flags, &plen)) return NULL;
        total += plen;
    }
    char *out = malloc(total + 1);
    if (!out) return NULL;
    k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = tokenizer_piece(t, ids[i], flags, &plen);
        memcpy(out + k, p, plen);
        k += plen;
    }
    size_t skip = (flags & TOK_DECODE_STRIP_SPACE) && t->add_space_prefix && k > 0 &&
                  out[0] == ' ';
    memmove(out, out + skip, k - skip);
    out[k - skip] = '\0';
    *len = k - skip;
    return out;
}
