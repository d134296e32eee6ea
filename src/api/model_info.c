/* Public API: header-only model inspection. */
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "model/model_spec.h"
#include "model/report.h"
#include "strata.h"
#include "util/error.h"

struct strata_model_info {
    gguf_file *file;
    model_spec *spec;
};

strata_status strata_model_info_open(const char *path, strata_model_info **out, strata_error *err)
{
    err_clear(err);
    *out = NULL;
    strata_model_info *info = calloc(1, sizeof *info);
    if (!info) return err_set(err, STRATA_E_NOMEM, "%s: out of memory", path);
    strata_status st = gguf_open(path, &info->file, err);
    if (!st) st = model_spec_from_gguf(info->file, path, &info->spec, err);
    if (st) {
        strata_model_info_free(info);
        return st;
    }
    *out = info;
    return STRATA_OK;
}

void strata_model_info_free(strata_model_info *info)
{
    if (!info) return;
    model_spec_free(info->spec);
    gguf_close(info->file);
    free(info);
}

char *strata_model_info_json(const strata_model_info *info, bool with_tensors)
{
    json_t *o = model_report_json(info->spec, with_tensors);
    if (!o) return NULL;
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}
