/* Streaming rates that runs reached, per machine and storage device, kept
 * in stream-rates.json next to the saved profile (docs/profile-json.md):
 *
 *   {"schema": "strata-stream-rates", "version": 1,
 *    "rates": [{"fingerprint": "f78bcce13b04e654", "device": "vda",
 *               "bytes_per_s": 8.1e8, "last_bytes_per_s": 7.9e8,
 *               "seconds": 41.5, "runs": 3, "time": "2026-11-23T12:00:00Z"}]}
 *
 * A malformed file is treated as empty (and replaced by the next record):
 * it only refines predictions, it must never stop a run. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hw/hw_internal.h"
#include "util/error.h"
#include "util/outfile.h"

#define RATES_SCHEMA "strata-stream-rates"
#define RATES_VERSION 1
#define RATES_MAX_ENTRIES 64
#define RATES_FILE_MAX (1u << 20)
#define PAST_WEIGHT 2.0 /* the past counts at most this many times the new run */

strata_status hw_stream_rates_path(const char *profile_path, char *buf, size_t len, strata_error *err)
{
    const char *slash = profile_path ? strrchr(profile_path, '/') : NULL;
    int n = slash ? snprintf(buf, len, "%.*s/stream-rates.json", (int)(slash - profile_path), profile_path)
                  : snprintf(buf, len, "stream-rates.json");
    if (n < 0 || (size_t)n >= len) return err_set(err, STRATA_E_INVALID, "cache directory path too long");
    return STRATA_OK;
}

/* The file's entries array (a new reference), or an empty array when the
 * file is absent or not ours. */
static json_t *load_rates(const char *path)
{
    size_t len = 0;
    char *text = hw_read_file("", path, RATES_FILE_MAX, &len);
    json_t *root = text ? json_loads(text, JSON_REJECT_DUPLICATES, NULL) : NULL;
    free(text);
    json_t *schema = json_object_get(root, "schema"), *rates = json_object_get(root, "rates");
    json_t *out = NULL;
    if (json_is_string(schema) && !strcmp(json_string_value(schema), RATES_SCHEMA) &&
        json_integer_value(json_object_get(root, "version")) == RATES_VERSION && json_is_array(rates))
        out = json_incref(rates);
    json_decref(root);
    return out ? out : json_array();
}

static double num(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    double d = json_is_number(v) ? json_number_value(v) : 0;
    return isfinite(d) && d > 0 && d < 1e15 ? d : 0;
}

static int64_t entry_time(const json_t *o)
{
    const char *s = json_string_value(json_object_get(o, "time"));
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = s ? strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm) : NULL;
    return end && !*end ? (int64_t)timegm(&tm) : 0;
}

static bool entry_is(const json_t *o, const char *fingerprint, const char *device)
{
    const char *f = json_string_value(json_object_get(o, "fingerprint"));
    const char *d = json_string_value(json_object_get(o, "device"));
    return json_is_object(o) && f && d && !strcmp(f, fingerprint) && !strcmp(d, device);
}

static bool entry_read(const json_t *o, hw_stream_rate *out)
{
    memset(out, 0, sizeof *out);
    out->bytes_per_s = num(o, "bytes_per_s");
    out->last_bytes_per_s = num(o, "last_bytes_per_s");
    out->seconds = num(o, "seconds");
    double runs = num(o, "runs");
    out->runs = runs >= 1 && runs < 1e9 ? (uint32_t)runs : 1;
    out->time = entry_time(o);
    return out->bytes_per_s > 0;
}

bool hw_stream_rate_get(const char *path, const char *fingerprint, const char *device, hw_stream_rate *out)
{
    memset(out, 0, sizeof *out);
    if (!path || !fingerprint || !*fingerprint || !device || !*device) return false;
    json_t *rates = load_rates(path);
    size_t i;
    json_t *v;
    bool found = false;
    json_array_foreach(rates, i, v) {
        if (entry_is(v, fingerprint, device) && entry_read(v, out)) {
            found = true;
            break;
        }
    }
    json_decref(rates);
    if (!found) memset(out, 0, sizeof *out);
    return found;
}

static json_t *time_json(int64_t t)
{
    char buf[32];
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm)) return json_null();
    return json_string(buf);
}

static strata_status write_rates(const char *path, json_t *rates, strata_error *err)
{
    json_t *root = json_pack("{s:s, s:i, s:O}", "schema", RATES_SCHEMA, "version", RATES_VERSION, "rates", rates);
    char *text = root ? json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(root);
    if (!text) return err_set(err, STRATA_E_NOMEM, "%s: out of memory", path);
    strata_status st = hw_make_parent(path, err);
    if (!st) st = outfile_write_text(path, text, err);
    free(text);
    return st;
}

strata_status hw_stream_rate_record(const char *path, const char *fingerprint, const char *device, uint64_t bytes,
                                    double seconds, strata_error *err)
{
    if (!fingerprint || !*fingerprint || !device || !*device || !bytes || !(seconds > 0) || !isfinite(seconds))
        return err_set(err, STRATA_E_INVALID, "a streaming rate needs a machine, a device, bytes and a time");
    double rate = (double)bytes / seconds;
    if (!(rate > 0) || rate >= 1e15) return err_set(err, STRATA_E_INVALID, "streaming rate out of range");
    json_t *old = load_rates(path), *rates = json_array();
    if (!rates) {
        json_decref(old);
        return err_set(err, STRATA_E_NOMEM, "out of memory");
    }
    hw_stream_rate prev = {0};
    size_t i;
    json_t *v;
    json_array_foreach(old, i, v) {
        if (entry_is(v, fingerprint, device)) entry_read(v, &prev);
        else if (json_is_object(v) && json_array_size(rates) < RATES_MAX_ENTRIES - 1)
            json_array_append(rates, v);
    }
    json_decref(old);
    double w_past = prev.bytes_per_s > 0 ? fmin(prev.seconds > 0 ? prev.seconds : seconds, PAST_WEIGHT * seconds) : 0;
    double mean = (prev.bytes_per_s * w_past + rate * seconds) / (w_past + seconds);
    json_t *e = json_pack("{s:s, s:s, s:f, s:f, s:f, s:I, s:o}", "fingerprint", fingerprint, "device", device,
                          "bytes_per_s", mean, "last_bytes_per_s", rate, "seconds", w_past + seconds, "runs",
                          (json_int_t)prev.runs + 1, "time", time_json((int64_t)time(NULL)));
    strata_status st;
    if (!e || json_array_insert_new(rates, 0, e)) st = err_set(err, STRATA_E_NOMEM, "out of memory");
    else st = write_rates(path, rates, err);
    json_decref(rates);
    return st;
}
