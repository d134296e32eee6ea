#include <ctype.h>

#include "model/report.h"
#include "util/json_util.h"

const uint32_t report_kv_types[3] = {GGML_TYPE_F16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0};

static void lower(const char *s, char *out, size_t cap)
{
    size_t i = 0;
    for (; s[i] && i + 1 < cap; i++) out[i] = (char)tolower((unsigned char)s[i]);
    out[i] = '\0';
}

/* One expert's bytes in a layer: its share of the stacked expert tensors
 * (each splits evenly: the expert is the outermost dimension). */
static uint64_t per_expert(const model_spec *s, const layer_bytes *lb)
{
    return s->hp.n_expert ? lb->by_group[GROUP_FFN_EXPERTS] / s->hp.n_expert : 0;
}

/* A layer (index >= 0) with its dense part (everything but the routed
 * experts) and one expert's bytes; or the tensors outside the layers. */
static json_t *layer_json(const model_spec *s, const layer_bytes *lb, int index)
{
    json_t *o = json_object();
    if (index >= 0) json_object_set_new(o, "layer", json_integer(index));
    for (int g = 0; g < GROUP_COUNT; g++)
        if (lb->by_group[g] || (index >= 0 && g <= GROUP_NORM))
            json_object_set_new(o, tensor_group_name((tensor_group)g), json_integer((json_int_t)lb->by_group[g]));
    json_object_set_new(o, "total", json_integer((json_int_t)lb->total));
    if (index >= 0) {
        json_object_set_new(o, "dense", json_integer((json_int_t)(lb->total - lb->by_group[GROUP_FFN_EXPERTS])));
        json_object_set_new(o, "per_expert", json_integer((json_int_t)per_expert(s, lb)));
    }
    return o;
}

/* Mixture of experts totals: routed expert bytes, the rest, the largest
 * expert, and the weights one token computes with (every dense tensor,
 * n_expert_used experts per layer; of the embedding table one row, unless
 * it doubles as the output projection). */
static json_t *experts_json(const model_spec *s)
{
    const model_hparams *hp = &s->hp;
    uint64_t experts = 0, largest = 0, active = 0;
    uint64_t used = hp->n_expert_used < hp->n_expert ? hp->n_expert_used : hp->n_expert;
    for (uint64_t l = 0; l < hp->n_layers; l++) {
        const layer_bytes *lb = &s->layers[l];
        uint64_t e = per_expert(s, lb);
        experts += lb->by_group[GROUP_FFN_EXPERTS];
        if (e > largest) largest = e;
        active += lb->total - lb->by_group[GROUP_FFN_EXPERTS] + used * e;
    }
    const layer_bytes *nl = &s->non_layer;
    active += nl->total - (nl->by_group[GROUP_OUTPUT] ? nl->by_group[GROUP_EMBD] : 0);
    return json_pack("{s:I, s:I, s:I, s:I}", "expert_bytes", (json_int_t)experts, "dense_bytes",
                     (json_int_t)(s->tensor_bytes - experts), "bytes_per_expert", (json_int_t)largest,
                     "active_bytes_per_token", (json_int_t)active);
}

static json_t *types_json(const model_spec *s, json_t **by_type)
{
    json_t *arr = json_array();
    *by_type = json_object();
    for (uint32_t t = 0; t < GGML_TYPE_COUNT; t++) {
        if (!s->elems_by_type[t]) continue;
        json_object_set_new(*by_type, ggml_type_name(t), json_integer((json_int_t)s->bytes_by_type[t]));
        json_array_append_new(arr, json_pack("{s:s, s:I, s:I, s:f}", "type", ggml_type_name(t), "bytes",
                                             (json_int_t)s->bytes_by_type[t], "n_params",
                                             (json_int_t)s->elems_by_type[t], "bits_per_weight",
                                             8.0 * (double)s->bytes_by_type[t] / (double)s->elems_by_type[t]));
    }
    return arr;
}

static json_t *kv_json(const model_spec *s, bool at_context)
{
    json_t *o = json_object();
    for (size_t i = 0; i < sizeof report_kv_types / sizeof report_kv_types[0]; i++) {
        char name[16];
        lower(ggml_type_name(report_kv_types[i]), name, sizeof name);
        uint64_t b = at_context ? model_kv_bytes(s, report_kv_types[i], s->hp.context_length)
                                : model_kv_bytes_per_token(s, report_kv_types[i]);
        json_object_set_new(o, name, json_integer((json_int_t)b));
    }
    return o;
}

static json_t *tensors_json(const model_spec *s)
{
    json_t *arr = json_array();
    for (uint64_t i = 0; i < s->file->n_tensors; i++) {
        const gguf_tensor *t = &s->file->tensors[i];
        json_t *shape = json_array();
        for (uint32_t d = 0; d < t->n_dims; d++) json_array_append_new(shape, json_integer((json_int_t)t->ne[d]));
        json_array_append_new(arr, json_pack("{s:o, s:s, s:o, s:I, s:I, s:I, s:i, s:i, s:s}", "name", json_str_lossy(t->name),
                                             "type", ggml_type_name(t->type), "shape", shape, "n_params",
                                             (json_int_t)t->n_elems, "bytes", (json_int_t)t->n_bytes, "offset",
                                             (json_int_t)t->file_offset, "split", (int)t->split, "layer",
                                             s->classes[i].layer, "group", tensor_group_name(s->classes[i].group)));
    }
    return arr;
}

static json_t *rope_json(const model_hparams *hp)
{
    return json_pack("{s:I, s:f, s:o, s:f}", "dimension_count", (json_int_t)hp->rope_dim, "freq_base",
                     hp->rope_freq_base, "scaling", json_str_lossy(hp->rope_scaling), "scaling_factor", hp->rope_scaling_factor);
}

json_t *model_report_json(const model_spec *s, bool with_tensors)
{
    const model_hparams *hp = &s->hp;
    json_t *by_type;
    json_t *types = types_json(s, &by_type);
    json_t *layers = json_array();
    for (uint64_t l = 0; l < hp->n_layers; l++) json_array_append_new(layers, layer_json(s, &s->layers[l], (int)l));
    json_t *o = json_pack("{s:I, s:i, s:i, s:I, s:o, s:o, s:I, s:I, s:f}", "file_bytes", (json_int_t)s->file_bytes,
                          "gguf_version", (int)s->file->version, "n_splits", (int)s->file->n_splits, "n_tensors",
                          (json_int_t)s->file->n_tensors, "architecture", json_str_lossy(hp->arch), "name", json_str_lossy(hp->name), "n_params",
                          (json_int_t)s->n_params, "tensor_bytes", (json_int_t)s->tensor_bytes, "bits_per_weight",
                          s->n_params ? 8.0 * (double)s->tensor_bytes / (double)s->n_params : 0.0);
    json_object_update_new(o, json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "context_length",
                                        (json_int_t)hp->context_length, "n_embd", (json_int_t)hp->n_embd, "n_layers",
                                        (json_int_t)hp->n_layers, "n_heads", (json_int_t)hp->n_heads, "n_kv_heads",
                                        (json_int_t)hp->n_kv_heads, "head_dim", (json_int_t)hp->head_dim_k,
                                        "head_dim_v", (json_int_t)hp->head_dim_v, "n_ff", (json_int_t)hp->n_ff,
                                        "n_expert", (json_int_t)hp->n_expert, "n_expert_used",
                                        (json_int_t)hp->n_expert_used, "sliding_window",
                                        (json_int_t)hp->sliding_window));
    json_object_set_new(o, "n_ff_exp", json_integer((json_int_t)(hp->n_ff_exp ? hp->n_ff_exp : hp->n_expert ? hp->n_ff : 0)));
    json_object_set_new(o, "n_ff_shexp", json_integer((json_int_t)hp->n_ff_shexp));
    json_object_update_new(o, json_pack("{s:o, s:f, s:I, s:o}", "rope", rope_json(hp), "rms_eps", hp->rms_eps,
                                        "vocab_size", (json_int_t)hp->vocab_size, "tokenizer_model",
                                        json_str_lossy(hp->tokenizer_model)));
    json_object_update_new(o, json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:I}", "bytes_by_type", by_type, "types",
                                        types, "layers", layers, "non_layer", layer_json(s, &s->non_layer, -1),
                                        "kv_bytes_per_token", kv_json(s, false), "kv_bytes_at_context",
                                        kv_json(s, true), "header_bytes_read", (json_int_t)s->file->bytes_read));
    json_object_update_new(o, experts_json(s));
    if (with_tensors) json_object_set_new(o, "tensors", tensors_json(s));
    return o;
}
