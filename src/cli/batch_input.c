/* Prompt files of `strata batch` (batch_input.h). */
#include "cli/batch_input.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKENS_LIMIT (1ll << 30)

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\f' && s[i] != '\v') return false;
    return true;
}

/* A JSON object parsed from a line, or NULL. "\u0000" is valid JSON and a
 * prompt may hold NULs (items have a length): without JSON_ALLOW_NUL such a
 * first line made the whole file read as plain text, JSON and all. */
static json_t *parse_object(const char *s, size_t n, json_error_t *jerr)
{
    json_t *j = json_loadb(s, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, jerr);
    if (j && !json_is_object(j)) {
        snprintf(jerr->text, sizeof jerr->text, "not a JSON object");
        json_decref(j);
        return NULL;
    }
    return j;
}

/* "n_predict" (or "max_tokens"): -1, or 1 .. 2^30. */
static const char *item_n_predict(json_t *o, int64_t *out)
{
    const char *key = json_object_get(o, "n_predict") ? "n_predict" : "max_tokens";
    json_t *v = json_object_get(o, key);
    *out = BATCH_N_DEFAULT;
    if (!v) return NULL;
    json_int_t n = json_integer_value(v);
    if (!json_is_integer(v) || (n != -1 && (n < 1 || n > MAX_TOKENS_LIMIT)))
        return !strcmp(key, "n_predict") ? "\"n_predict\" must be -1 or an integer from 1 to 2^30"
                                         : "\"max_tokens\" must be -1 or an integer from 1 to 2^30";
    *out = n;
    return NULL;
}

/* One JSONL line into *it; the problem, or NULL. */
static const char *item_from_json(json_t *o, batch_item *it)
{
    json_t *p = json_object_get(o, "prompt"), *id = json_object_get(o, "id");
    if (!json_is_string(p)) return p ? "\"prompt\" is not a string" : "no \"prompt\"";
    if (json_string_length(p) == 0) return "\"prompt\" is empty";
    if (id && !json_is_string(id) && !json_is_integer(id)) return "\"id\" must be a string or an integer";
    const char *problem = item_n_predict(o, &it->n_predict);
    if (problem) return problem;
    it->len = json_string_length(p);
    it->text = malloc(it->len + 1);
    if (!it->text) return "out of memory";
    memcpy(it->text, json_string_value(p), it->len + 1);
    it->id = id ? json_incref(id) : NULL;
    return NULL;
}

static const char *item_from_text(const char *s, size_t n, batch_item *it)
{
    if (n && s[n - 1] == '\r') n--; /* CRLF files */
    it->text = malloc(n + 1);
    if (!it->text) return "out of memory";
    memcpy(it->text, s, n);
    it->text[n] = '\0';
    it->len = n;
    return NULL;
}

/* Adds line `line` (s[0..n), not blank) to in. */
static bool add_line(const char *path, uint32_t line, const char *s, size_t n, batch_input *in, size_t *cap)
{
    if (in->n == *cap) {
        size_t c = *cap ? 2 * *cap : 64;
        batch_item *items = realloc(in->items, c * sizeof *items);
        if (!items) {
            fprintf(stderr, "strata batch: out of memory reading %s\n", path);
            return false;
        }
        in->items = items;
        *cap = c;
    }
    batch_item *it = &in->items[in->n];
    memset(it, 0, sizeof *it);
    it->line = line;
    const char *problem;
    if (in->jsonl) {
        json_error_t jerr;
        json_t *o = parse_object(s, n, &jerr);
        problem = o ? item_from_json(o, it) : jerr.text;
        if (!o) fprintf(stderr, "strata batch: %s:%u: not a JSONL line (%s)\n", path, line, problem);
        json_decref(o);
        if (!o) return false;
    } else {
        problem = item_from_text(s, n, it);
    }
    if (problem) {
        fprintf(stderr, "strata batch: %s:%u: %s\n", path, line, problem);
        free(it->text);
        json_decref(it->id);
        return false;
    }
    in->n++;
    return true;
}

/* JSONL when the first non-blank line parses as a JSON object. */
static bool detect_jsonl(const char *text, size_t len)
{
    for (size_t at = 0; at < len;) {
        const char *nl = memchr(text + at, '\n', len - at);
        size_t n = nl ? (size_t)(nl - (text + at)) : len - at;
        if (!blank(text + at, n)) {
            json_error_t jerr;
            json_t *o = parse_object(text + at, n, &jerr);
            json_decref(o);
            return o != NULL;
        }
        at += n + 1;
    }
    return false;
}

bool batch_input_parse(const char *path, const char *text, size_t len, batch_input *out)
{
    memset(out, 0, sizeof *out);
    out->jsonl = detect_jsonl(text, len);
    size_t cap = 0;
    uint32_t line = 0;
    for (size_t at = 0; at < len;) {
        const char *nl = memchr(text + at, '\n', len - at);
        size_t n = nl ? (size_t)(nl - (text + at)) : len - at;
        line++;
        if (!blank(text + at, n) && !add_line(path, line, text + at, n, out, &cap)) {
            batch_input_free(out);
            return false;
        }
        at += n + 1;
    }
    return true;
}

void batch_input_free(batch_input *in)
{
    for (size_t i = 0; i < in->n; i++) {
        free(in->items[i].text);
        json_decref(in->items[i].id);
    }
    free(in->items);
    memset(in, 0, sizeof *in);
}
