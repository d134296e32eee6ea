/* The generator's tokenizer metadata: copied from another GGUF, or a made-up
 * SentencePiece-style vocabulary (special tokens, the 256 byte-fallback
 * tokens, then letter pieces with and without the U+2581 word marker). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "synth.h"
#include "util/error.h"

#define SPECIALS 3
#define BYTE_TOKENS 256
#define MIN_VOCAB (SPECIALS + BYTE_TOKENS + 1)
#define WORD_MARK "\xe2\x96\x81" /* U+2581, SentencePiece's space */

static strata_status copy_vocab(gguf_writer *w, const synth_options *o, synth_shape *s, strata_error *err)
{
    gguf_file *src;
    strata_status st = gguf_open(o->vocab_from, &src, err);
    if (st) return st;
    gguf_array tokens;
    if (!gguf_get_arr(src, "tokenizer.ggml.tokens", &tokens) || tokens.type != GGUF_TYPE_STRING || tokens.n == 0) {
        gguf_close(src);
        return err_set(err, STRATA_E_FORMAT, "%s: no tokenizer.ggml.tokens string array to copy", o->vocab_from);
    }
    s->vocab = tokens.n;
    for (uint64_t i = 0; i < src->n_kv && !st; i++)
        if (!strncmp(src->kv[i].key.ptr, "tokenizer.", 10))
            st = gguf_writer_set(w, src->kv[i].key.ptr, &src->kv[i].value, err);
    gguf_close(src);
    return st;
}

/* Piece i (0-based) of the enumeration: every string over a..z of length
 * 1, 2, 3, ... in order, each first with the word marker, then without. */
static void nth_piece(uint64_t i, char *out)
{
    bool marked = (i % 2) == 0;
    uint64_t k = i / 2, len = 1, count = 26;
    while (k >= count) {
        k -= count;
        len++;
        count *= 26;
    }
    char *p = out;
    if (marked) p += sprintf(p, WORD_MARK);
    for (uint64_t j = len; j-- > 0;) {
        p[j] = (char)('a' + k % 26);
        k /= 26;
    }
    p[len] = '\0';
}

static char *make_token(uint64_t id)
{
    char buf[64];
    if (id == 0) strcpy(buf, "<unk>");
    else if (id == 1) strcpy(buf, "<s>");
    else if (id == 2) strcpy(buf, "</s>");
    else if (id < SPECIALS + BYTE_TOKENS) snprintf(buf, sizeof buf, "<0x%02X>", (unsigned)(id - SPECIALS));
    else if (id == SPECIALS + BYTE_TOKENS) strcpy(buf, WORD_MARK);
    else nth_piece(id - SPECIALS - BYTE_TOKENS - 1, buf);
    return strdup(buf);
}

/* SentencePiece token types: 1 normal, 2 unknown, 3 control, 6 byte. */
static int32_t token_type(uint64_t id)
{
    if (id == 0) return 2;
    if (id < SPECIALS) return 3;
    if (id < SPECIALS + BYTE_TOKENS) return 6;
    return 1;
}

static strata_status made_vocab(gguf_writer *w, uint64_t n, strata_error *err)
{
    if (n < MIN_VOCAB) return err_set(err, STRATA_E_INVALID, "strata-synth: --vocab must be at least %d", MIN_VOCAB);
    char **tokens = calloc(n, sizeof *tokens);
    float *scores = malloc(n * sizeof *scores);
    int32_t *types = malloc(n * sizeof *types);
    strata_status st = STRATA_OK;
    if (!tokens || !scores || !types) st = err_set(err, STRATA_E_NOMEM, "strata-synth: out of memory for the vocabulary");
    for (uint64_t i = 0; i < n && !st; i++) {
        if (!(tokens[i] = make_token(i))) st = err_set(err, STRATA_E_NOMEM, "strata-synth: out of memory");
        scores[i] = token_type(i) == 1 ? -(float)i : 0.0f; /* shorter pieces merge first */
        types[i] = token_type(i);
    }
    if (!st) st = gguf_writer_set_str(w, "tokenizer.ggml.model", "llama", err);
    if (!st) st = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)tokens, n, err);
    if (!st) st = gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_F32, scores, n, err);
    if (!st) st = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_I32, types, n, err);
    if (!st) st = gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0, err);
    if (!st) st = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1, err);
    if (!st) st = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2, err);
    if (!st) st = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true, err);
    for (uint64_t i = 0; tokens && i < n; i++) free(tokens[i]);
    free(tokens);
    free(scores);
    free(types);
    return st;
}

strata_status synth_vocab(gguf_writer *w, const synth_options *o, synth_shape *s, strata_error *err)
{
    return o->vocab_from ? copy_vocab(w, o, s, err) : made_vocab(w, s->vocab, err);
}
