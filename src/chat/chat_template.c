/* The chat template families: the text around each message, detection of a
 * family from Jinja source, and rendering a conversation into pieces.
 *
 * Formats (S: system, U: user, A: assistant; the model cards' leading BOS
 * left out, see chat_template.h):
 *   llama2      [INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST] A </s><s>[INST] U [/INST]
 *               (Meta's Llama-2-chat reference code; contents stripped)
 *   llama3      <|start_header_id|>ROLE<|end_header_id|>\n\nTEXT<|eot_id|> per message
 *               (Meta Llama 3 model card; contents trimmed)
 *   chatml      <|im_start|>ROLE\nTEXT<|im_end|>\n per message (Qwen, ...)
 *   mistral-*   Mistral's tokenization guide ("Templates", cookbook), per version:
 *               v1 " [INST] U [/INST] A</s>", v3 "[INST] U[/INST] A</s>",
 *               v3-tekken "[INST]U[/INST]A</s>"; the system message goes in
 *               front of the first user message followed by "\n\n";
 *               v7 "[SYSTEM_PROMPT] S[/SYSTEM_PROMPT][INST] U[/INST] A</s>"
 *               (Mistral-Large-Instruct-2411), v7-tekken the same without
 *               the spaces (Mistral-Small-3.1)
 *   phi3        <|ROLE|>\nTEXT<|end|>\n per message (Phi-3 model card)
 *   gemma       <start_of_turn>user\nU<end_of_turn>\n<start_of_turn>model\nA<end_of_turn>\n,
 *               system text in front of the first user message with "\n\n"
 *               (Gemma model cards; contents trimmed)
 *   deepseek    S\n### Instruction:\nU\n### Response:\nA\n<|EOT|>\n (DeepSeek-Coder)
 *   deepseek2   S\n\nUser: U\n\nAssistant: A<｜end▁of▁sentence｜> (DeepSeek-V2 model card)
 *   deepseek3   S<｜User｜>U<｜Assistant｜>A<｜end▁of▁sentence｜> (DeepSeek-V3 / R1)
 *   zephyr      <|ROLE|>\nTEXT</s>\n per message (zephyr-7b-beta model card)
 *   vicuna      S USER: U ASSISTANT: A</s> (FastChat's vicuna_v1.1)
 * Default system prompts that some Jinja templates insert are not added.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat_template.h"
#include "util/error.h"

typedef struct marks {
    const char *pre, *post;
} marks;

typedef enum trim_rule { TRIM_NONE, TRIM_ALL, TRIM_ASSISTANT } trim_rule;

struct chat_template {
    const char *name;
    marks sys, user, asst;
    const char *first_user_pre; /* NULL: user.pre */
    const char *gen;            /* opens the assistant's answer */
    bool fold_system;           /* sys.pre + S + sys.post go in front of the first user text */
    trim_rule trim;
};

#define DS_EOS "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>" /* <｜end▁of▁sentence｜> */
#define DS_USER "<\xEF\xBD\x9CUser\xEF\xBD\x9C>"                                      /* <｜User｜> */
#define DS_ASSISTANT "<\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C>"                         /* <｜Assistant｜> */
#define L3_HEAD(role) "<|start_header_id|>" role "<|end_header_id|>\n\n"
#define CHATML(role) "<|im_start|>" role "\n"

static const chat_template templates[] = {
    {"chatml", {CHATML("system"), "<|im_end|>\n"}, {CHATML("user"), "<|im_end|>\n"},
     {CHATML("assistant"), "<|im_end|>\n"}, NULL, CHATML("assistant"), false, TRIM_NONE},
    {"llama2", {"<<SYS>>\n", "\n<</SYS>>\n\n"}, {"<s>[INST] ", " [/INST]"}, {" ", " </s>"}, "[INST] ", "", true,
     TRIM_ALL},
    {"llama3", {L3_HEAD("system"), "<|eot_id|>"}, {L3_HEAD("user"), "<|eot_id|>"},
     {L3_HEAD("assistant"), "<|eot_id|>"}, NULL, L3_HEAD("assistant"), false, TRIM_ALL},
    {"mistral-v1", {"", "\n\n"}, {" [INST] ", " [/INST]"}, {" ", "</s>"}, NULL, "", true, TRIM_NONE},
    {"mistral-v3", {"", "\n\n"}, {"[INST] ", "[/INST]"}, {" ", "</s>"}, NULL, "", true, TRIM_ASSISTANT},
    {"mistral-v3-tekken", {"", "\n\n"}, {"[INST]", "[/INST]"}, {"", "</s>"}, NULL, "", true, TRIM_NONE},
    {"mistral-v7", {"[SYSTEM_PROMPT] ", "[/SYSTEM_PROMPT]"}, {"[INST] ", "[/INST]"}, {" ", "</s>"}, NULL, "",
     false, TRIM_NONE},
    {"mistral-v7-tekken", {"[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]"}, {"[INST]", "[/INST]"}, {"", "</s>"}, NULL, "",
     false, TRIM_NONE},
    {"phi3", {"<|system|>\n", "<|end|>\n"}, {"<|user|>\n", "<|end|>\n"}, {"<|assistant|>\n", "<|end|>\n"}, NULL,
     "<|assistant|>\n", false, TRIM_NONE},
    {"gemma", {"", "\n\n"}, {"<start_of_turn>user\n", "<end_of_turn>\n"}, {"<start_of_turn>model\n", "<end_of_turn>\n"},
     NULL, "<start_of_turn>model\n", true, TRIM_ALL},
    {"deepseek", {"", "\n"}, {"### Instruction:\n", "\n"}, {"### Response:\n", "\n<|EOT|>\n"}, NULL,
     "### Response:\n", false, TRIM_NONE},
    {"deepseek2", {"", "\n\n"}, {"User: ", "\n\n"}, {"Assistant: ", DS_EOS}, NULL, "Assistant:", false, TRIM_NONE},
    {"deepseek3", {"", ""}, {DS_USER, ""}, {DS_ASSISTANT, DS_EOS}, NULL, DS_ASSISTANT, false, TRIM_NONE},
    {"zephyr", {"<|system|>\n", "</s>\n"}, {"<|user|>\n", "</s>\n"}, {"<|assistant|>\n", "</s>\n"}, NULL,
     "<|assistant|>\n", false, TRIM_NONE},
    {"vicuna", {"", " "}, {"USER: ", " "}, {"ASSISTANT: ", "</s>"}, NULL, "ASSISTANT:", false, TRIM_NONE},
};

#define N_TEMPLATES (sizeof templates / sizeof templates[0])

/* The same names in the same order (a test checks they agree). */

static const char *const names[N_TEMPLATES + 1] = {
    "chatml", "llama2", "llama3", "mistral-v1", "mistral-v3", "mistral-v3-tekken", "mistral-v7",
    "mistral-v7-tekken", "phi3", "gemma", "deepseek", "deepseek2", "deepseek3", "zephyr", "vicuna", NULL,
};
_Static_assert(sizeof names / sizeof names[0] == N_TEMPLATES + 1, "one name per template");

const chat_template *chat_template_find(const char *name)
{
    for (size_t i = 0; name && i < N_TEMPLATES; i++)
        if (!strcmp(templates[i].name, name)) return &templates[i];
    return NULL;
}

const char *chat_template_name(const chat_template *t) { return t->name; }
const char *const *chat_template_names(void) { return names; }

const char *chat_template_list(char *buf, size_t cap)
{
    size_t len = 0;
    if (cap) buf[0] = '\0';
    for (size_t i = 0; i < N_TEMPLATES && len < cap; i++) {
        int k = snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", names[i]);
        len += k > 0 ? (size_t)k : 0;
    }
    return buf;
}

/* ---- detection ---- */

static bool has(const char *s, const char *marker) { return strstr(s, marker) != NULL; }

/* The [INST] families differ in the spaces around the markers: v1 writes
 * ' [/INST]', v3 '[INST] ' and '[/INST]', tekken no spaces at all. */
static const char *inst_family(const char *j)
{
    if (has(j, "[SYSTEM_PROMPT]")) return has(j, "[SYSTEM_PROMPT] ") ? "mistral-v7" : "mistral-v7-tekken";
    if (has(j, "<<SYS>>")) return "llama2";
    if (has(j, " [/INST]")) return "mistral-v1";
    return has(j, "[INST] ") ? "mistral-v3" : "mistral-v3-tekken";
}

static const char *family_name(const char *j)
{
    if (has(j, "<|im_start|>")) return "chatml";
    if (has(j, "<|start_header_id|>")) return "llama3";
    if (has(j, "[INST]") || has(j, "[SYSTEM_PROMPT]")) return inst_family(j);
    if (has(j, "<start_of_turn>")) return "gemma";
    if (has(j, DS_USER)) return "deepseek3";
    if (has(j, "<|user|>")) return has(j, "<|end|>") ? "phi3" : "zephyr";
    if (has(j, "### Instruction:")) return "deepseek";
    if (has(j, "USER:") && has(j, "ASSISTANT:")) return "vicuna";
    if (has(j, "User: ") && has(j, "Assistant:")) return "deepseek2";
    return NULL;
}

const chat_template *chat_template_detect(const char *jinja)
{
    return jinja ? chat_template_find(family_name(jinja)) : NULL;
}

/* ---- rendering ---- */

typedef enum role { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT, ROLE_BAD } role;

static role role_of(const char *r)
{
    if (!strcmp(r, "system")) return ROLE_SYSTEM;
    if (!strcmp(r, "user")) return ROLE_USER;
    return !strcmp(r, "assistant") ? ROLE_ASSISTANT : ROLE_BAD;
}

/* A system message may only come first; then user, assistant, user, ... */
static strata_status check_roles(const chat_template *t, const strata_chat_message *msgs, size_t n,
                                 strata_error *err)
{
    size_t first = n > 0 && msgs[0].role && role_of(msgs[0].role) == ROLE_SYSTEM;
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].role || !msgs[i].content)
            return err_set(err, STRATA_E_INVALID, "chat: message %zu has no %s", i + 1,
                           msgs[i].role ? "content" : "role");
        role r = role_of(msgs[i].role);
        role want = i < first ? ROLE_SYSTEM : (i - first) % 2 ? ROLE_ASSISTANT : ROLE_USER;
        if (r == ROLE_BAD)
            return err_set(err, STRATA_E_INVALID, "chat: message %zu: unknown role '%s' (system, user or assistant)",
                           i + 1, msgs[i].role);
        if (r != want)
            return err_set(err, STRATA_E_INVALID,
                           "chat: message %zu is '%s' but must be '%s' (a system message first, then user and "
                           "assistant in turn)", i + 1, msgs[i].role, want == ROLE_USER ? "user" : "assistant");
    }
    if (first && n == 1 && t->fold_system)
        return err_set(err, STRATA_E_INVALID, "chat: template %s puts the system message into the first user "
                       "message, and there is none", t->name);
    return STRATA_OK;
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

typedef struct render {
    chat_sink sink;
    void *ctx;
    bool ok;
} render;

static void emit(render *r, chat_piece_kind kind, size_t msg, const char *text, size_t len)
{
    if (r->ok && len > 0) r->ok = r->sink(r->ctx, &(chat_piece){kind, msg, text, len});
}

static void markup(render *r, size_t msg, const char *text) { emit(r, CHAT_MARKUP, msg, text, strlen(text)); }

static void content(render *r, const chat_template *t, size_t msg, const char *text, bool assistant)
{
    size_t len = strlen(text);
    if (t->trim == TRIM_ALL || (t->trim == TRIM_ASSISTANT && assistant)) {
        while (len > 0 && is_space(*text)) text++, len--;
        while (len > 0 && is_space(text[len - 1])) len--;
    }
    /* An empty content is still a piece: chat_tokenize finds where it ends. */
    if (r->ok) r->ok = r->sink(r->ctx, &(chat_piece){CHAT_CONTENT, msg, text, len});
}

/* One message; `sys` is the system message folded into this first user message, or NULL. */
static void render_message(render *r, const chat_template *t, const strata_chat_message *msgs, size_t i,
                           const strata_chat_message *sys, bool first_user)
{
    role ro = role_of(msgs[i].role);
    const marks *m = ro == ROLE_SYSTEM ? &t->sys : ro == ROLE_USER ? &t->user : &t->asst;
    markup(r, i, first_user && t->first_user_pre ? t->first_user_pre : m->pre);
    if (sys) {
        markup(r, 0, t->sys.pre);
        content(r, t, 0, sys->content, false);
        markup(r, 0, t->sys.post);
    }
    content(r, t, i, msgs[i].content, ro == ROLE_ASSISTANT);
    markup(r, i, m->post);
}

strata_status chat_render(const chat_template *t, const strata_chat_message *msgs, size_t n, bool add_gen,
                          chat_sink sink, void *ctx, strata_error *err)
{
    strata_status st = check_roles(t, msgs, n, err);
    if (st) return st;
    render r = {sink, ctx, true};
    bool has_sys = n > 0 && role_of(msgs[0].role) == ROLE_SYSTEM;
    size_t first_user = has_sys ? 1 : 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 && has_sys && t->fold_system) continue;
        const strata_chat_message *sys = i == first_user && has_sys && t->fold_system ? &msgs[0] : NULL;
        render_message(&r, t, msgs, i, sys, i == first_user);
    }
    if (add_gen) markup(&r, n, t->gen);
    return r.ok ? STRATA_OK : err_set(err, STRATA_E_NOMEM, "chat: out of memory formatting %zu messages", n);
}

/* ---- the text as one string ---- */

typedef struct strbuf {
    char *s;
    size_t len, cap;
} strbuf;

static bool append(void *ctx, const chat_piece *p)
{
    strbuf *b = ctx;
    if (b->len + p->len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + p->len + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) return false;
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->len, p->text, p->len);
    b->len += p->len;
    b->s[b->len] = '\0';
    return true;
}

strata_status chat_format(const chat_template *t, const strata_chat_message *msgs, size_t n, bool add_gen,
                          char **out, strata_error *err)
{
    strbuf b = {0};
    *out = NULL;
    strata_status st = chat_render(t, msgs, n, add_gen, append, &b, err);
    if (!st && !b.s && !(b.s = calloc(1, 1))) st = err_set(err, STRATA_E_NOMEM, "chat: out of memory");
    if (st) {
        free(b.s);
        return st;
    }
    *out = b.s;
    return STRATA_OK;
}
