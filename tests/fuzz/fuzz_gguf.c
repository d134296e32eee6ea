/* libFuzzer target: the whole header path of `strata inspect` — parse,
 * derive the model spec, build the JSON report — on arbitrary bytes. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "gguf/gguf.h"
#include "model/model_spec.h"
#include "model/report.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf_file *f = NULL;
    strata_error err;
    if (gguf_parse_memory(data, size, "fuzz.gguf", &f, &err) != STRATA_OK) return 0;
    model_spec *spec = NULL;
    if (model_spec_from_gguf(f, "fuzz.gguf", &spec, &err) == STRATA_OK) {
        json_t *report = model_report_json(spec, true);
        if (!report) abort(); /* a valid header must always produce a report */
        char *text = json_dumps(report, 0);
        free(text);
        json_decref(report);
        model_spec_free(spec);
    }
    gguf_close(f);
    return 0;
}
