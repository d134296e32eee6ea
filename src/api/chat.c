/* Public API: chat templates (src/chat) and the model's stored template. */
#include <stdlib.h>
#include <string.h>

#include "api/model_internal.h"
#include "chat/chat_template.h"
#include "strata.h"
#include "util/account.h"
#include "util/error.h"

/* A template's markup around one message is under this (llama3's, the
 * longest, is about 60 bytes: a header of special tokens and <|eot_id|>). */
#define CHAT_MARKUP_MAX 128u

const char *const *strata_chat_template_names(void) { return chat_template_names(); }

const char *strata_chat_template_detect(const char *jinja)
{
    const chat_template *t = chat_template_detect(jinja);
    return t ? chat_template_name(t) : NULL;
}

const char *strata_model_chat_template(const strata_model *m)
{
    gguf_str s;
    return gguf_get_str(m->file, "tokenizer.chat_template", &s) ? s.ptr : NULL;
}

static strata_status find_template(const char *name, const chat_template **out, strata_error *err)
{
    char list[512];
    *out = chat_template_find(name);
    if (*out) return STRATA_OK;
    return err_set(err, STRATA_E_INVALID, "unknown chat template '%s' (known: %s)", name ? name : "(null)",
                   chat_template_list(list, sizeof list));
}

strata_status strata_model_chat_template_name(const strata_model *m, const char *name, const char **out,
                                              strata_error *err)
{
    err_clear(err);
    *out = NULL;
    const chat_template *t;
    char list[512];
    if (name) {
        strata_status st = find_template(name, &t, err);
        if (!st) *out = chat_template_name(t);
        return st;
    }
    const char *jinja = strata_model_chat_template(m);
    if (!jinja)
        return err_set(err, STRATA_E_UNSUPPORTED, "the model has no chat template (tokenizer.chat_template); "
                       "name one of: %s", chat_template_list(list, sizeof list));
    if (!(t = chat_template_detect(jinja)))
        return err_set(err, STRATA_E_UNSUPPORTED, "the model's chat template is not one strata recognizes; "
                       "name one of: %s", chat_template_list(list, sizeof list));
    *out = chat_template_name(t);
    return STRATA_OK;
}

strata_status strata_chat_format(const char *template_name, const strata_chat_message *msgs, size_t n,
                                 bool add_generation_prompt, char **out, strata_error *err)
{
    err_clear(err);
    *out = NULL;
    const chat_template *t;
    strata_status st = find_template(template_name, &t, err);
    return st ? st : chat_format(t, msgs, n, add_generation_prompt, out, err);
}

strata_status strata_chat_tokenize(const strata_model *m, const char *template_name,
                                   const strata_chat_message *msgs, size_t n, size_t n_done,
                                   bool add_generation_prompt, int32_t **tokens, size_t *n_tokens,
                                   strata_error *err)
{
    err_clear(err);
    *tokens = NULL;
    *n_tokens = 0;
    const chat_template *t;
    strata_status st = find_template(template_name, &t, err);
    if (st) return st;
    /* the work of tokenizing the conversation's text, taken before it is
     * done, as strata_tokenize does (the tokens are the caller's) */
    uint64_t len = (uint64_t)(n + 1) * CHAT_MARKUP_MAX;
    for (size_t i = 0; i < n; i++) len += (msgs[i].content ? strlen(msgs[i].content) : 0);
    uint64_t work = model_tokenize_work(len);
    if ((st = acct_take(m->acct, ACCT_RAM, ACCT_PROMPT, work, err))) return st;
    tok_ids ids = {0};
    bool bos = tokenizer_add_bos(m->tok) && tokenizer_bos(m->tok) != TOK_NONE;
    st = chat_tokenize(m->tok, t, msgs, n, n_done, add_generation_prompt, bos, &ids, err);
    acct_give(m->acct, ACCT_RAM, ACCT_PROMPT, work);
    if (st) {
        tok_ids_free(&ids);
        return st;
    }
    *tokens = ids.ids;
    *n_tokens = ids.n;
    return STRATA_OK;
}
