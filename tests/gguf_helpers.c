#include "gguf_helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

uint8_t *read_whole_file(const char *path, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && n > 0 && fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(fp);
    *size = n > 0 ? (size_t)n : 0;
    return buf;
}

strata_status write_sample_gguf(const char *path, uint32_t version, strata_error *err)
{
    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_version(w, version);
    const char *strs[] = {"alpha", "", "gamma\xe2\x96\x81"};
    int32_t ints[] = {-1, 2, 3};
    gguf_value inner[2] = {
        {.type = GGUF_TYPE_ARRAY, .arr = {GGUF_TYPE_I32, 3, ints}},
        {.type = GGUF_TYPE_ARRAY, .arr = {GGUF_TYPE_I32, 1, ints}},
    };
    gguf_value nested = {.type = GGUF_TYPE_ARRAY, .arr = {GGUF_TYPE_ARRAY, 2, inner}};
    strata_status st;
    if ((st = gguf_writer_set_str(w, "general.architecture", "llama", err)) ||
        (st = gguf_writer_set(w, "t.u8", &(gguf_value){.type = GGUF_TYPE_U8, .u = 200}, err)) ||
        (st = gguf_writer_set(w, "t.i8", &(gguf_value){.type = GGUF_TYPE_I8, .i = -100}, err)) ||
        (st = gguf_writer_set(w, "t.u16", &(gguf_value){.type = GGUF_TYPE_U16, .u = 65000}, err)) ||
        (st = gguf_writer_set(w, "t.i16", &(gguf_value){.type = GGUF_TYPE_I16, .i = -32000}, err)) ||
        (st = gguf_writer_set_u32(w, "t.u32", 4000000000u, err)) ||
        (st = gguf_writer_set_i32(w, "t.i32", -2000000000, err)) ||
        (st = gguf_writer_set_f32(w, "t.f32", 0.25f, err)) ||
        (st = gguf_writer_set_bool(w, "t.bool", true, err)) ||
        (st = gguf_writer_set(w, "t.u64", &(gguf_value){.type = GGUF_TYPE_U64, .u = 1ull << 60}, err)) ||
        (st = gguf_writer_set(w, "t.i64", &(gguf_value){.type = GGUF_TYPE_I64, .i = -(1ll << 60)}, err)) ||
        (st = gguf_writer_set(w, "t.f64", &(gguf_value){.type = GGUF_TYPE_F64, .f = 1e300}, err)) ||
        (st = gguf_writer_set_arr_str(w, "t.strs", strs, 3, err)) ||
        (st = gguf_writer_set_arr(w, "t.ints", GGUF_TYPE_I32, ints, 3, err)) ||
        (st = gguf_writer_set(w, "t.nested", &nested, err)))
        goto out;
    uint64_t ne_a[2] = {32, 3}, ne_b[1] = {5}, ne_c[2] = {64, 2};
    if ((st = gguf_writer_add_tensor(w, "a.weight", GGML_TYPE_F32, 2, ne_a, err)) ||
        (st = gguf_writer_add_tensor(w, "b.weight", GGML_TYPE_F32, 1, ne_b, err)) ||
        (st = gguf_writer_add_tensor(w, "c.weight", GGML_TYPE_Q8_0, 2, ne_c, err)) ||
        (st = gguf_writer_open(w, path, err)))
        goto out;
    uint8_t data[512];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 7 + 1);
    /* a: 384 bytes, b: 20 bytes, c: 2 rows x 2 blocks x 34 = 136 bytes */
    if ((st = gguf_writer_write(w, data, 384, err)) || (st = gguf_writer_write(w, data, 20, err)) ||
        (st = gguf_writer_write(w, data, 100, err)) || (st = gguf_writer_write(w, data + 100, 36, err)))
        goto out;
    st = gguf_writer_close(w, err);
out:
    gguf_writer_free(w);
    return st;
}

/* Part `no` of write_split_copy: tensors [first, end) of f. */
static strata_status write_part_of(const gguf_file *f, const char *prefix, uint32_t no, uint32_t parts,
                                   uint64_t first, uint64_t end, strata_error *err)
{
    char path[1200];
    snprintf(path, sizeof path, "%s-%05u-of-%05u.gguf", prefix, no + 1, parts);
    gguf_writer *w = gguf_writer_new();
    strata_status st = w ? gguf_writer_set_alignment(w, f->alignment, err) : err_set(err, STRATA_E_NOMEM, "no memory");
    for (uint64_t i = 0; !st && no == 0 && i < f->n_kv; i++) {
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)f->kv[i].key.len, f->kv[i].key.ptr);
        if (strncmp(key, "split.", 6) && strcmp(key, "general.alignment"))
            st = gguf_writer_set(w, key, &f->kv[i].value, err);
    }
    if (!st) st = gguf_writer_set(w, "split.no", &(gguf_value){.type = GGUF_TYPE_U16, .u = no}, err);
    if (!st) st = gguf_writer_set(w, "split.count", &(gguf_value){.type = GGUF_TYPE_U16, .u = parts}, err);
    if (!st) st = gguf_writer_set_i32(w, "split.tensors.count", (int32_t)f->n_tensors, err);
    for (uint64_t t = first; !st && t < end; t++) {
        const gguf_tensor *x = &f->tensors[t];
        st = gguf_writer_add_tensor(w, x->name, x->type, x->n_dims, x->ne, err);
    }
    if (!st) st = gguf_writer_open(w, path, err);
    FILE *in = st ? NULL : fopen(f->splits[0].path, "rb");
    if (!st && !in) st = err_set(err, STRATA_E_IO, "%s: cannot open", f->splits[0].path);
    char buf[1 << 16];
    for (uint64_t t = first; !st && t < end; t++) {
        const gguf_tensor *x = &f->tensors[t];
        if (fseeko(in, (off_t)x->file_offset, SEEK_SET) != 0) st = err_set(err, STRATA_E_IO, "%s: seek", x->name);
        for (uint64_t left = x->n_bytes; !st && left > 0;) {
            size_t n = left < sizeof buf ? (size_t)left : sizeof buf;
            st = fread(buf, 1, n, in) == n ? gguf_writer_write(w, buf, n, err) : err_set(err, STRATA_E_IO, "%s: read", x->name);
            left -= n;
        }
    }
    if (in) fclose(in);
    if (!st) st = gguf_writer_close(w, err);
    gguf_writer_free(w);
    return st;
}

strata_status write_split_copy(const char *src, const char *prefix, uint32_t parts, strata_error *err)
{
    gguf_file *f = NULL;
    strata_status st = gguf_open(src, &f, err);
    for (uint32_t no = 0; !st && no < parts; no++)
        st = write_part_of(f, prefix, no, parts, f->n_tensors * no / parts, f->n_tensors * (no + 1) / parts, err);
    gguf_close(f);
    return st;
}
