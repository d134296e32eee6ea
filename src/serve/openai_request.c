/* Parsing and validating an OpenAI-style request body (jansson). */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/openai_request.h"

#define MAX_TOKENS_LIMIT (1u << 30)

/* The parse in progress: the request and the first error. */
typedef struct parse_ctx {
    oai_request *r;
    char *msg;
    size_t cap;
    const char *param;
} parse_ctx;

static bool fail(parse_ctx *c, const char *param, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(parse_ctx *c, const char *param, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (c->cap) vsnprintf(c->msg, c->cap, fmt, ap);
    va_end(ap);
    c->param = param;
    return false;
}

/* A field that is absent or JSON null counts as not given. */
static json_t *field(json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    return json_is_null(v) ? NULL : v;
}

static bool number_field(parse_ctx *c, json_t *obj, const char *name, double min, double max, float *out)
{
    json_t *v = field(obj, name);
    if (!v) return true;
    double x = json_number_value(v);
    if (!json_is_number(v) || !isfinite(x) || x < min || x > max)
        return fail(c, name, "'%s' must be a number from %g to %g", name, min, max);
    *out = (float)x;
    return true;
}

static bool bool_field(parse_ctx *c, json_t *obj, const char *name, bool *out)
{
    json_t *v = field(obj, name);
    if (!v) return true;
    if (!json_is_boolean(v)) return fail(c, name, "'%s' must be true or false", name);
    *out = json_is_true(v);
    return true;
}

/* max_tokens (or max_completion_tokens, its newer name): 1.., or -1 for
 * "until the context is full" (llama-server's convention). */
static bool max_tokens_field(parse_ctx *c, json_t *obj, const char *name)
{
    json_t *v = field(obj, name);
    if (!v) return true;
    json_int_t n = json_integer_value(v);
    if (!json_is_integer(v) || n == 0 || n < -1 || n > MAX_TOKENS_LIMIT)
        return fail(c, name, "'%s' must be an integer from 1 to %u (or -1: until the context is full)", name,
                    MAX_TOKENS_LIMIT);
    c->r->unlimited = n == -1;
    c->r->max_tokens = n == -1 ? 0 : (uint32_t)n;
    return true;
}

static bool integer_fields(parse_ctx *c, json_t *obj)
{
    json_t *v;
    if (!max_tokens_field(c, obj, "max_tokens") || !max_tokens_field(c, obj, "max_completion_tokens")) return false;
    if ((v = field(obj, "top_k"))) {
        json_int_t k = json_integer_value(v);
        if (!json_is_integer(v) || k < 0 || k > MAX_TOKENS_LIMIT)
            return fail(c, "top_k", "'top_k' must be an integer from 0 (off) to %u", MAX_TOKENS_LIMIT);
        c->r->sampling.top_k = (int32_t)k;
    }
    if ((v = field(obj, "seed"))) {
        if (!json_is_integer(v)) return fail(c, "seed", "'seed' must be an integer");
        c->r->sampling.seed = (uint64_t)json_integer_value(v);
        c->r->seed_given = true;
    }
    if ((v = field(obj, "n")) && (!json_is_integer(v) || json_integer_value(v) != 1))
        return fail(c, "n", "'n' must be 1 (one choice per request)");
    return true;
}

static bool sampling_fields(parse_ctx *c, json_t *obj)
{
    strata_sampler_params *s = &c->r->sampling;
    return number_field(c, obj, "temperature", 0, 2, &s->temp) && number_field(c, obj, "top_p", 0, 1, &s->top_p) &&
           number_field(c, obj, "min_p", 0, 1, &s->min_p) &&
           number_field(c, obj, "repeat_penalty", 0.01, 100, &s->repeat_penalty) && integer_fields(c, obj);
}

/* A malloc'd copy of text[0..n) and a NUL. */
static char *dup_text(parse_ctx *c, const char *text, size_t n)
{
    char *d = malloc(n + 1); /* [n + NUL] */
    if (!d) {
        fail(c, NULL, "out of memory");
        return NULL;
    }
    memcpy(d, text, n);
    d[n] = '\0';
    return d;
}

static char *dup_string(parse_ctx *c, json_t *s, size_t *len)
{
    if (len) *len = json_string_length(s);
    return dup_text(c, json_string_value(s), json_string_length(s));
}

/* stop: a string or an array of at most OAI_MAX_STOP strings. */
static bool stop_field(parse_ctx *c, json_t *obj)
{
    json_t *v = field(obj, "stop");
    if (!v) return true;
    if (json_is_string(v)) {
        c->r->stop[0] = dup_string(c, v, NULL);
        c->r->n_stop = c->r->stop[0] != NULL;
        return c->r->stop[0] != NULL;
    }
    if (!json_is_array(v) || json_array_size(v) > OAI_MAX_STOP)
        return fail(c, "stop", "'stop' must be a string or an array of at most %d strings", OAI_MAX_STOP);
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *s = json_array_get(v, i);
        if (!json_is_string(s)) return fail(c, "stop", "'stop[%zu]' must be a string", i);
        if (!(c->r->stop[c->r->n_stop] = dup_string(c, s, NULL))) return false;
        c->r->n_stop++;
    }
    return true;
}

static bool stream_fields(parse_ctx *c, json_t *obj)
{
    if (!bool_field(c, obj, "stream", &c->r->stream) || !bool_field(c, obj, "ignore_eos", &c->r->ignore_eos))
        return false;
    json_t *o = field(obj, "stream_options");
    if (!o) return true;
    if (!json_is_object(o)) return fail(c, "stream_options", "'stream_options' must be an object");
    json_t *u = field(o, "include_usage");
    if (u && !json_is_boolean(u))
        return fail(c, "stream_options", "'stream_options.include_usage' must be true or false");
    c->r->include_usage = json_is_true(u);
    return true;
}

/* ---- chat messages ---- */

static const char *message_role(json_t *m)
{
    static const char *const roles[] = {"system", "user", "assistant", NULL};
    const char *r = json_string_value(json_object_get(m, "role"));
    if (!r) return NULL;
    if (!strcmp(r, "developer")) return roles[0]; /* the OpenAI API's newer name for system */
    for (int i = 0; roles[i]; i++)
        if (!strcmp(r, roles[i])) return roles[i];
    return NULL;
}

/* Content as an array of parts: the text of {"type":"text","text":...}
 * parts, joined. */
static char *content_parts(parse_ctx *c, json_t *parts, size_t idx)
{
    size_t total = 0;
    for (size_t j = 0; j < json_array_size(parts); j++) {
        json_t *p = json_array_get(parts, j), *text = json_object_get(p, "text");
        const char *type = json_string_value(json_object_get(p, "type"));
        if (!json_is_object(p) || !type || strcmp(type, "text") || !json_is_string(text)) {
            fail(c, "messages", "'messages[%zu].content[%zu]' must be a {\"type\": \"text\", \"text\": STRING} part%s",
                 idx, j, type && strcmp(type, "text") ? " (only text is supported)" : "");
            return NULL;
        }
        total += json_string_length(text);
    }
    char *out = malloc(total + 1); /* [total + NUL] */
    if (!out) {
        fail(c, NULL, "out of memory");
        return NULL;
    }
    size_t at = 0;
    for (size_t j = 0; j < json_array_size(parts); j++) {
        json_t *text = json_object_get(json_array_get(parts, j), "text");
        memcpy(out + at, json_string_value(text), json_string_length(text));
        at += json_string_length(text);
    }
    out[at] = '\0';
    return out;
}

static char *message_content(parse_ctx *c, json_t *m, const char *role, size_t idx)
{
    json_t *content = json_object_get(m, "content");
    if (json_is_string(content)) return dup_string(c, content, NULL);
    if (json_is_array(content)) return content_parts(c, content, idx);
    if ((json_is_null(content) || !content) && !strcmp(role, "assistant")) /* one that only called tools */
        return dup_text(c, "", 0);
    fail(c, "messages", "'messages[%zu].content' must be a string or an array of text parts%s", idx,
         content ? "" : " (only an assistant's may be absent)");
    return NULL;
}

static bool messages_field(parse_ctx *c, json_t *obj)
{
    json_t *msgs = json_object_get(obj, "messages");
    size_t n = json_array_size(msgs);
    if (!json_is_array(msgs) || n == 0 || n > OAI_MAX_MESSAGES)
        return fail(c, "messages", "'messages' must be an array of 1 to %d messages", OAI_MAX_MESSAGES);
    c->r->messages = calloc(n, sizeof *c->r->messages);
    if (!c->r->messages) return fail(c, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(msgs, i);
        if (!json_is_object(m)) return fail(c, "messages", "'messages[%zu]' must be an object", i);
        const char *role = message_role(m);
        if (!role)
            return fail(c, "messages", "'messages[%zu].role' must be \"system\", \"user\" or \"assistant\"", i);
        char *content = message_content(c, m, role, i);
        if (!content) return false;
        c->r->messages[c->r->n_messages++] = (oai_message){role, content};
    }
    return true;
}

/* A non-empty array of integers (token ids, 0 .. INT32_MAX: the vocabulary
 * is checked where the model is known) into r->prompt_tokens. */
static bool prompt_token_ids(parse_ctx *c, json_t *p)
{
    size_t n = json_array_size(p);
    if (n == 0 || n > OAI_MAX_PROMPT_TOKENS)
        return fail(c, "prompt", "'prompt' as token ids must hold 1 to %u of them", OAI_MAX_PROMPT_TOKENS);
    c->r->prompt_tokens = malloc(n * sizeof *c->r->prompt_tokens);
    if (!c->r->prompt_tokens) return fail(c, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(p, i);
        json_int_t v = json_is_integer(t) ? json_integer_value(t) : -1;
        if (v < 0 || v > INT32_MAX) return fail(c, "prompt", "'prompt[%zu]' must be a token id (an integer >= 0)", i);
        c->r->prompt_tokens[i] = (int32_t)v;
    }
    c->r->n_prompt_tokens = n;
    return true;
}

/* prompt: a string, an array of token ids, or an array holding one of
 * either (the API's batch form with one prompt). */
static bool prompt_field(parse_ctx *c, json_t *obj)
{
    json_t *p = json_object_get(obj, "prompt");
    if (json_is_array(p) && json_array_size(p) == 1 && !json_is_integer(json_array_get(p, 0)))
        p = json_array_get(p, 0);
    if (json_is_array(p) && json_is_integer(json_array_get(p, 0))) return prompt_token_ids(c, p);
    if (!json_is_string(p))
        return fail(c, "prompt", "'prompt' must be a string or an array of token ids (or an array of one of them)");
    c->r->prompt = dup_string(c, p, &c->r->prompt_len);
    return c->r->prompt != NULL;
}

static bool parse_object(parse_ctx *c, json_t *obj)
{
    if (!json_is_object(obj)) return fail(c, NULL, "the request body must be a JSON object");
    bool ok = c->r->kind == OAI_CHAT ? messages_field(c, obj) : prompt_field(c, obj);
    return ok && sampling_fields(c, obj) && stop_field(c, obj) && stream_fields(c, obj);
}

bool oai_request_parse(const char *body, size_t len, oai_kind kind, const strata_sampler_params *defaults,
                       oai_request *out, char *msg, size_t cap, const char **param)
{
    *out = (oai_request){.kind = kind, .sampling = *defaults};
    parse_ctx c = {out, msg, cap, NULL};
    json_error_t jerr;
    json_t *doc = json_loadb(body, len, 0, &jerr);
    bool ok = doc ? parse_object(&c, doc) : fail(&c, NULL, "malformed JSON: %s (line %d, column %d)", jerr.text,
                                                 jerr.line, jerr.column);
    json_decref(doc);
    if (!ok) oai_request_free(out);
    if (param) *param = c.param;
    return ok;
}

void oai_request_free(oai_request *r)
{
    for (size_t i = 0; i < r->n_messages; i++) free(r->messages[i].content);
    free(r->messages);
    free(r->prompt);
    free(r->prompt_tokens);
    for (size_t i = 0; i < r->n_stop; i++) free(r->stop[i]);
    *r = (oai_request){.kind = r->kind};
}

/* What jansson 2.14 allocates, measured with mallinfo2 on 1 MiB bodies of
 * one shape each (test_serve_request_parse_bound checks the bound the same
 * way): an object ~236 bytes, an array ~140, a value (an integer, an empty
 * string, a key and its value) ~32-92, rounded up; each byte of text is
 * counted four times (the lexer's buffer, which doubles as it grows, the
 * tree's string and the request's copy). */
#define TREE_OBJECT 256u
#define TREE_ARRAY 160u
#define TREE_VALUE 96u

uint64_t oai_parse_bound(const char *body, size_t len)
{
    uint64_t objects = 0, arrays = 0, values = 1;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char ch = body[i];
        if (in_string) {
            if (ch == '\\') i++;
            else if (ch == '"') in_string = false;
            continue;
        }
        in_string = ch == '"';
        objects += ch == '{';
        arrays += ch == '[';
        values += ch == ',' || ch == ':';
    }
    return objects * TREE_OBJECT + arrays * TREE_ARRAY + values * TREE_VALUE + 4 * (uint64_t)len + 4096;
}

uint64_t oai_request_bytes(const oai_request *r)
{
    uint64_t b = r->n_messages * sizeof *r->messages + r->n_prompt_tokens * sizeof *r->prompt_tokens;
    for (size_t i = 0; i < r->n_messages; i++) b += strlen(r->messages[i].content) + 1;
    if (r->prompt) b += r->prompt_len + 1;
    for (size_t i = 0; i < r->n_stop; i++) b += strlen(r->stop[i]) + 1;
    return b;
}
