/* A tiny vocabulary-only GGUF file for the tokenizer tests. */
#ifndef STRATA_TESTS_VOCAB_HELPERS_H
#define STRATA_TESTS_VOCAB_HELPERS_H

#include "strata.h"
#include "tokenizer/tokenizer.h"

/* Writes a byte-level BPE vocabulary (tokens a, b, ab, "Ġ" and the control
 * token <s> = BOS; one merge "a b") declaring pre-tokenizer `pre` (NULL: no
 * tokenizer.ggml.pre key) to path. */
strata_status write_bpe_vocab(const char *path, const char *pre, strata_error *err);

/* The tokenizer of a GGUF file; NULL (and the test fails, naming the file)
 * when it cannot be loaded. */
tokenizer *vocab_load_tokenizer(const char *path);

#endif
