/* GGUF header reader: metadata and tensor table of v2/v3 files, validated
 * against the file size before any allocation. Tensor data is never read. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf/arena.h"
#include "gguf/gguf.h"
#include "gguf/internal.h"
#include "util/error.h"

#define READ_BUF (64 * 1024)

/* A read cursor over a file (buffered pread) or a memory image. */
typedef struct cursor {
    const char *name;
    int fd;
    const uint8_t *mem;
    uint64_t size;
    uint64_t pos;
    uint8_t *buf;
    uint64_t buf_start, buf_len;
    uint64_t bytes_read;
    gguf_arena *arena;
    strata_error *err;
} cursor;

static strata_status fail(cursor *c, uint64_t offset, const char *fmt, const char *detail)
{
    char what[STRATA_ERROR_MAX];
    snprintf(what, sizeof what, fmt, detail);
    return err_set(c->err, STRATA_E_FORMAT, "%s: offset %" PRIu64 ": %s", c->name, offset, what);
}

static uint64_t remaining(const cursor *c) { return c->size - c->pos; }

/* A count or length at `at` that cannot fit in the rest of the file: the
 * file was cut short (or the number is corrupt). */
static strata_status truncated(cursor *c, uint64_t at, const char *what, uint64_t n, uint64_t min_bytes)
{
    char d[STRATA_ERROR_MAX / 2];
    snprintf(d, sizeof d, "%s %" PRIu64 " needs at least %" PRIu64 " bytes but only %" PRIu64 " remain", what, n,
             min_bytes, remaining(c));
    return fail(c, at, "file is truncated (or corrupt): %s", d);
}

static uint64_t mul_sat(uint64_t a, uint64_t b) { return b && a > UINT64_MAX / b ? UINT64_MAX : a * b; }

static strata_status fill(cursor *c, uint64_t at)
{
    uint64_t want = c->size - at < READ_BUF ? c->size - at : READ_BUF;
    uint64_t got = 0;
    while (got < want) {
        ssize_t r = pread(c->fd, c->buf + got, want - got, (off_t)(at + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return err_set(c->err, STRATA_E_IO, "%s: offset %" PRIu64 ": read failed: %s", c->name,
                           at + got, r < 0 ? strerror(errno) : "file shrank while reading");
        got += (uint64_t)r;
    }
    c->buf_start = at;
    c->buf_len = got;
    c->bytes_read += got;
    return STRATA_OK;
}

/* Reads n bytes at the cursor; `what` names the field for the error. */
static strata_status rd(cursor *c, void *dst, uint64_t n, const char *what)
{
    if (n > remaining(c)) return fail(c, c->pos, "file is truncated: it ends while reading %s", what);
    if (c->mem) {
        memcpy(dst, c->mem + c->pos, n);
        c->pos += n;
        return STRATA_OK;
    }
    uint8_t *out = dst;
    while (n > 0) {
        if (c->pos < c->buf_start || c->pos >= c->buf_start + c->buf_len) {
            strata_status s = fill(c, c->pos);
            if (s) return s;
        }
        uint64_t avail = c->buf_start + c->buf_len - c->pos;
        uint64_t take = n < avail ? n : avail;
        memcpy(out, c->buf + (c->pos - c->buf_start), take);
        out += take;
        c->pos += take;
        n -= take;
    }
    return STRATA_OK;
}

static strata_status rd_u32(cursor *c, uint32_t *v, const char *what) { return rd(c, v, 4, what); }
static strata_status rd_u64(cursor *c, uint64_t *v, const char *what) { return rd(c, v, 8, what); }

static void *alloc_or_fail(cursor *c, uint64_t bytes)
{
    void *p = bytes <= SIZE_MAX ? arena_alloc(c->arena, (size_t)bytes) : NULL;
    if (!p) err_set(c->err, STRATA_E_NOMEM, "%s: out of memory reading the header", c->name);
    return p;
}

static strata_status rd_str(cursor *c, gguf_str *s, const char *what)
{
    uint64_t at = c->pos, len;
    strata_status st = rd_u64(c, &len, what);
    if (st) return st;
    if (len > remaining(c)) {
        char w[64];
        snprintf(w, sizeof w, "%s length", what);
        return truncated(c, at, w, len, len);
    }
    char *p = alloc_or_fail(c, len + 1);
    if (!p) return STRATA_E_NOMEM;
    if ((st = rd(c, p, len, what))) return st;
    p[len] = '\0';
    s->len = len;
    s->ptr = p;
    return STRATA_OK;
}

static const struct {
    const char *name;
    uint8_t size;
} vtypes[GGUF_TYPE_COUNT] = {
    {"u8", 1}, {"i8", 1}, {"u16", 2}, {"i16", 2}, {"u32", 4}, {"i32", 4}, {"f32", 4},
    {"bool", 1}, {"string", 0}, {"array", 0}, {"u64", 8}, {"i64", 8}, {"f64", 8},
};

const char *gguf_vtype_name(uint32_t type) { return type < GGUF_TYPE_COUNT ? vtypes[type].name : "unknown"; }
size_t gguf_vtype_size(uint32_t type) { return type < GGUF_TYPE_COUNT ? vtypes[type].size : 0; }

/* The fewest file bytes one element of a type can occupy (for bounding
 * counts before allocating): a string is at least its 8-byte length, an
 * array at least its 4-byte type and 8-byte count. */
static uint64_t min_encoded_size(uint32_t type)
{
    if (type == GGUF_TYPE_STRING) return 8;
    if (type == GGUF_TYPE_ARRAY) return 12;
    return gguf_vtype_size(type);
}

void gguf_value_from_raw(uint32_t type, const void *raw_bytes, gguf_value *v)
{
    const uint8_t *raw = raw_bytes;
    v->type = type;
    switch (type) {
    case GGUF_TYPE_U8: v->u = raw[0]; break;
    case GGUF_TYPE_BOOL: v->u = raw[0] != 0; break;
    case GGUF_TYPE_I8: v->i = (int8_t)raw[0]; break;
    case GGUF_TYPE_U16: { uint16_t x; memcpy(&x, raw, 2); v->u = x; } break;
    case GGUF_TYPE_I16: { int16_t x; memcpy(&x, raw, 2); v->i = x; } break;
    case GGUF_TYPE_U32: { uint32_t x; memcpy(&x, raw, 4); v->u = x; } break;
    case GGUF_TYPE_I32: { int32_t x; memcpy(&x, raw, 4); v->i = x; } break;
    case GGUF_TYPE_U64: memcpy(&v->u, raw, 8); break;
    case GGUF_TYPE_I64: memcpy(&v->i, raw, 8); break;
    case GGUF_TYPE_F32: { float x; memcpy(&x, raw, 4); v->f = x; } break;
    case GGUF_TYPE_F64: memcpy(&v->f, raw, 8); break;
    default: break;
    }
}

static strata_status rd_value(cursor *c, uint32_t type, gguf_value *v, int depth);

static strata_status rd_array(cursor *c, gguf_value *v, int depth)
{
    uint64_t at = c->pos;
    uint32_t et;
    uint64_t n;
    strata_status st;
    if ((st = rd_u32(c, &et, "array element type")) || (st = rd_u64(c, &n, "array length"))) return st;
    if (et >= GGUF_TYPE_COUNT) {
        char d[32];
        snprintf(d, sizeof d, "%" PRIu32, et);
        return fail(c, at, "unknown array element type %s", d);
    }
    if (et == GGUF_TYPE_ARRAY && depth + 1 >= GGUF_MAX_NESTING)
        return fail(c, at, "arrays nested deeper than %s levels", "8");
    if (n > remaining(c) / min_encoded_size(et))
        return truncated(c, at, "array length", n, mul_sat(n, min_encoded_size(et)));
    v->type = GGUF_TYPE_ARRAY;
    v->arr.type = et;
    v->arr.n = n;
    if (et != GGUF_TYPE_STRING && et != GGUF_TYPE_ARRAY) {
        uint64_t bytes = n * gguf_vtype_size(et);
        void *data = alloc_or_fail(c, bytes);
        if (!data) return STRATA_E_NOMEM;
        v->arr.data = data;
        return rd(c, data, bytes, "array data");
    }
    if (et == GGUF_TYPE_STRING) {
        gguf_str *strs = alloc_or_fail(c, n * sizeof(gguf_str));
        if (!strs) return STRATA_E_NOMEM;
        v->arr.data = strs;
        for (uint64_t i = 0; i < n; i++)
            if ((st = rd_str(c, &strs[i], "string array element"))) return st;
        return STRATA_OK;
    }
    gguf_value *items = alloc_or_fail(c, n * sizeof(gguf_value));
    if (!items) return STRATA_E_NOMEM;
    v->arr.data = items;
    for (uint64_t i = 0; i < n; i++)
        if ((st = rd_array(c, &items[i], depth + 1))) return st;
    return STRATA_OK;
}

static strata_status rd_value(cursor *c, uint32_t type, gguf_value *v, int depth)
{
    if (type == GGUF_TYPE_STRING) {
        v->type = type;
        return rd_str(c, &v->str, "string value");
    }
    if (type == GGUF_TYPE_ARRAY) return rd_array(c, v, depth);
    uint8_t raw[8];
    strata_status st = rd(c, raw, gguf_vtype_size(type), "metadata value");
    if (st) return st;
    gguf_value_from_raw(type, raw, v);
    return STRATA_OK;
}

static strata_status rd_header(cursor *c, gguf_file *f)
{
    char magic[4];
    strata_status st;
    if ((st = rd(c, magic, 4, "magic"))) return st;
    if (memcmp(magic, GGUF_MAGIC, 4) != 0) return fail(c, 0, "bad magic: not a GGUF file%s", "");
    if ((st = rd_u32(c, &f->version, "version"))) return st;
    uint32_t swapped = __builtin_bswap32(f->version);
    if ((f->version & 0xffff) == 0 && swapped >= 1 && swapped <= 3)
        return err_set(c->err, STRATA_E_UNSUPPORTED, "%s: offset 4: big-endian GGUF is not supported", c->name);
    if (f->version != 2 && f->version != 3) {
        char d[32];
        snprintf(d, sizeof d, "%" PRIu32, f->version);
        return err_set(c->err, STRATA_E_UNSUPPORTED,
                       "%s: offset 4: unsupported GGUF version %s (strata reads versions 2 and 3)", c->name, d);
    }
    if ((st = rd_u64(c, &f->n_tensors, "tensor count"))) return st;
    if ((st = rd_u64(c, &f->n_kv, "metadata count"))) return st;
    /* Each metadata entry takes at least 13 bytes, each tensor info 24. */
    if (f->n_kv > remaining(c) / 13) return truncated(c, 16, "metadata count", f->n_kv, mul_sat(f->n_kv, 13));
    if (f->n_tensors > remaining(c) / 24)
        return truncated(c, 8, "tensor count", f->n_tensors, mul_sat(f->n_tensors, 24));
    return STRATA_OK;
}

/* Adds key i to the index, failing on a duplicate (a hash: 100k keys stay fast). */
static strata_status index_key(cursor *c, gguf_file *f, uint64_t i, uint64_t at)
{
    uint64_t dup;
    int r = gguf_index_add(&f->kv_index, f->kv, gguf_kv_key, i, &dup);
    if (r < 0) return err_set(c->err, STRATA_E_NOMEM, "%s: out of memory reading the header", c->name);
    return r ? fail(c, at, "duplicate metadata key '%s'", f->kv[i].key.ptr) : STRATA_OK;
}

static strata_status rd_metadata(cursor *c, gguf_file *f)
{
    f->kv = alloc_or_fail(c, f->n_kv * sizeof(gguf_kv) + 1);
    if (!f->kv) return STRATA_E_NOMEM;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        gguf_kv *kv = &f->kv[i];
        uint64_t at = c->pos;
        uint32_t type;
        strata_status st;
        if ((st = rd_str(c, &kv->key, "metadata key"))) return st;
        if ((st = index_key(c, f, i, at))) return st;
        uint64_t type_at = c->pos;
        if ((st = rd_u32(c, &type, "value type"))) return st;
        if (type >= GGUF_TYPE_COUNT) return fail(c, type_at, "unknown value type for key '%s'", kv->key.ptr);
        if ((st = rd_value(c, type, &kv->value, 0))) return st;
    }
    return STRATA_OK;
}

static strata_status alignment_of(cursor *c, gguf_file *f)
{
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *kv = gguf_find(f, "general.alignment");
    if (!kv) return STRATA_OK;
    uint64_t a;
    if (!gguf_value_to_u64(&kv->value, &a) || a == 0 || (a & (a - 1)) || a > (1u << 30))
        return fail(c, 0, "general.alignment is not a power of two up to 2^30%s", "");
    f->alignment = (uint32_t)a;
    return STRATA_OK;
}

static strata_status rd_tensor_info(cursor *c, gguf_tensor *t)
{
    uint64_t at = c->pos;
    gguf_str name;
    strata_status st;
    if ((st = rd_str(c, &name, "tensor name"))) return st;
    if (name.len == 0) return fail(c, at, "empty tensor name%s", "");
    if (name.len >= GGUF_MAX_NAME || strlen(name.ptr) != name.len)
        return fail(c, at, "tensor name '%.80s' is longer than 63 bytes or contains NUL", name.ptr);
    t->name = name.ptr;
    if ((st = rd_u32(c, &t->n_dims, "tensor dimension count"))) return st;
    if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS)
        return fail(c, at, "tensor '%s' has 0 or more than 4 dimensions", t->name);
    t->n_elems = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if (d < t->n_dims && (st = rd_u64(c, &t->ne[d], "tensor dimension"))) return st;
        if (t->ne[d] == 0) return fail(c, at, "tensor '%s' has a zero dimension", t->name);
        if (t->ne[d] > (uint64_t)INT64_MAX / t->n_elems)
            return fail(c, at, "tensor '%s' element count overflows", t->name);
        t->n_elems *= t->ne[d];
    }
    if ((st = rd_u32(c, &t->type, "tensor type"))) return st;
    const ggml_type_info *ti = ggml_type_get(t->type);
    if (!ti) {
        char d[96];
        snprintf(d, sizeof d, "%" PRIu32 " of tensor '%s'", t->type, t->name);
        return err_set(c->err, STRATA_E_UNSUPPORTED, "%s: offset %" PRIu64 ": unknown tensor type id %s",
                       c->name, at, d);
    }
    if (t->ne[0] % ti->block_elems)
        return fail(c, at, "tensor '%s' row length is not a multiple of its type's block size", t->name);
    /* n_elems <= INT64_MAX and block_bytes <= 292 * block_elems keeps this exact. */
    uint64_t blocks = t->n_elems / ti->block_elems;
    if (blocks > UINT64_MAX / ti->block_bytes) return fail(c, at, "tensor '%s' byte size overflows", t->name);
    t->n_bytes = blocks * ti->block_bytes;
    return rd_u64(c, &t->offset, "tensor offset");
}

static int cmp_by_offset(const void *a, const void *b)
{
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Tensor data ranges of one file must not overlap (checked sorted by offset). */
static strata_status check_no_overlap(cursor *c, gguf_tensor *ts, uint64_t n)
{
    if (n < 2) return STRATA_OK;
    gguf_tensor **v = malloc(n * sizeof *v);
    if (!v) return err_set(c->err, STRATA_E_NOMEM, "%s: out of memory", c->name);
    for (uint64_t i = 0; i < n; i++) v[i] = &ts[i];
    qsort(v, n, sizeof *v, cmp_by_offset);
    strata_status st = STRATA_OK;
    for (uint64_t i = 1; i < n && !st; i++)
        if (v[i - 1]->offset + v[i - 1]->n_bytes > v[i]->offset)
            st = fail(c, v[i]->file_offset, "tensor data of '%s' overlaps the previous tensor", v[i]->name);
    free(v);
    return st;
}

static strata_status rd_tensors(cursor *c, gguf_file *f, uint32_t split)
{
    f->tensors = alloc_or_fail(c, f->n_tensors * sizeof(gguf_tensor) + 1);
    if (!f->tensors) return STRATA_E_NOMEM;
    strata_status st;
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if ((st = rd_tensor_info(c, &f->tensors[i]))) return st;
    uint64_t data_offset = (c->pos + f->alignment - 1) / f->alignment * f->alignment;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        t->split = split;
        if (t->offset % f->alignment)
            return fail(c, data_offset, "tensor '%s' data offset is not a multiple of general.alignment", t->name);
        if (t->offset > c->size || data_offset > c->size - t->offset || t->n_bytes > c->size - data_offset - t->offset)
            return fail(c, data_offset, "file is truncated: tensor '%s' data runs past the end of the file", t->name);
        t->file_offset = data_offset + t->offset;
    }
    f->splits[0].data_offset = data_offset;
    strata_status dup = gguf_index_tensors(f, c->name, c->err);
    return dup ? dup : check_no_overlap(c, f->tensors, f->n_tensors);
}

/* Parses one file's header into f (allocating in c->arena). */
static strata_status parse(cursor *c, gguf_file *f, uint32_t split)
{
    strata_status st;
    if ((st = rd_header(c, f)) || (st = rd_metadata(c, f)) || (st = alignment_of(c, f))) return st;
    return rd_tensors(c, f, split);
}

static gguf_file *file_new(const char *name, uint64_t size)
{
    gguf_file *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->arena = arena_new();
    f->splits = calloc(1, sizeof(gguf_split));
    if (f->splits) f->splits[0].path = strdup(name);
    if (!f->arena || !f->splits || !f->splits[0].path) {
        gguf_close(f);
        return NULL;
    }
    f->n_splits = 1;
    f->splits[0].file_size = size;
    return f;
}

void gguf_close(gguf_file *f)
{
    if (!f) return;
    for (uint32_t i = 0; f->splits && i < f->n_splits; i++) free(f->splits[i].path);
    free(f->splits);
    arena_free(f->arena);
    gguf_index_free(f->kv_index);
    gguf_index_free(f->tensor_index);
    free(f);
}

strata_status gguf_parse_memory(const void *data, size_t size, const char *name, gguf_file **out,
                                strata_error *err)
{
    *out = NULL;
    gguf_file *f = file_new(name, size);
    if (!f) return err_set(err, STRATA_E_NOMEM, "%s: out of memory", name);
    cursor c = {.name = name, .fd = -1, .mem = data, .size = size, .arena = f->arena, .err = err};
    strata_status st = parse(&c, f, 0);
    if (!st) st = gguf_split_check_self(f, name, err);
    if (st) {
        gguf_close(f);
        return st;
    }
    *out = f;
    return STRATA_OK;
}

/* Parses the single file at path into a new gguf_file. */
strata_status gguf_open_one(const char *path, gguf_file **out, strata_error *err)
{
    *out = NULL;
    /* O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return err_set(err, STRATA_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return err_set(err, STRATA_E_IO, "%s: not a regular file (a model must be a GGUF file)", path);
    }
    gguf_file *f = file_new(path, (uint64_t)sb.st_size);
    uint8_t *buf = malloc(READ_BUF);
    strata_status st;
    if (!f || !buf) {
        st = err_set(err, STRATA_E_NOMEM, "%s: out of memory", path);
    } else {
        cursor c = {.name = path, .fd = fd, .size = (uint64_t)sb.st_size, .buf = buf, .arena = f->arena, .err = err};
        st = parse(&c, f, 0);
        f->bytes_read = c.bytes_read;
        if (!st) st = gguf_split_check_self(f, path, err);
    }
    free(buf);
    close(fd);
    if (st) {
        gguf_close(f);
        return st;
    }
    *out = f;
    return STRATA_OK;
}
