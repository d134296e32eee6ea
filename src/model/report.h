/* The inspection report of a model as a JSON object (jansson); the text
 * view of `strata inspect` is rendered from this same object, so the two
 * never disagree. Schema: docs/inspect-json.md. */
#ifndef STRATA_MODEL_REPORT_H
#define STRATA_MODEL_REPORT_H

#include <jansson.h>

#include "model/model_spec.h"

/* Cache types the report sizes the KV cache for, in display order. */
extern const uint32_t report_kv_types[3];

/* Returns a new reference, or NULL when out of memory. */
json_t *model_report_json(const model_spec *spec, bool with_tensors);

#endif
