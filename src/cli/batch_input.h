/* The prompts of `strata batch`: one per line, or JSONL (a JSON object per
 * line with "prompt" and optional "id", "n_predict" / "max_tokens"). The
 * form is decided by the first non-empty line: JSONL when it parses as a
 * JSON object. Empty (or all-blank) lines are skipped in both forms. */
#ifndef STRATA_CLI_BATCH_INPUT_H
#define STRATA_CLI_BATCH_INPUT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BATCH_N_DEFAULT 0   /* n_predict: the -n default */
#define BATCH_N_UNTIL_FULL -1 /* n_predict: until the context is full */

typedef struct batch_item {
    uint32_t line;     /* 1-based line of the file */
    char *text;        /* the prompt (malloc'd, NUL-terminated; may hold NULs before len) */
    size_t len;        /* of text */
    json_t *id;        /* the "id" given (owned reference), or NULL: the line number is the id */
    int64_t n_predict; /* the line's "n_predict" / "max_tokens", BATCH_N_DEFAULT or BATCH_N_UNTIL_FULL */
} batch_item;

typedef struct batch_input {
    batch_item *items; /* [n] in file order */
    size_t n;
    bool jsonl;
} batch_input;

/* Splits text[0..len) (the file `path`, for messages) into prompts. On a
 * bad JSONL line prints "strata batch: PATH:LINE: problem" and returns false. */
bool batch_input_parse(const char *path, const char *text, size_t len, batch_input *out);
void batch_input_free(batch_input *in);

#endif
