/* The growable token-id vector and the byte-token fallback. */
#include <stdlib.h>

#include "tokenizer/tok_internal.h"
#include "util/error.h"

void tok_ids_free(tok_ids *v)
{
    free(v->ids);
    *v = (tok_ids){0};
}

strata_status tok_ids_push(tok_ids *v, int32_t id, strata_error *err)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 64;
        int32_t *ids = realloc(v->ids, cap * sizeof *ids);
        if (!ids) return err_set(err, STRATA_E_NOMEM, "tokenizer: out of memory for %zu ids", cap);
        v->ids = ids;
        v->cap = cap;
    }
    v->ids[v->n++] = id;
    return STRATA_OK;
}

strata_status tok_push_byte(const tokenizer *t, uint8_t b, tok_ids *out, strata_error *err)
{
    int32_t id = t->byte_id[b] != TOK_NONE ? t->byte_id[b] : t->unk;
    if (id == TOK_NONE)
        return err_set(err, STRATA_E_UNSUPPORTED,
                       "tokenizer: no token for byte 0x%02X (no byte token, no unknown token)", b);
    return tok_ids_push(out, id, err);
}
