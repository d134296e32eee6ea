/* GGUF writer: metadata of every value type and tensors with correct
 * alignment, written through a temporary file of its own next to PATH
 * (util/outfile.h: created with O_EXCL, removed on failure or on a signal)
 * and renamed on success, so no partial file is ever left at PATH. Tensor
 * data is streamed in pieces. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf/arena.h"
#include "gguf/gguf.h"
#include "util/error.h"
#include "util/outfile.h"

typedef struct writer_tensor {
    char *name;
    uint32_t type, n_dims;
    uint64_t ne[GGUF_MAX_DIMS];
    uint64_t n_bytes, offset;
} writer_tensor;

struct gguf_writer {
    uint32_t version, alignment;
    gguf_arena *arena; /* copies of keys and values */
    gguf_kv *kv;
    uint64_t n_kv, cap_kv;
    writer_tensor *tensors;
    uint64_t n_tensors, cap_tensors;
    uint64_t data_bytes; /* size of the data section */
    FILE *fp;        /* out.fp while open */
    outfile out;
    uint64_t pos;    /* bytes written */
    char *path;
    uint64_t cur_tensor, cur_written; /* streaming position */
};

gguf_writer *gguf_writer_new(void)
{
    gguf_writer *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->version = 3;
    w->alignment = GGUF_DEFAULT_ALIGNMENT;
    w->arena = arena_new();
    if (!w->arena) {
        free(w);
        return NULL;
    }
    return w;
}

void gguf_writer_free(gguf_writer *w)
{
    if (!w) return;
    if (w->fp) outfile_abort(&w->out);
    for (uint64_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->tensors);
    free(w->kv);
    free(w->path);
    arena_free(w->arena);
    free(w);
}

void gguf_writer_set_version(gguf_writer *w, uint32_t version) { w->version = version; }

strata_status gguf_writer_set_alignment(gguf_writer *w, uint32_t alignment, strata_error *err)
{
    if (alignment == 0 || (alignment & (alignment - 1)) || w->n_tensors)
        return err_set(err, STRATA_E_INVALID, "gguf writer: alignment %" PRIu32
                       " must be a power of two, set before adding tensors", alignment);
    w->alignment = alignment;
    return gguf_writer_set_u32(w, "general.alignment", alignment, err);
}

static char *copy_bytes(gguf_writer *w, const char *s, uint64_t len)
{
    char *p = arena_alloc(w->arena, len + 1);
    if (p) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

/* Deep copy of a value into the writer's arena. */
static bool copy_value(gguf_writer *w, const gguf_value *src, gguf_value *dst)
{
    *dst = *src;
    if (src->type == GGUF_TYPE_STRING) return (dst->str.ptr = copy_bytes(w, src->str.ptr, src->str.len)) != NULL;
    if (src->type != GGUF_TYPE_ARRAY) return true;
    uint32_t et = src->arr.type;
    uint64_t n = src->arr.n;
    if (et != GGUF_TYPE_STRING && et != GGUF_TYPE_ARRAY) {
        uint64_t bytes = n * gguf_vtype_size(et);
        void *p = arena_alloc(w->arena, bytes);
        if (p && bytes) memcpy(p, src->arr.data, bytes);
        return (dst->arr.data = p) != NULL;
    }
    size_t elem = et == GGUF_TYPE_STRING ? sizeof(gguf_str) : sizeof(gguf_value);
    void *items = arena_alloc(w->arena, n * elem);
    if (!items) return false;
    dst->arr.data = items;
    for (uint64_t i = 0; i < n; i++) {
        if (et == GGUF_TYPE_STRING) {
            const gguf_str *s = &((const gguf_str *)src->arr.data)[i];
            gguf_str *d = &((gguf_str *)items)[i];
            d->len = s->len;
            if (!(d->ptr = copy_bytes(w, s->ptr, s->len))) return false;
        } else if (!copy_value(w, &((const gguf_value *)src->arr.data)[i], &((gguf_value *)items)[i])) {
            return false;
        }
    }
    return true;
}

static gguf_kv *kv_slot(gguf_writer *w, const char *key)
{
    size_t len = strlen(key);
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (w->kv[i].key.len == len && !memcmp(w->kv[i].key.ptr, key, len)) return &w->kv[i];
    if (w->n_kv == w->cap_kv) {
        uint64_t cap = w->cap_kv ? w->cap_kv * 2 : 16;
        gguf_kv *kv = realloc(w->kv, cap * sizeof *kv);
        if (!kv) return NULL;
        w->kv = kv;
        w->cap_kv = cap;
    }
    gguf_kv *kv = &w->kv[w->n_kv];
    if (!(kv->key.ptr = copy_bytes(w, key, len))) return NULL;
    kv->key.len = len;
    w->n_kv++;
    return kv;
}

strata_status gguf_writer_set(gguf_writer *w, const char *key, const gguf_value *v, strata_error *err)
{
    if (v->type >= GGUF_TYPE_COUNT || (v->type == GGUF_TYPE_ARRAY && v->arr.type >= GGUF_TYPE_COUNT))
        return err_set(err, STRATA_E_INVALID, "gguf writer: key '%s' has an invalid value type", key);
    gguf_kv *kv = kv_slot(w, key);
    if (!kv || !copy_value(w, v, &kv->value))
        return err_set(err, STRATA_E_NOMEM, "gguf writer: out of memory setting '%s'", key);
    return STRATA_OK;
}

strata_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v, strata_error *err)
{
    return gguf_writer_set(w, key, &(gguf_value){.type = GGUF_TYPE_U32, .u = v}, err);
}

strata_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v, strata_error *err)
{
    return gguf_writer_set(w, key, &(gguf_value){.type = GGUF_TYPE_I32, .i = v}, err);
}

strata_status gguf_writer_set_f32(gguf_writer *w, const char *key, float v, strata_error *err)
{
    return gguf_writer_set(w, key, &(gguf_value){.type = GGUF_TYPE_F32, .f = v}, err);
}

strata_status gguf_writer_set_bool(gguf_writer *w, const char *key, bool v, strata_error *err)
{
    return gguf_writer_set(w, key, &(gguf_value){.type = GGUF_TYPE_BOOL, .u = v}, err);
}

strata_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *v, strata_error *err)
{
    gguf_value val = {.type = GGUF_TYPE_STRING, .str = {strlen(v), v}};
    return gguf_writer_set(w, key, &val, err);
}

strata_status gguf_writer_set_arr(gguf_writer *w, const char *key, uint32_t elem_type, const void *data,
                                  uint64_t n, strata_error *err)
{
    if (gguf_vtype_size(elem_type) == 0)
        return err_set(err, STRATA_E_INVALID, "gguf writer: key '%s': not a scalar element type", key);
    gguf_value val = {.type = GGUF_TYPE_ARRAY, .arr = {elem_type, n, data}};
    return gguf_writer_set(w, key, &val, err);
}

strata_status gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *strs, uint64_t n,
                                      strata_error *err)
{
    gguf_str *tmp = calloc(n ? n : 1, sizeof *tmp);
    if (!tmp) return err_set(err, STRATA_E_NOMEM, "gguf writer: out of memory setting '%s'", key);
    for (uint64_t i = 0; i < n; i++) tmp[i] = (gguf_str){strlen(strs[i]), strs[i]};
    gguf_value val = {.type = GGUF_TYPE_ARRAY, .arr = {GGUF_TYPE_STRING, n, tmp}};
    strata_status st = gguf_writer_set(w, key, &val, err);
    free(tmp);
    return st;
}

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

strata_status gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                                     const uint64_t *ne, strata_error *err)
{
    if (strlen(name) == 0 || strlen(name) >= GGUF_MAX_NAME)
        return err_set(err, STRATA_E_INVALID, "gguf writer: tensor name '%s' is empty or longer than 63 bytes", name);
    if (n_dims == 0 || n_dims > GGUF_MAX_DIMS)
        return err_set(err, STRATA_E_INVALID, "gguf writer: tensor '%s' needs 1..4 dimensions", name);
    writer_tensor t = {.type = type, .n_dims = n_dims};
    uint64_t n = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] == 0 || t.ne[d] > (uint64_t)INT64_MAX / n)
            return err_set(err, STRATA_E_INVALID, "gguf writer: tensor '%s' has a zero or overflowing dimension", name);
        n *= t.ne[d];
    }
    if (!ggml_type_get(type) || ggml_row_bytes(type, t.ne[0]) == 0)
        return err_set(err, STRATA_E_INVALID, "gguf writer: tensor '%s': type %s cannot hold rows of %" PRIu64,
                       name, ggml_type_name(type), t.ne[0]);
    t.n_bytes = ggml_row_bytes(type, t.ne[0]) * (n / t.ne[0]);
    t.offset = align_up(w->data_bytes, w->alignment);
    for (uint64_t i = 0; i < w->n_tensors; i++)
        if (!strcmp(w->tensors[i].name, name))
            return err_set(err, STRATA_E_INVALID, "gguf writer: duplicate tensor '%s'", name);
    if (w->n_tensors == w->cap_tensors) {
        uint64_t cap = w->cap_tensors ? w->cap_tensors * 2 : 64;
        writer_tensor *ts = realloc(w->tensors, cap * sizeof *ts);
        if (!ts) return err_set(err, STRATA_E_NOMEM, "gguf writer: out of memory");
        w->tensors = ts;
        w->cap_tensors = cap;
    }
    if (!(t.name = strdup(name))) return err_set(err, STRATA_E_NOMEM, "gguf writer: out of memory");
    w->tensors[w->n_tensors++] = t;
    w->data_bytes = t.offset + t.n_bytes;
    return STRATA_OK;
}

/* ---- serialization ---- */

static bool put(gguf_writer *w, const void *p, uint64_t n)
{
    if (n && fwrite(p, 1, n, w->fp) != n) return false;
    w->pos += n;
    return true;
}
static bool put_u32(gguf_writer *w, uint32_t v) { return put(w, &v, 4); }
static bool put_u64(gguf_writer *w, uint64_t v) { return put(w, &v, 8); }
static bool put_str(gguf_writer *w, const gguf_str *s) { return put_u64(w, s->len) && put(w, s->ptr, s->len); }

static bool put_scalar(gguf_writer *w, const gguf_value *v)
{
    union { uint8_t u8; uint16_t u16; uint32_t u32; uint64_t u64; float f32; double f64; } x;
    switch (v->type) {
    case GGUF_TYPE_U8: case GGUF_TYPE_BOOL: x.u8 = (uint8_t)v->u; break;
    case GGUF_TYPE_I8: x.u8 = (uint8_t)(int8_t)v->i; break;
    case GGUF_TYPE_U16: x.u16 = (uint16_t)v->u; break;
    case GGUF_TYPE_I16: x.u16 = (uint16_t)(int16_t)v->i; break;
    case GGUF_TYPE_U32: x.u32 = (uint32_t)v->u; break;
    case GGUF_TYPE_I32: x.u32 = (uint32_t)(int32_t)v->i; break;
    case GGUF_TYPE_U64: x.u64 = v->u; break;
    case GGUF_TYPE_I64: x.u64 = (uint64_t)v->i; break;
    case GGUF_TYPE_F32: x.f32 = (float)v->f; break;
    case GGUF_TYPE_F64: x.f64 = v->f; break;
    default: return false;
    }
    return put(w, &x, gguf_vtype_size(v->type));
}

static bool put_array(gguf_writer *w, const gguf_array *a)
{
    if (!put_u32(w, a->type) || !put_u64(w, a->n)) return false;
    if (a->type == GGUF_TYPE_STRING) {
        for (uint64_t i = 0; i < a->n; i++)
            if (!put_str(w, &((const gguf_str *)a->data)[i])) return false;
        return true;
    }
    if (a->type == GGUF_TYPE_ARRAY) {
        for (uint64_t i = 0; i < a->n; i++)
            if (!put_array(w, &((const gguf_value *)a->data)[i].arr)) return false;
        return true;
    }
    return put(w, a->data, a->n * gguf_vtype_size(a->type));
}

static bool put_value(gguf_writer *w, const gguf_value *v)
{
    if (!put_u32(w, v->type)) return false;
    if (v->type == GGUF_TYPE_STRING) return put_str(w, &v->str);
    if (v->type == GGUF_TYPE_ARRAY) return put_array(w, &v->arr);
    return put_scalar(w, v);
}

static bool put_padding(gguf_writer *w, uint64_t pos)
{
    static const uint8_t zeros[4096];
    uint64_t pad = align_up(pos, w->alignment) - pos;
    while (pad > 0) {
        uint64_t n = pad < sizeof zeros ? pad : sizeof zeros;
        if (!put(w, zeros, n)) return false;
        pad -= n;
    }
    return true;
}

static bool put_header(gguf_writer *w)
{
    if (!put(w, GGUF_MAGIC, 4) || !put_u32(w, w->version) || !put_u64(w, w->n_tensors) || !put_u64(w, w->n_kv))
        return false;
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (!put_str(w, &w->kv[i].key) || !put_value(w, &w->kv[i].value)) return false;
    for (uint64_t i = 0; i < w->n_tensors; i++) {
        const writer_tensor *t = &w->tensors[i];
        gguf_str name = {strlen(t->name), t->name};
        if (!put_str(w, &name) || !put_u32(w, t->n_dims)) return false;
        for (uint32_t d = 0; d < t->n_dims; d++)
            if (!put_u64(w, t->ne[d])) return false;
        if (!put_u32(w, t->type) || !put_u64(w, t->offset)) return false;
    }
    return put_padding(w, w->pos);
}

static uint64_t array_size(const gguf_array *a);

static uint64_t value_size(const gguf_value *v)
{
    if (v->type == GGUF_TYPE_STRING) return 8 + v->str.len;
    if (v->type == GGUF_TYPE_ARRAY) return array_size(&v->arr);
    return gguf_vtype_size(v->type);
}

static uint64_t array_size(const gguf_array *a)
{
    uint64_t size = 12;
    if (a->type == GGUF_TYPE_STRING)
        for (uint64_t i = 0; i < a->n; i++) size += 8 + ((const gguf_str *)a->data)[i].len;
    else if (a->type == GGUF_TYPE_ARRAY)
        for (uint64_t i = 0; i < a->n; i++) size += array_size(&((const gguf_value *)a->data)[i].arr);
    else
        size += a->n * gguf_vtype_size(a->type);
    return size;
}

uint64_t gguf_writer_file_size(const gguf_writer *w)
{
    uint64_t size = 24;
    for (uint64_t i = 0; i < w->n_kv; i++) size += 8 + w->kv[i].key.len + 4 + value_size(&w->kv[i].value);
    for (uint64_t i = 0; i < w->n_tensors; i++)
        size += 8 + strlen(w->tensors[i].name) + 4 + 8 * w->tensors[i].n_dims + 4 + 8;
    return align_up(size, w->alignment) + w->data_bytes;
}

static strata_status write_failed(gguf_writer *w, strata_error *err)
{
    strata_status st = err_set(err, STRATA_E_IO, "%s: write failed: %s", outfile_name(&w->out), strerror(errno));
    outfile_abort(&w->out);
    w->fp = NULL;
    return st;
}

strata_status gguf_writer_open(gguf_writer *w, const char *path, strata_error *err)
{
    if (w->fp) return err_set(err, STRATA_E_INVALID, "%s: gguf writer already open", path);
    free(w->path);
    if (!(w->path = strdup(path))) return err_set(err, STRATA_E_NOMEM, "%s: out of memory", path);
    strata_status st = outfile_open(&w->out, path, err);
    if (st) return st;
    w->fp = w->out.fp;
    w->pos = 0;
    w->cur_tensor = 0;
    w->cur_written = 0;
    if (!put_header(w)) return write_failed(w, err);
    return STRATA_OK;
}

strata_status gguf_writer_write(gguf_writer *w, const void *data, uint64_t n, strata_error *err)
{
    const uint8_t *p = data;
    if (!w->fp) return err_set(err, STRATA_E_INVALID, "gguf writer: not open");
    while (n > 0) {
        if (w->cur_tensor >= w->n_tensors)
            return err_set(err, STRATA_E_INVALID, "%s: more tensor data written than the tensors hold", w->path);
        const writer_tensor *t = &w->tensors[w->cur_tensor];
        uint64_t take = t->n_bytes - w->cur_written;
        if (take > n) take = n;
        if (!put(w, p, take)) return write_failed(w, err);
        p += take;
        n -= take;
        w->cur_written += take;
        if (w->cur_written == t->n_bytes) {
            if (w->cur_tensor + 1 < w->n_tensors && !put_padding(w, t->offset + t->n_bytes))
                return write_failed(w, err);
            w->cur_tensor++;
            w->cur_written = 0;
        }
    }
    return STRATA_OK;
}

strata_status gguf_writer_close(gguf_writer *w, strata_error *err)
{
    if (!w->fp) return err_set(err, STRATA_E_INVALID, "gguf writer: not open");
    if (w->cur_tensor != w->n_tensors) {
        err_set(err, STRATA_E_INVALID, "%s: tensor '%s' and later were not written", w->path,
                w->tensors[w->cur_tensor].name);
        outfile_abort(&w->out);
        w->fp = NULL;
        return STRATA_E_INVALID;
    }
    w->fp = NULL;
    return outfile_commit(&w->out, err);
}
