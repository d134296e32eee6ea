/* All-resident weight store: every registered tensor is read once, with
 * large reads, into memory the store allocated. Embedding rows are read from
 * the file on demand (only the rows of the tokens evaluated). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/cpu/dequant.h"
#include "store/store.h"
#include "util/error.h"

#define READ_CHUNK (8u << 20)

typedef struct group_data {
    uint32_t n;
    const void **ptrs;
} group_data;

struct store {
    const gguf_file *f;
    int *fds; /* one per split file */
    uint32_t n_groups;
    group_data *groups;
    void **buffers; /* every allocation, for close */
    uint32_t n_buffers;
    uint64_t resident;
};

static strata_status read_exact(store *s, const gguf_tensor *t, uint64_t offset, void *dst, uint64_t n,
                                strata_error *err)
{
    int fd = s->fds[t->split];
    uint8_t *p = dst;
    while (n > 0) {
        size_t want = n < READ_CHUNK ? (size_t)n : READ_CHUNK;
        ssize_t r = pread(fd, p, want, (off_t)offset);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return err_set(err, STRATA_E_IO, "%s: reading tensor '%s' at offset %" PRIu64 ": %s",
                           s->f->splits[t->split].path, t->name, offset, r < 0 ? strerror(errno) : "short read");
        p += r;
        offset += (uint64_t)r;
        n -= (uint64_t)r;
    }
    return STRATA_OK;
}

static strata_status load_tensor(store *s, const gguf_tensor *t, const void **out, strata_error *err)
{
    void *buf = NULL;
    if (posix_memalign(&buf, 64, t->n_bytes ? t->n_bytes : 64) != 0)
        return err_set(err, STRATA_E_NOMEM, "out of memory loading tensor '%s' (%" PRIu64 " bytes)", t->name,
                       t->n_bytes);
    s->buffers[s->n_buffers++] = buf;
    s->resident += t->n_bytes;
    *out = buf;
    return read_exact(s, t, t->file_offset, buf, t->n_bytes, err);
}

static strata_status open_files(store *s, strata_error *err)
{
    s->fds = malloc(s->f->n_splits * sizeof *s->fds);
    if (!s->fds) return err_set(err, STRATA_E_NOMEM, "out of memory");
    for (uint32_t i = 0; i < s->f->n_splits; i++) s->fds[i] = -1;
    for (uint32_t i = 0; i < s->f->n_splits; i++)
        if ((s->fds[i] = open(s->f->splits[i].path, O_RDONLY | O_CLOEXEC)) < 0)
            return err_set(err, STRATA_E_IO, "%s: cannot open: %s", s->f->splits[i].path, strerror(errno));
    return STRATA_OK;
}

static strata_status load_groups(store *s, const store_group *groups, strata_error *err)
{
    uint32_t total = 0;
    for (uint32_t g = 0; g < s->n_groups; g++) total += groups[g].n;
    s->buffers = calloc(total ? total : 1, sizeof *s->buffers);
    s->groups = calloc(s->n_groups ? s->n_groups : 1, sizeof *s->groups);
    if (!s->buffers || !s->groups) return err_set(err, STRATA_E_NOMEM, "out of memory");
    for (uint32_t g = 0; g < s->n_groups; g++) {
        group_data *gd = &s->groups[g];
        gd->n = groups[g].n;
        if (!(gd->ptrs = calloc(gd->n ? gd->n : 1, sizeof *gd->ptrs))) return err_set(err, STRATA_E_NOMEM, "out of memory");
        for (uint32_t i = 0; i < gd->n; i++) {
            const gguf_tensor *t = groups[g].tensors[i];
            strata_status st = t ? load_tensor(s, t, &gd->ptrs[i], err) : STRATA_OK;
            if (st) return st;
        }
    }
    return STRATA_OK;
}

strata_status store_open(const gguf_file *f, uint32_t n_groups, const store_group *groups, store **out,
                         strata_error *err)
{
    *out = NULL;
    store *s = calloc(1, sizeof *s);
    if (!s) return err_set(err, STRATA_E_NOMEM, "out of memory");
    s->f = f;
    s->n_groups = n_groups;
    strata_status st = open_files(s, err);
    if (!st) st = load_groups(s, groups, err);
    if (st) {
        store_close(s);
        return st;
    }
    *out = s;
    return STRATA_OK;
}

void store_close(store *s)
{
    if (!s) return;
    for (uint32_t i = 0; s->fds && i < s->f->n_splits; i++)
        if (s->fds[i] >= 0) close(s->fds[i]);
    for (uint32_t i = 0; i < s->n_buffers; i++) free(s->buffers[i]);
    for (uint32_t g = 0; s->groups && g < s->n_groups; g++) free(s->groups[g].ptrs);
    free(s->groups);
    free(s->buffers);
    free(s->fds);
    free(s);
}

strata_status store_acquire(store *s, uint32_t group, const void *const **data, strata_error *err)
{
    if (group >= s->n_groups) return err_set(err, STRATA_E_INVALID, "store: no group %" PRIu32, group);
    *data = s->groups[group].ptrs;
    return STRATA_OK;
}

void store_release(store *s, uint32_t group) { (void)s, (void)group; }

strata_status store_gather_rows(store *s, const gguf_tensor *t, const int32_t *rows, uint32_t n, float *out,
                                strata_error *err)
{
    uint64_t row_bytes = ggml_row_bytes(t->type, t->ne[0]);
    void *buf = malloc(row_bytes);
    if (!buf) return err_set(err, STRATA_E_NOMEM, "out of memory");
    strata_status st = STRATA_OK;
    for (uint32_t i = 0; i < n && !st; i++) {
        if (rows[i] < 0 || (uint64_t)rows[i] >= t->ne[1])
            st = err_set(err, STRATA_E_INVALID, "row %d of tensor '%s' is out of range", rows[i], t->name);
        else if (!(st = read_exact(s, t, t->file_offset + (uint64_t)rows[i] * row_bytes, buf, row_bytes, err)))
            st = dequant_row(t->type, buf, out + (uint64_t)i * t->ne[0], t->ne[0], err);
    }
    free(buf);
    return st;
}

uint64_t store_resident_bytes(const store *s) { return s->resident; }
