/* Split models: the first file holds the metadata, every file holds a part
 * of the tensors, and split.no / split.count / split.tensors.count tie them
 * together. Files are named PREFIX-00001-of-00003.gguf. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/arena.h"
#include "gguf/internal.h"
#include "util/error.h"

typedef struct split_keys {
    uint64_t no, count;
    bool has_count;
} split_keys;

static strata_status read_split_keys(const gguf_file *f, const char *name, split_keys *k, strata_error *err)
{
    k->no = 0;
    k->count = 1;
    k->has_count = gguf_find(f, "split.count") != NULL;
    if (!k->has_count) return STRATA_OK;
    if (!gguf_get_u64(f, "split.count", &k->count) || k->count == 0 || k->count > 99999)
        return err_set(err, STRATA_E_FORMAT, "%s: offset 0: split.count is not an integer in 1..99999", name);
    if (gguf_find(f, "split.no") && !gguf_get_u64(f, "split.no", &k->no))
        return err_set(err, STRATA_E_FORMAT, "%s: offset 0: split.no is not a non-negative integer", name);
    if (k->no >= k->count)
        return err_set(err, STRATA_E_FORMAT, "%s: offset 0: split.no %" PRIu64 " is not below split.count %" PRIu64,
                       name, k->no, k->count);
    return STRATA_OK;
}

strata_status gguf_split_check_self(const gguf_file *f, const char *name, strata_error *err)
{
    split_keys k;
    return read_split_keys(f, name, &k, err);
}

/* Finds PREFIX in PREFIX-00001-of-NNNNN.gguf; returns its length or -1. */
static long split_prefix_len(const char *path, uint64_t count)
{
    char tail[64];
    snprintf(tail, sizeof tail, "-00001-of-%05" PRIu64 ".gguf", count);
    size_t lp = strlen(path), lt = strlen(tail);
    if (lp <= lt || strcmp(path + lp - lt, tail) != 0) return -1;
    return (long)(lp - lt);
}

/* Appends the tensors of part (split index i) to f, copying their names
 * into f's arena so part can be closed. */
static strata_status append_part(gguf_file *f, gguf_file *part, uint32_t i, strata_error *err)
{
    gguf_tensor *all = arena_alloc(f->arena, (f->n_tensors + part->n_tensors) * sizeof(gguf_tensor));
    if (!all) return err_set(err, STRATA_E_NOMEM, "%s: out of memory", part->splits[0].path);
    memcpy(all, f->tensors, f->n_tensors * sizeof(gguf_tensor));
    for (uint64_t t = 0; t < part->n_tensors; t++) {
        gguf_tensor *dst = &all[f->n_tensors + t];
        *dst = part->tensors[t];
        dst->split = i;
        size_t len = strlen(part->tensors[t].name) + 1;
        char *name = arena_alloc(f->arena, len);
        if (!name) return err_set(err, STRATA_E_NOMEM, "%s: out of memory", part->splits[0].path);
        memcpy(name, part->tensors[t].name, len);
        dst->name = name;
    }
    f->tensors = all;
    f->n_tensors += part->n_tensors;
    f->splits[i] = part->splits[0];
    part->splits[0].path = NULL; /* now owned by f */
    f->n_splits = i + 1;
    return STRATA_OK;
}

static strata_status open_part(gguf_file *f, const char *path, long plen, uint32_t i, uint64_t count,
                               strata_error *err)
{
    char *pp = malloc((size_t)plen + 32);
    if (!pp) return err_set(err, STRATA_E_NOMEM, "%s: out of memory", path);
    snprintf(pp, (size_t)plen + 32, "%.*s-%05" PRIu32 "-of-%05" PRIu64 ".gguf", (int)plen, path, i + 1, count);
    gguf_file *part = NULL;
    split_keys k;
    strata_status st = gguf_open_one(pp, &part, err);
    if (!st) st = read_split_keys(part, pp, &k, err);
    if (!st && (k.no != i || k.count != count))
        st = err_set(err, STRATA_E_FORMAT, "%s: offset 0: expected split %" PRIu32 " of %" PRIu64
                     ", the file says %" PRIu64 " of %" PRIu64, pp, i + 1, count, k.no + 1, k.count);
    if (!st) st = append_part(f, part, i, err);
    gguf_close(part);
    free(pp);
    return st;
}

strata_status gguf_split_open_rest(gguf_file *f, const char *path, strata_error *err)
{
    split_keys k;
    strata_status st = read_split_keys(f, path, &k, err);
    if (st || k.count == 1) return st;
    if (k.no != 0)
        return err_set(err, STRATA_E_INVALID, "%s: this is split %" PRIu64 " of %" PRIu64
                       "; open the first file (-00001-of-%05" PRIu64 ".gguf)", path, k.no + 1, k.count, k.count);
    long plen = split_prefix_len(path, k.count);
    if (plen < 0)
        return err_set(err, STRATA_E_INVALID, "%s: split model of %" PRIu64 " files, but the name does not end in "
                       "-00001-of-%05" PRIu64 ".gguf", path, k.count, k.count);
    gguf_split *splits = realloc(f->splits, k.count * sizeof *splits);
    if (!splits) return err_set(err, STRATA_E_NOMEM, "%s: out of memory", path);
    f->splits = splits;
    for (uint32_t i = 1; i < k.count; i++)
        if ((st = open_part(f, path, plen, i, k.count, err))) return st;
    uint64_t expected;
    if (gguf_get_u64(f, "split.tensors.count", &expected) && expected != f->n_tensors)
        return err_set(err, STRATA_E_FORMAT, "%s: split.tensors.count says %" PRIu64 " tensors, the %" PRIu64
                       " files hold %" PRIu64, path, expected, k.count, f->n_tensors);
    return gguf_index_tensors(f, path, err);
}
