/* libFuzzer target: arbitrary bytes through every byte-level BPE
 * pre-tokenizer (the first byte picks the rule). The pieces must tile the
 * input: ends strictly increasing, the last one at its length; the rules
 * are linear (the audit found a quadratic one), so a slow input shows up as
 * a libFuzzer timeout. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "tokenizer/tok_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    tok_pre pre = (tok_pre)(1 + data[0] % TOK_PRE_TEKKEN); /* TOK_PRE_GPT2 .. TOK_PRE_TEKKEN */
    const char *text = (const char *)data + 1;
    size_t len = size - 1, *ends = NULL, n = 0;
    if (!tok_pretokenize(pre, text, len, &ends, &n)) return 0; /* out of memory */
    size_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        if (ends[i] <= prev || ends[i] > len) abort(); /* empty, backwards or past the end */
        prev = ends[i];
    }
    if (len && prev != len) abort(); /* text left over */
    free(ends);
    return 0;
}
