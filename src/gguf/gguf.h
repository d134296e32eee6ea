/* GGUF reader and writer.
 *
 * The reader parses the header (metadata and tensor table) of GGUF v2/v3
 * files — never tensor data — into memory proportional to the header, and
 * validates everything it reads against the file size before allocating.
 * A split model (name-00001-of-00003.gguf) opens as one gguf_file whose
 * tensors name the split file that holds them.
 */
#ifndef STRATA_GGUF_GGUF_H
#define STRATA_GGUF_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/ggml_types.h"
#include "strata.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_NAME 64      /* ggml's limit, including the terminating NUL */
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NESTING 8    /* arrays of arrays deeper than this are rejected */

enum gguf_vtype {
    GGUF_TYPE_U8 = 0,
    GGUF_TYPE_I8 = 1,
    GGUF_TYPE_U16 = 2,
    GGUF_TYPE_I16 = 3,
    GGUF_TYPE_U32 = 4,
    GGUF_TYPE_I32 = 5,
    GGUF_TYPE_F32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_U64 = 10,
    GGUF_TYPE_I64 = 11,
    GGUF_TYPE_F64 = 12,
    GGUF_TYPE_COUNT = 13,
};

/* A string as stored in GGUF: explicit length, not necessarily free of NUL
 * bytes; `ptr` is always followed by a terminating NUL for convenience. */
typedef struct gguf_str {
    uint64_t len;
    const char *ptr;
} gguf_str;

typedef struct gguf_value gguf_value;

/* An array's elements: for scalar element types a packed little-endian
 * vector of that type (e.g. float * for F32, uint8_t * for BOOL); for
 * STRING a gguf_str *; for ARRAY a gguf_value * (each of type ARRAY). */
typedef struct gguf_array {
    uint32_t type;
    uint64_t n;
    const void *data;
} gguf_array;

struct gguf_value {
    uint32_t type;
    union {
        uint64_t u;    /* U8, U16, U32, U64, BOOL (0/1) */
        int64_t i;     /* I8, I16, I32, I64 */
        double f;      /* F32, F64 */
        gguf_str str;  /* STRING */
        gguf_array arr;/* ARRAY */
    };
};

typedef struct gguf_kv {
    gguf_str key;
    gguf_value value;
} gguf_kv;

typedef struct gguf_tensor {
    const char *name;
    uint32_t type;            /* enum ggml_type */
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the row length; unused dims are 1 */
    uint64_t n_elems;
    uint64_t n_bytes;
    uint64_t offset;          /* relative to its file's data section */
    uint64_t file_offset;     /* absolute position in its file */
    uint32_t split;           /* index into gguf_file.splits */
} gguf_tensor;

typedef struct gguf_split {
    char *path;
    uint64_t file_size;
    uint64_t data_offset;     /* start of the tensor data section */
} gguf_split;

typedef struct gguf_arena gguf_arena;
typedef struct gguf_index gguf_index;

typedef struct gguf_file {
    uint32_t version;
    uint32_t alignment;
    uint64_t n_kv;
    gguf_kv *kv;              /* metadata of the first (or only) file */
    uint64_t n_tensors;
    gguf_tensor *tensors;     /* all tensors of all splits, in file order */
    uint32_t n_splits;
    gguf_split *splits;
    uint64_t bytes_read;      /* bytes read from disk while parsing */
    gguf_arena *arena;        /* owns every string and array */
    gguf_index *kv_index;     /* hash of metadata keys (NULL: look-ups scan) */
    gguf_index *tensor_index; /* hash of tensor names (NULL: look-ups scan) */
} gguf_file;

/* Opens a GGUF file. When the file is the first of a split model, every
 * split is opened and the tensors of all of them are listed. */
strata_status gguf_open(const char *path, gguf_file **out, strata_error *err);

/* Parses one GGUF file held in memory; `name` is used in error messages.
 * Split keys are validated but other splits are not opened. */
strata_status gguf_parse_memory(const void *data, size_t size, const char *name,
                                gguf_file **out, strata_error *err);

void gguf_close(gguf_file *f);

/* ---- metadata look-up ---- */
const gguf_kv *gguf_find(const gguf_file *f, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

/* Typed getters: return false when the key is absent or of an incompatible
 * type. Integer getters accept any integer type whose value fits. */
bool gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out);
bool gguf_get_i64(const gguf_file *f, const char *key, int64_t *out);
bool gguf_get_f64(const gguf_file *f, const char *key, double *out); /* any numeric */
bool gguf_get_bool(const gguf_file *f, const char *key, bool *out);
bool gguf_get_str(const gguf_file *f, const char *key, gguf_str *out);
bool gguf_get_arr(const gguf_file *f, const char *key, gguf_array *out);

bool gguf_value_to_u64(const gguf_value *v, uint64_t *out);
bool gguf_value_to_f64(const gguf_value *v, double *out);

/* Element i of a numeric array as u64 / f64 (false if out of range or the
 * element does not fit). */
bool gguf_array_u64(const gguf_array *a, uint64_t i, uint64_t *out);
bool gguf_array_f64(const gguf_array *a, uint64_t i, double *out);

const char *gguf_vtype_name(uint32_t type);
/* Size in bytes of a scalar value type, 0 for STRING and ARRAY. */
size_t gguf_vtype_size(uint32_t type);

/* ---- writer ----
 * Usage: gguf_writer_new; set metadata and add every tensor; gguf_writer_open
 * (writes the header to a fresh temporary file next to PATH, util/outfile.h);
 * gguf_writer_write the tensor data in the order the tensors were added, in
 * pieces of any size (padding between tensors is inserted automatically);
 * gguf_writer_close renames the temporary file to PATH. On any failure, a
 * signal, or gguf_writer_free without close, nothing is left at PATH or in
 * a temporary file. */
typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w);
void gguf_writer_set_version(gguf_writer *w, uint32_t version);     /* 2 or 3; default 3 */
strata_status gguf_writer_set_alignment(gguf_writer *w, uint32_t alignment, strata_error *err);

/* Sets (or replaces) a metadata key; the value is deep-copied. */
strata_status gguf_writer_set(gguf_writer *w, const char *key, const gguf_value *v,
                              strata_error *err);
strata_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v, strata_error *err);
strata_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v, strata_error *err);
strata_status gguf_writer_set_f32(gguf_writer *w, const char *key, float v, strata_error *err);
strata_status gguf_writer_set_bool(gguf_writer *w, const char *key, bool v, strata_error *err);
strata_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *v, strata_error *err);
/* A scalar array: `data` holds n packed elements of elem_type. */
strata_status gguf_writer_set_arr(gguf_writer *w, const char *key, uint32_t elem_type,
                                  const void *data, uint64_t n, strata_error *err);
strata_status gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *strs,
                                      uint64_t n, strata_error *err);

strata_status gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type,
                                     uint32_t n_dims, const uint64_t *ne, strata_error *err);
/* Total file size the writer will produce (valid after all tensors are added). */
uint64_t gguf_writer_file_size(const gguf_writer *w);

strata_status gguf_writer_open(gguf_writer *w, const char *path, strata_error *err);
strata_status gguf_writer_write(gguf_writer *w, const void *data, uint64_t n, strata_error *err);
strata_status gguf_writer_close(gguf_writer *w, strata_error *err);

#endif
