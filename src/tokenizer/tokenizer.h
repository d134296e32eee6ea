/* Tokenizers built from a GGUF file's vocabulary metadata.
 *
 * Two families, chosen by `tokenizer.ggml.model`:
 *  - "llama": SentencePiece-style. Spaces become U+2581, a space is put in
 *    front of the text (add_space_prefix, default true), then adjacent
 *    pieces are merged, highest score first, as long as the merged piece is
 *    in the vocabulary; characters left over that are not in the vocabulary
 *    become byte tokens <0xNN>.
 *  - "gpt2": byte-level BPE. The text is split into words by the
 *    pre-tokenizer named in `tokenizer.ggml.pre` (llama.cpp's names and
 *    rules: "gpt-2", "llama-bpe", "qwen2", "deepseek-llm", "tekken", ...;
 *    absent: llama.cpp's "default" rule), each byte is mapped to a
 *    printable character (the GPT-2 byte-to-unicode table) and the merges
 *    are applied in rank order.
 *
 * A tokenizer owns copies of everything it needs: the gguf_file may be
 * closed after tokenizer_from_gguf returns. It is immutable afterwards, so
 * several threads may encode and decode with one tokenizer at once.
 */
#ifndef STRATA_TOKENIZER_TOKENIZER_H
#define STRATA_TOKENIZER_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "strata.h"

typedef struct tokenizer tokenizer;

typedef enum tok_model {
    TOK_MODEL_SPM = 1, /* "llama" */
    TOK_MODEL_BPE = 2, /* "gpt2" */
} tok_model;

/* The split rules of byte-level BPE (regexes: src/tokenizer/pretokenize.c);
 * several `tokenizer.ggml.pre` names share one (src/tokenizer/config.c). */
typedef enum tok_pre {
    TOK_PRE_NONE = 0,   /* SentencePiece: no pre-tokenizer */
    TOK_PRE_GPT2 = 1,   /* 's|'t|... | ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S) */
    TOK_PRE_LLAMA3 = 2, /* digits in groups of up to three, case-insensitive contractions */
    TOK_PRE_QWEN2 = 3,  /* the Llama-3 rule with single digits */
    TOK_PRE_DEFAULT = 4,        /* llama.cpp's "default": punctuation runs, GPT-2, digits by 3 */
    TOK_PRE_FALCON = 5,         /* punctuation runs, GPT-2, digits by 3 */
    TOK_PRE_STARCODER = 6,      /* single digits, then GPT-2 */
    TOK_PRE_DEEPSEEK_LLM = 7,   /* newlines, letter and punctuation runs, CJK, numbers */
    TOK_PRE_DEEPSEEK_CODER = 8, /* newlines, letters, punctuation, CJK, single digits */
    TOK_PRE_TEKKEN = 9,         /* Llama-3-like, words split at case changes, single digits */
} tok_pre;

/* Token types as stored in tokenizer.ggml.token_type. */
typedef enum tok_type {
    TOK_TYPE_UNDEFINED = 0,
    TOK_TYPE_NORMAL = 1,
    TOK_TYPE_UNKNOWN = 2,
    TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4,
    TOK_TYPE_UNUSED = 5,
    TOK_TYPE_BYTE = 6,
} tok_type;

#define TOK_NONE (-1) /* "no such token" for special ids and look-ups */

/* A growable vector of token ids (zero-initialize; free with tok_ids_free). */
typedef struct tok_ids {
    int32_t *ids;
    size_t n;
    size_t cap;
} tok_ids;

void tok_ids_free(tok_ids *v);
strata_status tok_ids_push(tok_ids *v, int32_t id, strata_error *err);

/* ---- loading ---- */

/* Builds the tokenizer described by f's tokenizer.ggml.* keys. Errors: no
 * tokenizer (STRATA_E_FORMAT), an unknown model or pre-tokenizer name
 * (STRATA_E_UNSUPPORTED), arrays of the wrong type or length, special ids
 * out of range, malformed merges (STRATA_E_FORMAT). A special id stored as
 * 0xFFFFFFFF or -1 means "none". */
strata_status tokenizer_from_gguf(const gguf_file *f, tokenizer **out, strata_error *err);
void tokenizer_free(tokenizer *t);

/* ---- vocabulary ---- */

tok_model tokenizer_model(const tokenizer *t);
tok_pre tokenizer_pre(const tokenizer *t);
uint32_t tokenizer_n_vocab(const tokenizer *t);
int32_t tokenizer_bos(const tokenizer *t); /* TOK_NONE when absent */
int32_t tokenizer_eos(const tokenizer *t);
int32_t tokenizer_eot(const tokenizer *t); /* tokenizer.ggml.eot_token_id */
int32_t tokenizer_unk(const tokenizer *t);
int32_t tokenizer_pad(const tokenizer *t);
bool tokenizer_add_bos(const tokenizer *t);
bool tokenizer_add_eos(const tokenizer *t);
bool tokenizer_add_space_prefix(const tokenizer *t);
/* True for the tokens that end a generation: EOS, EOT, and the turn ends
 * of chat templates (<|im_end|>, <|eot_id|>, <end_of_turn>, <|end|>) when
 * the vocabulary marks them control or user-defined. */
bool tokenizer_is_eog(const tokenizer *t, int32_t id);

/* The token's text exactly as stored in the vocabulary (e.g. "\xe2\x96\x81the",
 * "<0x0A>", "Ġthe"); NULL for an id out of range. */
const char *tokenizer_token_text(const tokenizer *t, int32_t id, size_t *len);
tok_type tokenizer_token_type(const tokenizer *t, int32_t id);
float tokenizer_token_score(const tokenizer *t, int32_t id);
/* The id whose stored text is exactly text[0..len), or TOK_NONE. */
int32_t tokenizer_find(const tokenizer *t, const char *text, size_t len);

/* ---- encoding ---- */

typedef struct tok_encode_opts {
    bool add_bos;       /* prepend BOS (error if the model has none) */
    bool add_eos;       /* append EOS */
    /* Match control tokens (and unknown-type tokens) written literally in
     * the text, e.g. "<s>". User-defined tokens are always matched, as in
     * llama.cpp and HF tokenizers (they are ordinary added words). */
    bool parse_special;
} tok_encode_opts;

/* The model's defaults: add_bos / add_eos from its flags, parse_special off. */
tok_encode_opts tokenizer_default_opts(const tokenizer *t);

/* Encodes text[0..len) and appends the ids to *out; opts NULL means the
 * defaults. Any bytes are accepted: invalid UTF-8 becomes byte tokens, so
 * decoding gives the text back (SentencePiece: except that a literal U+2581
 * in the text decodes as a space, as in SentencePiece itself). */
strata_status tokenizer_encode(const tokenizer *t, const char *text, size_t len,
                               const tok_encode_opts *opts, tok_ids *out, strata_error *err);

/* ---- decoding ---- */

enum {
    TOK_DECODE_SPECIAL = 1u << 0,     /* render control tokens as their text */
    TOK_DECODE_STRIP_SPACE = 1u << 1, /* drop the space the SPM encoder put in
                                         front of the text (when the output
                                         starts with it) */
};

/* The bytes token `id` stands for: U+2581 -> ' ' (SentencePiece), <0xNN> ->
 * that byte, byte-level characters -> their bytes (BPE), user-defined tokens
 * -> their text. Control and unknown-type tokens give "" unless
 * TOK_DECODE_SPECIAL (then their text); unused-type tokens give "" (all as
 * llama.cpp). The piece may be an incomplete UTF-8 sequence. Returns NULL
 * (and *len 0) for an id out of range. Valid as long as the tokenizer. */
const char *tokenizer_piece(const tokenizer *t, int32_t id, unsigned flags, size_t *len);

/* The concatenated pieces of ids[0..n) as a malloc'd NUL-terminated string
 * of raw bytes (*len excludes the NUL; may be invalid UTF-8 if the tokens
 * split a character). NULL on allocation failure or an id out of range. */
char *tokenizer_decode(const tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                       size_t *len);

/* ---- streaming UTF-8 ----
 * Feeds raw bytes and emits only complete, valid UTF-8: an incomplete
 * multi-byte sequence is held back until its last byte arrives; each maximal
 * invalid subsequence becomes U+FFFD (the Unicode "maximal subpart"
 * practice, as Python's errors="replace"). No allocation. */
typedef struct tok_utf8_stream {
    uint8_t pend[4];
    uint8_t n_pend;
    uint8_t need; /* total length of the pending sequence */
} tok_utf8_stream;

/* Output never exceeds this many bytes for n input bytes. */
#define TOK_UTF8_STREAM_MAX_OUT(n) (3 * ((size_t)(n) + 4))

void tok_utf8_stream_init(tok_utf8_stream *s);
/* Writes to out (room for TOK_UTF8_STREAM_MAX_OUT(n)); returns bytes written. */
size_t tok_utf8_stream_feed(tok_utf8_stream *s, const char *in, size_t n, char *out);
/* Ends the stream: a held-back incomplete sequence becomes U+FFFD. */
size_t tok_utf8_stream_flush(tok_utf8_stream *s, char *out);

/* Token-by-token detokenizer on top of the UTF-8 stream. */
typedef struct tok_stream tok_stream;

tok_stream *tok_stream_new(const tokenizer *t, unsigned flags);
void tok_stream_free(tok_stream *s);
/* Adds one token; returns the text completed by it (valid UTF-8,
 * NUL-terminated, possibly empty) which stays valid until the next call, or
 * NULL on allocation failure or an id out of range. */
const char *tok_stream_push(tok_stream *s, int32_t id, size_t *len);
/* Ends the stream, returning what was held back (as U+FFFD). */
const char *tok_stream_finish(tok_stream *s, size_t *len);

#endif
