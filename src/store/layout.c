#include <stdlib.h>
#include <string.h>

#include "store/layout.h"
#include "util/error.h"

static uint64_t align_down(uint64_t x) { return x / STORE_ALIGN * STORE_ALIGN; }
static uint64_t align_up(uint64_t x) { return (x + STORE_ALIGN - 1) / STORE_ALIGN * STORE_ALIGN; }

typedef struct by_pos {
    const gguf_tensor *t;
    uint32_t index;
} by_pos;

static int cmp_pos(const void *a, const void *b)
{
    const gguf_tensor *x = ((const by_pos *)a)->t, *y = ((const by_pos *)b)->t;
    if (x->split != y->split) return x->split < y->split ? -1 : 1;
    return x->file_offset < y->file_offset ? -1 : x->file_offset > y->file_offset;
}

/* Walks the tensors in file order, opening a new run whenever the next one
 * is in another file or further than STORE_MERGE_GAP past the current run. */
static void place(group_layout *l, const by_pos *s, uint32_t n)
{
    store_run *r = NULL;
    for (uint32_t i = 0; i < n; i++) {
        const gguf_tensor *t = s[i].t;
        uint64_t end = t->file_offset + t->n_bytes;
        if (!r || r->split != t->split || t->file_offset > r->file_offset + r->length + STORE_MERGE_GAP) {
            if (r) l->bytes += r->length;
            r = &l->runs[l->n_runs++];
            *r = (store_run){t->split, align_down(t->file_offset), 0, l->bytes};
        }
        if (align_up(end) - r->file_offset > r->length) r->length = align_up(end) - r->file_offset;
        l->tensor_offset[s[i].index] = r->buf_offset + (t->file_offset - r->file_offset);
        l->tensor_bytes += t->n_bytes;
    }
    if (r) l->bytes += r->length;
}

strata_status layout_build(const gguf_file *f, const gguf_tensor *const *tensors, uint32_t n, group_layout *out,
                           strata_error *err)
{
    (void)f;
    memset(out, 0, sizeof *out);
    out->n_tensors = n;
    by_pos *s = calloc(n ? n : 1, sizeof *s);
    out->tensor_offset = malloc((n ? n : 1) * sizeof *out->tensor_offset);
    out->runs = calloc(n ? n : 1, sizeof *out->runs);
    if (!s || !out->tensor_offset || !out->runs) {
        free(s);
        layout_free(out);
        return err_set(err, STRATA_E_NOMEM, "out of memory");
    }
    uint32_t m = 0;
    for (uint32_t i = 0; i < n; i++) {
        out->tensor_offset[i] = UINT64_MAX;
        if (tensors[i]) s[m++] = (by_pos){tensors[i], i};
    }
    qsort(s, m, sizeof *s, cmp_pos);
    place(out, s, m);
    free(s);
    return STRATA_OK;
}

void layout_free(group_layout *l)
{
    free(l->tensor_offset);
    free(l->runs);
    memset(l, 0, sizeof *l);
}
