/* Byte-level BPE encoding: the pre-tokenizer cuts the text into words; each
 * word's bytes become printable characters (the GPT-2 byte map), and the
 * adjacent pair with the lowest merge rank is merged (leftmost first on
 * ties) until no pair has a merge. Each remaining symbol is its token, or
 * its bytes' tokens. With ignore_merges (Llama-3), a word that is a token
 * as a whole is that token. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"
#include "util/error.h"

typedef struct bpe_work {
    const tokenizer *t;
    char *text;        /* the current word, byte-mapped */
    size_t len;
    uint8_t *raw;      /* the raw byte behind each mapped character */
    tok_symbol *sym;
    size_t n_sym;
    char *key;         /* scratch for "left right" */
    tok_heap heap;
} bpe_work;

static bool work_init(bpe_work *w, const tokenizer *t, size_t max_word)
{
    *w = (bpe_work){.t = t};
    w->text = malloc(2 * max_word + 1);
    w->raw = malloc(max_word + 1);
    w->sym = malloc((max_word + 1) * sizeof *w->sym);
    w->key = malloc(4 * max_word + 2);
    return w->text && w->raw && w->sym && w->key;
}

static void work_free(bpe_work *w)
{
    free(w->text);
    free(w->raw);
    free(w->sym);
    free(w->key);
    tok_heap_free(&w->heap);
}

/* Maps the word's bytes; one symbol per byte. */
static void map_word(bpe_work *w, const char *word, size_t n)
{
    w->len = 0;
    w->n_sym = n;
    for (size_t i = 0; i < n; i++) {
        size_t k = tok_utf8_encode(tok_byte_to_cp((uint8_t)word[i]), w->text + w->len);
        w->raw[i] = (uint8_t)word[i];
        w->sym[i] = (tok_symbol){(int32_t)i - 1, (int32_t)i + 1, w->len, k};
        w->len += k;
    }
    w->sym[n - 1].next = -1;
}

static bool try_pair(void *ctx, int32_t left, int32_t right)
{
    bpe_work *w = ctx;
    if (left < 0 || right < 0) return true;
    const tok_symbol *l = &w->sym[left], *r = &w->sym[right];
    int32_t rank = tok_merge_rank(w->t, w->text + l->off, l->n, w->text + r->off, r->n, w->key);
    if (rank == TOK_NONE) return true;
    tok_bigram b = {(double)rank, left, right, l->n + r->n};
    return tok_heap_push(&w->heap, b);
}

static bool merge_all(bpe_work *w) { return tok_merge_all(w->sym, w->n_sym, &w->heap, try_pair, w); }

/* Symbol i spans the raw bytes i .. next-1 (symbols start at their byte). */
static strata_status emit(const bpe_work *w, tok_ids *out, strata_error *err)
{
    for (int32_t i = 0; i >= 0; i = w->sym[i].next) {
        int32_t id = tok_strmap_get(&w->t->text_to_id, w->text + w->sym[i].off, w->sym[i].n);
        size_t end = w->sym[i].next >= 0 ? (size_t)w->sym[i].next : w->n_sym;
        strata_status st = id != TOK_NONE ? tok_ids_push(out, id, err) : STRATA_OK;
        for (size_t j = (size_t)i; id == TOK_NONE && !st && j < end; j++)
            st = tok_push_byte(w->t, w->raw[j], out, err);
        if (st) return st;
    }
    return STRATA_OK;
}

static strata_status encode_word(bpe_work *w, const char *word, size_t n, tok_ids *out,
                                 strata_error *err)
{
    map_word(w, word, n);
    if (w->t->ignore_merges) {
        int32_t id = tok_strmap_get(&w->t->text_to_id, w->text, w->len);
        if (id != TOK_NONE) return tok_ids_push(out, id, err);
    }
    if (!merge_all(w)) return err_set(err, STRATA_E_NOMEM, "tokenizer: out of memory");
    return emit(w, out, err);
}

static size_t longest_word(const size_t *ends, size_t n)
{
    size_t max = 0, start = 0;
    for (size_t i = 0; i < n; start = ends[i++])
        if (ends[i] - start > max) max = ends[i] - start;
    return max;
}

strata_status tok_bpe_encode(const tokenizer *t, const char *text, size_t len, tok_ids *out,
                             strata_error *err)
{
    size_t *ends = NULL, n = 0;
    bpe_work w;
    if (len == 0) return STRATA_OK;
    if (!tok_pretokenize(t->pre, text, len, &ends, &n))
        return err_set(err, STRATA_E_NOMEM, "tokenizer: out of memory encoding %zu bytes", len);
    strata_status st = STRATA_OK;
    if (!work_init(&w, t, longest_word(ends, n)))
        st = err_set(err, STRATA_E_NOMEM, "tokenizer: out of memory encoding %zu bytes", len);
    for (size_t i = 0, start = 0; !st && i < n; start = ends[i++])
        st = encode_word(&w, text + start, ends[i] - start, out, err);
    work_free(&w);
    free(ends);
    return st;
}
