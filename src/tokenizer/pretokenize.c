/* Pre-tokenizers of byte-level BPE: the text is cut into words, each
 * encoded on its own. A rule is the sequence of regexes llama.cpp's
 * llama-vocab.cpp gives its `tokenizer.ggml.pre` names, applied as there:
 * the first regex cuts the text into its matches and the text between them
 * (each a piece), the next regex cuts each piece the same way, and so on.
 * The regexes are hand-written matchers (pretok_match.c). Bytes that are
 * not valid UTF-8 are characters of their own in no Unicode class. */
#include <stdlib.h>

#include "tokenizer/pretok.h"

/* One regex of a rule: a matcher tried position by position, or a search. */
typedef struct pt_step {
    pt_match_fn match;
    size_t (*find)(const pt_view *v, size_t i, size_t *at);
} pt_step;

typedef struct pt_rule {
    tok_pre pre;
    const pt_step *steps;
    size_t n_steps;
} pt_rule;

/* The rules, each the list of its regexes in order. */
static const pt_step gpt2[] = {{pt_gpt2, NULL}};
static const pt_step llama3[] = {{pt_llama3, NULL}};
static const pt_step qwen2[] = {{pt_qwen2, NULL}};
static const pt_step tekken[] = {{pt_tekken, NULL}};
/* [\p{P}\$\+<=>\^~\|]+ , GPT-2, \p{N}+ , [0-9][0-9][0-9] */
static const pt_step dflt[] = {
    {pt_punct_default, NULL}, {pt_gpt2, NULL}, {pt_numbers, NULL}, {pt_three_digits, NULL}};
/* [\p{P}\$\+<=>\^~\|`]+ , GPT-2, [0-9][0-9][0-9] */
static const pt_step falcon[] = {{pt_punct_falcon, NULL}, {pt_gpt2, NULL}, {pt_three_digits, NULL}};
/* \p{N} , GPT-2 */
static const pt_step starcoder[] = {{pt_number, NULL}, {pt_gpt2, NULL}};
/* [\r\n] , \s?[letters]+ , \s?[!-/:-~...]+ , \s+$ , [CJK]+ , \p{N}+ */
static const pt_step deepseek_llm[] = {
    {pt_crlf, NULL}, {pt_sp_ds_letters, NULL}, {pt_sp_ds_punct, NULL},
    {NULL, pt_find_trailing_space}, {pt_cjk, NULL}, {pt_numbers, NULL}};
/* [\r\n] , \s?\p{L}+ , \s?\p{P}+ , [CJK]+ , \p{N} */
static const pt_step deepseek_coder[] = {
    {pt_crlf, NULL}, {pt_sp_letters, NULL}, {pt_sp_punct, NULL}, {pt_cjk, NULL}, {pt_number, NULL}};

#define RULE(pre, steps) {pre, steps, sizeof steps / sizeof steps[0]}

static const pt_rule rules[] = {
    RULE(TOK_PRE_GPT2, gpt2),
    RULE(TOK_PRE_LLAMA3, llama3),
    RULE(TOK_PRE_QWEN2, qwen2),
    RULE(TOK_PRE_TEKKEN, tekken),
    RULE(TOK_PRE_DEFAULT, dflt),
    RULE(TOK_PRE_FALCON, falcon),
    RULE(TOK_PRE_STARCODER, starcoder),
    RULE(TOK_PRE_DEEPSEEK_LLM, deepseek_llm),
    RULE(TOK_PRE_DEEPSEEK_CODER, deepseek_coder),
};

static bool decode_text(const char *text, size_t len, pt_text *t)
{
    *t = (pt_text){0};
    t->cp = malloc((len + 1) * sizeof *t->cp);
    t->cls = malloc(len + 1);
    t->off = malloc((len + 1) * sizeof *t->off);
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

/* The first match of step s in [i, v->end): its length, its start in *at. */
static size_t find_match(const pt_step *s, const pt_view *v, size_t i, size_t *at)
{
    if (s->find) return s->find(v, i, at);
    for (; i < v->end; i++) {
        size_t k = s->match(v, i);
        if (k) {
            *at = i;
            return k;
        }
    }
    return 0;
}

/* Cuts every piece of cur[] (piece ends, in characters) by step s into its
 * matches and the gaps between them; returns the number of pieces in out. */
static size_t apply_step(const pt_step *s, pt_text *t, const size_t *cur, size_t n_cur,
                         size_t *out)
{
    size_t n = 0, start = 0;
    for (size_t p = 0; p < n_cur; start = cur[p++]) {
        pt_view v = {t, cur[p]};
        for (size_t i = start, at = 0, k; i < v.end; i = at + k) {
            k = find_match(s, &v, i, &at);
            if (!k) at = v.end; /* no match: the rest of the piece is one gap */
            if (at > i) out[n++] = at; /* the gap before the match */
            if (k) out[n++] = at + k;
        }
    }
    return n;
}

static const pt_rule *find_rule(tok_pre pre)
{
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
        if (rules[i].pre == pre) return &rules[i];
    return NULL;
}

/* Runs the steps of `pre` (none: the text is one word), ping-ponging two
 * arrays of piece ends; returns the array holding the result. */
static size_t *split(tok_pre pre, pt_text *t, size_t *a, size_t *b, size_t *n)
{
    const pt_rule *r = find_rule(pre);
    *n = 0;
    if (t->n > 0) a[(*n)++] = t->n;
    for (size_t s = 0; r && s < r->n_steps; s++) {
        *n = apply_step(&r->steps[s], t, a, *n, b);
        size_t *swap = a;
        a = b;
        b = swap;
    }
    return a;
}

bool tok_pretokenize_counted(tok_pre pre, const char *text, size_t len, size_t **ends,
                             size_t *n_ends, size_t *steps)
{
    pt_text t;
    bool ok = decode_text(text, len, &t);
    size_t *a = ok ? malloc((t.n + 1) * sizeof *a) : NULL;
    size_t *b = a ? malloc((t.n + 1) * sizeof *b) : NULL;
    size_t n = 0, *res = NULL;
    if (b) {
        res = split(pre, &t, a, b, &n);
        for (size_t i = 0; i < n; i++) res[i] = t.off[res[i]]; /* characters -> bytes */
        free(res == a ? b : a);
    } else {
        free(a);
    }
    if (steps) *steps = t.steps;
    free_text(&t);
    *ends = res;
    *n_ends = n;
    return res != NULL;
}

bool tok_pretokenize(tok_pre pre, const char *text, size_t len, size_t **ends, size_t *n_ends)
{
    return tok_pretokenize_counted(pre, text, len, ends, n_ends, NULL);
}
