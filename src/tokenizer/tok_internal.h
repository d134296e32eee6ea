/* Internals of the tokenizer module: the tokenizer's layout and the pieces
 * each source file provides to the others. */
#ifndef STRATA_TOKENIZER_TOK_INTERNAL_H
#define STRATA_TOKENIZER_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

/* ---- strmap.c: byte string -> int32 hash map (open addressing) ---- */
typedef struct tok_strmap_slot {
    const char *key; /* NULL: empty slot; keys are owned by the caller */
    uint32_t len;
    uint32_t hash;
    int32_t val;
} tok_strmap_slot;

typedef struct tok_strmap {
    tok_strmap_slot *slots;
    size_t cap; /* power of two */
    size_t n;
} tok_strmap;

/* Sizes the map for `n` keys. */
bool tok_strmap_init(tok_strmap *m, size_t n);
void tok_strmap_free(tok_strmap *m);
/* Inserts key -> val; an existing key keeps its value unless `replace`. */
bool tok_strmap_put(tok_strmap *m, const char *key, size_t len, int32_t val, bool replace);
/* The value of key, or TOK_NONE. */
int32_t tok_strmap_get(const tok_strmap *m, const char *key, size_t len);

/* ---- heap.c: the work queue of candidate merges ---- */
/* A candidate merge of symbols `left` and `right` (adjacent), `size` bytes
 * long together. Lowest `prio` first; ties go to the leftmost pair. */
typedef struct tok_bigram {
    double prio;
    int32_t left;
    int32_t right;
    size_t size;
} tok_bigram;

typedef struct tok_heap {
    tok_bigram *v;
    size_t n, cap;
} tok_heap;

bool tok_heap_push(tok_heap *h, tok_bigram b);
bool tok_heap_pop(tok_heap *h, tok_bigram *out);
void tok_heap_free(tok_heap *h);

/* A symbol of the merge algorithms: a byte range of the working text in a
 * doubly linked list; n == 0 once merged into its left neighbour. */
typedef struct tok_symbol {
    int32_t prev, next;
    size_t off, n;
} tok_symbol;

/* Queues the merge of symbols left and right if the vocabulary has one
 * (either index may be -1: nothing to do); false when out of memory. */
typedef bool (*tok_pair_fn)(void *ctx, int32_t left, int32_t right);

/* The merge loop both SentencePiece and BPE use: candidate pairs of
 * adjacent symbols are queued by `pair`, then the best is merged and its
 * new neighbours are queued, until none is left. False when out of memory. */
bool tok_merge_all(tok_symbol *sym, size_t n_sym, tok_heap *heap, tok_pair_fn pair, void *ctx);

/* ---- unicode.c ---- */
enum tok_uclass {
    TOK_UC_OTHER = 0, /* neither letter, number nor whitespace */
    TOK_UC_LETTER = 1, /* \p{L} */
    TOK_UC_NUMBER = 2, /* \p{N} */
    TOK_UC_SPACE = 3,  /* \s: the White_Space property */
};

typedef struct tok_urange {
    uint32_t lo, hi;
    uint8_t cls;
} tok_urange;

extern const tok_urange tok_unicode_ranges[]; /* unicode_table.c, sorted */
extern const size_t tok_unicode_n_ranges;

enum tok_uclass tok_uclass_of(uint32_t cp);
/* Decodes one UTF-8 character at s[0..n) (n > 0). Returns its length; an
 * invalid or truncated sequence yields length 1 and *cp = TOK_CP_INVALID. */
size_t tok_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);
#define TOK_CP_INVALID 0xFFFFFFFFu
/* Writes cp as UTF-8 (1-4 bytes); returns the length. */
size_t tok_utf8_encode(uint32_t cp, char *out);

/* ---- pretokenize.c ---- */
/* Splits text[0..len) into words by rule `pre`; appends each word's end
 * offset (exclusive) to *ends. */
bool tok_pretokenize(tok_pre pre, const char *text, size_t len, size_t **ends, size_t *n_ends);

/* ---- bytemap.c: GPT-2 byte <-> printable character ---- */
uint32_t tok_byte_to_cp(uint8_t b);
/* The byte a mapped character stands for, or -1 if cp is not in the map. */
int tok_cp_to_byte(uint32_t cp);

/* ---- the tokenizer ---- */
typedef struct tok_token {
    size_t off, len; /* text in tokenizer.text */
    float score;
    uint8_t type;
} tok_token;

struct tokenizer {
    tok_model model;
    tok_pre pre;
    uint32_t n_vocab;
    tok_token *tokens;
    char *text;              /* all token texts, each NUL-terminated */
    tok_strmap text_to_id;   /* last id wins for duplicate texts */
    char *merge_text;        /* "left right" strings of the BPE merges */
    tok_strmap merge_rank;   /* "left right" -> rank (first wins) */
    int32_t byte_id[256];    /* token of each raw byte, TOK_NONE if none */
    int32_t bos, eos, eot, unk, pad;
    bool add_bos, add_eos, add_space_prefix;
    bool ignore_merges;      /* emit a word that is a token whole (Llama-3) */
    int32_t *special;        /* tokens matched literally, longest text first */
    uint32_t n_special;
    char *pieces;            /* decoded piece of every token */
    size_t *piece_off;       /* n_vocab + 1 offsets into pieces */
};

/* config.c: model family and pre-tokenizer (first), then, once the
 * vocabulary is loaded, the special ids and flags. */
strata_status tok_load_kind(tokenizer *t, const gguf_file *f, strata_error *err);
strata_status tok_load_config(tokenizer *t, const gguf_file *f, strata_error *err);
/* vocab.c: tokens, scores, types, the text map and byte tokens. */
strata_status tok_load_vocab(tokenizer *t, const gguf_file *f, strata_error *err);
/* merges.c */
strata_status tok_load_merges(tokenizer *t, const gguf_file *f, strata_error *err);
/* Rank of merging pieces a and b, or TOK_NONE. `scratch` holds
 * alen + blen + 1 bytes. */
int32_t tok_merge_rank(const tokenizer *t, const char *a, size_t alen, const char *b,
                       size_t blen, char *scratch);
/* special.c */
strata_status tok_collect_special(tokenizer *t, strata_error *err);

/* A piece of the input after special-token matching: raw text (id ==
 * TOK_NONE) or one special token. */
typedef struct tok_fragment {
    int32_t id;
    size_t off, len;
} tok_fragment;

bool tok_partition(const tokenizer *t, const char *text, size_t len, bool parse_special,
                   tok_fragment **frags, size_t *n_frags);

/* spm.c / bpe.c: encode one raw-text fragment, appending to out. */
strata_status tok_spm_encode(const tokenizer *t, const char *text, size_t len,
                             bool space_prefix, tok_ids *out, strata_error *err);
strata_status tok_bpe_encode(const tokenizer *t, const char *text, size_t len, tok_ids *out,
                             strata_error *err);
/* The token for raw byte b (byte token, else the unknown token); appends it
 * or fails naming the byte. */
strata_status tok_push_byte(const tokenizer *t, uint8_t b, tok_ids *out, strata_error *err);

/* decode.c */
strata_status tok_build_pieces(tokenizer *t, strata_error *err);

#endif
