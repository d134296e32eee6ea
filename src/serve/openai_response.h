/* The JSON the server answers with, in the OpenAI API's shapes: completion
 * objects, server-sent-event chunks, error objects, the model list. Every
 * function returns a malloc'd NUL-terminated string (free()), or NULL when
 * out of memory. Generated text that is not valid UTF-8 is sent with
 * U+FFFD in place of the bad bytes (JSON strings must be UTF-8). */
#ifndef STRATA_SERVE_OPENAI_RESPONSE_H
#define STRATA_SERVE_OPENAI_RESPONSE_H

#include <stddef.h>
#include <stdint.h>

#include "serve/openai_request.h"

/* What every object of one answer shares. */
typedef struct oai_meta {
    oai_kind kind;
    const char *id;    /* "chatcmpl-..." / "cmpl-..." */
    const char *model; /* the served model's id */
    int64_t created;   /* Unix seconds */
} oai_meta;

typedef struct oai_usage {
    uint32_t prompt_tokens, completion_tokens;
} oai_usage;

/* The whole answer: "chat.completion" (message) or "text_completion" (text). */
char *oai_completion_json(const oai_meta *m, const char *text, size_t len, const char *finish_reason,
                          const oai_usage *u);

/* One streamed chunk as an event ("data: {...}\n\n"): "chat.completion.chunk"
 * with a delta (role "assistant" when `role`, content text[0..len) when
 * text is non-NULL) or "text_completion" with text; finish_reason when
 * non-NULL (null otherwise). */
char *oai_chunk_event(const oai_meta *m, bool role, const char *text, size_t len, const char *finish_reason);
/* The last chunk of stream_options.include_usage: no choices, the usage. */
char *oai_usage_event(const oai_meta *m, const oai_usage *u);
/* An error inside a stream that already began: "data: {\"error\":...}\n\n". */
char *oai_error_event(int status, const char *message);
#define OAI_SSE_DONE "data: [DONE]\n\n"

/* {"error":{"message","type","param","code"}}; type from the HTTP status
 * (400 invalid_request_error, 401 authentication_error, 404
 * not_found_error, 405 method_not_allowed_error, 413 request_too_large_error,
 * 503 unavailable_error, else server_error); code is the status; param
 * the offending field or null. */
char *oai_error_json(int status, const char *message, const char *param);

/* GET /v1/models: one model. */
char *oai_models_json(const char *id, int64_t created);

/* text[0..len) with each invalid UTF-8 sequence replaced by U+FFFD; *out_len
 * its length. */
char *oai_utf8_clean(const char *text, size_t len, size_t *out_len);
/* Bytes of text[0..len) before an incomplete UTF-8 sequence at its end (a
 * streamed piece holds those back until the rest comes). */
size_t oai_utf8_complete(const char *text, size_t len);

#endif
