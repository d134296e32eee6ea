/* The matchers of the pre-tokenizer regexes, hand-written. Each follows a
 * backtracking regex engine's answer (ordered alternation, greedy
 * quantifiers) for the regex named above it, as llama.cpp runs it:
 *  - \s is the White_Space property, \p{L} \p{N} \p{P} the Unicode general
 *    categories; a stray byte of invalid UTF-8 is in none of them;
 *  - [^a-z] / [^A-Z] in the Tekken rule compare code points, so every letter
 *    outside ASCII counts as both upper and lower case there.
 * No matcher reads a character twice except a bounded number of times, so
 * every rule runs in linear time (the tests count the characters read). */
#include "tokenizer/pretok.h"

static bool is_crlf(const pt_view *v, size_t i)
{
    uint32_t c = pt_cp(v, i);
    return c == '\r' || c == '\n';
}

/* Length of the run of class `cls` at i. */
static size_t run(const pt_view *v, size_t i, unsigned cls)
{
    size_t k = 0;
    while (pt_cls(v, i + k) == cls) k++;
    return k;
}

static uint32_t lower(uint32_t c, bool any_case) { return any_case && c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* 's 't 're 've 'm 'll 'd (optionally case-insensitive): length or 0. */
static size_t contraction(const pt_view *v, size_t i, bool any_case)
{
    if (pt_cp(v, i) != '\'') return 0;
    uint32_t a = lower(pt_cp(v, i + 1), any_case);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    uint32_t b = lower(pt_cp(v, i + 2), any_case);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* \s+(?!\S): the whitespace run, less its last character when text
 * follows; 0 for one whitespace character before text. */
static size_t spaces_not_before_text(const pt_view *v, size_t i)
{
    size_t w = run(v, i, TOK_UC_SPACE);
    if (w == 0 || i + w == v->end) return w;
    return w - 1;
}

/* \s*[\r\n]+ : up to the last CR/LF of the whitespace run, or 0. */
static size_t spaces_to_newline(const pt_view *v, size_t i)
{
    size_t k = 0;
    for (size_t j = 0; pt_cls(v, i + j) == TOK_UC_SPACE; j++)
        if (is_crlf(v, i + j)) k = j + 1;
    return k;
}

/* " ?[^\s\p{L}\p{N}]+[TAIL]*" where TAIL is CR, LF and, when `slash`, '/'. */
static size_t other_run(const pt_view *v, size_t i, bool slash)
{
    size_t sp = pt_cp(v, i) == ' ';
    size_t k = run(v, i + sp, TOK_UC_OTHER);
    if (k == 0) return 0;
    k += sp;
    for (;; k++) {
        uint32_t c = pt_cp(v, i + k);
        if (c != '\r' && c != '\n' && !(slash && c == '/')) return k;
    }
}

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S) */
size_t pt_gpt2(const pt_view *v, size_t i)
{
    size_t k = contraction(v, i, false);
    if (k) return k;
    size_t sp = pt_cp(v, i) == ' ';
    unsigned c = pt_cls(v, i + sp);
    if (c != TOK_UC_SPACE && c != PT_END) return sp + run(v, i + sp, c);
    return spaces_not_before_text(v, i);
}

/* The whitespace alternatives the Llama-3 family ends with:
 * \s*[\r\n]+|\s+(?!\S)|\s+ (i is whitespace here). */
static size_t llama3_spaces(const pt_view *v, size_t i)
{
    size_t k = spaces_to_newline(v, i);
    if (!k) k = spaces_not_before_text(v, i);
    return k ? k : 1;
}

/* Llama-3 with \p{N}{1,max_digits}:
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t llama3_digits(const pt_view *v, size_t i, size_t max_digits)
{
    size_t k = contraction(v, i, true);
    if (k) return k;
    unsigned c = pt_cls(v, i);
    if (c == TOK_UC_LETTER) return run(v, i, c);
    if (c == TOK_UC_NUMBER) {
        /* bounded: the rest of a long digit run is not read now */
        while (k < max_digits && pt_cls(v, i + k) == TOK_UC_NUMBER) k++;
        return k;
    }
    if (!is_crlf(v, i) && pt_cls(v, i + 1) == TOK_UC_LETTER) return 1 + run(v, i + 1, TOK_UC_LETTER);
    k = other_run(v, i, false);
    return k ? k : llama3_spaces(v, i);
}

size_t pt_llama3(const pt_view *v, size_t i) { return llama3_digits(v, i, 3); }

/* Qwen2: the Llama-3 expression with \p{N} for \p{N}{1,3}. */
size_t pt_qwen2(const pt_view *v, size_t i) { return llama3_digits(v, i, 1); }

/* Tekken's "upper" class [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}] as llama.cpp writes
 * it, (?=[\p{L}])([^a-z]): a letter other than a-z; "lower" likewise is a
 * letter other than A-Z. */
static bool tk_upper(const pt_view *v, size_t i)
{
    uint32_t c = pt_cp(v, i);
    return pt_cls(v, i) == TOK_UC_LETTER && !(c >= 'a' && c <= 'z');
}

static bool tk_lower(const pt_view *v, size_t i)
{
    uint32_t c = pt_cp(v, i);
    return pt_cls(v, i) == TOK_UC_LETTER && !(c >= 'A' && c <= 'Z');
}

/* U*L+|U+L* at a letter s (U, L: the classes above). U* takes the longest
 * run of U; if an L follows, L+ takes its run. Otherwise U* gives back
 * characters until one of them is also an L (a non-ASCII letter), which
 * ends the match; with none, the second alternative takes the U run. */
static size_t tekken_word(const pt_view *v, size_t s)
{
    size_t a = 0, both = 0; /* both: 1 + the last U that is also an L */
    for (; tk_upper(v, s + a); a++)
        if (pt_cp(v, s + a) >= 0x80) both = a + 1;
    if (tk_lower(v, s + a)) {
        size_t k = a;
        while (tk_lower(v, s + k)) k++;
        return k;
    }
    return both ? both : a;
}

/* Tekken (Mistral Nemo), as llama.cpp adapts it:
 * [^\r\n\p{L}\p{N}]?U*L+|[^\r\n\p{L}\p{N}]?U+L*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|
 * \s*[\r\n]+|\s+(?!\S)|\s+ */
size_t pt_tekken(const pt_view *v, size_t i)
{
    unsigned c = pt_cls(v, i);
    if (c == TOK_UC_LETTER) return tekken_word(v, i);
    if (c == TOK_UC_NUMBER) return 1;
    if (!is_crlf(v, i) && pt_cls(v, i + 1) == TOK_UC_LETTER) return 1 + tekken_word(v, i + 1);
    size_t k = other_run(v, i, true);
    return k ? k : llama3_spaces(v, i);
}

/* ---- the steps of the multi-regex rules ---- */

typedef bool (*pt_pred)(const pt_view *v, size_t i);

static size_t pred_run(const pt_view *v, size_t i, pt_pred in)
{
    size_t k = 0;
    while (in(v, i + k)) k++;
    return k;
}

/* \s?X+ : a whitespace character is taken only when an X follows it. */
static size_t space_then_run(const pt_view *v, size_t i, pt_pred in)
{
    if (pt_cls(v, i) == TOK_UC_SPACE && in(v, i + 1)) return 1 + pred_run(v, i + 1, in);
    return pred_run(v, i, in);
}

static bool in_range(uint32_t c, uint32_t lo, uint32_t hi) { return c >= lo && c <= hi; }

static bool is_number(const pt_view *v, size_t i) { return pt_cls(v, i) == TOK_UC_NUMBER; }
static bool is_letter(const pt_view *v, size_t i) { return pt_cls(v, i) == TOK_UC_LETTER; }

static bool is_punct(const pt_view *v, size_t i)
{
    uint32_t c = pt_cp(v, i);
    return c != TOK_CP_INVALID && tok_is_punct(c);
}

/* \p{P} plus the ASCII symbols GPT-2-era tokenizers group with punctuation. */
static bool is_punct_default(const pt_view *v, size_t i)
{
    uint32_t c = pt_cp(v, i);
    return c == '$' || c == '+' || c == '<' || c == '=' || c == '>' || c == '^' || c == '~' ||
           c == '|' || (c != TOK_CP_INVALID && tok_is_punct(c));
}

static bool is_punct_falcon(const pt_view *v, size_t i)
{
    return pt_cp(v, i) == '`' || is_punct_default(v, i);
}

static bool is_ds_letter(const pt_view *v, size_t i)
{
    uint32_t c = pt_cp(v, i);
    return c != TOK_CP_INVALID && tok_is_deepseek_letter(c);
}

/* [!-/:-~] covers all printable ASCII but digits and space (letters too). */
static bool is_ds_punct(const pt_view *v, size_t i)
{
    uint32_t c = pt_cp(v, i);
    return in_range(c, '!', '/') || in_range(c, ':', '~') || in_range(c, 0xFF01, 0xFF0F) ||
           in_range(c, 0xFF1A, 0xFF5E) || in_range(c, 0x2018, 0x201F) || in_range(c, 0x3000, 0x3002);
}

static bool is_cjk(const pt_view *v, size_t i)
{
    uint32_t c = pt_cp(v, i);
    return in_range(c, 0x0800, 0x9FA5) || in_range(c, 0xAC00, 0xD7FF);
}

size_t pt_crlf(const pt_view *v, size_t i) { return is_crlf(v, i); }
size_t pt_number(const pt_view *v, size_t i) { return is_number(v, i); }
size_t pt_numbers(const pt_view *v, size_t i) { return pred_run(v, i, is_number); }

size_t pt_three_digits(const pt_view *v, size_t i)
{
    for (size_t k = 0; k < 3; k++)
        if (!in_range(pt_cp(v, i + k), '0', '9')) return 0;
    return 3;
}

size_t pt_punct_default(const pt_view *v, size_t i) { return pred_run(v, i, is_punct_default); }
size_t pt_punct_falcon(const pt_view *v, size_t i) { return pred_run(v, i, is_punct_falcon); }
size_t pt_sp_letters(const pt_view *v, size_t i) { return space_then_run(v, i, is_letter); }
size_t pt_sp_punct(const pt_view *v, size_t i) { return space_then_run(v, i, is_punct); }
size_t pt_sp_ds_letters(const pt_view *v, size_t i) { return space_then_run(v, i, is_ds_letter); }
size_t pt_sp_ds_punct(const pt_view *v, size_t i) { return space_then_run(v, i, is_ds_punct); }
size_t pt_cjk(const pt_view *v, size_t i) { return pred_run(v, i, is_cjk); }

size_t pt_find_trailing_space(const pt_view *v, size_t i, size_t *at)
{
    size_t s = v->end;
    while (s > i && pt_cls(v, s - 1) == TOK_UC_SPACE) s--;
    *at = s;
    return v->end - s;
}
