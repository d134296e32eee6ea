/* BPE merges from tokenizer.ggml.merges: "left right" strings, the earlier
 * the higher the priority. Looked up by the joined string, so pieces need
 * not be tokens themselves. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"
#include "util/error.h"

#define KEY_MERGES "tokenizer.ggml.merges"

static strata_status check_merges(const gguf_file *f, gguf_array *a, strata_error *err)
{
    if (!gguf_find(f, KEY_MERGES))
        return err_set(err, STRATA_E_FORMAT, "%s is missing (needed by a gpt2 tokenizer)",
                       KEY_MERGES);
    if (!gguf_get_arr(f, KEY_MERGES, a) || a->type != GGUF_TYPE_STRING)
        return err_set(err, STRATA_E_FORMAT, "%s is not an array of strings", KEY_MERGES);
    if (a->n > INT32_MAX)
        return err_set(err, STRATA_E_FORMAT, "%s has %llu entries", KEY_MERGES,
                       (unsigned long long)a->n);
    const gguf_str *s = a->data;
    for (uint64_t i = 0; i < a->n; i++) /* the separator: first space after byte 0 */
        if (s[i].len < 3 || !memchr(s[i].ptr + 1, ' ', s[i].len - 2))
            return err_set(err, STRATA_E_FORMAT, "%s[%llu] is not \"left right\"", KEY_MERGES,
                           (unsigned long long)i);
    return STRATA_OK;
}

strata_status tok_load_merges(tokenizer *t, const gguf_file *f, strata_error *err)
{
    gguf_array a;
    strata_status st = check_merges(f, &a, err);
    if (st) return st;
    const gguf_str *s = a.data;
    size_t total = 1;
    for (uint64_t i = 0; i < a.n; i++) total += s[i].len;
    t->merge_text = malloc(total);
    if (!t->merge_text || !tok_strmap_init(&t->merge_rank, a.n))
        return err_set(err, STRATA_E_NOMEM, "%s: out of memory", KEY_MERGES);
    size_t off = 0;
    for (uint64_t i = 0; i < a.n; i++) {
        memcpy(t->merge_text + off, s[i].ptr, s[i].len);
        if (!tok_strmap_put(&t->merge_rank, t->merge_text + off, s[i].len, (int32_t)i, false))
            return err_set(err, STRATA_E_NOMEM, "%s: out of memory", KEY_MERGES);
        off += s[i].len;
    }
    return STRATA_OK;
}

int32_t tok_merge_rank(const tokenizer *t, const char *a, size_t alen, const char *b,
                       size_t blen, char *scratch)
{
    memcpy(scratch, a, alen);
    scratch[alen] = ' ';
    memcpy(scratch + alen + 1, b, blen);
    return tok_strmap_get(&t->merge_rank, scratch, alen + blen + 1);
}
