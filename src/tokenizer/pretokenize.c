/* Pre-tokenizers of byte-level BPE: the text is cut into words, each
 * encoded on its own. These are hand-written matchers for the regexes
 * (ordered alternation, as a backtracking regex engine tries them):
 *
 * GPT-2:  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)
 * Llama-3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *          ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * Qwen2:  the Llama-3 expression with \p{N} instead of \p{N}{1,3}.
 *
 * A character no alternative matches becomes a word of its own. Bytes that
 * are not valid UTF-8 count as "other" characters (as U+FFFD would). */
#include <stdlib.h>

#include "tokenizer/tok_internal.h"

typedef struct pt_text {
    uint32_t *cp;  /* code points (TOK_CP_INVALID for a stray byte) */
    uint8_t *cls;  /* enum tok_uclass of each */
    size_t *off;   /* byte offset of each, plus the end */
    size_t n;
} pt_text;

static bool decode_text(const char *text, size_t len, pt_text *t)
{
    t->cp = malloc((len + 1) * sizeof *t->cp);
    t->cls = malloc(len + 1);
    t->off = malloc((len + 1) * sizeof *t->off);
    t->n = 0;
    if (!t->cp || !t->cls || !t->off) return false;
    const unsigned char *s = (const unsigned char *)text;
    for (size_t pos = 0; pos < len; t->n++) {
        uint32_t cp;
        size_t k = tok_utf8_decode(s + pos, len - pos, &cp);
        t->cp[t->n] = cp;
        t->cls[t->n] = cp == TOK_CP_INVALID ? TOK_UC_OTHER : (uint8_t)tok_uclass_of(cp);
        t->off[t->n] = pos;
        pos += k;
    }
    t->off[t->n] = len;
    return true;
}

static void free_text(pt_text *t)
{
    free(t->cp);
    free(t->cls);
    free(t->off);
}

static uint32_t at(const pt_text *t, size_t i) { return i < t->n ? t->cp[i] : TOK_CP_INVALID; }

static bool is_cls(const pt_text *t, size_t i, uint8_t cls) { return i < t->n && t->cls[i] == cls; }

static bool is_crlf(const pt_text *t, size_t i) { return at(t, i) == '\r' || at(t, i) == '\n'; }

/* Length of the run of class `cls` starting at i. */
static size_t run(const pt_text *t, size_t i, uint8_t cls)
{
    size_t k = 0;
    while (is_cls(t, i + k, cls)) k++;
    return k;
}

static uint32_t lower(uint32_t c, bool any_case) { return any_case && c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* 's 't 're 've 'm 'll 'd (optionally case-insensitive): length or 0. */
static size_t contraction(const pt_text *t, size_t i, bool any_case)
{
    if (at(t, i) != '\'') return 0;
    uint32_t a = lower(at(t, i + 1), any_case), b = lower(at(t, i + 2), any_case);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* \s+(?!\S), falling back to a single whitespace character. */
static size_t spaces_not_before_text(const pt_text *t, size_t i)
{
    size_t w = run(t, i, TOK_UC_SPACE);
    if (i + w == t->n || w <= 1) return w ? w : 1;
    return w - 1;
}

static size_t match_gpt2(const pt_text *t, size_t i)
{
    size_t k = contraction(t, i, false);
    if (k) return k;
    size_t sp = at(t, i) == ' ';
    if (i + sp < t->n) {
        uint8_t c = t->cls[i + sp];
        if (c != TOK_UC_SPACE) return sp + run(t, i + sp, c); /* ?\p{L}+ | ?\p{N}+ | ?[^\s\p{L}\p{N}]+ */
    }
    return spaces_not_before_text(t, i);
}

/* \s*[\r\n]+ : up to the last CR/LF of the whitespace run, or 0. */
static size_t spaces_to_newline(const pt_text *t, size_t i)
{
    size_t w = run(t, i, TOK_UC_SPACE), k = 0;
    for (size_t j = 0; j < w; j++)
        if (is_crlf(t, i + j)) k = j + 1;
    return k;
}

static size_t match_llama3(const pt_text *t, size_t i, size_t max_digits)
{
    size_t k = contraction(t, i, true);
    if (k) return k;
    uint8_t c = t->cls[i];
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (c != TOK_UC_LETTER && c != TOK_UC_NUMBER && !is_crlf(t, i) &&
        is_cls(t, i + 1, TOK_UC_LETTER))
        return 1 + run(t, i + 1, TOK_UC_LETTER);
    if (c == TOK_UC_LETTER) return run(t, i, TOK_UC_LETTER);
    if (c == TOK_UC_NUMBER) { /* \p{N}{1,max_digits} */
        k = run(t, i, TOK_UC_NUMBER);
        return k < max_digits ? k : max_digits;
    }
    /* ?[^\s\p{L}\p{N}]+[\r\n]* */
    size_t sp = at(t, i) == ' ';
    if (is_cls(t, i + sp, TOK_UC_OTHER)) {
        k = sp + run(t, i + sp, TOK_UC_OTHER);
        while (is_crlf(t, i + k)) k++;
        return k;
    }
    k = spaces_to_newline(t, i);
    return k ? k : spaces_not_before_text(t, i); /* \s+(?!\S) | \s+ */
}

static size_t match_at(tok_pre pre, const pt_text *t, size_t i)
{
    switch (pre) {
    case TOK_PRE_LLAMA3: return match_llama3(t, i, 3);
    case TOK_PRE_QWEN2: return match_llama3(t, i, 1);
    default: return match_gpt2(t, i);
    }
}

bool tok_pretokenize(tok_pre pre, const char *text, size_t len, size_t **ends, size_t *n_ends)
{
    pt_text t;
    bool ok = decode_text(text, len, &t);
    size_t *e = ok ? malloc((t.n + 1) * sizeof *e) : NULL;
    size_t n = 0;
    if (e) {
        for (size_t i = 0; i < t.n;) {
            i += match_at(pre, &t, i);
            e[n++] = t.off[i];
        }
    }
    free_text(&t);
    *ends = e;
    *n_ends = n;
    return e != NULL;
}
