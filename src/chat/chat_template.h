/* Chat templates: the prompt formats chat models were trained on, written
 * as tables of the text around each message (no Jinja engine).
 *
 * A conversation is rendered as a sequence of pieces: template markup
 * ("<|im_start|>user\n") and message contents. Keeping them apart lets the
 * tokenizer match special tokens in the markup but never in what a user
 * wrote (chat_tokenize).
 *
 * Rendering is prefix-stable: the pieces of messages [0, k) do not depend
 * on the messages after them, so a chat can evaluate only the new turn. For
 * that reason a system message that a family folds into a user message goes
 * into the first one (mistral-common's default), not the last (some
 * official Jinja templates), which would change earlier text every turn.
 */
#ifndef STRATA_CHAT_CHAT_TEMPLATE_H
#define STRATA_CHAT_CHAT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "strata.h"
#include "tokenizer/tokenizer.h"

typedef struct chat_template chat_template;

/* The template called `name`, or NULL. */
const chat_template *chat_template_find(const char *name);
const char *chat_template_name(const chat_template *t);
/* All templates' names, NULL-terminated. */
const char *const *chat_template_names(void);
/* "chatml, llama2, ..." into buf (truncated to cap). Returns buf. */
const char *chat_template_list(char *buf, size_t cap);
/* The family of a Jinja template by its markers, or NULL. */
const chat_template *chat_template_detect(const char *jinja);

typedef enum chat_piece_kind {
    CHAT_MARKUP = 0,  /* text of the template: may hold special tokens */
    CHAT_CONTENT = 1, /* text of a message: never parsed for special tokens */
} chat_piece_kind;

typedef struct chat_piece {
    chat_piece_kind kind;
    size_t msg; /* index of the message the piece belongs to (contents: whose) */
    const char *text;
    size_t len;
} chat_piece;

/* Receives the pieces in order; false stops rendering (out of memory). */
typedef bool (*chat_sink)(void *ctx, const chat_piece *p);

/* Renders msgs[0..n). Errors (STRATA_E_INVALID): NULL role or content, an
 * unknown role, a system message that is not first, user and assistant
 * messages that do not alternate starting with user, a system message alone
 * in a family that folds it into the first user message; STRATA_E_NOMEM
 * when the sink fails. */
strata_status chat_render(const chat_template *t, const strata_chat_message *msgs, size_t n, bool add_gen,
                          chat_sink sink, void *ctx, strata_error *err);

/* The rendered text as one malloc'd string (*out, NUL-terminated). */
strata_status chat_format(const chat_template *t, const strata_chat_message *msgs, size_t n, bool add_gen,
                          char **out, strata_error *err);

/* Tokens of the rendered conversation, appended to *out. Markup: every
 * "<...>" or "[...]" in it that is a control or user-defined token of the
 * vocabulary becomes that token; all other text (markup and contents,
 * joined) is encoded without special-token parsing, so the result equals
 * encoding the whole text with parse_special except that contents can never
 * produce control tokens. n_done > 0: start after the content of message
 * n_done - 1 (already in the context), without BOS; n_done 0: from the
 * start, BOS first when add_bos. */
strata_status chat_tokenize(const tokenizer *tok, const chat_template *t, const strata_chat_message *msgs,
                            size_t n, size_t n_done, bool add_gen, bool add_bos, tok_ids *out,
                            strata_error *err);

#endif
