/* `strata batch` end to end through the sanitized binary: batching changes
 * nothing (greedy results equal `strata run` for each prompt), input order,
 * the JSONL input form, and errors that leave no output file. */
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"

static const char *const prompts[] = {
    "Once upon a time", "Lily and Tom went to the park", "The little dog", "One day, a big bird",
    "Mom said", "There was a girl who liked to sing",
};
#define N_PROMPTS (sizeof prompts / sizeof prompts[0])

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* Runs `strata batch ARGS` (stderr merged); returns the exit status. */
static int batch(const char *args, char **out)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s batch %s", test_strata_bin(), args);
    return test_run(cmd, out, true);
}

/* The JSONL results: an array of objects, or NULL. */
static json_t *read_results(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    json_t *all = json_array();
    char line[1 << 16];
    while (fgets(line, sizeof line, f)) {
        json_t *o = json_loads(line, JSON_ALLOW_NUL, NULL); /* a prompt may hold NULs */
        if (!json_is_object(o)) {
            json_decref(o);
            json_decref(all);
            all = NULL;
            break;
        }
        json_array_append_new(all, o);
    }
    fclose(f);
    return all;
}

/* Files in dir other than the inputs: what a failed batch must not leave. */
static int count_files(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        if (!strncmp(e->d_name, prefix, strlen(prefix))) n++;
    if (d) closedir(d);
    return n;
}

/* `strata run` greedy text of one prompt (what follows it on stdout). */
static char *run_text(const char *model, const char *prompt)
{
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s run -m '%s' -p '%s' -n 24 --temp 0 -t 2 --no-display-prompt 2>/dev/null",
             test_strata_bin(), model, prompt);
    if (test_run(cmd, &out, false) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

TEST(test_batch_cli_greedy_equals_run)
{
    const char *model = test_fixture("stories260K.gguf");
    if (!model) return;
    char in[1024], outp[1024], args[4096], *log = NULL;
    snprintf(in, sizeof in, "%s/p.txt", test_tmpdir());
    snprintf(outp, sizeof outp, "%s/out.jsonl", test_tmpdir());
    FILE *f = fopen(in, "w");
    REQUIRE(f);
    for (size_t i = 0; i < N_PROMPTS; i++) fprintf(f, "%s\n%s", prompts[i], i == 2 ? "\n" : ""); /* a blank line */
    fclose(f);
    snprintf(args, sizeof args, "-m '%s' -f %s -np 4 -n 24 --temp 0 -t 2 -o %s", model, in, outp);
    REQUIRE(batch(args, &log) == 0, " %s", log);
    CHECK(strstr(log, "6 prompts") && strstr(log, "tok/s aggregate") && strstr(log, "streamed"), " %s", log);
    free(log);
    json_t *res = read_results(outp);
    REQUIRE(res && json_array_size(res) == N_PROMPTS, " %zu results", res ? json_array_size(res) : 0);
    for (size_t i = 0; i < N_PROMPTS; i++) {
        json_t *o = json_array_get(res, i);
        const char *text = json_string_value(json_object_get(o, "text"));
        const char *prompt = json_string_value(json_object_get(o, "prompt"));
        json_int_t id = json_integer_value(json_object_get(o, "id")), line = (json_int_t)(i + 1 + (i > 2));
        const char *finish = json_string_value(json_object_get(o, "finish_reason"));
        CHECK(prompt && !strcmp(prompt, prompts[i]) && id == line, " result %zu: '%s', id %lld", i, prompt,
              (long long)id);
        CHECK(json_integer_value(json_object_get(o, "tokens_prompt")) > 1 &&
                  json_integer_value(json_object_get(o, "tokens_generated")) <= 24 && finish &&
                  (!strcmp(finish, "stop") || !strcmp(finish, "length")),
              " result %zu", i);
        char *want = run_text(model, prompts[i]);
        REQUIRE(want && text, " prompt %zu", i);
        size_t n = strlen(text);
        /* run ends stdout with a newline when the text has none */
        bool same = !strncmp(want, text, n) && (!strcmp(want + n, "\n") || (!want[n] && n && text[n - 1] == '\n'));
        CHECK(same, " prompt %zu: batch '%s' vs run '%s'", i, text, want);
        free(want);
    }
    json_decref(res);
}

TEST(test_batch_cli_jsonl_input)
{
    const char *model = test_fixture("stories260K.gguf");
    if (!model) return;
    char in[1024], outp[1024], args[4096], *log = NULL;
    snprintf(in, sizeof in, "%s/p.jsonl", test_tmpdir());
    snprintf(outp, sizeof outp, "%s/out.jsonl", test_tmpdir());
    write_text(in, "{\"prompt\": \"Once upon a time\", \"id\": \"first\"}\n\n"
                   "{\"prompt\": \"The cat\", \"id\": 7, \"n_predict\": 5}\n"
                   "{\"prompt\": \"{not json}\", \"max_tokens\": 3}\n");
    snprintf(args, sizeof args, "-m '%s' -f %s -np 2 -n 9 --temp 0 --ignore-eos -o %s", model, in, outp);
    REQUIRE(batch(args, &log) == 0, " %s", log);
    free(log);
    json_t *res = read_results(outp);
    REQUIRE(res && json_array_size(res) == 3);
    json_t *a = json_array_get(res, 0), *b = json_array_get(res, 1), *c = json_array_get(res, 2);
    CHECK(!strcmp(json_string_value(json_object_get(a, "id")), "first") &&
          json_integer_value(json_object_get(a, "tokens_generated")) == 9);
    CHECK(json_integer_value(json_object_get(b, "id")) == 7 &&
          json_integer_value(json_object_get(b, "tokens_generated")) == 5);
    CHECK(json_integer_value(json_object_get(c, "id")) == 4 &&
          !strcmp(json_string_value(json_object_get(c, "prompt")), "{not json}") &&
          json_integer_value(json_object_get(c, "tokens_generated")) == 3 &&
          !strcmp(json_string_value(json_object_get(c, "finish_reason")), "length"));
    json_decref(res);
}

/* A JSONL file whose first prompt holds "\u0000" (valid JSON) is JSONL, not
 * plain text: its id and prompt are the line's fields. */
TEST(test_batch_cli_jsonl_nul_in_first_line)
{
    const char *model = test_fixture("stories260K.gguf");
    if (!model) return;
    char in[1024], outp[1024], args[4096], *log = NULL;
    snprintf(in, sizeof in, "%s/nul.jsonl", test_tmpdir());
    snprintf(outp, sizeof outp, "%s/out.jsonl", test_tmpdir());
    write_text(in, "{\"prompt\": \"a\\u0000b\", \"id\": \"nul\"}\n{\"prompt\": \"The cat\"}\n");
    snprintf(args, sizeof args, "-m '%s' -f %s -n 2 --temp 0 -o %s", model, in, outp);
    REQUIRE(batch(args, &log) == 0, " %s", log);
    free(log);
    json_t *res = read_results(outp);
    REQUIRE(res && json_array_size(res) == 2);
    json_t *a = json_array_get(res, 0), *b = json_array_get(res, 1);
    const char *id = json_string_value(json_object_get(a, "id")), *pa = json_string_value(json_object_get(a, "prompt")),
               *pb = json_string_value(json_object_get(b, "prompt"));
    CHECK(id && !strcmp(id, "nul") && pa && json_string_length(json_object_get(a, "prompt")) == 3 &&
              !memcmp(pa, "a\0b", 3),
          " id %s, prompt %s", id ? id : "(none)", pa ? pa : "(none)");
    CHECK(pb && !strcmp(pb, "The cat"), " %s", pb ? pb : "(none)");
    json_decref(res);
}

/* Each error: its exit status, a message naming what is wrong, and no
 * output file (nor a temporary one) left behind. */
TEST(test_batch_cli_errors)
{
    const char *model = test_fixture("stories260K.gguf");
    if (!model) return;
    const char *dir = test_tmpdir();
    char ok[1024], empty[1024], longp[1024], badj[1024];
    snprintf(ok, sizeof ok, "%s/ok.txt", dir);
    snprintf(empty, sizeof empty, "%s/empty.txt", dir);
    snprintf(longp, sizeof longp, "%s/long.txt", dir);
    snprintf(badj, sizeof badj, "%s/bad.jsonl", dir);
    write_text(ok, "Once upon a time\n");
    write_text(empty, "\n  \n\n");
    write_text(longp, "Hi\n\nOnce upon a time there was a little girl named Lily who liked to play\n");
    write_text(badj, "{\"prompt\": \"a\"}\n{\"text\": \"b\"}\n");
    /* read and parsed before the model and its account exist: a file that
     * cannot fit --mem as parsed (2M one-letter prompts: ~230 MB of items
     * and copies), or whose bytes alone exceed it, is refused unread */
    char many[1024], big[1024];
    snprintf(many, sizeof many, "%s/many.txt", dir);
    snprintf(big, sizeof big, "%s/big.txt", dir);
    FILE *f = fopen(many, "w");
    for (int i = 0; f && i < 2000000; i++) fputs("a\n", f);
    if (f) fclose(f);
    int fd = open(big, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    CHECK(fd >= 0 && ftruncate(fd, 70 << 20) == 0, " %s", big);
    if (fd >= 0) close(fd);
    struct {
        const char *args;
        int rc;
        const char *msg;
    } cases[] = {
        {"-f %s/missing.txt -o %s/res.jsonl", 1, "missing.txt: No such file"},
        {"-f %s/empty.txt -o %s/res.jsonl", 1, "no prompts"},
        {"-f %s/long.txt -c 16 -o %s/res.jsonl", 1, "long.txt:3: the prompt is"},
        {"-f %s/bad.jsonl -o %s/res.jsonl", 1, "bad.jsonl:2: no \"prompt\""},
        {"-f %s/ok.txt -np 0 -o %s/res.jsonl", 2, "-np '0'"},
        {"-f %s/ok.txt -np lots -o %s/res.jsonl", 2, "-np 'lots'"},
        {"-f %s/ok.txt -o %s", 1, "-o"},
        {"-f %s/ok.txt -o ''", 1, "-o '' is an empty path"},
        {"-f %s/many.txt --mem 64M -o %s/res.jsonl", 1, "many.txt: reading its prompts takes up to"},
        {"-f %s/big.txt --mem 64M -o %s/res.jsonl", 1, "big.txt: the file holds 70.0 MiB, more than the --mem budget "
                                                     "of 64.0 MiB"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char tail[2048], args[4096], *out = NULL;
        snprintf(tail, sizeof tail, cases[i].args, dir, dir);
        snprintf(args, sizeof args, "-m '%s' -n 4 --temp 0 %s", model, tail);
        int rc = batch(args, &out);
        CHECK(rc == cases[i].rc && out && strstr(out, cases[i].msg),
              " case %zu (%s): exit %d, '%s'", i, tail, rc, out);
        free(out);
        CHECK(count_files(dir, "res") == 0, " case %zu left an output file", i);
    }
    char args[4096], *out = NULL;
    snprintf(args, sizeof args, "-m '%s' -f %s", model, ok);
    CHECK(batch(args, &out) == 2 && strstr(out, "-o OUT.jsonl"), " %s", out);
    free(out);
}

TEST(test_batch_cli_help)
{
    char *out = NULL;
    CHECK(batch("--help", &out) == 0 && strstr(out, "JSONL") && strstr(out, "-np, --parallel N") &&
              strstr(out, "--kv-type"),
          " %s", out);
    free(out);
}
