/* Opening a model (one file or a split set) and typed metadata look-up. */
#include <string.h>

#include "gguf/gguf.h"
#include "gguf/internal.h"

strata_status gguf_open(const char *path, gguf_file **out, strata_error *err)
{
    gguf_file *f = NULL;
    strata_status st = gguf_open_one(path, &f, err);
    if (!st) st = gguf_split_open_rest(f, path, err);
    if (st) {
        gguf_close(f);
        f = NULL;
    }
    *out = f;
    return st;
}

const gguf_kv *gguf_find(const gguf_file *f, const char *key)
{
    size_t len = strlen(key);
    if (f->kv_index) {
        uint64_t i = gguf_index_find(f->kv_index, f->kv, gguf_kv_key, key, len);
        return i == GGUF_INDEX_NONE ? NULL : &f->kv[i];
    }
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (f->kv[i].key.len == len && !memcmp(f->kv[i].key.ptr, key, len)) return &f->kv[i];
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name)
{
    if (f->tensor_index) {
        uint64_t i = gguf_index_find(f->tensor_index, f->tensors, gguf_tensor_key, name, strlen(name));
        return i == GGUF_INDEX_NONE ? NULL : &f->tensors[i];
    }
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

static bool is_unsigned(uint32_t t)
{
    return t == GGUF_TYPE_U8 || t == GGUF_TYPE_U16 || t == GGUF_TYPE_U32 || t == GGUF_TYPE_U64;
}

static bool is_signed(uint32_t t)
{
    return t == GGUF_TYPE_I8 || t == GGUF_TYPE_I16 || t == GGUF_TYPE_I32 || t == GGUF_TYPE_I64;
}

bool gguf_value_to_u64(const gguf_value *v, uint64_t *out)
{
    if (is_unsigned(v->type)) {
        *out = v->u;
        return true;
    }
    if (is_signed(v->type) && v->i >= 0) {
        *out = (uint64_t)v->i;
        return true;
    }
    return false;
}

bool gguf_value_to_f64(const gguf_value *v, double *out)
{
    if (v->type == GGUF_TYPE_F32 || v->type == GGUF_TYPE_F64) *out = v->f;
    else if (is_unsigned(v->type)) *out = (double)v->u;
    else if (is_signed(v->type)) *out = (double)v->i;
    else return false;
    return true;
}

bool gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out)
{
    const gguf_kv *kv = gguf_find(f, key);
    return kv && gguf_value_to_u64(&kv->value, out);
}

bool gguf_get_i64(const gguf_file *f, const char *key, int64_t *out)
{
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return false;
    if (is_signed(kv->value.type)) *out = kv->value.i;
    else if (is_unsigned(kv->value.type) && kv->value.u <= (uint64_t)INT64_MAX) *out = (int64_t)kv->value.u;
    else return false;
    return true;
}

bool gguf_get_f64(const gguf_file *f, const char *key, double *out)
{
    const gguf_kv *kv = gguf_find(f, key);
    return kv && gguf_value_to_f64(&kv->value, out);
}

bool gguf_get_bool(const gguf_file *f, const char *key, bool *out)
{
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv || kv->value.type != GGUF_TYPE_BOOL) return false;
    *out = kv->value.u != 0;
    return true;
}

bool gguf_get_str(const gguf_file *f, const char *key, gguf_str *out)
{
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv || kv->value.type != GGUF_TYPE_STRING) return false;
    *out = kv->value.str;
    return true;
}

bool gguf_get_arr(const gguf_file *f, const char *key, gguf_array *out)
{
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv || kv->value.type != GGUF_TYPE_ARRAY) return false;
    *out = kv->value.arr;
    return true;
}

/* Reads element i of a scalar array as a gguf_value. */
static bool array_elem(const gguf_array *a, uint64_t i, gguf_value *v)
{
    size_t sz = gguf_vtype_size(a->type);
    if (i >= a->n || sz == 0) return false;
    gguf_value_from_raw(a->type, (const unsigned char *)a->data + i * sz, v);
    return true;
}

bool gguf_array_u64(const gguf_array *a, uint64_t i, uint64_t *out)
{
    gguf_value v;
    return array_elem(a, i, &v) && v.type != GGUF_TYPE_BOOL && gguf_value_to_u64(&v, out);
}

bool gguf_array_f64(const gguf_array *a, uint64_t i, double *out)
{
    gguf_value v;
    return array_elem(a, i, &v) && gguf_value_to_f64(&v, out);
}
