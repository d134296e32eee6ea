/* strata inspect MODEL [--json] [--tensors]: what a model holds and what it
 * needs, from its header alone. The text view is rendered from the same
 * JSON report that --json prints. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "strata.h"
#include "util/fmt.h"

static const char inspect_usage[] =
    "usage: strata inspect MODEL [--json] [--tensors]   (or -m MODEL)\n"
    "\n"
    "Reads a GGUF model's header (never its weights) and reports its shape, its\n"
    "quantization mix, bytes per layer and the KV-cache size per token and at full\n"
    "context. For a split model give the first file (name-00001-of-0000N.gguf).\n"
    "\n"
    "  -m, --model MODEL  the model (instead of the positional MODEL)\n"
    "  --json      print one JSON object (schema: docs/inspect-json.md)\n"
    "  --tensors   also list every tensor: name, type, shape, bytes, file offset\n"
    "  -h, --help  show this help\n";

static uint64_t num(const json_t *o, const char *key) { return (uint64_t)json_integer_value(json_object_get(o, key)); }
static const char *str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* Experts: how many, how many a token uses, what one costs (the unit the
 * expert cache holds; the largest of the layers') against the dense rest,
 * and what a token computes with. */
static void print_experts(const json_t *r)
{
    const json_t *layers = json_object_get(r, "layers");
    uint64_t n = num(r, "n_expert"), lo = UINT64_MAX, hi = 0, with = 0;
    size_t i;
    json_t *l;
    json_array_foreach(layers, i, l) {
        uint64_t e = num(l, "per_expert");
        if (!e) continue;
        with++;
        if (e < lo) lo = e;
        if (e > hi) hi = e;
    }
    char a[32], b[32], c[32], d[32], e[32];
    if (lo > hi) lo = hi;
    printf("experts     %llu, %llu used per token, FFN %llu wide; one expert %s%s%s (%llu in %llu layers, "
           "%s)\n", (unsigned long long)n, (unsigned long long)num(r, "n_expert_used"),
           (unsigned long long)num(r, "n_ff_exp"), fmt_bytes(lo, a, 32), lo != hi ? " to " : "",
           lo != hi ? fmt_bytes(hi, b, 32) : "", (unsigned long long)(n * with), (unsigned long long)with,
           fmt_bytes(num(r, "expert_bytes"), c, 32));
    if (num(r, "n_ff_shexp"))
        printf("            and a shared expert, FFN %llu wide, that every token runs (dense)\n",
               (unsigned long long)num(r, "n_ff_shexp"));
    printf("            dense (everything but the experts) %s; a token computes with %s\n",
           fmt_bytes(num(r, "dense_bytes"), d, 32), fmt_bytes(num(r, "active_bytes_per_token"), e, 32));
}

static void print_summary(const json_t *r, const char *path)
{
    char a[32], b[32];
    printf("model       %s (%s, GGUF v%d, %d file%s)\n", path, fmt_bytes(num(r, "file_bytes"), a, sizeof a),
           (int)num(r, "gguf_version"), (int)num(r, "n_splits"), num(r, "n_splits") > 1 ? "s" : "");
    printf("arch        %s%s%s%s\n", str(r, "architecture"), *str(r, "name") ? " (\"" : "", str(r, "name"),
           *str(r, "name") ? "\")" : "");
    printf("parameters  %s in %d tensors, %s (%.2f bits/weight)\n", fmt_count(num(r, "n_params"), a, sizeof a),
           (int)num(r, "n_tensors"), fmt_bytes(num(r, "tensor_bytes"), b, sizeof b),
           json_real_value(json_object_get(r, "bits_per_weight")));
    printf("context     %llu tokens\n", (unsigned long long)num(r, "context_length"));
    printf("shape       embedding %llu, %llu layers, %llu heads / %llu KV heads, head dim %llu, ffn %llu\n",
           (unsigned long long)num(r, "n_embd"), (unsigned long long)num(r, "n_layers"),
           (unsigned long long)num(r, "n_heads"), (unsigned long long)num(r, "n_kv_heads"),
           (unsigned long long)num(r, "head_dim"), (unsigned long long)num(r, "n_ff"));
    if (num(r, "n_expert")) print_experts(r);
    const json_t *rope = json_object_get(r, "rope");
    printf("rope        dimensions %llu, base %g, scaling %s", (unsigned long long)num(rope, "dimension_count"),
           json_real_value(json_object_get(rope, "freq_base")), str(rope, "scaling"));
    if (strcmp(str(rope, "scaling"), "none")) printf(" x%g", json_real_value(json_object_get(rope, "scaling_factor")));
    printf("\n");
    if (num(r, "sliding_window")) printf("window      sliding window of %llu tokens\n", (unsigned long long)num(r, "sliding_window"));
    printf("vocabulary  %llu tokens, tokenizer %s\n", (unsigned long long)num(r, "vocab_size"),
           *str(r, "tokenizer_model") ? str(r, "tokenizer_model") : "(none)");
}

static void print_types(const json_t *r)
{
    char a[32], b[32];
    printf("\nquantization mix\n  %-8s %12s %12s %6s\n", "type", "parameters", "bytes", "bpw");
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(r, "types"), i, t)
        printf("  %-8s %12s %12s %6.2f\n", str(t, "type"), fmt_count(num(t, "n_params"), a, sizeof a),
               fmt_bytes(num(t, "bytes"), b, sizeof b), json_real_value(json_object_get(t, "bits_per_weight")));
}

static void print_layer_row(const char *label, const json_t *l, bool moe)
{
    char c[7][32];
    printf("  %-9s %11s %11s %11s %11s %11s", label, fmt_bytes(num(l, "attention"), c[0], 32),
           fmt_bytes(num(l, "ffn"), c[1], 32), fmt_bytes(num(l, "ffn_experts"), c[2], 32),
           fmt_bytes(num(l, "norm"), c[3], 32), fmt_bytes(num(l, "total"), c[4], 32));
    if (moe) printf(" %11s %11s", fmt_bytes(num(l, "dense"), c[5], 32), fmt_bytes(num(l, "per_expert"), c[6], 32));
    printf("\n");
}

/* Consecutive layers with identical breakdowns print as one row "0-31". */
static void print_layers(const json_t *r)
{
    const json_t *layers = json_object_get(r, "layers");
    size_t n = json_array_size(layers);
    bool moe = num(r, "n_expert") > 0;
    printf("\nbytes per layer\n  %-9s %11s %11s %11s %11s %11s", "layer", "attention", "ffn", "experts", "norms",
           "total");
    if (moe) printf(" %11s %11s", "dense", "one expert");
    printf("\n");
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n) {
            json_t *x = json_deep_copy(json_array_get(layers, i)), *y = json_deep_copy(json_array_get(layers, j));
            json_object_del(x, "layer");
            json_object_del(y, "layer");
            int same = json_equal(x, y);
            json_decref(x);
            json_decref(y);
            if (!same) break;
            j++;
        }
        char label[48];
        if (j - i > 1) snprintf(label, sizeof label, "%zu-%zu", i, j - 1);
        else snprintf(label, sizeof label, "%zu", i);
        print_layer_row(label, json_array_get(layers, i), moe);
        i = j;
    }
    const json_t *nl = json_object_get(r, "non_layer");
    char a[32], b[32], c[32], d[32];
    printf("  outside the layers: embedding %s, output %s, norms %s, other %s\n", fmt_bytes(num(nl, "embedding"), a, 32),
           fmt_bytes(num(nl, "output"), b, 32), fmt_bytes(num(nl, "norm"), c, 32), fmt_bytes(num(nl, "other"), d, 32));
}

static void print_kv(const json_t *r)
{
    const json_t *per = json_object_get(r, "kv_bytes_per_token"), *full = json_object_get(r, "kv_bytes_at_context");
    printf("\nKV cache    %12s %16s\n", "per token", "at full context");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)per, key, v) {
        char a[32], b[32];
        printf("  %-9s %12s %16s\n", key, fmt_bytes((uint64_t)json_integer_value(v), a, 32),
               fmt_bytes(num(full, key), b, 32));
    }
}

static void print_tensors(const json_t *r)
{
    printf("\n%-40s %-8s %-24s %12s %14s\n", "tensor", "type", "shape", "bytes", "offset");
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(r, "tensors"), i, t) {
        char shape[64] = "", *p = shape;
        size_t d;
        json_t *dim;
        json_array_foreach(json_object_get(t, "shape"), d, dim)
            p += snprintf(p, (size_t)(shape + sizeof shape - p), "%s%lld", d ? " x " : "", json_integer_value(dim));
        printf("%-40s %-8s %-24s %12llu %14llu\n", str(t, "name"), str(t, "type"), shape,
               (unsigned long long)num(t, "bytes"), (unsigned long long)num(t, "offset"));
    }
}

/* The model: a positional path and/or -m PATH (the same path when both). */
static bool set_model(const char **path, const char *v)
{
    if (*path && strcmp(*path, v)) {
        fprintf(stderr, "strata inspect: more than one model given ('%s' and '%s')\n", *path, v);
        return false;
    }
    *path = v;
    return true;
}

/* 0: parsed; 1: --help printed; 2: usage error (reported). */
static int parse_inspect_args(int argc, char **argv, const char **path, bool *as_json, bool *tensors)
{
    const char *const help[] = {inspect_usage, NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) *as_json = true;
        else if (!strcmp(a, "--tensors")) *tensors = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(inspect_usage, stdout);
            return 1;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (i + 1 >= argc) {
                arg_no_value("inspect", help, a);
                return 2;
            }
            if (!set_model(path, argv[++i])) return 2;
        } else if (a[0] == '-' && a[1]) {
            arg_unknown("inspect", help, a);
            return 2;
        } else if (!set_model(path, a)) {
            return 2;
        }
    }
    if (!*path) {
        fputs(inspect_usage, stderr);
        return 2;
    }
    return 0;
}

int cmd_inspect(int argc, char **argv)
{
    const char *path = NULL;
    bool as_json = false, tensors = false;
    int rc = parse_inspect_args(argc, argv, &path, &as_json, &tensors);
    if (rc) return rc == 1 ? 0 : rc;
    strata_error err;
    strata_model_info *info;
    if (strata_model_info_open(path, &info, &err)) {
        fprintf(stderr, "strata inspect: %s\n", err.message);
        return 1;
    }
    char *text = strata_model_info_json(info, tensors);
    strata_model_info_free(info);
    if (!text) {
        fprintf(stderr, "strata inspect: %s: out of memory building the report\n", path);
        return 1;
    }
    if (as_json) {
        printf("%s\n", text);
        free(text);
        return 0;
    }
    json_t *r = json_loads(text, 0, NULL);
    free(text);
    if (!r) {
        fprintf(stderr, "strata inspect: %s: internal error rendering the report\n", path);
        return 1;
    }
    print_summary(r, path);
    print_types(r);
    print_layers(r);
    print_kv(r);
    if (tensors) print_tensors(r);
    json_decref(r);
    return 0;
}
