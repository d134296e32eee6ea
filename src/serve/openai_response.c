/* Building the server's JSON answers (jansson). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/openai_response.h"

/* Length of the valid UTF-8 sequence at s[0..n) (1-4), or 0 when it is
 * invalid (overlong, surrogate, above U+10FFFF, or cut short). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t k = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (!k || k > n) return 0;
    uint32_t cp = k == 1 ? c : k == 2 ? c & 0x1F : k == 3 ? c & 0x0F : c & 0x07;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[k] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return k;
}

char *oai_utf8_clean(const char *text, size_t len, size_t *out_len)
{
    char *out = malloc(len * 3 + 1); /* [each byte at most U+FFFD's 3 bytes + NUL] */
    if (!out) return NULL;
    const unsigned char *s = (const unsigned char *)text;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq(s + i, len - i);
        if (k) {
            memcpy(out + o, s + i, k);
            o += k;
            i += k;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

size_t oai_utf8_complete(const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    /* the last lead byte within 3 bytes of the end */
    for (size_t back = 1; back <= 3 && back <= len; back++) {
        unsigned c = s[len - back];
        if ((c & 0xC0) == 0x80) continue; /* a continuation byte */
        size_t k = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
        return k > back ? len - back : len;
    }
    return len;
}

/* A JSON string of text[0..len), cleaned to UTF-8. */
static json_t *text_value(const char *text, size_t len)
{
    size_t n;
    char *clean = oai_utf8_clean(text, len, &n);
    json_t *v = clean ? json_stringn(clean, n) : NULL;
    free(clean);
    return v;
}

static char *dump(json_t *doc)
{
    char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    return s;
}

static json_t *usage_object(const oai_usage *u)
{
    return json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t)u->prompt_tokens, "completion_tokens",
                     (json_int_t)u->completion_tokens, "total_tokens",
                     (json_int_t)u->prompt_tokens + (json_int_t)u->completion_tokens);
}

static json_t *head(const oai_meta *m, const char *object)
{
    return json_pack("{s:s, s:s, s:I, s:s}", "id", m->id, "object", object, "created", (json_int_t)m->created,
                     "model", m->model);
}

static json_t *finish_value(const char *finish_reason)
{
    return finish_reason ? json_string(finish_reason) : json_null();
}

char *oai_completion_json(const oai_meta *m, const char *text, size_t len, const char *finish_reason,
                          const oai_usage *u)
{
    bool chat = m->kind == OAI_CHAT;
    json_t *doc = head(m, chat ? "chat.completion" : "text_completion");
    json_t *choice = json_pack("{s:i, s:o, s:n}", "index", 0, "finish_reason", finish_value(finish_reason),
                               "logprobs");
    json_t *t = text_value(text, len);
    if (!doc || !choice || !t) {
        json_decref(doc);
        json_decref(choice);
        json_decref(t);
        return NULL;
    }
    if (chat) json_object_set_new(choice, "message", json_pack("{s:s, s:o}", "role", "assistant", "content", t));
    else json_object_set_new(choice, "text", t);
    json_object_set_new(doc, "choices", json_pack("[o]", choice));
    json_object_set_new(doc, "usage", usage_object(u));
    return dump(doc);
}

/* "data: " JSON "\n\n" */
static char *event(json_t *doc)
{
    char *j = dump(doc);
    if (!j) return NULL;
    size_t n = strlen(j);
    char *e = malloc(n + 9); /* ["data: " + json + "\n\n" + NUL] */
    if (e) snprintf(e, n + 9, "data: %s\n\n", j);
    free(j);
    return e;
}

char *oai_chunk_event(const oai_meta *m, bool role, const char *text, size_t len, const char *finish_reason)
{
    bool chat = m->kind == OAI_CHAT;
    json_t *doc = head(m, chat ? "chat.completion.chunk" : "text_completion");
    json_t *choice = json_pack("{s:i, s:o, s:n}", "index", 0, "finish_reason", finish_value(finish_reason),
                               "logprobs");
    json_t *delta = json_object();
    if (!doc || !choice || !delta) goto fail;
    if (role) json_object_set_new(delta, "role", json_string("assistant"));
    if (text || !chat) {
        json_t *t = text_value(text ? text : "", text ? len : 0);
        if (!t) goto fail;
        json_object_set_new(chat ? delta : choice, chat ? "content" : "text", t);
    }
    if (chat) json_object_set_new(choice, "delta", delta);
    else json_decref(delta);
    json_object_set_new(doc, "choices", json_pack("[o]", choice));
    return event(doc);
fail:
    json_decref(doc);
    json_decref(choice);
    json_decref(delta);
    return NULL;
}

char *oai_usage_event(const oai_meta *m, const oai_usage *u)
{
    json_t *doc = head(m, m->kind == OAI_CHAT ? "chat.completion.chunk" : "text_completion");
    if (!doc) return NULL;
    json_object_set_new(doc, "choices", json_array());
    json_object_set_new(doc, "usage", usage_object(u));
    return event(doc);
}

static const char *error_type(int status)
{
    switch (status) {
    case 400: return "invalid_request_error";
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 405: return "method_not_allowed_error";
    case 413: return "request_too_large_error";
    case 503: return "unavailable_error";
    default: return "server_error";
    }
}

static json_t *error_object(int status, const char *message, const char *param)
{
    json_t *msg = text_value(message, strlen(message));
    json_t *p = param ? json_string(param) : json_null();
    return json_pack("{s:{s:o, s:s, s:o, s:i}}", "error", "message", msg, "type", error_type(status), "param", p,
                     "code", status);
}

char *oai_error_json(int status, const char *message, const char *param)
{
    return dump(error_object(status, message, param));
}

char *oai_error_event(int status, const char *message) { return event(error_object(status, message, NULL)); }

char *oai_models_json(const char *id, int64_t created)
{
    return dump(json_pack("{s:s, s:[{s:s, s:s, s:I, s:s}]}", "object", "list", "data", "id", id, "object", "model",
                          "created", (json_int_t)created, "owned_by", "strata"));
}
