/* Split models: name-0000K-of-0000N.gguf files open as one model. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "test.h"

static strata_status write_part(const char *dir, int no, int count, int32_t total, const char *tensor, strata_error *e)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/model-%05d-of-%05d.gguf", dir, no + 1, count);
    gguf_writer *w = gguf_writer_new();
    strata_status st = STRATA_OK;
    if (no == 0) st = gguf_writer_set_str(w, "general.architecture", "llama", e);
    if (!st) st = gguf_writer_set(w, "split.no", &(gguf_value){.type = GGUF_TYPE_U16, .u = (uint64_t)no}, e);
    if (!st) st = gguf_writer_set(w, "split.count", &(gguf_value){.type = GGUF_TYPE_U16, .u = (uint64_t)count}, e);
    if (!st) st = gguf_writer_set_i32(w, "split.tensors.count", total, e);
    uint64_t ne[2] = {32, 4};
    if (!st) st = gguf_writer_add_tensor(w, tensor, GGML_TYPE_F32, 2, ne, e);
    if (!st) st = gguf_writer_open(w, path, e);
    float data[128] = {0};
    data[0] = (float)no;
    if (!st) st = gguf_writer_write(w, data, sizeof data, e);
    if (!st) st = gguf_writer_close(w, e);
    gguf_writer_free(w);
    return st;
}

static strata_status open_split(const char *dir, int no, int count, gguf_file **f, strata_error *e)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/model-%05d-of-%05d.gguf", dir, no, count);
    return gguf_open(path, f, e);
}

TEST(test_gguf_split_opens_as_one_model)
{
    const char *dir = test_tmpdir();
    strata_error e;
    REQUIRE(write_part(dir, 0, 3, 3, "a.weight", &e) == STRATA_OK, " %s", e.message);
    REQUIRE(write_part(dir, 1, 3, 3, "b.weight", &e) == STRATA_OK, " %s", e.message);
    REQUIRE(write_part(dir, 2, 3, 3, "c.weight", &e) == STRATA_OK, " %s", e.message);
    gguf_file *f = NULL;
    REQUIRE(open_split(dir, 1, 3, &f, &e) == STRATA_OK, " %s", e.message);
    CHECK(f->n_splits == 3 && f->n_tensors == 3);
    const gguf_tensor *c = gguf_find_tensor(f, "c.weight");
    REQUIRE(c && c->split == 2);
    CHECK(strstr(f->splits[2].path, "model-00003-of-00003.gguf") != NULL);
    /* the tensor's offset is within its own file: read the marker back */
    FILE *fp = fopen(f->splits[c->split].path, "rb");
    float first = -1;
    REQUIRE(fp);
    CHECK(fseek(fp, (long)c->file_offset, SEEK_SET) == 0 && fread(&first, 4, 1, fp) == 1 && first == 2.0f);
    fclose(fp);
    gguf_close(f);
    CHECK(open_split(dir, 2, 3, &f, &e) != STRATA_OK && strstr(e.message, "split 2 of 3"), " %s", e.message);
}

TEST(test_gguf_split_missing_or_inconsistent_part)
{
    const char *dir = test_tmpdir();
    strata_error e;
    gguf_file *f = NULL;
    REQUIRE(write_part(dir, 0, 2, 2, "a.weight", &e) == STRATA_OK);
    CHECK(open_split(dir, 1, 2, &f, &e) != STRATA_OK && strstr(e.message, "model-00002-of-00002.gguf"),
          " %s", e.message);
    REQUIRE(write_part(dir, 1, 2, 5, "b.weight", &e) == STRATA_OK);
    CHECK(open_split(dir, 1, 2, &f, &e) == STRATA_OK, " %s", e.message); /* the count of the first file rules */
    gguf_close(f);
    REQUIRE(write_part(dir, 0, 2, 3, "a.weight", &e) == STRATA_OK);
    CHECK(open_split(dir, 1, 2, &f, &e) != STRATA_OK && strstr(e.message, "split.tensors.count"), " %s", e.message);
    REQUIRE(write_part(dir, 0, 2, 2, "b.weight", &e) == STRATA_OK);
    CHECK(open_split(dir, 1, 2, &f, &e) != STRATA_OK && strstr(e.message, "duplicate tensor name 'b.weight'"),
          " %s", e.message);
}
