/* libFuzzer target: the body of an OpenAI-style request (`strata serve`'s
 * /v1/chat/completions and /v1/completions) on arbitrary bytes, parsed as
 * either kind. A request that parses has its texts answered back through
 * the response builders, which must produce JSON that parses again. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "serve/openai_request.h"
#include "serve/openai_response.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void must_parse(char *json)
{
    if (!json) abort();
    json_t *doc = json_loads(json, 0, NULL);
    if (!doc) abort(); /* what the server writes must be JSON */
    json_decref(doc);
    free(json);
}

static void answer_back(const oai_request *r)
{
    oai_meta m = {r->kind, "cmpl-fuzz", "fuzz.gguf", 1};
    oai_usage u = {1, 2};
    const char *text = r->kind == OAI_CHAT ? r->messages[0].content : r->prompt ? r->prompt : ""; /* "": token ids */
    size_t len = strlen(text);
    must_parse(oai_completion_json(&m, text, len, "stop", &u));
    must_parse(oai_error_json(400, text, r->n_stop ? r->stop[0] : NULL));
    char *ev = oai_chunk_event(&m, true, text, len, NULL);
    if (!ev || strncmp(ev, "data: ", 6)) abort();
    must_parse(strdup(ev + 6));
    free(ev);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    strata_sampler_params defaults = strata_sampler_default_params();
    for (int kind = OAI_CHAT; kind <= OAI_COMPLETION; kind++) {
        oai_request r;
        char msg[256];
        const char *param;
        if (!oai_request_parse((const char *)data, size, (oai_kind)kind, &defaults, &r, msg, sizeof msg, &param)) {
            if (!msg[0]) abort(); /* a refusal always says why */
            continue;
        }
        answer_back(&r);
        oai_request_free(&r);
    }
    size_t n;
    char *clean = oai_utf8_clean((const char *)data, size, &n);
    if (!clean) return 0;
    json_t *s = json_stringn(clean, n);
    if (!s) abort(); /* cleaned text is valid UTF-8 */
    json_decref(s);
    free(clean);
    return 0;
}
