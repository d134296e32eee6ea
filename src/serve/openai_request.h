/* The body of an OpenAI-style generation request (POST /v1/chat/completions
 * or /v1/completions), parsed and validated into a plain struct. Fields
 * strata does not use are ignored; a field of the wrong type or out of
 * range is an error naming it. No model is needed (the fuzzer runs this). */
#ifndef STRATA_SERVE_OPENAI_REQUEST_H
#define STRATA_SERVE_OPENAI_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "strata.h"

#define OAI_MAX_STOP 4         /* stop strings at most (the OpenAI API's limit) */
#define OAI_MAX_MESSAGES 4096  /* messages of a chat at most */
#define OAI_MAX_PROMPT_TOKENS (1u << 24) /* token ids in a prompt at most (any context is shorter) */

typedef enum oai_kind {
    OAI_CHAT,       /* /v1/chat/completions: messages */
    OAI_COMPLETION, /* /v1/completions: prompt */
} oai_kind;

typedef struct oai_message {
    const char *role;  /* "system", "user" or "assistant" ("developer" reads as "system") */
    char *content;     /* malloc'd UTF-8 text (parts of an array joined) */
} oai_message;

typedef struct oai_request {
    oai_kind kind;
    oai_message *messages;      /* [n_messages], OAI_CHAT */
    size_t n_messages;
    char *prompt;               /* malloc'd, OAI_COMPLETION: text, or NULL when given as tokens */
    size_t prompt_len;
    int32_t *prompt_tokens;     /* malloc'd [n_prompt_tokens], OAI_COMPLETION given as token ids */
    size_t n_prompt_tokens;
    uint32_t max_tokens;        /* 0: not given (the server's default) */
    bool unlimited;             /* max_tokens -1: until the context is full */
    strata_sampler_params sampling; /* the server's defaults, overridden by the request */
    bool seed_given;
    char *stop[OAI_MAX_STOP];   /* malloc'd, [n_stop] */
    size_t n_stop;
    bool stream;
    bool include_usage;         /* stream_options.include_usage: a last chunk with usage */
    bool ignore_eos;            /* llama-server's extension: generate past end-of-generation */
} oai_request;

/* Parses body[0..len) as a request of `kind`, starting from the sampling
 * defaults `defaults`. On failure returns false, *out is empty (nothing to
 * free), msg (cap bytes) says why in one line, and *param (may be NULL)
 * names the offending field (static string, or NULL when it is the body). */
bool oai_request_parse(const char *body, size_t len, oai_kind kind, const strata_sampler_params *defaults,
                       oai_request *out, char *msg, size_t cap, const char **param);
void oai_request_free(oai_request *r);

/* At most the bytes oai_request_parse allocates for body[0..len) at once:
 * jansson's tree (per object, array and value: a linear scan counts them)
 * and the request's copies. The server takes this from the memory account
 * before parsing: a 1 MiB body of empty objects is an 80 MiB tree. */
uint64_t oai_parse_bound(const char *body, size_t len);
/* The bytes a parsed request holds (its copies). */
uint64_t oai_request_bytes(const oai_request *r);

#endif
