/* Internals of the byte-level BPE pre-tokenizers: the decoded text the
 * matchers work on, the matchers (pretok_match.c), the Unicode sets beyond
 * tok_uclass_of (pretok_tables.c) and a test hook (pretokenize.c). */
#ifndef STRATA_TOKENIZER_PRETOK_H
#define STRATA_TOKENIZER_PRETOK_H

#include "tokenizer/tok_internal.h"

typedef struct pt_text {
    uint32_t *cp;  /* code points (TOK_CP_INVALID for a stray byte) */
    uint8_t *cls;  /* enum tok_uclass of each */
    size_t *off;   /* byte offset of each, plus the end */
    size_t n;
    size_t steps;  /* characters examined so far (tests check it stays linear) */
} pt_text;

/* The piece a step works on ends at `end`: as in llama.cpp, each regex of a
 * sequence runs on the pieces the previous ones made, so a matcher sees
 * nothing at or past the end of its piece (lookaheads included). */
typedef struct pt_view {
    pt_text *t;
    size_t end;
} pt_view;

#define PT_END 0xFFu /* pt_cls at or past the end of the piece */

static inline uint32_t pt_cp(const pt_view *v, size_t i)
{
    if (i >= v->end) return TOK_CP_INVALID;
    v->t->steps++;
    return v->t->cp[i];
}

static inline unsigned pt_cls(const pt_view *v, size_t i)
{
    if (i >= v->end) return PT_END;
    v->t->steps++;
    return v->t->cls[i];
}

/* A matcher: the length of its regex's match starting exactly at i (in
 * characters), 0 when there is none. Each runs in time proportional to what
 * it examines, and a failing attempt examines O(1) characters, so searching
 * a piece position by position stays linear. */
typedef size_t (*pt_match_fn)(const pt_view *v, size_t i);

/* Whole rules. */
size_t pt_gpt2(const pt_view *v, size_t i);
size_t pt_llama3(const pt_view *v, size_t i);
size_t pt_qwen2(const pt_view *v, size_t i);
size_t pt_tekken(const pt_view *v, size_t i);

/* Steps of the multi-regex rules, named after their regex. */
size_t pt_crlf(const pt_view *v, size_t i);            /* [\r\n] */
size_t pt_number(const pt_view *v, size_t i);          /* \p{N} */
size_t pt_numbers(const pt_view *v, size_t i);         /* \p{N}+ */
size_t pt_three_digits(const pt_view *v, size_t i);    /* [0-9][0-9][0-9] */
size_t pt_punct_default(const pt_view *v, size_t i);   /* [\p{P}\$\+<=>\^~\|]+ */
size_t pt_punct_falcon(const pt_view *v, size_t i);    /* [\p{P}\$\+<=>\^~\|`]+ */
size_t pt_sp_letters(const pt_view *v, size_t i);      /* \s?\p{L}+ */
size_t pt_sp_punct(const pt_view *v, size_t i);        /* \s?\p{P}+ */
size_t pt_sp_ds_letters(const pt_view *v, size_t i);   /* \s?[A-Za-z\u00B5\u00C0-...]+ (DeepSeek LLM) */
size_t pt_sp_ds_punct(const pt_view *v, size_t i);     /* \s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+ */
size_t pt_cjk(const pt_view *v, size_t i);             /* [\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+ */
/* \s+$ matches only the whitespace that ends the piece: a search, not a
 * matcher, so a long run of whitespace before text is not rescanned. Returns
 * the match's length and its start in *at, or 0. */
size_t pt_find_trailing_space(const pt_view *v, size_t i, size_t *at);

/* pretok_tables.c */
bool tok_is_punct(uint32_t cp);          /* \p{P}: general category P* */
bool tok_is_deepseek_letter(uint32_t cp); /* the letter class of DeepSeek LLM's regex */

/* tok_pretokenize that also reports how many characters the matchers
 * examined (*steps), for the tests that check every rule is linear. */
bool tok_pretokenize_counted(tok_pre pre, const char *text, size_t len, size_t **ends,
                             size_t *n_ends, size_t *steps);

#endif
