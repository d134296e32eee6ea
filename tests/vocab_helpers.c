#include "test.h"
#include "vocab_helpers.h"

#include "gguf/gguf.h"

strata_status write_bpe_vocab(const char *path, const char *pre, strata_error *e)
{
    static const char *const tokens[] = {"a", "b", "ab", "\xC4\xA0", "<s>"};
    static const int32_t types[] = {1, 1, 1, 1, 3};
    gguf_writer *w = gguf_writer_new();
    strata_status st = gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2", e);
    if (!st) st = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", tokens, 5, e);
    if (!st) st = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_I32, types, 5, e);
    if (!st) st = gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const[]){"a b"}, 1, e);
    if (!st) st = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 4, e);
    if (!st && pre) st = gguf_writer_set_str(w, "tokenizer.ggml.pre", pre, e);
    if (!st) st = gguf_writer_open(w, path, e);
    if (!st) st = gguf_writer_close(w, e);
    gguf_writer_free(w);
    return st;
}

tokenizer *vocab_load_tokenizer(const char *path)
{
    gguf_file *f = NULL;
    tokenizer *t = NULL;
    strata_error e = {0};
    if (gguf_open(path, &f, &e) || tokenizer_from_gguf(f, &t, &e))
        test_fail(__FILE__, __LINE__, "load tokenizer", " %s: %s", path, e.message);
    gguf_close(f);
    return t;
}
