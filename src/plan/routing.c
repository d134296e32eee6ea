/* The routing calibration's cache entries (routing.h): one JSON file per
 * model file,
 *   {"model": PATH, "size": BYTES, "mtime_ns": NS, "n_expert": N, "n_used": K,
 *    "tokens": T, "picks": [[...N counts...] per layer]}
 * and for a split model (PATH its first file) the other files' too,
 *   "parts": [[BYTES, NS] per file after the first]. */
#include "plan/routing.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gguf/gguf.h"
#include "hw/hw.h"
#include "util/error.h"
#include "util/outfile.h"

#define MAX_LAYERS 4096u
#define MAX_EXPERTS 65536u

/* A file's size and modification time. */
typedef struct file_stamp {
    uint64_t size, mtime_ns;
} file_stamp;

/* The model's identity: its (first) file's canonical path, and the size
 * and modification time of each of its files: a change to any part of a
 * split model makes its entry stale. */
typedef struct file_id {
    char path[PATH_MAX];
    uint32_t n_files;
    file_stamp *files; /* [n_files] the first file's first */
} file_id;

static strata_status stamp(const char *path, file_stamp *out, strata_error *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0) return err_set(err, STRATA_E_IO, "%s: %s", path, strerror(errno));
    out->size = (uint64_t)sb.st_size;
    out->mtime_ns = (uint64_t)sb.st_mtim.tv_sec * 1000000000ull + (uint64_t)sb.st_mtim.tv_nsec;
    return STRATA_OK;
}

static void forget(file_id *id)
{
    free(id->files);
    id->files = NULL;
    id->n_files = 0;
}

/* The files are the ones the model opens as (gguf_open: a split model's
 * every part). */
static strata_status identify(const char *model_path, file_id *id, strata_error *err)
{
    id->files = NULL;
    id->n_files = 0;
    if (!realpath(model_path, id->path)) return err_set(err, STRATA_E_IO, "%s: %s", model_path, strerror(errno));
    gguf_file *f = NULL;
    strata_status st = gguf_open(id->path, &f, err);
    if (!st && !(id->files = calloc(f->n_splits, sizeof *id->files)))
        st = err_set(err, STRATA_E_NOMEM, "out of memory");
    for (uint32_t i = 0; !st && i < f->n_splits; i++, id->n_files++) st = stamp(f->splits[i].path, &id->files[i], err);
    gguf_close(f);
    if (st) forget(id);
    return st;
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* The cache file of the model whose first file's canonical path is `canonical`. */
static strata_status entry_path(const char *canonical, char *buf, size_t len, strata_error *err)
{
    char profile[4096];
    strata_status st = hw_profile_default_path(profile, sizeof profile, err);
    if (st) return st;
    char *slash = strrchr(profile, '/');
    if (slash) *slash = '\0';
    uint64_t key = fnv1a(1469598103934665603ull, canonical, strlen(canonical));
    int n = snprintf(buf, len, "%s/routing/%016llx.json", profile, (unsigned long long)key);
    return n < 0 || (size_t)n >= len ? err_set(err, STRATA_E_INVALID, "cache directory path too long") : STRATA_OK;
}

void plan_routing_free(plan_routing *r)
{
    free(r->picks);
    memset(r, 0, sizeof *r);
}

static bool get_u32(const json_t *o, const char *key, uint32_t lo, uint32_t hi, uint32_t *out)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) return false;
    *out = (uint32_t)json_integer_value(v);
    return true;
}

/* Whether the entry's "parts" (absent for a single file) are the split
 * model's files after the first, each of the same size and time. */
static bool parts_match(const json_t *parts, const file_id *id)
{
    if (!parts) return id->n_files == 1;
    if (!json_is_array(parts) || json_array_size(parts) != id->n_files - 1) return false;
    for (uint32_t i = 1; i < id->n_files; i++) {
        const json_t *p = json_array_get(parts, i - 1), *size = json_array_get(p, 0), *mtime = json_array_get(p, 1);
        if (!json_is_array(p) || json_array_size(p) != 2 || !json_is_integer(size) || !json_is_integer(mtime) ||
            (uint64_t)json_integer_value(size) != id->files[i].size ||
            (uint64_t)json_integer_value(mtime) != id->files[i].mtime_ns)
            return false;
    }
    return true;
}

/* The entry's counts into r; the reason it is unusable, or NULL. */
static const char *parse(const json_t *doc, const file_id *id, plan_routing *r)
{
    const json_t *path = json_object_get(doc, "model"), *size = json_object_get(doc, "size"),
                 *mtime = json_object_get(doc, "mtime_ns"), *picks = json_object_get(doc, "picks");
    if (!json_is_string(path) || !json_is_integer(size) || !json_is_integer(mtime)) return "not a routing entry";
    if (strcmp(json_string_value(path), id->path) || (uint64_t)json_integer_value(size) != id->files[0].size ||
        (uint64_t)json_integer_value(mtime) != id->files[0].mtime_ns || !parts_match(json_object_get(doc, "parts"), id))
        return "the model file changed since it was measured";
    if (!get_u32(doc, "n_expert", 1, MAX_EXPERTS, &r->n_expert) || !get_u32(doc, "n_used", 1, r->n_expert, &r->n_used) ||
        !get_u32(doc, "tokens", 1, UINT32_MAX / r->n_used, &r->tokens) || !json_is_array(picks) ||
        json_array_size(picks) < 1 || json_array_size(picks) > MAX_LAYERS)
        return "malformed counts";
    r->n_layers = (uint32_t)json_array_size(picks);
    if (!(r->picks = calloc((size_t)r->n_layers * r->n_expert, sizeof *r->picks))) return "out of memory";
    for (uint32_t l = 0; l < r->n_layers; l++) {
        const json_t *row = json_array_get(picks, l);
        if (!json_is_array(row) || json_array_size(row) != r->n_expert) return "malformed counts";
        uint64_t sum = 0;
        for (uint32_t x = 0; x < r->n_expert; x++) {
            const json_t *c = json_array_get(row, x);
            if (!json_is_integer(c) || json_integer_value(c) < 0 || json_integer_value(c) > r->tokens)
                return "malformed counts";
            r->picks[(size_t)l * r->n_expert + x] = (uint32_t)json_integer_value(c);
            sum += r->picks[(size_t)l * r->n_expert + x];
        }
        /* every token picks n_used experts of a layer with experts, none of a dense one */
        if (sum != 0 && sum != (uint64_t)r->tokens * r->n_used) return "counts that do not add up to the tokens' picks";
    }
    return NULL;
}

strata_status plan_routing_load(const char *model_path, plan_routing *out, bool *found, strata_error *err)
{
    memset(out, 0, sizeof *out);
    *found = false;
    file_id id;
    char path[4200];
    strata_status st = identify(model_path, &id, err);
    if (!st) st = entry_path(id.path, path, sizeof path, err);
    json_t *doc = st ? NULL : json_load_file(path, JSON_REJECT_DUPLICATES, NULL); /* NULL: none, unreadable, not JSON */
    bool usable = json_is_object(doc) && parse(doc, &id, out) == NULL;
    json_decref(doc);
    forget(&id);
    if (!usable) plan_routing_free(out);
    *found = usable;
    return st;
}

/* The split model's files after the first: [[BYTES, NS], ...]. */
static json_t *parts_json(const file_id *id)
{
    json_t *parts = json_array();
    for (uint32_t i = 1; parts && i < id->n_files; i++)
        json_array_append_new(parts, json_pack("[I, I]", (json_int_t)id->files[i].size,
                                               (json_int_t)id->files[i].mtime_ns));
    return parts;
}

static json_t *to_json(const file_id *id, const plan_routing *r)
{
    json_t *picks = json_array();
    for (uint32_t l = 0; picks && l < r->n_layers; l++) {
        json_t *row = json_array();
        for (uint32_t x = 0; row && x < r->n_expert; x++)
            json_array_append_new(row, json_integer(r->picks[(size_t)l * r->n_expert + x]));
        json_array_append_new(picks, row);
    }
    json_t *doc = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:o}", "model", id->path, "size",
                            (json_int_t)id->files[0].size, "mtime_ns", (json_int_t)id->files[0].mtime_ns, "n_expert",
                            (json_int_t)r->n_expert, "n_used", (json_int_t)r->n_used, "tokens", (json_int_t)r->tokens,
                            "picks", picks);
    if (doc && id->n_files > 1 && json_object_set_new(doc, "parts", parts_json(id)) != 0) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

strata_status plan_routing_save(const char *model_path, const plan_routing *r, strata_error *err)
{
    file_id id;
    char path[4200];
    strata_status st = identify(model_path, &id, err);
    if (!st) st = entry_path(id.path, path, sizeof path, err);
    if (!st) st = hw_make_parent(path, err);
    json_t *doc = st ? NULL : to_json(&id, r);
    forget(&id);
    if (st) return st;
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text) return err_set(err, STRATA_E_NOMEM, "%s: out of memory writing the routing", path);
    st = outfile_write_text(path, text, err);
    free(text);
    return st;
}

static int count_desc(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* How far each count is trusted over the layer's mean (0..1): a few
 * hundred tokens leave binomial noise in every count, and an LFU estimate
 * that keeps the units counted highest picks that noise as if it were
 * popularity (uniform routing would look skewed). The noise's variance
 * against the counts' spread (empirical Bayes, as James-Stein): 0 for
 * counts no more spread than noise, near 1 for a strong skew. */
static double trust(const uint32_t *counts, uint32_t n, uint32_t tokens)
{
    double mean = 0, spread = 0, noise = 0;
    for (uint32_t x = 0; x < n; x++) mean += counts[x];
    mean /= n;
    for (uint32_t x = 0; x < n; x++) {
        spread += (counts[x] - mean) * (counts[x] - mean);
        noise += counts[x] * (1 - (double)counts[x] / tokens); /* binomial: T p (1 - p) */
    }
    if (n < 2 || spread <= 0) return 0;
    double t = 1 - (noise / n) / (spread / (n - 1));
    return t > 0 ? t : 0;
}

/* One layer's counts, sorted (clobbered), as groups of equal chance:
 * each count drawn toward the layer's mean by trust(), at least half a
 * pick (an expert the calibration never saw is rare, not never used). */
static bool layer_chances(uint32_t *counts, const plan_routing *r, plan_expert_set *e)
{
    qsort(counts, r->n_expert, sizeof *counts, count_desc);
    double mean = 0, t = trust(counts, r->n_expert, r->tokens);
    for (uint32_t x = 0; x < r->n_expert; x++) mean += counts[x];
    mean /= r->n_expert;
    uint32_t n = 0;
    for (uint32_t x = 0; x < r->n_expert; x++) n += x == 0 || counts[x] != counts[x - 1];
    struct plan_unit_chance *c = calloc(n, sizeof *c); /* [n] */
    if (!c) return false;
    n = 0;
    for (uint32_t x = 0; x < r->n_expert; x++) {
        if (x == 0 || counts[x] != counts[x - 1]) {
            double picks = mean + t * (counts[x] - mean);
            double chance = (picks > 0.5 ? picks : 0.5) / r->tokens;
            c[n++].chance = chance < 1 ? chance : 1;
        }
        c[n - 1].units++;
    }
    free(e->chances);
    e->chances = c;
    e->n_chances = n;
    return true;
}

/* Whether layer l routed any token (a dense layer routes none). */
static bool routed(const plan_routing *r, uint32_t l)
{
    for (uint32_t x = 0; x < r->n_expert; x++)
        if (r->picks[(size_t)l * r->n_expert + x]) return true;
    return false;
}

bool plan_model_set_routing(plan_model *m, const plan_routing *r)
{
    if (!r->picks || r->n_layers != m->n_expert_sets) return false;
    for (uint32_t l = 0; l < m->n_expert_sets; l++) {
        const plan_expert_set *e = &m->experts[l];
        if (e->n_expert && (e->n_expert != r->n_expert || e->n_used != r->n_used || !routed(r, l))) return false;
    }
    uint32_t *counts = malloc(r->n_expert * sizeof *counts); /* [n_expert] one layer's, sorted */
    bool ok = counts != NULL;
    for (uint32_t l = 0; ok && l < m->n_expert_sets; l++) {
        if (!m->experts[l].n_expert) continue;
        memcpy(counts, r->picks + (size_t)l * r->n_expert, r->n_expert * sizeof *counts);
        ok = layer_chances(counts, r, &m->experts[l]);
    }
    free(counts);
    if (ok) m->routing_tokens = r->tokens;
    return ok;
}
